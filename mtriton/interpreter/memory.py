"""Rules for pointer arithmetic and casts, loads, stores and atomics.

A pointer value is a `Ptr`: which parameter's buffer, and offsets in elements of
its pointee type (int32 unless the buffer needs more; see `Memory.index_dtype`).
A pointer cast keeps the address and changes the unit the offsets count: a cast
to a narrower type multiplies them, a cast to a wider one divides them and keeps
the bytes left over (`Ptr.rem`). Loads gather from the flat buffer viewed as the
pointee type and stores scatter into it; every access first checks, with one
vectorized min/max, that its effective lanes are in bounds (whole elements of
that type) and aligned to its size.

Atomics run the lanes of a launch chunk in one fixed serialization order:
programs in order, then each program's lanes in row-major order. Lanes are
stably sorted by address, so lanes hitting the same address form a contiguous
segment in that order, and each lane's old value is the buffer's value combined
with the segment's exclusive prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from mtriton.ir import DType, Op

from .machine import Frame, InterpreterError, Ptr, Runtime, elem_of, executes, mx_dtype


@executes("addptr")
def _addptr(frame: Frame, op: Op, args: list[Runtime]) -> Ptr:
    ptr, offset = args
    return Ptr(ptr.param, ptr.offsets + offset.astype(ptr.offsets.dtype), ptr.rem)


def pointer_cast(ptr: Ptr, src: DType, dst: DType) -> Ptr:
    """`ptr`, a pointer to `src` elements, as a pointer to `dst` elements at the same bytes."""
    a, b = src.itemsize, dst.itemsize
    if a == b:
        return ptr
    if a > b:  # narrower: each old element is a // b new ones
        offsets = ptr.offsets * (a // b)
        if ptr.rem is None:
            return Ptr(ptr.param, offsets)
        return Ptr(ptr.param, offsets + ptr.rem // b, ptr.rem % b)
    position = ptr.offsets * a if ptr.rem is None else ptr.offsets * a + ptr.rem
    return Ptr(ptr.param, mx.floor_divide(position, b), mx.remainder(position, b))


def _pointee(op: Op) -> DType:
    return op.operands[0].type.elem.element


def _effective_lanes(frame: Frame, op: Op, ptr: Ptr, mask: mx.array | None) -> mx.array | None:
    """The lanes of an access that take effect, after checking they are in bounds and aligned.

    Returns:
        A bool array shaped like `ptr.offsets`, or None when every lane does
        (also when a mask turns out to be all true, which spares later `where`s).

    Raises:
        InterpreterError: An effective lane addresses outside the parameter, or between
            two elements of the pointee type.
    """
    lanes = frame.lanes(mask, op.operands[0].type.shape)
    offsets = ptr.offsets
    stray = None if ptr.rem is None else ptr.rem != 0
    if lanes is None:
        low, high = mx.min(offsets), mx.max(offsets)
        misaligned = mx.any(stray) if stray is not None else mx.array(False)
        mx.eval(low, high, misaligned)
    else:
        safe = mx.where(lanes, offsets, 0)
        low, high, every, some = mx.min(safe), mx.max(safe), mx.all(lanes), mx.any(lanes)
        misaligned = mx.any(mx.logical_and(stray, lanes)) if stray is not None else mx.array(False)
        mx.eval(low, high, every, some, misaligned)
        if not some.item():
            return lanes  # every lane masked off: nothing is accessed, even in an empty array
        if every.item():
            lanes = None
    name = frame.memory.names[ptr.param]
    dtype = _pointee(op)
    if misaligned.item():
        raise InterpreterError(
            f"misaligned access through pointer argument {name!r}: a pointer cast to {dtype} "
            f"({dtype.itemsize} bytes) addresses bytes between two of its elements at {op.loc}"
        )
    size = frame.memory.count(ptr.param, dtype)
    bad = high.item() if high.item() >= size else low.item() if low.item() < 0 else None
    if bad is not None:
        nbytes = frame.memory.nbytes[ptr.param]
        same = dtype.itemsize * frame.memory.sizes[ptr.param] == nbytes
        elements = f"{size} elements" if same else f"{size} {dtype} elements ({nbytes} bytes)"
        raise InterpreterError(
            f"index {bad} out of bounds for pointer argument {name!r} of {elements} at {op.loc}"
        )
    return lanes


def _scatter_indices(frame: Frame, op: Op, ptr: Ptr, lanes: mx.array | None) -> mx.array:
    """Flat scatter indices: ineffective lanes go to the buffer's scratch slot."""
    if lanes is None:
        return ptr.offsets.reshape(-1)
    scratch = frame.memory.scratch(ptr.param, _pointee(op))
    return mx.where(lanes, ptr.offsets, scratch).reshape(-1)


@executes("load")
def _load(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    ptr, mask, other = args + [None] * (3 - len(args))
    lanes = _effective_lanes(frame, op, ptr, mask)
    buffer = frame.memory.view(ptr.param, _pointee(op))
    if lanes is None:
        return mx.take(buffer, ptr.offsets)
    values = mx.take(buffer, mx.where(lanes, ptr.offsets, 0))
    return mx.where(lanes, values, 0 if other is None else other)


@executes("store")
def _store(frame: Frame, op: Op, args: list[Runtime]) -> None:
    ptr, value, mask = args + [None] * (3 - len(args))
    lanes = _effective_lanes(frame, op, ptr, mask)
    memory = frame.memory
    value = mx.broadcast_to(value, ptr.offsets.shape).reshape(-1)
    buffer = memory.view(ptr.param, _pointee(op))
    # Duplicate addresses: whichever lane the scatter applies last wins, as Triton allows.
    indices = _scatter_indices(frame, op, ptr, lanes)
    memory.update(ptr.param, mx.put_along_axis(buffer, indices, value, axis=None))


# ---------------------------------------------------------------- atomics


class _Serialized:
    """The lanes of one atomic op, sorted into serialization order per address.

    Attributes:
        order: Permutation that sorts the flat lanes by (address, lane).
        address: Sorted flat addresses (ineffective lanes at the scratch slot).
        first: Whether a sorted lane is the first of its address's segment.
        last: Whether it is the last of its segment.
        current: The buffer's value at each sorted lane's address.
    """

    def __init__(self, frame: Frame, op: Op, ptr: Ptr, lanes: mx.array | None) -> None:
        flat = _scatter_indices(frame, op, ptr, lanes).astype(mx.int64)
        count = flat.size
        position = mx.arange(count, dtype=mx.int64)
        # Sort by address * count + position: unique keys make the order stable.
        self.order = mx.argsort(flat * count + position)
        self.address = mx.take(flat, self.order)
        boundary = self.address[1:] != self.address[:-1]
        edge = mx.array([True])
        self.first = mx.concatenate([edge, boundary])
        self.last = mx.concatenate([boundary, edge])
        self.current = mx.take(frame.memory.view(ptr.param, _pointee(op)), self.address)
        self.count = count

    def sorted(self, values: mx.array) -> mx.array:
        """`values` (shaped like the pointer block) in sorted-lane order."""
        return mx.take(values.reshape(-1), self.order)

    def unsorted(self, values: mx.array, shape: tuple[int, ...]) -> mx.array:
        """Sorted-lane `values` back in lane order, shaped `shape`."""
        out = mx.put_along_axis(mx.zeros_like(values), self.order, values, axis=None)
        return out.reshape(shape)

    def previous(self, values: mx.array) -> mx.array:
        """Each sorted lane's predecessor's value (garbage for segment firsts)."""
        return mx.concatenate([values[:1], values[:-1]])


def _segmented_scan(
    values: mx.array, address: mx.array, combine: Callable[[mx.array, mx.array], mx.array]
) -> mx.array:
    """Inclusive scan of `values` within runs of equal `address` (Hillis-Steele)."""
    shift = 1
    while shift < values.size:
        same = address[shift:] == address[:-shift]
        tail = mx.where(same, combine(values[:-shift], values[shift:]), values[shift:])
        values = mx.concatenate([values[:shift], tail])
        shift *= 2
    return values


def _add_scan(values: mx.array, lanes: _Serialized, dtype: DType) -> mx.array:
    """Inclusive segmented sum in a wide type: a cumsum minus each segment's base."""
    wide = mx.float64 if dtype.is_floating() else mx.uint64 if dtype.kind == "uint" else mx.int64
    values = values.astype(wide)
    total = mx.cumsum(values)
    position = mx.arange(values.size, dtype=mx.int64)
    start = mx.cummax(mx.where(lanes.first, position, 0))
    return total - mx.take(total - values, start)


_RMW_COMBINE: dict[str, Callable[[mx.array, mx.array], mx.array]] = {
    "add": lambda a, b: a + b,
    "max": mx.maximum,
    "min": mx.minimum,
    "and": mx.bitwise_and,
    "or": mx.bitwise_or,
    "xor": mx.bitwise_xor,
    "xchg": lambda a, b: b,
}


@executes("atomic_rmw")
def _atomic_rmw(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    ptr, value, mask = args + [None] * (3 - len(args))
    kind = op.attrs["kind"]
    combine = _RMW_COMBINE[kind]
    dtype = elem_of(op.result)
    lanes = _Serialized(frame, op, ptr, _effective_lanes(frame, op, ptr, mask))
    values = lanes.sorted(mx.broadcast_to(value, ptr.offsets.shape))
    with mx.stream(mx.cpu):  # float sums are float64, which MLX computes only on the CPU
        if kind == "add":
            inclusive = _add_scan(values, lanes, dtype)
            current = lanes.current.astype(inclusive.dtype)
        else:
            # xchg's inclusive "scan" is each lane's own value: its successor sees it.
            inclusive = values if kind == "xchg" else _segmented_scan(values, lanes.address, combine)
            current = lanes.current
        old = mx.where(lanes.first, current, combine(current, lanes.previous(inclusive))).astype(
            mx_dtype(dtype)
        )
        final = combine(current, inclusive).astype(mx_dtype(dtype))
    _write_segment_ends(frame, op, ptr, lanes, final)
    return lanes.unsorted(old, ptr.offsets.shape)


def _write_segment_ends(frame: Frame, op: Op, ptr: Ptr, lanes: _Serialized, final: mx.array) -> None:
    """Writes each address's final value, from the last lane of its segment."""
    memory = frame.memory
    dtype = _pointee(op)
    target = mx.where(lanes.last, lanes.address, memory.scratch(ptr.param, dtype))
    memory.update(ptr.param, mx.put_along_axis(memory.view(ptr.param, dtype), target, final, axis=None))


def _bits(x: mx.array, dtype: DType) -> mx.array:
    """Floats as same-width integers: compare-and-swap compares bit patterns."""
    if not dtype.is_floating():
        return x
    return mx.view(x, {16: mx.int16, 32: mx.int32, 64: mx.int64}[dtype.bits])


@executes("atomic_cas")
def _atomic_cas(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    ptr, expected, value = args
    dtype = elem_of(op.result)
    lanes = _Serialized(frame, op, ptr, _effective_lanes(frame, op, ptr, None))
    expected = _bits(lanes.sorted(mx.broadcast_to(expected, ptr.offsets.shape)), dtype)
    value = lanes.sorted(mx.broadcast_to(value, ptr.offsets.shape))
    # A lane's outcome depends on every earlier lane at its address, which no
    # associative scan expresses: run one round per rank within the segments.
    memory = frame.memory
    pointee = _pointee(op)
    scratch = memory.scratch(ptr.param, pointee)
    position = mx.arange(lanes.count, dtype=mx.int64)
    rank = position - mx.cummax(mx.where(lanes.first, position, 0))
    # Ineffective lanes all sit at the scratch slot; they must not add rounds.
    rank = mx.where(lanes.address == scratch, 0, rank)
    rounds = int(mx.max(rank).item()) + 1
    old = lanes.current
    for turn in range(rounds):
        mine = rank == turn
        buffer = memory.view(ptr.param, pointee)
        current = mx.take(buffer, lanes.address)
        old = mx.where(mine, current, old)
        swap = mx.logical_and(mine, _bits(current, dtype) == expected)
        memory.update(
            ptr.param, mx.put_along_axis(buffer, mx.where(swap, lanes.address, scratch), value, axis=None)
        )
    memory.written.add(ptr.param)
    return lanes.unsorted(old, ptr.offsets.shape)
