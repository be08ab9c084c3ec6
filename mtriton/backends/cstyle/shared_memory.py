"""Sizes in threadgroup (shared) memory.

Every array placed there starts on a 16-byte boundary: vector copies (`cp.async` of 16 bytes,
packed vectors) and `ldmatrix` rows need it, and it keeps the offsets of one kernel's arrays
independent of the order their element types come in. Tiles the warpgroup unit reads start on
the repeat of their swizzle (`Staging.align`, 1024 bytes for 128-byte swizzles).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir import types as T


def align16(nbytes: int) -> int:
    """`nbytes` rounded up to a multiple of 16."""
    return (nbytes + 15) // 16 * 16


def array_bytes(dtype: T.DType, count: int) -> int:
    """Bytes an array of `count` elements of `dtype` takes, aligned (at least a byte each)."""
    return align16(max(1, dtype.itemsize) * count)


@dataclass(frozen=True)
class Staging:
    """Where a 2-D dot operand staged in threadgroup memory keeps its elements: a tile of `rows`
    rows of `cols` contiguous elements, either rows `ld` elements apart (padded against bank
    conflicts: what `ldmatrix` reads) or, with `swizzle` bytes, the warpgroup unit's canonical
    layout, whose C offset is `place` (`Warpgroup.offset` with the tile's sizes filled in).

    The swizzled layout has no padding, and starts on an `8 * swizzle`-byte boundary (its
    pattern's repeat, which the descriptors assume).
    """

    rows: int
    cols: int
    ld: int
    itemsize: int
    swizzle: int = 0
    place: str = ""

    def at(self, row: str, col: str) -> str:
        """C expression: the element offset of (`row`, `col`) from the tile's start."""
        if self.swizzle:
            return self.place.format(row=row, col=col)
        return f"({row}) * {self.ld} + {col}"

    @property
    def nbytes(self) -> int:
        return align16(self.rows * (self.cols if self.swizzle else self.ld) * self.itemsize)

    @property
    def align(self) -> int:
        return 8 * self.swizzle if self.swizzle else 16

    def start(self, row: int, col: int) -> int:
        """Byte offset of (row, col) where the swizzle leaves it in place (a row that is a
        multiple of 8): where a descriptor for the rows and columns from there starts."""
        if not self.swizzle:
            return (row * self.ld + col) * self.itemsize
        per_row = self.swizzle // self.itemsize
        return ((col // per_row) * self.rows * per_row + row * per_row + col % per_row) * self.itemsize


def align_to(nbytes: int, alignment: int) -> int:
    """`nbytes` rounded up to a multiple of `alignment`."""
    return -(-nbytes // alignment) * alignment
