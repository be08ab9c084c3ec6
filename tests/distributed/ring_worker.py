"""Rank side of tests/test_ring_attention.py: ring attention forward and gradients on shards.

Arguments: the output folder, then the folder holding `cases.json` and `inputs.npz` (written by
the test: the whole sequence's q, k, v and the cotangents of the output and the log-sum-exp,
float32 values already rounded to each case's dtype). Every rank cuts its own shard, runs
`ring_attention` (or `RingAttention`) with `return_lse`, differentiates
sum(out * d_out) + sum(lse * d_lse) with `mx.vjp`, and writes its shard of the output, the
lse and dq, dk, dv as float32 into `rank<r>.npz`; the error cases (and a 16 MB ring shift)
go into `rank<r>.json`.
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_primitives.distributed._comm import resolve_group, ring_shift
from mlx_primitives.distributed.ring_attention import (
    RingAttention,
    gather_sequence,
    ring_attention,
    shard_sequence,
)

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}

out_dir, in_dir = Path(sys.argv[1]), Path(sys.argv[2])
cases = json.loads((in_dir / "cases.json").read_text())
inputs = np.load(in_dir / "inputs.npz")
group = resolve_group(None)
rank, size = group.rank(), group.size()
results: dict[str, np.ndarray] = {}
errors: dict[str, str] = {}


for case in cases:
    name, layout, dtype = case["name"], case["layout"], DTYPES[case["dtype"]]
    causal, sharding = case["causal"], case.get("sharding", "contiguous")
    q, k, v, d_out = (
        shard_sequence(mx.array(inputs[f"{name}.{x}"]).astype(dtype), group, layout, sharding)
        for x in ("q", "k", "v", "d_out")
    )
    # The lse is (B, H, S) whatever the layout: shard it as a (B, H, S, 1) array.
    d_lse = shard_sequence(mx.array(inputs[f"{name}.d_lse"])[..., None], group, "BHSD", sharding)[..., 0]

    if case.get("module"):
        # the module's own output (it returns no lse), which the test compares with the function's
        _, heads, _, _, head_dim = case["shape"]
        module = RingAttention(heads, head_dim, causal=causal, layout=layout, sharding=sharding, group=group)
        results[f"{name}.module_out"] = np.array(module(q, k, v).astype(mx.float32))

    def attend(q: mx.array, k: mx.array, v: mx.array, causal: bool = causal, layout: str = layout,
               sharding: str = sharding) -> list:  # fmt: skip
        return list(
            ring_attention(
                q, k, v, causal=causal, group=group, layout=layout, sharding=sharding, return_lse=True
            )
        )

    (out, lse), (dq, dk, dv) = mx.vjp(attend, [q, k, v], [d_out, d_lse])
    for key, value in (("out", out), ("lse", lse), ("dq", dq), ("dk", dk), ("dv", dv)):
        results[f"{name}.{key}"] = np.array(value.astype(mx.float32))
        results[f"{name}.{key}.dtype"] = np.array(str(value.dtype))
    # every rank's output put back in order: the whole sequence's
    results[f"{name}.gathered"] = np.array(gather_sequence(out, group, layout, sharding).astype(mx.float32))

# A 16 MB block: past the sockets' buffers, where ranks that all send first deadlock.
big = ring_shift(mx.full((4 * 1024 * 1024,), float(rank)), group)
errors["big_shift"] = [big[0].item(), big[-1].item()]

# Ranks that disagree on shapes: the last rank has one position more.
shard = 5 + (rank == size - 1)
x = mx.zeros((1, 2, shard, 16))
try:
    ring_attention(x, x, x, group=group)
except ValueError as error:
    errors["disagree"] = str(error)
# A sequence the world size does not divide (checked locally: no collective).
try:
    shard_sequence(mx.zeros((1, 2, 4 * size + 1, 16)), group)
except ValueError as error:
    errors["indivisible"] = str(error)
# Shards of q and k of different lengths.
try:
    ring_attention(mx.zeros((1, 2, 4, 16)), x, x, group=group)
except ValueError as error:
    errors["lengths"] = str(error)

np.savez(out_dir / f"rank{rank}.npz", **results)
(out_dir / f"rank{rank}.json").write_text(json.dumps(errors))
