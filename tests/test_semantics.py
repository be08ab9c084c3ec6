"""Triton's exact semantics, the same on every backend: `%` and `//`, NaN in maximum/minimum/
clamp and in max/min reductions and scans (`tl.PropagateNan`), and the type errors Triton
raises for mixed signedness and negated booleans."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import marker_line, poisoned, tf32_dots, to_numpy

import mtriton
import mtriton.language as tl


@mtriton.jit
def _arith_kernel(x_ptr, y_ptr, mod_ptr, floordiv_ptr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x, y = tl.load(x_ptr + i), tl.load(y_ptr + i)
    tl.store(mod_ptr + i, x % y)
    tl.store(floordiv_ptr + i, x // y)


def _operands(rng: np.random.Generator, dtype: np.dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
    if np.issubdtype(dtype, np.floating):
        x = (rng.standard_normal(n) * 10).astype(dtype)
        y = (rng.standard_normal(n) * 3).astype(dtype)
        y[y == 0] = 1
        return x, y
    x = rng.integers(-100, 100, n).astype(dtype)
    y = rng.integers(1, 9, n).astype(dtype) * rng.choice([-1, 1], n).astype(dtype)
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int8], ids=lambda d: np.dtype(d).name)
def test_mod_and_floordiv(backend: str, rng: np.random.Generator, dtype: np.dtype) -> None:
    n = 64
    x, y = _operands(rng, dtype, n)
    mod, floordiv = poisoned(n, mx.array(x).dtype), poisoned(n, mx.array(x).dtype)
    _arith_kernel[(1,)](mx.array(x), mx.array(y), mod, floordiv, BLOCK=n)
    if np.issubdtype(dtype, np.floating):
        # Triton: x - floor(x / y) * y, in float32 for half precision (Triton divides no halves);
        # the result takes the divisor's sign
        xs, ys = x.astype(np.float32), y.astype(np.float32)
        q32 = np.floor(xs / ys)
        q = q32.astype(dtype)
        expected_mod = (xs - q32 * ys).astype(dtype)
        np.testing.assert_allclose(
            to_numpy(mod), expected_mod, rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-2
        )
        np.testing.assert_array_equal(to_numpy(floordiv), q)
        assert (np.sign(to_numpy(mod)) * np.sign(y) >= 0).all()
    else:
        # integers truncate toward zero, as in C (and Triton)
        expected_div = np.trunc(x.astype(np.float64) / y).astype(dtype)
        np.testing.assert_array_equal(to_numpy(floordiv), expected_div)
        np.testing.assert_array_equal(to_numpy(mod), (x - expected_div * y).astype(dtype))


@mtriton.jit
def _nan_kernel(x_ptr, y_ptr, out_ptr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x, y = tl.load(x_ptr + i), tl.load(y_ptr + i)
    tl.store(out_ptr + i, tl.maximum(x, y))
    tl.store(out_ptr + BLOCK + i, tl.minimum(x, y))
    tl.store(out_ptr + 2 * BLOCK + i, tl.clamp(x, -1.0, 1.0))
    tl.store(out_ptr + 3 * BLOCK + i, tl.maximum(x, y, propagate_nan=tl.PropagateNan.ALL))
    tl.store(out_ptr + 4 * BLOCK + i, tl.minimum(x, y, propagate_nan=tl.PropagateNan.ALL))
    tl.store(out_ptr + 5 * BLOCK + i, tl.clamp(x, -1.0, 1.0, propagate_nan=tl.PropagateNan.ALL))


def test_nan_in_maximum_minimum_clamp(backend: str) -> None:
    nan = np.nan
    x = np.array([nan, 1.0, nan, -3.0, 0.5, 2.0, -2.0, nan], dtype=np.float32)
    y = np.array([2.0, nan, nan, 4.0, -0.5, 1.0, 5.0, -1.0], dtype=np.float32)
    out = poisoned(6 * 8)
    _nan_kernel[(1,)](mx.array(x), mx.array(y), out, BLOCK=8)
    got = to_numpy(out).reshape(6, 8)
    np.testing.assert_array_equal(got[0], np.fmax(x, y))  # NONE: the number wins
    np.testing.assert_array_equal(got[1], np.fmin(x, y))
    np.testing.assert_array_equal(got[2], np.minimum(np.fmax(x, -1.0), 1.0))
    np.testing.assert_array_equal(got[3], np.maximum(x, y))  # ALL: NaN wins
    np.testing.assert_array_equal(got[4], np.minimum(x, y))
    np.testing.assert_array_equal(got[5], np.clip(x, -1.0, 1.0))


@mtriton.jit
def _nan_reduce_kernel(x_ptr, out_ptr, scan_ptr, BLOCK: tl.constexpr):
    rows = tl.arange(0, 4)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]
    x = tl.load(x_ptr + rows)
    tl.store(out_ptr + tl.arange(0, 4), tl.max(x, 1))
    tl.store(out_ptr + 4 + tl.arange(0, 4), tl.min(x, 1))
    tl.store(scan_ptr + rows, tl.associative_scan(x, 1, _maximum))


@mtriton.jit
def _maximum(a, b):
    return tl.maximum(a, b)


def test_max_and_min_reductions_pass_over_nan(backend: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 16)).astype(np.float32)
    x[0, 3] = x[1, 0] = x[1, 9] = np.nan
    x[2, :] = np.nan  # all NaN: NaN
    x[3, :5] = np.nan  # leading NaNs: the running max is NaN until the first number
    out, scan = poisoned(8), poisoned((4, 16))
    _nan_reduce_kernel[(1,)](mx.array(x), out, scan, BLOCK=16)
    expected = np.concatenate([np.fmax.reduce(x, axis=1), np.fmin.reduce(x, axis=1)])
    np.testing.assert_array_equal(to_numpy(out), expected)
    np.testing.assert_array_equal(to_numpy(scan), np.fmax.accumulate(x, axis=1))


@mtriton.jit
def _mixed_sign_kernel(x_ptr, y_ptr):
    i = tl.arange(0, 4)
    tl.store(x_ptr + i, tl.load(x_ptr + i) % tl.load(y_ptr + i))


@mtriton.jit
def _neg_bool_kernel(x_ptr):
    i = tl.arange(0, 4)
    flag = tl.load(x_ptr + i) > 0
    tl.store(x_ptr + i, (-flag).to(tl.float32))


def test_errors_triton_raises() -> None:
    with pytest.raises(mtriton.KernelTypeError, match="differ in signedness") as info:
        _mixed_sign_kernel[(1,)](mx.zeros(4, dtype=mx.int32), mx.ones(4, dtype=mx.uint32))
    assert isinstance(info.value, TypeError) and "test_semantics.py:" in str(info.value)
    with pytest.raises(mtriton.KernelTypeError, match="unary - is not defined on int1") as info:
        _neg_bool_kernel[(1,)](mx.zeros(4))
    assert "(-flag)" in str(info.value)


@mtriton.jit
def _small_blocks_kernel(x_ptr, out_ptr, i64_ptr, N: tl.constexpr):
    row = tl.load(x_ptr + tl.arange(0, N)[None, :])  # (1, N)
    tl.store(out_ptr + tl.arange(0, 1), tl.sum(row, axis=1))
    a, b = tl.split(tl.load(x_ptr + tl.arange(0, 2)))  # down to scalars
    tl.store(out_ptr + 1, a * 10 + b)
    acc = 0  # a number in a variable acts as a tensor: Triton's constexpr-to-tensor
    acc = acc.to(tl.int64)
    tl.store(i64_ptr, acc + a.to(tl.int64) + (2**40))


def test_small_blocks_scalars_and_literals(backend: str, rng: np.random.Generator) -> None:
    x = rng.integers(1, 9, 8).astype(np.float32)
    out, i64 = poisoned(2), poisoned(1, mx.int64)
    _small_blocks_kernel[(1,)](mx.array(x), out, i64, N=8)
    np.testing.assert_array_equal(to_numpy(out), [x.sum(), x[0] * 10 + x[1]])
    assert int(to_numpy(i64)[0]) == int(x[0]) + 2**40


@mtriton.jit
def _f64_kernel(x_ptr, out_ptr):
    i = tl.arange(0, 4)
    y = tl.load(x_ptr + i).to(tl.float64) * 3.0  # ERR:f64
    tl.store(out_ptr + i, y.to(tl.float32))


def test_float64_casts_run_on_the_interpreter_and_are_refused_at_the_line_elsewhere(backend: str) -> None:
    x = mx.array([1.0, 2.0, 3.0, 1e-8])
    out = poisoned(4)
    if backend == "interpreter":
        _f64_kernel[(1,)](x, out)
        np.testing.assert_array_equal(to_numpy(out), np.float32(np.array(x, np.float64) * 3.0))
        return
    with pytest.raises(mtriton.UnsupportedError, match="backend has no float64") as info:
        _f64_kernel[(1,)](x, out)
    assert f"test_semantics.py:{marker_line(__file__, 'f64')}" in str(info.value)


@mtriton.jit
def _masked_copy(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n, other=0.0), mask=offs < n)


def test_fully_masked_accesses_to_empty_arrays(backend: str) -> None:
    # nothing is read or written, so no backend reports an out-of-bounds access
    _masked_copy[(1,)](mx.zeros((0,)), mx.zeros((0,)), 0, BLOCK=16)


@mtriton.jit
def _dot3d_kernel(a_ptr, b_ptr, c_ptr, B: tl.constexpr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    bat = tl.arange(0, B)[:, None, None]
    a = tl.load(a_ptr + bat * M * K + tl.arange(0, M)[None, :, None] * K + tl.arange(0, K)[None, None, :])
    b = tl.load(b_ptr + bat * K * N + tl.arange(0, K)[None, :, None] * N + tl.arange(0, N)[None, None, :])
    c = tl.dot(a, b)
    tl.store(c_ptr + bat * M * N + tl.arange(0, M)[None, :, None] * N + tl.arange(0, N)[None, None, :], c)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=str)
def test_batched_dot(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    b, m, n, k = 2, 16, 16, 32
    a = mx.array(rng.standard_normal((b, m, k)).astype(np.float32)).astype(dtype)
    w = mx.array(rng.standard_normal((b, k, n)).astype(np.float32)).astype(dtype)
    c = poisoned((b, m, n))
    _dot3d_kernel[(1,)](a, w, c, B=b, M=m, N=n, K=k)
    expected = to_numpy(a).astype(np.float64) @ to_numpy(w).astype(np.float64)
    tol = 1e-2 if dtype == mx.float16 or tf32_dots(backend) else 1e-5
    np.testing.assert_allclose(to_numpy(c), expected, rtol=tol, atol=tol * 4)
