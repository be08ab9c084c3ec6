"""Ring attention: sequence-parallel flash attention over the ranks of an `mx.distributed` group.

Each of the W ranks holds one contiguous shard of the sequence: rank r has positions
r * S / W .. (r + 1) * S / W - 1 of q, k and v (`shard_sequence` cuts them). The key/value
blocks travel around the ring (rank r sends to r + 1), so after W steps every rank has run the
mtriton flash-attention kernel of its own queries against every block, merging the partial
outputs with their log-sum-exps: out = sum_b exp(lse_b - lse) out_b, lse = logsumexp_b lse_b.
No rank ever holds more than its own shard and one travelling block; no (S, S) matrix exists.

The backward is the same ring run again (`mx.custom_function`): every rank recomputes each
block's probabilities from the global log-sum-exp with the flash backward kernels, keeps the
query gradient at home, and sends the key/value gradients around with their block, so that
they arrive back at the block's owner after W steps. Accumulators are float32.

Each step's exchange is put in the graph before that step's compute and does not depend on it,
so MLX may run the transfer of the next block while the kernel works on this one.

Causal attention: the diagonal block is causal, blocks of earlier ranks are seen whole and
blocks of later ranks are skipped (but still passed on). With contiguous shards rank r
computes r + 1 of the W blocks, so the last rank does W times the work of the first and the
step time follows it. Zigzag sharding (rank r holding chunks r and 2W - 1 - r of 2W) evens
this out; it is a follow-up, not done here.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from ..attention import LAYOUTS, _check_qkv, attention_reference, flash_attention
from ..attention.backward import attention_backward
from ..attention.forward import attention_forward
from ..attention.spec import AttentionSpec
from ._comm import agree, check_divides, resolve_group, ring_neighbours

# Codes of the non-shape arguments every rank must agree on.
_DTYPE_CODES = {mx.float32: 0, mx.float16: 1, mx.bfloat16: 2}


# --------------------------------------------------------------------------- the differentiable ring


def _block_spec(spec: AttentionSpec, rank: int, source: int) -> AttentionSpec | None:
    """The attention of this rank's queries to the block of rank `source`: None when it sees none
    of it (causal, a later block), causal on the diagonal, full for earlier blocks."""
    if not spec.causal:
        return spec
    if source > rank:
        return None
    return spec if source == rank else AttentionSpec(scale=spec.scale)


def _lse_weights(lse: mx.array, shape: tuple[int, ...], layout: str) -> mx.array:
    """A (B * H, Lq) log-sum-exp as (B, H, Lq, 1) or (B, Lq, H, 1), to scale outputs in `layout`."""
    batch, heads, lq = (shape[0], shape[1], shape[2]) if layout == "BHSD" else (shape[0], shape[2], shape[1])
    lse = lse.reshape(batch, heads, lq)
    return (lse if layout == "BHSD" else lse.transpose(0, 2, 1))[..., None]


def _shift_after(x: mx.array, previous: mx.array | None, group: mx.distributed.Group) -> mx.array:
    """Sends `x` to the next rank and returns the previous rank's, after the exchange that gave
    `previous`.

    Two orders matter. Between ranks: when every rank sends before it receives, blocks past the
    sockets' buffers (16 MB here) deadlock the ring backend, every rank stuck in its send
    (`_comm.ring_shift` does that); so even ranks send first and odd ranks receive first, which
    leaves no cycle of waiting senders for any world size. Within a rank: the ring matches
    messages between two ranks by their order alone, and MLX evaluates independent parts of a
    graph in no fixed order, so a rank that sent a gradient block before a key/value block
    its neighbour receives first would swap them; chaining every exchange to the one before
    gives each rank the same order.
    """
    if previous is not None:
        x = mx.depends([x], [previous])[0]
    nxt, prev = ring_neighbours(group)
    if group.rank() % 2 == 0:
        sent = mx.distributed.send(x, nxt, group=group)
        return mx.depends([mx.distributed.recv_like(x, prev, group=group)], [sent])[0]
    received = mx.distributed.recv_like(x, prev, group=group)
    sent = mx.distributed.send(mx.depends([x], [received])[0], nxt, group=group)
    return mx.depends([received], [sent])[0]


@mx.custom_function
def _ring_attention(
    q: mx.array, k: mx.array, v: mx.array, *, spec: AttentionSpec, layout: str, group: mx.distributed.Group
) -> tuple[mx.array, mx.array]:
    rank, size = group.rank(), group.size()
    block = mx.stack([k, v])
    out = lse = None
    last = None
    for step in range(size):
        incoming = None
        if step < size - 1:  # issued before this step's kernel and independent of it
            incoming = last = _shift_after(block, last, group)
        block_spec = _block_spec(spec, rank, (rank - step) % size)
        if block_spec is not None:
            o_b, lse_b = attention_forward(q, block[0], block[1], None, None, block_spec, layout)
            o_b = o_b.astype(mx.float32)
            if out is None:
                out, lse = o_b, lse_b
            else:
                # Every row sees at least its own key (the diagonal block comes first), so
                # the log-sum-exps are finite and the weights need no guard against -inf.
                new_lse = mx.logaddexp(lse, lse_b)
                out = out * mx.exp(_lse_weights(lse - new_lse, q.shape, layout)) + o_b * mx.exp(
                    _lse_weights(lse_b - new_lse, q.shape, layout)
                )
                lse = new_lse
        if incoming is not None:
            block = incoming
    out = out.astype(q.dtype)  # type: ignore[union-attr]
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
    group: mx.distributed.Group,
) -> tuple[mx.array, mx.array, mx.array]:
    q, k, v = primals
    d_out, d_lse = cotangents
    out, lse = outputs
    rank, size = group.rank(), group.size()
    block = mx.stack([k, v])
    # The key/value gradients of the block in hand, travelling with it.
    d_block = mx.zeros(block.shape, mx.float32)
    dq = mx.zeros(q.shape, mx.float32)
    last = None
    for step in range(size):
        incoming = None
        if step < size - 1:
            incoming = last = _shift_after(block, last, group)
        block_spec = _block_spec(spec, rank, (rank - step) % size)
        if block_spec is not None:
            # With the global output and log-sum-exp, each block's kernels give exactly its
            # share of the gradients: P = exp(s - lse), delta = dO . O.
            dq_b, dk_b, dv_b, _ = attention_backward(
                q, block[0], block[1], None, None, out, lse, d_out, d_lse, block_spec, layout
            )
            dq = dq + dq_b.astype(mx.float32)
            d_block = d_block + mx.stack([dk_b, dv_b]).astype(mx.float32)
        # W shifts in all: the gradients of block b arrive back at rank b.
        d_block = last = _shift_after(d_block, last, group)
        if incoming is not None:
            block = incoming
    dq = mx.depends([dq], [last])[0]  # every block passed on, as in the forward
    return dq.astype(q.dtype), d_block[0].astype(k.dtype), d_block[1].astype(v.dtype)


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
    return_lse: bool = False,
) -> mx.array | tuple[mx.array, mx.array]:
    """Attention over a sequence sharded across the ranks of `group`, forward and backward.

    Every rank passes its own contiguous shard (rank r: positions r * S / W to
    (r + 1) * S / W - 1 of q, k and v, as `shard_sequence` cuts them) and gets the attention
    output of its queries over the whole sequence. A group of size 1 is `flash_attention`.

    Every call first checks, in one small all-gather under a deadline, that all ranks pass the
    same shapes, dtype, layout and flags (`ValueError` naming the rank that differs,
    `CollectiveTimeout` naming this rank when a rank never arrives). It does so eagerly, so
    the function cannot run inside `mx.compile`.

    Causal with contiguous shards is imbalanced: rank r computes r + 1 of the W blocks (the
    last rank W times the first's work), forward and backward. Zigzag sharding would even it
    out; it is not implemented.

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
    if group.size() == 1:
        return flash_attention(q, k, v, scale=scale, causal=causal, layout=layout, return_lse=return_lse)
    agree(
        fn,
        group,
        q=q.shape,
        k=k.shape,
        flags=(_DTYPE_CODES[q.dtype], LAYOUTS.index(layout), int(bool(causal)), int(bool(return_lse))),
    )
    spec = AttentionSpec(
        scale=float(1.0 / math.sqrt(head_dim) if scale is None else scale), causal=bool(causal)
    )
    out, lse = _ring_attention(q, k, v, spec=spec, layout=layout, group=group)
    if return_lse:
        return out, lse.reshape(batch, heads, lq)
    return out


def shard_sequence(x: mx.array, group: mx.distributed.Group | None = None, layout: str = "BHSD") -> mx.array:
    """This rank's contiguous shard of the sequence axis of `x`, as `ring_attention` takes it.

    Args:
        x: a (B, H, S, D) or (B, S, H, D) array (per `layout`) of the whole sequence.
        group: the ranks sharing the sequence; default the global group.
        layout: "BHSD" or "BSHD".

    Returns:
        Positions r * S / W to (r + 1) * S / W - 1 for rank r of W.
    """
    fn = "shard_sequence"
    group = resolve_group(group)
    if layout not in LAYOUTS:
        raise ValueError(f"[{fn}] layout is {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(x, mx.array) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, mx.array) else type(x).__name__
        raise ValueError(f"[{fn}] x has shape {shape}; expected 4 axes ({layout})")
    axis = 2 if layout == "BHSD" else 1
    check_divides(fn, "the sequence length", x.shape[axis], group)
    length = x.shape[axis] // group.size()
    start = group.rank() * length
    index = (slice(None),) * axis + (slice(start, start + length),)
    return x[index]


def gather_sequence(x: mx.array, group: mx.distributed.Group | None = None, layout: str = "BHSD") -> mx.array:
    """The whole sequence from every rank's shard (`shard_sequence`'s inverse), on every rank.

    Args:
        x: this rank's (B, H, S / W, D) or (B, S / W, H, D) shard.
        group: the ranks sharing the sequence; default the global group.
        layout: "BHSD" or "BSHD".

    Returns:
        The (B, H, S, D) or (B, S, H, D) array, in rank order along the sequence.
    """
    group = resolve_group(group)
    if layout not in LAYOUTS:
        raise ValueError(f"[gather_sequence] layout is {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if group.size() == 1:
        return x
    axis = 2 if layout == "BHSD" else 1
    # all_gather concatenates along the first axis: bring the sequence there and back.
    gathered = mx.distributed.all_gather(mx.moveaxis(x, axis, 0), group=group)
    return mx.moveaxis(gathered, 0, axis)


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
        group: mx.distributed.Group | None = None,
    ):
        super().__init__()
        self.num_heads, self.head_dim, self.causal, self.layout = num_heads, head_dim, causal, layout
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
        self.group = group

    def __call__(self, q: mx.array, k: mx.array, v: mx.array) -> mx.array:
        axis = 1 if self.layout == "BHSD" else 2
        if (
            not isinstance(q, mx.array)
            or q.ndim != 4
            or q.shape[axis] != self.num_heads
            or q.shape[3] != self.head_dim
        ):
            shape = tuple(q.shape) if isinstance(q, mx.array) else type(q).__name__
            raise ValueError(
                f"[RingAttention] q has shape {shape}; expected {self.num_heads} heads of {self.head_dim} "
                f"({'(B, H, S, D)' if self.layout == 'BHSD' else '(B, S, H, D)'})"
            )
        return ring_attention(  # type: ignore[return-value]
            q, k, v, scale=self.scale, causal=self.causal, group=self.group, layout=self.layout
        )


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
