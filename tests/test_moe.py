"""The MoE family on every backend, against float64 NumPy: routing, dispatch, the grouped expert
GEMM (float and MLX-quantized weights, with its gradients), SwitchGLU and SparseMoELayer.

Sizes are small and odd (37 tokens, dim 24, hidden 40, 5 experts, top-2): ragged row tiles,
experts with no tokens, capacity drops. Every buffer the grouped kernels write from scratch
starts as NaN, so a row no program writes shows.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import poisoned, to_numpy, tolerance
from mlx.utils import tree_flatten
from mlx_primitives import moe

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
TOKENS, DIM, HIDDEN, EXPERTS, TOP_K = 37, 24, 40, 5, 2


@pytest.fixture(autouse=True)
def poison_fresh_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moe.grouped, "_new_output", poisoned)


def rand(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32, scale: float = 1.0
) -> mx.array:
    return mx.array((scale * rng.standard_normal(shape)).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def grouped_reference(x: np.ndarray, w: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Row group e times w[e].T; rows past the groups are zeros."""
    out = np.zeros((x.shape[0], w.shape[1]))
    start = 0
    for e, size in enumerate(sizes):
        out[start : start + size] = x[start : start + size] @ w[e].T
        start += size
    return out


def dispatch_reference(experts: np.ndarray, num_experts: int, capacity: int | None) -> dict[str, np.ndarray]:
    """The dispatch by a Python loop over slots in token order."""
    flat = experts.reshape(-1)
    kept: list[list[int]] = [[] for _ in range(num_experts)]
    dropped = []
    for slot, e in enumerate(flat):
        if 0 <= e < num_experts and (capacity is None or len(kept[e]) < capacity):
            kept[e].append(slot)
        else:
            dropped.append(slot)
    order = np.array([s for group in kept for s in group] + dropped, np.int64)
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    is_dropped = np.zeros(flat.size, bool)
    is_dropped[dropped] = True
    counts = np.array([np.sum(flat == e) for e in range(num_experts)])
    return {
        "slot_of_row": order,
        "position": position.reshape(experts.shape),
        "expert_counts": counts,
        "group_sizes": np.array([len(g) for g in kept]),
        "dropped": is_dropped.reshape(experts.shape),
    }


def topk_reference(
    logits: np.ndarray, k: int, scoring: str, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    if scoring == "softmax":
        scores = np.exp(logits - logits.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
    else:
        scores = 1.0 / (1.0 + np.exp(-logits))
    indices = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    weights = np.take_along_axis(scores, indices, -1)
    if normalize:
        weights /= weights.sum(-1, keepdims=True)
    return weights, indices


def moe_reference(
    x: np.ndarray,
    logits: np.ndarray,
    indices: np.ndarray,
    w_gate: np.ndarray,
    w_up: np.ndarray,
    w_down: np.ndarray,
    capacity_factor: float | None,
) -> np.ndarray:
    """A dense loop over experts in float64, routed by the given choices."""
    scores = np.exp(logits - logits.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    weights = np.take_along_axis(scores, indices, -1)
    weights /= weights.sum(-1, keepdims=True)
    e = w_gate.shape[0]
    capacity = None if capacity_factor is None else math.ceil(capacity_factor * indices.size / e)
    keep = ~dispatch_reference(indices, e, capacity)["dropped"]
    out = np.zeros_like(x)
    for expert in range(e):
        hidden = silu(x @ w_gate[expert].T) * (x @ w_up[expert].T)
        y = hidden @ w_down[expert].T
        combine = np.sum(weights * (indices == expert) * keep, axis=1)
        out += combine[:, None] * y
    return out


def layer_weights(layer: moe.SparseMoELayer) -> tuple[np.ndarray, ...]:
    experts = layer.experts
    return tuple(f64(w) for w in (experts.gate_proj.weight, experts.up_proj.weight, experts.down_proj.weight))


# ----------------------------------------------------------------------------- routing


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
@pytest.mark.parametrize("normalize", [True, False])
def test_topk_router_matches_numpy(rng: np.random.Generator, scoring: str, normalize: bool) -> None:
    logits = rand(rng, (TOKENS, 7), scale=2.0)
    weights, indices = moe.topk_router(logits, 3, scoring, normalize)
    assert weights.shape == indices.shape == (TOKENS, 3) and indices.dtype == mx.int32
    expected_w, expected_i = topk_reference(f64(logits), 3, scoring, normalize)
    np.testing.assert_array_equal(to_numpy(indices), expected_i)
    np.testing.assert_allclose(f64(weights), expected_w, rtol=1e-5, atol=1e-6)


def test_topk_router_selection_bias_chooses_but_does_not_weigh(rng: np.random.Generator) -> None:
    logits = rand(rng, (TOKENS, 6))
    bias = mx.array([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])  # expert 1 always chosen
    weights, indices = moe.topk_router(logits, 2, "sigmoid", normalize=False, selection_bias=bias)
    assert (to_numpy(indices)[:, 0] == 1).all()
    scores = 1.0 / (1.0 + np.exp(-f64(logits)))
    np.testing.assert_allclose(f64(weights), np.take_along_axis(scores, to_numpy(indices), -1), rtol=1e-5)


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_topk_router_gradient(rng: np.random.Generator, scoring: str) -> None:
    """d(sum c * weights)/d logits against the same function written with a one-hot mask."""
    logits = rand(rng, (TOKENS, EXPERTS))
    c = rand(rng, (TOKENS, TOP_K))
    _, chosen = moe.topk_router(logits, TOP_K, scoring)
    mask = chosen[..., None] == mx.arange(EXPERTS)  # (T, k, E)

    def routed(lg: mx.array) -> mx.array:
        return mx.sum(c * moe.topk_router(lg, TOP_K, scoring)[0])

    def masked(lg: mx.array) -> mx.array:
        scores = mx.softmax(lg, axis=-1) if scoring == "softmax" else mx.sigmoid(lg)
        w = mx.sum(mask * scores[:, None, :], axis=-1)
        return mx.sum(c * w / mx.sum(w, axis=-1, keepdims=True))

    np.testing.assert_allclose(
        f64(mx.grad(routed)(logits)), f64(mx.grad(masked)(logits)), rtol=1e-5, atol=1e-6
    )


def test_auxiliary_losses(rng: np.random.Generator) -> None:
    logits = rand(rng, (TOKENS, EXPERTS))
    probs = mx.softmax(logits, axis=-1)
    _, indices = moe.topk_router(logits, TOP_K)
    f = np.bincount(to_numpy(indices).reshape(-1), minlength=EXPERTS) / (TOKENS * TOP_K)
    expected = EXPERTS * np.sum(f * f64(probs).mean(0))
    loss = moe.compute_load_balancing_loss(probs, indices, EXPERTS)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    lse = np.log(np.exp(f64(logits)).sum(-1))
    np.testing.assert_allclose(float(moe.router_z_loss(logits)), np.mean(lse**2), rtol=1e-5)
    # the balancing loss's gradient flows through the probabilities only
    grad = mx.grad(lambda p: moe.compute_load_balancing_loss(p, indices, EXPERTS))(probs)
    np.testing.assert_allclose(f64(grad), np.broadcast_to(EXPERTS * f / TOKENS, (TOKENS, EXPERTS)), rtol=1e-5)


# ----------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("capacity_factor", [None, 1.0, 0.6])
def test_dispatch_matches_numpy(
    backend: str, rng: np.random.Generator, capacity_factor: float | None
) -> None:
    # skewed: expert 0 popular, expert 3 never chosen
    experts = rng.choice([0, 0, 0, 1, 2, 4], size=(TOKENS, TOP_K)).astype(np.int32)
    dispatch = moe.build_expert_dispatch(mx.array(experts), EXPERTS, capacity_factor)
    capacity = None if capacity_factor is None else math.ceil(capacity_factor * TOKENS * TOP_K / EXPERTS)
    assert dispatch.capacity == capacity
    expected = dispatch_reference(experts, EXPERTS, capacity)
    for name, value in expected.items():
        np.testing.assert_array_equal(to_numpy(getattr(dispatch, name)), value, err_msg=name)
    sizes = expected["group_sizes"]
    np.testing.assert_array_equal(to_numpy(dispatch.expert_offsets), np.concatenate([[0], np.cumsum(sizes)]))
    order = expected["slot_of_row"]
    kept_rows = np.arange(order.size) < sizes.sum()
    np.testing.assert_array_equal(
        to_numpy(dispatch.token_of_row), np.where(kept_rows, order // TOP_K, TOKENS)
    )
    np.testing.assert_array_equal(
        to_numpy(dispatch.expert_of_row), np.where(kept_rows, experts.reshape(-1)[order], EXPERTS)
    )
    weights = rand(rng, (TOKENS, TOP_K))
    combine = np.where(expected["dropped"].reshape(-1), 0.0, f64(weights).reshape(-1))[order]
    np.testing.assert_array_equal(f64(dispatch.combine_weights(weights)), combine)


def test_dispatch_unchecked_out_of_range_slots_are_dropped(backend: str) -> None:
    experts = np.array([[0, 7], [-1, 2], [2, 0]], np.int32)
    dispatch = moe.build_expert_dispatch(mx.array(experts), 3, checked=False)
    expected = dispatch_reference(experts, 3, None)
    for name, value in expected.items():
        np.testing.assert_array_equal(to_numpy(getattr(dispatch, name)), value, err_msg=name)


# ----------------------------------------------------------------------------- grouped GEMM


def _sizes(rng: np.random.Generator, rows: int, tail: int) -> list[int]:
    """Group sizes over `rows - tail` rows with an empty expert (index 1) and a single-row one."""
    sizes = [0, 0, 1, 0, 0]
    left = rows - tail - 1
    cuts = np.sort(rng.integers(0, left + 1, 2))
    sizes[0], sizes[3], sizes[4] = int(cuts[0]), int(cuts[1] - cuts[0]), int(left - cuts[1])
    return sizes


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_grouped_matmul_matches_numpy(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    m = 2 * TOKENS  # 74 rows: 5 dropped at the end
    x, w = rand(rng, (m, DIM), dtype), rand(rng, (EXPERTS, HIDDEN, DIM), dtype, scale=0.3)
    sizes = _sizes(rng, m, tail=5)
    y = moe.grouped_matmul(x, w, mx.array(sizes, mx.int32))
    assert y.shape == (m, HIDDEN) and y.dtype == dtype
    np.testing.assert_allclose(f64(y), grouped_reference(f64(x), f64(w), sizes), **tolerance(dtype))
    assert not to_numpy(y)[m - 5 :].any()  # rows outside every group are zeros


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_grouped_matmul_gradients(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    m = 2 * TOKENS
    x, w = rand(rng, (m, DIM), dtype), rand(rng, (EXPERTS, HIDDEN, DIM), dtype, scale=0.3)
    sizes = _sizes(rng, m, tail=3)
    dy = rand(rng, (m, HIDDEN), dtype)
    _, (dx, dw) = mx.vjp(lambda a, b: moe.grouped_matmul(a, b, mx.array(sizes, mx.int32)), [x, w], [dy])
    assert dx.dtype == dw.dtype == dtype
    dy64, x64, w64 = f64(dy), f64(x), f64(w)
    expected_dx, expected_dw = np.zeros_like(x64), np.zeros_like(w64)
    start = 0
    for e, size in enumerate(sizes):
        rows = slice(start, start + size)
        expected_dx[rows] = dy64[rows] @ w64[e]
        expected_dw[e] = dy64[rows].T @ x64[rows]
        start += size
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(dx), expected_dx, rtol=tol["rtol"], atol=tol["atol"] * 4)
    np.testing.assert_allclose(f64(dw), expected_dw, rtol=tol["rtol"], atol=tol["atol"] * 8)


@pytest.mark.parametrize("bits", [4, 8])
def test_grouped_matmul_mlx_quantized(backend: str, rng: np.random.Generator, bits: int) -> None:
    m, k = TOKENS, 128  # two quantization groups of 64 per row
    x = rand(rng, (m, k), mx.float16)
    w_q, scales, biases = mx.quantize(rand(rng, (EXPERTS, HIDDEN, k)), 64, bits)
    w = f64(mx.dequantize(w_q, scales, biases, 64, bits))
    sizes = _sizes(rng, m, tail=2)
    group_sizes = mx.array(sizes, mx.int32)

    def run(a: mx.array) -> mx.array:
        return moe.grouped_matmul(a, w_q, group_sizes, scales=scales, biases=biases, group_size=64, bits=bits)

    y = run(x)
    assert y.dtype == mx.float16
    expected = grouped_reference(f64(x), w, sizes)
    np.testing.assert_allclose(f64(y), expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
    dy = rand(rng, (m, HIDDEN), mx.float16)
    (dx,) = mx.vjp(run, [x], [dy])[1]
    expected_dx = np.zeros((m, k))
    start = 0
    for e, size in enumerate(sizes):
        expected_dx[start : start + size] = f64(dy)[start : start + size] @ w[e]
        start += size
    np.testing.assert_allclose(f64(dx), expected_dx, rtol=2e-3, atol=2e-3 * np.abs(expected_dx).max())


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "capacity_factor, dtype",
    [(None, mx.float32), (0.5, mx.bfloat16)],
)
def test_sparse_moe_layer_matches_numpy(
    backend: str, rng: np.random.Generator, capacity_factor: float | None, dtype: mx.Dtype
) -> None:
    layer = moe.SparseMoELayer(DIM, HIDDEN, EXPERTS, TOP_K, capacity_factor=capacity_factor)
    router = f64(layer.router.weight)
    # feature 0 is 3 everywhere and weighs only on expert 3's logit, -30: no token chooses it
    router[:, 0] = 0.0
    router[3, 0] = -10.0
    layer.router.weight = mx.array(router.astype(np.float32))
    layer.set_dtype(dtype)
    x = f64(rand(rng, (TOKENS, DIM)))
    x[:, 0] = 3.0
    x = mx.array(x.astype(np.float32)).astype(dtype)
    out, logits, indices = layer(x, return_router=True)
    assert out.shape == x.shape and out.dtype == dtype
    assert 3 not in to_numpy(indices)
    logits64 = f64(logits)
    if dtype == mx.float32:  # float32 logits choose as float64 ones do (no near ties here)
        np.testing.assert_array_equal(
            to_numpy(indices), topk_reference(f64(x) @ router.T, TOP_K, "softmax", True)[1]
        )
    expected = moe_reference(f64(x), logits64, to_numpy(indices), *layer_weights(layer), capacity_factor)
    tol = tolerance(dtype)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(f64(out), expected, rtol=tol["rtol"] * 4, atol=tol["atol"] * 4 * scale)


def test_sparse_moe_layer_edges(backend: str, rng: np.random.Generator) -> None:
    """No tokens at all; and every expert chosen by every token (k = E) with capacity for half."""
    empty = moe.SparseMoELayer(DIM, HIDDEN, EXPERTS, TOP_K, capacity_factor=1.0)
    x0 = mx.zeros((0, DIM))
    assert empty(x0).shape == (0, DIM)
    grads = mx.grad(lambda p: (empty.update(p), mx.sum(empty(x0)))[1])(empty.trainable_parameters())
    assert all(not to_numpy(g).any() for _, g in tree_flatten(grads))
    layer = moe.SparseMoELayer(DIM, HIDDEN, 4, 4, capacity_factor=0.5)
    x = rand(rng, (5, DIM))
    out, logits, indices = layer(x, return_router=True)
    expected = moe_reference(f64(x), f64(logits), to_numpy(indices), *layer_weights(layer), 0.5)
    np.testing.assert_allclose(f64(out), expected, rtol=1e-5, atol=1e-5)


def test_sparse_moe_layer_gradients(backend: str, rng: np.random.Generator) -> None:
    """Router, expert and input gradients; capacity 0.8 drops some slots of the fuller experts."""
    capacity_factor = 0.8
    layer = moe.SparseMoELayer(DIM, HIDDEN, EXPERTS, TOP_K, capacity_factor=capacity_factor)
    x = rand(rng, (TOKENS, DIM))
    c = rand(rng, (TOKENS, DIM))

    def loss(params: dict, inputs: mx.array) -> mx.array:
        layer.update(params)
        return mx.sum(c * layer(inputs))

    def reference(params: dict, inputs: mx.array) -> mx.array:
        experts = params["experts"]
        out = moe.sparse_moe_reference(
            inputs, params["router"]["weight"], experts["gate_proj"]["weight"], experts["up_proj"]["weight"],
            experts["down_proj"]["weight"], TOP_K, capacity_factor,
        )  # fmt: skip
        return mx.sum(c * out)

    params = layer.trainable_parameters()
    got = mx.grad(loss, argnums=(0, 1))(params, x)
    want = mx.grad(reference, argnums=(0, 1))(params, x)
    for (name, a), (_, b) in zip(tree_flatten(got), tree_flatten(want)):
        np.testing.assert_allclose(f64(a), f64(b), rtol=1e-4, atol=1e-5, err_msg=name)


def test_switch_glu_matches_gather_mm(backend: str, rng: np.random.Generator) -> None:
    """The call of mlx-lm's SwitchGLU, against its mx.gather_mm form; leading axes (3, 5)."""
    layer = moe.SwitchGLU(DIM, HIDDEN, EXPERTS)
    x = rand(rng, (3, 5, DIM))
    indices = mx.array(rng.integers(0, EXPERTS, (3, 5, TOP_K)).astype(np.int32))
    out = layer(x, indices)
    assert out.shape == (3, 5, TOP_K, DIM)
    weights = [layer[name].weight for name in ("gate_proj", "up_proj", "down_proj")]
    expected = moe.switch_glu_reference(x, indices, *weights)
    np.testing.assert_allclose(f64(out), f64(expected), rtol=1e-5, atol=1e-5)


def test_switch_glu_is_a_drop_in_for_mlx_lm(backend: str, rng: np.random.Generator) -> None:
    """mlx-lm's SwitchGLU weights load into ours by name and give the same outputs, float (with
    biases) and after `nn.quantize` of both (mlx-lm's gather_qmm against the grouped kernel)."""
    switch_layers = pytest.importorskip("mlx_lm.models.switch_layers")
    dim, tokens = 64, 40  # 80 slots: mlx-lm sorts them (from 64 on); 64 = one quantization group
    theirs = switch_layers.SwitchGLU(dim, HIDDEN, EXPERTS, bias=True)
    projections = ("gate_proj", "up_proj", "down_proj")
    theirs.update(
        {name: {"bias": rand(rng, (EXPERTS, theirs[name].weight.shape[1]))} for name in projections}
    )
    ours = moe.SwitchGLU(dim, HIDDEN, EXPERTS, bias=True)
    ours.load_weights(tree_flatten(theirs.parameters()), strict=True)
    x = rand(rng, (tokens, dim))
    indices = mx.array(rng.integers(0, EXPERTS, (tokens, TOP_K)).astype(np.int32))
    np.testing.assert_allclose(f64(ours(x, indices)), f64(theirs(x, indices)), rtol=1e-5, atol=1e-5)
    # quantized: only the (dim -> hidden) projections, whose inputs are whole groups of 64
    predicate = lambda path, module: path != "down_proj" and hasattr(module, "to_quantized")  # noqa: E731
    nn.quantize(theirs, group_size=64, bits=4, class_predicate=predicate)
    nn.quantize(ours, group_size=64, bits=4, class_predicate=predicate)
    ours.load_weights(tree_flatten(theirs.parameters()), strict=True)
    np.testing.assert_allclose(f64(ours(x, indices)), f64(theirs(x, indices)), rtol=1e-4, atol=1e-4)


def test_quantized_switch_glu(backend: str, rng: np.random.Generator) -> None:
    """`nn.quantize` swaps each SwitchLinear for its quantized form, as for mlx-lm's."""
    dim = 64
    layer = moe.SwitchGLU(dim, 64, EXPERTS)
    float_weights = [layer[name].weight for name in ("gate_proj", "up_proj", "down_proj")]
    nn.quantize(layer, group_size=64, bits=4)
    assert (
        isinstance(layer.gate_proj, moe.QuantizedSwitchLinear) and layer.gate_proj.weight.dtype == mx.uint32
    )
    dequantized = [
        mx.dequantize(layer[name].weight, layer[name].scales, layer[name].biases, 64, 4)
        for name in ("gate_proj", "up_proj", "down_proj")
    ]
    x = rand(rng, (9, dim))
    indices = mx.array(rng.integers(0, EXPERTS, (9, TOP_K)).astype(np.int32))
    np.testing.assert_allclose(
        f64(layer(x, indices)), f64(moe.switch_glu_reference(x, indices, *dequantized)), rtol=1e-4, atol=1e-5
    )
    assert all(w.dtype == mx.float32 for w in float_weights)


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_argument(rng: np.random.Generator) -> None:
    logits = rand(rng, (4, EXPERTS))
    with pytest.raises(
        ValueError, match=r"\[topk_router\] top_k must be an int in \[1, num_experts = 5\]; got 6"
    ):
        moe.topk_router(logits, 6)
    with pytest.raises(ValueError, match=r"\[topk_router\] scoring must be"):
        moe.topk_router(logits, 2, scoring="relu")
    with pytest.raises(ValueError, match=r"\[SparseMoELayer\] top_k"):
        moe.SparseMoELayer(DIM, HIDDEN, 4, 5)
    bad = mx.array([[0, 1], [2, 9]], mx.int32)
    with pytest.raises(
        IndexError, match=r"\[build_expert_dispatch\] expert_indices\[1, 1\] = 9 is out of range"
    ):
        moe.build_expert_dispatch(bad, 5)
    with pytest.raises(ValueError, match=r"\[build_expert_dispatch\] top_k"):
        moe.build_expert_dispatch(mx.zeros((3, 4), mx.int32), 3)
    with pytest.raises(TypeError, match=r"\[build_expert_dispatch\] expert_indices has dtype float32"):
        moe.build_expert_dispatch(mx.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match=r"\[build_expert_dispatch\] capacity_factor must be positive"):
        moe.build_expert_dispatch(mx.zeros((3, 2), mx.int32), 3, capacity_factor=0.0)
    x, w, sizes = rand(rng, (6, 8)), rand(rng, (3, 4, 8)), mx.array([2, 2, 2], mx.int32)
    with pytest.raises(
        ValueError, match=r"\[grouped_matmul\] weight has shape \(3, 4, 7\); expected in_features 8"
    ):
        moe.grouped_matmul(x, rand(rng, (3, 4, 7)), sizes)
    with pytest.raises(ValueError, match=r"\[grouped_matmul\] group_sizes has shape \(2,\); expected \(3,\)"):
        moe.grouped_matmul(x, w, mx.array([3, 3], mx.int32))
    with pytest.raises(TypeError, match=r"\[grouped_matmul\] weight has dtype float16; supported: float32"):
        moe.grouped_matmul(x, w.astype(mx.float16), sizes)
    with pytest.raises(ValueError, match=r"\[grouped_matmul\] give both scales and biases"):
        moe.grouped_matmul(x, w, sizes, scales=mx.ones((3, 4, 1)))
    with pytest.raises(
        ValueError, match=r"\[SwitchGLU\] indices has shape \(5, 2\); expected \(6,\) \+ \(k,\)"
    ):
        moe.SwitchGLU(8, 4, 3)(x, mx.zeros((5, 2), mx.int32))
