"""INT8/INT4 quantization (`mlx_primitives.quantize`) on every backend.

Round trips are held to their error bounds, packing to its documented nibble order, the linear
kernels to float64 NumPy products with weights dequantized by NumPy from the codes, and the
MLX-format path to `mx.quantize` + `mx.quantized_matmul`. Every kernel output starts poisoned
(NaN, or all bits set), so an element a kernel fails to write shows.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import poisoned, to_numpy, tolerance
from mlx_primitives import quantize as Q

import mtriton

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The public functions allocate their outputs with mtriton.empty: make those poisoned.
    monkeypatch.setattr(mtriton, "empty", lambda shape, dtype=mx.float32: poisoned(shape, dtype))


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def unpack_nibbles(w_q: np.ndarray) -> np.ndarray:
    """Codes of a uint8 array, by the documented order: element 2j low nibble, 2j+1 high."""
    return np.stack([w_q & 0xF, w_q >> 4], axis=-1).reshape(*w_q.shape[:-1], 2 * w_q.shape[-1])


def mlx_codes(w_q: mx.array, bits: int) -> np.ndarray:
    """Codes of MLX's uint32 words, least significant bits first."""
    words = np.array(w_q).astype(np.uint64)[..., None]
    shifts = np.arange(32 // bits, dtype=np.uint64) * np.uint64(bits)
    codes = (words >> shifts) & np.uint64((1 << bits) - 1)
    return codes.reshape(*w_q.shape[:-1], -1).astype(np.float64)


def linear_tolerance(dtype: mx.Dtype, k: int) -> dict[str, float]:
    # Sums of k products rounded once to the output dtype: the float32 sum's error grows like sqrt(k).
    tol = tolerance(dtype)
    return {"rtol": tol["rtol"], "atol": max(tol["atol"], 1e-5 * math.sqrt(k))}


# --------------------------------------------------------------------------- int8


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_round_trip(backend: str, rng: np.random.Generator, dtype: mx.Dtype, per_channel: bool) -> None:
    w = rand(rng, (2, 19, 77), dtype) * 3 + 1  # skewed rows: the zero points are not 0
    w[0, 0] = 0.0  # an all-zero row must still quantize (any scale; every code is the zero point)
    w_q, scale, zero_point = Q.quantize_int8(w, per_channel=per_channel)
    assert (w_q.dtype, scale.dtype, zero_point.dtype) == (mx.int8, mx.float32, mx.int8)
    assert w_q.shape == w.shape and scale.shape == zero_point.shape == ((2, 19) if per_channel else ())
    ref_q, ref_scale, ref_zero = Q.quantize_int8_reference(w, per_channel)
    np.testing.assert_array_equal(np.array(w_q), np.array(ref_q))
    np.testing.assert_allclose(np.array(scale), np.array(ref_scale), rtol=1e-7)
    np.testing.assert_array_equal(np.array(zero_point), np.array(ref_zero))

    s = f64(scale)[..., None] if per_channel else f64(scale)
    deq64 = (np.array(w_q, dtype=np.float64) - np.array(zero_point, dtype=np.float64)[..., None]) * s
    assert np.all(np.abs(deq64 - f64(w)) <= s * (0.5 + 1e-4))  # f32 rounding of w / s
    assert np.all(deq64[0, 0] == 0.0)
    deq = Q.dequantize_int8(w_q, scale, zero_point)
    assert deq.dtype == mx.float32
    np.testing.assert_allclose(f64(deq), deq64, rtol=1e-6, atol=1e-6)
    assert Q.dequantize_int8(w_q, scale, zero_point, dtype=dtype).dtype == dtype


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "m, lead", [(1, (1,)), (3, (3,)), (33, (3, 11)), (100, (100,))], ids=["m1", "m3", "m33", "m100"]
)
def test_int8_linear(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, m: int, lead: tuple[int, ...]
) -> None:
    n, k = 37, 77
    w_q, scale, zero_point = Q.quantize_int8(rand(rng, (n, k)), per_channel=m != 3)
    x = rand(rng, (*lead, k), dtype)
    bias = rand(rng, (n,), dtype) if m % 2 else None
    y = Q.int8_linear(x, w_q, scale, zero_point, bias)
    assert y.shape == (*lead, n) and y.dtype == dtype
    s = f64(scale)[:, None] if scale.ndim else f64(scale)
    w64 = (np.array(w_q, np.float64) - np.array(zero_point, np.float64)[..., None]) * s
    expected = f64(x) @ w64.T + (f64(bias) if bias is not None else 0.0)
    np.testing.assert_allclose(f64(y), expected, **linear_tolerance(dtype, k))
    reference = Q.int8_linear_reference(x, w_q, scale, zero_point, bias)
    np.testing.assert_allclose(f64(y), f64(reference), **linear_tolerance(dtype, k))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_cuda_tiles_split_weights_into_two_half_terms(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, dtype: mx.Dtype
) -> None:
    # On CUDA the prefill kernel multiplies half-precision x by W = hi + lo on the tensor cores
    # (HALF_DOT, 128x128x64 tiles); the interpreter runs that kernel here and it must stay
    # float32-accurate. (Metal's 32 KB of threadgroup memory cannot hold those tiles.)
    monkeypatch.setattr(mtriton, "current_target", lambda: "cuda")
    mtriton.set_backend("interpreter")
    try:
        n, k, m = 45, 200, 40
        w_q, scale, zero_point = Q.quantize_int8(rand(rng, (n, k)))
        x = rand(rng, (m, k), dtype)
        y = Q.int8_linear(x, w_q, scale, zero_point)
    finally:
        mtriton.set_backend(None)
    w64 = (np.array(w_q, np.float64) - np.array(zero_point, np.float64)[:, None]) * f64(scale)[:, None]
    np.testing.assert_allclose(f64(y), f64(x) @ w64.T, **linear_tolerance(dtype, k))


# --------------------------------------------------------------------------- int4


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("group_size", [32, 48, 128])
def test_int4_round_trip(backend: str, rng: np.random.Generator, dtype: mx.Dtype, group_size: int) -> None:
    w = rand(rng, (3, 11, 384), dtype) * 2 - 0.5
    w[1, 2, :group_size] = 0.25  # a constant group: scale 1, every code 0
    w_q, scales, zeros = Q.quantize_int4(w, group_size)
    groups = 384 // group_size
    assert (w_q.dtype, scales.dtype, zeros.dtype) == (mx.uint8, mx.float32, mx.float32)
    assert w_q.shape == (3, 11, 192) and scales.shape == zeros.shape == (3, 11, groups)
    ref_q, ref_scales, ref_zeros = Q.quantize_int4_reference(w, group_size)
    np.testing.assert_array_equal(np.array(w_q), np.array(ref_q))
    np.testing.assert_allclose(np.array(scales), np.array(ref_scales), rtol=1e-7)
    np.testing.assert_array_equal(np.array(zeros), np.array(ref_zeros))

    codes = unpack_nibbles(np.array(w_q)).astype(np.float64)
    per_element = lambda p: np.repeat(f64(p), group_size, axis=-1)  # noqa: E731
    deq64 = codes * per_element(scales) + per_element(zeros)
    assert np.all(np.abs(deq64 - f64(w)) <= per_element(scales) * (0.5 + 1e-5))
    assert np.all(codes[1, 2, :group_size] == 0) and np.all(deq64[1, 2, :group_size] == 0.25)
    deq = Q.dequantize_int4(w_q, scales, zeros, group_size)
    assert deq.shape == w.shape and deq.dtype == mx.float32
    np.testing.assert_allclose(f64(deq), deq64, rtol=1e-6, atol=1e-6)
    assert Q.dequantize_int4(w_q, scales, zeros, group_size, dtype=dtype).dtype == dtype


def test_int4_packing_order(backend: str) -> None:
    # One group spanning 0..15 has scale 1 and zero 0, so the codes are the values themselves.
    values = np.array([[0, 15, 1, 14, 2, 13, 3, 12, 4, 11, 5, 10, 6, 9, 7, 8]], dtype=np.float32)
    w_q, scales, zeros = Q.quantize_int4(mx.array(values), group_size=16)
    assert np.array(scales).item() == 1.0 and np.array(zeros).item() == 0.0
    expected = [lo | (hi << 4) for lo, hi in zip(values[0, ::2].astype(int), values[0, 1::2].astype(int))]
    assert np.array(w_q)[0].tolist() == expected  # 0xF0, 0xE1, ...
    # And the other way: byte 0x21 holds element 0 = 1 (low nibble), element 1 = 2 (high nibble).
    deq = Q.dequantize_int4(mx.array([[0x21, 0x43]], dtype=mx.uint8), mx.ones((1, 1)), mx.zeros((1, 1)), 4)
    assert np.array(deq).tolist() == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "m, lead", [(1, (1,)), (4, (2, 2)), (33, (33,)), (100, (4, 25))], ids=["m1", "m4", "m33", "m100"]
)
def test_int4_linear(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, m: int, lead: tuple[int, ...]
) -> None:
    n, k, group_size = 45, 160, 32  # K past one 128-wide block: a masked tail
    w_q, scales, zeros = Q.quantize_int4(rand(rng, (n, k)), group_size)
    x = rand(rng, (*lead, k), dtype)
    bias = rand(rng, (n,), mx.float32) if m > 3 else None
    y = Q.int4_linear(x, w_q, scales, zeros, group_size, bias)
    assert y.shape == (*lead, n) and y.dtype == dtype
    codes = unpack_nibbles(np.array(w_q)).astype(np.float64)
    w64 = codes * np.repeat(f64(scales), group_size, 1) + np.repeat(f64(zeros), group_size, 1)
    expected = f64(x) @ w64.T + (f64(bias) if bias is not None else 0.0)
    np.testing.assert_allclose(f64(y), expected, **linear_tolerance(dtype, k))
    reference = Q.int4_linear_reference(x, w_q, scales, zeros, group_size, bias)
    np.testing.assert_allclose(f64(y), f64(reference), **linear_tolerance(dtype, k))


# --------------------------------------------------------------------------- MLX's format


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_agrees_with_mx_quantized_matmul(
    backend: str, rng: np.random.Generator, bits: int, group_size: int
) -> None:
    n, k = 40, 256
    w_q, scales, biases = mx.quantize(rand(rng, (n, k)), group_size=group_size, bits=bits)
    codes = mlx_codes(w_q, bits)
    w64 = codes * np.repeat(f64(scales), group_size, 1) + np.repeat(f64(biases), group_size, 1)
    for m in (2, 40):
        x = rand(rng, (m, k))
        y = Q.mlx_quantized_linear(x, w_q, scales, biases, group_size, bits)
        # On the CPU stream: MLX 0.32.4's CUDA quantized_matmul fails for group_size 128 at M=40.
        expected = mx.quantized_matmul(
            x, w_q, scales, biases, transpose=True, group_size=group_size, bits=bits, stream=mx.cpu
        )
        np.testing.assert_allclose(f64(y), f64(expected), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(f64(y), f64(x) @ w64.T, **linear_tolerance(mx.float32, k))
    layer = Q.QuantizedLinear.from_mlx_quantized(w_q, scales, biases, group_size, bits)
    np.testing.assert_allclose(f64(layer(x)), f64(y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_mlx_format_in_half_precision(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    # MLX's CPU quantized_matmul accumulates in the half type (errors of ~1 at K=1024), so the
    # comparison runs MLX in float32 on the same rounded weights; ours accumulates in float32.
    n, k, group_size = 24, 128, 64
    w_q, scales, biases = mx.quantize(rand(rng, (n, k), dtype), group_size=group_size, bits=4)
    assert scales.dtype == dtype
    x = rand(rng, (3, 5, k), dtype)
    bias = rand(rng, (n,), dtype)
    y = Q.mlx_quantized_linear(x, w_q, scales, biases, group_size, 4, bias=bias)
    assert y.dtype == dtype and y.shape == (3, 5, n)
    as_f32 = [a.astype(mx.float32) for a in (x, scales, biases, bias)]
    expected = mx.quantized_matmul(as_f32[0], w_q, *as_f32[1:3], True, group_size, 4, stream=mx.cpu)
    np.testing.assert_allclose(f64(y), f64(expected + as_f32[3]), **linear_tolerance(dtype, k))
    # MLX's 4-bit words, viewed as bytes, are this module's int4 format: same nibble order.
    same = Q.int4_linear(x, w_q.view(mx.uint8), scales, biases, group_size, bias)
    np.testing.assert_array_equal(f64(same), f64(y))


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_linear_from_linear(backend: str, rng: np.random.Generator, bits: int) -> None:
    k, n, group_size = 96, 50, 32
    linear = nn.Linear(k, n, bias=True)
    layer = Q.QuantizedLinear.from_linear(linear, bits=bits, group_size=group_size)
    assert set(layer.parameters()) == {"weight", "scales", "zeros", "bias"}
    assert layer.weight.dtype == (mx.int8 if bits == 8 else mx.uint8)
    x = rand(rng, (2, 3, k))
    y, expected = f64(layer(x)), f64(linear(x))
    # Each weight is within half a step of its float value: |error| <= sum_k |x_k| * step_k / 2.
    if bits == 8:
        steps = np.broadcast_to(f64(layer.scales)[:, None], (n, k))
    else:
        steps = np.repeat(f64(layer.scales), group_size, 1)
    bound = np.abs(f64(x)) @ (steps / 2).T
    assert np.all(np.abs(y - expected) <= bound + 1e-5)
    # Rounding to nearest leaves errors spread evenly over +-step/2 (variance step**2 / 12); truncating
    # would double their root mean square. Over 300 outputs the measured one sits within a few percent.
    rounding_rms = np.sqrt(np.mean(f64(x) ** 2 @ (steps**2 / 12).T))
    assert np.sqrt(np.mean((y - expected) ** 2)) < 1.4 * rounding_rms


def test_quantized_linear_init(backend: str, rng: np.random.Generator) -> None:
    layer = Q.QuantizedLinear(64, 24, bits=4, group_size=32, bias=True)
    assert layer.weight.shape == (24, 32) and layer.scales.shape == (24, 2)
    assert layer.trainable_parameters() == {}
    y = layer(rand(rng, (5, 64), mx.float16))
    assert y.shape == (5, 24) and y.dtype == mx.float16 and np.all(np.isfinite(f64(y)))


def test_empty_batch(backend: str, rng: np.random.Generator) -> None:
    w_q, scale, zero_point = Q.quantize_int8(rand(rng, (8, 16)))
    assert Q.int8_linear(mx.zeros((0, 16)), w_q, scale, zero_point).shape == (0, 8)


# --------------------------------------------------------------------------- errors


def _int4(n: int = 8, k: int = 64, group_size: int = 32) -> tuple[mx.array, mx.array, mx.array]:
    groups = k // group_size
    return mx.zeros((n, k // 2), mx.uint8), mx.ones((n, groups)), mx.zeros((n, groups))


def _int8(n: int = 8, k: int = 64) -> tuple[mx.array, mx.array, mx.array]:
    return mx.zeros((n, k), mx.int8), mx.ones((n,)), mx.zeros((n,), mx.int8)


ERRORS = [
    (lambda: Q.int4_linear(mx.zeros((1, 4096)), *_int4(k=4096), group_size=100), ValueError,
     "[int4_linear] group_size 100 does not divide in_features 4096"),
    (lambda: Q.int4_linear(mx.zeros((1, 64)), *_int4(), group_size=64), ValueError,
     "[int4_linear] scales has shape (8, 2); expected (8, 1)"),
    (lambda: Q.int8_linear(mx.zeros((2, 63)), *_int8()), ValueError,
     "[int8_linear] x has shape (2, 63); expected (..., 64) to match in_features 64"),
    (lambda: Q.int8_linear(mx.zeros((2, 64), mx.int32), *_int8()), TypeError,
     "[int8_linear] x has dtype int32; supported: float32, float16, bfloat16"),
    (lambda: Q.int8_linear(mx.zeros((2, 64)), *_int8(), bias=mx.zeros((7,))), ValueError,
     "[int8_linear] bias has shape (7,); expected (8,)"),
    (lambda: Q.int8_linear(mx.zeros((2, 64)), mx.zeros((8, 64), mx.uint8), *_int8()[1:]), TypeError,
     "[int8_linear] w_q has dtype uint8; supported: int8"),
    (lambda: Q.int8_linear(mx.zeros((2, 64)), _int8()[0], mx.ones((4,)), mx.zeros((4,), mx.int8)), ValueError,
     "[int8_linear] scale has shape (4,); expected () or (8,) (one per output row)"),
    (lambda: Q.quantize_int4(mx.zeros((8, 64)), group_size=5), ValueError,
     "[quantize_int4] group_size 5 does not divide in_features 64"),
    (lambda: Q.quantize_int4(mx.zeros((8, 63)), group_size=7), ValueError,
     "[quantize_int4] group_size 7 must be even: two 4-bit codes share a byte"),
    (lambda: Q.quantize_int8(mx.zeros((64,))), ValueError,
     "[quantize_int8] w has shape (64,); expected (..., out_features, in_features)"),
    (lambda: Q.mlx_quantized_linear(mx.zeros((1, 64)), mx.zeros((8, 8), mx.uint32), mx.ones((8, 1)),
                                    mx.zeros((8, 1)), 64, bits=3), ValueError,
     "[mlx_quantized_linear] bits must be 4 or 8; got 3"),
    (lambda: Q.QuantizedLinear(64, 8, bits=2), ValueError, "[QuantizedLinear] bits must be 4 or 8; got 2"),
    (lambda: Q.int8_linear(np.zeros((2, 64)), *_int8()), TypeError,
     "[int8_linear] x has type ndarray; expected an mx.array"),
    (lambda: Q.dequantize_int8(mx.zeros((64,), mx.int8), mx.ones(()), mx.zeros((), mx.int8)), ValueError,
     "[dequantize_int8] w_q has shape (64,); expected (..., out_features, in_features)"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, message", ERRORS, ids=[m.split("]")[0][1:] for _, _, m in ERRORS])
def test_errors_name_function_argument_and_values(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()
