"""Primitives past one machine, on `mx.distributed` (ring over TCP, MPI, NCCL): launch with `mlx.launch`.

* `AllToShardedLinear` / `ShardedToAllLinear` / `shard_linear`: tensor-parallel linears,
  interchangeable with MLX's `mlx.nn.layers.distributed` and mlx-lm's model sharding.
* `ExpertParallelMoELayer`: `SparseMoELayer` with its experts split across the ranks, tokens
  exchanged by an all-to-all built from `all_gather` and `all_sum`.

A group of size 1 (a process not launched by `mlx.launch`) makes every layer a plain call.
"""

from ._comm import TIMEOUT_ENV, CollectiveTimeout
from .expert_parallel import ExpertParallelMoELayer, exchanged_bytes
from .tensor_parallel import AllToShardedLinear, ShardedToAllLinear, shard_linear

__all__ = [
    "TIMEOUT_ENV", "AllToShardedLinear", "CollectiveTimeout", "ExpertParallelMoELayer", "ShardedToAllLinear",
    "exchanged_bytes", "shard_linear",
]  # fmt: skip
