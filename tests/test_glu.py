"""The GLU family (swiglu, geglu, their fused projections, SwiGLU/GeGLU) against float64 NumPy.

Sizes are odd so the masked tails of the elementwise blocks and of the M/N/K tiles matter.
Gradients are checked against `mx.grad` of the plain-MLX references.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import EMULATORS, to_numpy, tolerance
from mlx_primitives import glu

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
# The gates: "gelu" is geglu's exact form, "gelu_tanh" its tanh approximation.
ACTIVATIONS = ["silu", "gelu", "gelu_tanh"]
_erf = np.vectorize(math.erf)


def rand(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32, scale: float = 1.0
) -> mx.array:
    return mx.array((rng.standard_normal(shape) * scale).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def act64(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "silu":
        return x / (1 + np.exp(-x))
    if activation == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gated(gate: mx.array, up: mx.array, activation: str) -> mx.array:
    if activation == "silu":
        return glu.swiglu(gate, up)
    return glu.geglu(gate, up, approximate="none" if activation == "gelu" else "tanh")


def gated_reference(gate: mx.array, up: mx.array, activation: str) -> mx.array:
    if activation == "silu":
        return glu.swiglu_reference(gate, up)
    return glu.geglu_reference(gate, up, approximate="none" if activation == "gelu" else "tanh")


def fused(activation: str, *args: mx.array | None) -> mx.array:
    if activation == "silu":
        return glu.fused_swiglu(*args)
    return glu.fused_geglu(*args, approximate="none" if activation == "gelu" else "tanh")


def fused_reference(activation: str, *args: mx.array | None) -> mx.array:
    if activation == "silu":
        return glu.fused_swiglu_reference(*args)
    return glu.fused_geglu_reference(*args, approximate="none" if activation == "gelu" else "tanh")


def assert_grads_close(got: tuple[mx.array, ...], want: tuple[mx.array, ...], rtol: float) -> None:
    """Each gradient matches within `rtol` of its largest entry."""
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        w64 = f64(w)
        np.testing.assert_allclose(f64(g), w64, rtol=rtol, atol=rtol * max(1.0, np.abs(w64).max()))


# ---------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 67)])
def test_gated_forward(
    backend: str, rng: np.random.Generator, activation: str, dtype: mx.Dtype, shape: tuple[int, ...]
) -> None:
    gate, up = rand(rng, shape, dtype, 2.0), rand(rng, shape, dtype)
    out = gated(gate, up, activation)
    assert out.shape == shape and out.dtype == dtype
    expected = act64(f64(gate), activation) * f64(up)
    np.testing.assert_allclose(f64(out), expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gated_backward(backend: str, rng: np.random.Generator, activation: str, dtype: mx.Dtype) -> None:
    shape = (7, 131)
    gate, up, weight = rand(rng, shape, dtype, 2.0), rand(rng, shape, dtype), rand(rng, shape, dtype)

    def loss(fn):
        return lambda g, u: (fn(g, u, activation) * weight).astype(mx.float32).sum()

    got = mx.grad(loss(gated), argnums=(0, 1))(gate, up)
    want = mx.grad(loss(gated_reference), argnums=(0, 1))(gate, up)
    assert_grads_close(got, want, rtol=1e-5 if dtype == mx.float32 else 2e-2)


def test_gated_noncontiguous_and_empty(backend: str, rng: np.random.Generator) -> None:
    gate, up = rand(rng, (33, 20)), rand(rng, (20, 33))
    out = glu.swiglu(gate.T, up[:, ::-1])  # views: copied to row-major by the launch
    expected = act64(f64(gate).T, "silu") * f64(up)[:, ::-1]
    np.testing.assert_allclose(f64(out), expected, **tolerance(mx.float32))
    empty = mx.zeros((0, 4))
    assert glu.geglu(empty, empty).shape == (0, 4)


# ---------------------------------------------------------------------------- fused


# (leading shape of x, in_features K, hidden N): odd M, N and K; one token (decode); K past one tile.
FUSED_SHAPES = [((2, 19), 40, 50), ((1,), 70, 33), ((37,), 130, 20)]
# Every activation meets every dtype; the shapes and the bias rotate through those nine cases,
# so each shape meets each dtype at one kernel compile per case.
FUSED_CASES = [
    pytest.param(act, dtype, FUSED_SHAPES[(i + j) % 3], (i + j) % 2 == 1, id=f"{act}-{dtype}-{(i + j) % 3}")
    for i, act in enumerate(ACTIVATIONS)
    for j, dtype in enumerate(FLOAT_DTYPES)
]


@pytest.mark.parametrize("activation, dtype, shape, bias", FUSED_CASES)
def test_fused_forward(
    backend: str,
    rng: np.random.Generator,
    activation: str,
    dtype: mx.Dtype,
    shape: tuple[tuple[int, ...], int, int],
    bias: bool,
) -> None:
    lead, k, n = shape
    x = rand(rng, (*lead, k), dtype)
    w_gate, w_up = rand(rng, (n, k), dtype, k**-0.5), rand(rng, (n, k), dtype, k**-0.5)
    b_gate, b_up = (rand(rng, (n,), dtype), rand(rng, (n,), dtype)) if bias else (None, None)
    out = fused(activation, x, w_gate, w_up, b_gate, b_up)
    assert out.shape == (*lead, n) and out.dtype == dtype
    gate, up = f64(x) @ f64(w_gate).T, f64(x) @ f64(w_up).T
    if bias:
        gate, up = gate + f64(b_gate), up + f64(b_up)
    tol = tolerance(dtype)
    # Float32 accumulation of k products: rounding grows like sqrt(k).
    atol = max(tol["atol"], 1e-6 * math.sqrt(k))
    np.testing.assert_allclose(f64(out), act64(gate, activation) * up, rtol=tol["rtol"], atol=atol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_fused_backward(backend: str, rng: np.random.Generator, activation: str, dtype: mx.Dtype) -> None:
    k, n = 24, 37
    x = rand(rng, (2, 9, k), dtype)
    params = [rand(rng, (n, k), dtype, k**-0.5), rand(rng, (n, k), dtype, k**-0.5)]
    params += [rand(rng, (n,), dtype), rand(rng, (n,), dtype)]
    weight = rand(rng, (2, 9, n), dtype)

    def loss(fn):
        return lambda *args: (fn(activation, *args) * weight).astype(mx.float32).sum()

    argnums = (0, 1, 2, 3, 4)
    got = mx.grad(loss(fused), argnums=argnums)(x, *params)
    want = mx.grad(loss(fused_reference), argnums=argnums)(x, *params)
    assert_grads_close(got, want, rtol=1e-5 if dtype == mx.float32 else 1e-2)


def test_fused_without_bias_backward(backend: str, rng: np.random.Generator) -> None:
    x, w_gate, w_up = rand(rng, (5, 17)), rand(rng, (21, 17)), rand(rng, (21, 17))
    got = mx.grad(lambda *a: glu.fused_swiglu(*a).sum(), argnums=(0, 1, 2))(x, w_gate, w_up)
    want = mx.grad(lambda *a: glu.fused_swiglu_reference(*a).sum(), argnums=(0, 1, 2))(x, w_gate, w_up)
    assert_grads_close(got, want, rtol=1e-5)


def test_writes_every_output(backend: str, rng: np.random.Generator) -> None:
    """The emulators poison outputs and reports any element no thread wrote (ragged tiles)."""
    if backend not in EMULATORS:
        pytest.skip("the unwritten-output check is the emulators'")
    from mtriton import emulator

    x, w_gate, w_up = rand(rng, (3, 7, 45)), rand(rng, (67, 45)), rand(rng, (67, 45))
    with emulator.checks(unwritten=True):
        mx.eval(glu.fused_geglu(x, w_gate, w_up), glu.swiglu(w_gate, w_up))


# ---------------------------------------------------------------------------- modules


@pytest.mark.parametrize("bias", [False, True])
def test_modules(backend: str, rng: np.random.Generator, bias: bool) -> None:
    x = rand(rng, (2, 5, 12))
    swiglu = glu.SwiGLU(12, 40, bias=bias)
    geglu = glu.GeGLU(12, 40, out_features=7, bias=bias, approximate="tanh")
    assert swiglu.down_proj.weight.shape == (12, 40) and geglu.down_proj.weight.shape == (7, 40)
    for module, activation in ((swiglu, "silu"), (geglu, "gelu_tanh")):
        out = module(x)
        gate, up = module.gate_proj(x), module.up_proj(x)
        expected = module.down_proj(gated_reference(gate, up, activation))
        np.testing.assert_allclose(f64(out), f64(expected), rtol=1e-5, atol=1e-5)
        # Every parameter takes part in the forward: each has a nonzero gradient.
        grads = nn.value_and_grad(module, lambda m: (m(x) ** 2).sum())(module)[1]
        names = {name for name, _ in nn.utils.tree_flatten(module.parameters())}
        flat = dict(nn.utils.tree_flatten(grads))
        assert set(flat) == names and len(names) == (6 if bias else 3)
        assert all(mx.abs(g).max().item() > 0 for g in flat.values())


def test_swiglu_trains(backend: str, rng: np.random.Generator) -> None:
    """A residual SwiGLU block fits a random target: the loss falls under plain SGD."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = glu.SwiGLU(16, 32, bias=True)
            self.head = nn.Linear(16, 4)

        def __call__(self, x: mx.array) -> mx.array:
            return self.head(x + self.mlp(x))

    mx.random.seed(int(rng.integers(1 << 31)))
    model = Block()
    x, y = rand(rng, (24, 16)), rand(rng, (24, 4))
    optimizer = optim.SGD(learning_rate=0.05)
    step = nn.value_and_grad(model, lambda m: nn.losses.mse_loss(m(x), y))
    losses = []
    for _ in range(6):
        loss, grads = step(model)
        optimizer.update(model, grads)
        mx.eval(model.parameters())
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


# ---------------------------------------------------------------------------- errors


def test_errors(backend: str) -> None:
    a, b = mx.zeros((4, 7)), mx.zeros((4, 8))
    with pytest.raises(
        ValueError, match=r"^\[swiglu\] up has shape \(4, 8\); expected \(4, 7\) to match gate$"
    ):
        glu.swiglu(a, b)
    with pytest.raises(TypeError, match=r"^\[geglu\] up has dtype float16; expected float32 to match gate$"):
        glu.geglu(a, a.astype(mx.float16))
    with pytest.raises(
        TypeError, match=r"^\[swiglu\] up has dtype int32; supported: float32, float16, bfloat16$"
    ):
        glu.swiglu(a, a.astype(mx.int32))
    with pytest.raises(TypeError, match=r"^\[swiglu\] gate has type list; expected an mx.array$"):
        glu.swiglu([1.0], a)
    with pytest.raises(ValueError, match=r"^\[geglu\] approximate must be 'none' or 'tanh', got 'fast'$"):
        glu.geglu(a, a, approximate="fast")
    with pytest.raises(ValueError, match=r"^\[GeGLU\] approximate must be 'none' or 'tanh', got 'erf'$"):
        glu.GeGLU(4, 8, approximate="erf")

    x, w = mx.zeros((3, 5)), mx.zeros((6, 5))
    with pytest.raises(
        ValueError,
        match=r"^\[fused_swiglu\] w_gate has shape \(6, 4\); expected \(6, 5\) to match x's last axis$",
    ):
        glu.fused_swiglu(x, mx.zeros((6, 4)), w)
    with pytest.raises(
        ValueError, match=r"^\[fused_geglu\] w_up has shape \(7, 5\); expected \(6, 5\) to match w_gate$"
    ):
        glu.fused_geglu(x, w, mx.zeros((7, 5)))
    with pytest.raises(
        TypeError, match=r"^\[fused_swiglu\] w_up has dtype bfloat16; expected float32 to match x$"
    ):
        glu.fused_swiglu(x, w, w.astype(mx.bfloat16))
    with pytest.raises(ValueError, match=r"^\[fused_swiglu\] give both b_gate and b_up or neither$"):
        glu.fused_swiglu(x, w, w, mx.zeros((6,)))
    with pytest.raises(ValueError, match=r"^\[fused_swiglu\] b_up has shape \(5,\); expected \(6,\)$"):
        glu.fused_swiglu(x, w, w, mx.zeros((6,)), mx.zeros((5,)))
