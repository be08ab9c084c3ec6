"""Helpers every suite shares: seeded inputs made on MLX's device, host copies, poisoned outputs.

Inputs come from `mx.random` with a fixed key, on MLX's default device: on a GPU machine they are
made on the GPU, where NumPy's generator plus the upload cost about 8 ns per element on the host
(27 ns on this 2-core machine; the GPU quick run makes ~2.5 billion input elements). Host copies
(`host`) are made only inside the references that need them, never at setup, because the GPU
tier checks most entries against a float32 reference on the device instead.

The loader skips modules whose names start with `_`, so this file registers no suite.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

SEED = 0
SHORT_DTYPE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int32": "i32"}


class Inputs:
    """Seeded random arrays: each call takes the next key split from `seed`, so a setup function
    makes the same arrays whenever it runs, on any device."""

    def __init__(self, seed: int = SEED) -> None:
        self._key = mx.random.key(seed)

    def _next(self) -> mx.array:
        self._key, key = mx.random.split(self._key)
        return key

    def normal(self, shape: tuple[int, ...], dtype: str = "float32", scale: float = 1.0) -> mx.array:
        """Standard normal values times `scale`, rounded to `dtype` (made in float32)."""
        values = mx.random.normal(shape, dtype=mx.float32, key=self._next())
        return (values * scale if scale != 1.0 else values).astype(getattr(mx, dtype))

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: str = "float32") -> mx.array:
        """Uniform values in [low, high), rounded to `dtype`."""
        values = mx.random.uniform(low, high, shape, dtype=mx.float32, key=self._next())
        return values.astype(getattr(mx, dtype))

    def integers(self, shape: tuple[int, ...], high: int) -> mx.array:
        """int32 values in [0, high)."""
        return mx.random.randint(0, high, shape, dtype=mx.int32, key=self._next())


def host(array: mx.array) -> np.ndarray:
    """The float64 NumPy copy a float64 reference computes on."""
    return np.array(array.astype(mx.float32), dtype=np.float64)


def f32(array: mx.array) -> mx.array:
    """`array` in float32 on MLX's device, what the float32 device references compute on."""
    return array.astype(mx.float32)


def poisoned(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """An output buffer of NaN (or -1 for integers), so elements a kernel fails to write show."""
    fill = float("nan") if mx.issubdtype(dtype, mx.floating) else -1
    return mx.full(shape, fill, dtype=dtype)


def evaluated(buffers: dict[str, mx.array]) -> dict[str, mx.array]:
    """`buffers`, evaluated, so that making them is not timed as part of the first launch."""
    mx.eval(list(buffers.values()))
    return buffers


def spread_indices(total: int, count: int, seed: int = SEED) -> np.ndarray:
    """`count` sorted indices in [0, total): the first, the last and the rest at random, for
    sampled checks (the ends are where masking and tail handling go wrong)."""
    if count >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    middle = rng.choice(np.arange(1, total - 1), count - 2, replace=False)
    return np.sort(np.concatenate([[0, total - 1], middle]))


def take(output: Any, indices: np.ndarray, axis: int) -> Any:
    """`output`'s entries at `indices` along `axis`, where it is: an MLX array, a NumPy array
    (a float64 reference) or a PyTorch tensor (the Triton column's output)."""
    if isinstance(output, mx.array):
        return mx.take(output, mx.array(indices.astype(np.int32)), axis=axis)
    if isinstance(output, np.ndarray):
        return np.take(output, indices, axis=axis)
    import torch

    return output.index_select(axis, torch.as_tensor(indices, device=output.device))
