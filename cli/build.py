"""``npeff build``: a Hugging Face model + a dataset + a task formulation -> a PEF store."""

from __future__ import annotations

import click

from npeff.cli._common import DEVICE, DIRECTORY, command_line, echo_json, json_option, overwrite_option


@click.command()
@click.argument("model")
@click.option("--data", required=True,
              help="Local .jsonl/.json/.csv/.parquet file, or a hub dataset name.")
@click.option("--data-config", default=None, help="Hub dataset configuration.")
@click.option("--split", default="train", show_default=True, help="Hub dataset split.")
@click.option("--task", "task_file", required=True, type=click.Path(dir_okay=False),
              help="Task YAML: formulation, template, labels, label_field.")
@click.option("--out", required=True, type=DIRECTORY, help="Store directory to write.")
@click.option("--eps", "eps_rows", type=int, default=None,
              help="Expectation projection with R' rows instead of one row per class (sec. 2.1.1).")
@click.option("--svd-rank", type=int, default=None, help="Keep the top-k singular directions (sec. 2.1.2).")
@click.option("--gguf-file", default=None,
              help="Load MODEL from this GGUF file in its folder (or hub repository): a quantised checkpoint, "
                   "dequantised to --dtype by transformers (needs npeff[build]).")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of MODEL.")
@click.option("--data-revision", default=None, help="Hub revision of the dataset --data.")
@click.option("--exact-rows", type=click.Choice(["complement", "classes"]), default="complement", show_default=True,
              help="Exact PEFs: C - 1 rows spanning the complement of sqrt(p) (the same Fisher G^T G in one row and "
                   "one backward pass fewer), or one row per class as in the paper.")
@click.option("--gradient", is_flag=True, help="G-NPEFF: the gradient of log p of the predicted class.")
@click.option("--divergence-gradient", is_flag=True,
              help="Instead of PEFs: the gradient of KL(p || uniform), one row per example (a store of kind "
                   "divergence, for npeff sed).")
@click.option("--activations", is_flag=True,
              help="Instead of PEFs: each example's residual stream at its final token, unit-normalised (a store "
                   "of kind activation, for npeff sae).")
@click.option("--layer", type=int, default=None,
              help="With --activations: the transformer block whose output is read (default: the last; "
                   "negative counts from the end).")
@click.option("--projection", type=click.Choice(["ssp-v1", "none"]), default="ssp-v1", show_default=True,
              help="Seeded sparse projection, or none (d = n, for small models and exact checks).")
@click.option("--dim", "-d", type=int, default=8192, show_default=True, help="Projected dimension.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the projections.")
@click.option("--include", multiple=True, help="Parameter-name glob to include (replaces the default).")
@click.option("--exclude", multiple=True, help="Parameter-name glob to exclude (repeatable).")
@DEVICE
@click.option("--dtype", type=click.Choice(["float32", "float64", "bfloat16"]), default="float32",
              show_default=True, help="Model dtype.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Examples per batch [default: as many as --batch-memory holds, at most 128; 16 with "
                   "--activations].")
@click.option("--batch-memory", default=None,
              help="Memory a batch may take beyond the model when the batch size is automatic (e.g. 2GB) "
                   "[default: 1GiB]: its autograd graph, layer inputs, held gradients and projected rows, "
                   "measured on one example.")
@click.option("--max-examples", type=click.IntRange(1), default=None, help="Use the first N examples.")
@click.option("--shard", default=None, help="i/N: build part i of N (join the parts with `npeff merge`).")
@click.option("--resume", is_flag=True, help="Continue an interrupted build of the same store.")
@overwrite_option("an existing store at --out")
@click.option("--dry-run", is_flag=True, help="Print n, m, r, d and the store's size, then stop.")
@json_option("the plan of --dry-run, or the store written (as npeff info --json)")
def build(model, data, data_config, split, task_file, out, eps_rows, svd_rank, gguf_file, revision, data_revision,
          exact_rows, gradient, divergence_gradient,
          activations, layer,
          projection, dim, seed, include, exclude, device, dtype, batch_size, batch_memory, max_examples, shard, resume,
          overwrite,
          dry_run, as_json):
    """Compute per-example Fisher matrices of MODEL (a hub name or a local folder) on a dataset.

    Each example's LRM-PEF rows are computed from batched per-example gradients, projected
    parameter tensor by parameter tensor, normalised to unit Frobenius norm, and appended to the
    store at --out with the rendered input, label, prediction and class probabilities.

    With --gradient, --divergence-gradient or --activations it writes one row per example
    instead: for gradient clustering, npeff sed, or npeff sae.

    \b
    Example:
      npeff build ./my-model --data reviews.jsonl --task sst2.yaml --out sst2.store --eps 8
    """
    from npeff.errors import InvalidArgumentError
    from npeff.ops.pef import PefSpec, build_store, load_examples, load_model_and_tokenizer, parse_shard
    from npeff.ops.pef.tasks import TaskSpec

    rows = [name for name, given in (("--gradient", gradient), ("--divergence-gradient", divergence_gradient),
                                     ("--eps", eps_rows is not None), ("--activations", activations)) if given]
    if len(rows) > 1:
        raise InvalidArgumentError(f"{' and '.join(rows)} exclude each other")
    if divergence_gradient and svd_rank is not None:
        raise InvalidArgumentError("--svd-rank does not apply to --divergence-gradient (rank 1 already)")
    if activations and (svd_rank is not None or shard or dry_run or batch_memory is not None):
        raise InvalidArgumentError("--activations takes none of --svd-rank, --shard, --dry-run, --batch-memory")
    if layer is not None and not activations:
        raise InvalidArgumentError("--layer applies to --activations")
    task = TaskSpec.from_yaml(task_file)
    inputs = _check_before_loading(out, device=device, resume=resume, overwrite=overwrite, dry_run=dry_run,
                                   reads=(data, task_file, model))
    if activations:
        from npeff.ops.baselines import build_activation_store

        examples = load_examples(data, config=data_config, split=split, revision=data_revision)
        task.check_fields(examples.column_names)
        network, tokenizer = load_model_and_tokenizer(model, task.formulation, device=device, dtype=dtype,
                                                      gguf_file=gguf_file, revision=revision)
        result = build_activation_store(network, examples, task, out, tokenizer=tokenizer, layer=layer,
                                        batch_size=batch_size or 16, device=device, max_examples=max_examples,
                                        resume=resume, overwrite=overwrite, model_name=model, gguf_file=gguf_file,
                                        command=command_line(), progress=True)
        block = result.manifest["pef_spec"]["activation"]["layer"]
        if as_json:
            _echo_store(result)
            return
        click.echo(f"wrote {result.num_examples:,} activations (block {block}, d = {result.dim}) to {result.path}")
        return
    kind = ("gradient" if gradient else "divergence" if divergence_gradient
            else "eps" if eps_rows is not None else "exact")
    pef = PefSpec(kind=kind, eps_rows=eps_rows, svd_rank=svd_rank, seed=seed, exact_rows=exact_rows)
    shard_range = parse_shard(shard)
    examples = load_examples(data, config=data_config, split=split, revision=data_revision)
    task.check_fields(examples.column_names)
    network, tokenizer = load_model_and_tokenizer(model, task.formulation, device=device, dtype=dtype,
                                                  gguf_file=gguf_file, revision=revision)
    result = build_store(
        network, examples, task, out, tokenizer=tokenizer, pef=pef, projection=projection, dim=dim,
        seed=seed, include=include, exclude=exclude, batch_size=batch_size, batch_memory=batch_memory, device=device,
        max_examples=max_examples, shard=shard_range, resume=resume, overwrite=overwrite,
        dry_run=dry_run, model_name=model, gguf_file=gguf_file, command=command_line(), progress=True,
        inputs=inputs,
    )
    if dry_run:
        if as_json:
            echo_json(_plan_fields(result))
        else:
            click.echo(result.describe())
        return
    if as_json:
        _echo_store(result)
        return
    what = {"gradient": "gradients", "divergence": "divergence gradients"}.get(kind, "PEFs")
    click.echo(f"wrote {result.num_examples:,} {what} (r = {result.rank}, d = {result.dim}) to {result.path}")


def _check_before_loading(out: str, *, device: str, resume: bool, overwrite: bool, dry_run: bool,
                          reads: tuple) -> tuple:
    """What can be refused before the model and data are loaded (minutes for a real model): the
    device, ``--resume`` with ``--overwrite``, and an output that is not a store of ours or that
    overlaps what the build reads. Returns the local paths among ``reads``."""
    from pathlib import Path

    from npeff.ops.stream.inputs import check_device
    from npeff.store._files import check_output_dir, refuse_resume_with_overwrite
    from npeff.store._layout import holds_store

    check_device(device)
    refuse_resume_with_overwrite(resume, overwrite)
    inputs = tuple(Path(path) for path in reads if path is not None and Path(path).exists())
    if not dry_run:
        check_output_dir(out, what="store", is_ours=holds_store, overwrite=overwrite, resume=lambda _path: True,
                         inputs=inputs)
    return inputs


def _plan_fields(plan) -> dict:
    """What ``--dry-run --json`` prints: the :class:`~npeff.ops.pef.BuildPlan`'s fields (what the text
    says: n, m, the example range, r, d, classes) and ``store_bytes``."""
    import dataclasses

    fields = dataclasses.asdict(plan)
    fields["example_range"] = list(plan.example_range)
    return {"dry_run": True, **fields, "store_bytes": plan.store_bytes}


def _echo_store(store) -> None:
    """The store just written, as ``npeff info --json`` describes it."""
    from npeff.store import store_info

    echo_json(store_info(store))


COMMANDS = [build]
