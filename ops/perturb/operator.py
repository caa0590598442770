"""A store's projection as a matrix-free linear operator ``A: R^n -> R^d`` and its adjoint.

Built from the projection spec of a store manifest (``manifest.projection``) and the length of the
flat parameter vector (``manifest.parameter_layout["n_total"]``). ``ssp-v1`` runs through
:func:`npeff.cuda_ops.project` / :func:`npeff.cuda_ops.project_transpose` (the matrix never
exists); ``none`` is the identity (``d = n``); ``external`` (data projected outside npeff) cannot be
applied, so it cannot be inverted either.
"""

from __future__ import annotations

from typing import Any, Mapping

from npeff.cuda_ops.projection import BACKENDS
from npeff.cuda_ops.spec import SPEC_KIND, ProjectionSpec
from npeff.errors import InvalidArgumentError

KINDS = (SPEC_KIND, "none")


class ProjectionOperator:
    """``A`` of a store's projection, applied to torch vectors.

    Args:
        projection: the manifest's projection dict: ``{"kind": "ssp-v1", "seed": s, "d": d, ...}``
            (the derived fields ``version``, ``region_size``, ``scale`` are checked when present),
            ``{"kind": "none"}`` or ``{"kind": "external"}`` (refused).
        n: length of the parameter vectors (the manifest's ``parameter_layout["n_total"]``).
        d: output dimension for a ``ssp-v1`` dict that lacks ``d`` (e.g. the length of ``h``);
            must agree with the dict's ``d`` when both are given. For ``none``, ``d`` is ``n``.
        backend: ``"auto" | "cpu" | "cuda"`` for the projection kernels (see
            :func:`npeff.cuda_ops.project`); CUDA tensors always run on the GPU.

    Attributes:
        kind, n, d, spec (the :class:`ProjectionSpec`, None for ``none``) and ``entry_scale``, the
        magnitude of the non-zero entries of ``A`` (``1/sqrt(32)`` for ``ssp-v1``, 1 for the
        identity); the paper's matrices had entries ``±1``, i.e. ``A_paper = A / entry_scale``.

    Notes:
        :meth:`apply` ``[n] -> [d]`` and :meth:`adjoint` ``[d] -> [n]`` take torch tensors (CPU or
        CUDA) and return tensors of the input's dtype on its device. The kernels compute in float32:
        the result is ``A`` applied to the float32 rounding of the input, accumulated in float32.
        Memory: the ``[d]`` or ``[n]`` result plus the kernels' ``O(d)`` working space.
    """

    def __init__(self, projection: Mapping[str, Any], n: int, *, d: int | None = None,
                 backend: str = "auto") -> None:
        if not isinstance(projection, Mapping):
            raise InvalidArgumentError(
                f"projection must be a store manifest's projection dict such as "
                f"{{'kind': 'ssp-v1', 'seed': 0, 'd': 1024}}, got {projection!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"n must be a positive integer (the store's n_total), got {n!r}")
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
        kind = projection.get("kind", SPEC_KIND)
        if kind == "external":
            raise InvalidArgumentError(
                "projection kind 'external' (data projected outside npeff) cannot be inverted: "
                "the matrix is unknown; reconstruction needs an 'ssp-v1' or 'none' store")
        if kind == "none":
            extra = set(projection) - {"kind"}
            if extra:
                raise InvalidArgumentError(
                    f"projection kind 'none' takes no other fields, got {sorted(extra)}")
            if d is not None and d != n:
                raise InvalidArgumentError(
                    f"an unprojected store has d = n, got d={d} and n={n}")
            self.spec = None
            self.d = n
            self.entry_scale = 1.0
        elif kind == SPEC_KIND:
            fields = dict(projection)
            if "d" not in fields:
                if d is None:
                    raise InvalidArgumentError(
                        f"projection {dict(projection)} lacks 'd'; pass the store manifest's projection")
                fields["d"] = d
            self.spec = ProjectionSpec.from_dict(fields)
            if d is not None and d != self.spec.d:
                raise InvalidArgumentError(
                    f"the projection has d={self.spec.d} but the vector has length {d}; "
                    "h must come from a store with this projection")
            self.d = self.spec.d
            self.entry_scale = self.spec.scale
        else:
            raise InvalidArgumentError(
                f"unknown projection kind {kind!r}; expected one of {KINDS} (or 'external', "
                "which cannot be inverted)")
        self.kind = kind
        self.n = n
        self.backend = backend

    def __repr__(self) -> str:
        seed = "" if self.spec is None else f", seed={self.spec.seed}"
        return f"ProjectionOperator(kind={self.kind!r}, n={self.n}, d={self.d}{seed})"

    @property
    def paper_scale(self) -> float:
        """Factor turning this ``A`` into the paper's ``±1``-entry matrix (``sqrt(32)`` for ssp-v1)."""
        return 1.0 / self.entry_scale

    def to_dict(self) -> dict[str, Any]:
        """The projection spec and ``n``, as recorded in results."""
        spec = {"kind": "none"} if self.spec is None else self.spec.to_dict()
        return {"projection": spec, "n": self.n}

    def apply(self, u):
        """``A u``: ``[n] -> [d]`` (torch, the input's dtype and device)."""
        _check_vector(u, self.n, "u", "n")
        if self.spec is None:
            return u.clone()
        from npeff.cuda_ops import project

        y = project(u, d=self.d, seed=self.spec.seed, n_total=self.n, backend=self.backend)
        return y.to(u.dtype)

    def adjoint(self, y):
        """``Aᵀ y``: ``[d] -> [n]`` (torch, the input's dtype and device)."""
        _check_vector(y, self.d, "y", "d")
        if self.spec is None:
            return y.clone()
        from npeff.cuda_ops import project_transpose

        u = project_transpose(y, n=self.n, d=self.d, seed=self.spec.seed, backend=self.backend)
        return u.to(y.dtype)


def _check_vector(x: Any, length: int, name: str, what: str) -> None:
    if type(x).__module__.split(".")[0] != "torch":
        raise InvalidArgumentError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.ndim != 1 or x.shape[0] != length:
        raise InvalidArgumentError(
            f"{name} must be a vector of length {what}={length}, got shape {tuple(x.shape)}")
