"""mlpvae.accel.gemm: row-major products as column-major cuBLAS calls (the plan, on NumPy; the calls, on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

from mlpvae.accel import gemm
from mlpvae.nn import layers as Ly


def _operand(rng, lead, rows, cols, transposed, dtype=np.float64):
    """A ``(*lead, rows, cols)`` operand, C-contiguous or a transposed view of a contiguous array."""
    if transposed:
        return rng.standard_normal((*lead, cols, rows)).astype(dtype).swapaxes(-1, -2)
    return rng.standard_normal((*lead, rows, cols)).astype(dtype)


def _column_major(x, trans, rows, cols, ld, stride, batch):
    """What cuBLAS reads: ``batch`` column-major matrices at ``x``'s first element, op applied."""
    item = x.itemsize
    stored = (cols, rows) if trans == gemm.OP_T else (rows, cols)
    mats = as_strided(x, shape=(batch, *stored), strides=(stride * item, item, ld * item))
    return mats.swapaxes(-1, -2) if trans == gemm.OP_T else mats


def _emulate(p: gemm.Plan, a, b):
    """C = op(A) op(B) as cuBLAS computes it from the plan, returned in row-major ``out_shape``."""
    ops = {"a": a, "b": b}
    A = _column_major(ops[p.first], p.transa, p.m, p.k, p.lda, p.stride_a, p.batch)
    B = _column_major(ops[p.second], p.transb, p.k, p.n, p.ldb, p.stride_b, p.batch)
    C = A @ B  # (batch, m, n), column-major meaning: C^T in row-major terms
    assert p.ldc == p.m and p.stride_c == p.m * p.n
    return np.ascontiguousarray(C.swapaxes(-1, -2)).reshape(p.out_shape)


def _strides(x):
    return tuple(s // x.itemsize for s in x.strides)


@settings(max_examples=150, deadline=None)
@given(
    M=st.integers(1, 6),
    Kd=st.integers(1, 6),
    N=st.integers(1, 6),
    lead=st.sampled_from([((), ()), ((3,), (3,)), ((), (3,)), ((3,), ()), ((1,), (3,)), ((3,), (1,))]),
    ta=st.booleans(),
    tb=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_plan_computes_the_row_major_product(M, Kd, N, lead, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = _operand(rng, lead[0], M, Kd, ta)
    b = _operand(rng, lead[1], Kd, N, tb)
    p = gemm.plan(a.shape, _strides(a), b.shape, _strides(b))
    assert p is not None
    want = np.matmul(a, b)
    assert p.out_shape == want.shape
    np.testing.assert_allclose(_emulate(p, a, b), want, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])


def test_the_dense_layers_products_are_planned_without_copies():
    rng = np.random.default_rng(0)
    h, W, g = rng.standard_normal((5, 300, 784)), rng.standard_normal((5, 784, 200)), rng.standard_normal((5, 300, 200))
    for a, b in ((h, W), (h.swapaxes(-1, -2), g), (g, W.swapaxes(-1, -2))):
        p = gemm.plan(a.shape, _strides(a), b.shape, _strides(b))
        assert p is not None and p.batch == 5
        np.testing.assert_allclose(
            _emulate(p, a, b), a @ b, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"] * 784
        )


def test_what_one_strided_gemm_cannot_do_is_refused():
    x = np.zeros((4, 6, 6))
    assert gemm.plan((2, 3), (3, 1), (4, 5), (5, 1)) is None  # inner sizes differ
    assert gemm.plan((2, 2, 3), (6, 3, 1), (3, 3, 5), (15, 5, 1)) is None  # batches 2 and 3
    assert gemm.plan((1, 2, 2, 3), (12, 6, 3, 1), (3, 5), (5, 1)) is None  # two leading axes
    y = x[:, ::2, ::2]  # neither unit stride
    assert gemm.plan(y.shape, _strides(y), (3, 3), (3, 1)) is None
    assert gemm.plan((0, 3), (3, 1), (3, 5), (5, 1)) is None


def test_numpy_products_are_numpy_matmul_exactly():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 7, 5)).astype(np.float32), rng.standard_normal((3, 5, 4)).astype(np.float32)
    out = np.empty((3, 7, 4), np.float32)
    assert gemm.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, np.matmul(a, b))
    np.testing.assert_array_equal(gemm.matmul(a.swapaxes(-1, -2).swapaxes(-1, -2), b), a @ b)


# ---------------------------------------------------------------------------- GPU only
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead", [((), ()), ((3,), (3,)), ((), (3,)), ((3,), (1,))])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_cublas_products_match_cupy_matmul(dtype, lead, ta, tb):
    rng = np.random.default_rng(2)
    a = CUPY.asarray(_operand(rng, lead[0], 37, 53, False, dtype))
    b = CUPY.asarray(_operand(rng, lead[1], 53, 29, False, dtype))
    if ta:
        a = CUPY.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)
    if tb:
        b = CUPY.ascontiguousarray(b.swapaxes(-1, -2)).swapaxes(-1, -2)
    assert gemm.plan(a.shape, _strides(a), b.shape, _strides(b)) is not None
    got = gemm.matmul(a, b)
    want = CUPY.matmul(a, b)
    rtol, atol = (
        (TOL["f32_vs_f64"], TOL["f32_gemm_abs"])
        if dtype == np.float32
        else (TOL["known_answer_f64"], TOL["known_answer_f64"] * 53)
    )
    np.testing.assert_allclose(CUPY.asnumpy(got), CUPY.asnumpy(want), rtol=rtol, atol=atol)
    out = CUPY.empty(want.shape, dtype=dtype)
    assert gemm.matmul(a, b, out=out) is out
    np.testing.assert_allclose(CUPY.asnumpy(out), CUPY.asnumpy(want), rtol=rtol, atol=atol)


@needs_gpu
def test_cublas_products_are_captured_by_a_cuda_graph():
    rng = np.random.default_rng(3)
    h = CUPY.asarray(rng.standard_normal((4, 300, 200)).astype(np.float32))
    W = CUPY.asarray(rng.standard_normal((4, 200, 50)).astype(np.float32))
    b = CUPY.zeros((4, 50), np.float32)
    with CUPY.cuda.Stream(non_blocking=True) as s:
        Ly.dense(h, W, b)  # warm: kernels compiled, handle made
        s.begin_capture()
        out = Ly.dense(h, W, b)
        graph = s.end_capture()
        h += 1.0  # the graph reads h when it runs, not when it was recorded
        graph.launch(stream=s)
        s.synchronize()
    np.testing.assert_allclose(
        CUPY.asnumpy(out), CUPY.asnumpy(CUPY.matmul(h, W)), rtol=TOL["f32_vs_f64"], atol=TOL["f32_gemm_abs"]
    )
