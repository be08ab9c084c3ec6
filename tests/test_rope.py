"""`rope` and `RoPE` against a float64 NumPy reference and against `mx.fast.rope` itself.

Both pairings, partial rotations (features past `dims` pass through), int, scalar-array and
per-batch offsets, several scales and bases; gradients against `mx.grad` of the references.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import EMULATORS, to_numpy, tolerance
from mlx_primitives import rotary as R

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
EPS32 = float(np.finfo(np.float32).eps)

# (shape, dims, offset, scale, base): every dim rotated; a partial rotation with an int offset;
# per-batch offsets with a wide pass-through; one decoding token with a scalar-array offset;
# a 2-D input (which mx.fast.rope refuses).
CASES = [
    pytest.param((2, 3, 7, 16), 16, 0, 1.0, 10000.0, id="full"),
    pytest.param((3, 11, 20), 12, 5, 1.5, 10000.0, id="partial"),
    pytest.param((2, 4, 9, 42), 8, [3, 17], 0.5, 500.0, id="per-batch"),
    pytest.param((1, 2, 1, 100), 64, "array", 1.0, 1e6, id="decode"),
    pytest.param((13, 10), 10, 2, 2.0, 10000.0, id="2d"),
]


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def as_offset(offset: int | list[int] | str) -> int | mx.array:
    if offset == "array":
        return mx.array(37, dtype=mx.int64)
    return mx.array(offset) if isinstance(offset, list) else offset


def positions64(shape: tuple[int, ...], offset: int | mx.array, scale: float) -> np.ndarray:
    """Position of every row, broadcastable against x[..., :1]."""
    off = np.asarray(offset, dtype=np.float64)
    if off.ndim:
        off = off.reshape((-1,) + (1,) * (len(shape) - 2))
    return ((np.arange(shape[-2]) + off) * scale)[..., None]


def rope64(
    x: mx.array, dims: int, traditional: bool, base: float, scale: float, offset: int | mx.array
) -> np.ndarray:
    xs = f64(x)
    half = dims // 2
    theta = positions64(x.shape, offset, scale) * base ** (-2.0 * np.arange(half) / dims)
    cos, sin = np.cos(theta), np.sin(theta)
    out = xs.copy()
    first = np.arange(0, dims, 2) if traditional else np.arange(half)
    second = first + 1 if traditional else first + half
    x1, x2 = xs[..., first], xs[..., second]
    out[..., first] = x1 * cos - x2 * sin
    out[..., second] = x1 * sin + x2 * cos
    return out


def angle_atol(x: mx.array, offset: int | mx.array, scale: float) -> float:
    """Float32 angles are off by a few ulps of the largest angle, the largest position."""
    max_position = np.abs(positions64(x.shape, offset, scale)).max()
    return 4 * EPS32 * max_position * np.abs(f64(x)).max()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("shape, dims, offset, scale, base", CASES)
def test_rope_forward(
    backend: str,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dims: int,
    offset: int | list[int] | str,
    scale: float,
    base: float,
    traditional: bool,
    dtype: mx.Dtype,
) -> None:
    x = rand(rng, shape, dtype)
    offset = as_offset(offset)
    out = R.rope(x, dims, traditional, base, scale, offset)
    assert out.shape == shape and out.dtype == dtype
    tol = tolerance(dtype)
    atol = tol["atol"] + angle_atol(x, offset, scale)
    expected = rope64(x, dims, traditional, base, scale, offset)
    np.testing.assert_allclose(f64(out), expected, rtol=tol["rtol"], atol=atol)
    np.testing.assert_array_equal(to_numpy(out)[..., dims:], to_numpy(x)[..., dims:])
    if len(shape) >= 3:
        builtin = mx.fast.rope(x, dims, traditional=traditional, base=base, scale=scale, offset=offset)
        # mx.fast.rope rounds to `dtype` too: allow one more rounding of the output.
        np.testing.assert_allclose(f64(out), f64(builtin), rtol=2 * tol["rtol"], atol=2 * atol)


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("shape, dims, offset, scale, base", [CASES[1], CASES[2]])
def test_rope_backward(
    backend: str,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dims: int,
    offset: int | list[int],
    scale: float,
    base: float,
    traditional: bool,
) -> None:
    x, weight = rand(rng, shape), rand(rng, shape)
    offset = as_offset(offset)

    def loss(fn):
        return lambda x: (
            fn(x, dims, traditional=traditional, base=base, scale=scale, offset=offset) * weight
        ).sum()

    got = mx.grad(loss(R.rope))(x)
    atol = 1e-5 + angle_atol(weight, offset, scale)
    for fn in (R.rope_reference, mx.fast.rope):
        np.testing.assert_allclose(f64(got), f64(mx.grad(loss(fn))(x)), rtol=1e-5, atol=atol)


def test_rope_backward_half_precision(backend: str, rng: np.random.Generator) -> None:
    x = rand(rng, (2, 6, 24), mx.bfloat16)
    got = mx.grad(lambda x: (R.rope(x, 16, offset=3) ** 2).sum())(x)
    want = mx.grad(lambda x: (R.rope_reference(x, 16, offset=3) ** 2).sum())(x)
    assert got.dtype == mx.bfloat16
    np.testing.assert_allclose(f64(got), f64(want), **tolerance(mx.bfloat16))


def test_module_matches_mlx(backend: str, rng: np.random.Generator) -> None:
    x = rand(rng, (2, 3, 5, 32))
    for traditional in (False, True):
        ours, theirs = R.RoPE(24, traditional, base=1000, scale=0.25), nn.RoPE(24, traditional, 1000, 0.25)
        assert "traditional" in repr(ours)
        np.testing.assert_allclose(f64(ours(x, offset=9)), f64(theirs(x, offset=9)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f64(ours(x)), f64(theirs(x)), rtol=1e-5, atol=1e-5)


def test_noncontiguous_input(backend: str, rng: np.random.Generator) -> None:
    """Attention's (B, L, H, D) -> (B, H, L, D) transpose: copied to row-major by the launch."""
    x = rand(rng, (2, 7, 3, 16)).transpose(0, 2, 1, 3)
    out = R.rope(x, 16, offset=4)
    expected = mx.fast.rope(x, 16, traditional=False, base=10000.0, scale=1.0, offset=4)
    np.testing.assert_allclose(f64(out), f64(expected), rtol=1e-5, atol=1e-5)
    assert R.rope(mx.zeros((2, 0, 8)), 8).shape == (2, 0, 8)


def test_writes_every_output(backend: str, rng: np.random.Generator) -> None:
    """The emulators poison outputs and reports any element no thread wrote (pass-through tail)."""
    if backend not in EMULATORS:
        pytest.skip("the unwritten-output check is the emulators'")
    from mtriton import emulator

    with emulator.checks(unwritten=True):
        mx.eval(R.rope(rand(rng, (3, 5, 150)), 6, traditional=True, offset=mx.array([1, 2, 3])))


def test_errors(backend: str) -> None:
    x = mx.zeros((2, 3, 8))
    with pytest.raises(ValueError, match=r"^\[rope\] dims must be a positive even int, got 7$"):
        R.rope(x, 7)
    with pytest.raises(ValueError, match=r"^\[rope\] dims is 10 but x has only 8 features \(last axis\)$"):
        R.rope(x, 10)
    with pytest.raises(
        TypeError, match=r"^\[rope\] x has dtype int32; supported: float32, float16, bfloat16$"
    ):
        R.rope(x.astype(mx.int32), 8)
    with pytest.raises(ValueError, match=r"^\[rope\] x has shape \(8,\); expected \(\.\.\., L, D\)$"):
        R.rope(mx.zeros((8,)), 8)
    with pytest.raises(TypeError, match=r"^\[rope\] offset has dtype float32; expected an integer dtype$"):
        R.rope(x, 8, offset=mx.array(1.0))
    with pytest.raises(
        TypeError, match=r"^\[rope\] offset has type float; expected an int or an integer mx.array$"
    ):
        R.rope(x, 8, offset=1.5)
    with pytest.raises(
        ValueError,
        match=r"^\[rope\] offset has shape \(3,\); expected a scalar or a vector of x.shape\[0\] = 2",
    ):
        R.rope(x, 8, offset=mx.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"^\[rope\] base must be positive, got 0.0$"):
        R.rope(x, 8, base=0.0)
