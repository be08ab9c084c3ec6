"""Each `tl` operation on every backend, against float64 NumPy, for each dtype it accepts."""

from __future__ import annotations

import operator

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, round_tf32, tf32_dots, to_numpy, tolerance

import mtriton as triton
import mtriton.language as tl
from mtriton.ir import types as T
from mtriton.language import semantic

N = 777  # odd, so the last block is partial
BLOCK = 256
GRID = (triton.cdiv(N, BLOCK),)
FLOATS = [mx.float32, mx.float16, mx.bfloat16]
INTS = [mx.int8, mx.int16, mx.int32, mx.int64, mx.uint8, mx.uint32]


def random_array(
    rng: np.random.Generator, shape: tuple[int, ...] | int, dtype: mx.Dtype, low: float = -3, high: float = 3
) -> mx.array:
    if mx.issubdtype(dtype, mx.floating):
        return mx.array(rng.uniform(low, high, shape).astype(np.float32)).astype(dtype)
    if dtype == mx.bool_:
        return mx.array(rng.integers(0, 2, shape).astype(bool))
    info = np.iinfo(np.dtype(str(dtype).split(".")[-1]))
    lo, hi = max(info.min, -100), min(info.max, 100)
    return mx.array(rng.integers(lo, hi, shape)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


# ----------------------------------------------------------------------------- elementwise


@triton.jit
def unary_kernel(x_ptr, y_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, FN(x), mask=mask)


UNARY = {
    tl.exp: np.exp, tl.exp2: np.exp2, tl.log: np.log, tl.log2: np.log2, tl.sqrt: np.sqrt,
    tl.rsqrt: lambda x: 1 / np.sqrt(x), tl.sin: np.sin, tl.cos: np.cos, tl.tanh: np.tanh,
    tl.abs: np.abs, tl.floor: np.floor, tl.ceil: np.ceil, tl.sigmoid: lambda x: 1 / (1 + np.exp(-x)),
    tl.erf: lambda x: np.vectorize(__import__("math").erf)(x), operator.neg: np.negative,
}  # fmt: skip
POSITIVE_ONLY = {tl.log, tl.log2, tl.sqrt, tl.rsqrt}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("fn", list(UNARY), ids=lambda f: getattr(f, "__name__", str(f)))
def test_unary_math(backend: str, rng: np.random.Generator, fn: object, dtype: mx.Dtype) -> None:
    low = 0.1 if fn in POSITIVE_ONLY else -3
    x = random_array(rng, N, dtype, low, 3)
    y = poisoned(N, dtype)
    unary_kernel[GRID](x, y, N, FN=fn, BLOCK=BLOCK)
    ref = UNARY[fn](f64(x))
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(y), ref, rtol=max(tol["rtol"], 2e-6), atol=max(tol["atol"], 2e-6))


@triton.jit
def binary_kernel(x_ptr, y_ptr, z_ptr, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask, other=1)  # masked lanes divide too: not by zero
    tl.store(z_ptr + offs, OP(x, y), mask=mask)


def _c_floordiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.trunc(a / b)


def _c_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b * np.trunc(a / b)


FLOAT_BINARY = {
    operator.add: np.add, operator.sub: np.subtract, operator.mul: np.multiply,
    operator.truediv: np.divide, tl.maximum: np.maximum, tl.minimum: np.minimum,
    operator.mod: None,  # see test_binary_float
}  # fmt: skip
INT_BINARY = {
    operator.add: np.add, operator.sub: np.subtract, operator.mul: np.multiply,
    operator.floordiv: _c_floordiv, operator.mod: _c_mod, operator.and_: np.bitwise_and,
    operator.or_: np.bitwise_or, operator.xor: np.bitwise_xor, tl.maximum: np.maximum,
    tl.minimum: np.minimum,
}  # fmt: skip


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", list(FLOAT_BINARY), ids=lambda f: f.__name__)
def test_binary_float(backend: str, rng: np.random.Generator, op: object, dtype: mx.Dtype) -> None:
    x, y = random_array(rng, N, dtype), random_array(rng, N, dtype, 0.5, 3)
    z = poisoned(N, dtype)
    binary_kernel[GRID](x, y, z, N, OP=op, BLOCK=BLOCK)
    if op is operator.mod:  # Triton's x - floor(x / y) * y, in float32 for half precision as in Triton
        xs, ys = (t.astype(mx.float32) for t in (x, y))
        ref = f64(xs - mx.floor(xs / ys) * ys)
    else:
        ref = FLOAT_BINARY[op](f64(x), f64(y))
    # the kernel's result is rounded to dtype once per op; compare in that dtype
    ref = to_numpy(mx.array(ref.astype(np.float32)).astype(dtype)).astype(np.float64)
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(z), ref, rtol=tol["rtol"] * 4, atol=tol["atol"] * 4)


@pytest.mark.parametrize("dtype", [mx.int32, mx.int8, mx.int64, mx.uint32])
@pytest.mark.parametrize("op", list(INT_BINARY), ids=lambda f: f.__name__)
def test_binary_int(backend: str, rng: np.random.Generator, op: object, dtype: mx.Dtype) -> None:
    x = random_array(rng, N, dtype)
    y = random_array(rng, N, dtype)
    if op in (operator.floordiv, operator.mod):
        y = mx.where(y == 0, mx.array(7, dtype=dtype), y)
    z = poisoned(N, dtype)
    binary_kernel[GRID](x, y, z, N, OP=op, BLOCK=BLOCK)
    xs, ys = np.array(x), np.array(y)
    if op in (operator.floordiv, operator.mod):
        ref = INT_BINARY[op](xs.astype(np.float64), ys.astype(np.float64)).astype(xs.dtype)
    else:
        ref = INT_BINARY[op](xs, ys).astype(xs.dtype)
    np.testing.assert_array_equal(np.array(z), ref)


@pytest.mark.parametrize("op", [operator.lshift, operator.rshift], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [mx.int32, mx.uint32])
def test_shifts(backend: str, rng: np.random.Generator, op: object, dtype: mx.Dtype) -> None:
    x = mx.array(rng.integers(-(2**20), 2**20, N)).astype(dtype)
    y = mx.array(rng.integers(0, 12, N)).astype(dtype)
    z = poisoned(N, dtype)
    binary_kernel[GRID](x, y, z, N, OP=op, BLOCK=BLOCK)
    xs, ys = np.array(x), np.array(y)
    ref = (xs << ys) if op is operator.lshift else (xs >> ys)
    np.testing.assert_array_equal(np.array(z), ref.astype(xs.dtype))


@pytest.mark.parametrize(
    "op",
    [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("dtype", [mx.float32, mx.int32, mx.bfloat16])
def test_comparisons(backend: str, rng: np.random.Generator, op: object, dtype: mx.Dtype) -> None:
    x = mx.array(rng.integers(-3, 3, N)).astype(dtype)
    y = mx.array(rng.integers(-3, 3, N)).astype(dtype)
    z = poisoned(N, mx.int8)
    binary_kernel[GRID](x, y, z, N, OP=op, BLOCK=BLOCK)
    np.testing.assert_array_equal(np.array(z), op(f64(x), f64(y)).astype(np.int8))


@triton.jit
def where_fma_kernel(x_ptr, y_ptr, out_ptr, n, LO, HI, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0)
    picked = tl.where(x > 0, x, y * 2)
    out = tl.fma(picked, y, 1.0) + tl.clamp(x, LO, HI)
    tl.store(out_ptr + offs, out, mask=mask)


@pytest.mark.parametrize("dtype", FLOATS)
def test_where_fma_clamp(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    x, y = random_array(rng, N, dtype), random_array(rng, N, dtype)
    out = poisoned(N, dtype)
    where_fma_kernel[GRID](x, y, out, N, -0.5, 0.75, BLOCK=BLOCK)
    xs, ys = f64(x), f64(y)
    ref = np.where(xs > 0, xs, ys * 2) * ys + 1 + np.clip(xs, -0.5, 0.75)
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(out), ref, rtol=tol["rtol"] * 8, atol=tol["atol"] * 8)


@triton.jit
def cast_kernel(x_ptr, y_ptr, n, DST: tl.constexpr, BITCAST: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, x.to(DST, bitcast=BITCAST), mask=mask)


CAST_DTYPES = [mx.float32, mx.float16, mx.bfloat16, mx.int32, mx.int8, mx.uint8, mx.int64, mx.bool_]
MX_NAME = {mx.bool_: "int1"}


def _tl_dtype(dtype: mx.Dtype) -> T.DType:
    from mtriton.dtypes import MX_TO_IR

    return MX_TO_IR[dtype]


@pytest.mark.parametrize("src", CAST_DTYPES, ids=str)
@pytest.mark.parametrize("dst", CAST_DTYPES, ids=str)
def test_casts(backend: str, rng: np.random.Generator, src: mx.Dtype, dst: mx.Dtype) -> None:
    if mx.issubdtype(src, mx.floating):
        x = mx.array(rng.uniform(-100, 100, N).astype(np.float32)).astype(src)
        if not mx.issubdtype(dst, mx.floating) and dst != mx.bool_:
            lo = 0 if dst in (mx.uint8,) else -100
            x = mx.array(rng.uniform(lo, 100, N).astype(np.float32)).astype(src)
    else:
        x = random_array(rng, N, src)
        if dst == mx.uint8 and src != mx.bool_:
            x = mx.abs(x)
    y = poisoned(N, dst) if dst != mx.bool_ else mx.ones(N, dtype=mx.bool_)
    cast_kernel[GRID](x, y, N, DST=_tl_dtype(dst), BITCAST=False, BLOCK=BLOCK)
    np.testing.assert_array_equal(to_numpy(y), to_numpy(x.astype(dst)))


@pytest.mark.parametrize(
    "src, dst",
    [(mx.float32, mx.int32), (mx.int32, mx.float32), (mx.float16, mx.int16), (mx.bfloat16, mx.uint16)],
)
def test_bitcast(backend: str, rng: np.random.Generator, src: mx.Dtype, dst: mx.Dtype) -> None:
    x = random_array(rng, N, src)
    y = poisoned(N, dst)
    cast_kernel[GRID](x, y, N, DST=_tl_dtype(dst), BITCAST=True, BLOCK=BLOCK)
    np.testing.assert_array_equal(np.array(y), np.array(x.view(dst)))


# ----------------------------------------------------------------------------- promotion rules


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (T.float16, T.float32, T.float32), (T.float16, T.bfloat16, T.float16),
        (T.bfloat16, T.bfloat16, T.bfloat16), (T.int32, T.float16, T.float16),
        (T.bfloat16, T.int32, T.float32), (T.float64, T.float16, T.float64),
        (T.int8, T.int32, T.int32), (T.int32, T.uint32, T.uint32), (T.int64, T.uint32, T.int64),
        (T.uint8, T.int32, T.int32), (T.int1, T.int8, T.int8), (T.int1, T.int1, T.int1),
    ],
)  # fmt: skip
def test_promotion_table(a: T.DType, b: T.DType, expected: T.DType) -> None:
    assert semantic.computation_type(a, b) == expected
    assert semantic.computation_type(b, a) == expected


def test_int_true_division_is_float32() -> None:
    assert semantic.computation_type(T.int32, T.int32, div=True) == T.float32


@pytest.mark.parametrize("a, b", [(T.float16, T.float16), (T.bfloat16, T.bfloat16), (T.float16, T.bfloat16)])
def test_half_precision_division_computes_in_float32(a: T.DType, b: T.DType) -> None:
    # as in Triton: PTX has no half-precision division
    assert semantic.computation_type(a, b, div=True) == T.float32


@triton.jit
def literal_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.static_assert((x * 2).dtype == x.dtype, "an int literal keeps the tensor's dtype")
    tl.static_assert((x + 0.5).dtype == (x.dtype if x.dtype.is_floating() else tl.float32))
    tl.store(out_ptr + offs, (x * 2 + 1).to(tl.float32) + 0.5, mask=mask)


@pytest.mark.parametrize("dtype", [mx.float16, mx.int8, mx.int32])
def test_python_literals_are_weakly_typed(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    x = random_array(rng, N, dtype, -20, 20)
    out = poisoned(N)
    literal_kernel[GRID](x, out, N, BLOCK=BLOCK)
    expected = (x * 2 + 1).astype(mx.float32) + 0.5
    np.testing.assert_allclose(np.array(out), np.array(expected), rtol=1e-3)


# ----------------------------------------------------------------------------- reductions and scans


@triton.jit
def reduce_kernel(x_ptr, out_ptr, M, N, OP: tl.constexpr, AXIS: tl.constexpr, KEEP: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, OTHER: tl.constexpr):  # fmt: skip
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = tl.load(x_ptr + rm[:, None] * N + rn[None, :], mask=mask, other=OTHER)
    r = OP(x, axis=AXIS, keep_dims=KEEP)
    if AXIS == 0:
        tl.store(out_ptr + rn, r, mask=rn < N)
    elif AXIS == 1:
        tl.store(out_ptr + rm, tl.reshape(r, [BM]), mask=rm < M)
    else:
        tl.store(out_ptr, r)


REDUCTIONS = {
    tl.sum: (np.sum, 0), tl.max: (np.max, float("-inf")), tl.min: (np.min, float("inf")),
    tl.argmax: (np.argmax, float("-inf")), tl.argmin: (np.argmin, float("inf")),
}  # fmt: skip


# argmax/argmin over all axes return a flat index: test_argmax_flat covers them
REDUCTION_CASES = [
    pytest.param(op, axis, id=f"{op.__name__}-{axis}")
    for op in REDUCTIONS
    for axis in (0, 1, None)
    if axis is not None or op not in (tl.argmax, tl.argmin)
]


@pytest.mark.parametrize("op, axis", REDUCTION_CASES)
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.int32])
def test_reductions(
    backend: str, rng: np.random.Generator, op: object, axis: int | None, dtype: mx.Dtype
) -> None:
    m, n = 13, 50
    x = random_array(rng, (m, n), dtype, -50, 50)
    if op is tl.sum and dtype != mx.int32:
        # multiples of 1/8: every partial sum is exact in float32 whatever the order, so a sum
        # that cancels to near zero is compared exactly (rounding in the order of addition made
        # a seed in a few thousand fail the absolute tolerance)
        x = mx.array((rng.integers(-400, 401, (m, n)) / 8).astype(np.float32)).astype(dtype)
    np_fn, other = REDUCTIONS[op]
    out_len = {0: n, 1: m, None: 1}[axis]
    is_arg = op in (tl.argmax, tl.argmin)
    out_dtype = mx.int32 if is_arg else (mx.float32 if dtype != mx.int32 else mx.int32)
    out = poisoned(out_len, out_dtype)
    if dtype == mx.int32:
        other = {0: 0, float("-inf"): -(2**31), float("inf"): 2**31 - 1}[other]
    reduce_kernel[(1,)](x, out, m, n, OP=op, AXIS=axis, KEEP=False, BM=16, BN=64, OTHER=other)
    ref = np_fn(f64(x), axis=axis)
    tol = tolerance(dtype)
    np.testing.assert_allclose(
        f64(out), np.reshape(ref, -1), rtol=max(tol["rtol"], 1e-5) * 4, atol=max(tol["atol"], 1e-5) * 20
    )


@triton.jit
def one_row_reduce_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    # (1, BLOCK) along axis 1 and (BLOCK, 1) along axis 0: one group, a result block of one element
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    zero = tl.zeros((1,), dtype=tl.int32)
    tl.store(out_ptr + zero, tl.sum(x[None, :], axis=1))
    tl.store(out_ptr + 1 + zero, tl.max(x[:, None], axis=0))


@pytest.mark.parametrize("block, num_warps", [(4096, 8), (64, 1)])
def test_one_element_reduction_results(
    backend: str, rng: np.random.Generator, block: int, num_warps: int
) -> None:
    """The result of a reduction of one group can be a block of shape (1,), not a scalar (the
    C-like lowering assigned such a block as a scalar: nvcc rejected it)."""
    x = mx.array((rng.integers(-400, 401, block - 3) / 8).astype(np.float32))
    out = poisoned(2)
    one_row_reduce_kernel[(1,)](x, out, block - 3, BLOCK=block, num_warps=num_warps)
    np.testing.assert_array_equal(np.array(out), [f64(x).sum(), max(f64(x).max(), 0.0)])


@triton.jit
def dot_rows_kernel(a_ptr, b_ptr, x_ptr, out_ptr, M, N, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    # On CUDA every (BM, BN) value here takes the dot's accumulator layout, and row reductions
    # of such values run on it (shuffles within a row's four lanes, then across warps).
    rm, rn, rk = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    s = tl.dot(
        tl.load(a_ptr + rm[:, None] * BK + rk[None, :]), tl.load(b_ptr + rk[:, None] * BN + rn[None, :])
    )
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = tl.load(x_ptr + rm[:, None] * BN + rn[None, :], mask=mask, other=-float("inf"))
    tl.store(out_ptr + rm, tl.sum(s, 1))
    tl.store(out_ptr + BM + rm, tl.max(x, 1))
    tl.store(out_ptr + 2 * BM + rm, tl.min(tl.where(mask, s, float("inf")), 1))
    tl.store(out_ptr + 3 * BM + rn, tl.sum(s, 0))


@pytest.mark.parametrize("num_warps", [1, 4, 8])
def test_row_reductions_of_dot_results(backend: str, rng: np.random.Generator, num_warps: int) -> None:
    bm, bn, bk, m, n = 64, 32, 16, 50, 27
    a, b = random_array(rng, (bm, bk), mx.float16, -2, 2), random_array(rng, (bk, bn), mx.float16, -2, 2)
    x = random_array(rng, (bm, bn), mx.float32, -50, 50)
    out = poisoned(3 * bm + bn)
    dot_rows_kernel[(1,)](a, b, x, out, m, n, BM=bm, BN=bn, BK=bk, num_warps=num_warps)
    s = f64(a) @ f64(b)
    valid = (np.arange(bm)[:, None] < m) & (np.arange(bn)[None, :] < n)
    ref = np.concatenate(
        [s.sum(1), np.where(valid, f64(x), -np.inf).max(1), np.where(valid, s, np.inf).min(1), s.sum(0)]
    )
    # float32 rounding bounds: the dot adds bk exact products, each sum then bn or bm of those
    mag = np.abs(f64(a)) @ np.abs(f64(b))
    u = 2.0**-24
    bound = np.concatenate(
        [
            2 * (bk + bn) * u * mag.sum(1),
            np.zeros(bm),
            2 * bk * u * mag.max(1),
            2 * (bk + bm) * u * mag.sum(0),
        ]
    )
    finite = np.isfinite(ref)  # the max of a fully masked row is -inf, in both
    err = np.abs(f64(out)[finite] - ref[finite])
    assert np.all(f64(out)[~finite] == ref[~finite])
    assert np.all(err <= bound[finite] + 1e-7), f"max error {err.max()}"


@triton.jit
def argmax_flat_kernel(x_ptr, out_ptr, BM: tl.constexpr, BN: tl.constexpr):
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    x = tl.load(x_ptr + rm[:, None] * BN + rn[None, :])
    tl.store(out_ptr, tl.argmax(x, axis=None))
    tl.store(out_ptr + 1, tl.max(x, axis=1, return_indices=True)[1].to(tl.int32).sum())


def test_argmax_flat(backend: str, rng: np.random.Generator) -> None:
    x = mx.array(rng.standard_normal((8, 16)).astype(np.float32))
    out = poisoned(2, mx.int32)
    argmax_flat_kernel[(1,)](x, out, BM=8, BN=16)
    xs = np.array(x)
    assert np.array(out).tolist() == [int(np.argmax(xs)), int(np.argmax(xs, axis=1).sum())]


@triton.jit
def keep_dims_kernel(x_ptr, out_ptr, BM: tl.constexpr, BN: tl.constexpr):
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    x = tl.load(x_ptr + rm[:, None] * BN + rn[None, :])
    centered = x - tl.max(x, axis=1, keep_dims=True)
    total = tl.sum(x, keep_dims=True)
    tl.static_assert(len(total.shape) == 2)
    tl.store(out_ptr + rm[:, None] * BN + rn[None, :], centered + total)


def test_keep_dims(backend: str, rng: np.random.Generator) -> None:
    x = mx.array(rng.standard_normal((4, 32)).astype(np.float32))
    out = poisoned((4, 32))
    keep_dims_kernel[(1,)](x, out, BM=4, BN=32)
    xs = f64(x)
    np.testing.assert_allclose(f64(out), xs - xs.max(1, keepdims=True) + xs.sum(), rtol=1e-5, atol=1e-4)


@triton.jit
def _max_abs_combine(a, b):
    return tl.where(tl.abs(a) > tl.abs(b), a, b)


@triton.jit
def _linear_recurrence_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, b1 * a2 + b2


@triton.jit
def back_to_back_kernel(x_ptr, out_ptr, rows, n, BLOCK: tl.constexpr):
    # reductions and scans one after another, of one and two values, in a loop and a branch:
    # each writes threadgroup bytes the one before did not, most with no leading barrier
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    total = 0.0
    for r in range(rows):
        x = tl.load(x_ptr + r * n + offs, mask=mask, other=0.0)
        s = tl.sum(x, axis=0)
        m = tl.max(tl.where(mask, x, -float("inf")), axis=0)
        i = tl.argmax(tl.where(mask, x, -float("inf")), axis=0)
        if s > 0:
            t = tl.min(tl.where(mask, x, float("inf")), axis=0)
        else:
            t = tl.sum(x * x, axis=0)
        c = tl.cumsum(x, axis=0)
        tl.store(out_ptr + r * (n + 4) + offs, c, mask=mask)
        j = tl.arange(0, 4)
        stats = tl.where(j == 0, s, tl.where(j == 1, m, tl.where(j == 2, i.to(tl.float32), t)))
        tl.store(out_ptr + r * (n + 4) + n + j, stats)
        total += s
    tl.store(out_ptr + rows * (n + 4), total + tl.max(tl.load(x_ptr + offs, mask=mask, other=-1.0), axis=0))


@pytest.mark.parametrize("num_warps", [1, 4, 8])
def test_back_to_back_reductions_and_scans(backend: str, rng: np.random.Generator, num_warps: int) -> None:
    rows, n = 3, 1000
    x = random_array(rng, (rows, n), mx.float32, -1, 1)
    out = poisoned(rows * (n + 4) + 1)
    back_to_back_kernel[(1,)](x, out, rows, n, BLOCK=1024, num_warps=num_warps)
    xs = f64(x)
    got = f64(out)[:-1].reshape(rows, n + 4)
    np.testing.assert_allclose(got[:, :n], np.cumsum(xs, axis=1), rtol=1e-5, atol=1e-4)
    s = xs.sum(1)
    t = np.where(s > 0, xs.min(1), (xs * xs).sum(1))
    np.testing.assert_allclose(got[:, n:], np.stack([s, xs.max(1), xs.argmax(1), t], 1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(f64(out)[-1], s.sum() + xs[0].max(), rtol=1e-5, atol=1e-4)


@triton.jit
def custom_combine_kernel(
    x_ptr, a_ptr, b_ptr, red_ptr, scan_ptr, n, BLOCK: tl.constexpr, REVERSE: tl.constexpr
):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(red_ptr, tl.reduce(x, 0, _max_abs_combine))
    a = tl.load(a_ptr + offs, mask=mask, other=1.0)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0)
    _, h = tl.associative_scan((a, b), 0, _linear_recurrence_combine, reverse=REVERSE)
    tl.store(scan_ptr + offs, h, mask=mask)


# 1024 and 2048 give each of 128 threads several chunks (512: each of one warp's 32 threads;
# 2048 on 8 warps: two chunks of 4 per thread): GPU scans run in registers, each thread's
# chunks, then across lanes and warps, and the recurrence's combine is not commutative.
@pytest.mark.parametrize(
    "n, block, warps", [(100, 128, 4), (1000, 1024, 4), (2001, 2048, 4), (500, 512, 1), (1500, 2048, 8)]
)
@pytest.mark.parametrize("reverse", [False, True])
def test_user_combine_functions(
    backend: str, rng: np.random.Generator, reverse: bool, n: int, block: int, warps: int
) -> None:
    x = mx.array(rng.standard_normal(n).astype(np.float32))
    a = mx.array(rng.uniform(0.5, 1.0, n).astype(np.float32))
    b = mx.array(rng.standard_normal(n).astype(np.float32))
    red, scan = poisoned(1), poisoned(n)
    custom_combine_kernel[(1,)](x, a, b, red, scan, n, BLOCK=block, REVERSE=reverse, num_warps=warps)
    xs = f64(x)
    assert float(np.array(red)[0]) == pytest.approx(xs[np.argmax(np.abs(xs))], rel=1e-6)
    av, bv = f64(a), f64(b)
    order = range(n - 1, -1, -1) if reverse else range(n)
    h, ref = 0.0, np.zeros(n)
    for i in order:
        h = av[i] * h + bv[i]
        ref[i] = h
    np.testing.assert_allclose(f64(scan), ref, rtol=1e-5, atol=1e-5)


@triton.jit
def scan_kernel(x_ptr, out_ptr, M, N, FN: tl.constexpr, AXIS: tl.constexpr, REVERSE: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, IDENTITY: tl.constexpr):  # fmt: skip
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = tl.load(x_ptr + rm[:, None] * N + rn[None, :], mask=mask, other=IDENTITY)
    tl.store(out_ptr + rm[:, None] * N + rn[None, :], FN(x, axis=AXIS, reverse=REVERSE), mask=mask)


# (7, 29) in an 8x32 block: 16 threads per scanned row; (3, 60) in 4x64 and (60, 3) in 64x4:
# a whole SIMD group per row (the SIMD prefix-sum path) along axis 1 and axis 0 respectively
@pytest.mark.parametrize("shape", [(7, 29), (3, 60), (60, 3)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("fn", [tl.cumsum, tl.cumprod], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [mx.float32, mx.int32])
def test_scans(
    backend: str,
    rng: np.random.Generator,
    fn: object,
    axis: int,
    reverse: bool,
    dtype: mx.Dtype,
    shape: tuple[int, int],
) -> None:
    m, n = shape
    if fn is tl.cumprod:
        x = (
            mx.array(rng.choice([-1.0, 1.0, 2.0, 0.5], (m, n)).astype(np.float32)).astype(dtype)
            if dtype != mx.int32
            else mx.array(rng.choice([-1, 1, 2], (m, n)).astype(np.int32))
        )
        if dtype == mx.int32 and (m, n)[axis] > 30:
            # products of more than 30 factors of 2 overflow int32, which the float64 reference does not
            x = mx.array(rng.choice([-1, 1], (m, n)).astype(np.int32))
    else:
        x = random_array(rng, (m, n), dtype)
    out = poisoned((m, n), dtype)
    identity = 1 if fn is tl.cumprod else 0  # padding must not change a reverse scan
    block_m, block_n = triton.next_power_of_2(m), triton.next_power_of_2(n)
    scan_kernel[(1,)](
        x, out, m, n, FN=fn, AXIS=axis, REVERSE=reverse, BM=block_m, BN=block_n, IDENTITY=identity
    )
    xs = f64(x)
    np_fn = np.cumsum if fn is tl.cumsum else np.cumprod
    ref = np.flip(np_fn(np.flip(xs, axis), axis), axis) if reverse else np_fn(xs, axis)
    np.testing.assert_allclose(f64(out), ref, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- dot


@triton.jit
def dot_kernel(a_ptr, b_ptr, c_ptr, PREC: tl.constexpr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
               TRANS_B: tl.constexpr):  # fmt: skip
    rm = tl.arange(0, M)
    rn = tl.arange(0, N)
    rk = tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    if TRANS_B:
        b = tl.trans(tl.load(b_ptr + rn[:, None] * K + rk[None, :]))
    else:
        b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    c = tl.dot(a, b, input_precision=PREC)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], c)


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize(
    "dtype, prec",
    [
        (mx.float32, "ieee"),
        (mx.float32, "tf32"),
        (mx.float16, "ieee"),
        (mx.bfloat16, "ieee"),
        (mx.int8, "ieee"),
    ],
)
def test_dot(backend: str, rng: np.random.Generator, dtype: mx.Dtype, prec: str, trans_b: bool) -> None:
    m, n, k = 16, 32, 64
    a = random_array(rng, (m, k), dtype, -4, 4)
    b = random_array(rng, (n, k) if trans_b else (k, n), dtype, -4, 4)
    out_dtype = mx.int32 if dtype == mx.int8 else mx.float32
    c = poisoned((m, n), out_dtype)
    dot_kernel[(1,)](a, b, c, PREC=prec, M=m, N=n, K=k, TRANS_B=trans_b)
    if prec == "tf32" and tf32_dots(backend):  # the inputs are rounded to TF32, the sums are float32's
        a_ref, b_ref = round_tf32(np.array(a)), round_tf32(np.array(b))
    else:
        a_ref, b_ref = f64(a), f64(b)
    ref = a_ref @ (b_ref.T if trans_b else b_ref)
    np.testing.assert_allclose(f64(c), ref, rtol=1e-4, atol=1e-3)


@triton.jit
def nt_matmul_kernel(a_ptr, bt_ptr, c_ptr, K, PREC: tl.constexpr, M: tl.constexpr, N: tl.constexpr,
                     BK: tl.constexpr):  # fmt: skip
    # C = A @ Bt.T with Bt (N, K) row-major, as nn.Linear's weight: tl.trans of the loaded tile
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, BK)
    acc = tl.zeros((M, N), dtype=tl.float32)
    for k0 in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k0 + rk)[None, :], mask=(k0 + rk)[None, :] < K, other=0.0)
        bt = tl.load(bt_ptr + rn[:, None] * K + (k0 + rk)[None, :], mask=(k0 + rk)[None, :] < K, other=0.0)
        acc = tl.dot(a, tl.trans(bt), acc, input_precision=PREC)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


@pytest.mark.parametrize(
    "dtype, prec", [(mx.float16, "ieee"), (mx.bfloat16, "ieee"), (mx.float32, "tf32"), (mx.float32, "ieee")]
)
@pytest.mark.parametrize("m, n, num_warps, num_stages", [(16, 16, 2, 3), (32, 64, 4, 2), (32, 32, 1, 1)])
def test_dot_with_transposed_operand(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, prec: str, m: int, n: int, num_warps: int,
    num_stages: int,
) -> None:  # fmt: skip
    # On CUDA the (N, K) tiles reach shared memory as loaded and ldmatrix reads them untransposed
    # (16x16 over two warps: each warp has one 8-column tile, read alone).
    k, bk = 72, 32
    a, bt = random_array(rng, (m, k), dtype, -2, 2), random_array(rng, (n, k), dtype, -2, 2)
    c = poisoned((m, n))
    nt_matmul_kernel[(1,)](
        a, bt, c, k, PREC=prec, M=m, N=n, BK=bk, num_warps=num_warps, num_stages=num_stages
    )
    if prec == "tf32" and tf32_dots(backend):
        ref = round_tf32(np.array(a)) @ round_tf32(np.array(bt)).T
    else:
        ref = f64(a) @ f64(bt).T
    np.testing.assert_allclose(f64(c), ref, rtol=1e-4, atol=1e-3)


@triton.jit
def two_dots_kernel(x_ptr, w1_ptr, w2_ptr, out_ptr, K, M: tl.constexpr, N: tl.constexpr, BK: tl.constexpr):
    # One x tile feeds two dots (fused SwiGLU's shape): on CUDA a pipeline stages it once.
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, BK)
    acc1 = tl.zeros((M, N), dtype=tl.float32)
    acc2 = tl.zeros((M, N), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + rk
        x = tl.load(x_ptr + rm[:, None] * K + ks[None, :], mask=ks[None, :] < K, other=0.0)
        w1 = tl.load(w1_ptr + rn[:, None] * K + ks[None, :], mask=ks[None, :] < K, other=0.0)
        w2 = tl.load(w2_ptr + rn[:, None] * K + ks[None, :], mask=ks[None, :] < K, other=0.0)
        acc1 = tl.dot(x, tl.trans(w1), acc1)
        acc2 = tl.dot(x, tl.trans(w2), acc2)
    tl.store(out_ptr + rm[:, None] * N + rn[None, :], acc1)
    tl.store(out_ptr + M * N + rm[:, None] * N + rn[None, :], acc2)


@pytest.mark.parametrize("num_stages", [1, 3])
def test_two_dots_share_a_loaded_operand(backend: str, rng: np.random.Generator, num_stages: int) -> None:
    m, n, k, bk = 32, 32, 80, 32
    x = random_array(rng, (m, k), mx.float16, -2, 2)
    w1, w2 = (random_array(rng, (n, k), mx.float16, -2, 2) for _ in range(2))
    out = poisoned((2, m, n))
    two_dots_kernel[(1,)](x, w1, w2, out, k, M=m, N=n, BK=bk, num_warps=4, num_stages=num_stages)
    ref = np.stack([f64(x) @ f64(w1).T, f64(x) @ f64(w2).T])
    np.testing.assert_allclose(f64(out), ref, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- shapes


@triton.jit
def shapes_kernel(x_ptr, out_ptr, BM: tl.constexpr, BN: tl.constexpr):
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    x = tl.load(x_ptr + rm[:, None] * BN + rn[None, :])  # BM x BN
    t = tl.trans(x)  # BN x BM
    r = tl.reshape(t, [BN * BM])
    p = tl.permute(tl.reshape(x, [BM, BN // 2, 2]), (2, 0, 1))  # 2 x BM x BN/2
    lo, hi = tl.split(tl.reshape(x, [BM, BN // 2, 2]))
    j = tl.join(hi, lo)  # swaps adjacent pairs
    b = tl.broadcast_to(tl.expand_dims(rn, 0), [BM, BN])
    out = out_ptr
    tl.store(out + tl.arange(0, BM * BN), r)
    out += BM * BN
    tl.store(out + tl.arange(0, 2)[:, None, None] * (BM * BN // 2) + rm[None, :, None] * (BN // 2)
             + tl.arange(0, BN // 2)[None, None, :], p)  # fmt: skip
    out += BM * BN
    tl.store(out + rm[:, None] * BN + rn[None, :], tl.reshape(j, [BM, BN]))
    out += BM * BN
    tl.store(out + rm[:, None] * BN + rn[None, :], b.to(tl.float32))


def test_shape_ops(backend: str, rng: np.random.Generator) -> None:
    bm, bn = 4, 8
    x = mx.array(rng.standard_normal((bm, bn)).astype(np.float32))
    out = poisoned(4 * bm * bn)
    shapes_kernel[(1,)](x, out, BM=bm, BN=bn)
    xs, o = np.array(x), np.array(out).reshape(4, bm * bn)
    np.testing.assert_array_equal(o[0], xs.T.reshape(-1))
    np.testing.assert_array_equal(o[1], xs.reshape(bm, bn // 2, 2).transpose(2, 0, 1).reshape(-1))
    swapped = xs.reshape(bm, bn // 2, 2)[..., ::-1].reshape(-1)
    np.testing.assert_array_equal(o[2], swapped)
    np.testing.assert_array_equal(o[3], np.broadcast_to(np.arange(bn), (bm, bn)).reshape(-1))


# ----------------------------------------------------------------------------- atomics


@triton.jit
def atomic_kernel(ptr, vals_ptr, idx_ptr, old_ptr, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    idx = tl.load(idx_ptr + offs, mask=mask, other=0)
    v = tl.load(vals_ptr + offs, mask=mask, other=0)
    old = OP(ptr + idx, v, mask=mask)
    tl.store(old_ptr + offs, old, mask=mask)


ATOMICS = {
    tl.atomic_add: np.add, tl.atomic_max: np.maximum, tl.atomic_min: np.minimum,
    tl.atomic_and: np.bitwise_and, tl.atomic_or: np.bitwise_or, tl.atomic_xor: np.bitwise_xor,
}  # fmt: skip


@pytest.mark.order_dependent  # the old values returned depend on which thread went first
@pytest.mark.parametrize("op", list(ATOMICS), ids=lambda f: f.__name__)
def test_atomics_with_duplicates(backend: str, rng: np.random.Generator, op: object) -> None:
    n, slots = 1000, 13
    vals = mx.array(rng.integers(-50, 50, n).astype(np.int32))
    idx = mx.array(rng.integers(0, slots, n).astype(np.int32))
    init = mx.array(rng.integers(-50, 50, slots).astype(np.int32))
    buf = mx.array(init)
    old = poisoned(n, mx.int32)
    atomic_kernel[(triton.cdiv(n, 128),)](buf, vals, idx, old, n, OP=op, BLOCK=128)
    ufunc = ATOMICS[op]
    ref = np.array(init).copy()
    ufunc.at(ref, np.array(idx), np.array(vals))
    np.testing.assert_array_equal(np.array(buf), ref)
    # The returned old values must come from one serialization of the updates: per slot, the
    # states {init} + {old_i op v_i} are exactly {old_i} + {final}.
    olds, ids, vs = np.array(old), np.array(idx), np.array(vals)
    for s in range(slots):
        sel = ids == s
        before = np.sort(np.append(olds[sel], ref[s]))
        after = np.sort(np.append(ufunc(olds[sel], vs[sel]), np.array(init)[s]))
        np.testing.assert_array_equal(before, after, err_msg=f"slot {s}")


@triton.jit
def spin_lock_kernel(lock_ptr, counter_ptr, NUM: tl.constexpr):
    while tl.atomic_cas(lock_ptr, 0, 1) == 1:
        pass
    value = tl.load(counter_ptr)
    tl.store(counter_ptr, value + 1)
    tl.atomic_xchg(lock_ptr, 0)


def test_atomic_cas_spin_lock(backend: str) -> None:
    lock = mx.zeros((1,), dtype=mx.int32)
    counter = mx.zeros((1,), dtype=mx.int32)
    with pytest.warns(UserWarning) if backend == "interpreter" else _nothing():
        spin_lock_kernel[(37,)](lock, counter, NUM=1)
    assert int(np.array(counter)[0]) == 37
    assert int(np.array(lock)[0]) == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ----------------------------------------------------------------------------- control flow and calls


@triton.jit
def _scaled(x, factor):
    return x * factor


@triton.jit
def _clipped_scale(x, factor, LIMIT: tl.constexpr):
    y = _scaled(x, factor)
    if LIMIT > 0:
        return tl.minimum(y, LIMIT)
    return y


@triton.jit
def control_kernel(x_ptr, out_ptr, n, steps, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    acc = 0.0
    for i in range(steps):  # runtime bound; acc widens from a literal to a block
        acc += x * i
    for j in tl.static_range(UNROLL):
        acc = acc + j
    k = 0
    while k < pid + 1:  # trip count differs by program
        acc = acc + 1.0
        k += 1
    if pid % 2 == 0:
        acc = _clipped_scale(acc, 2.0, LIMIT=100)
    else:
        acc = -acc
    tl.store(out_ptr + offs, acc, mask=mask)


def test_control_flow_and_calls(backend: str, rng: np.random.Generator) -> None:
    n, block, steps, unroll = 1000, 128, 5, 3
    x = mx.array(rng.standard_normal(n).astype(np.float32))
    out = poisoned(n)
    control_kernel[(triton.cdiv(n, block),)](x, out, n, steps, BLOCK=block, UNROLL=unroll)
    xs = f64(x)
    pid = np.arange(n) // block
    acc = xs * sum(range(steps)) + sum(range(unroll)) + (pid + 1)
    ref = np.where(pid % 2 == 0, np.minimum(acc * 2, 100), -acc)
    np.testing.assert_allclose(f64(out), ref, rtol=1e-5, atol=1e-5)


@triton.jit
def triangular_kernel(out_ptr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    total = tl.zeros([BLOCK], dtype=tl.int32)
    for i in tl.range(0, pid, 1):
        total += i
    tl.store(out_ptr + pid * BLOCK + tl.arange(0, BLOCK), total + tl.num_programs(0) * 0 + pid * 0)


def test_loop_bounds_that_differ_by_program(backend: str) -> None:
    programs, block = 9, 16
    out = poisoned(programs * block, mx.int32)
    triangular_kernel[(programs,)](out, BLOCK=block)
    ref = np.repeat([p * (p - 1) // 2 for p in range(programs)], block)
    np.testing.assert_array_equal(np.array(out), ref)


@triton.jit
def grid_3d_kernel(out_ptr):
    x, y, z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    nx, ny = tl.num_programs(0), tl.num_programs(1)
    tl.store(out_ptr + (z * ny + y) * nx + x, x * 100 + y * 10 + z)


def test_3d_grid(backend: str) -> None:
    out = poisoned(3 * 4 * 5, mx.int32)
    grid_3d_kernel[(3, 4, 5)](out)
    z, y, x = np.meshgrid(range(5), range(4), range(3), indexing="ij")
    np.testing.assert_array_equal(np.array(out), (x * 100 + y * 10 + z).reshape(-1))


@triton.jit
def scalar_args_kernel(out_ptr, a, b, c, FLAG: tl.constexpr):
    v = a * b + c
    if FLAG:
        v = v * 2
    tl.store(out_ptr, v)


def test_scalar_arguments(backend: str) -> None:
    out = poisoned(1)
    scalar_args_kernel[(1,)](out, 3, 2.5, 1, FLAG=True)
    assert float(np.array(out)[0]) == pytest.approx((3 * 2.5 + 1) * 2)


@triton.jit
def wide_offsets_kernel(out_ptr, rows_ptr, shift, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.load(rows_ptr + tl.arange(0, BLOCK_R)).to(tl.int64)
    row_ptrs = out_ptr + (rows * BLOCK_C + shift)[:, None]  # offsets past 2**32, broadcast
    cols = tl.arange(0, BLOCK_C)
    tl.store(row_ptrs + (cols[None, :] - shift), rows[:, None].to(tl.float32))


def test_64_bit_pointer_offsets_survive_a_broadcast(backend: str) -> None:
    out = poisoned((32, 128))
    wide_offsets_kernel[(1,)](out, mx.arange(32, dtype=mx.int32), 2**32, BLOCK_R=32, BLOCK_C=128)
    np.testing.assert_array_equal(np.array(out), np.broadcast_to(np.arange(32.0)[:, None], (32, 128)))
