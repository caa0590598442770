"""The eigenvalue decay of a store's PEFs (Figure 3) against numpy.linalg.eigvalsh per example in
float64, streamed over the store piece by piece."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.spectrum import NORMALIZATIONS, gram_eigenvalues, pef_spectrum
from npeff.store import create_store
from tests import tolerances

M, RANK, DIM = 50, 4, 24
NOT_OK, ZERO, RANK_TWO = 5, 3, (7, 8, 9)


@pytest.fixture
def pefs(tmp_path):
    """50 PEFs over 4 shards: one skipped, one zero, three of rank 2 (zero-padded rows)."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((M, RANK, DIM)) * np.array([1.0, 0.5, 0.1, 0.01])[None, :, None]  # a decay
    g[ZERO] = 0.0
    g[list(RANK_TWO), 2:] = 0.0
    g = g.astype(np.float32)
    writer = create_store(tmp_path / "store", rank=RANK, dim=DIM, projection={"kind": "external"},
                          shard_examples=16, chunk_examples=4)
    writer.append(g, [{"status": "skipped"} if i == NOT_OK else {} for i in range(M)])
    return writer.finalize(), g.astype(np.float64)


def naive_spectrum(g, normalize):
    """Example by example: eigvalsh of G G^T in float64, largest first, normalised; then the mean."""
    rows, shares = [], []
    for i in range(len(g)):
        if i in (NOT_OK, ZERO):
            continue
        values = np.clip(np.linalg.eigvalsh(g[i] @ g[i].T)[::-1], 0, None)
        scale = {"max": values[0], "sum": values.sum(), "frobenius": np.sqrt((values ** 2).sum())}[normalize]
        rows.append(values / scale)
        shares.append(np.cumsum(values) / values.sum())
    return np.array(rows), np.array(shares)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_spectrum_against_eigvalsh_per_example(pefs, normalize):
    store, g = pefs
    result = pef_spectrum(store, normalize=normalize)
    rows, shares = naive_spectrum(g, normalize)
    assert (result.n_examples, result.n_used, result.n_not_ok, result.n_zero) == (M, M - 2, 1, 1)
    assert result.rank == RANK and result.normalize == normalize and result.dtype == "float64"
    np.testing.assert_allclose(result.mean, rows.mean(axis=0), **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(result.std, rows.std(axis=0), **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(result.cumulative_share, shares.mean(axis=0), **tolerances.FLOAT64_VS_NAIVE)
    assert list(result.mean) == sorted(result.mean, reverse=True)
    if normalize == "max":
        assert result.mean[0] == pytest.approx(1.0) and result.std[0] == pytest.approx(0.0, abs=1e-12)
    if normalize == "sum":
        np.testing.assert_allclose(np.cumsum(result.mean), result.cumulative_share, **tolerances.FLOAT64_VS_NAIVE)
    assert result.to_dict()["mean"] == list(result.mean)


def test_gram_eigenvalues_are_the_nonzero_eigenvalues_of_the_pef(pefs):
    """The r x r Gram G G^T has the non-zero eigenvalues of the d x d PEF G^T G."""
    import torch

    _, g = pefs
    from_gram = gram_eigenvalues(torch.from_numpy(g)).numpy()
    for i in (0, 1, RANK_TWO[0], ZERO):
        pef = np.linalg.eigvalsh(g[i].T @ g[i])[::-1][:RANK]  # [d, d], the PEF itself
        np.testing.assert_allclose(from_gram[i], np.clip(pef, 0, None), rtol=1e-9, atol=1e-12)


def test_the_store_is_streamed_piece_by_piece(pefs, monkeypatch):
    store, g = pefs
    reads = []
    original = type(store).read

    def read(self, start, stop):
        reads.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(type(store), "read", read)
    result = pef_spectrum(store)
    assert max(reads) <= 16 < M and sum(reads) == M  # shard by shard, each once
    np.testing.assert_allclose(result.mean, naive_spectrum(g, "max")[0].mean(axis=0), **tolerances.FLOAT64_VS_NAIVE)


def test_float32_is_close_to_float64(pefs):
    store, _ = pefs
    np.testing.assert_allclose(pef_spectrum(store, dtype="float32").mean, pef_spectrum(store).mean,
                               **tolerances.FLOAT32_VS_FLOAT64)


@pytest.mark.gpu
def test_cuda_matches_cpu(pefs):
    store, _ = pefs
    np.testing.assert_allclose(pef_spectrum(store, device="cuda").mean, pef_spectrum(store).mean,
                               **tolerances.FLOAT64_REGROUPED)


@pytest.mark.parametrize("kwargs, message", [
    (dict(normalize="median"), "normalize must be one of max, sum, frobenius"),
    (dict(dtype="float16"), "dtype must be one of float32, float64"),
    (dict(device="tpu"), "device"),
])
def test_bad_arguments(pefs, kwargs, message):
    store, _ = pefs
    with pytest.raises(InvalidArgumentError, match=message):
        pef_spectrum(store, **kwargs)


def test_a_store_without_usable_examples(tmp_path):
    writer = create_store(tmp_path / "zeros", rank=2, dim=8, projection={"kind": "external"})
    writer.append(np.zeros((3, 2, 8), np.float32))
    with pytest.raises(InvalidArgumentError, match="no example of .* has status ok and a non-zero PEF"):
        pef_spectrum(writer.finalize())
