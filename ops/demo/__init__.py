"""``npeff demo``: the whole pipeline on a planted task, and the projection's self-check.

Modules:
    planted: the planted strategies, the dataset made from them, the tiny GPT-2 classifier.
    alignment: how well components match the planted strategies, against chance.
    pipeline: :class:`DemoSettings` and :func:`run_demo` (train, build, decompose, report, align), on
        :func:`fixed_threads` so that the figures do not depend on the machine's thread counts.
    projection: :func:`projection_demo`, the projection's self-check (``npeff check-projection``).
"""

from npeff.ops.demo.pipeline import DemoSettings, run_demo
from npeff.ops.demo.projection import projection_demo

__all__ = ["DemoSettings", "projection_demo", "run_demo"]
