"""NPEFF decomposition streamed over a PEF store (paper, Algorithm 1 and appendix C).

One pass over the store per iteration. For each chunk ``(G_c [k, r, d], W_c [k, C])``, with ``H``,
``HH^T`` and ``M = HH^T * HH^T`` fixed for the iteration::

    B_c = G_c H^T                         [k, r, C]
    N_c = sum_r B_c^2                     [k, C]
    W_c <- W_c * N_c / (W_c M)            (joint steps only)
    T2 += -4 (W_c * B_c)^T G_c            [C, d]
    W^T W += W_c^T W_c                    [C, C]
    loss += sum_i ||G_i G_i^T||^2 - 2 sum W_c * N_c + sum (W_c M) * W_c

then ``T1 = 4 ((W^T W) * HH^T) H`` and ``H <- H - lr (T1 + T2)``. No ``n x n`` matrix ever exists.
Chunks are the store's shards; those that fit the memory budget stay resident (on the compute
device), the others are read again each iteration in pieces. In one process, each pass is a dask
graph (a load and a compute task per piece, a tree reduction of the partial sums) on dask's
threaded scheduler: loads overlap compute. ``W`` rows live with their chunk. With a
``dask.distributed`` cluster, chunks of ``G`` and ``W`` stay on the workers across iterations
(one actor per worker) and only ``H`` and the partial sums travel.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from npeff.errors import DecompositionError, IncompatibleStoresError, InvalidArgumentError
from npeff.store import PefStore, open_store
from npeff.store.decomposition import (
    CHECKPOINT,
    Decomposition,
    load_array,
    open_decomposition,
    prepare_output,
    save_array,
    write_decomposition,
)
from npeff.store.manifest import new_provenance, now_iso
from npeff.store.schema import STATUS_OK

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_TINY = 1e-30


def parse_bytes(text: str | int | None) -> int | None:
    """``"2GB"``, ``"512MiB"``, ``"1e9"`` or an int -> bytes."""
    if text is None or isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(i?B)?\s*", str(text))
    if not match:
        raise InvalidArgumentError(f"memory budget must look like 2GB, 512MiB or 1e9, got {text!r}")
    value = float(match.group(1))
    unit = match.group(2)
    base = 1024 if match.group(3) == "iB" else 1000
    return int(value * base ** " KMGT".index(unit or " "))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecomposeConfig:
    """Hyperparameters of an NPEFF decomposition (paper defaults).

    Attributes:
        n_components: C, the number of components.
        warmup_steps: steps updating H only (W frozen), at ``warmup_lr``.
        joint_steps: steps updating W then H, at ``joint_lr``.
        seed: seed of the initialisation (W ~ U[0, 1], H ~ N(0, sqrt(2) / sqrt(C d))).
        dtype: compute dtype, ``float32`` or ``float64``.
    """

    n_components: int
    warmup_steps: int = 1000
    joint_steps: int = 3000
    warmup_lr: float = 1e-5
    joint_lr: float = 3e-4
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, int) or self.n_components < 1:
            raise InvalidArgumentError(f"the number of components must be an integer >= 1, got {self.n_components!r}")
        for name in ("warmup_steps", "joint_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("warmup_lr", "joint_lr"):
            if not float(getattr(self, name)) > 0:
                raise InvalidArgumentError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.dtype not in _DTYPES:
            raise InvalidArgumentError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.joint_steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# The per-chunk work (shared by the local and the distributed schedulers)


def coefficient_numerator(g: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``B = G H^T`` ``[k, r, C]`` and ``N = sum_r B^2`` ``[k, C]`` (appendix C.1)."""
    k, r, d = g.shape
    b = (g.reshape(k * r, d) @ h.T).reshape(k, r, -1)
    return b, (b * b).sum(dim=1)


def coefficient_update(w: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Multiplicative update ``W <- W * N / (W M)`` with ``M = (HH^T) * (HH^T)`` (appendix C.1).

    Coefficients that fall below the dtype's smallest normal number are set to zero: the updates
    drive unused coefficients towards zero, and subnormal floats make every later product with W
    up to a hundred times slower on CPUs (flush-to-zero, done here so that it holds on every thread
    and every worker).
    """
    w = w * n / (w @ m).clamp_min(_TINY)
    return w.masked_fill_(w < torch.finfo(w.dtype).tiny, 0.0)


def chunk_step(g, w, h, m, joint: bool, constant):
    """One chunk's share of an iteration; returns ``(w, T2, W^T W, loss)`` partials."""
    b, n = coefficient_numerator(g, h)
    if joint:
        w = coefficient_update(w, n, m)
    k, r, d = g.shape
    # the factor -4 (a power of two: exact) scales the small [k, r, C] operand, not the [C, d] result
    t2 = ((-4.0 * w)[:, None, :] * b).reshape(k * r, -1).T @ g.reshape(k * r, d)
    wtw = w.T @ w
    loss = constant - 2.0 * (w * n).sum() + ((w @ m) * w).sum()
    return w, t2, wtw, loss


def masked_chunk_step(g, w, mask, h, m, joint: bool, constant):
    """:func:`chunk_step` with the examples that are not ``ok`` kept at zero; returns the new W
    rows and the partial sums ``(T2, W^T W, loss)`` (loss in float64)."""
    w_new, t2, wtw, loss = chunk_step(g, w, h, m, joint, constant)
    return (w_new * mask[:, None] if joint else w), (t2, wtw, loss.double())


def pef_self_products(g: torch.Tensor) -> torch.Tensor:
    """``sum_i ||G_i^T G_i||_F^2`` of a chunk, via the small ``G_i G_i^T`` (the loss's constant)."""
    gram = g @ g.transpose(1, 2)
    return (gram * gram).sum()


# ----------------------------------------------------------------------------------------------
# Local scheduler: resident chunks within the budget, the rest streamed, loads overlapping compute


#: streamed shards are read in pieces of at most this many bytes (whole inner chunks)
STREAM_PIECE_BYTES = 32 << 20


class ChunkCache:
    """The store as compute tensors, one pass at a time, scheduled by dask.

    Shards stay resident while within ``budget`` bytes; the others are read again every pass, in
    pieces of at most :data:`STREAM_PIECE_BYTES`. Resident shards live on the compute device while
    within ``device_budget`` bytes (default: all of them on a CPU; on a GPU, 90% of its free memory
    less W and the pieces in flight), the rest in host memory (pinned), copied over each pass.

    :meth:`run_pass` runs one pass as a dask graph: a load task and a compute task per piece, and
    a tree reduction of the compute tasks' partial sums, on dask's threaded scheduler with two
    threads. Compute tasks hand their contraction to one compute thread, so they take turns (torch
    already uses every core) while the other dask thread loads the next pieces: I/O overlaps
    compute, and dask's ordering keeps the pieces in flight to about three.
    """

    def __init__(self, store: PefStore, *, device: str, dtype: torch.dtype, budget: int | None,
                 n_components: int = 0, device_budget: int | None = None):
        self.store, self.device, self.dtype = store, device, dtype
        per_value = torch.empty((), dtype=dtype).element_size()
        per_example = store.rank * store.dim * per_value
        chunk = store.config.chunk_examples
        self.piece_examples = max(chunk, STREAM_PIECE_BYTES // per_example // chunk * chunk)
        sizes = [s.num_examples * per_example for s in store.shards]
        if budget is not None:
            # the budget also covers W (with its update temporaries) and, when anything streams,
            # the pieces in flight: the one computed on, one loaded and waiting, one being loaded
            budget -= 3 * store.num_examples * n_components * per_value
            if sum(sizes) > budget:
                budget -= 3 * min(self.piece_examples, max(s.num_examples for s in store.shards)) * per_example
        if device_budget is None and torch.device(device).type == "cuda":
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            in_flight = 3 * min(self.piece_examples, max(s.num_examples for s in store.shards)) * per_example
            device_budget = int(0.9 * free) - 3 * store.num_examples * n_components * per_value - in_flight
        self.resident: dict[int, torch.Tensor | None] = {}
        self.on_device: dict[int, bool] = {}  # resident shard -> on the compute device (else host)
        used = on_device = 0
        for shard, size in zip(store.shards, sizes):
            if budget is None or used + size <= budget:
                used += size
                self.resident[shard.index] = None  # filled on first read
                self.on_device[shard.index] = device_budget is None or on_device + size <= device_budget
                on_device += size if self.on_device[shard.index] else 0
        self.resident_bytes = used
        self.device_bytes = on_device
        self.constants: dict[int, torch.Tensor] = {}
        self._compute_thread = None
        self._pool = None

    def pieces(self) -> list[tuple[int, int, int, bool]]:
        """``(shard index, start, stop, resident)`` in store order."""
        out = []
        for shard in self.store.shards:
            if shard.index in self.resident:
                out.append((shard.index, shard.start, shard.stop, True))
            else:
                out += [(shard.index, start, min(start + self.piece_examples, shard.stop), False)
                        for start in range(shard.start, shard.stop, self.piece_examples)]
        return out

    def load(self, shard: int, start: int, stop: int, resident: bool) -> torch.Tensor:
        """Examples ``[start, stop)`` as a compute tensor (a resident shard is read once)."""
        if resident and self.resident[shard] is not None:
            return self.resident[shard].to(self.device, non_blocking=True)
        g = torch.from_numpy(self.store.read(start, stop)).to(dtype=self.dtype)
        if not resident:
            return g.to(self.device)
        if self.on_device[shard]:
            g = self.resident[shard] = aligned(g.to(self.device))
            return g
        host = aligned(g)
        if torch.device(self.device).type == "cuda":
            host = host.pin_memory()
        self.resident[shard] = host
        return host.to(self.device, non_blocking=True)

    def _compute(self, per_chunk, start: int, stop: int, g: torch.Tensor):
        # one thread runs every contraction: they take turns (torch already uses every core) and
        # share one OpenMP team, instead of a team per dask thread spinning while the other works
        if self._compute_thread is None:
            self._compute_thread = ThreadPoolExecutor(1, thread_name_prefix="npeff-compute")
        return self._compute_thread.submit(per_chunk, start, stop, g).result()

    def constant(self, start: int, g: torch.Tensor) -> torch.Tensor:
        """The piece's constant loss term ``sum_i ||G_i^T G_i||^2`` (computed once)."""
        if start not in self.constants:
            self.constants[start] = pef_self_products(g)
        return self.constants[start]

    def run_pass(self, per_chunk: Callable[[int, int, torch.Tensor], Any]) -> Any:
        """Call ``per_chunk(start, stop, g)`` on every piece; the elementwise sum of the tuples it
        returns (None when it returns None)."""
        import dask.threaded

        graph, level = {}, []
        for shard, start, stop, resident in self.pieces():
            graph[("npeff-load", start)] = (self.load, shard, start, stop, resident)
            graph[("npeff-chunk", start)] = (self._compute, per_chunk, start, stop, ("npeff-load", start))
            level.append(("npeff-chunk", start))
        depth = 0
        while len(level) > 1:  # pairwise tree reduction of the partial sums
            depth += 1
            paired = []
            for i in range(0, len(level) - 1, 2):
                graph[("npeff-sum", depth, i)] = (_add_partials, level[i], level[i + 1])
                paired.append(("npeff-sum", depth, i))
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
        if self._pool is None:
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="npeff-pass")
        return dask.threaded.get(graph, level[0], pool=self._pool)

    def close(self) -> None:
        for pool in (self._pool, self._compute_thread):
            if pool is not None:
                pool.shutdown()
        self._pool = self._compute_thread = None


def _add_partials(first, second):
    """Sum two tuples of partial sums into the first (its tensors are the graph's own temporaries:
    adding in place saves allocating and faulting in a fresh [C, d] tensor per piece)."""
    if first is None:
        return None
    for total, part in zip(first, second):
        total.add_(part)
    return first


def aligned(g: torch.Tensor) -> torch.Tensor:
    """``g`` in 64-byte-aligned memory (a copy when needed). Store reads come back 16-byte aligned,
    and CPU GEMMs on them run about 10% slower: worth one copy for data used every step."""
    return g if g.device.type != "cpu" or g.data_ptr() % 64 == 0 else g.clone()


def _ok_mask(store: PefStore, device, dtype) -> torch.Tensor:
    status = np.asarray(store.examples.column("status").to_pylist()) == STATUS_OK
    return torch.from_numpy(status).to(device=device, dtype=dtype)


def _initial_state(config: DecomposeConfig, m: int, d: int, mask: torch.Tensor):
    generator = torch.Generator().manual_seed(config.seed)
    w = torch.rand(m, config.n_components, generator=generator, dtype=torch.float64)
    h = torch.randn(config.n_components, d, generator=generator, dtype=torch.float64)
    h *= 2 ** 0.5 / (config.n_components * d) ** 0.5
    return w * mask.cpu().double()[:, None], h


def _check_store(store: PefStore) -> None:
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finalize it first")
    if store.num_examples == 0:
        raise InvalidArgumentError(f"{store.path} holds no examples")


def check_device(device: str, cluster: str | None = None) -> None:
    """Refuse a device torch cannot use here (a remote cluster's workers may have GPUs we lack)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    remote = cluster is not None and not cluster.startswith("local:")
    if parsed.type == "cuda" and not remote and not torch.cuda.is_available():
        raise InvalidArgumentError(f"--device {device}: torch sees no CUDA GPU here "
                                   f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})")


def decompose(
    store: PefStore | str | Path,
    n_components: int | None = None,
    *,
    config: DecomposeConfig | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    memory_budget: int | str | None = None,
    device_memory_budget: int | str | None = None,
    cluster: str | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    command: str | None = None,
    **overrides: Any,
) -> Decomposition | dict:
    """Run NPEFF on a store, streaming it from disk.

    Args:
        store: a :class:`PefStore` or its path.
        n_components: C (or give ``config``); further :class:`DecomposeConfig` fields as keywords.
        out: decomposition directory to write (``W.npy``, ``H.npy``, ``losses.npy``, manifest);
            without it, a dict with ``W``, ``H``, ``losses`` is returned.
        device: torch device of the contractions.
        memory_budget: bytes (or ``"2GB"``) of chunks kept resident; the rest is re-read every
            iteration, loads overlapping compute. None: everything resident.
        device_memory_budget: bytes of the resident chunks kept on the compute device (default:
            all on a CPU; 90% of the free memory of a GPU, less W and the pieces in flight); the
            other resident chunks stay in host memory and are copied over each iteration.
        cluster: ``"local:N"`` (N workers in this process; a LocalCUDACluster with ``cuda``) or
            the address of a dask.distributed scheduler.
        checkpoint_every: write H, W, the step and the losses every K steps (needs ``out``).
        resume: continue from the checkpoint in ``out``.

    Notes:
        Memory: ``W`` ``[m, C]`` and ``H`` ``[C, d]`` plus the resident chunks (at most the budget)
        and at most three streamed pieces of 32 MiB (one computed on, two loaded or loading).
    """
    store = store if isinstance(store, PefStore) else open_store(store)
    _check_store(store)
    check_device(device, cluster)
    if config is None:
        config = DecomposeConfig(n_components=n_components, **overrides)
    elif n_components is not None or overrides:
        raise InvalidArgumentError("give either config or n_components and keywords, not both")
    budget = parse_bytes(memory_budget)
    device_budget = parse_bytes(device_memory_budget)
    dtype = _DTYPES[config.dtype]
    mask = _ok_mask(store, device, dtype)
    if not bool(mask.any()):
        raise InvalidArgumentError(f"no example of {store.path} has status ok (all non-finite or skipped)")
    out_path = Path(out) if out is not None else None
    if checkpoint_every and out_path is None:
        raise InvalidArgumentError("checkpoints need an output directory (--out)")
    if out_path is not None:
        prepare_output(out_path, overwrite=overwrite, resume=resume)

    w0, h0 = _initial_state(config, store.num_examples, store.dim, mask)
    start, losses = 0, []
    checkpoint = out_path / CHECKPOINT / "state.npz" if out_path is not None else None
    if resume:
        if checkpoint is None or not checkpoint.is_file():
            raise InvalidArgumentError(f"nothing to resume: {out_path} has no checkpoint")
        w0, h0, start, losses = _load_checkpoint(checkpoint, config, store)

    runner = _DistributedRunner(store, cluster, dtype, device) if cluster else _LocalRunner(
        store, device, dtype, budget, config.n_components, device_budget)
    try:
        w, h = runner.start(w0, h0, mask)
        from tqdm.auto import tqdm

        bar = tqdm(total=config.total_steps, initial=start, desc="decompose", unit="step", disable=not progress,
                   dynamic_ncols=True)
        step_seconds = []
        for step in range(start, config.total_steps):
            began = time.perf_counter()
            joint = step >= config.warmup_steps
            lr = config.joint_lr if joint else config.warmup_lr
            hht = h @ h.T
            m_matrix = hht * hht
            t2, wtw, loss = runner.iteration(h, m_matrix, joint)
            loss_value = float(loss)
            if not np.isfinite(loss_value):
                raise DecompositionError(
                    f"the loss became non-finite at step {step}"
                    + (f"; the last good checkpoint is kept in {checkpoint.parent}" if checkpoint is not None
                       and checkpoint.is_file() else "")
                    + "; lower the learning rates")
            t1 = 4.0 * (wtw * hht) @ h
            h = h - lr * (t1 + t2)
            losses.append(loss_value)
            step_seconds.append(time.perf_counter() - began)
            bar.set_postfix(loss=f"{loss_value:.5g}", refresh=False)
            bar.update(1)
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < config.total_steps:
                _save_checkpoint(checkpoint, runner.gather_w(), h, step + 1, losses, config, store)
        bar.close()
        w = runner.gather_w()
    finally:
        runner.close()
    norms = h.norm(dim=1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    h = h / safe[:, None]
    w = w * (safe ** 2)[None, :].to(w)
    result = {"W": w.cpu().numpy(), "H": h.cpu().numpy(), "losses": np.asarray(losses),
              "step_seconds": np.asarray(step_seconds)}
    if out_path is None:
        return result
    manifest = {
        "kind": "decomposition", "config": config.to_dict(), "n_components": config.n_components,
        "num_examples": store.num_examples, "dim": store.dim, "store": str(store.path),
        "store_fingerprint": store.fingerprint, "store_content_id": store.content_id, "memory_budget": budget, "cluster": cluster,
        "device": device, "final_loss": losses[-1] if losses else None,
        "median_step_seconds": float(np.median(step_seconds)) if step_seconds else None,
        "provenance": dict(new_provenance(command), finalized=now_iso()),
    }
    write_decomposition(out_path, W=result["W"], H=result["H"], losses=result["losses"], manifest=manifest)
    return open_decomposition(out_path)


def _save_checkpoint(path: Path, w, h, step, losses, config, store) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.savez(handle, W=w.cpu().numpy(), H=h.cpu().numpy(), step=np.int64(step), losses=np.asarray(losses),
                 config=np.str_(json.dumps(config.to_dict(), sort_keys=True)),
                 fingerprint=np.str_(store.fingerprint), m=np.int64(store.num_examples))
    path.with_name(path.name + ".partial").replace(path)


def _load_checkpoint(path: Path, config: DecomposeConfig, store: PefStore):
    with np.load(path, allow_pickle=False) as data:
        saved = json.loads(str(data["config"]))
        if saved != json.loads(json.dumps(config.to_dict(), sort_keys=True)):
            raise InvalidArgumentError(f"the checkpoint in {path.parent} was made with other settings: {saved}")
        if str(data["fingerprint"]) != store.fingerprint or int(data["m"]) != store.num_examples:
            raise IncompatibleStoresError(f"the checkpoint in {path.parent} belongs to another store")
        return (torch.from_numpy(data["W"]).double(), torch.from_numpy(data["H"]).double(), int(data["step"]),
                list(data["losses"]))


class _LocalRunner:
    def __init__(self, store, device, dtype, budget, n_components, device_budget=None):
        self.store, self.device, self.dtype = store, device, dtype
        self.cache = ChunkCache(store, device=device, dtype=dtype, budget=budget, n_components=n_components,
                                device_budget=device_budget)

    def start(self, w0, h0, mask):
        self.mask = mask
        self.w = w0.to(self.device, self.dtype)
        return None, h0.to(self.device, self.dtype)

    def iteration(self, h, m_matrix, joint):
        def per_chunk(start, stop, g):
            self.w[start:stop], partials = masked_chunk_step(g, self.w[start:stop], self.mask[start:stop], h,
                                                             m_matrix, joint, self.cache.constant(start, g))
            return partials

        return self.cache.run_pass(per_chunk)

    def gather_w(self):
        return self.w.clone()

    def close(self):
        self.cache.close()


class _Partition:
    """The chunks of G that live on one dask worker for the whole run, with their W rows.

    Created on its worker as a dask actor: the data are read there once, and every step only H
    and ``M`` arrive and the partition's summed partials (T2, W^T W, loss) leave.
    """

    def __init__(self, path: str, ranges: list[tuple[int, int]], dtype: str, device: str = "cpu"):
        try:
            from distributed import get_worker

            torch.set_num_threads(max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        store = open_store(path)
        self.ranges, self.device = ranges, device
        self.g = [aligned(torch.from_numpy(store.read(start, stop)).to(device=device, dtype=_DTYPES[dtype]))
                  for start, stop in ranges]
        self.constants = [pef_self_products(g) for g in self.g]
        self.w: list[torch.Tensor] = []
        self.mask: list[torch.Tensor] = []

    def set_state(self, w: list[torch.Tensor], mask: list[torch.Tensor]) -> None:
        self.w = [part.to(self.device) for part in w]
        self.mask = [part.to(self.device) for part in mask]

    def step(self, h: torch.Tensor, m_matrix: torch.Tensor, joint: bool):
        """One iteration over this partition's chunks; the summed partials, on the CPU."""
        h, m_matrix = h.to(self.device), m_matrix.to(self.device)
        total = None
        for i, g in enumerate(self.g):
            self.w[i], partials = masked_chunk_step(g, self.w[i], self.mask[i], h, m_matrix, joint,
                                                    self.constants[i])
            total = partials if total is None else _add_partials(total, partials)
        return tuple(part.cpu() for part in total)

    def coefficients(self) -> list[torch.Tensor]:
        return [part.cpu() for part in self.w]


#: settings of the workers npeff starts itself (``--cluster local:N``): they hold large long-lived
#: tensors, so glibc keeps its default memory reuse in worker processes (dask's
#: MALLOC_TRIM_THRESHOLD_ makes every temporary a fresh mmap, about 10% of a step), and the
#: statistical profiler (a thread sampling every 10 ms) is off.
def _local_cluster_config() -> dict:
    import importlib

    import dask

    importlib.import_module("distributed")  # registers distributed's configuration defaults
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False}


def _start_local_cluster(workers: int, device: str):
    """A ``LocalCUDACluster`` (one worker process per GPU) for ``cuda`` when dask-cuda is
    installed; otherwise a ``LocalCluster`` of ``workers`` single-threaded workers inside this
    process (torch releases the GIL, so they use as many cores, without copying H and the partials
    between processes). Workers in other processes or machines: start them and pass the address."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(_local_cluster_config()):
        if device.startswith("cuda"):
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise InvalidArgumentError(
                    "--cluster local:N with --device cuda needs dask-cuda (pip install dask-cuda)") from None
            return LocalCUDACluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None)


class _DistributedRunner:
    """One :class:`_Partition` actor per worker: chunk i on worker i mod N; G and W never move,
    H is sent to each partition and the partials come back to be summed here."""

    def __init__(self, store, cluster, dtype, device="cpu"):
        from distributed import Client

        self.store, self.dtype, self.device = store, dtype, device
        self._cluster = None
        self._threads = torch.get_num_threads()  # in-process workers set torch's (process-wide) threads
        if cluster.startswith("local:"):
            try:
                workers = int(cluster.split(":", 1)[1])
            except ValueError:
                raise InvalidArgumentError(f"--cluster local:N needs a number of workers, got {cluster!r}") from None
            if workers < 1:
                raise InvalidArgumentError(f"--cluster local:N needs N >= 1, got {cluster!r}")
            self._cluster = _start_local_cluster(workers, device)
            self.client = Client(self._cluster)
            self.client.wait_for_workers(workers, timeout=120)
        else:
            try:
                self.client = Client(cluster, timeout="20s")
            except OSError as error:
                raise InvalidArgumentError(f"cannot reach the dask scheduler at {cluster}: {error}") from None
        self.name = {torch.float32: "float32", torch.float64: "float64"}[dtype]

    def start(self, w0, h0, mask):
        client = self.client
        client.wait_for_workers(1, timeout=120)
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise InvalidArgumentError("the dask cluster has no workers")
        shards = self.store.shards
        homes = [(address, [(s.start, s.stop) for s in shards[i::len(workers)]])
                 for i, address in enumerate(workers[:len(shards)])]  # shard i on worker i mod N
        futures = [client.submit(_Partition, str(self.store.path), ranges, self.name, self.device, workers=[address],
                                 allow_other_workers=False, actor=True, pure=False)
                   for address, ranges in homes]
        self.partitions = [future.result() for future in futures]
        self.ranges = [ranges for _, ranges in homes]
        w0 = w0.to(self.dtype)
        mask = mask.cpu().to(self.dtype)
        for partition, ranges in zip(self.partitions, self.ranges):
            partition.set_state([w0[a:b].clone() for a, b in ranges], [mask[a:b].clone() for a, b in ranges]).result()
        return None, h0.to(self.dtype)

    def iteration(self, h, m_matrix, joint):
        h_cpu, m_cpu = h.cpu(), m_matrix.cpu()
        calls = [partition.step(h_cpu, m_cpu, joint) for partition in self.partitions]
        partials = [call.result() for call in calls]
        t2 = sum(p[0] for p in partials)
        wtw = sum(p[1] for p in partials)
        loss = sum(p[2] for p in partials)
        return t2.to(h.device), wtw.to(h.device), loss.to(h.device)

    def gather_w(self):
        parts = {}
        for partition, ranges in zip(self.partitions, self.ranges):
            for (start, _), rows in zip(ranges, partition.coefficients().result()):
                parts[start] = rows
        return torch.cat([parts[start] for start in sorted(parts)])

    def close(self):
        import logging

        self.partitions = []
        # shutting down in-process workers makes distributed log closed comms as errors: noise here
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            quiet.setLevel(level)
            torch.set_num_threads(self._threads)


# ----------------------------------------------------------------------------------------------
# Coefficient fitting


def fit_coefficients(decomposition: Decomposition | str | Path, store: PefStore | str | Path, *,
                     out: str | Path | None = None, steps: int = 100, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", memory_budget: int | str | None = None, overwrite: bool = False,
                     progress: bool = False, command: str | None = None):
    """Fit W for ``store`` with the decomposition's H fixed (W-only multiplicative updates).

    The store must share the decomposition's projection and parameter layout (its fingerprint).
    Returns the coefficients ``[m, C]`` (and writes ``W.npy`` with a manifest to ``out``).
    """
    decomposition = decomposition if isinstance(decomposition, Decomposition) else open_decomposition(decomposition)
    store = store if isinstance(store, PefStore) else open_store(store)
    _check_store(store)
    check_device(device)
    if store.fingerprint != decomposition.manifest["store_fingerprint"]:
        raise IncompatibleStoresError(
            f"{store.path} (fingerprint {store.fingerprint}) does not share the projection and parameter "
            f"layout of the decomposition's store (fingerprint {decomposition.manifest['store_fingerprint']})")
    if store.dim != decomposition.H.shape[1]:
        raise IncompatibleStoresError(f"store dim {store.dim} differs from the decomposition's {decomposition.H.shape[1]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"steps must be an integer >= 1, got {steps!r}")
    torch_dtype = _DTYPES[dtype]
    h = torch.from_numpy(decomposition.H).to(device=device, dtype=torch_dtype)
    c = h.shape[0]
    hht = h @ h.T
    m_matrix = hht * hht
    mask = _ok_mask(store, device, torch_dtype)
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(store.num_examples, c, generator=generator, dtype=torch.float64).to(device, torch_dtype)
    w *= mask[:, None]
    cache = ChunkCache(store, device=device, dtype=torch_dtype, budget=parse_bytes(memory_budget), n_components=c)
    from tqdm.auto import tqdm

    def per_chunk(start, stop, g):
        _, n = coefficient_numerator(g, h)
        w[start:stop] = coefficient_update(w[start:stop], n, m_matrix)

    try:
        for _ in tqdm(range(steps), desc="fit", unit="step", disable=not progress):
            cache.run_pass(per_chunk)
    finally:
        cache.close()
    coefficients = w.cpu().numpy()
    if out is not None:
        out = Path(out)
        prepare_output(out, overwrite=overwrite, resume=False)
        save_array(out / "W.npy", coefficients)
        from npeff.store import _files

        _files.atomic_write_json(out / "manifest.json", {
            "format": "npeff-coefficients", "format_version": 1, "decomposition": str(decomposition.path),
            "store": str(store.path), "store_fingerprint": store.fingerprint,
            "store_content_id": store.content_id, "steps": steps,
            "num_examples": store.num_examples, "n_components": c,
            "provenance": dict(new_provenance(command), finalized=now_iso())})
    return coefficients


__all__ = ["DecomposeConfig", "DecompositionError", "chunk_step", "decompose", "fit_coefficients",
           "load_array", "parse_bytes"]
