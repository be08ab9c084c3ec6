"""Mixture of experts: top-k routing, expert dispatch, a grouped expert GEMM and the MoE layers.

A token-choice MoE layer sends each of `T` tokens to `k` of `E` experts. The pieces:

* `topk_router(logits, k)`: softmax (or DeepSeek-V3's sigmoid) scores, the `k` best experts per
  token and their weights, in plain MLX ops (differentiable w.r.t. the logits).
* `build_expert_dispatch(expert_indices, E)`: the `S = T * k` (token, choice) slots sorted by
  expert, stably (token order within an expert), with the per-expert counts and offsets, each
  slot's row in the sorted order, and the slots dropped by a capacity limit. All on the device:
  sorts are `mx.sort` of unique keys, counts an integer-atomic histogram kernel; nothing syncs.
* `grouped_matmul(x, weight, group_sizes)`: one launch multiplies every expert's contiguous rows
  of `x` by that expert's matrix, `weight` in mlx-lm's `SwitchLinear` layout (E, out, in), the
  job of `mx.gather_mm` with sorted indices. Its programs cover (row tile, column tile) pairs,
  grouped so that neighbours share weight tiles in cache; a tile map computed with MLX ops on
  the device gives each row tile its expert and its rows, a tile never straddling two experts. Rows outside every group (the dropped slots, which the dispatch puts
  last) come out as zeros. float32/float16/bfloat16 weights, or MLX's quantized ones
  (`mx.quantize`, 4 or 8 bits) dequantized inside the kernel. Gradients: dx is the same kernel
  with the weight untransposed, dW a grouped kernel over each expert's rows.
* `SwitchGLU` (a drop-in for mlx-lm's, same weight names) and `SparseMoELayer` (router, dispatch,
  experts, weighted combine through `selective_scatter_add`'s deterministic mode), with the
  auxiliary `compute_load_balancing_loss` and `router_z_loss`.

`routing.py` holds the router, the losses and the dispatch, `grouped.py` the grouped GEMM and its
kernels; this file the layers and their plain-MLX references.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn

from .._common import FLOAT_DTYPES, INDEX_DTYPES, check_array
from ..gather_scatter import selective_gather, selective_scatter_add
from ..glu import geglu, swiglu
from ..training import checkpointable
from .grouped import grouped_matmul, grouped_matmul_reference
from .routing import (
    ExpertDispatch,
    _check_scoring,
    _check_top_k,
    build_expert_dispatch,
    compute_load_balancing_loss,
    router_z_loss,
    topk_router,
)

__all__ = [
    "ExpertDispatch", "QuantizedSwitchLinear", "SparseMoELayer", "SwitchGLU", "SwitchLinear",
    "build_expert_dispatch", "compute_load_balancing_loss", "grouped_matmul", "grouped_matmul_reference",
    "router_z_loss", "sparse_moe_reference", "switch_glu_reference", "topk_router",
]  # fmt: skip

_ACTIVATIONS = {"swiglu": swiglu, "geglu": geglu}


# --------------------------------------------------------------------------- modules


class SwitchLinear(nn.Module):
    """A bank of E linear layers applied to rows in expert order (mlx-lm's `SwitchLinear` weights).

    Args:
        input_dims: Input features.
        output_dims: Output features.
        num_experts: E.
        bias: Whether each expert adds a bias (`bias` of shape (E, output_dims)).
    """

    def __init__(self, input_dims: int, output_dims: int, num_experts: int, bias: bool = True) -> None:
        super().__init__()
        scale = math.sqrt(1 / input_dims)
        self.weight = mx.random.uniform(-scale, scale, (num_experts, output_dims, input_dims))
        if bias:
            self.bias = mx.zeros((num_experts, output_dims))

    def _bias_rows(self, y: mx.array, dispatch: ExpertDispatch) -> mx.array:
        if "bias" not in self:
            return y
        kept = (dispatch.expert_of_row < dispatch.num_experts)[:, None]
        experts = mx.minimum(dispatch.expert_of_row, dispatch.num_experts - 1)
        return y + mx.where(kept, mx.take(self.bias, experts, axis=0), 0).astype(y.dtype)

    def __call__(self, x: mx.array, dispatch: ExpertDispatch) -> mx.array:
        """`x` (rows in the dispatch's sorted order, its dropped rows last) times each row's expert."""
        return self._bias_rows(grouped_matmul(x, self.weight, dispatch.group_sizes), dispatch)

    def to_quantized(
        self, group_size: int = 64, bits: int = 4, mode: str = "affine"
    ) -> QuantizedSwitchLinear:
        """The layer with its weight `mx.quantize`d, as mlx-lm's `to_quantized` (`nn.quantize` calls it).

        Args:
            group_size: MLX's quantization group size.
            bits: 4 or 8.
            mode: "affine", the one format the grouped kernel reads.
        """
        if mode != "affine":
            raise ValueError(f"[SwitchLinear.to_quantized] mode must be 'affine'; got {mode!r}")
        layer = QuantizedSwitchLinear(
            self.weight.shape[2], self.weight.shape[1], self.weight.shape[0], "bias" in self, group_size, bits
        )
        layer.weight, layer.scales, layer.biases = mx.quantize(self.weight, group_size, bits)
        if "bias" in self:
            layer.bias = self.bias
        return layer


class QuantizedSwitchLinear(SwitchLinear):
    """`SwitchLinear` holding `mx.quantize`d weights (`weight`, `scales`, `biases`, as mlx-lm's),
    dequantized inside the grouped kernel; frozen.

    Args:
        input_dims: Input features.
        output_dims: Output features.
        num_experts: E.
        bias: Whether each expert adds a float bias.
        group_size: MLX's quantization group size.
        bits: 4 or 8.
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        num_experts: int,
        bias: bool = True,
        group_size: int = 64,
        bits: int = 4,
    ) -> None:
        super().__init__(input_dims, output_dims, num_experts, bias)
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = mx.quantize(self.weight, group_size, bits)
        self.freeze()

    def __call__(self, x: mx.array, dispatch: ExpertDispatch) -> mx.array:
        y = grouped_matmul(
            x, self.weight, dispatch.group_sizes, scales=self.scales, biases=self.biases,
            group_size=self.group_size, bits=self.bits,
        )  # fmt: skip
        return self._bias_rows(y, dispatch)


def _activation_fn(fn: str, activation: str | Callable[[mx.array, mx.array], mx.array]) -> Callable:
    """`(up, gate) -> hidden`, mlx-lm's argument order; a name picks one of glu.py's kernels."""
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"[{fn}] activation must be 'swiglu', 'geglu' or a callable (up, gate); got {activation!r}"
        )
    glu = _ACTIVATIONS[activation]
    return lambda up, gate: glu(gate, up)


class SwitchGLU(nn.Module):
    """A drop-in for mlx-lm's `SwitchGLU`: `down(act(up(x), gate(x)))` with each token's experts.

    The same weights (`gate_proj`, `up_proj`, `down_proj`, `SwitchLinear`s with `weight` of shape
    (num_experts, out, in)) and the same call: `x` of shape (..., input_dims) and `indices` of
    shape (..., k) give (..., k, input_dims). The slots are always sorted by expert (one
    dispatch), gathered, run through the grouped GEMMs and gathered back to slot order.

    Args:
        input_dims: Model width.
        hidden_dims: Expert hidden width.
        num_experts: E.
        activation: "swiglu" (silu(gate) * up), "geglu", or a callable `(up, gate)` as mlx-lm's.
        bias: Whether the projections have per-expert biases.
    """

    def __init__(
        self,
        input_dims: int,
        hidden_dims: int,
        num_experts: int,
        activation: str | Callable[[mx.array, mx.array], mx.array] = "swiglu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.gate_proj = SwitchLinear(input_dims, hidden_dims, num_experts, bias=bias)
        self.up_proj = SwitchLinear(input_dims, hidden_dims, num_experts, bias=bias)
        self.down_proj = SwitchLinear(hidden_dims, input_dims, num_experts, bias=bias)
        self.activation = _activation_fn("SwitchGLU", activation)

    @property
    def num_experts(self) -> int:
        return self.gate_proj.weight.shape[0]

    def forward_sorted(self, x_sorted: mx.array, dispatch: ExpertDispatch) -> mx.array:
        """The expert MLP of rows already in the dispatch's sorted order (dropped rows give zeros)."""
        hidden = self.activation(self.up_proj(x_sorted, dispatch), self.gate_proj(x_sorted, dispatch))
        return self.down_proj(hidden, dispatch)

    def __call__(self, x: mx.array, indices: mx.array) -> mx.array:
        fn = "SwitchGLU"
        check_array(fn, "x", x, FLOAT_DTYPES)
        check_array(fn, "indices", indices, INDEX_DTYPES)
        if tuple(indices.shape[:-1]) != tuple(x.shape[:-1]):
            raise ValueError(
                f"[{fn}] indices has shape {tuple(indices.shape)}; expected {tuple(x.shape[:-1])} + (k,) "
                "to match x's leading axes"
            )
        k, d = indices.shape[-1], x.shape[-1]
        dispatch = build_expert_dispatch(
            mx.stop_gradient(indices).reshape(-1, k), self.num_experts, checked=False
        )
        rows = selective_gather(x.reshape(-1, d), dispatch.token_of_row, checked=False, deterministic=True)
        out = self.forward_sorted(rows, dispatch)
        out = selective_gather(out, dispatch.position.reshape(-1), checked=False, deterministic=True)
        return out.reshape(*indices.shape, out.shape[-1])


class SparseMoELayer(nn.Module):
    """A token-choice MoE block: router, top-k, dispatch, SwitchGLU experts, weighted combine.

    `router` is an `nn.Linear(dim, num_experts, bias=False)` and `experts` a `SwitchGLU`. The
    combine is `selective_scatter_add`'s deterministic mode, so outputs and gradients are
    bit-reproducible.

    Args:
        dim: Model width.
        hidden_dim: Expert hidden width.
        num_experts: E.
        top_k: Experts per token.
        capacity_factor: Expert capacity relative to an even split (slots beyond it dropped), or
            None for no limit.
        activation: "swiglu" or "geglu".
        scoring: "softmax" or "sigmoid" (`topk_router`).
        normalize: Renormalize the top-k weights to sum to one.
        checkpoint: Recompute the block in the backward pass instead of keeping its
            intermediates (`mlx_primitives.training.checkpointable`).
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        num_experts: int,
        top_k: int,
        capacity_factor: float | None = None,
        activation: str = "swiglu",
        scoring: str = "softmax",
        normalize: bool = True,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        _check_top_k("SparseMoELayer", top_k, num_experts)
        _check_scoring("SparseMoELayer", scoring)
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = SwitchGLU(dim, hidden_dim, num_experts, activation=activation)
        self.top_k, self.num_experts, self.capacity_factor = top_k, num_experts, capacity_factor
        self.scoring, self.normalize, self.checkpoint = scoring, normalize, checkpoint

    @checkpointable
    def __call__(self, x: mx.array, return_router: bool = False) -> mx.array | tuple[mx.array, ...]:
        """The MoE output for `x` of shape (..., dim).

        With `return_router`, also the router logits (tokens, E) and the chosen experts
        (tokens, k), for `compute_load_balancing_loss` and `router_z_loss`.
        """
        check_array("SparseMoELayer", "x", x, FLOAT_DTYPES)
        d = x.shape[-1]
        tokens = x.reshape(-1, d)
        logits = self.router(tokens)
        weights, indices = topk_router(logits, self.top_k, self.scoring, self.normalize)
        if tokens.shape[0] == 0:  # MLX's gathers have no VJP on empty arrays: nothing to route
            empty = mx.zeros(x.shape, x.dtype)
            return (empty, logits, indices) if return_router else empty
        dispatch = build_expert_dispatch(indices, self.num_experts, self.capacity_factor, checked=False)
        rows = selective_gather(tokens, dispatch.token_of_row, checked=False, deterministic=True)
        out = self.experts.forward_sorted(rows, dispatch)
        combined = selective_scatter_add(
            mx.zeros(tokens.shape, x.dtype), out, dispatch.token_of_row, dispatch.combine_weights(weights),
            deterministic=True, checked=False,
        ).reshape(x.shape)  # fmt: skip
        return (combined, logits, indices) if return_router else combined


# --------------------------------------------------------------------------- references


def switch_glu_reference(
    x: mx.array, indices: mx.array, w_gate: mx.array, w_up: mx.array, w_down: mx.array
) -> mx.array:
    """mlx-lm's `SwitchGLU` (no bias, SwiGLU) in plain MLX ops: (..., k, dim)."""
    x = mx.expand_dims(x, (-2, -3))
    gate = mx.gather_mm(x, w_gate.swapaxes(-1, -2), rhs_indices=indices)
    up = mx.gather_mm(x, w_up.swapaxes(-1, -2), rhs_indices=indices)
    return mx.gather_mm(nn.silu(gate) * up, w_down.swapaxes(-1, -2), rhs_indices=indices).squeeze(-2)


def sparse_moe_reference(
    x: mx.array,
    router_weight: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    w_down: mx.array,
    top_k: int,
    capacity_factor: float | None = None,
    scoring: str = "softmax",
    normalize: bool = True,
) -> mx.array:
    """`SparseMoELayer` as a dense loop over experts in plain MLX ops: every expert runs on every
    token and a (tokens, E) combine matrix, zero off the kept choices, mixes them."""
    d = x.shape[-1]
    tokens = x.reshape(-1, d)
    e = w_gate.shape[0]
    weights, indices = topk_router(tokens @ router_weight.T, top_k, scoring, normalize)
    onehot = (indices[..., None] == mx.arange(e)).astype(mx.int32)  # (T, k, E)
    if capacity_factor is not None:
        capacity = math.ceil(capacity_factor * indices.size / e)
        rank = mx.cumsum(onehot.reshape(-1, e), axis=0).reshape(onehot.shape) - 1
        onehot = onehot * (rank < capacity)
    combine = mx.sum(onehot.astype(mx.float32) * weights[..., None].astype(mx.float32), axis=1)
    out = mx.zeros(tokens.shape, mx.float32)
    for expert in range(e):
        hidden = nn.silu(tokens @ w_gate[expert].T) * (tokens @ w_up[expert].T)
        out = out + combine[:, expert : expert + 1] * (hidden @ w_down[expert].T).astype(mx.float32)
    return out.astype(x.dtype).reshape(x.shape)
