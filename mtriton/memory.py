"""Arrays made for kernels to fill: `empty`, `empty_like`, and whether such an array is still fresh.

Below the backends and the runtime: `mtriton.empty` marks an array, and the GPU launch
(`backends/gpu_launch.py`) takes the mark when it hands the array to a kernel as a new output.
"""

from __future__ import annotations

import weakref
from typing import Any

import mlx.core as mx

# id -> weak reference of arrays made by `empty` and not yet written by a kernel.
_fresh: dict[int, weakref.ref] = {}


def empty(shape: Any, dtype: Any = mx.float32) -> mx.array:
    """An array for a kernel to fill, like `torch.empty`.

    Its contents are unspecified until a kernel writes them. The GPU backends
    hand such an array to the kernel as a fresh output, with no copy; the
    interpreter sees zeros.
    """
    array = mx.zeros(shape, dtype=dtype)
    key = id(array)
    _fresh[key] = weakref.ref(array, lambda _, key=key: _fresh.pop(key, None))
    return array


def empty_like(array: mx.array, dtype: Any = None) -> mx.array:
    """`empty(array.shape, dtype or array.dtype)`, like `torch.empty_like`: the output a
    Triton user allocates for a kernel that writes every element."""
    if not isinstance(array, mx.array):
        raise TypeError(f"empty_like: expected an mx.array, got {type(array).__name__}")
    return empty(array.shape, array.dtype if dtype is None else dtype)


def take_fresh(array: Any) -> bool:
    """Whether `array` came from `empty` and no kernel wrote it yet; it stops being fresh.

    The GPU backends hand such an array to the kernel as a new output instead of a
    copy-on-write input (`backends/gpu_launch.py`)."""
    ref = _fresh.pop(id(array), None)
    return ref is not None and ref() is array
