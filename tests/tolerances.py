"""Numerical tolerances of the test suite, each with the reason it is what it is.

Use them as ``np.testing.assert_allclose(actual, expected, **tolerances.NAME)``. Never loosen one to
make a test pass: a test that needs more slack needs a new entry with its own reason.
"""

#: float64, the same operations grouped differently (a chunk streamed in pieces vs resident, a
#: shard read whole vs in pieces): only the summation order of a few partial sums differs.
FLOAT64_REGROUPED = dict(rtol=1e-12, atol=1e-15)

#: float64 over several steps of an iterative algorithm whose partial sums are reduced in another
#: order (other workers, another process, a resumed run): rounding differences are amplified by
#: the multiplicative updates, but stay many orders below any algorithmic difference.
FLOAT64_REDUCED_ELSEWHERE = dict(rtol=1e-10, atol=1e-13)

#: float64 against a naive reference implementation written independently (other arrangement of
#: the same formulas, e.g. B = G H^T per example vs per chunk) over several steps.
FLOAT64_VS_NAIVE = dict(rtol=1e-9, atol=1e-12)

#: a float32 computation or float32 storage against a float64 reference of O(1) values.
FLOAT32_VS_FLOAT64 = dict(rtol=1e-5, atol=1e-6)
