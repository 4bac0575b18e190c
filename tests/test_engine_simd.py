"""The explicit-SIMD matrix-vector blocks of the Numba engines equal their plain-loop reference and
numpy, for float32 and float64, strided views, ragged row counts and sample counts that are not
a multiple of the vector width."""
import numpy as np
import pytest
from numba import njit

from elm_neuro.networks.engines.simd import GRAM_CHUNK, LANES, axpy, gram, gram_reference, matvec, matvec_reference, mul_acc


@njit
def _call_matvec(W, i0, n_in, x, out, bias, B):  # matvec inlines into compiled callers only
    matvec(W, i0, n_in, x, out, bias, B)


@njit
def _call_gram(A, X, out):
    gram(A, X, out)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("rows,n_in,bsz", [(18, 39, LANES), (9, 18, 2 * LANES + 3), (3, 33, 5), (13, 1, 3 * LANES),
                                           (1, 7, LANES + 1)])
def test_matvec_equals_the_reference_and_numpy(dtype, tol, rows, n_in, bsz):
    rng = np.random.default_rng(rows * 100 + bsz)
    W = rng.standard_normal((rows, n_in + 3)).astype(dtype)  # columns i0 .. i0 + n_in - 1 of a wider matrix
    x = rng.standard_normal((n_in, 4, bsz)).astype(dtype)[:, 2, :]  # rows strided, samples contiguous
    bias = rng.standard_normal(rows).astype(dtype)
    out_parent = np.full((rows, 3, bsz), 7.0, dtype)
    out = out_parent[:, 1, :]
    ref = np.zeros((rows, bsz), dtype)
    _call_matvec(W, 2, n_in, x, out, bias, bsz)
    matvec_reference(W, 2, n_in, x, ref, bias, bsz)
    exact = bias[:, None].astype(np.float64) + W[:, 2:2 + n_in].astype(np.float64) @ x.astype(np.float64)
    scale = max(1.0, float(np.abs(exact).max()))
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * scale * n_in)
    np.testing.assert_allclose(out, exact, rtol=0, atol=tol * scale * n_in)
    assert (out_parent[:, 0] == 7.0).all() and (out_parent[:, 2] == 7.0).all()  # nothing written outside


def test_matvec_leaves_samples_beyond_B_alone():
    W = np.ones((5, 4), np.float32)
    x = np.ones((4, 2 * LANES), np.float32)
    out = np.full((5, 2 * LANES), -1.0, np.float32)
    _call_matvec(W, 0, 4, x, out, np.zeros(5, np.float32), LANES + 2)
    assert (out[:, :LANES + 2] == 4.0).all() and (out[:, LANES + 2:] == -1.0).all()


def test_matvec_rejects_mixed_dtypes():
    W = np.ones((2, 2), np.float32)
    with pytest.raises(Exception, match="share one dtype"):
        _call_matvec(W, 0, 2, np.ones((2, LANES), np.float64), np.zeros((2, LANES), np.float32),
                     np.zeros(2, np.float32), LANES)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("rows,cols,steps,bsz", [(18, 39, 2 * GRAM_CHUNK + 5, LANES), (9, 18, 31, 2 * LANES + 3),
                                                 (5, 3, 13, 3), (4, 4, 1, LANES), (1, 1, 7, LANES + 1),
                                                 (6, 2, 0, LANES)])
def test_gram_equals_the_reference_and_numpy(dtype, tol, rows, cols, steps, bsz):
    """``sum_{t,b} A[t, :, b] X[t, :, b]^T`` from vector blocks (4 x 4, 4 x 1, 1 x 4, 1 x 1
    outputs), cache chunks and the ragged samples, against plain loops and float64 numpy."""
    rng = np.random.default_rng(rows * 1000 + steps)
    A = rng.standard_normal((steps, rows + 2, bsz)).astype(dtype)[:, 1:1 + rows]  # a strided view
    X = rng.standard_normal((steps, cols, bsz)).astype(dtype)
    out, ref = np.full((rows, cols), np.nan, dtype), np.zeros((rows, cols), dtype)
    _call_gram(A, X, out)
    gram_reference(A, X, ref)
    exact = np.einsum("trb,tcb->rc", A.astype(np.float64), X.astype(np.float64))
    scale = max(1.0, float(np.abs(exact).max())) * max(1.0, np.sqrt(steps * bsz))
    np.testing.assert_allclose(out, exact, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(ref, exact, rtol=0, atol=tol * scale)


@njit
def _call_lanes(w, x, out, a, B):
    axpy(w, x, 2, out, 1, B)
    mul_acc(a, 0, x, 1, out, 3, B)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bsz", [3, LANES, 2 * LANES + 3])
def test_axpy_and_mul_acc_equal_numpy(dtype, bsz):
    rng = np.random.default_rng(bsz)
    x = rng.standard_normal((4, bsz + 2)).astype(dtype)
    out = rng.standard_normal((5, bsz + 2)).astype(dtype)
    a = rng.standard_normal((2, bsz + 2)).astype(dtype)
    want = out.copy()
    want[1, :bsz] += dtype(0.7) * x[2, :bsz]
    want[3, :bsz] += a[0, :bsz] * x[1, :bsz]
    _call_lanes(dtype(0.7), x, out, a, bsz)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)  # samples >= bsz untouched
