"""mlx_primitives norms on every backend: forward against float64 NumPy, gradients against
`mx.grad` of the plain-MLX references, a training smoke test, and the error messages.

Row lengths are odd (1, 67, 1000); 4099 is longer than a backward block and 16411 than the
rows forward kernels hold in registers, so the column loops and masked tails run; 1030 rows
make each backward program own several rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import to_numpy, tolerance
from mlx_primitives import norms

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
# Leading batch shapes and row lengths: 4099 is longer than the backward kernels' block (4096)
# and 16411 than the longest row the forward kernels hold in registers (16384).
SHAPES = [(5, 1), (3, 67), (2, 3, 1000), (2, 4099), (1, 16411)]
EPS = 1e-5


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def np_rmsnorm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + EPS) * w


def np_layernorm(x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    y = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + EPS)
    return y * (1 if w is None else w) + (0 if b is None else b)


def assert_close(actual: mx.array, expected: np.ndarray, dtype: mx.Dtype, atol_scale: float = 1.0) -> None:
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(actual), expected, rtol=tol["rtol"], atol=tol["atol"] * atol_scale)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rmsnorm(backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, ...]) -> None:
    x, w = rand(rng, shape, dtype), rand(rng, shape[-1:], dtype)
    assert_close(norms.rmsnorm(x, w, EPS), np_rmsnorm(f64(x), f64(w)), dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm(backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, ...]) -> None:
    # An offset mean: the variance must be taken around the mean, not as E[x^2] - E[x]^2.
    x = (rand(rng, shape) * 2 + 3).astype(dtype)
    w, b = rand(rng, shape[-1:], dtype), rand(rng, shape[-1:], dtype)
    # float32 statistics over rows of 4099 values carry ~1e-5 absolute error (seen: 1.1e-5)
    assert_close(norms.layernorm(x, w, b, EPS), np_layernorm(f64(x), f64(w), f64(b)), dtype, atol_scale=4)


@pytest.mark.parametrize("affine", ["weight", "bias", "neither"])
def test_layernorm_without_weight_or_bias(backend: str, rng: np.random.Generator, affine: str) -> None:
    x = rand(rng, (4, 67))
    w = rand(rng, (67,)) if affine == "weight" else None
    b = rand(rng, (67,)) if affine == "bias" else None
    expected = np_layernorm(f64(x), None if w is None else f64(w), None if b is None else f64(b))
    assert_close(norms.layernorm(x, w, b, EPS), expected, mx.float32)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_add_rmsnorm(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, ...]
) -> None:
    x, residual, w = rand(rng, shape, dtype), rand(rng, shape, dtype), rand(rng, shape[-1:], dtype)
    normed, new_residual = norms.fused_add_rmsnorm(x, residual, w, EPS)
    assert_close(new_residual, f64(x) + f64(residual), dtype)
    # normed is rmsnorm of the returned (rounded) new residual, as documented.
    assert_close(normed, np_rmsnorm(f64(x + residual), f64(w)), dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shape, out_features", [((5, 1), 3), ((3, 67), 17), ((2, 3, 1000), 40), ((2, 4099), 5)]
)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_rmsnorm_linear(
    backend: str,
    rng: np.random.Generator,
    dtype: mx.Dtype,
    shape: tuple[int, ...],
    out_features: int,
    bias: bool,
) -> None:
    k = shape[-1]
    x, norm_w = rand(rng, shape, dtype), rand(rng, (k,), dtype)
    # Scaled so outputs are O(1) whatever k, and the dtype's tolerance applies as it is.
    linear_w = (rand(rng, (out_features, k)) / math.sqrt(k)).astype(dtype)
    linear_b = rand(rng, (out_features,), dtype) if bias else None
    out = norms.fused_rmsnorm_linear(x, norm_w, linear_w, linear_b, EPS)
    expected = np_rmsnorm(f64(x), f64(norm_w)) @ f64(linear_w).T + (f64(linear_b) if bias else 0)
    # Half-precision inputs also round the scaled x tile before the dot.
    assert_close(out, expected, dtype, atol_scale=1 if dtype == mx.float32 else 2)


def test_non_contiguous_inputs(backend: str, rng: np.random.Generator) -> None:
    x_t = rand(rng, (67, 6)).T  # (6, 67), transposed
    x_s = rand(rng, (6, 134))[:, ::2]  # (6, 67), every other column
    w, b = rand(rng, (67,)), rand(rng, (67,))
    assert_close(norms.rmsnorm(x_t, w, EPS), np_rmsnorm(f64(x_t), f64(w)), mx.float32)
    assert_close(norms.layernorm(x_s, w, b, EPS), np_layernorm(f64(x_s), f64(w), f64(b)), mx.float32)
    normed, _ = norms.fused_add_rmsnorm(x_t, x_s, w, EPS)
    assert_close(normed, np_rmsnorm(f64(x_t) + f64(x_s), f64(w)), mx.float32)


def test_one_dimensional_input(backend: str, rng: np.random.Generator) -> None:
    x, r, w, b = (rand(rng, (67,)) for _ in range(4))
    assert_close(norms.rmsnorm(x, w, EPS), np_rmsnorm(f64(x), f64(w)), mx.float32)
    assert_close(norms.layernorm(x, w, b, EPS), np_layernorm(f64(x), f64(w), f64(b)), mx.float32)
    normed, new_residual = norms.fused_add_rmsnorm(x, r, w, EPS)
    assert_close(normed, np_rmsnorm(f64(x) + f64(r), f64(w)), mx.float32)
    assert_close(new_residual, f64(x) + f64(r), mx.float32)
    linear_w = rand(rng, (5, 67)) / math.sqrt(67)
    out = norms.fused_rmsnorm_linear(x, w, linear_w, None, EPS)
    assert_close(out, np_rmsnorm(f64(x), f64(w)) @ f64(linear_w).T, mx.float32)


def test_empty_rows(backend: str) -> None:
    x, w = mx.zeros((0, 8)), mx.ones((8,))
    assert norms.rmsnorm(x, w).shape == (0, 8)
    assert norms.layernorm(x, w, w).shape == (0, 8)
    assert norms.fused_rmsnorm_linear(x, w, mx.ones((3, 8))).shape == (0, 3)


# --------------------------------------------------------------------------- gradients


def assert_grads_close(grads: tuple[mx.array, ...], expected: tuple[mx.array, ...], dtype: mx.Dtype) -> None:
    assert len(grads) == len(expected)
    # Gradients are sums along a row (dx) or over the rows (dweight, dbias): float32 sums of
    # a thousand terms in another order differ by ~1e-5.
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == mx.float32 else tolerance(dtype)
    for got, want in zip(grads, expected):
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(f64(got), f64(want), **tol)


def grads_of(
    fn: Callable[..., mx.array], cotangent: mx.array, args: tuple[mx.array, ...]
) -> tuple[mx.array, ...]:
    """Gradients of sum(fn(*args) * cotangent) with respect to every argument."""
    loss = lambda *a: (fn(*a).astype(mx.float32) * cotangent).sum()
    return mx.grad(loss, argnums=tuple(range(len(args))))(*args)


GRAD_SHAPES = [(3, 67), (2, 3, 4099), (1030, 5)]


@pytest.mark.parametrize("shape", GRAD_SHAPES)
def test_rmsnorm_grad(backend: str, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    args = (rand(rng, shape), rand(rng, shape[-1:]))
    cotangent = rand(rng, shape)
    expected = grads_of(norms.rmsnorm_reference, cotangent, args)
    assert_grads_close(grads_of(norms.rmsnorm, cotangent, args), expected, mx.float32)


def test_rmsnorm_grad_bfloat16(backend: str, rng: np.random.Generator) -> None:
    args = (rand(rng, (4, 67), mx.bfloat16), rand(rng, (67,), mx.bfloat16))
    cotangent = rand(rng, (4, 67))
    expected = grads_of(norms.rmsnorm_reference, cotangent, args)
    assert_grads_close(grads_of(norms.rmsnorm, cotangent, args), expected, mx.bfloat16)


@pytest.mark.parametrize("shape", GRAD_SHAPES)
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "neither"])
def test_layernorm_grad(backend: str, rng: np.random.Generator, shape: tuple[int, ...], affine: str) -> None:
    x = rand(rng, shape) * 2 + 1
    w = rand(rng, shape[-1:]) if affine in ("both", "weight") else None
    b = rand(rng, shape[-1:]) if affine in ("both", "bias") else None
    args = tuple(a for a in (x, w, b) if a is not None)

    def bind(fn: Callable[..., mx.array]) -> Callable[..., mx.array]:
        # Only the present parameters are arguments, so mx.grad sees arrays alone.
        def call(x: mx.array, *params: mx.array) -> mx.array:
            given = iter(params)
            return fn(x, next(given) if w is not None else None, next(given) if b is not None else None)

        return call

    cotangent = rand(rng, shape)
    expected = grads_of(bind(norms.layernorm_reference), cotangent, args)
    assert_grads_close(grads_of(bind(norms.layernorm), cotangent, args), expected, mx.float32)


@pytest.mark.parametrize("shape", GRAD_SHAPES)
def test_fused_add_rmsnorm_grad(backend: str, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    args = (rand(rng, shape), rand(rng, shape), rand(rng, shape[-1:]))
    dy, dh = rand(rng, shape), rand(rng, shape)

    def loss(fn: Callable[..., tuple[mx.array, mx.array]]) -> Callable[..., mx.array]:
        # Both outputs reach the loss, as in a transformer: the residual stream goes on.
        def call(x: mx.array, residual: mx.array, w: mx.array) -> mx.array:
            normed, new_residual = fn(x, residual, w)
            return (normed * dy).sum() + (new_residual * dh).sum()

        return call

    argnums = (0, 1, 2)
    expected = mx.grad(loss(norms.fused_add_rmsnorm_reference), argnums=argnums)(*args)
    assert_grads_close(mx.grad(loss(norms.fused_add_rmsnorm), argnums=argnums)(*args), expected, mx.float32)


@pytest.mark.parametrize("shape, out_features", [((3, 67), 17), ((2, 3, 1000), 40)])
def test_fused_rmsnorm_linear_grad(
    backend: str, rng: np.random.Generator, shape: tuple[int, ...], out_features: int
) -> None:
    k = shape[-1]
    args = (
        rand(rng, shape),
        rand(rng, (k,)),
        rand(rng, (out_features, k)) / math.sqrt(k),
        rand(rng, (out_features,)),
    )
    cotangent = rand(rng, (*shape[:-1], out_features))
    expected = grads_of(norms.fused_rmsnorm_linear_reference, cotangent, args)
    assert_grads_close(grads_of(norms.fused_rmsnorm_linear, cotangent, args), expected, mx.float32)


class TinyModel(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.up = nn.Linear(dims, 4 * dims)
        self.rms = norms.RMSNorm(4 * dims)
        self.ln = norms.LayerNorm(4 * dims)
        self.down = nn.Linear(4 * dims, 1)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(self.ln(nn.gelu(self.rms(self.up(x)))))


def test_tiny_model_trains(backend: str, rng: np.random.Generator) -> None:
    mx.random.seed(int(rng.integers(2**31)))
    model = TinyModel(8)
    x = rand(rng, (32, 8))
    target = mx.sin(x.sum(axis=1, keepdims=True))
    loss_fn = lambda model, x, y: nn.losses.mse_loss(model(x), y)
    step = nn.value_and_grad(model, loss_fn)
    optimizer = optim.SGD(learning_rate=0.05)
    losses = []
    for _ in range(6):
        loss, grads = step(model, x, target)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses


def test_modules_match_mlx_nn(backend: str, rng: np.random.Generator) -> None:
    x = rand(rng, (2, 5, 67))
    for ours, theirs in ((norms.RMSNorm(67), nn.RMSNorm(67)), (norms.LayerNorm(67), nn.LayerNorm(67))):
        theirs.update({k: rand(rng, v.shape) for k, v in theirs.parameters().items()})
        ours.load_weights(list(theirs.parameters().items()))  # strict: the same names and shapes
        np.testing.assert_allclose(f64(ours(x)), f64(theirs(x)), rtol=1e-5, atol=1e-5)
    ln = norms.LayerNorm(67, affine=True, bias=False)
    assert set(ln.parameters()) == set(nn.LayerNorm(67, bias=False).parameters()) == {"weight"}
    assert not norms.LayerNorm(67, affine=False).parameters()


# --------------------------------------------------------------------------- errors

X64 = mx.zeros((2, 64))
W64 = mx.ones((64,))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: norms.rmsnorm(X64, mx.ones((63,))), ValueError,
         "[rmsnorm] weight has shape (63,); expected (64,) to match x's last axis"),
        (lambda: norms.rmsnorm(X64, W64.astype(mx.float16)), TypeError,
         "[rmsnorm] weight has dtype float16; expected float32 to match x"),
        (lambda: norms.rmsnorm([[1.0]], W64), TypeError, "[rmsnorm] x has type list; expected an mx.array"),
        (lambda: norms.rmsnorm(mx.array(1.0), W64), ValueError,
         "[rmsnorm] x has shape (); expected at least one axis to normalize"),
        (lambda: norms.rmsnorm(X64, W64, eps=0.0), ValueError, "[rmsnorm] eps is 0.0; expected a positive number"),
        (lambda: norms.layernorm(X64.astype(mx.int32)), TypeError,
         "[layernorm] x has dtype int32; supported: float32, float16, bfloat16"),
        (lambda: norms.layernorm(X64, None, mx.zeros((2, 64))), ValueError,
         "[layernorm] bias has shape (2, 64); expected (64,) to match x's last axis"),
        (lambda: norms.layernorm(X64, W64.astype(mx.bfloat16)), TypeError,
         "[layernorm] weight has dtype bfloat16; expected float32 to match x"),
        (lambda: norms.fused_add_rmsnorm(X64, mx.zeros((2, 63)), W64), ValueError,
         "[fused_add_rmsnorm] residual has shape (2, 63); expected (2, 64) to match x"),
        (lambda: norms.fused_add_rmsnorm(X64, X64, np.ones(64)), TypeError,
         "[fused_add_rmsnorm] weight has type ndarray; expected an mx.array"),
        (lambda: norms.fused_rmsnorm_linear(X64, W64, mx.zeros((8, 63))), ValueError,
         "[fused_rmsnorm_linear] linear_weight has shape (8, 63); expected (8, 64) to match x's last axis"),
        (lambda: norms.fused_rmsnorm_linear(X64, W64, mx.zeros((64,))), ValueError,
         "[fused_rmsnorm_linear] linear_weight has shape (64,); expected (out_features, 64)"),
        (lambda: norms.fused_rmsnorm_linear(X64, W64, mx.zeros((8, 64)), mx.zeros((7,))), ValueError,
         "[fused_rmsnorm_linear] linear_bias has shape (7,); expected (8,) to match linear_weight's out_features"),
        (lambda: norms.RMSNorm(8, eps=-1.0), ValueError, "[RMSNorm] eps is -1.0; expected a positive number"),
        (lambda: norms.LayerNorm(8)(X64), ValueError,
         "[layernorm] weight has shape (8,); expected (64,) to match x's last axis"),
    ],
)  # fmt: skip
def test_errors_name_function_argument_expected_and_got(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message
