"""``npeff demo``: the whole pipeline on a planted task, and the projection's self-check."""

from npeff.ops.demo.pipeline import DemoSettings, run_demo
from npeff.ops.demo.projection import projection_demo

__all__ = ["DemoSettings", "projection_demo", "run_demo"]
