"""Arrays made for kernels to fill (`empty`, `zeros`, `full` and their `_like` forms), and
whether such an array is still fresh.

Below the backends and the runtime: these functions mark the array they return, and the GPU
launch (`backends/gpu_launch.py`) takes the mark when it hands the array to a kernel as a new
output: `empty`'s with no initial contents, `zeros`'/`full`'s filled by MLX before the kernel
runs (the custom kernel's `init_value`: one write pass, where a copy-on-write of an `mx.zeros`
array costs the fill, then a read and a write).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import mlx.core as mx
import numpy as np

# id -> (weak reference, fill value or None) of marked arrays no kernel has written yet.
_fresh: dict[int, tuple[weakref.ref, float | None]] = {}
# What `take_fresh` returns for an array that is not fresh.
NOT_FRESH = object()


def _mark(array: mx.array, fill: float | None) -> mx.array:
    key = id(array)
    _fresh[key] = (weakref.ref(array, lambda _, key=key: _fresh.pop(key, None)), fill)
    return array


def empty(shape: Any, dtype: Any = mx.float32) -> mx.array:
    """An array for a kernel to fill, like `torch.empty`.

    Its contents are unspecified until a kernel writes them. The GPU backends
    hand such an array to the kernel as a fresh output, with no copy; the
    interpreter sees zeros.
    """
    return _mark(mx.zeros(shape, dtype=dtype), None)


def empty_like(array: mx.array, dtype: Any = None) -> mx.array:
    """`empty(array.shape, dtype or array.dtype)`, like `torch.empty_like`: the output a
    Triton user allocates for a kernel that writes every element."""
    if not isinstance(array, mx.array):
        raise TypeError(f"empty_like: expected an mx.array, got {type(array).__name__}")
    return empty(array.shape, array.dtype if dtype is None else dtype)


def full(shape: Any, value: float, dtype: Any = mx.float32) -> mx.array:
    """`mx.full(shape, value, dtype)` for a kernel to update (atomics into zeros, a running
    maximum from -inf), like `torch.full`.

    On the GPU backends the first kernel that writes it gets it as a fresh output that MLX fills
    with `value` first, instead of a copy-on-write. That holds where MLX's fill value (a float32)
    gives exactly `value` in `dtype`; other values make a plain `mx.full` array.
    """
    array = mx.full(shape, value, dtype=dtype)
    return _mark(array, float(value)) if _exact_fill(value, dtype) else array


def zeros(shape: Any, dtype: Any = mx.float32) -> mx.array:
    """`full(shape, 0, dtype)`, like `torch.zeros`."""
    return full(shape, 0, dtype)


def zeros_like(array: mx.array, dtype: Any = None) -> mx.array:
    """`zeros(array.shape, dtype or array.dtype)`, like `torch.zeros_like`."""
    return full_like(array, 0, dtype)


def full_like(array: mx.array, value: float, dtype: Any = None) -> mx.array:
    """`full(array.shape, value, dtype or array.dtype)`, like `torch.full_like`."""
    if not isinstance(array, mx.array):
        raise TypeError(f"full_like: expected an mx.array, got {type(array).__name__}")
    return full(array.shape, value, array.dtype if dtype is None else dtype)


def _exact_fill(value: Any, dtype: Any) -> bool:
    """Whether MLX's `init_value` (a C++ float converted to `dtype`) fills exactly `value`."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)) or math.isnan(value):
        return False  # NaN payloads are not kept through float32
    if float(np.float32(value)) != value:
        return False
    if dtype == mx.bool_:
        return value in (0, 1)
    if mx.issubdtype(dtype, mx.integer):
        info = mx.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max and abs(value) <= 2**24
    return mx.issubdtype(dtype, mx.floating)


def take_fresh(array: Any) -> Any:
    """`NOT_FRESH` unless `array` is marked and no kernel wrote it yet; else its fill value
    (None for `empty`). It stops being fresh.

    The GPU backends hand such an array to the kernel as a new output instead of a
    copy-on-write input (`backends/gpu_launch.py`)."""
    entry = _fresh.pop(id(array), None)
    if entry is None or entry[0]() is not array:
        return NOT_FRESH
    return entry[1]
