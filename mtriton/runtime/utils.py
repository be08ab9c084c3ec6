"""Small host-side helpers users call around launches."""

from __future__ import annotations


def cdiv(x: int, y: int) -> int:
    """Ceiling division of two Python ints."""
    return (x + y - 1) // y


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()
