"""Explicit-SIMD matrix-vector blocks for the Numba kernels (:mod:`elm_numba`).

Why: inside the ELM engine's time loop every neuron multiplies its small MLP matrices (rows of
9-39 numbers) with one column per sample. Written as Numba loops, LLVM vectorises neither the
samples (a loop of 8 is unrolled into 8 scalar multiply-adds whose accumulators the SLP
vectoriser does not pack) nor, usefully, the short rows (one horizontal reduction per output):
about 12 GFLOP/s. Here the samples are one vector: :func:`matvec` holds ``R`` output rows for
``LANES`` samples in ``R`` vector registers, and per input element does one vector load of the
samples and ``R`` broadcast multiply-adds (``llvm.fma`` on ``<LANES x float>``), 3-4x the
scalar loops' rate (``benchmarks/bench_elm.py``). LLVM lowers the vector type on any target
(two AVX2 registers, one AVX-512 register, NEON pairs).

:func:`matvec` is the fast path, :func:`matvec_reference` the plain loop it must equal
(``tests/test_engine_simd.py``, float32 and float64, strided views, ragged sizes).

    out[o, b] = bias[o] + sum_{i < I} W[o, i0 + i] * x[i, b]     for every row o, sample b < B

Arrays are 2-D (any strides) except that the samples of ``x`` and ``out`` must be contiguous
(unit stride along the last axis): the block loads and stores ``LANES`` neighbouring samples.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # samples per vector (one AVX-512 register of float32, two of float64)
_FM = dict(fastmath={"reassoc", "contract", "nsz"})


def _element_pointer(context, builder, ty, value, indices):
    ary = context.make_array(ty)(context, builder, value)
    shape = cgutils.unpack_tuple(builder, ary.shape, ty.ndim)
    strides = cgutils.unpack_tuple(builder, ary.strides, ty.ndim)
    return cgutils.get_item_pointer2(context, builder, ary.data, shape, strides, ty.layout, indices)


def _block_intrinsic(rows: int):
    """An intrinsic ``block(W, o, i0, I, x, out, bias, b0)``: rows ``o .. o + rows - 1`` of
    ``out`` for samples ``b0 .. b0 + LANES - 1`` (the formula in the module docstring)."""

    @intrinsic
    def block(typingctx, W, o, i0, n_in, x, out, bias, b0):
        for name, ty, ndim in (("W", W, 2), ("x", x, 2), ("out", out, 2), ("bias", bias, 1)):
            if not isinstance(ty, types.Array) or ty.ndim != ndim or ty.dtype not in (types.float32, types.float64):
                raise TypeError(f"matvec block: {name} must be a {ndim}-D float32/float64 array, got {ty}")
        if len({W.dtype, x.dtype, out.dtype, bias.dtype}) != 1:
            raise TypeError("matvec block: W, x, out and bias must share one dtype")
        sig = types.void(W, o, i0, n_in, x, out, bias, b0)

        def codegen(context, builder, signature, args):
            tW, to, ti0, tn, tx, tout, tbias, tb0 = signature.args
            vW, vo, vi0, vn, vx, vout, vbias, vb0 = args
            intp = lambda v, t: context.cast(builder, v, t, types.intp)  # noqa: E731
            vo, vi0, vn, vb0 = intp(vo, to), intp(vi0, ti0), intp(vn, tn), intp(vb0, tb0)
            scalar = context.get_value_type(tW.dtype)
            vec = ir.VectorType(scalar, LANES)
            align = 4 if tW.dtype == types.float32 else 8
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                f"llvm.fma.v{LANES}{'f32' if tW.dtype == types.float32 else 'f64'}")
            zeros32 = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

            def splat(s):
                v = builder.insert_element(ir.Constant(vec, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), zeros32)

            def row(r):
                return builder.add(vo, ir.Constant(vo.type, r))

            acc = []
            for r in range(rows):  # accumulators start at the bias (stack slots LLVM keeps in registers)
                slot = cgutils.alloca_once(builder, vec)
                builder.store(splat(builder.load(_element_pointer(context, builder, tbias, vbias, [row(r)]))), slot)
                acc.append(slot)
            with cgutils.for_range(builder, vn) as loop:
                xp = _element_pointer(context, builder, tx, vx, [loop.index, vb0])
                xv = builder.load(builder.bitcast(xp, vec.as_pointer()), align=align)
                col = builder.add(vi0, loop.index)
                for r in range(rows):
                    w = builder.load(_element_pointer(context, builder, tW, vW, [row(r), col]))
                    builder.store(builder.call(fma, [splat(w), xv, builder.load(acc[r])]), acc[r])
            for r in range(rows):
                op = _element_pointer(context, builder, tout, vout, [row(r), vb0])
                builder.store(builder.load(acc[r]), builder.bitcast(op, vec.as_pointer()), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return block


_block8, _block4, _block1 = (_block_intrinsic(r) for r in (8, 4, 1))


@njit(inline="always", **_FM)
def matvec(W, i0, n_in, x, out, bias, B):
    """``out[o, b] = bias[o] + sum_{i < n_in} W[o, i0 + i] * x[i, b]`` for all rows of ``W`` and
    samples ``b < B``: vector blocks of ``LANES`` samples (8, 4, then 1 rows at a time), the
    remaining ``B % LANES`` samples as scalar loops."""
    rows = W.shape[0]
    full = B - B % LANES
    for b0 in range(0, full, LANES):
        o = 0
        while o + 8 <= rows:
            _block8(W, o, i0, n_in, x, out, bias, b0)
            o += 8
        while o + 4 <= rows:
            _block4(W, o, i0, n_in, x, out, bias, b0)
            o += 4
        while o < rows:
            _block1(W, o, i0, n_in, x, out, bias, b0)
            o += 1
    for b in range(full, B):
        for o in range(rows):
            acc = bias[o]
            for i in range(n_in):
                acc += W[o, i0 + i] * x[i, b]
            out[o, b] = acc


@njit(**_FM)
def matvec_reference(W, i0, n_in, x, out, bias, B):
    """:func:`matvec` as plain loops (the reference its tests compare with)."""
    for o in range(W.shape[0]):
        for b in range(B):
            acc = bias[o]
            for i in range(n_in):
                acc += W[o, i0 + i] * x[i, b]
            out[o, b] = acc


def _vector_pointer(context, builder, ty, value, row, b0, vec):
    return builder.bitcast(_element_pointer(context, builder, ty, value, [row, b0]), vec.as_pointer())


def _lanes_intrinsic(scaled: bool):
    """An intrinsic for ``LANES`` samples from ``b0`` of one row each:
    ``out[orow, b] += w * x[xrow, b]`` (``scaled``: ``w`` a scalar) or
    ``out[orow, b] += a[arow, b] * x[xrow, b]``."""

    def typer(name, *arrays):
        for ty in arrays:
            if not isinstance(ty, types.Array) or ty.ndim != 2 or ty.dtype not in (types.float32, types.float64):
                raise TypeError(f"{name}: arrays must be 2-D float32/float64, got {ty}")
        if len({ty.dtype for ty in arrays}) != 1:
            raise TypeError(f"{name}: arrays must share one dtype")

    def body(context, builder, dtype, out_ty, out_v, orow, b0, x_ty, x_v, xrow, factor):
        scalar = context.get_value_type(dtype)
        vec = ir.VectorType(scalar, LANES)
        align = 4 if dtype == types.float32 else 8
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                             f"llvm.fma.v{LANES}{'f32' if dtype == types.float32 else 'f64'}")
        xv = builder.load(_vector_pointer(context, builder, x_ty, x_v, xrow, b0, vec), align=align)
        op = _vector_pointer(context, builder, out_ty, out_v, orow, b0, vec)
        builder.store(builder.call(fma, [factor(vec), xv, builder.load(op, align=align)]), op, align=align)
        return context.get_dummy_value()

    if scaled:
        @intrinsic
        def axpy(typingctx, w, x, xrow, out, orow, b0):
            typer("axpy", x, out)
            sig = types.void(w, x, xrow, out, orow, b0)

            def codegen(context, builder, signature, args):
                tw, tx, txr, tout, tor, tb0 = signature.args
                vw, vx, vxr, vout, vor, vb0 = args
                intp = lambda v, t: context.cast(builder, v, t, types.intp)  # noqa: E731
                wv = context.cast(builder, vw, tw, tx.dtype)

                def factor(vec):
                    v = builder.insert_element(ir.Constant(vec, ir.Undefined), wv, ir.Constant(ir.IntType(32), 0))
                    return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined),
                                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
                return body(context, builder, tx.dtype, tout, vout, intp(vor, tor), intp(vb0, tb0), tx, vx,
                            intp(vxr, txr), factor)
            return sig, codegen
        return axpy

    @intrinsic
    def mul_acc(typingctx, a, arow, x, xrow, out, orow, b0):
        typer("mul_acc", a, x, out)
        sig = types.void(a, arow, x, xrow, out, orow, b0)

        def codegen(context, builder, signature, args):
            ta, tar, tx, txr, tout, tor, tb0 = signature.args
            va, var, vx, vxr, vout, vor, vb0 = args
            intp = lambda v, t: context.cast(builder, v, t, types.intp)  # noqa: E731
            align = 4 if ta.dtype == types.float32 else 8

            def factor(vec):
                return builder.load(_vector_pointer(context, builder, ta, va, intp(var, tar), intp(vb0, tb0), vec),
                                    align=align)
            return body(context, builder, tx.dtype, tout, vout, intp(vor, tor), intp(vb0, tb0), tx, vx,
                        intp(vxr, txr), factor)
        return sig, codegen
    return mul_acc


_axpy_block, _mul_acc_block = _lanes_intrinsic(True), _lanes_intrinsic(False)


@njit(inline="always", **_FM)
def axpy(w, x, xrow, out, orow, B):
    """``out[orow, b] += w * x[xrow, b]`` for samples ``b < B`` (vector blocks, then the rest)."""
    full = B - B % LANES
    for b0 in range(0, full, LANES):
        _axpy_block(w, x, xrow, out, orow, b0)
    for b in range(full, B):
        out[orow, b] += w * x[xrow, b]


@njit(inline="always", **_FM)
def mul_acc(a, arow, x, xrow, out, orow, B):
    """``out[orow, b] += a[arow, b] * x[xrow, b]`` for samples ``b < B``."""
    full = B - B % LANES
    for b0 in range(0, full, LANES):
        _mul_acc_block(a, arow, x, xrow, out, orow, b0)
    for b in range(full, B):
        out[orow, b] += a[arow, b] * x[xrow, b]


def _gram_intrinsic(rows: int, cols: int):
    """An intrinsic ``block(A, r0, X, c0, t0, t1, b0, out)``: ``out[r0 + r, c0 + c] +=
    sum_{t0 <= t < t1} sum_{b0 <= b < b0 + LANES} A[t, r0 + r, b] * X[t, c0 + c, b]`` for
    ``r < rows``, ``c < cols``: ``rows * cols`` vector accumulators, summed across their lanes at
    the end."""

    @intrinsic
    def block(typingctx, A, r0, X, c0, t0, t1, b0, out):
        for name, ty, ndim in (("A", A, 3), ("X", X, 3), ("out", out, 2)):
            if not isinstance(ty, types.Array) or ty.ndim != ndim or ty.dtype not in (types.float32, types.float64):
                raise TypeError(f"gram block: {name} must be a {ndim}-D float32/float64 array, got {ty}")
        if len({A.dtype, X.dtype, out.dtype}) != 1:
            raise TypeError("gram block: A, X and out must share one dtype")
        sig = types.void(A, r0, X, c0, t0, t1, b0, out)

        def codegen(context, builder, signature, args):
            tA, tr0, tX, tc0, tt0, tt1, tb0, tout = signature.args
            vA, vr0, vX, vc0, vt0, vt1, vb0, vout = args
            intp = lambda v, t: context.cast(builder, v, t, types.intp)  # noqa: E731
            vr0, vc0, vt0, vt1, vb0 = intp(vr0, tr0), intp(vc0, tc0), intp(vt0, tt0), intp(vt1, tt1), intp(vb0, tb0)
            scalar = context.get_value_type(tA.dtype)
            vec = ir.VectorType(scalar, LANES)
            align = 4 if tA.dtype == types.float32 else 8
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                                 f"llvm.fma.v{LANES}{'f32' if tA.dtype == types.float32 else 'f64'}")

            def plus(v, k):
                return builder.add(v, ir.Constant(v.type, k))

            def vload(ty, val, t, row):
                ptr = _element_pointer(context, builder, ty, val, [t, row, vb0])
                return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=align)

            acc = []
            for _ in range(rows * cols):
                slot = cgutils.alloca_once(builder, vec)
                builder.store(ir.Constant(vec, [0.0] * LANES), slot)
                acc.append(slot)
            with cgutils.for_range_slice(builder, vt0, vt1, ir.Constant(vt0.type, 1)) as (t, _):
                av = [vload(tA, vA, t, plus(vr0, r)) for r in range(rows)]
                xv = [vload(tX, vX, t, plus(vc0, c)) for c in range(cols)]
                for r in range(rows):
                    for c in range(cols):
                        slot = acc[r * cols + c]
                        builder.store(builder.call(fma, [av[r], xv[c], builder.load(slot)]), slot)
            for r in range(rows):
                for c in range(cols):
                    v = builder.load(acc[r * cols + c])
                    total = builder.extract_element(v, ir.Constant(ir.IntType(32), 0))
                    for k in range(1, LANES):
                        total = builder.fadd(total, builder.extract_element(v, ir.Constant(ir.IntType(32), k)))
                    op = _element_pointer(context, builder, tout, vout, [plus(vr0, r), plus(vc0, c)])
                    builder.store(builder.fadd(builder.load(op), total), op)
            return context.get_dummy_value()

        return sig, codegen

    return block


_gram44, _gram41, _gram14, _gram11 = (_gram_intrinsic(r, c) for r, c in ((4, 4), (4, 1), (1, 4), (1, 1)))

GRAM_CHUNK = 64  # steps per pass over all output blocks (the chunk of both operands stays in cache)


@njit(inline="always", **_FM)
def gram(A, X, out):
    """``out[r, c] = sum_{t, b} A[t, r, b] * X[t, c, b]`` for ``A`` [T, R, B] and ``X`` [T, C, B]
    whose samples are contiguous (the engine's per-step blocks): chunks of ``GRAM_CHUNK`` steps
    (cache blocking), in each vector accumulators over ``LANES`` samples for blocks of 4 x 4 output
    elements (each vector load serves 4 multiply-adds), then the ragged rows; the samples after
    the last whole vector as scalar loops."""
    T, R, B = A.shape
    C = X.shape[1]
    full = B - B % LANES
    for r in range(R):
        for c in range(C):
            out[r, c] = 0
    for t0 in range(0, T, GRAM_CHUNK):
        t1 = min(t0 + GRAM_CHUNK, T)
        for b0 in range(0, full, LANES):
            r = 0
            while r < R:
                c = 0
                while c < C:
                    if r + 4 <= R and c + 4 <= C:
                        _gram44(A, r, X, c, t0, t1, b0, out)
                        c += 4
                    elif r + 4 <= R:
                        _gram41(A, r, X, c, t0, t1, b0, out)
                        c += 1
                    elif c + 4 <= C:
                        _gram14(A, r, X, c, t0, t1, b0, out)
                        c += 4
                    else:
                        _gram11(A, r, X, c, t0, t1, b0, out)
                        c += 1
                r += 4 if r + 4 <= R else 1
    if full < B:
        for r in range(R):
            for c in range(C):
                acc = out[r, c]
                for t in range(T):
                    for b in range(full, B):
                        acc += A[t, r, b] * X[t, c, b]
                out[r, c] = acc


@njit(**_FM)
def gram_reference(A, X, out):
    """:func:`gram` as plain loops."""
    for r in range(A.shape[1]):
        for c in range(X.shape[1]):
            acc = out[r, c] * 0
            for t in range(A.shape[0]):
                for b in range(A.shape[2]):
                    acc += A[t, r, b] * X[t, c, b]
            out[r, c] = acc
