"""The math of npeff: PEF computation from torch models, task formulations."""

from npeff.ops.build import BuildPlan, build_store
from npeff.ops.pef import PefSpec
from npeff.ops.tasks import TaskSpec

__all__ = ["BuildPlan", "PefSpec", "TaskSpec", "build_store"]
