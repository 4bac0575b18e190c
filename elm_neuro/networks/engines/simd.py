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
    """An intrinsic ``block(A, r0, X, c0, l0, l1, out)``: ``out[r0 + r, c0 + c] += sum_{l0 <= l < l1}
    A[r0 + r, l] * X[c0 + c, l]`` for ``r < rows``, ``c < cols``, over whole vectors only
    (``l1 - l0`` a multiple of ``LANES``); ``rows * cols`` vector accumulators, summed across their
    lanes at the end."""

    @intrinsic
    def block(typingctx, A, r0, X, c0, l0, n_len, out):
        for name, ty in (("A", A), ("X", X), ("out", out)):
            if not isinstance(ty, types.Array) or ty.ndim != 2 or ty.dtype not in (types.float32, types.float64):
                raise TypeError(f"gram block: {name} must be a 2-D float32/float64 array, got {ty}")
        if len({A.dtype, X.dtype, out.dtype}) != 1:
            raise TypeError("gram block: A, X and out must share one dtype")
        sig = types.void(A, r0, X, c0, l0, n_len, out)

        def codegen(context, builder, signature, args):
            tA, tr0, tX, tc0, tl0, tn, tout = signature.args
            vA, vr0, vX, vc0, vl0, vn, vout = args
            intp = lambda v, t: context.cast(builder, v, t, types.intp)  # noqa: E731
            vr0, vc0, vl0, vn = intp(vr0, tr0), intp(vc0, tc0), intp(vl0, tl0), intp(vn, tn)
            scalar = context.get_value_type(tA.dtype)
            vec = ir.VectorType(scalar, LANES)
            align = 4 if tA.dtype == types.float32 else 8
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                                 f"llvm.fma.v{LANES}{'f32' if tA.dtype == types.float32 else 'f64'}")
            acc = []
            for _ in range(rows * cols):
                slot = cgutils.alloca_once(builder, vec)
                builder.store(ir.Constant(vec, [0.0] * LANES), slot)
                acc.append(slot)
            step = ir.Constant(vn.type, LANES)
            with cgutils.for_range_slice(builder, vl0, vn, step) as (l, _):
                av = [builder.load(_vector_pointer(context, builder, tA, vA, builder.add(vr0, ir.Constant(vr0.type, r)),
                                                   l, vec), align=align) for r in range(rows)]
                xv = [builder.load(_vector_pointer(context, builder, tX, vX, builder.add(vc0, ir.Constant(vc0.type, c)),
                                                   l, vec), align=align) for c in range(cols)]
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
                    op = _element_pointer(context, builder, tout, vout,
                                          [builder.add(vr0, ir.Constant(vr0.type, r)),
                                           builder.add(vc0, ir.Constant(vc0.type, c))])
                    builder.store(builder.fadd(builder.load(op), total), op)
            return context.get_dummy_value()

        return sig, codegen

    return block


_gram44, _gram41, _gram14, _gram11 = (_gram_intrinsic(r, c) for r, c in ((4, 4), (4, 1), (1, 4), (1, 1)))


@njit(inline="always", **_FM)
def _gram_rest(A, r, X, c, start, L, out):
    """``out[r, c] += sum_{start <= l < L} A[r, l] * X[c, l]`` (the lanes after the last vector)."""
    acc = out[r, c]
    for k in range(start, L):
        acc += A[r, k] * X[c, k]
    out[r, c] = acc


GRAM_CHUNK = 512  # elements of l per pass over all output blocks (the rows' chunks stay in L2)


@njit(inline="always", **_FM)
def gram(A, X, out):
    """``out[r, c] = sum_l A[r, l] * X[c, l]`` (``A @ X.T``) for rows of ``A`` and ``X`` whose
    elements are contiguous: chunks of ``GRAM_CHUNK`` along ``l`` (cache blocking), in each vector
    accumulators for blocks of 4 x 4 output elements (each vector load serves 4 multiply-adds),
    then the ragged rows; the lanes after the last whole vector at the end."""
    R, C, L = A.shape[0], X.shape[0], A.shape[1]
    full = L - L % LANES
    for r in range(R):
        for c in range(C):
            out[r, c] = 0
    for l0 in range(0, full, GRAM_CHUNK):
        l1 = min(l0 + GRAM_CHUNK, full)
        r = 0
        while r < R:
            c = 0
            while c < C:
                if r + 4 <= R and c + 4 <= C:
                    _gram44(A, r, X, c, l0, l1, out)
                    c += 4
                elif r + 4 <= R:
                    _gram41(A, r, X, c, l0, l1, out)
                    c += 1
                elif c + 4 <= C:
                    _gram14(A, r, X, c, l0, l1, out)
                    c += 4
                else:
                    _gram11(A, r, X, c, l0, l1, out)
                    c += 1
            r += 4 if r + 4 <= R else 1
    for r in range(R):
        for c in range(C):
            _gram_rest(A, r, X, c, full, L, out)


@njit(**_FM)
def gram_reference(A, X, out):
    """:func:`gram` as plain loops."""
    for r in range(A.shape[0]):
        for c in range(X.shape[0]):
            acc = out[r, c] * 0
            for k in range(A.shape[1]):
                acc += A[r, k] * X[c, k]
            out[r, c] = acc
