"""The math of npeff: PEF computation from torch models, task formulations, the decomposition."""

from npeff.ops.pef.build import BuildPlan, build_store
from npeff.ops.decomposition import DecomposeConfig, decompose, fit_coefficients
from npeff.ops.pef import PefSpec
from npeff.ops.pef.tasks import TaskSpec

__all__ = ["BuildPlan", "DecomposeConfig", "PefSpec", "TaskSpec", "build_store", "decompose",
           "fit_coefficients"]
