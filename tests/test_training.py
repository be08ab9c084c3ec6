"""Gradient checkpointing (primitives/training.py) and the attention modules' checkpoint=."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx_primitives.attention as attention
import numpy as np
import pytest
from conftest import to_numpy
from mlx.utils import tree_flatten
from mlx_primitives.training import checkpoint, checkpoint_sequential

import mtriton
from benchmarks.suites.training import GatedBlock


class Stack(nn.Module):
    def __init__(self, width: int, mode: str = "plain") -> None:
        super().__init__()
        self.layers = [GatedBlock(width) for _ in range(8)]
        self.mode = mode

    def __call__(self, x: mx.array) -> mx.array:
        if self.mode == "sequential":
            return checkpoint_sequential(self.layers, 8, x)
        for layer in self.layers:
            x = checkpoint(layer)(x) if self.mode == "each" else layer(x)
        return x


def _grads_and_peak(model: Stack, x: mx.array) -> tuple[float, dict[str, mx.array], int]:
    step = nn.value_and_grad(model, lambda m, x: (m(x) ** 2).mean())
    mx.eval(x, model.parameters())
    mx.synchronize()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    loss, grads = step(model, x)
    mx.eval(loss, grads)
    return loss.item(), dict(tree_flatten(grads)), mx.get_peak_memory() - base


@pytest.mark.parametrize("mode", ["each", "sequential"])
def test_checkpoint_saves_memory_with_identical_gradients(cpu_stream: None, mode: str) -> None:
    # 1,024 rows of 64: activations (~5 MB a layer) dwarf the parameters (~0.2 MB a layer).
    mx.random.seed(1)
    model = Stack(64)
    x = mx.random.normal((1024, 64))
    plain_loss, plain_grads, plain_peak = _grads_and_peak(model, x)
    model.mode = mode
    loss, grads, peak = _grads_and_peak(model, x)
    assert loss == plain_loss
    assert plain_grads.keys() == grads.keys()
    for name, g in plain_grads.items():
        np.testing.assert_array_equal(to_numpy(grads[name]), to_numpy(g), err_msg=name)
    saving = 1 - peak / plain_peak
    assert saving >= 0.4, (
        f"peak {peak / 1e6:.1f} MB against {plain_peak / 1e6:.1f} MB plain: saved {saving:.0%}"
    )


def test_checkpointed_function_reruns_in_backward() -> None:
    calls = []

    def f(x: mx.array, w: mx.array) -> mx.array:
        calls.append(1)
        return mx.sin(x * w).sum()

    x, w = mx.array([0.5, 1.5, -2.0]), mx.array(1.25)
    plain = mx.grad(f, argnums=(0, 1))(x, w)
    assert len(calls) == 1
    calls.clear()
    ck = mx.grad(checkpoint(f), argnums=(0, 1))(x, w)
    mx.eval(ck)
    assert len(calls) == 2, "a checkpoint reruns its function in the backward pass"
    for a, b in zip(plain, ck):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    expected = np.cos(1.25 * np.array([0.5, 1.5, -2.0]))
    np.testing.assert_allclose(np.array(ck[0]), 1.25 * expected, rtol=1e-6)


def test_checkpoint_sequential_segments() -> None:
    """Layers of every segment but the last run twice under grad; the result is the plain one."""
    calls: list[int] = []

    def layer(i: int):
        def run(x: mx.array) -> mx.array:
            calls.append(i)
            return mx.tanh(x * (1 + 0.1 * i))

        return run

    layers = [layer(i) for i in range(7)]
    x = mx.linspace(-1, 1, 9)

    def loss(x: mx.array, segments: int | None) -> mx.array:
        if segments is None:
            for f in layers:
                x = f(x)
            return x.sum()
        return checkpoint_sequential(layers, segments, x).sum()

    plain = mx.grad(lambda x: loss(x, None))(x)
    calls.clear()
    ck = mx.grad(lambda x: loss(x, 3))(x)  # segments of 3, 2 and 2 layers
    mx.eval(ck)
    assert sorted(calls) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]
    np.testing.assert_array_equal(np.array(ck), np.array(plain))
    whole = checkpoint_sequential(nn.Sequential(*layers), 1, x).sum()
    np.testing.assert_array_equal(np.array(whole), np.array(loss(x, None)))


def test_bad_input() -> None:
    x = mx.zeros((2,))
    with pytest.raises(
        ValueError,
        match=r"\[checkpoint_sequential\] segments must be an int from 1 to len\(layers\) = 2, got 3",
    ):
        checkpoint_sequential([mx.tanh, mx.tanh], 3, x)
    with pytest.raises(ValueError, match="segments must be"):
        checkpoint_sequential([mx.tanh], 0, x)
    with pytest.raises(ValueError, match="segments must be"):
        checkpoint_sequential([mx.tanh], True, x)
    with pytest.raises(TypeError, match=r"\[checkpoint_sequential\] layers must be a non-empty sequence"):
        checkpoint_sequential([], 1, x)
    with pytest.raises(TypeError, match=r"layers\[1\] is not"):
        checkpoint_sequential([mx.tanh, 3], 1, x)
    with pytest.raises(TypeError, match=r"\[checkpoint_sequential\] x must be an mx.array, got list"):
        checkpoint_sequential([mx.tanh], 1, [1.0])
    with pytest.raises(TypeError, match=r"\[checkpoint\] fn must be callable .*, got int"):
        checkpoint(3)


def _attention_grads(layer: nn.Module, q: mx.array, k: mx.array, v: mx.array) -> tuple[mx.array, ...]:
    return mx.grad(lambda q, k, v: (layer(q, k, v) ** 2).sum(), argnums=(0, 1, 2))(q, k, v)


def test_flash_attention_module_checkpoint(backend: str, rng: np.random.Generator, monkeypatch) -> None:
    q, k, v = (mx.array(rng.standard_normal((1, 12, 2, 32)).astype(np.float32)) for _ in range(3))
    plain = _attention_grads(attention.FlashAttention(2, 32, causal=True), q, k, v)
    calls = []
    forward = attention.flash_attention
    monkeypatch.setattr(attention, "flash_attention", lambda *a, **kw: calls.append(1) or forward(*a, **kw))
    ck = _attention_grads(attention.FlashAttention(2, 32, causal=True, checkpoint=True), q, k, v)
    mx.eval(ck)
    assert len(calls) == 2, "the forward kernel reruns in the backward pass"
    for a, b in zip(plain, ck):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_checkpointed_dropout_drops_the_same_elements(rng: np.random.Generator) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = (mx.array(rng.standard_normal((1, 8, 2, 32)).astype(np.float32)) for _ in range(3))
        grads = []
        for ck in (False, True):
            layer = attention.FlashAttention(2, 32, dropout_p=0.3, checkpoint=ck)
            mx.random.seed(5)
            grads.append(_attention_grads(layer, q, k, v))
        for a, b in zip(*grads):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    finally:
        mtriton.set_backend(None)


def test_window_and_cross_attention_modules_take_checkpoint(rng: np.random.Generator) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = (mx.array(rng.standard_normal((1, 8, 2, 32)).astype(np.float32)) for _ in range(3))
        for make in (
            lambda ck: attention.SlidingWindowAttention(2, 32, window_size=4, checkpoint=ck),
            lambda ck: attention.ChunkedCrossAttention(2, 32, chunk_size=4, checkpoint=ck),
        ):
            plain, ck = _attention_grads(make(False), q, k, v), _attention_grads(make(True), q, k, v)
            for a, b in zip(plain, ck):
                np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    finally:
        mtriton.set_backend(None)


def test_moe_and_mamba_modules_take_checkpoint(rng: np.random.Generator, monkeypatch) -> None:
    """checkpoint=True on SparseMoELayer and MambaBlock: the same parameter gradients, and the
    block's forward runs again in the backward pass."""
    import mlx_primitives.moe as moe
    import mlx_primitives.ssm as ssm

    mtriton.set_backend("interpreter")
    try:
        x = mx.array(rng.standard_normal((2, 9, 16)).astype(np.float32))
        cases = [
            (
                moe,
                "topk_router",
                lambda ck: moe.SparseMoELayer(16, 24, num_experts=4, top_k=2, checkpoint=ck),
            ),
            (ssm, "selective_scan", lambda ck: ssm.MambaBlock(16, d_state=4, checkpoint=ck)),
        ]
        for module, inner, make in cases:
            calls = []
            original = getattr(module, inner)
            counted = lambda *a, calls=calls, original=original, **kw: calls.append(1) or original(*a, **kw)
            monkeypatch.setattr(module, inner, counted)
            grads = []
            for ck in (False, True):
                mx.random.seed(11)
                layer = make(ck)
                grads.append(
                    dict(tree_flatten(nn.value_and_grad(layer, lambda m, x: (m(x) ** 2).sum())(layer, x)[1]))
                )
                mx.eval(grads[-1])
            assert len(calls) == 3, f"{inner}: once plain, twice checkpointed (the rerun)"
            for name, plain in grads[0].items():
                np.testing.assert_allclose(to_numpy(plain), to_numpy(grads[1][name]), rtol=1e-5, atol=1e-6)
    finally:
        mtriton.set_backend(None)
