"""Routing: top-k expert choice, the auxiliary losses, and the dispatch that sorts slots by expert.

`topk_router` and the losses are plain MLX ops (differentiable w.r.t. the logits).
`build_expert_dispatch` sorts the `S = tokens * k` (token, choice) slots by expert, stably, and
applies the capacity limit, all on the device: sorts are `mx.sort` of unique keys, the counts an
integer-atomic histogram kernel (gather_scatter's); nothing syncs unless `checked=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

import mtriton as triton

from .._common import FLOAT_DTYPES, INDEX_DTYPES, check_array, check_ndim, check_shape
from ..gather_scatter import _row_counts_kernel

SCORINGS = ("softmax", "sigmoid")
# Slots per program of the expert histogram.
_COUNT_BLOCK = 1024


# --------------------------------------------------------------------------- routing


def topk_router(
    logits: mx.array,
    k: int,
    scoring: str = "softmax",
    normalize: bool = True,
    selection_bias: mx.array | None = None,
) -> tuple[mx.array, mx.array]:
    """The `k` best experts of every token and their weights.

    Scores are `softmax(logits)` over the experts, or `sigmoid(logits)` (DeepSeek-V3). The `k`
    highest scores are kept, best first, and with `normalize` rescaled to sum to one per token.
    DeepSeek-V3 chooses its experts by `sigmoid(logits) + selection_bias` (its load-balancing
    bias) but weights them by the unbiased scores: `selection_bias` does that. Math is float32;
    differentiable w.r.t. `logits` (the choice itself is not).

    Args:
        logits: Router logits of shape (..., num_experts), a float dtype.
        k: Experts per token, 1 <= k <= num_experts.
        scoring: "softmax" or "sigmoid".
        normalize: Rescale the `k` weights of each token to sum to one.
        selection_bias: Optional (num_experts,) bias added to the scores for choosing only.

    Returns:
        `(weights, indices)` of shape (..., k): weights in `logits`' dtype, int32 expert indices,
        in descending order of score.

    Raises:
        TypeError: `logits` is not a float array.
        ValueError: `k` is outside [1, num_experts], `scoring` unknown, or a shape is wrong.
    """
    fn = "topk_router"
    check_array(fn, "logits", logits, FLOAT_DTYPES)
    check_ndim(fn, "logits", logits, 1, "(..., num_experts)", at_least=True)
    num_experts = logits.shape[-1]
    _check_top_k(fn, k, num_experts)
    _check_scoring(fn, scoring)
    logits32 = logits.astype(mx.float32)
    scores = mx.softmax(logits32, axis=-1, precise=True) if scoring == "softmax" else mx.sigmoid(logits32)
    choice = scores
    if selection_bias is not None:
        check_array(fn, "selection_bias", selection_bias, FLOAT_DTYPES)
        check_shape(fn, "selection_bias", selection_bias, (num_experts,), "logits' last axis")
        choice = scores + selection_bias.astype(mx.float32)
    choice = mx.stop_gradient(choice)
    top = mx.argpartition(-choice, kth=k - 1, axis=-1)[..., :k]
    # best first: the order of the k slots is part of the result
    top = mx.take_along_axis(top, mx.argsort(-mx.take_along_axis(choice, top, axis=-1), axis=-1), axis=-1)
    weights = mx.take_along_axis(scores, top, axis=-1)
    if normalize:
        weights = weights / mx.sum(weights, axis=-1, keepdims=True)
    return weights.astype(logits.dtype), top.astype(mx.int32)


def compute_load_balancing_loss(
    router_probs: mx.array, expert_indices: mx.array, num_experts: int
) -> mx.array:
    """The Switch/GShard auxiliary loss `num_experts * sum_e f_e * P_e`.

    `f_e` is the fraction of the (token, choice) slots routed to expert e (they sum to one) and
    `P_e` the mean router probability of expert e over the tokens; a uniform routing gives 1.
    (HF transformers' Mixtral loss uses the fraction of tokens, which sums to k: k times this.)
    The gradient flows through `P` only.

    Args:
        router_probs: (tokens, num_experts) router probabilities (softmax of the logits).
        expert_indices: (tokens, k) chosen experts, an integer dtype.
        num_experts: E.

    Returns:
        A float32 scalar.
    """
    fn = "compute_load_balancing_loss"
    check_array(fn, "router_probs", router_probs, FLOAT_DTYPES)
    check_array(fn, "expert_indices", expert_indices, INDEX_DTYPES)
    check_ndim(fn, "router_probs", router_probs, 2, "(tokens, num_experts)")
    check_shape(fn, "router_probs", router_probs, (router_probs.shape[0], num_experts), "num_experts")
    check_ndim(fn, "expert_indices", expert_indices, 2, "(tokens, k)")
    check_shape(
        fn,
        "expert_indices",
        expert_indices,
        (router_probs.shape[0], expert_indices.shape[1]),
        "router_probs' tokens",
    )
    slots = expert_indices.reshape(-1).astype(mx.int32)
    counts = mx.zeros((num_experts,), mx.float32).at[slots].add(mx.ones(slots.shape, mx.float32))
    fractions = mx.stop_gradient(counts / max(slots.size, 1))
    mean_probs = mx.mean(router_probs.astype(mx.float32), axis=0)
    return num_experts * mx.sum(fractions * mean_probs)


def router_z_loss(logits: mx.array) -> mx.array:
    """ST-MoE's router z-loss, the mean over tokens of `logsumexp(logits)**2` (float32 scalar).

    Args:
        logits: Router logits of shape (..., num_experts).
    """
    check_array("router_z_loss", "logits", logits, FLOAT_DTYPES)
    z = mx.logsumexp(logits.astype(mx.float32), axis=-1)
    return mx.mean(z * z)


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class ExpertDispatch:
    """Where each (token, choice) slot goes, as `build_expert_dispatch` computed it.

    The `S = tokens * k` slots are numbered `s = t * k + j` (token t's j-th choice). Their sorted
    order ("rows") puts the kept slots first, grouped by expert in expert order and, within an
    expert, in slot (token) order; the dropped slots follow, in slot order.

    Attributes:
        num_experts: E.
        top_k: k.
        capacity: Slots each expert keeps, or None for no limit.
        slot_of_row: (S,) int32, the slot at each sorted row.
        token_of_row: (S,) int32, the token at each sorted row; `tokens` (out of range) for a dropped
            slot, so that `selective_gather(..., checked=False)` gives it zeros and
            `selective_scatter_add(..., checked=False)` drops it.
        expert_of_row: (S,) int32, the expert at each sorted row; E for a dropped slot.
        position: (tokens, k) int32, the sorted row of every slot.
        expert_counts: (E,) int32, slots routed to each expert, before the capacity limit.
        group_sizes: (E,) int32, slots each expert keeps: its rows in the sorted order.
        expert_offsets: (E + 1,) int32, the first sorted row of each expert, then the kept total.
        dropped: (tokens, k) bool, the slots beyond their expert's capacity (or out of range).
    """

    num_experts: int
    top_k: int
    capacity: int | None
    slot_of_row: mx.array
    token_of_row: mx.array
    expert_of_row: mx.array
    position: mx.array
    expert_counts: mx.array
    group_sizes: mx.array
    expert_offsets: mx.array
    dropped: mx.array

    @property
    def num_tokens(self) -> int:
        return self.position.shape[0]

    def combine_weights(self, weights: mx.array) -> mx.array:
        """The (tokens, k) router `weights` in sorted-row order, zero for dropped slots.

        Differentiable w.r.t. `weights`: these are the scales of the combine scatter-add.
        """
        check_shape(
            "ExpertDispatch.combine_weights", "weights", weights, tuple(self.position.shape), "the dispatch"
        )
        rows = mx.take(weights.reshape(-1), self.slot_of_row)
        kept = mx.take(~self.dropped.reshape(-1), self.slot_of_row)
        return mx.where(kept, rows, mx.zeros_like(rows))


def _check_top_k(fn: str, k: object, num_experts: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= num_experts:
        raise ValueError(f"[{fn}] top_k must be an int in [1, num_experts = {num_experts}]; got {k!r}")


def _check_scoring(fn: str, scoring: object) -> None:
    if scoring not in SCORINGS:
        raise ValueError(f"[{fn}] scoring must be 'softmax' or 'sigmoid'; got {scoring!r}")


def _check_experts_in_range(fn: str, expert_indices: mx.array, num_experts: int) -> None:
    """Raises IndexError naming the first expert index outside [0, E); a reduction and a sync."""
    if expert_indices.size == 0:
        return
    outside = (expert_indices < 0) | (expert_indices >= num_experts)
    if not mx.any(outside).item():
        return
    first = int(mx.argmax(outside.reshape(-1)).item())
    position = tuple(int(i) for i in np.unravel_index(first, expert_indices.shape))
    value = expert_indices.reshape(-1)[first].item()
    raise IndexError(
        f"[{fn}] expert_indices{list(position)} = {value} is out of range for num_experts {num_experts} "
        f"(valid: 0 <= index < {num_experts}); checked=False skips this check and drops such slots"
    )


def _sorted_slots(experts: mx.array, num_experts: int) -> tuple[mx.array, mx.array]:
    """(slot, expert) of every sorted row: slots sorted by `experts` (in [0, E]), stably.

    One `mx.sort` of the unique keys `expert * S + slot`, which carry both: equal experts keep
    slot order whatever sort MLX runs, and nothing is gathered.
    """
    s = experts.size
    key_dtype = mx.int32 if (num_experts + 1) * s <= 2**31 - 1 else mx.int64
    keys = mx.sort(experts.astype(key_dtype) * s + mx.arange(s, dtype=key_dtype))
    return (keys % s).astype(mx.int32), (keys // s).astype(mx.int32)


def _permuted(order: mx.array, values: mx.array) -> mx.array:
    """`out[order[p]] = values[p]` for a permutation `order` (MLX's scatter refuses empty arrays)."""
    if order.size == 0:
        return mx.zeros((0,), values.dtype)
    return mx.zeros(values.shape, values.dtype).at[order].add(values)


def build_expert_dispatch(
    expert_indices: mx.array,
    num_experts: int,
    capacity_factor: float | None = None,
    *,
    checked: bool = True,
) -> ExpertDispatch:
    """Sorts the (token, choice) slots by expert and applies the capacity limit, on the device.

    With `capacity_factor`, each expert keeps `capacity = ceil(capacity_factor * tokens * k / E)`
    slots, the first ones in token order; the rest are dropped (they contribute nothing).

    Args:
        expert_indices: (tokens, k) chosen experts (from `topk_router`): int32, int64 or uint32.
        num_experts: E.
        capacity_factor: Capacity per expert relative to an even split, or None for no limit.
        checked: Raise `IndexError` for an expert index outside [0, E): a reduction and a host
            sync. With `checked=False` there is neither and such slots count as dropped.

    Returns:
        An `ExpertDispatch`.

    Raises:
        TypeError: `expert_indices` is not an integer array.
        ValueError: A shape is wrong, `num_experts < 1` or `capacity_factor <= 0`.
        IndexError: With `checked=True`, an expert index out of range.
    """
    fn = "build_expert_dispatch"
    check_array(fn, "expert_indices", expert_indices, INDEX_DTYPES)
    check_ndim(fn, "expert_indices", expert_indices, 2, "(tokens, k)")
    if not isinstance(num_experts, int) or num_experts < 1:
        raise ValueError(f"[{fn}] num_experts must be a positive int; got {num_experts!r}")
    tokens, k = expert_indices.shape
    _check_top_k(fn, k, num_experts)
    if capacity_factor is not None and not capacity_factor > 0:
        raise ValueError(f"[{fn}] capacity_factor must be positive or None; got {capacity_factor!r}")
    if checked:
        _check_experts_in_range(fn, expert_indices, num_experts)
    s = tokens * k
    flat = expert_indices.reshape(-1)
    in_range = (flat >= 0) & (flat < num_experts)
    experts = mx.where(in_range, flat.astype(mx.int32), num_experts)
    (counts,) = _row_counts_kernel[(triton.cdiv(max(s, 1), _COUNT_BLOCK),)].functional(
        mx.zeros((num_experts,), mx.int32), flat, num_experts, s, BLOCK=_COUNT_BLOCK
    )
    slot_of_row, expert_of_row = _sorted_slots(experts, num_experts)
    capacity = None
    if capacity_factor is not None:
        capacity = math.ceil(capacity_factor * s / num_experts)
        routed_starts = mx.cumsum(counts, inclusive=False)
        routed_starts = mx.concatenate([routed_starts, mx.array([s], mx.int32)])
        rank = mx.arange(s, dtype=mx.int32) - mx.take(routed_starts, expert_of_row)
        # Each expert's slots beyond its capacity go to the end (expert E), still in slot order.
        over = _permuted(slot_of_row, (rank >= capacity).astype(mx.int32)) > 0
        experts = mx.where(over, num_experts, experts)
        slot_of_row, expert_of_row = _sorted_slots(experts, num_experts)
        group_sizes = mx.minimum(counts, capacity)
    else:
        group_sizes = counts
    position = _permuted(slot_of_row, mx.arange(s, dtype=mx.int32))
    dropped = experts == num_experts
    token_of_row = mx.where(expert_of_row < num_experts, slot_of_row // k, tokens)
    offsets = mx.concatenate([mx.zeros((1,), mx.int32), mx.cumsum(group_sizes)])
    return ExpertDispatch(
        num_experts=num_experts,
        top_k=k,
        capacity=capacity,
        slot_of_row=slot_of_row,
        token_of_row=token_of_row.astype(mx.int32),
        expert_of_row=expert_of_row,
        position=position.reshape(tokens, k),
        expert_counts=counts,
        group_sizes=group_sizes,
        expert_offsets=offsets,
        dropped=dropped.reshape(tokens, k),
    )
