"""Explicit-SIMD matrix-vector blocks for the Numba kernels (:mod:`elm_numba`).

Why: inside the ELM engine's time loop every neuron multiplies its small MLP matrices (rows of
9-39 numbers) with one column per sample. Written as Numba loops, LLVM vectorises neither the
samples (a loop of 8 is unrolled into 8 scalar multiply-adds whose accumulators the SLP
vectoriser does not pack) nor, usefully, the short rows (one horizontal reduction per output).
Here the samples are one vector: :func:`matvec` holds ``R`` output rows for ``LANES`` samples in
``R`` vector registers, and per input element does one vector load of the samples and ``R``
broadcast multiply-adds (``llvm.fma`` on ``<LANES x float>``): 3.8x the dot products' rate at the
SHD-Adding shapes (``benchmarks/bench_simd.py``). LLVM lowers the vector type on any target (8
float32: one AVX2 register; 8 float64: one AVX-512 or two AVX2 registers; NEON: several). :func:`axpy` and :func:`mul_acc` are the
synapses' per-sample multiply-adds as single vector operations, and :func:`gram` the MLP weight
gradients (sums over steps and samples of outer products) from the engine's per-step blocks.

Each fast path has a plain-loop reference or formula it is tested against
(``tests/test_engine_simd.py``: float32 and float64, strided views, ragged sizes).

    matvec:  out[o, b] = bias[o] + sum_{i < I} W[o, i0 + i] * x[i, b]   for every row o, sample b < B
    gram:    out[r, c] = sum_{t, b} A[t, r, b] * X[t, c, b]

Arrays may have any strides except along the samples (the last axis), which must be contiguous:
the blocks load and store ``LANES`` neighbouring samples at once.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # samples per vector
_FM = dict(fastmath={"reassoc", "contract", "nsz"})


def _check_arrays(what: str, arrays) -> None:
    """Typing-time check of an intrinsic's arrays: each ``(name, type, ndim)`` a float32 or
    float64 array of that rank, all of one dtype."""
    for name, ty, ndim in arrays:
        if not isinstance(ty, types.Array) or ty.ndim != ndim or ty.dtype not in (types.float32, types.float64):
            raise TypeError(f"{what}: {name} must be a {ndim}-D float32/float64 array, got {ty}")
    if len({ty.dtype for _, ty, _ in arrays}) != 1:
        raise TypeError(f"{what}: {', '.join(name for name, _, _ in arrays)} must share one dtype")


class _Vectors:
    """IR for ``<LANES x dtype>`` vectors inside one intrinsic's codegen."""

    def __init__(self, context, builder, dtype) -> None:
        self.context, self.builder = context, builder
        self.vec = ir.VectorType(context.get_value_type(dtype), LANES)
        self.align = 4 if dtype == types.float32 else 8
        self._fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vec, [self.vec] * 3),
            f"llvm.fma.v{LANES}{'f32' if dtype == types.float32 else 'f64'}")

    def intp(self, value, ty):
        return self.context.cast(self.builder, value, ty, types.intp)

    def plus(self, index, k: int):
        return self.builder.add(index, ir.Constant(index.type, k))

    def element(self, ty, value, indices):
        """Pointer to one element of an array argument."""
        ary = self.context.make_array(ty)(self.context, self.builder, value)
        shape = cgutils.unpack_tuple(self.builder, ary.shape, ty.ndim)
        strides = cgutils.unpack_tuple(self.builder, ary.strides, ty.ndim)
        return cgutils.get_item_pointer2(self.context, self.builder, ary.data, shape, strides, ty.layout, indices)

    def load(self, ty, value, indices):
        """The ``LANES`` elements from ``indices`` on along the (contiguous) last axis."""
        ptr = self.builder.bitcast(self.element(ty, value, indices), self.vec.as_pointer())
        return self.builder.load(ptr, align=self.align)

    def store(self, v, ty, value, indices):
        ptr = self.builder.bitcast(self.element(ty, value, indices), self.vec.as_pointer())
        self.builder.store(v, ptr, align=self.align)

    def splat(self, scalar):
        b = self.builder
        v = b.insert_element(ir.Constant(self.vec, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, ir.Constant(self.vec, ir.Undefined),
                                ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    def fma(self, a, x, acc):
        return self.builder.call(self._fma, [a, x, acc])

    def accumulator(self, start):
        """A vector stack slot (LLVM keeps it in a register) holding ``start``."""
        slot = cgutils.alloca_once(self.builder, self.vec)
        self.builder.store(start, slot)
        return slot

    def lane_sum(self, v):
        b = self.builder
        total = b.extract_element(v, ir.Constant(ir.IntType(32), 0))
        for k in range(1, LANES):
            total = b.fadd(total, b.extract_element(v, ir.Constant(ir.IntType(32), k)))
        return total


def _block_intrinsic(rows: int):
    """An intrinsic ``block(W, o, i0, I, x, out, bias, b0)``: rows ``o .. o + rows - 1`` of
    ``out`` for samples ``b0 .. b0 + LANES - 1`` (the formula in the module docstring)."""

    @intrinsic
    def block(typingctx, W, o, i0, n_in, x, out, bias, b0):
        _check_arrays("matvec block", [("W", W, 2), ("x", x, 2), ("out", out, 2), ("bias", bias, 1)])
        sig = types.void(W, o, i0, n_in, x, out, bias, b0)

        def codegen(context, builder, signature, args):
            tW, to, ti0, tn, tx, tout, tbias, tb0 = signature.args
            vW, vo, vi0, vn, vx, vout, vbias, vb0 = args
            V = _Vectors(context, builder, tW.dtype)
            vo, vi0, vn, vb0 = V.intp(vo, to), V.intp(vi0, ti0), V.intp(vn, tn), V.intp(vb0, tb0)
            acc = [V.accumulator(V.splat(builder.load(V.element(tbias, vbias, [V.plus(vo, r)]))))
                   for r in range(rows)]  # start at the bias
            with cgutils.for_range(builder, vn) as loop:
                xv = V.load(tx, vx, [loop.index, vb0])
                col = builder.add(vi0, loop.index)
                for r in range(rows):
                    w = builder.load(V.element(tW, vW, [V.plus(vo, r), col]))
                    builder.store(V.fma(V.splat(w), xv, builder.load(acc[r])), acc[r])
            for r in range(rows):
                V.store(builder.load(acc[r]), tout, vout, [V.plus(vo, r), vb0])
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


@intrinsic
def _axpy_block(typingctx, w, x, xrow, out, orow, b0):
    """``out[orow, b] += w * x[xrow, b]`` for ``LANES`` samples from ``b0`` (``w`` a scalar)."""
    _check_arrays("axpy", [("x", x, 2), ("out", out, 2)])
    sig = types.void(w, x, xrow, out, orow, b0)

    def codegen(context, builder, signature, args):
        tw, tx, txr, tout, tor, tb0 = signature.args
        vw, vx, vxr, vout, vor, vb0 = args
        V = _Vectors(context, builder, tx.dtype)
        at = [V.intp(vor, tor), V.intp(vb0, tb0)]
        wv = V.splat(context.cast(builder, vw, tw, tx.dtype))
        V.store(V.fma(wv, V.load(tx, vx, [V.intp(vxr, txr), at[1]]), V.load(tout, vout, at)), tout, vout, at)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _mul_acc_block(typingctx, a, arow, x, xrow, out, orow, b0):
    """``out[orow, b] += a[arow, b] * x[xrow, b]`` for ``LANES`` samples from ``b0``."""
    _check_arrays("mul_acc", [("a", a, 2), ("x", x, 2), ("out", out, 2)])
    sig = types.void(a, arow, x, xrow, out, orow, b0)

    def codegen(context, builder, signature, args):
        ta, tar, tx, txr, tout, tor, tb0 = signature.args
        va, var, vx, vxr, vout, vor, vb0 = args
        V = _Vectors(context, builder, tx.dtype)
        b0_ = V.intp(vb0, tb0)
        at = [V.intp(vor, tor), b0_]
        prod = V.fma(V.load(ta, va, [V.intp(var, tar), b0_]), V.load(tx, vx, [V.intp(vxr, txr), b0_]),
                     V.load(tout, vout, at))
        V.store(prod, tout, vout, at)
        return context.get_dummy_value()

    return sig, codegen


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
        _check_arrays("gram block", [("A", A, 3), ("X", X, 3), ("out", out, 2)])
        sig = types.void(A, r0, X, c0, t0, t1, b0, out)

        def codegen(context, builder, signature, args):
            tA, tr0, tX, tc0, tt0, tt1, tb0, tout = signature.args
            vA, vr0, vX, vc0, vt0, vt1, vb0, vout = args
            V = _Vectors(context, builder, tA.dtype)
            vr0, vc0, vt0, vt1, vb0 = (V.intp(v, t) for v, t in ((vr0, tr0), (vc0, tc0), (vt0, tt0), (vt1, tt1),
                                                                  (vb0, tb0)))
            acc = [V.accumulator(ir.Constant(V.vec, [0.0] * LANES)) for _ in range(rows * cols)]
            with cgutils.for_range_slice(builder, vt0, vt1, ir.Constant(vt0.type, 1)) as (t, _):
                av = [V.load(tA, vA, [t, V.plus(vr0, r), vb0]) for r in range(rows)]
                xv = [V.load(tX, vX, [t, V.plus(vc0, c), vb0]) for c in range(cols)]
                for r in range(rows):
                    for c in range(cols):
                        slot = acc[r * cols + c]
                        builder.store(V.fma(av[r], xv[c], builder.load(slot)), slot)
            for r in range(rows):
                for c in range(cols):
                    op = V.element(tout, vout, [V.plus(vr0, r), V.plus(vc0, c)])
                    builder.store(builder.fadd(builder.load(op), V.lane_sum(builder.load(acc[r * cols + c]))), op)
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
