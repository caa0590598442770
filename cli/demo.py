"""``npeff demo``: a small end-to-end run on random data that shows the toolkit works here."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log2-n", default=20, show_default=True, type=click.IntRange(8, 30),
              help="Length of the vectors to project is 2**LOG2_N.")
@click.option("--dim", "-d", default=1024, show_default=True, type=int,
              help="Projected dimension d (a multiple of 32).")
@click.option("--rows", "-r", default=32, show_default=True, type=click.IntRange(2, 4096),
              help="Number of random vectors projected in one call.")
@click.option("--seed", default=0, show_default=True, type=int, help="Projection seed.")
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]), help="Where the kernel runs.")
def demo(log2_n: int, dim: int, rows: int, seed: int, backend: str) -> None:
    """Project random vectors with the seeded sparse projection and check what it promises.

    Prints throughput, how well inner products and norms survive the projection (relative to the
    Johnson-Lindenstrauss scale 1/sqrt(d)), block additivity and the adjoint identity.
    """
    from npeff.ops.demo import projection_demo

    report = projection_demo(n=2**log2_n, d=dim, rows=rows, seed=seed, backend=backend)
    click.echo(f"projected {rows} vectors of length {report['n']:,} to d={dim} "
               f"on {report['backend']} in {report['seconds']:.3f} s "
               f"({report['gb_per_s']:.2f} GB/s of input)")
    click.echo(f"  norm ratio ||Ax||/||x||: mean {report['norm_ratio_mean']:.4f}, "
               f"std {report['norm_ratio_std']:.4f} (expected about 1 and <~ "
               f"{report['expected_std']:.4f})")
    click.echo(f"  cosine error of pairs: max {report['cosine_error_max']:.4f}")
    click.echo(f"  block additivity error: {report['additivity_error']:.2e}")
    click.echo(f"  adjoint identity <Ax,y> - <x,A^T y>: {report['adjoint_error']:.2e}")
    status = "OK" if report["ok"] else "FAILED"
    click.echo(f"demo {status}")
    if not report["ok"]:
        raise SystemExit(1)
