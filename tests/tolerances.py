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

#: a PEF computed in float64 but stored in float32, against a float64 brute-force reference,
#: compared as a relative Frobenius distance of the Fisher matrices (or as a float64 PEF norm):
#: float32 rounding (6e-8 relative) accumulated over the entries of the rows.
FLOAT32_STORED_PEF = dict(rtol=1e-6)

#: entries of unit-norm PEF rows stored in float32 (each |value| <= 1), against a float64 reference
#: or against a build that batched and padded the same examples differently.
FLOAT32_STORED_ROWS = dict(rtol=1e-7, atol=1e-6)

#: class probabilities stored in float32 against float64 ones of a single unpadded forward pass.
FLOAT32_STORED_PROBS = dict(rtol=1e-5)

#: a float32 build on a CUDA GPU against the same build on the CPU: float32 gradients from other
#: kernels (other summation orders in the matrix products) and projections summed in another order;
#: atol is this rtol times the largest stored value.
FLOAT32_BUILD_ON_ANOTHER_DEVICE = dict(rtol=1e-4)

#: the sum of per-tensor float32 projections against one float32 projection of the whole row: a
#: sum over ~n terms in another order; atol is this rtol times the largest projected value.
FLOAT32_PROJECTION_REGROUPED = dict(rtol=1e-4)

#: FPC (stopped at a relative change of 1e-12) against a naive ISTA iterated until its steps
#: stop changing, both in float64 on the same small dense problem: each is within a few thousand
#: steps' contraction of the same unique minimiser, not rounding-close to it.
FPC_VS_NAIVE = dict(rtol=1e-6, atol=1e-8)

#: FPC through npeff's float32 projection kernels against a float64 ISTA on the materialised
#: matrix: every product with A or A^T is rounded to float32, so the iterates stall at a relative
#: change per step of about 5e-9; FPC stops at 1.5e-8, and its slowest mode leaves it a few hundred
#: times that from the minimiser (measured 4e-6 on O(1) entries).
FPC_FLOAT32_OPERATOR = dict(rtol=1e-5, atol=1e-5)
