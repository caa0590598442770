"""Fixed-point continuation (FPC) for ℓ1-regularised least squares, matrix-free, in torch.

Reconstructs a parameter-space pseudo-Fisher vector ``u`` ``[n]`` from its projection ``h`` ``[d]``
(section 2.2.1 and appendix E of the NPEFF paper) by solving the paper's problem (its equation 6)::

    min_u  ‖u‖₁ + (1 / (2μ)) ‖A u − h‖²                                                  (P)

with the solver of Hale, Yin & Zhang (2007), "A fixed-point continuation method for ℓ1-regularized
minimization with applications to compressed sensing" (CAAM TR07-07). FPC's own form is
``min ‖x‖₁ + (μ'/2) ‖A x − b‖²``, so ``μ' = 1/μ``; it assumes ``λ_max(AᵀA) ≤ 1``.

Interpretations (each recorded in ``FpcResult.settings``):

* **Scaling.** npeff's ``ssp-v1`` matrix has entries ``±1/sqrt(32)``: ``E[AᵀA] = I``, but with
  ``d < n`` the ``d`` non-zero eigenvalues of ``AᵀA`` average ``n/d``, so ``λ_max(AᵀA)`` is about
  ``(sqrt(n/d) + 1)²`` (e.g. 25 for ``n = 4096, d = 256``), not 1. We estimate
  ``σ² ≥ λ_max(AᵀA)`` (below) and run FPC on ``Ã = A/σ``, ``b = h/σ`` with ``μ' = σ²/μ``: the
  same problem (P) exactly, ``σ`` only sets the step size.
* **σ² estimate.** A seeded Lanczos run of ``spectral_steps`` (20) steps on ``AᵀA`` (three
  n-vectors, no re-orthogonalisation; its largest Ritz value is a power-type estimate that
  converges much faster than plain power iteration, which is still about 5% low after 20 steps
  on these matrices), times ``sigma2_margin`` (1.05) because every Krylov estimate is from below
  and the step ``τ`` (up to 1.999) needs ``τ λ_max(ÃᵀÃ) < 2``. An over-estimate only shortens
  the step. The start vector comes from a CPU generator seeded with ``seed``: same numbers on
  CPU and GPU. The identity (``kind="none"``) uses ``σ² = 1`` exactly.
* **μ's units (the paper convention, the default).** The paper's projection had entries ``±1``
  (``A_paper = c A``, ``c = sqrt(32)``: :attr:`ProjectionOperator.paper_scale`) and its components
  ``h`` are unit vectors (section 2.2: each component's rank-1 matrix is normalised, and its PEFs
  are normalised in projected space, so the decomposition gives the same unit ``h`` whatever the
  projection's scale). Its μ = 4e-5 is therefore μ for a unit-norm ``h`` and a ``±1`` matrix.
  With ``h = s ĥ`` (``s`` the component's norm before rejection, ``reference_norm``, 1 for npeff's
  decompositions), ``u = c s u_paper`` solves (P) for npeff's ``A`` with
  ``μ_eff = μ s / c``: the same support and direction as the paper's solution (the perturbation
  uses ``u / ‖u‖`` only), and ``reconstruct(t h) = t reconstruct(h)`` for any scale ``t``.
  :func:`fpc` takes this as ``mu_scale = s / c``; ``convention="npeff"`` takes μ as it is
  (``mu_scale = 1``) for npeff's ``A`` and ``h`` in its own units.
* **Checked against Hale, Yin & Zhang's ``fpc.m`` (2007).** Their code has: ``τ`` from
  ``min(1.999, 2.665 − 1.665 m/n)`` (the same rule as below); the rescaling to
  ``λ_max(AᵀA) ≤ 1`` by ``A/σ, b/σ, μ'σ²`` (as here); ``u = 0`` returned when
  ``μ' ≤ 1/‖Aᵀb‖∞`` (as here); ``η = 4`` multiplying ``μ'`` at each stage (the paper's β = 4); at
  most 1000 steps; ``xtol = 1e-4``. It differs in three places, where we follow the paper's text:
  it starts from ``x = τ Aᵀb`` rather than ``0`` (the paper: "starting with u = 0"); its first
  stage is ``μ_1 = ‖Aᵀb‖∞ / η`` in the units of (P) (it has no γ: γ = 0.99 is the paper's, and
  we read it as the first stage's fraction below); and it moves to the next stage only when
  ``‖Δx‖/max(‖x‖, 1) < xtol sqrt(μ'_final/μ')`` and ``μ'‖g‖∞ − 1 < 0.2`` (the paper: "a single
  inner iteration").
* **τ.** Equation (73) of Hale et al., as we read it: ``τ = min(1 + 1.665 (1 − δ), 1.999)`` with
  ``δ = d/n``, the step of ``v = u − τ Ãᵀ(Ã u − b)`` for the scaled problem.
* **γ = 0.99 and β = 4: the continuation path.** ``u = 0`` is the solution of (P) exactly when
  ``‖Aᵀh‖∞ ≤ μ_eff`` (then FPC returns zero at once). Otherwise the first stage uses
  ``μ_1 = γ ‖Aᵀh‖∞`` (in the units of (P)): just below the value at which ``0`` is optimal, so
  the first shrinkage keeps only the entries of ``Aᵀh`` within ``1 − γ`` of the largest. Each
  later stage divides μ by ``β`` (FPC's ``μ'`` is multiplied by β, ``opts.eta`` in ``fpc.m``)
  until it reaches ``μ_eff``. The shrinkage threshold at stage ``k`` is ``τ μ_k / σ²``.
* **"A single inner iteration".** Each intermediate stage of the continuation makes exactly
  ``inner_iterations`` (1) fixed-point steps, each ``u ← shrink(u − τ g, τ μ_k/σ²)`` with
  ``g = Aᵀ(A u − h)/σ²`` (one application of ``A`` and one of ``Aᵀ``). At the final μ the steps go
  on until the stopping rule holds.
* **Stopping.** At the final μ, stop when ``‖u_{k+1} − u_k‖ ≤ xtol · ‖u_k‖`` (relative change, FPC's
  ``xtol`` = 1e-4; we divide by ``‖u_k‖`` rather than FPC's ``max(‖u_k‖, 1)``, because parameter
  vectors are far smaller than 1) or after ``max_iterations`` steps in all (then
  ``converged=False``). FPC's second test (``μ‖g‖∞ − 1 < gtol``) is not used. A small relative
  change per step is not a small distance to the minimiser when convergence is slow: tests
  comparing with an exact solution pass a much smaller ``xtol``.

Memory is a few n-vectors in ``dtype`` (float64 by default): ``u``, the step ``v`` (which holds
``g``), the next ``u`` and one temporary for the change; plus the ``[n]`` float32 result of
``Aᵀ``. Never a matrix.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from npeff.errors import BackendUnavailableError, DecompositionError, InvalidArgumentError
from npeff.ops.perturb.operator import ProjectionOperator
from npeff.ops.perturb.spectrum import DEFAULT_SPECTRAL_STEPS, largest_eigenvalue

#: The paper's settings (appendix E).
PAPER_MU = 4e-5
PAPER_BETA = 4.0
PAPER_GAMMA = 0.99
#: FPC's defaults (``fpc_opts.m``): relative-change tolerance and iteration cap.
DEFAULT_XTOL = 1e-4
DEFAULT_MAX_ITERATIONS = 1000
DEFAULT_SIGMA2_MARGIN = 1.05
CONVENTIONS = ("npeff", "paper")

INTERPRETATION = {
    "problem": "min ||u||_1 + (1/(2 mu_effective)) ||A u - h||^2 for npeff's A; FPC runs on A/sigma, "
               "h/sigma with mu' = sigma2/mu_effective",
    "mu_effective": "mu * mu_scale; the paper convention: mu_scale = reference_norm / sqrt(32) (mu for a "
                    "unit-norm component and the paper's +-1 entries)",
    "sigma2": "Lanczos estimate of lambda_max(A^T A) times sigma2_margin (or given)",
    "tau": "equation (73) of Hale et al.: min(1 + 1.665 (1 - d/n), 1.999), unless given",
    "gamma": "first continuation stage mu_1 = gamma * ||A^T h||_inf (0 is optimal from there up)",
    "beta": "each continuation stage divides mu by beta until mu_effective",
    "inner_iterations": "fixed-point steps per intermediate continuation stage",
    "stopping": "at the final mu: ||u_new - u|| <= xtol ||u||, or max_iterations steps in all",
}


@dataclasses.dataclass(frozen=True)
class FpcResult:
    """What :func:`fpc` returns.

    Attributes:
        u: the reconstruction ``[n]`` (torch, ``dtype``, on ``h``'s device).
        iterations: fixed-point steps taken (each one ``A`` and one ``Aᵀ``).
        mu: μ as requested (in the units of the chosen convention).
        sigma2: the ``σ² ≥ λ_max(AᵀA)`` used to scale the problem.
        converged: True when the stopping rule held at the final μ (or 0 is the exact solution).
        settings: every setting and interpretation used (see the module docstring).
    """

    u: Any
    iterations: int
    mu: float
    sigma2: float
    converged: bool
    settings: dict


def _positive_number(value: Any, name: str, *, above: float = 0.0, inclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = value >= above if inclusive else value > above
    if not (math.isfinite(value) and ok):
        relation = ">=" if inclusive else ">"
        raise InvalidArgumentError(f"{name} must be a finite number {relation} {above:g}, got {value!r}")
    return value


def _count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def equation73_tau(d: int, n: int) -> float:
    """FPC's step ``τ = min(1 + 1.665 (1 − d/n), 1.999)`` (Hale et al. 2007, equation 73)."""
    delta = min(d / n, 1.0)
    return min(1.0 + 1.665 * (1.0 - delta), 1.999)


def soft_threshold(v, threshold: float):
    """``sign(v) max(|v| − threshold, 0)`` elementwise (one temporary)."""
    return v - v.clamp(-threshold, threshold)


def fpc(apply: Callable, adjoint: Callable, h, *, n: int, mu: float = PAPER_MU,
        beta: float = PAPER_BETA, gamma: float = PAPER_GAMMA, tau: float | None = None,
        inner_iterations: int = 1, xtol: float = DEFAULT_XTOL,
        max_iterations: int = DEFAULT_MAX_ITERATIONS, sigma2: float | None = None,
        spectral_steps: int = DEFAULT_SPECTRAL_STEPS, sigma2_margin: float = DEFAULT_SIGMA2_MARGIN,
        seed: int = 0, mu_scale: float = 1.0, dtype=None) -> FpcResult:
    """Solve ``min ‖u‖₁ + (1/(2 μ s)) ‖A u − h‖²`` by fixed-point continuation (``s = mu_scale``).

    Args:
        apply: ``u [n] -> A u [d]`` on torch tensors (any dtype out; cast to ``dtype``).
        adjoint: ``y [d] -> Aᵀ y [n]``.
        h: the projected vector ``[d]``, a torch tensor (CPU or CUDA); the solve runs on its device.
        n: length of ``u``.
        mu: μ of the paper's equation 6, ``> 0`` (paper: 4e-5); smaller μ fits ``h`` more closely.
        beta: continuation factor ``> 1`` (paper: 4).
        gamma: first-stage fraction in ``(0, 1]`` (paper: 0.99); see the module docstring.
        tau: step in ``(0, 2)``; None takes equation (73) of Hale et al.
        inner_iterations: fixed-point steps per intermediate continuation stage (paper: 1).
        xtol: tolerance on the relative change of ``u`` at the final μ, ``>= 0``.
        max_iterations: cap on the fixed-point steps in all.
        sigma2: ``λ_max(AᵀA)`` or an upper bound, when known; None estimates it (Lanczos).
        spectral_steps, sigma2_margin: the Lanczos estimate's steps and safety factor ``>= 1``.
        seed: seed of the Lanczos start vector.
        mu_scale: ``s`` above, the factor from μ's units to npeff's (see the module docstring).
        dtype: torch floating dtype of the iterates; default float64.

    Returns:
        :class:`FpcResult`, ``u`` ``[n]`` on ``h``'s device.

    Raises:
        InvalidArgumentError: a setting out of range, ``h`` not a finite torch vector, or the
            operator's shapes not matching ``n`` and ``len(h)``.
        DecompositionError: the iterates became non-finite (``sigma2`` given too small).

    Notes:
        Each step costs one ``A`` and one ``Aᵀ``. Memory: a few n-vectors (module docstring).
    """
    import torch

    mu = _positive_number(mu, "mu")
    beta = _positive_number(beta, "beta", above=1.0)
    gamma = _positive_number(gamma, "gamma")
    if gamma > 1:
        raise InvalidArgumentError(f"gamma must be in (0, 1], got {gamma!r}")
    if tau is not None:
        tau = _positive_number(tau, "tau")
        if tau >= 2:
            raise InvalidArgumentError(f"tau must be in (0, 2), got {tau!r}")
    inner_iterations = _count(inner_iterations, "inner_iterations")
    xtol = _positive_number(xtol, "xtol", inclusive=True)
    max_iterations = _count(max_iterations, "max_iterations")
    spectral_steps = _count(spectral_steps, "spectral_steps")
    sigma2_margin = _positive_number(sigma2_margin, "sigma2_margin", above=1.0, inclusive=True)
    if sigma2 is not None:
        sigma2 = _positive_number(sigma2, "sigma2")
    seed = _count(seed, "seed", minimum=0)
    mu_scale = _positive_number(mu_scale, "mu_scale")
    n = _count(n, "n")
    dtype = torch.float64 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgumentError(f"dtype must be a torch floating dtype, got {dtype!r}")
    h = _check_h(h)
    d = h.shape[0]
    device = h.device
    h = h.to(dtype)
    calls = [0]

    def forward(x):
        calls[0] += 1
        return _checked(apply(x), d, "apply(u)", "len(h)").to(dtype)

    def backward(y):
        calls[0] += 1
        return _checked(adjoint(y), n, "adjoint(h)", "n").to(dtype)

    atb = backward(h)
    mu_effective = mu * mu_scale
    if sigma2 is None:
        estimate = largest_eigenvalue(forward, backward, n, steps=spectral_steps, seed=seed,
                                      dtype=dtype, device=device)
        sigma2_used = estimate * sigma2_margin
    else:
        estimate = None
        sigma2_used = sigma2
    if tau is None:
        tau_used, tau_rule = equation73_tau(d, n), "equation (73)"
    else:
        tau_used, tau_rule = tau, "given"

    largest = float(atb.abs().max())
    settings = {
        "mu": mu, "mu_scale": mu_scale, "mu_effective": mu_effective,
        "mu_fpc": sigma2_used / mu_effective, "beta": beta, "gamma": gamma, "tau": tau_used,
        "tau_rule": tau_rule, "inner_iterations": inner_iterations, "xtol": xtol,
        "max_iterations": max_iterations, "sigma2_estimate": estimate, "sigma2_margin": sigma2_margin,
        "spectral_steps": spectral_steps, "seed": seed, "dtype": str(dtype).replace("torch.", ""),
        "n": n, "d": d, "device": str(device), "atb_inf_norm": largest,
        "interpretation": dict(INTERPRETATION),
    }
    if largest <= mu_effective:  # the optimality condition of u = 0: ‖Aᵀh‖∞ ≤ μ_eff
        settings.update(stages=0, final_relative_change=0.0, operator_calls=calls[0],
                        zero_solution=True)
        return FpcResult(u=torch.zeros(n, dtype=dtype, device=device), iterations=0, mu=mu,
                         sigma2=sigma2_used, converged=True, settings=settings)

    stage_mu = max(gamma * largest, mu_effective)
    stages = 1
    steps_in_stage = 0
    u = torch.zeros(n, dtype=dtype, device=device)
    converged = False
    change = math.inf
    iterations = 0
    while iterations < max_iterations:
        if iterations == 0:
            step = atb * (tau_used / sigma2_used)  # u = 0: u − τ Aᵀ(A u − h)/σ²
        else:
            step = backward(forward(u) - h)
            step.mul_(-tau_used / sigma2_used).add_(u)
        u_next = soft_threshold(step, tau_used * stage_mu / sigma2_used)
        del step
        iterations += 1
        steps_in_stage += 1
        u_norm = float(u.norm())
        change = float(torch.dist(u_next, u))
        u = u_next
        if not math.isfinite(change):
            raise DecompositionError(
                f"FPC diverged after {iterations} steps (non-finite iterate); sigma2={sigma2_used:g} "
                "must bound the largest eigenvalue of A^T A: leave sigma2=None to estimate it")
        if stage_mu > mu_effective:
            if steps_in_stage >= inner_iterations:
                stage_mu = max(stage_mu / beta, mu_effective)
                stages += 1
                steps_in_stage = 0
            continue
        if change <= xtol * u_norm or (change == 0.0 and u_norm == 0.0):
            converged = True
            break
    relative = change / u_norm if u_norm > 0 else (0.0 if change == 0 else math.inf)
    settings.update(stages=stages, final_relative_change=relative, operator_calls=calls[0],
                    zero_solution=False)
    return FpcResult(u=u, iterations=iterations, mu=mu, sigma2=sigma2_used, converged=converged,
                     settings=settings)


def _check_h(h):
    if type(h).__module__.split(".")[0] != "torch":
        raise InvalidArgumentError(f"h must be a torch tensor, got {type(h).__name__}")
    if h.ndim != 1 or h.shape[0] == 0:
        raise InvalidArgumentError(f"h must be a non-empty vector [d], got shape {tuple(h.shape)}")
    if not h.is_floating_point():
        raise InvalidArgumentError(f"h must be a floating tensor, got dtype {h.dtype}")
    if not bool(h.isfinite().all()):
        raise InvalidArgumentError("h holds NaN or infinite values; a projected vector must be finite")
    return h


def _checked(x, length: int, what: str, name: str):
    if x.ndim != 1 or x.shape[0] != length:
        raise InvalidArgumentError(
            f"{what} returned shape {tuple(x.shape)}; expected a vector of length {name}={length}")
    return x


def _resolve_device(device):
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device={device!r} was requested but torch sees no CUDA GPU; use device='cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return resolved


def reconstruct(h, *, projection, n: int, mu: float = PAPER_MU, device="cpu", backend: str = "auto",
                convention: str = "paper", reference_norm: float | None = None, **fpc_options) -> FpcResult:
    """Reconstruct a parameter-space vector ``u`` ``[n]`` from its projection ``h`` ``[d]`` (FPC).

    Args:
        h: projected pseudo-Fisher vector ``[d]`` (e.g. after :func:`~npeff.ops.perturb.rejection`);
            numpy or torch, any float dtype; must be finite.
        projection: the store manifest's projection dict (``ssp-v1`` or ``none``; ``external``
            raises :class:`InvalidArgumentError`).
        n: the manifest's ``parameter_layout["n_total"]``.
        mu: μ of the paper's equation 6 (appendix E: 4e-5), in the units of ``convention``.
        device: where the solve runs and ``u`` lives (``"cpu"``, ``"cuda"``, a ``torch.device``).
        backend: projection kernels' backend (``"auto" | "cpu" | "cuda"``).
        convention: ``"paper"`` (default): μ as the paper sets it, for a unit-norm component and
            the paper's ``±1`` entries (``μ_eff = μ · reference_norm / sqrt(32)``; scale-invariant);
            ``"npeff"``: μ as it is, for npeff's ``A`` (entries ``±1/sqrt(32)``) and ``h`` in its
            own units. See the module docstring.
        reference_norm: with ``"paper"``, the norm of the component ``h`` came from, before
            rejection (default ``‖h‖``); npeff's decompositions have unit-norm components.
        **fpc_options: passed to :func:`fpc` (``beta``, ``gamma``, ``tau``, ``inner_iterations``,
            ``xtol``, ``max_iterations``, ``sigma2``, ``spectral_steps``, ``sigma2_margin``,
            ``seed``, ``dtype``).

    Returns:
        :class:`FpcResult` with ``u`` a torch tensor ``[n]`` on ``device``; ``settings`` also hold
        the projection, the convention, the reference norm and the projection backend that ran.

    Notes:
        Memory: a few n-vectors on ``device`` (see :func:`fpc`). Paper, section 2.2.1, appendix E.
    """
    import torch

    if convention not in CONVENTIONS:
        raise InvalidArgumentError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if "mu_scale" in fpc_options:
        raise InvalidArgumentError("reconstruct sets mu_scale from convention and reference_norm")
    target = _resolve_device(device)
    if isinstance(h, np.ndarray):
        if not np.issubdtype(h.dtype, np.floating):
            raise InvalidArgumentError(f"h must be a floating array, got dtype {h.dtype}")
        h = torch.from_numpy(np.ascontiguousarray(h))
    elif type(h).__module__.split(".")[0] != "torch":
        raise InvalidArgumentError(f"h must be a numpy array or a torch tensor, got {type(h).__name__}")
    h = _check_h(h)
    operator = ProjectionOperator(projection, n, d=h.shape[0], backend=backend)
    dtype = fpc_options.get("dtype") or torch.float64
    h = h.to(device=target, dtype=dtype)
    if operator.spec is None:
        fpc_options.setdefault("sigma2", 1.0)  # the identity: λ_max(AᵀA) = 1 exactly
    if convention == "paper":
        if reference_norm is None:
            reference_norm = float(h.norm())
        reference_norm = _positive_number(reference_norm, "reference_norm")
        mu_scale = reference_norm / operator.paper_scale
    else:
        if reference_norm is not None:
            raise InvalidArgumentError("reference_norm is only used with convention='paper'")
        mu_scale = 1.0
    result = fpc(operator.apply, operator.adjoint, h, n=n, mu=mu, mu_scale=mu_scale, **fpc_options)
    from npeff.cuda_ops import last_backend

    result.settings.update(convention=convention, reference_norm=reference_norm,
                           projection=operator.to_dict()["projection"],
                           projection_backend=last_backend() if operator.spec is not None else None)
    return result
