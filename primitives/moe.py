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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import mtriton as triton
import mtriton.language as tl

from ._common import FLOAT_DTYPES, INDEX_DTYPES, check_array, check_dtype, check_ndim, check_shape, pow2_block
from .gather_scatter import _row_counts_kernel, selective_gather, selective_scatter_add
from .glu import geglu, swiglu
from .quantize import _dequantize_tile, _mlx_packed

SCORINGS = ("softmax", "sigmoid")
# Slots per program of the expert histogram.
_COUNT_BLOCK = 1024
# Largest tiles on Metal (MAX_STAGED_DOT_ELEMENTS: BLOCK_M * BLOCK_K + BLOCK_K * BLOCK_N <= 8192,
# and the weight gradient's BLOCK_N * BLOCK_M + BLOCK_M * BLOCK_K); CUDA stages more.
_BLOCKS = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}
_CUDA_BLOCKS = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8}
_ACTIVATIONS = {"swiglu": swiglu, "geglu": geglu}


# --------------------------------------------------------------------------- kernels


@triton.jit
def _weight_tile(
    w_ptr, s_ptr, z_ptr, reds, outs, n_red, n_out, stride_w, stride_sr, stride_sg,
    TRANS_W: tl.constexpr, BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """The (BLOCK_K, BLOCK_N) right operand B[r, c] from one expert's row-major weight W.

    TRANS_W: B = W.T (W's rows are the outputs: the forward of `x @ W.T`); the tile is read along
    W's contiguous rows and transposed in registers. Otherwise B = W (dx = dy @ W). With scales,
    W is MLX's packed codes, dequantized here.
    """
    if TRANS_W:
        rows = outs[:, None]
        cols = reds[None, :]
        mask = (rows < n_out) & (cols < n_red)
    else:
        rows = reds[:, None]
        cols = outs[None, :]
        mask = (rows < n_red) & (cols < n_out)
    if s_ptr is not None:
        w = _dequantize_tile(
            w_ptr, s_ptr, z_ptr, rows, cols, mask, stride_w, stride_sr, stride_sg, BITS, PACK, GROUP, False
        )
    else:
        w = tl.load(w_ptr + (rows * stride_w + cols), mask=mask, other=0.0)
    if TRANS_W:
        w = tl.trans(w)
    return w


@triton.jit(do_not_specialize=["n_tiles"])
def _grouped_matmul_kernel(
    out_ptr, a_ptr, w_ptr, s_ptr, z_ptr, tile_expert_ptr, tile_start_ptr, tile_stop_ptr,
    n_tiles, n, k, stride_w, stride_sr, stride_sg, expert_w, expert_s,
    TRANS_W: tl.constexpr, BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr,
    HALF_DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):  # fmt: skip
    """out[rows] = a[rows] @ B(expert) for the rows [start, stop) of one row tile.

    `a` is (M, k), `out` (M, n). A tile with expert -1 lies outside every group: its K loop is
    empty and it stores zeros. `expert_w`/`expert_s` are the strides of one expert's weight and
    scales.
    """
    # Groups of GROUP_M row tiles walk the column tiles together: each weight tile is read from
    # memory about once per group, and the group's rows stay in cache.
    num_pid_n = tl.cdiv(n, BLOCK_N)
    pid = tl.program_id(0)
    tile, pid_n = tl.swizzle2d(pid // num_pid_n, pid % num_pid_n, n_tiles, num_pid_n, GROUP_M)
    expert = tl.load(tile_expert_ptr + tile)
    start = tl.load(tile_start_ptr + tile)
    stop = tl.load(tile_stop_ptr + tile)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < stop
    rows = rows.to(tl.int64)
    outs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    e = tl.maximum(expert, 0).to(tl.int64)
    w_base = w_ptr + e * expert_w
    s_base = s_ptr
    z_base = z_ptr
    if s_ptr is not None:
        s_base = s_ptr + e * expert_s
        z_base = z_ptr + e * expert_s
    k_stop = tl.where(expert >= 0, k, 0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_stop, BLOCK_K):
        reds = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            a_ptr + (rows[:, None] * k + reds[None, :]),
            mask=row_mask[:, None] & (reds[None, :] < k),
            other=0.0,
        )
        w = _weight_tile(
            w_base,
            s_base,
            z_base,
            reds,
            outs,
            k,
            n,
            stride_w,
            stride_sr,
            stride_sg,
            TRANS_W,
            BITS,
            PACK,
            GROUP,
        )
        if HALF_DOT:
            # Tensor cores take a as it is and the dequantized w as two terms of a's dtype,
            # w = hi + lo with lo the rounding error of hi: float32-accurate weights in two dots.
            w_hi = w.to(a.dtype)
            acc = tl.dot(a, w_hi, acc)
            acc = tl.dot(a, (w - w_hi.to(tl.float32)).to(a.dtype), acc)
        elif s_ptr is not None:
            acc = tl.dot(a.to(tl.float32), w, acc, input_precision="ieee")
        else:
            # "ieee": float32 inputs stay exact (Triton's default rounds them to TF32 on CUDA)
            acc = tl.dot(a, w, acc, input_precision="ieee")
    mask = row_mask[:, None] & (outs[None, :] < n)
    tl.store(out_ptr + (rows[:, None] * n + outs[None, :]), acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grouped_weight_grad_kernel(
    dw_ptr, a_ptr, d_ptr, starts_ptr, stops_ptr, n, k,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dw[e] = d[rows of e].T @ a[rows of e], an (n, k) block per expert (zeros for no rows).

    `a` is (M, k) and `d` (M, n); expert e owns the rows [starts[e], stops[e]).
    """
    e = tl.program_id(0)
    outs = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    reds = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    start = tl.load(starts_ptr + e)
    stop = tl.load(stops_ptr + e)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for r0 in range(start, stop, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        row_mask = (rows < stop)[:, None]
        rows = rows.to(tl.int64)
        d = tl.load(
            d_ptr + (rows[:, None] * n + outs[None, :]), mask=row_mask & (outs[None, :] < n), other=0.0
        )
        a = tl.load(
            a_ptr + (rows[:, None] * k + reds[None, :]), mask=row_mask & (reds[None, :] < k), other=0.0
        )
        acc = tl.dot(tl.trans(d), a, acc, input_precision="ieee")
    offsets = e.to(tl.int64) * n * k + (outs[:, None].to(tl.int64) * k + reds[None, :])
    mask = (outs[:, None] < n) & (reds[None, :] < k)
    tl.store(dw_ptr + offsets, acc.to(dw_ptr.dtype.element_ty), mask=mask)


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
    if scoring not in SCORINGS:
        raise ValueError(f"[{fn}] scoring must be 'softmax' or 'sigmoid'; got {scoring!r}")
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


# --------------------------------------------------------------------------- grouped GEMM


def _new_output(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """A buffer the launching kernel writes in full (tests swap in a poisoned one to check that)."""
    return triton.empty(shape, dtype)


@dataclass(frozen=True)
class _TileMap:
    """Each row tile's expert (-1: outside every group) and rows [start, stop), and each
    expert's rows [starts, stops): the grouped kernels' view of `group_sizes`."""

    expert: mx.array
    start: mx.array
    stop: mx.array
    group_starts: mx.array
    group_stops: mx.array

    @property
    def n_tiles(self) -> int:
        return self.expert.size


def _tile_map(group_sizes: mx.array, m: int, block_m: int) -> _TileMap:
    """Cuts the M rows into tiles of at most `block_m` rows that never straddle two groups.

    The rows are E groups (clipped to M) and the rest, a tail outside every group. A part of c
    rows takes cdiv(c, block_m) tiles, so all E + 1 parts take at most cdiv(M, block_m) + E: the
    grid's static size. Tiles past the used ones get no rows. MLX ops on (tiles, E + 1): no sync.
    """
    e = group_sizes.size
    stops = mx.minimum(mx.cumsum(group_sizes.astype(mx.int32)), m)
    starts = mx.concatenate([mx.zeros((1,), mx.int32), stops[:-1]])
    part_starts = mx.concatenate([starts, stops[-1:]])
    part_sizes = mx.concatenate([stops - starts, m - stops[-1:]])
    tiles = (part_sizes + block_m - 1) // block_m
    tile_ends = mx.cumsum(tiles)
    n_tiles = triton.cdiv(m, block_m) + e
    t = mx.arange(n_tiles, dtype=mx.int32)
    part = mx.sum(t[:, None] >= tile_ends[None, :], axis=1).astype(mx.int32)  # e + 1: unused
    used = part <= e
    part = mx.minimum(part, e)
    start = mx.take(part_starts, part) + (t - mx.take(tile_ends - tiles, part)) * block_m
    stop = mx.take(part_starts + part_sizes, part)
    return _TileMap(
        expert=mx.where(part < e, part, -1),
        start=mx.where(used, start, m),
        stop=mx.where(used, stop, m),
        group_starts=starts,
        group_stops=stops,
    )


def _blocks(m: int, e: int) -> dict[str, int]:
    """Tile sizes: BLOCK_M fitted to the mean rows per expert (a decode step has a few rows per
    expert, and every partial tile is padding), the rest as `_BLOCKS`; every dot dimension >= 16."""
    blocks = dict(_CUDA_BLOCKS if triton.current_target() == "cuda" else _BLOCKS)
    blocks["BLOCK_M"] = pow2_block(triton.cdiv(m, e), blocks["BLOCK_M"], 16)
    return blocks


def _launch_grouped(
    a: mx.array,
    w: mx.array,
    quant: tuple[mx.array, mx.array, int, int] | None,
    group_sizes: mx.array,
    n: int,
    k: int,
    trans_w: bool,
) -> mx.array:
    """(M, n) = each group's rows of the (M, k) `a` times its expert's operand (see the kernel)."""
    m, e = a.shape[0], w.shape[0]
    if m == 0 or n == 0:
        return mx.zeros((m, n), a.dtype)
    blocks = _blocks(m, e)
    tile_map = _tile_map(group_sizes, m, blocks["BLOCK_M"])
    block_n, block_k = pow2_block(n, blocks["BLOCK_N"], 16), pow2_block(k, blocks["BLOCK_K"], 16)
    if quant is None:
        scales = biases = None
        stride_w, stride_sr, stride_sg, expert_s = w.shape[-1], 0, 0, 0
        meta = {"BITS": 0, "PACK": 1, "GROUP": 0}
    else:
        scales, biases, group_size, bits = quant
        stride_w, stride_sr, stride_sg, expert_s = w.shape[-1], scales.shape[-1], 1, scales[0].size
        meta = {"BITS": bits, "PACK": 32 // bits, "GROUP": group_size}
    # Quantized weights multiply half-precision rows on CUDA's tensor cores in two half terms.
    half_dot = quant is not None and a.dtype != mx.float32 and triton.current_target() == "cuda"
    grid = (tile_map.n_tiles * triton.cdiv(n, block_n),)
    (out,) = _grouped_matmul_kernel[grid].functional(
        _new_output((m, n), a.dtype), a, w, scales, biases, tile_map.expert, tile_map.start, tile_map.stop,
        tile_map.n_tiles, n, k, stride_w, stride_sr, stride_sg, w[0].size, expert_s,
        TRANS_W=trans_w, **meta, HALF_DOT=half_dot, BLOCK_M=blocks["BLOCK_M"], BLOCK_N=block_n, BLOCK_K=block_k,
        GROUP_M=blocks["GROUP_M"], **({"num_warps": blocks["num_warps"]} if "num_warps" in blocks else {}),
    )  # fmt: skip
    return out


def _weight_grad(a: mx.array, d: mx.array, group_sizes: mx.array, e: int) -> mx.array:
    """(E, n, k): per expert, its rows of the (M, n) `d` transposed times its rows of `a`."""
    m, k = a.shape
    n = d.shape[1]
    if m == 0:
        return mx.zeros((e, n, k), a.dtype)
    blocks = _blocks(m, e)
    tile_map = _tile_map(group_sizes, m, blocks["BLOCK_M"])
    block_n, block_k = pow2_block(n, 64, 16), pow2_block(k, 64, 16)
    (dw,) = _grouped_weight_grad_kernel[(e, triton.cdiv(n, block_n), triton.cdiv(k, block_k))].functional(
        _new_output((e, n, k), a.dtype), a, d, tile_map.group_starts, tile_map.group_stops, n, k,
        BLOCK_M=min(blocks["BLOCK_M"], 32), BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return dw


@mx.custom_function
def _grouped_mm(x: mx.array, weight: mx.array, group_sizes: mx.array) -> mx.array:
    return _launch_grouped(x, weight, None, group_sizes, weight.shape[1], weight.shape[2], trans_w=True)


@_grouped_mm.vjp
def _grouped_mm_vjp(
    primals: tuple[mx.array, mx.array, mx.array], cotangent: mx.array, output: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    x, weight, group_sizes = primals
    e, n, k = weight.shape
    dx = _launch_grouped(cotangent, weight, None, group_sizes, k, n, trans_w=False)
    dw = _weight_grad(x, cotangent, group_sizes, e)
    return dx, dw, mx.zeros_like(group_sizes)


@mx.custom_function
def _grouped_qmm(
    x: mx.array,
    w_q: mx.array,
    scales: mx.array,
    biases: mx.array,
    group_sizes: mx.array,
    group_size: int,
    bits: int,
) -> mx.array:
    k = w_q.shape[-1] * 32 // bits
    return _launch_grouped(
        x, w_q, (scales, biases, group_size, bits), group_sizes, w_q.shape[1], k, trans_w=True
    )


@_grouped_qmm.vjp
def _grouped_qmm_vjp(
    primals: tuple[mx.array, mx.array, mx.array, mx.array, mx.array, int, int],
    cotangent: mx.array,
    output: mx.array,
) -> tuple[mx.array | None, ...]:
    """dx only: packed weights get zero gradients (MLX pairs every array primal with one)."""
    x, w_q, scales, biases, group_sizes, group_size, bits = primals
    dx = _launch_grouped(
        cotangent,
        w_q,
        (scales, biases, group_size, bits),
        group_sizes,
        x.shape[1],
        w_q.shape[1],
        trans_w=False,
    )
    return (
        dx, mx.zeros_like(w_q), mx.zeros_like(scales), mx.zeros_like(biases), mx.zeros_like(group_sizes), None, None,
    )  # fmt: skip


def grouped_matmul(
    x: mx.array,
    weight: mx.array,
    group_sizes: mx.array,
    *,
    scales: mx.array | None = None,
    biases: mx.array | None = None,
    group_size: int = 64,
    bits: int = 4,
) -> mx.array:
    """Each expert's contiguous rows of `x` times that expert's weight, transposed, in one launch.

    Rows `[offsets[e], offsets[e] + group_sizes[e])` of `x`, with `offsets` the exclusive cumsum of
    `group_sizes`, give `x[rows] @ weight[e].T`: `mx.gather_mm(x[:, None], weight.swapaxes(-1, -2),
    rhs_indices=expert_of_row, sorted_indices=True)`. Rows past `sum(group_sizes)` belong to no
    expert and come out as zeros; groups running past M are cut at M. Differentiable w.r.t. `x`
    and a float `weight` (grouped kernels for both); quantized weights get zero gradients.

    Args:
        x: (M, in_features) rows in expert order, float32, float16 or bfloat16.
        weight: (E, out_features, in_features) in `x`'s dtype (mlx-lm's `SwitchLinear.weight`), or
            with `scales`, MLX's packed uint32 codes (E, out_features, in_features * bits / 32).
        group_sizes: (E,) rows per expert, int32 (e.g. `ExpertDispatch.group_sizes`); not
            checked against M, which would need a host sync.
        scales: With quantized weights, `mx.quantize`'s scales (E, out_features, in_features /
            group_size).
        biases: With quantized weights, `mx.quantize`'s biases, of `scales`' shape.
        group_size: MLX's quantization group size.
        bits: 4 or 8.

    Returns:
        (M, out_features) in `x`'s dtype; products accumulate in float32.

    Raises:
        TypeError: An argument of the wrong type or dtype.
        ValueError: Shapes that do not match, or a bad `group_size`/`bits`.
    """
    fn = "grouped_matmul"
    check_array(fn, "x", x, FLOAT_DTYPES)
    check_ndim(fn, "x", x, 2, "(rows, in_features)")
    check_array(fn, "weight", weight)
    check_ndim(fn, "weight", weight, 3, "(num_experts, out_features, in_features)")
    check_array(fn, "group_sizes", group_sizes, (mx.int32,))
    check_shape(fn, "group_sizes", group_sizes, (weight.shape[0],), "weight's num_experts")
    if (scales is None) != (biases is None):
        raise ValueError(f"[{fn}] give both scales and biases (quantized weight) or neither")
    if scales is None:
        check_dtype(fn, "weight", weight, (x.dtype,))
        if weight.shape[2] != x.shape[1]:
            raise ValueError(
                f"[{fn}] weight has shape {tuple(weight.shape)}; expected in_features {x.shape[1]} "
                "(axis 2) to match x's last axis"
            )
        return _grouped_mm(x, weight, group_sizes)
    packed = _mlx_packed(fn, weight, scales, biases, group_size, bits)
    if packed.in_features != x.shape[1]:
        raise ValueError(
            f"[{fn}] weight holds in_features {packed.in_features}; expected {x.shape[1]} to match x's last axis"
        )
    return _grouped_qmm(x, weight, scales, biases, group_sizes, group_size, bits)


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
    ) -> None:
        super().__init__()
        _check_top_k("SparseMoELayer", top_k, num_experts)
        if scoring not in SCORINGS:
            raise ValueError(f"[SparseMoELayer] scoring must be 'softmax' or 'sigmoid'; got {scoring!r}")
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = SwitchGLU(dim, hidden_dim, num_experts, activation=activation)
        self.top_k, self.num_experts, self.capacity_factor = top_k, num_experts, capacity_factor
        self.scoring, self.normalize = scoring, normalize

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


def _expert_of_row_reference(group_sizes: mx.array, m: int) -> mx.array:
    """Each row's group (E for rows past the last group)."""
    ends = mx.cumsum(group_sizes.astype(mx.int32))
    return mx.sum(mx.arange(m)[:, None] >= ends[None, :], axis=1).astype(mx.int32)


def grouped_matmul_reference(x: mx.array, weight: mx.array, group_sizes: mx.array) -> mx.array:
    """`grouped_matmul` in plain MLX ops: `mx.gather_mm` with sorted indices (float weights)."""
    e = weight.shape[0]
    experts = _expert_of_row_reference(group_sizes, x.shape[0])
    y = mx.gather_mm(
        x[:, None, :], weight.swapaxes(-1, -2), rhs_indices=mx.minimum(experts, e - 1), sorted_indices=True
    )[:, 0, :]
    return mx.where((experts < e)[:, None], y, mx.zeros_like(y))


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
