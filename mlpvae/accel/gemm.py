"""Batched matrix products ``a @ b`` that a CUDA graph can capture (the dense layers of Sec. 7).

CuPy refuses every cuBLAS call while a stream is capturing a CUDA graph
(``cublas.setStream`` raises ``NotImplementedError``: "calling cuBLAS API
during stream capture is currently unsupported"), although cuBLAS itself
supports capture.  So on CuPy the products go to cuBLAS
directly, through ``ctypes``, on a handle of our own (own workspace, bound to
the current stream before each call): ``cublas{S,D}gemmStridedBatched`` with
host-side alpha = 1, beta = 0, which a capture bakes into the graph.  On NumPy
(the reference, and what the CPU runs) it is ``numpy.matmul``, unchanged.

Row-major arrays are column-major arrays of the transposed matrix, so
``C = A @ B`` (row-major) is ``C^T = B^T A^T`` (column-major): cuBLAS gets
``B`` as its first operand and ``A`` as its second, each with the layout its
strides give (a C-contiguous matrix or a transposed view of one: the
``swapaxes`` views of :func:`mlpvae.nn.layers.dense_backward`), so no operand is
copied.  :func:`plan` is that mapping as a pure function (tested on NumPy
against a column-major emulation); anything it cannot express (more than one
leading axis, other strides, other dtypes) falls back to ``cupy.matmul``.

``VAETHEORY_FUSED=0`` (see :mod:`mlpvae.accel.fused`) or a cuBLAS library that cannot
be found turns this off; CUDA graphs then fail to capture and training runs
eagerly.

A stack of K models (:func:`mlpvae.training.train.train_many`) makes one batched call of
K; cuBLAS may choose another kernel for a batch of K than for a batch of one
and so round differently from training each model alone
(``VAETHEORY_STACK_EXACT=1``, :func:`mlpvae.nn.model.models_apart`, computes a
stack one model at a time instead).
"""

from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

import numpy as np

from mlpvae.accel import fused
from vaetheory.xp import array_namespace

OP_N, OP_T = 0, 1  # cublasOperation_t
WORKSPACE_BYTES = 32 << 20  # NVIDIA's recommended cuBLAS workspace on Hopper; fixed, so capture never allocates one


class Plan(NamedTuple):
    """The arguments of one ``cublas<t>gemmStridedBatched`` call (strides and leading dimensions in elements).

    ``first``/``second`` name which of ``(a, b)`` is cuBLAS's A and B operand.
    """

    transa: int
    transb: int
    m: int
    n: int
    k: int
    first: str
    lda: int
    stride_a: int
    second: str
    ldb: int
    stride_b: int
    ldc: int
    stride_c: int
    batch: int
    out_shape: tuple


def _layout(shape, strides):
    """``(op, ld)`` giving cuBLAS the column-major transpose of a row-major (R, S) matrix, or None.

    A C-contiguous-rows matrix (unit column stride) *is* its transpose in
    column-major order (op N, ld = row stride); a transposed view (unit row
    stride) is the matrix itself in column-major order (op T, ld = column stride).
    """
    (R, S), (sr, sc) = shape, strides
    if sc == 1 or S == 1:
        ld = sr if R > 1 else S
        if ld >= max(1, S):
            return OP_N, ld
    if sr == 1 or R == 1:
        ld = sc if S > 1 else R
        if ld >= max(1, R):
            return OP_T, ld
    return None


def plan(a_shape, a_strides, b_shape, b_strides) -> Plan | None:
    """The cuBLAS call for ``a @ b`` on row-major operands (shapes ``([K,] M, Kd)``,
    ``([K,] Kd, N)``; strides in elements).

    A missing or size-1 leading axis is broadcast (batch stride 0).  None when
    the product cannot be one strided-batched GEMM without copies.
    """
    if len(a_shape) not in (2, 3) or len(b_shape) not in (2, 3):
        return None
    M, Kd = a_shape[-2:]
    Kd2, N = b_shape[-2:]
    if Kd != Kd2 or min(M, N, Kd) < 1:
        return None
    ka = a_shape[0] if len(a_shape) == 3 else 1
    kb = b_shape[0] if len(b_shape) == 3 else 1
    if ka != kb and 1 not in (ka, kb):
        return None
    batch = max(ka, kb)
    la, lb = _layout(a_shape[-2:], a_strides[-2:]), _layout(b_shape[-2:], b_strides[-2:])
    if la is None or lb is None:
        return None
    sa = a_strides[0] if len(a_shape) == 3 and ka > 1 else 0
    sb = b_strides[0] if len(b_shape) == 3 and kb > 1 else 0
    out_shape = ((batch,) if max(len(a_shape), len(b_shape)) == 3 else ()) + (M, N)
    # C^T (N x M, column-major, ld N) = B^T (N x Kd) A^T (Kd x M)
    return Plan(
        transa=lb[0],
        transb=la[0],
        m=N,
        n=M,
        k=Kd,
        first="b",
        lda=lb[1],
        stride_a=sb,
        second="a",
        ldb=la[1],
        stride_b=sa,
        ldc=N,
        stride_c=M * N,
        batch=batch,
        out_shape=out_shape,
    )


class _Cublas:
    """The cuBLAS shared library CuPy loaded, one handle of ours with its own workspace."""

    def __init__(self, cp):
        cp.cuda.device.get_cublas_handle()  # makes CuPy load libcublas, so its path is in our maps
        self.lib = ctypes.CDLL(_loaded_library("libcublas.so"))
        self.handle = ctypes.c_void_p()
        _check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = None
        if hasattr(self.lib, "cublasSetWorkspace_v2"):  # cuBLAS 12+; older ones manage their own
            self.workspace = cp.empty(WORKSPACE_BYTES, dtype=cp.uint8)  # kept as long as the handle
            _check(
                self.lib.cublasSetWorkspace_v2(
                    self.handle, ctypes.c_void_p(self.workspace.data.ptr), ctypes.c_size_t(WORKSPACE_BYTES)
                ),
                "cublasSetWorkspace",
            )
        self.stream = None
        i, ll = ctypes.c_int, ctypes.c_longlong
        for name, scalar in (
            ("cublasSgemmStridedBatched", ctypes.c_float),
            ("cublasDgemmStridedBatched", ctypes.c_double),
        ):
            f = getattr(self.lib, name)
            f.argtypes = [
                ctypes.c_void_p,
                i,
                i,
                i,
                i,
                i,
                ctypes.POINTER(scalar),
                ctypes.c_void_p,
                i,
                ll,
                ctypes.c_void_p,
                i,
                ll,
                ctypes.POINTER(scalar),
                ctypes.c_void_p,
                i,
                ll,
                i,
            ]
            f.restype = i
        self.gemm = {
            np.dtype(np.float32): (self.lib.cublasSgemmStridedBatched, ctypes.c_float),
            np.dtype(np.float64): (self.lib.cublasDgemmStridedBatched, ctypes.c_double),
        }

    def bind(self, stream_ptr: int) -> None:
        if stream_ptr != self.stream:
            _check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")
            self.stream = stream_ptr


def _loaded_library(stem: str) -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rsplit(" ", 1)[-1].strip()
            if os.path.basename(path).startswith(stem):
                return path
    raise OSError(f"{stem} is not loaded in this process")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


_STATE: dict = {}


def _cublas(cp):
    """The process's :class:`_Cublas`, or None when the library cannot be reached (then CuPy's matmul is used)."""
    if "lib" not in _STATE:
        try:
            _STATE["lib"] = _Cublas(cp)
        except (OSError, AttributeError, RuntimeError) as exc:
            import sys

            print(
                f"mlpvae.accel.gemm: cuBLAS through ctypes unavailable ({exc}); using cupy.matmul "
                "(CUDA graphs will not capture)",
                file=sys.stderr,
            )
            _STATE["lib"] = None
    return _STATE["lib"]


def matmul(a, b, out=None):
    """``a @ b`` over an optional leading models axis K (the dense layers' products, Sec. 7).

    NumPy: :func:`numpy.matmul`.  CuPy: one cuBLAS strided-batched GEMM on
    the current stream, capturable into a CUDA graph; ``out`` (C-contiguous,
    of the product's shape and dtype) receives the result when given.
    """
    xp = array_namespace(a, b, out)
    if xp is np or not fused.enabled(xp):
        return xp.matmul(a, b) if out is None else xp.matmul(a, b, out=out)
    lib = _cublas(xp)
    dtype = np.dtype(a.dtype)
    item = dtype.itemsize
    p = None
    if lib is not None and b.dtype == dtype and dtype in lib.gemm and all(s % item == 0 for s in a.strides + b.strides):
        p = plan(a.shape, tuple(s // item for s in a.strides), b.shape, tuple(s // item for s in b.strides))
    if (
        p is not None
        and out is not None
        and not (tuple(out.shape) == p.out_shape and out.dtype == dtype and out.flags.c_contiguous)
    ):
        p = None
    if p is None:
        return xp.matmul(a, b) if out is None else xp.matmul(a, b, out=out)
    if out is None:
        out = xp.empty(p.out_shape, dtype=dtype)
    f, scalar = lib.gemm[dtype]
    lib.bind(xp.cuda.get_current_stream().ptr)
    ops = {"a": a, "b": b}
    one, zero = scalar(1.0), scalar(0.0)
    _check(
        f(
            lib.handle,
            p.transa,
            p.transb,
            p.m,
            p.n,
            p.k,
            ctypes.byref(one),
            ops[p.first].data.ptr,
            p.lda,
            p.stride_a,
            ops[p.second].data.ptr,
            p.ldb,
            p.stride_b,
            ctypes.byref(zero),
            out.data.ptr,
            p.ldc,
            p.stride_c,
            p.batch,
        ),
        f.__name__,
    )
    return out
