"""Sizes in threadgroup (shared) memory.

Every array placed there starts on a 16-byte boundary: vector copies (`cp.async` of 16 bytes,
packed vectors) and `ldmatrix` rows need it, and it keeps the offsets of one kernel's arrays
independent of the order their element types come in.
"""

from __future__ import annotations

from ...ir import types as T


def align16(nbytes: int) -> int:
    """`nbytes` rounded up to a multiple of 16."""
    return (nbytes + 15) // 16 * 16


def array_bytes(dtype: T.DType, count: int) -> int:
    """Bytes an array of `count` elements of `dtype` takes, aligned (at least a byte each)."""
    return align16(max(1, dtype.itemsize) * count)
