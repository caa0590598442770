"""The math of npeff: PEF computation from torch models, task formulations, the decomposition,
analysis, reports.

Subpackages: :mod:`~npeff.ops.pef` (building PEF stores), :mod:`~npeff.ops.stream` (passes over a
store), :mod:`~npeff.ops.decomposition` (NPEFF and coefficient fitting), :mod:`~npeff.ops.analysis`,
:mod:`~npeff.ops.report`, :mod:`~npeff.ops.demo`. The names below are imported on first use, so that
importing a light submodule (a config) does not load torch and transformers.
"""

from npeff._lazy import lazy_exports

_EXPORTS = {
    "BuildPlan": "npeff.ops.pef.build",
    "build_store": "npeff.ops.pef.build",
    "PefSpec": "npeff.ops.pef.spec",
    "TaskSpec": "npeff.ops.pef.tasks",
    "DecomposeConfig": "npeff.ops.decomposition.config",
    "decompose": "npeff.ops.decomposition.driver",
    "fit_coefficients": "npeff.ops.decomposition.fit",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
