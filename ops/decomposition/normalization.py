"""PEFs normalised as they are read (paper, section 2.2), and why a loss became non-finite.

The paper scales every PEF to ``||G_i^T G_i||_F = 1`` before decomposing: otherwise the loss is
dominated by the examples with the largest PEFs, usually atypical ones. ``npeff build`` writes
normalised PEFs and says so in the manifest (``pef_spec.normalization``); a store written through
:func:`npeff.store.create_store` counts as not normalised unless its writer said otherwise. For
such a store, :func:`plan_normalization` measures every example's norm

    n_i = ||G_i^T G_i||_F = ||G_i G_i^T||_F      (float64, via the small [r, r] matrix G_i G_i^T)

in one pass, and the runs multiply example ``i``'s rows by ``n_i^(-1/2)`` as they read them for
the contractions (:class:`npeff.ops.stream.PieceLoader`, the cluster's partitions): resident
pieces are kept scaled, streamed ones are scaled as they arrive, and no normalised copy of the
store is ever written or held. Zero PEFs stay zero. The norms are recorded with the result, as a
build records them in the example table (``pef_norm``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from npeff.errors import DecompositionError, InvalidArgumentError

#: input values above this are called huge whatever the compute dtype
HUGE_VALUE = 1e30


@dataclasses.dataclass(frozen=True)
class PefStatistics:
    """Per example of a store, as stored (float64).

    Attributes:
        norms: ``[m]``, ``||G_i^T G_i||_F`` (NaN or inf where the data are not finite).
        max_abs: ``[m]``, the largest ``|value|`` of the example's rows.
    """

    norms: np.ndarray
    max_abs: np.ndarray


def pef_statistics(store, *, device: str = "cpu") -> PefStatistics:
    """One pass over ``store``, piece by piece, computing :class:`PefStatistics` in float64.

    Notes:
        Memory: one streamed piece (at most 32 MiB as float64) and its ``[k, r, r]`` Gram
        matrices; nothing of the store is kept. Reads overlap the computation.
    """
    from npeff.ops.stream import PieceLoader, plan_residency, run_pass

    norms = np.zeros(store.num_examples)
    max_abs = np.zeros(store.num_examples)
    pieces = plan_residency(store, dtype=torch.float64, device=device, memory_budget=0).pieces

    def measure(piece, g: torch.Tensor) -> None:
        gram = g @ g.transpose(1, 2)
        norms[piece.start:piece.stop] = torch.linalg.matrix_norm(gram).cpu().numpy()
        max_abs[piece.start:piece.stop] = g.abs().amax(dim=(1, 2)).cpu().numpy()

    run_pass(pieces, PieceLoader(store, device=device, dtype=torch.float64), measure)
    return PefStatistics(norms, max_abs)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How a run treats the size of a store's PEFs.

    Attributes:
        requested: whether normalisation was asked for (``normalize``).
        store: the store's ``pef_spec.normalization`` (None when its manifest does not say).
        statistics: the measured :class:`PefStatistics` when the run scales the PEFs (or once a
            failure was explained), else None.
    """

    requested: bool
    store: str | None
    statistics: PefStatistics | None = None

    @property
    def scaled(self) -> bool:
        """Whether the run multiplies each example by ``n_i^(-1/2)`` as it reads it."""
        return self.requested and self.statistics is not None

    @property
    def norms(self) -> np.ndarray | None:
        """``[m]`` float64 ``||G_i^T G_i||_F`` before normalisation, when the run scales."""
        return self.statistics.norms if self.scaled else None

    @property
    def factors(self) -> torch.Tensor | None:
        """``[m]`` float64 ``n_i^(-1/2)`` (0 for zero PEFs), or None when the PEFs are used as stored."""
        if not self.scaled:
            return None
        norms = torch.from_numpy(self.statistics.norms)
        usable = torch.isfinite(norms) & (norms > 0)
        return torch.where(usable, norms.where(usable, torch.ones_like(norms)).rsqrt(), torch.zeros_like(norms))

    def record(self) -> dict:
        """What the result's manifest records: ``normalize`` (asked for), ``store`` (what the
        store says) and ``scaled`` (whether the run normalised the PEFs as it read them; the
        norms are then in ``pef_norms.npy``)."""
        return {"normalize": self.requested, "store": self.store, "scaled": self.scaled}


def plan_normalization(store, normalize: bool, *, mask: torch.Tensor, device: str = "cpu") -> Normalization:
    """Whether and how a run over ``store`` normalises its PEFs.

    Args:
        store: the :class:`~npeff.store.PefStore`.
        normalize: scale PEFs that the store does not record as normalised (the default of
            ``decompose`` and ``fit``); False uses them as stored.
        mask: ``[m]``, 1 for the examples the run uses (status ``ok``).
        device: where the norms are computed (one pass over the store).

    Raises:
        DecompositionError: an example the run uses holds NaN or inf.
    """
    if not isinstance(normalize, bool):
        raise InvalidArgumentError(f"normalize must be True or False, got {normalize!r}")
    stated = (store.config.pef_spec or {}).get("normalization")
    if not normalize or store.config.normalized:
        return Normalization(normalize, stated)
    normalization = Normalization(True, stated, pef_statistics(store, device=device))
    cause = non_finite_data(store, normalization.statistics, mask)
    if cause is not None:
        raise DecompositionError(f"cannot normalise the PEFs: {cause}")
    return normalization


def non_finite_data(store, statistics: PefStatistics, mask: torch.Tensor) -> str | None:
    """Which used examples hold NaN or inf, as a clause for a message (None when all are finite)."""
    used = mask.cpu().numpy() > 0
    bad = np.flatnonzero(used & ~np.isfinite(statistics.norms))
    if not len(bad):
        return None
    if len(bad) == 1:
        return (f"example {bad[0]} of {store.path} holds NaN or inf although its status is ok; mark it "
                f"non-finite or write the store again")
    return (f"examples {bad[0]} and {len(bad) - 1} more of {store.path} hold NaN or inf although their status "
            f"is ok; mark them non-finite or write the store again")


def huge_values(store, statistics: PefStatistics, mask: torch.Tensor, dtype: torch.dtype) -> str | None:
    """Whether used examples hold finite values too large to decompose as they are, as a clause:
    above :data:`HUGE_VALUE`, or whose squares or ``||G_i^T G_i||_F^2`` overflow ``dtype``."""
    used = mask.cpu().numpy() > 0
    largest = float(torch.finfo(dtype).max)
    with np.errstate(over="ignore", invalid="ignore"):
        huge = used & np.isfinite(statistics.norms) & (
            (statistics.max_abs > min(HUGE_VALUE, largest ** 0.5)) | (statistics.norms ** 2 > largest))
    if not huge.any():
        return None
    i = int(np.flatnonzero(huge)[np.argmax(statistics.max_abs[huge])])
    value, norm = float(statistics.max_abs[i]), float(statistics.norms[i])
    name = str(dtype).removeprefix("torch.")
    why = (f"whose squares overflow {name}" if value ** 2 > largest else
           f"whose ||G^T G||_F^2 = {norm ** 2:.3g} overflows {name}" if norm ** 2 > largest else
           f"above {HUGE_VALUE:.0e}")
    said = store.config.pef_spec.get("normalization") if store.config.normalized else None
    advice = (f"although its manifest says they are normalised (pef_spec.normalization = {said!r}); write "
              f"the store again with normalized=False" if said else
              "run without --no-normalize (each PEF scaled to unit norm), or rescale the data")
    return f"the PEFs of {store.path} hold finite but huge values (up to {value:.3g} in example {i}, {why}), {advice}"


def explain_non_finite(store, normalization: Normalization, mask: torch.Tensor, dtype: torch.dtype,
                       *, device: str = "cpu") -> tuple[str | None, str]:
    """Why a run's numbers became non-finite, as far as the data tell: ``(cause, hint)``.

    ``cause`` names non-finite input data, or finite input values too large for ``dtype`` when the
    PEFs were used as stored (None when the data are not to blame: then the learning rates are).
    ``hint`` (maybe empty) says when PEFs used as stored are not normalised (or are far from it
    although the store says they are). Measures the store (one pass) unless the run already did.
    """
    statistics = normalization.statistics or pef_statistics(store, device=device)
    cause = non_finite_data(store, statistics, mask)
    if cause is None and not normalization.scaled:
        cause = huge_values(store, statistics, mask, dtype)
    norms = statistics.norms[(mask.cpu().numpy() > 0) & (statistics.norms > 0)]
    if normalization.scaled or not len(norms):
        return cause, ""
    spread = f"||G_i^T G_i||_F from {norms.min():.3g} to {norms.max():.3g}"
    if not store.config.normalized:
        return cause, f" (the PEFs were used as stored, not normalised: {spread}; run without --no-normalize)"
    far = norms.max() > 2 or norms.min() < 0.5
    return cause, f" (the store says its PEFs are normalised, but {spread})" if far else ""
