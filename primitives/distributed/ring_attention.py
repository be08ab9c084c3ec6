"""Ring attention: sequence-parallel flash attention over the ranks of an `mx.distributed` group.

Each of the W ranks holds one shard of the sequence (`shard_sequence` cuts them): contiguous,
rank r has positions r * S / W .. (r + 1) * S / W - 1 of q, k and v; or zigzag, the sequence
cut into 2W chunks and rank r holding chunks r and 2W - 1 - r. The key/value blocks travel
around the ring (rank r sends to r + 1), so after W steps every rank has run the mtriton
flash-attention kernel of its own queries against every block, merging the partial outputs
with their log-sum-exps: out = sum_b exp(lse_b - lse) out_b, lse = logsumexp_b lse_b. No rank
ever holds more than its own shard and one travelling block; no (S, S) matrix exists.

The backward is the same ring run again (`mx.custom_function`): every rank recomputes each
block's probabilities from the global log-sum-exp with the flash backward kernels, keeps the
query gradient at home, and sends the key/value gradients around with their block, so that
they arrive back at the block's owner after W steps. Accumulators are float32.

Each step's exchange is put in the graph before that step's kernels and does not depend on
them, so a backend that runs communication beside compute may overlap the two.

Causal attention, chunk by chunk: a query chunk sees its own chunk causally, earlier chunks
whole and later ones not at all (their blocks are still passed on). Contiguous shards are
imbalanced: rank r computes r + 1 of the W blocks, the last rank W times the first's work, and
the step time follows it. Zigzag shards give every rank the same work: 2W + 1 chunk pairs.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from .._common import check_array
from ..attention import LAYOUTS, _check_heads, _check_qkv, attention_reference, flash_attention
from ..attention.backward import attention_backward
from ..attention.forward import attention_forward
from ..attention.spec import AttentionSpec
from ._comm import agree, resolve_group, ring_shift

SHARDINGS = ("contiguous", "zigzag")
# Codes of the non-shape arguments every rank must agree on.
_DTYPE_CODES = {mx.float32: 0, mx.float16: 1, mx.bfloat16: 2}


# --------------------------------------------------------------------------- the differentiable ring


def _chunks(rank: int, size: int, sharding: str) -> tuple[int, ...]:
    """The chunks of the sequence that `rank` holds, in order: the sequence is cut into W chunks
    (contiguous) or 2W (zigzag), and a rank holds chunk r, or chunks r and 2W - 1 - r."""
    return (rank,) if sharding == "contiguous" else (rank, 2 * size - 1 - rank)


def _pair_spec(spec: AttentionSpec, query_chunk: int, key_chunk: int) -> AttentionSpec | None:
    """The attention of one chunk of queries to one chunk of keys: None when it sees none of it
    (causal, a later chunk), causal on the diagonal, full for earlier chunks."""
    if not spec.causal:
        return spec
    if key_chunk > query_chunk:
        return None
    return spec if key_chunk == query_chunk else AttentionSpec(scale=spec.scale)


def _split(x: mx.array, parts: int, axis: int) -> list[mx.array]:
    """`x` cut into `parts` equal pieces along `axis` (itself, uncut, for one)."""
    return [x] if parts == 1 else mx.split(x, parts, axis=axis)


def _join(xs: list[mx.array], axis: int) -> mx.array:
    return xs[0] if len(xs) == 1 else mx.concatenate(xs, axis=axis)


def _lse_weights(lse: mx.array, shape: tuple[int, ...], layout: str) -> mx.array:
    """A (B * H, Lq) log-sum-exp as (B, H, Lq, 1) or (B, Lq, H, 1), to scale outputs in `layout`."""
    batch, heads, lq = (shape[0], shape[1], shape[2]) if layout == "BHSD" else (shape[0], shape[2], shape[1])
    lse = lse.reshape(batch, heads, lq)
    return (lse if layout == "BHSD" else lse.transpose(0, 2, 1))[..., None]


def _merge(
    out: mx.array | None, lse: mx.array | None, o_b: mx.array, lse_b: mx.array, layout: str
) -> tuple[mx.array, mx.array]:
    """Two partial attentions of the same queries over disjoint keys, merged by log-sum-exp."""
    o_b = o_b.astype(mx.float32)
    if out is None or lse is None:
        return o_b, lse_b
    # Every pair computed has at least one visible key per row (no masks; a diagonal pair is
    # causal), so the log-sum-exps are finite and the weights need no guard against -inf.
    new_lse = mx.logaddexp(lse, lse_b)
    w_old = mx.exp(_lse_weights(lse - new_lse, o_b.shape, layout))
    w_new = mx.exp(_lse_weights(lse_b - new_lse, o_b.shape, layout))
    return out * w_old + o_b * w_new, new_lse


@mx.custom_function
def _ring_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    spec: AttentionSpec,
    layout: str,
    sharding: str,
    group: mx.distributed.Group,
) -> tuple[mx.array, mx.array]:
    rank, size = group.rank(), group.size()
    seq = 2 if layout == "BHSD" else 1
    mine = _chunks(rank, size, sharding)
    queries = _split(q, len(mine), seq)
    outs: list[mx.array | None] = [None] * len(mine)
    lses: list[mx.array | None] = [None] * len(mine)
    block = mx.stack([k, v])
    last = None
    for step in range(size):
        incoming = None
        if step < size - 1:  # issued before this step's kernels and independent of them
            incoming = last = ring_shift(block, group, after=last)
        theirs = _chunks((rank - step) % size, size, sharding)
        for i, (q_i, chunk_i) in enumerate(zip(queries, mine)):
            for kv_j, chunk_j in zip(_split(block, len(theirs), seq + 1), theirs):
                pair = _pair_spec(spec, chunk_i, chunk_j)
                if pair is not None:
                    o_b, lse_b = attention_forward(q_i, kv_j[0], kv_j[1], None, None, pair, layout)
                    outs[i], lses[i] = _merge(outs[i], lses[i], o_b, lse_b, layout)
        if incoming is not None:
            block = incoming
    out = _join(outs, seq).astype(q.dtype)  # type: ignore[arg-type]
    lse = _join(lses, 1)  # type: ignore[arg-type]
    # A causal rank skips the blocks of later ranks, but its neighbours wait for it to pass them
    # on: the outputs depend on the last exchange (and so on all), so evaluating them runs them.
    return tuple(mx.depends([out, lse], [last])) if last is not None else (out, lse)


@_ring_attention.vjp
def _ring_attention_vjp(
    primals: list[mx.array],
    cotangents: list[mx.array],
    outputs: list[mx.array],
    *,
    spec: AttentionSpec,
    layout: str,
    sharding: str,
    group: mx.distributed.Group,
) -> tuple[mx.array, mx.array, mx.array]:
    q, k, v = primals
    d_out, d_lse = cotangents
    out, lse = outputs
    rank, size = group.rank(), group.size()
    seq = 2 if layout == "BHSD" else 1
    mine = _chunks(rank, size, sharding)
    parts = len(mine)
    rows = list(
        zip(*(_split(x, parts, seq) for x in (q, out, d_out)), _split(lse, parts, 1), _split(d_lse, parts, 1))
    )
    dq = [mx.zeros(q_i.shape, mx.float32) for q_i, *_ in rows]
    block = mx.stack([k, v])
    # The key/value gradients of the block in hand, travelling with it.
    d_block = mx.zeros(block.shape, mx.float32)
    # The forward's exchanges first: its output depends on the last of them.
    last = out
    for step in range(size):
        incoming = None
        if step < size - 1:
            incoming = last = ring_shift(block, group, after=last)
        theirs = _chunks((rank - step) % size, size, sharding)
        d_kv = _split(d_block, len(theirs), seq + 1)
        for i, ((q_i, out_i, d_out_i, lse_i, d_lse_i), chunk_i) in enumerate(zip(rows, mine)):
            for j, (kv_j, chunk_j) in enumerate(zip(_split(block, len(theirs), seq + 1), theirs)):
                pair = _pair_spec(spec, chunk_i, chunk_j)
                if pair is None:
                    continue
                # With the global output and log-sum-exp, each pair's kernels give exactly its
                # share of the gradients: P = exp(s - lse), delta = dO . O.
                dq_b, dk_b, dv_b, _ = attention_backward(
                    q_i, kv_j[0], kv_j[1], None, None, out_i, lse_i, d_out_i, d_lse_i, pair, layout
                )
                dq[i] = dq[i] + dq_b.astype(mx.float32)
                d_kv[j] = d_kv[j] + mx.stack([dk_b, dv_b]).astype(mx.float32)
        # W shifts in all: the gradients of block b arrive back at rank b.
        d_block = last = ring_shift(_join(d_kv, seq + 1), group, after=last)
        if incoming is not None:
            block = incoming
    d_q = mx.depends([_join(dq, seq)], [last])[0]  # every block passed on, as in the forward
    return d_q.astype(q.dtype), d_block[0].astype(k.dtype), d_block[1].astype(v.dtype)


# --------------------------------------------------------------------------- public functions


def ring_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float | None = None,
    causal: bool = False,
    group: mx.distributed.Group | None = None,
    layout: str = "BHSD",
    sharding: str = "contiguous",
    return_lse: bool = False,
) -> mx.array | tuple[mx.array, mx.array]:
    """Attention over a sequence sharded across the ranks of `group`, forward and backward.

    Every rank passes its own shard of q, k and v, as `shard_sequence` cuts them, and gets the
    attention output of its queries over the whole sequence. Contiguous shards: rank r holds
    positions r * S / W to (r + 1) * S / W - 1. Zigzag shards: the sequence cut into 2W
    chunks, rank r holds chunks r and 2W - 1 - r, one after the other. A group of size 1 is
    `flash_attention`.

    Every call first checks, in one small all-gather under a deadline, that all ranks pass the
    same shapes, dtype, layout and flags (`ValueError` naming the rank that differs,
    `CollectiveTimeout` naming this rank when a rank never arrives). It does so eagerly, so
    the function cannot run inside `mx.compile`.

    A call's messages, forward and backward, go in one fixed order, and the ring pairs messages
    by order. Two calls in one graph are ordered only where one's inputs depend on the other's
    output (as layers of a model are); evaluate independent calls one at a time.

    Causal attention over contiguous shards is imbalanced: rank r computes r + 1 of the W
    blocks (the last rank W times the first's work), forward and backward, and every step
    waits for the slowest rank. Zigzag shards balance it: every rank computes 2W + 1 pairs of
    chunks (two of them diagonal, half masked), the same work everywhere, in up to four kernel
    launches per step, each a quarter of a contiguous block.

    Args:
        q: this rank's queries, (B, H, S / W, D) or (B, S / W, H, D) per `layout`; float32,
            float16 or bfloat16.
        k: this rank's keys, (B, Hkv, S / W, D) in the same layout and dtype; Hkv divides H
            (GQA/MQA).
        v: this rank's values, the shape of `k`.
        scale: multiplies the scores; default 1 / sqrt(D).
        causal: position p of the whole sequence sees positions j <= p.
        group: the ranks sharing the sequence; default the global group.
        layout: "BHSD" or "BSHD", for q, k, v and the output.
        sharding: "contiguous" or "zigzag": how the sequence was cut (`shard_sequence`).
        return_lse: also return the (B, H, S / W) float32 log-sum-exp of every row's scores
            over the whole sequence.

    Returns:
        This rank's shard of the output, q's shape and dtype (and the log-sum-exp with
        `return_lse`).
    """
    fn = "ring_attention"
    group = resolve_group(group)
    batch, heads, _, lq, lk, head_dim = _check_qkv(fn, q, k, v, layout)
    if lk != lq:
        raise ValueError(f"[{fn}] k has {lk} positions and q {lq}; expected equal shards of one sequence")
    _check_sharding(fn, sharding, lq, "q's shard")
    if group.size() == 1:
        return flash_attention(q, k, v, scale=scale, causal=causal, layout=layout, return_lse=return_lse)
    agree(
        fn,
        group,
        q=q.shape,
        k=k.shape,
        flags=(
            _DTYPE_CODES[q.dtype],
            LAYOUTS.index(layout),
            SHARDINGS.index(sharding),
            int(bool(causal)),
            int(bool(return_lse)),
        ),
    )
    spec = AttentionSpec(
        scale=float(1.0 / math.sqrt(head_dim) if scale is None else scale), causal=bool(causal)
    )
    out, lse = _ring_attention(q, k, v, spec=spec, layout=layout, sharding=sharding, group=group)
    if return_lse:
        return out, lse.reshape(batch, heads, lq)
    return out


def _check_sharding(fn: str, sharding: str, length: int, what: str) -> None:
    """`sharding` must be known, and zigzag needs an even `length` (two equal chunks)."""
    if sharding not in SHARDINGS:
        raise ValueError(f"[{fn}] sharding is {sharding!r}; expected one of {', '.join(SHARDINGS)}")
    if sharding == "zigzag" and length % 2:
        raise ValueError(
            f"[{fn}] {what} has {length} positions; zigzag shards hold two equal chunks: expected an even number"
        )


def _sequence_axis(fn: str, x: mx.array, layout: str) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f"[{fn}] layout is {layout!r}; expected one of {', '.join(LAYOUTS)}")
    check_array(fn, "x", x)
    if x.ndim != 4:
        raise ValueError(f"[{fn}] x has shape {tuple(x.shape)}; expected 4 axes ({layout})")
    return 2 if layout == "BHSD" else 1


def shard_sequence(
    x: mx.array, group: mx.distributed.Group | None = None, layout: str = "BHSD", sharding: str = "contiguous"
) -> mx.array:
    """This rank's shard of the sequence axis of `x`, as `ring_attention` takes it.

    Args:
        x: a (B, H, S, D) or (B, S, H, D) array (per `layout`) of the whole sequence.
        group: the ranks sharing the sequence; default the global group.
        layout: "BHSD" or "BSHD".
        sharding: "contiguous": positions r * S / W to (r + 1) * S / W - 1 for rank r of W;
            "zigzag": chunks r and 2W - 1 - r of 2W, joined.

    Returns:
        This rank's (B, H, S / W, D) or (B, S / W, H, D) shard.
    """
    fn = "shard_sequence"
    group = resolve_group(group)
    axis = _sequence_axis(fn, x, layout)
    _check_sharding(fn, sharding, 0, "x")
    size = group.size()
    parts = size if sharding == "contiguous" else 2 * size
    if x.shape[axis] % parts:
        raise ValueError(
            f"[{fn}] the sequence length is {x.shape[axis]}; {sharding} sharding over {size} ranks "
            f"needs {parts} to divide it"
        )
    chunks = mx.split(x, parts, axis=axis)
    return _join([chunks[c] for c in _chunks(group.rank(), size, sharding)], axis)


def gather_sequence(
    x: mx.array, group: mx.distributed.Group | None = None, layout: str = "BHSD", sharding: str = "contiguous"
) -> mx.array:
    """The whole sequence from every rank's shard (`shard_sequence`'s inverse), on every rank.

    Args:
        x: this rank's (B, H, S / W, D) or (B, S / W, H, D) shard.
        group: the ranks sharing the sequence; default the global group.
        layout: "BHSD" or "BSHD".
        sharding: how the shards were cut: "contiguous" or "zigzag".

    Returns:
        The (B, H, S, D) or (B, S, H, D) array, its positions in order.
    """
    fn = "gather_sequence"
    group = resolve_group(group)
    axis = _sequence_axis(fn, x, layout)
    _check_sharding(fn, sharding, x.shape[axis], "x")
    size = group.size()
    if size == 1:
        return x
    # all_gather concatenates along the first axis: bring the sequence there and back.
    gathered = mx.moveaxis(mx.distributed.all_gather(mx.moveaxis(x, axis, 0), group=group), 0, axis)
    if sharding == "contiguous":
        return gathered
    pieces = mx.split(gathered, 2 * size, axis=axis)  # rank r's two chunks at 2r and 2r + 1
    order = [0] * (2 * size)
    for rank in range(size):
        for at, chunk in enumerate(_chunks(rank, size, sharding)):
            order[chunk] = 2 * rank + at
    return _join([pieces[i] for i in order], axis)


# --------------------------------------------------------------------------- module


class RingAttention(nn.Module):
    """Multi-head attention on precomputed, sequence-sharded q, k, v: a thin module over
    `ring_attention` (layout "BSHD" by default, as `FlashAttention`)."""

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        causal: bool = False,
        scale: float | None = None,
        layout: str = "BSHD",
        sharding: str = "contiguous",
        group: mx.distributed.Group | None = None,
    ):
        super().__init__()
        self.num_heads, self.head_dim, self.causal, self.layout = num_heads, head_dim, causal, layout
        self.sharding = sharding
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
        self.group = group

    def __call__(self, q: mx.array, k: mx.array, v: mx.array) -> mx.array:
        _check_heads("RingAttention", q, self.num_heads, self.head_dim, self.layout)
        return ring_attention(  # type: ignore[return-value]
            q, k, v, scale=self.scale, causal=self.causal, group=self.group, layout=self.layout,
            sharding=self.sharding,
        )  # fmt: skip


# --------------------------------------------------------------------------- reference


def ring_attention_reference(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float | None = None,
    causal: bool = False,
    layout: str = "BHSD",
) -> mx.array:
    """What `ring_attention` computes, on the whole (unsharded) sequence in plain MLX ops: it is
    `attention_reference`, named here for the tests and benchmarks."""
    return attention_reference(q, k, v, scale=scale, causal=causal, layout=layout)


__all__ = [
    "RingAttention",
    "gather_sequence",
    "ring_attention",
    "ring_attention_reference",
    "shard_sequence",
]
