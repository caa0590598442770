"""The seeded sparse projection against its float64 pure-Python reference and its properties."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from npeff.cuda_ops import (
    ProjectionSpec,
    project,
    project_transpose,
    reference_matrix,
)
from npeff.cuda_ops import projection as projection_module
from npeff.cuda_ops.spec import reference_choice, reference_hash
from npeff.errors import InvalidArgumentError

# float32 accumulation of ~n/s terms of size O(1): relative error well under 1e-5.
RTOL = 1e-5


def rows(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def reference_project(x, spec, offset=0):
    a = reference_matrix(spec, x.shape[-1], offset)
    return np.asarray(x, dtype=np.float64) @ a.T


def assert_close(actual, expected, rtol=RTOL):
    actual = np.asarray(actual, dtype=np.float64)
    scale = max(np.abs(expected).max(), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ----------------------------------------------------------------------------------------------
# Against the reference


@pytest.mark.parametrize(
    "d,n,r,offset",
    [(32, 1, 1, 0), (64, 200, 3, 0), (64, 1000, 2, 37), (96, 301, 4, 5), (256, 5000, 7, 123),
     (64, 150_000, 1, 11), (64, 40_000, 6, 3)],  # the last two: several tiles and groups of tiles
)
def test_cpu_matches_reference(d, n, r, offset):
    spec = ProjectionSpec(seed=7, d=d)
    x = rows((r, n))
    y = project(x, d=d, seed=7, offset=offset, n_total=offset + n, backend="cpu")
    assert y.shape == (r, d) and y.dtype == np.float32
    assert_close(y, reference_project(x, spec, offset))


@pytest.mark.parametrize("r", [1, 6])
def test_cpu_result_does_not_depend_on_the_thread_count(r):
    """The same bits on one thread as on all of them (a store is reproducible on any machine)."""
    import numba

    x = rows((r, 300_000), seed=3)
    everywhere = project(x, d=256, seed=5, offset=77, n_total=300_077, backend="cpu")
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        alone = project(x, d=256, seed=5, offset=77, n_total=300_077, backend="cpu")
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(alone, everywhere)


@pytest.mark.parametrize("d,n,r,offset", [(64, 500, 3, 0), (96, 301, 2, 17)])
def test_cpu_transpose_matches_reference(d, n, r, offset):
    spec = ProjectionSpec(seed=11, d=d)
    y = rows((r, d), seed=1)
    x = project_transpose(y, n=n, d=d, seed=11, offset=offset, backend="cpu")
    assert x.shape == (r, n) and x.dtype == np.float32
    assert_close(x, y.astype(np.float64) @ reference_matrix(spec, n, offset))


def test_64bit_offsets_match_reference():
    """Global indices past 2**31 and 2**32 are exact (int64 indexing, no wrap-around)."""
    d, n = 64, 300
    for offset in (2**31 + 5, 2**33 - 100):
        spec = ProjectionSpec(seed=3, d=d)
        x = rows((2, n), seed=offset % 97)
        y = project(x, d=d, seed=3, offset=offset, n_total=offset + n, backend="cpu")
        assert_close(y, reference_project(x, spec, offset))
        back = project_transpose(y, n=n, d=d, seed=3, offset=offset, backend="cpu")
        assert_close(back, np.asarray(y, np.float64) @ reference_matrix(spec, n, offset))


def test_cuda_kernel_matches_cpu_kernel():
    """Runs on the CUDA simulator in CI, on the GPU with NPEFF_REAL_CUDA=1."""
    d, n, r, offset = 64, 400, 3, 29
    x = rows((r, n), seed=4)
    cpu = project(x, d=d, seed=9, offset=offset, n_total=10_000, backend="cpu")
    gpu = project(x, d=d, seed=9, offset=offset, n_total=10_000, backend="cuda")
    assert_close(gpu, np.asarray(cpu, np.float64))
    y = rows((r, d), seed=5)
    cpu_t = project_transpose(y, n=n, d=d, seed=9, offset=offset, backend="cpu")
    gpu_t = project_transpose(y, n=n, d=d, seed=9, offset=offset, backend="cuda")
    assert_close(gpu_t, np.asarray(cpu_t, np.float64))


def test_cuda_kernel_many_rows_and_tensors():
    """More than 32 rows (several row groups) from a torch tensor, returned as a torch tensor."""
    d, n, r = 32, 70, 33
    x = torch.from_numpy(rows((r, n), seed=6))
    out = project(x, d=d, seed=1, n_total=n, backend="cuda")
    assert isinstance(out, torch.Tensor) and out.shape == (r, d)
    assert_close(out.numpy(), reference_project(x.numpy(), ProjectionSpec(seed=1, d=d)))


# ----------------------------------------------------------------------------------------------
# Golden vectors: pin ssp-v1 forever (docs/projection.md lists the same numbers).

GOLDEN_HASHES = {
    (0, 0, 0): 0x238275BC38FCBE91,
    (0, 7, 3): 0x131C537753C06F4C,
    (42, 0, 0): 0x6310BF04D8207F46,
    (42, 7, 3): 0xF55E4254D4655539,
    (2**64 - 1, 0, 0): 0xFC042709560421DA,
    (2**64 - 1, 7, 3): 0x5EEAFDF6A6023418,
}
GOLDEN_CHOICES_SEED42_D96 = {
    (0, 0): (1, 1),
    (1, 0): (1, 1),
    (95, 10): (32, 1),
    (5, 123456789): (370370368, 1),
}
# project(sin(arange(200)), d=64, seed=42)
GOLDEN_Y = [
    2.30544091, 2.01837995, -0.43923771, -0.72307428, -0.19188246, -0.96945150, 0.03526250,
    0.69361639, -0.26453577, 1.78648969, -0.98044378, 0.36170753, 1.91879912, -3.44536773,
    -0.54119482, 0.34537909, 0.20693884, 1.00811976, -0.32572511, -0.48817572, -0.99628434,
    -1.68952881, 0.92198142, -0.16334193, 0.65020449, 2.54744153, -1.67218080, -0.27822880,
    -0.67238845, 0.18744862, -0.89982101, 0.97403293, -2.26352583, -1.44767216, 2.34308206,
    -0.56309014, 0.36259218, 0.27770665, 0.70087484, 0.50565157, 1.27456933, 0.74127750,
    -3.50982221, 0.30703769, -0.58988043, -0.52816244, -0.99953376, -1.33619702, 0.09062275,
    0.66750789, -0.71855089, -0.59558742, 0.69379058, -1.44045891, -0.73348671, 1.04800006,
    -2.34529378, 0.08749997, -0.69593679, 1.34090827, -0.75073776, -2.24551050, 2.23819916,
    0.72115038,
]


def test_golden_hashes_and_choices():
    for (seed, j, c), expected in GOLDEN_HASHES.items():
        assert reference_hash(seed, j, c) == expected
    for (j, c), expected in GOLDEN_CHOICES_SEED42_D96.items():
        assert reference_choice(42, 96, j, c) == expected


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_golden_vector(backend):
    x = np.sin(np.arange(200, dtype=np.float64)).astype(np.float32)
    y = project(x, d=64, seed=42, n_total=200, backend=backend)
    np.testing.assert_allclose(y, GOLDEN_Y, rtol=0, atol=2e-6)


# ----------------------------------------------------------------------------------------------
# Properties


def test_seed_determinism_and_sensitivity():
    x = rows((4, 3000))
    a = project(x, d=128, seed=123, n_total=3000, backend="cpu")
    b = project(x, d=128, seed=123, n_total=3000, backend="cpu")
    np.testing.assert_array_equal(a, b)
    for other in (124, 0, 2**64 - 1):
        c = project(x, d=128, seed=other, n_total=3000, backend="cpu")
        # independent projections of the same vector are far apart (not merely permuted signs)
        assert np.abs(c - a).max() > 0.5 * np.abs(a).max()
        assert not np.allclose(np.sort(np.abs(c)), np.sort(np.abs(a)))


def test_block_additivity():
    """Blocks projected separately with their offsets sum to the projection of the whole."""
    n, d = 5003, 256
    x = rows((3, n), seed=2)
    whole = project(x, d=d, seed=5, n_total=n, backend="cpu")
    cuts = [0, 1, 17, 800, 801, 3000, n]
    parts = sum(
        project(x[:, a:b], d=d, seed=5, offset=a, n_total=n, backend="cpu")
        for a, b in zip(cuts[:-1], cuts[1:])
    )
    assert_close(parts, np.asarray(whole, np.float64))


def test_adjointness():
    n, d, r = 4000, 128, 5
    x = rows((r, n), seed=3)
    y = rows((r, d), seed=4)
    ax = project(x, d=d, seed=8, offset=1000, n_total=5000, backend="cpu").astype(np.float64)
    aty = project_transpose(y, n=n, d=d, seed=8, offset=1000, backend="cpu").astype(np.float64)
    left = np.einsum("rd,rd->r", ax, y)
    right = np.einsum("rn,rn->r", x.astype(np.float64), aty)
    np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-4)


def test_norm_preserved_in_expectation():
    """E||Ax||^2 = ||x||^2 over seeds. With d=256 the relative variance of ||Ax||^2 is about
    2/d, so the mean over 200 seeds has a standard error of ~0.0063; we allow 0.03 (~5 sigma)."""
    n, d = 2048, 256
    x = rows((1, n), seed=10)[0]
    ratios = [
        float(np.sum(project(x, d=d, seed=s, n_total=n, backend="cpu").astype(np.float64) ** 2))
        / float(np.sum(x.astype(np.float64) ** 2))
        for s in range(200)
    ]
    assert abs(np.mean(ratios) - 1.0) < 0.03
    # and the projection is a genuine random variable, not an isometry by construction
    assert np.std(ratios) > 0.01


def test_each_entry_feeds_about_32_outputs():
    """Each output picks exactly one entry per full region; each entry feeds Binomial(d, 1/s)
    outputs, mean d/s = 32 (checked over 4096 entries: standard error ~0.09, tolerance 0.5)."""
    d, n = 1024, 4096
    spec = ProjectionSpec(seed=77, d=d)
    eye_block = np.eye(n, dtype=np.float32)
    columns = project(eye_block, d=d, seed=77, n_total=n, backend="cpu")  # [n, d]: A^T
    nonzero = columns != 0
    per_entry = nonzero.sum(axis=1)
    assert abs(per_entry.mean() - 32) < 0.5
    per_output = nonzero.sum(axis=0)
    np.testing.assert_array_equal(per_output, n // spec.region_size)
    np.testing.assert_allclose(np.abs(columns[nonzero]), spec.scale, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:npeff.cuda_ops")
def test_one_dimensional_and_empty_inputs():
    x = rows((1, 100))[0]
    y = project(x, d=32, seed=0, n_total=100, backend="cpu")
    assert y.shape == (32,)
    assert project(np.zeros((0, 10), np.float32), d=32, seed=0, n_total=10).shape == (0, 32)
    assert project(np.zeros((2, 0), np.float32), d=32, seed=0, n_total=0).shape == (2, 32)
    assert project_transpose(np.zeros(32, np.float32), n=0, d=32, seed=0).shape == (0,)


# ----------------------------------------------------------------------------------------------
# Dtypes and containers


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_dtypes(dtype):
    x = torch.from_numpy(rows((3, 777), seed=12)).to(dtype)
    y = project(x, d=64, seed=2, n_total=777, backend="cpu")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    expected = reference_project(x.to(torch.float64).numpy(), ProjectionSpec(seed=2, d=64))
    assert_close(y.numpy(), expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_dtypes_and_non_contiguous(dtype):
    base = rows((800, 3), seed=13).astype(dtype)
    x = base.T  # non-contiguous view
    y = project(x, d=64, seed=2, n_total=800, backend="cpu")
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert_close(y, reference_project(x.astype(np.float64), ProjectionSpec(seed=2, d=64)))


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("d", [0, 16, 33, 100, -32, 64.0, "64", True])
def test_bad_dimension(d):
    with pytest.raises(InvalidArgumentError, match="multiple of 32"):
        project(rows((1, 10)), d=d, seed=0, n_total=10)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "0", None])
def test_bad_seed(seed):
    with pytest.raises(InvalidArgumentError, match="seed"):
        project(rows((1, 10)), d=32, seed=seed, n_total=10)


def test_bad_offsets_and_lengths():
    x = rows((1, 10))
    with pytest.raises(InvalidArgumentError, match="offset must be >= 0"):
        project(x, d=32, seed=0, offset=-1, n_total=10)
    with pytest.raises(InvalidArgumentError, match="runs past n_total"):
        project(x, d=32, seed=0, offset=5, n_total=10)
    with pytest.raises(InvalidArgumentError, match="offset must be an integer"):
        project(x, d=32, seed=0, offset=1.0, n_total=20)
    with pytest.raises(InvalidArgumentError, match="n must be >= 0"):
        project_transpose(rows((1, 32)), n=-1, d=32, seed=0)


def test_bad_arrays():
    with pytest.raises(InvalidArgumentError, match="numpy array or a torch tensor"):
        project([[1.0, 2.0]], d=32, seed=0, n_total=2)
    with pytest.raises(InvalidArgumentError, match="1-D or 2-D"):
        project(rows((2, 2, 2)), d=32, seed=0, n_total=2)
    with pytest.raises(InvalidArgumentError, match="dtype int64"):
        project(np.arange(10), d=32, seed=0, n_total=10)
    with pytest.raises(InvalidArgumentError, match="dtype complex64"):
        project(np.zeros(4, np.complex64), d=32, seed=0, n_total=4)
    with pytest.raises(InvalidArgumentError, match="y has 16 columns but d=32"):
        project_transpose(rows((2, 16)), n=4, d=32, seed=0)


def test_bad_backend():
    with pytest.raises(InvalidArgumentError, match="backend must be one of"):
        project(rows((1, 10)), d=32, seed=0, n_total=10, backend="gpu")


def test_auto_warns_once_and_records_backend(monkeypatch):
    monkeypatch.setattr(projection_module, "_auto_warned", False)
    monkeypatch.setattr(projection_module, "cuda_available", lambda: False)
    x = rows((1, 64))
    with pytest.warns(RuntimeWarning, match="runs on the CPU"):
        project(x, d=32, seed=0, n_total=64)
    assert projection_module.last_backend() == "cpu"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        project(x, d=32, seed=0, n_total=64)  # no second warning


def test_cuda_backend_raises_without_gpu():
    """Without the simulator and without a GPU, backend='cuda' is a clear error (subprocess:
    the simulator switch is read when numba is first imported)."""
    code = (
        "import numpy as np\n"
        "from npeff.cuda_ops import project, cuda_available\n"
        "from npeff.errors import BackendUnavailableError\n"
        "if cuda_available():\n"
        "    print('HAS-GPU')\n"
        "else:\n"
        "    try:\n"
        "        project(np.ones((1, 8), np.float32), d=32, seed=0, n_total=8, backend='cuda')\n"
        "    except BackendUnavailableError as e:\n"
        "        print('RAISED', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if "HAS-GPU" in out.stdout:
        pytest.skip("a real GPU is present")
    assert "RAISED" in out.stdout and "no CUDA GPU" in out.stdout


# ----------------------------------------------------------------------------------------------
# Real GPU (skipped without one)


@pytest.mark.gpu
def test_gpu_tensors_stay_on_device_and_match_cpu():
    x = torch.randn(32, 300_000, device="cuda", dtype=torch.bfloat16)
    y = project(x, d=1024, seed=4, offset=2**31, n_total=2**32, backend="cuda")
    assert y.is_cuda and y.dtype == torch.float32
    cpu = project(x.cpu(), d=1024, seed=4, offset=2**31, n_total=2**32, backend="cpu")
    assert_close(y.cpu().numpy(), cpu.numpy().astype(np.float64))
    back = project_transpose(y, n=300_000, d=1024, seed=4, offset=2**31, backend="cuda")
    back_cpu = project_transpose(cpu, n=300_000, d=1024, seed=4, offset=2**31, backend="cpu")
    assert back.is_cuda
    assert_close(back.cpu().numpy(), back_cpu.numpy().astype(np.float64))


def test_cuda_grid_covers_long_blocks():
    """The grid's y dimension is capped at 65535 blocks: longer blocks get more regions per block."""
    from npeff.cuda_ops import _cuda

    blocks, threads, per_block = _cuda.launch_grid(32, 1, 0, 2**27 - 1)  # d=32: s=1, 2**27 regions
    assert blocks[1] <= _cuda.MAX_GRID_Y and blocks[1] * per_block >= 2**27
    assert per_block % _cuda.LANES == 0 and threads == _cuda.WARPS * _cuda.LANES
    assert _cuda.launch_grid(64, 33, 5, 100) == ((16, 1, 2), 128, _cuda.REGIONS_PER_BLOCK)


def test_results_are_contiguous():
    x = rows((3, 500))
    for backend in ("cpu", "cuda"):
        y = project(x, d=64, seed=1, n_total=500, backend=backend)
        assert y.flags.c_contiguous
        back = project_transpose(torch.from_numpy(y), n=500, d=64, seed=1, backend=backend)
        assert back.is_contiguous()
