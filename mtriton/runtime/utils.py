"""Small host-side helpers users call around launches."""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def cdiv(x: int, y: int) -> int:
    """Ceiling division of two Python ints."""
    return (x + y - 1) // y


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def empty(shape: Any, dtype: Any = mx.float32) -> mx.array:
    """An array for a kernel to fill, like `torch.empty`.

    Its contents are unspecified until a kernel writes them. The GPU backends
    hand such an array to the kernel as a fresh output, with no copy; the
    interpreter sees zeros.
    """
    from ..backends.gpu_launch import mark_fresh

    return mark_fresh(mx.zeros(shape, dtype=dtype))
