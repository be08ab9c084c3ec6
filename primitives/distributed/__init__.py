"""Primitives past one machine, on `mx.distributed` (ring over TCP, MPI, NCCL): launch with `mlx.launch`.

* `AllToShardedLinear` / `ShardedToAllLinear` / `shard_linear`: tensor-parallel linears,
  interchangeable with MLX's `mlx.nn.layers.distributed` and mlx-lm's model sharding.
* `ExpertParallelMoELayer`: `SparseMoELayer` with its experts split across the ranks, tokens
  exchanged by an all-to-all built from `all_gather` and `all_sum`.
* `ring_attention` / `RingAttention`: sequence-parallel flash attention, K/V blocks passed
  around the ring (`shard_sequence` / `gather_sequence` cut and rebuild the sequence).

A group of size 1 (a process not launched by `mlx.launch`) makes every layer a plain call.
"""

from ._comm import TIMEOUT_ENV, CollectiveTimeout
from .expert_parallel import ExpertParallelMoELayer, exchanged_bytes
from .ring_attention import (
    SHARDINGS,
    RingAttention,
    gather_sequence,
    ring_attention,
    ring_attention_reference,
    shard_sequence,
)
from .tensor_parallel import AllToShardedLinear, ShardedToAllLinear, shard_linear

__all__ = [
    "SHARDINGS", "TIMEOUT_ENV", "AllToShardedLinear", "CollectiveTimeout", "ExpertParallelMoELayer",
    "RingAttention", "ShardedToAllLinear", "exchanged_bytes", "gather_sequence", "ring_attention",
    "ring_attention_reference", "shard_linear", "shard_sequence",
]  # fmt: skip
