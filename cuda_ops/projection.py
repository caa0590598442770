"""Public entry points of the seeded sparse projection: :func:`project` and :func:`project_transpose`.

Inputs may be numpy arrays or torch tensors (CPU or CUDA) of float16, bfloat16, float32 or float64;
results come back as the same kind of object on the same device, in float32 (accumulation is float32).
The matrix is never materialised: memory is ``O(R * d)`` plus ``O(block)`` for a float32, rows-last
working copy of the block.
"""

from __future__ import annotations

import operator
import threading
import warnings
from typing import Any

import numpy as np

from npeff.cuda_ops.spec import ProjectionSpec, validate_dim, validate_seed
from npeff.errors import BackendUnavailableError, InvalidArgumentError

BACKENDS = ("auto", "cpu", "cuda")
_ACCEPTED_DTYPES = ("float16", "bfloat16", "float32", "float64")

_state = threading.local()
_auto_warned = False
_parallel_lock = threading.Lock()
_threading_layer: str | None = None


def last_backend() -> str | None:
    """The backend (``"cpu"`` or ``"cuda"``) that ran this thread's most recent projection."""
    return getattr(_state, "backend", None)


# ----------------------------------------------------------------------------------------------
# Input handling


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _dtype_name(x: Any) -> str:
    return str(x.dtype).replace("torch.", "")


def _check_array(x: Any, what: str, ndim_hint: str) -> None:
    if not (isinstance(x, np.ndarray) or _is_torch(x)):
        raise InvalidArgumentError(
            f"{what} must be a numpy array or a torch tensor, got {type(x).__name__}"
        )
    if x.ndim not in (1, 2):
        raise InvalidArgumentError(
            f"{what} must be 1-D or 2-D {ndim_hint}, got shape {tuple(x.shape)}"
        )
    if _dtype_name(x) not in _ACCEPTED_DTYPES:
        raise InvalidArgumentError(
            f"{what} has dtype {_dtype_name(x)}; expected one of {', '.join(_ACCEPTED_DTYPES)}"
        )


def _check_index(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value}")
    return value


def _on_cuda_device(x: Any) -> bool:
    return _is_torch(x) and x.is_cuda


def _to_host_float32(x: Any) -> np.ndarray:
    """C-contiguous float32 numpy view or copy of a 2-D array or tensor."""
    if _is_torch(x):
        import torch

        return x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _like_input(result: np.ndarray | Any, template: Any, squeeze: bool):
    """Return ``result`` (numpy or torch) as the same kind of object, on the template's device."""
    if squeeze:
        result = result[0]
    if _is_torch(template):
        import torch

        if isinstance(result, np.ndarray):
            result = torch.from_numpy(result)
        return result.to(template.device)
    if not isinstance(result, np.ndarray):
        result = result.cpu().numpy()
    return result


# ----------------------------------------------------------------------------------------------
# Backends


def _cuda_module():
    from npeff.cuda_ops import _cuda

    return _cuda


def cuda_available() -> bool:
    """True when a real CUDA GPU can run the kernels (the simulator does not count)."""
    try:
        cuda = _cuda_module()
    except Exception:  # numba-cuda missing or broken driver bindings
        return False
    return cuda.available() and not cuda.is_simulator()


def resolve_backend(backend: str, *, data_on_gpu: bool = False) -> str:
    """Turn ``"auto" | "cpu" | "cuda"`` into the backend that will run.

    ``auto`` takes the GPU when one is usable and warns once when it falls back to the CPU;
    ``cuda`` raises :class:`BackendUnavailableError` when no GPU (nor the simulator) is there.
    """
    global _auto_warned
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        return "cpu"
    if backend == "cuda":
        try:
            usable = _cuda_module().available()
        except Exception as error:  # depends on the installation
            from npeff.extras import missing_extra_message

            hint = isinstance(error, ImportError) and missing_extra_message(error, "backend='cuda'")
            raise BackendUnavailableError(hint or f"the CUDA backend cannot load: {error}") from None
        if not usable:
            raise BackendUnavailableError(
                "backend='cuda' was requested but no CUDA GPU is available; "
                "use backend='cpu' or 'auto'"
            )
        return "cuda"
    if data_on_gpu or cuda_available():
        return "cuda"
    if not _auto_warned:
        _auto_warned = True
        warnings.warn(
            "npeff.cuda_ops: no CUDA GPU available, the projection runs on the CPU (numba)",
            RuntimeWarning,
            stacklevel=3,
        )
    return "cpu"


def _run_parallel(kernel, *args):
    """Call a parallel numba kernel; serialised if numba fell back to the unsafe workqueue layer."""
    global _threading_layer
    if _threading_layer is None or _threading_layer == "workqueue":
        with _parallel_lock:
            result = kernel(*args)
            import numba

            _threading_layer = numba.threading_layer()
        return result
    return kernel(*args)


def _block_regions(offset: int, nb: int, s: int) -> tuple[int, int]:
    return offset // s, (offset + nb - 1) // s


def _forward_cpu(x, spec: ProjectionSpec, offset: int) -> np.ndarray:
    from npeff.cuda_ops import _cpu

    block = _to_host_float32(x)
    rows, nb = block.shape
    s = spec.region_size
    first, last = _block_regions(offset, nb, s)
    per_tile = _cpu.tile_regions(rows, s, last - first + 1)
    n_tiles = (last - first + per_tile) // per_tile
    groups = _cpu.group_count(rows, spec.d, n_tiles)
    keys = _cpu.row_keys(spec.seed, spec.d)
    if rows <= _cpu.FEW_ROWS:
        out = _run_parallel(_cpu.forward_few_rows, block, keys, offset, s, per_tile, groups)
    else:
        out = np.ascontiguousarray(_run_parallel(_cpu.forward, block, keys, offset, s, per_tile, groups).T)
    out *= np.float32(spec.scale)
    return out


def _transpose_cpu(y, spec: ProjectionSpec, n: int, offset: int) -> np.ndarray:
    from npeff.cuda_ops import _cpu

    yt = np.ascontiguousarray(_to_host_float32(y).T)
    yt *= np.float32(spec.scale)
    rows = yt.shape[1]
    s = spec.region_size
    first, last = _block_regions(offset, n, s)
    per_tile = _cpu.tile_regions(rows, s, last - first + 1)
    keys = _cpu.row_keys(spec.seed, spec.d)
    return _run_parallel(_cpu.transpose, yt, keys, offset, n, s, per_tile)


def _cuda_call(kernel_name: str, rows_last: Any, out_shape: tuple[int, int], spec, offset, nb):
    """Run one CUDA kernel on a rows-last float32 input; returns the rows-last float32 output.

    On a real GPU the data stay torch tensors on the device (no host copy) and the kernel runs
    on torch's current stream; under the simulator they are numpy arrays.
    """
    from npeff.cuda_ops import _cpu

    cuda_mod = _cuda_module()
    from numba import cuda

    kernel = getattr(cuda_mod, kernel_name)
    s = spec.region_size
    first, last = _block_regions(offset, nb, s)
    blocks, threads, per_block = cuda_mod.launch_grid(spec.d, out_shape[1], first, last)
    keys_host = _cpu.row_keys(spec.seed, spec.d)
    args = (offset, s, first, last, per_block)
    if cuda_mod.is_simulator():
        host_in = _to_host_float32(rows_last)
        d_in = cuda.to_device(host_in)
        d_out = cuda.to_device(np.zeros(out_shape, dtype=np.float32))
        with warnings.catch_warnings():
            # the simulator runs the hash on numpy uint64 scalars, whose wrap-around warns
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            kernel[blocks, threads](d_in, cuda.to_device(keys_host), *args, d_out)
        return d_out.copy_to_host()
    import torch

    if not _is_torch(rows_last):
        rows_last = torch.from_numpy(np.ascontiguousarray(rows_last))
    device = rows_last.device if rows_last.is_cuda else torch.device("cuda", torch.cuda.current_device())
    tensor_in = rows_last.to(device=device, dtype=torch.float32).contiguous()
    tensor_out = torch.zeros(out_shape, dtype=torch.float32, device=device)
    with cuda.gpus[device.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kernel[blocks, threads, stream](
            cuda.as_cuda_array(tensor_in), cuda.to_device(keys_host, stream=stream), *args,
            cuda.as_cuda_array(tensor_out),
        )
    return tensor_out


def _rows_last(x):
    """``[R, n] -> [n, R]`` view, keeping the object's kind (torch stays on its device)."""
    if _is_torch(x):
        return x.t()
    return np.asarray(x).T


def _rows_first_scaled(x, scale: float):
    """``[n, R] -> [R, n]`` times ``scale``, as a C-contiguous array or tensor."""
    if _is_torch(x):
        return (x.t() * scale).contiguous()
    return np.ascontiguousarray(x.T) * np.float32(scale)


def _forward_cuda(x, spec: ProjectionSpec, offset: int):
    rows, nb = x.shape
    y = _cuda_call("forward_kernel", _rows_last(x), (spec.d, rows), spec, offset, nb)
    return _rows_first_scaled(y, spec.scale)


def _transpose_cuda(y, spec: ProjectionSpec, n: int, offset: int):
    rows = y.shape[0]
    scaled = _rows_last(y) * np.float32(spec.scale)
    out = _cuda_call("transpose_kernel", scaled, (n, rows), spec, offset, n)
    return _rows_first_scaled(out, 1.0)


# ----------------------------------------------------------------------------------------------
# Public API


def project(x, *, d: int, seed: int, offset: int = 0, n_total: int, backend: str = "auto"):
    """Project rows of a parameter block with the seeded sparse projection ``ssp-v1``.

    Args:
        x: ``[R, n_block]`` (or ``[n_block]``) holding entries ``[offset, offset + n_block)`` of
            ``R`` vectors of length ``n_total``. float16, bfloat16, float32 or float64; numpy or
            torch (CPU or CUDA).
        d: output dimension, a positive multiple of 32.
        seed: unsigned 64-bit seed; the matrix is a pure function of (seed, d).
        offset: global index of the block's first entry. Projections of the blocks of a vector
            sum to the projection of the whole vector.
        n_total: length of the whole vectors (checked against ``offset + n_block``).
        backend: ``"auto"`` (GPU when usable, else CPU with a one-time warning), ``"cpu"`` or
            ``"cuda"`` (raises :class:`BackendUnavailableError` when unavailable).

    Returns:
        float32 ``[R, d]`` (``[d]`` for 1-D input), the same kind of object as ``x``, on its device.

    Notes:
        Memory is ``O(R * d)`` for the result (times up to 8 on the CPU, for partial sums) plus
        a float32 rows-last copy of the block; the ``d x n`` matrix never exists. Paper, sec. 2.2.1
        and appendix A.
    """
    spec = ProjectionSpec(seed=validate_seed(seed), d=validate_dim(d))
    _check_array(x, "x", "([R, n_block] or [n_block])")
    offset = _check_index(offset, "offset")
    n_total = _check_index(n_total, "n_total")
    squeeze = x.ndim == 1
    block = x[None] if squeeze else x
    rows, nb = block.shape
    if offset + nb > n_total:
        raise InvalidArgumentError(
            f"block [offset={offset}, offset+n_block={offset + nb}) runs past n_total={n_total}"
        )
    ran = resolve_backend(backend, data_on_gpu=_on_cuda_device(x))
    _state.backend = ran
    if rows == 0 or nb == 0:
        return _like_input(np.zeros((rows, spec.d), dtype=np.float32), x, squeeze)
    if ran == "cuda":
        result = _forward_cuda(block, spec, offset)
    else:
        result = _forward_cpu(block, spec, offset)
    return _like_input(result, x, squeeze)


def project_transpose(y, *, n: int, d: int, seed: int, offset: int = 0, backend: str = "auto"):
    """Adjoint of :func:`project`: ``A^T y`` restricted to the entries ``[offset, offset + n)``.

    Args:
        y: ``[R, d]`` (or ``[d]``) projected rows; numpy or torch, any accepted float dtype.
        n: number of entries to reconstruct, starting at global index ``offset``.
        d, seed, offset, backend: as in :func:`project`.

    Returns:
        float32 ``[R, n]`` (``[n]`` for 1-D input), satisfying ``<A x, y> = <x, A^T y>``.

    Notes:
        Memory is the ``[R, n]`` result plus ``O(R * d)``; on the CPU, one tile per thread.
    """
    spec = ProjectionSpec(seed=validate_seed(seed), d=validate_dim(d))
    _check_array(y, "y", "([R, d] or [d])")
    n = _check_index(n, "n")
    offset = _check_index(offset, "offset")
    squeeze = y.ndim == 1
    rows_in = y[None] if squeeze else y
    if rows_in.shape[1] != spec.d:
        raise InvalidArgumentError(
            f"y has {rows_in.shape[1]} columns but d={spec.d}; y must be [R, d]"
        )
    ran = resolve_backend(backend, data_on_gpu=_on_cuda_device(y))
    _state.backend = ran
    rows = rows_in.shape[0]
    if rows == 0 or n == 0:
        return _like_input(np.zeros((rows, n), dtype=np.float32), y, squeeze)
    if ran == "cuda":
        result = _transpose_cuda(rows_in, spec, n, offset)
    else:
        result = _transpose_cpu(rows_in, spec, n, offset)
    return _like_input(result, y, squeeze)
