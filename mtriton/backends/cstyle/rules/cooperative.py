"""What reductions and scans share: the geometry of their groups, accumulator types, and
the threadgroup arrays they stage blocks and per-warp values in.

Every sequence of writes to threadgroup memory starts with a barrier, so readers need none
after them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .... import ir
from ....ir import types as T
from ..render import combiner_kind
from ..shared_memory import align16, array_bytes

if TYPE_CHECKING:
    from ..lowering import Lowering


def acc_dtypes(region: ir.Block, dtypes: list[T.DType]) -> list[T.DType]:
    """Sums and products of half/bfloat accumulate in float, as the interpreter does."""
    if combiner_kind(region) in ("add", "mul") and dtypes[0] in (T.float16, T.bfloat16):
        return [T.float32]
    return dtypes


def group_geometry(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, length, inner) of a reduction/scan along `axis`."""
    outer = 1
    for s in shape[:axis]:
        outer *= s
    inner = 1
    for s in shape[axis + 1 :]:
        inner *= s
    return outer, shape[axis], inner


def group_element(g: str, pos: str, length: int, inner: int) -> str:
    """Flat index of element `pos` of group `g` (g = outer * inner + inner index)."""
    if inner == 1:
        return f"(({g}) * {length} + ({pos}))"
    return f"((({g}) / {inner}) * {length * inner} + ({pos}) * {inner} + ({g}) % {inner})"


def declare(lo: Lowering, names: list[str], values: list[str], dtypes: list[T.DType]) -> None:
    """Declares accumulators `names` of `dtypes`, set to `values`."""
    for name, value, dtype in zip(names, values, dtypes):
        lo.emit(f"{lo.ctype(dtype)} {name} = {value};")


def fold(lo: Lowering, region: ir.Block, accs: list[str], values: list[str], dtypes: list[T.DType]) -> None:
    """accs = combine(accs, values), through the combine region (or its builtin operator)."""
    for acc, value in zip(accs, lo.combine(region, accs, values, dtypes)):
        lo.emit(f"{acc} = {value};")


def publish_per_warp(
    lo: Lowering, values: list[str], dtypes: list[T.DType], offset: int, lane: int
) -> list[str]:
    """Lane `lane` of every warp writes `values` to threadgroup arrays indexed by warp."""
    bufs = per_warp_buffers(lo, dtypes, offset)
    lo.barrier()
    for buf, value in zip(bufs, values):
        lo.emit(f"if (lane == {lane}) {buf}[warp] = {value};")
    lo.barrier()
    return bufs


def exchange_per_warp(lo: Lowering, values: list[str], dtypes: list[T.DType], lane: int) -> list[str]:
    """`publish_per_warp` for a reduction of a whole block, placed by `begin_exchange` (no
    leading barrier where the last use of threadgroup memory was another exchange)."""
    size = sum(array_bytes(dt, lo.warps) for dt in dtypes)
    offset = begin_exchange(lo, size)
    bufs = per_warp_buffers(lo, dtypes, offset)
    for buf, value in zip(bufs, values):
        lo.emit(f"if (lane == {lane}) {buf}[warp] = {value};")
    end_exchange(lo, offset, size)
    return bufs


def begin_exchange(lo: Lowering, size: int) -> int:
    """Starts an exchange of `size` bytes through threadgroup memory: writes, one barrier,
    reads (`end_exchange`). Returns its byte offset; emits the leading barrier unless the
    last use of threadgroup memory was another exchange (`Lowering.last_exchange`).

    Back-to-back exchanges (softmax's max then sum, layer norm's mean then variance, a
    cumsum first in its kernel) need no barrier before their writes when they write bytes
    the last one did not: earlier readers of those bytes read them before the last
    exchange's barrier, which the writing thread has passed. One barrier per exchange
    instead of two.
    """
    events, previous = lo.last_exchange
    offset = 0 if previous is None or previous[0] >= size else align16(previous[1])
    if events != lo.memory_events:
        lo.barrier()
    return offset


def end_exchange(lo: Lowering, offset: int, size: int) -> None:
    """The barrier after an exchange's writes; what follows until the next event reads it."""
    lo.barrier()
    lo.last_exchange = (lo.memory_events, (offset, offset + size))


def per_warp_buffers(lo: Lowering, dtypes: list[T.DType], offset: int) -> list[str]:
    """The threadgroup arrays, one value per warp, that `publish_per_warp` fills at `offset`."""
    bufs = []
    for dt in dtypes:
        bufs.append(lo.scratch(dt, lo.warps, offset))
        offset += array_bytes(dt, lo.warps)
    return bufs


def stage_all(lo: Lowering, values: list[ir.Value]) -> tuple[list[str], int]:
    """Writes blocks to threadgroup memory, one after another, between barriers.

    Returns:
        Each block's buffer and the first free byte after them.
    """
    offset = 0
    bufs = []
    lo.barrier()
    for v in values:
        dtype = lo.get(v).dtype
        bufs.append(lo.scratch(dtype, v.type.numel, offset))
        offset += array_bytes(dtype, v.type.numel)
        lo.stage_out(v, bufs[-1])
    lo.barrier()
    return bufs, offset
