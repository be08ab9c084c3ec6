"""Primitives past one machine, on `mx.distributed` (ring over TCP, MPI, NCCL): launch with `mlx.launch`.

A group of size 1 (a process not launched by `mlx.launch`) makes every layer a plain call.
"""

from ._comm import TIMEOUT_ENV, CollectiveTimeout

__all__ = ["TIMEOUT_ENV", "CollectiveTimeout"]
