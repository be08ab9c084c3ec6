"""Suite `scan_moe`: the MoE experts and layer against the same blocks on `mx.gather_mm`.

* `switch_glu`: the expert part, `SwitchGLU(x, indices)` (dispatch, grouped gate/up/down GEMMs,
  SwiGLU, gather back to slot order), against mlx-lm's SwitchGLU as MLX runs it: the slots sorted
  by expert, `mx.gather_mm(..., sorted_indices=True)` for each projection, then unsorted.
* `switch_glu_mlx4`: the same on `mx.quantize`d experts (4 bits, groups of 64), against mlx-lm's
  quantized SwitchGLU on `mx.gather_qmm`.
* `sparse_moe`: the whole `SparseMoELayer` (router, top-k, dispatch, experts, weighted
  deterministic combine) against the same layer with the gather_mm SwitchGLU and a weighted sum.

GPU sizes are Mixtral's (dim 4096, hidden 14336, 8 experts, top-2, bfloat16) at prefill (4096
tokens) and decode (8 tokens); CPU sizes are small. FLOPs are the expert GEMMs' (2 * slots * 3 *
dim * hidden; the router adds 2 * tokens * dim * E); bytes are the weights of the experts the
routing touches, read once, the tokens in and the outputs out. The float64 reference runs on
every size through a sample of tokens (their experts' weights only), which is also the GPU
tier's fast reference: a full float64 check at Mixtral's size is 1.4e12 multiply-adds.

Each case's `kernels` is this module; the layers wrap `mx.custom_function`s, so there is no
Triton twin to run.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_primitives.moe import SparseMoELayer, SwitchGLU, topk_router

from ..registry import Case, SampledReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, host

# Tokens a sampled check computes in float64.
SAMPLED_TOKENS = 16
# One rounding of the output dtype (as tests/conftest.py); the expert MLP also rounds its hidden
# layer, whose errors average out over the down projection's sum.
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
MIXTRAL = {"dim": 4096, "hidden": 14336, "experts": 8, "top_k": 2, "dtype": "bfloat16"}
SIZES = Sizes(
    smoke={"tokens": 37, "dim": 24, "hidden": 40, "experts": 5, "top_k": 2},
    cpu=(
        {"tokens": 128, "dim": 256, "hidden": 512, "experts": 8, "top_k": 2},
        {"tokens": 8, "dim": 256, "hidden": 512, "experts": 8, "top_k": 2},
    ),
    gpu=({"tokens": 4096, **MIXTRAL}, {"tokens": 8, **MIXTRAL}),
)


# Quantized entries: every projection's inputs must be whole groups of 64.
QUANT_GROUP = 64
QUANT_SIZES = Sizes(
    smoke={"tokens": 37, "dim": 64, "hidden": 128, "experts": 5, "top_k": 2},
    cpu=SIZES.cpu,
    gpu=SIZES.gpu,
)
PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def _sorted_slots(indices: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """mlx-lm's `_gather_sort`: the slot order sorted by expert, its inverse, the sorted experts."""
    flat = indices.reshape(-1)
    order = mx.argsort(flat)
    return order, mx.argsort(order), flat[order]


def _gather_mm_switch_glu(x: mx.array, indices: mx.array, layer: SwitchGLU) -> mx.array:
    """mlx-lm's SwitchGLU on mx.gather_mm with sorted indices: (tokens, k, dim)."""
    order, inverse, experts = _sorted_slots(indices)
    rows = mx.expand_dims(x, -2)[order // indices.shape[-1]]  # (slots, 1, dim)

    def project(h: mx.array, name: str) -> mx.array:
        return mx.gather_mm(h, layer[name].weight.swapaxes(-1, -2), rhs_indices=experts, sorted_indices=True)

    out = project(nn.silu(project(rows, "gate_proj")) * project(rows, "up_proj"), "down_proj")[:, 0, :]
    return out[inverse].reshape(*indices.shape, -1)


def _gather_qmm_switch_glu(x: mx.array, indices: mx.array, layer: SwitchGLU) -> mx.array:
    """mlx-lm's quantized SwitchGLU: mx.gather_qmm with sorted indices, (tokens, k, dim)."""
    order, inverse, experts = _sorted_slots(indices)
    rows = mx.expand_dims(x, -2)[order // indices.shape[-1]]

    def project(h: mx.array, name: str) -> mx.array:
        p = layer[name]
        return mx.gather_qmm(
            h, p.weight, p.scales, p.biases, rhs_indices=experts, transpose=True,
            group_size=p.group_size, bits=p.bits, sorted_indices=True,
        )  # fmt: skip

    out = project(nn.silu(project(rows, "gate_proj")) * project(rows, "up_proj"), "down_proj")[:, 0, :]
    return out[inverse].reshape(*indices.shape, -1)


def _gather_mm_moe(x: mx.array, layer: SparseMoELayer) -> mx.array:
    """SparseMoELayer with the gather_mm SwitchGLU and a weighted sum over the k choices."""
    weights, indices = topk_router(layer.router(x), layer.top_k)
    out = _gather_mm_switch_glu(x, indices, layer.experts)
    return mx.sum(out * weights[..., None], axis=1)


def _expert_weight(layer: SwitchGLU, name: str, expert: int) -> np.ndarray:
    """One expert's float64 weight of projection `name`, dequantized in float32 as the kernel
    does when the layer holds MLX-quantized weights."""
    proj = layer[name]
    if "scales" not in proj:
        return host(proj.weight[expert])
    scales, biases = (proj[p][expert].astype(mx.float32) for p in ("scales", "biases"))
    return host(mx.dequantize(proj.weight[expert], scales, biases, proj.group_size, proj.bits))


def _experts_reference(
    x: np.ndarray, indices: np.ndarray, weights: np.ndarray | None, layer: SwitchGLU
) -> np.ndarray:
    """float64 expert outputs (tokens, k, dim), or their weighted sum (tokens, dim), reading only
    the experts that `indices` names."""
    out = np.zeros((*indices.shape, x.shape[-1]))
    for expert in np.unique(indices):
        gate, up, down = (_expert_weight(layer, name, int(expert)) for name in PROJECTIONS)
        tokens, slots = np.nonzero(indices == expert)
        h = x[tokens] @ gate.T
        out[tokens, slots] = ((h / (1.0 + np.exp(-h))) * (x[tokens] @ up.T)) @ down.T
    return out if weights is None else np.sum(out * weights[..., None], axis=1)


def _setup(tokens: int, dim: int, hidden: int, experts: int, top_k: int, dtype: str) -> tuple[Any, ...]:
    """A SparseMoELayer with weights as nn.Linear initialises them, tokens and their routing."""
    inputs = _inputs.Inputs()
    layer = SparseMoELayer(dim, hidden, experts, top_k)
    bound = {dim: 1 / math.sqrt(dim), hidden: 1 / math.sqrt(hidden)}
    layer.router.weight = inputs.uniform((experts, dim), -bound[dim], bound[dim])
    for name, (out, inp) in {
        "gate_proj": (hidden, dim),
        "up_proj": (hidden, dim),
        "down_proj": (dim, hidden),
    }.items():
        layer.experts[name].weight = inputs.uniform((experts, out, inp), -bound[inp], bound[inp])
    layer.set_dtype(getattr(mx, dtype))
    x = inputs.normal((tokens, dim), dtype)
    logits = layer.router(x)
    weights, indices = topk_router(logits, top_k)
    mx.eval(layer.parameters(), x, logits, weights, indices)
    return layer, x, logits, weights, indices


def _case_costs(x: mx.array, indices: mx.array, dim: int, hidden: int, experts_bytes: int) -> tuple[int, int]:
    touched = int(np.unique(np.array(indices)).size)
    slots = indices.size
    return touched * experts_bytes + 2 * x.nbytes + slots * dim * x.itemsize, 2 * slots * 3 * dim * hidden


def _sample(tokens: int) -> np.ndarray:
    return _inputs.spread_indices(tokens, SAMPLED_TOKENS)


def _switch_case(
    tokens: int, dim: int, hidden: int, experts: int, top_k: int, dtype: str, quantized: bool
) -> Case:
    """(tokens, k, dim) outputs of each token's k experts, unweighted; with `quantized`, the
    experts' weights `mx.quantize`d (4 bits, groups of 64) on both sides."""
    layer, x, _, _, indices = _setup(tokens, dim, hidden, experts, top_k, dtype)
    switch = layer.experts
    if quantized:
        nn.quantize(switch, group_size=QUANT_GROUP, bits=4)
        mx.eval(switch.parameters())
        builtin = lambda: _gather_qmm_switch_glu(x, indices, switch)  # noqa: E731
        experts_bytes = sum(
            switch[n][p][0].nbytes for n in PROJECTIONS for p in ("weight", "scales", "biases")
        )
    else:
        builtin = lambda: _gather_mm_switch_glu(x, indices, switch)  # noqa: E731
        experts_bytes = 3 * dim * hidden * x.itemsize
    sample = _sample(tokens)
    nbytes, flops = _case_costs(x, indices, dim, hidden, experts_bytes)
    tol = TOLERANCE[dtype]

    def sampled() -> np.ndarray:
        return _experts_reference(host(x)[sample], np.array(indices)[sample], None, switch)

    return Case(
        label=f"T{tokens} D{dim} H{hidden} E{experts} k{top_k} {SHORT_DTYPE[dtype]}"
        + (" q4" if quantized else ""),
        kernels=sys.modules[__name__],
        buffers={"x": x, "indices": indices},
        launch=lambda api, b: switch(b["x"], b["indices"]),
        builtin=builtin,
        reference=lambda: _experts_reference(host(x), np.array(indices), None, switch),
        bytes=nbytes,
        flops=flops,
        rtol=2 * tol,
        atol=max(tol / 2, 1e-4),
        fast_reference=SampledReference(
            select=lambda out: _inputs.take(out, sample, axis=0),
            run=sampled,
            what=f"{sample.size} of {tokens} tokens (first, last, the rest at random)",
        ),
    )


@benchmark(
    suite="scan_moe",
    name="switch_glu",
    bound="compute",
    builtin="SwitchGLU on mx.gather_mm (sorted)",
    sizes=SIZES,
)
def switch_glu(tokens: int, dim: int, hidden: int, experts: int, top_k: int, dtype: str = "float32") -> Case:
    """The expert part on float weights."""
    return _switch_case(tokens, dim, hidden, experts, top_k, dtype, quantized=False)


@benchmark(
    suite="scan_moe",
    name="switch_glu_mlx4",
    bound="compute",
    builtin="SwitchGLU on mx.gather_qmm (sorted)",
    sizes=QUANT_SIZES,
)
def switch_glu_mlx4(
    tokens: int, dim: int, hidden: int, experts: int, top_k: int, dtype: str = "float32"
) -> Case:
    """The expert part on MLX's 4-bit weights, dequantized inside the grouped kernel."""
    return _switch_case(tokens, dim, hidden, experts, top_k, dtype, quantized=True)


@benchmark(
    suite="scan_moe",
    name="sparse_moe",
    bound="compute",
    builtin="router + top-k + gather_mm SwitchGLU + weighted sum",
    sizes=SIZES,
)
def sparse_moe(tokens: int, dim: int, hidden: int, experts: int, top_k: int, dtype: str = "float32") -> Case:
    """The whole layer: router, top-k, dispatch, experts and the deterministic weighted combine.

    The reference takes the routing (indices and weights) from the float32 router the layer
    runs, so that a near tie between two experts cannot make the check compare different choices.
    """
    layer, x, _, weights, indices = _setup(tokens, dim, hidden, experts, top_k, dtype)
    sample = _sample(tokens)
    experts_bytes = 3 * dim * hidden * x.itemsize
    nbytes, flops = _case_costs(x, indices, dim, hidden, experts_bytes)
    nbytes += layer.router.weight.nbytes
    tol = TOLERANCE[dtype]

    def reference(rows: np.ndarray | slice) -> np.ndarray:
        return _experts_reference(host(x)[rows], np.array(indices)[rows], host(weights)[rows], layer.experts)

    return Case(
        label=f"T{tokens} D{dim} H{hidden} E{experts} k{top_k} {SHORT_DTYPE[dtype]}",
        kernels=sys.modules[__name__],
        buffers={"x": x},
        launch=lambda api, b: layer(b["x"]),
        builtin=lambda: _gather_mm_moe(x, layer),
        reference=lambda: reference(slice(None)),
        bytes=nbytes,
        flops=flops + 2 * tokens * dim * experts,
        rtol=2 * tol,
        atol=max(tol / 2, 1e-4),
        fast_reference=SampledReference(
            select=lambda out: _inputs.take(out, sample, axis=0),
            run=lambda: reference(sample),
            what=f"{sample.size} of {tokens} tokens (first, last, the rest at random)",
        ),
    )
