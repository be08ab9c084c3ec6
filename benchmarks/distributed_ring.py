"""Ring attention's scaling with the number of ranks: one fixed sequence split over 1, 2, ... ranks.

Each entry of `CASES` takes the group and the quick flag and returns the step time of one
rank's share (the slowest rank's median: the ring moves in lockstep), the work of the whole
sequence and the bytes this rank sent. On a group of size 1 `ring_attention` is
`flash_attention`, the baseline the ranks are compared with. Strong scaling: the sequence is
the same at every world size, so perfect scaling halves the time from 1 to 2 ranks. Causal
shards are imbalanced (rank r computes r + 1 of W blocks), which the causal entries show:
contiguous shards against zigzag ones.

The launcher (`benchmarks/distributed.py`) runs these under `mlx.launch`; every rank calls
the same entry with the same arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
from mlx_primitives.distributed.ring_attention import ring_attention

from .timing import time_ranks

# (batch, heads, kv heads, whole sequence, head dim)
QUICK = (1, 2, 2, 32, 16)
CPU = (1, 4, 4, 512, 64)


def _case(
    causal: bool, backward: bool, sharding: str = "contiguous"
) -> Callable[[mx.distributed.Group, bool], dict]:
    def run(group: mx.distributed.Group, quick: bool) -> dict:
        batch, heads, kv_heads, seq, head_dim = QUICK if quick else CPU
        size = group.size()
        shard = seq // size
        key = mx.random.key(group.rank())
        q = mx.random.normal((batch, heads, shard, head_dim), key=key)
        k, v = (
            mx.random.normal((batch, kv_heads, shard, head_dim), key=mx.random.split(key)[i]) for i in (0, 1)
        )
        mx.eval(q, k, v)

        def attend(q: mx.array, k: mx.array, v: mx.array) -> mx.array:
            return ring_attention(q, k, v, causal=causal, group=group, sharding=sharding)  # type: ignore[return-value]

        if backward:
            grad = mx.grad(lambda q, k, v: attend(q, k, v).sum(), argnums=(0, 1, 2))

            def step() -> list[mx.array]:
                return list(grad(q, k, v))
        else:

            def step() -> list[mx.array]:
                return [attend(q, k, v)]

        # The whole sequence's attention: 2 dots of 2 * S^2 * D flops per head forward (half with
        # causal), and the backward's 5 dots (one recomputing the scores).
        flops = (
            4 * batch * heads * seq * seq * head_dim * (0.5 if causal else 1.0) * (3.5 if backward else 1.0)
        )
        block = 2 * batch * kv_heads * shard * head_dim * q.dtype.size  # k and v of one shard
        # Forward: W - 1 key/value blocks. Backward: that again, and W float32 gradient blocks.
        sent = (size - 1) * block * (2 if backward else 1) + (
            size * block * 4 // q.dtype.size if backward else 0
        )
        return {
            "seconds": time_ranks(group, step, 2 if quick else 5),
            "work": flops,
            "unit": "FLOP/s",
            "bytes_exchanged": sent if size > 1 else 0,
            "shape": f"B={batch} H={heads} Hkv={kv_heads} S={seq} D={head_dim}"
            + (" causal" if causal else "")
            + f" {sharding}",
        }

    return run


CASES: dict[str, Callable[[mx.distributed.Group, bool], dict]] = {
    "ring_attention_forward": _case(causal=False, backward=False),
    "ring_attention_forward_backward": _case(causal=False, backward=True),
    "ring_attention_causal_forward_backward": _case(causal=True, backward=True),
    "ring_attention_causal_zigzag_forward_backward": _case(causal=True, backward=True, sharding="zigzag"),
}
