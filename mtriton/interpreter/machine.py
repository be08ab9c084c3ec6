"""The interpreter's state, its runtime values and the op dispatch table.

Every IR value is held with leading *batch* dimensions: in a kernel body the
batch is `(P,)`, one entry per program of the current chunk, so a
`<128x64xf32>` value is an `(P, 128, 64)` array and a scalar is `(P,)`. The
combine regions of `reduce` and `scan` run with a wider batch (the programs and
every element being combined at once), which is why the batch is a tuple.

Within a `Frame`, `active` says which programs execute: values computed for
inactive programs are don't-cares (whoever merges them back uses `where`), and
every side effect ANDs `active` into its lane mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from mtriton import float8
from mtriton.dtypes import storage_dtype
from mtriton.errors import MTritonError
from mtriton.ir import Block, DType, Op, PointerType, Value, walk
from mtriton.ir.core import ALL_OPS, TERMINATORS


class InterpreterError(MTritonError):
    """A runtime fault of an interpreted kernel; the message ends with the op's location."""


def mx_dtype(dtype: DType) -> mx.Dtype:
    """The MLX dtype that holds values of the IR element type `dtype` (float8: its bits, uint8)."""
    if isinstance(dtype, PointerType):
        raise InterpreterError(f"pointer type {dtype} has no array representation")
    return storage_dtype(dtype)


def elem_of(value: Value) -> DType:
    """The element type of an IR value that is not a pointer."""
    elem = value.type.elem
    assert isinstance(elem, DType), f"expected a non-pointer value, got {value.type}"
    return elem


def scalar(value: bool | int | float, dtype: DType) -> mx.array:
    """A 0-d array of `value` converted to `dtype`, integers wrapping like C.

    MLX cannot build a uint64 above 2**63 from a Python int, so integers go
    through NumPy, which also makes negative literals of unsigned types wrap.
    """
    if dtype.is_bool():
        return mx.array(bool(value))
    if dtype.is_fp8():
        return mx.array(float8.encode_scalar(float(value), dtype), dtype=mx.uint8)
    if dtype.is_int():
        bits = dtype.bits
        wrapped = int(value) % (1 << bits)
        if dtype.is_signed() and wrapped >= 1 << (bits - 1):
            wrapped -= 1 << bits
        return mx.array(np.array(wrapped, dtype=f"{'i' if dtype.is_signed() else 'u'}{bits // 8}"))
    return mx.array(float(value), dtype=mx_dtype(dtype))


@dataclass
class Ptr:
    """A block of pointers into one pointer parameter's buffer.

    A pointer addresses `offsets` elements of its IR pointee type plus `rem` bytes past
    the buffer's start. `rem` is None (zero) except after a cast to a wider pointee type
    left a pointer between two of its elements (`x_u8 + 1` read as int32): such a pointer
    may be moved and cast back, but an access through it is misaligned (an error).

    Attributes:
        param: Index of the pointer parameter whose memory this points into.
        offsets: Element offsets, shaped like the value (batch + block shape), of the
            buffer's `Memory.index_dtype`.
        rem: Bytes past the element `offsets` addresses, shaped like `offsets`, or None.
    """

    param: int
    offsets: mx.array
    rem: mx.array | None = None

    def map(self, fn: Callable[[mx.array], mx.array]) -> Ptr:
        """The same buffer with `fn` applied to the offsets (shape ops)."""
        return Ptr(self.param, fn(self.offsets), None if self.rem is None else fn(self.rem))

    def byte_offsets(self, itemsize: int) -> mx.array:
        """Bytes from the buffer's start, as int64 (comparisons of pointers)."""
        position = self.offsets.astype(mx.int64) * itemsize
        return position if self.rem is None else position + self.rem.astype(mx.int64)


Runtime = mx.array | Ptr


def map_value(fn: Callable[[mx.array], mx.array], x: Runtime) -> Runtime:
    """Applies a layout function to an array or to a pointer block's offsets."""
    return x.map(fn) if isinstance(x, Ptr) else fn(x)


def arrays_of(values: Iterable[Runtime | None]) -> list[mx.array]:
    """The arrays behind runtime values, for `mx.eval`."""
    arrays: list[mx.array] = []
    for v in values:
        if isinstance(v, Ptr):
            arrays += [v.offsets] if v.rem is None else [v.offsets, v.rem]
        elif v is not None:
            arrays.append(v)
    return arrays


def expand_to(mask: mx.array, ndim: int) -> mx.array:
    """Appends size-1 dims to a batch-shaped mask so it broadcasts against `ndim` dims."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def select(cond: mx.array, a: Runtime, b: Runtime, op: Op) -> Runtime:
    """`where(cond, a, b)` for arrays or pointer blocks; `cond` may be batch-shaped.

    Raises:
        InterpreterError: `a` and `b` point into different parameters: the
            interpreter keeps one buffer per pointer value.
    """
    if isinstance(a, Ptr) or isinstance(b, Ptr):
        if not (isinstance(a, Ptr) and isinstance(b, Ptr)) or a.param != b.param:
            raise InterpreterError(
                f"selecting between pointers into different arguments is not supported "
                f"by the interpreter at {op.loc}"
            )
        cond = expand_to(cond, a.offsets.ndim)
        rem = None
        if a.rem is not None or b.rem is not None:
            zero = mx.zeros((), dtype=a.offsets.dtype)
            rem = mx.where(cond, zero if a.rem is None else a.rem, zero if b.rem is None else b.rem)
        return Ptr(a.param, mx.where(cond, a.offsets, b.offsets), rem)
    return mx.where(expand_to(cond, a.ndim), a, b)


@dataclass
class Memory:
    """The contents of every pointer parameter, as bytes that any pointee type may view.

    A parameter's buffer holds the argument's bytes, zero padding to a multiple of 8 bytes,
    then an 8-byte scratch slot: masked-off lanes of stores and atomics are sent there, so a
    scatter never needs a second pass. A pointer cast (`x_ptr.to(tl.pointer_type(tl.uint8))`)
    reads the same bytes as another type: `view` reinterprets the buffer (a float32 buffer as
    uint8, pairs of uint16 as uint32), so an access counts whole elements of its own type.

    Attributes:
        names: Parameter names, for error messages.
        sizes: Element count of each pointer argument (0 for scalars).
        nbytes: Bytes of each pointer argument (0 for scalars).
        buffers: Flat buffer per pointer parameter (of the dtype it was last viewed as), else None.
        written: Indices of parameters a store or atomic has executed on.
    """

    names: list[str]
    sizes: list[int]
    nbytes: list[int]
    buffers: list[mx.array | None]
    written: set[int] = field(default_factory=set)

    def index_dtype(self, param: int) -> mx.Dtype:
        """The integer type of offsets into parameter `param`'s buffer.

        int32 wherever it can address every byte of the buffer (a pointer cast to a one-byte
        type counts bytes): MLX's int64 elementwise ops on the CPU are about 20x slower than
        int32 ones (16 ms vs 0.7 ms to add 4M elements). Offsets only ever add, so int32
        arithmetic is exact modulo 2**32: every in-bounds address comes out right, and only an
        access more than 2**31 elements out of bounds could wrap back into range and escape
        the bounds check.
        """
        return mx.int32 if self.total_bytes(param) < 2**31 - 1 else mx.int64

    def total_bytes(self, param: int) -> int:
        """Bytes of the buffer: the argument, its padding and the scratch slot."""
        return (self.nbytes[param] + 7) // 8 * 8 + 8

    def count(self, param: int, dtype: DType) -> int:
        """How many whole `dtype` elements the argument holds (what accesses may address)."""
        return self.nbytes[param] // dtype.itemsize

    def scratch(self, param: int, dtype: DType) -> int:
        """The index of the scratch slot in the buffer viewed as `dtype`."""
        return self.total_bytes(param) // dtype.itemsize - 1

    def view(self, param: int, dtype: DType) -> mx.array:
        """The buffer's bytes as a flat array of `dtype` elements."""
        buffer = self.buffers[param]
        want = mx_dtype(dtype)
        return buffer if buffer.dtype == want else mx.view(buffer, want)

    def update(self, param: int, buffer: mx.array) -> None:
        """Replaces the buffer (any view of it) after a store or an atomic."""
        self.buffers[param] = buffer
        self.written.add(param)

    def contents(self, param: int, storage: mx.Dtype, shape: tuple[int, ...]) -> mx.array:
        """The argument's new contents, as the `storage` array of `shape` it came as."""
        buffer = self.buffers[param]
        if buffer.dtype != storage:
            buffer = mx.view(buffer, storage)
        return buffer[: self.sizes[param]].reshape(shape)

    def live(self) -> list[mx.array]:
        """The buffers that may hold unevaluated writes."""
        return [b for i, b in enumerate(self.buffers) if b is not None and i in self.written]


@dataclass
class Launch:
    """What every frame of one chunk of programs shares.

    Attributes:
        kernel: The kernel's name, for messages.
        grid: The launch grid (three axes).
        program_ids: int32 arrays of shape (P,), one per grid axis.
        memory: The parameters' buffers.
        plans: `release_plan` of each block run so far; shared by the chunks of
            one launch (not cached on the IR, which passes may rewrite).
    """

    kernel: str
    grid: tuple[int, int, int]
    program_ids: tuple[mx.array, mx.array, mx.array]
    memory: Memory
    plans: dict[Block, list[list[Value]]]

    def release_plan(self, block: Block) -> list[list[Value]]:
        if block not in self.plans:
            self.plans[block] = release_plan(block)
        return self.plans[block]


Executor = Callable[["Frame", Op, list[Any]], Any]
EXECUTORS: dict[str, Executor] = {}


def executes(*names: str) -> Callable[[Executor], Executor]:
    """Registers the decorated function as the rule that executes ops `names`.

    The rule gets the frame, the op and its operands' runtime values; it
    returns the result for a one-result op, a sequence for several, else None.
    """

    def register(fn: Executor) -> Executor:
        for name in names:
            assert name not in EXECUTORS, f"two interpreter rules for {name!r}"
            EXECUTORS[name] = fn
        return fn

    return register


def check_complete(executors: Mapping[str, Executor]) -> None:
    """Raises AssertionError naming every IR op with no `executes` rule and every rule for
    a name that is not an IR op or is a terminator (`Frame.run` handles those)."""
    problems = []
    missing = ALL_OPS - TERMINATORS - executors.keys()
    if missing:
        problems.append(f"no interpreter rule for {_names(missing)}: add one with @executes")
    unexpected = executors.keys() - (ALL_OPS - TERMINATORS)
    if unexpected:
        problems.append(
            f"interpreter rules for {_names(unexpected)}, which are not IR ops or are terminators"
        )
    if problems:
        raise AssertionError("; ".join(problems))


def _names(ops: set[str]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(ops))


def pack(op: Op, values: Sequence[Runtime]) -> Any:
    """Shapes a list of result values the way `executes` rules return them."""
    return values[0] if len(op.results) == 1 else list(values)


def release_plan(block: Block) -> list[list[Value]]:
    """Per op of `block`: the values defined in `block` that nothing after it reads.

    `Frame.run` drops them from the environment right away, so MLX frees each
    intermediate once consumed instead of holding every value of the kernel
    (each up to `MAX_ELEMENTS` elements) until the chunk ends.
    """
    last_use = dict.fromkeys(block.args, 0) if block.ops else {}
    for index, op in enumerate(block.ops):
        last_use.update(dict.fromkeys(op.results, index))
        # A value read inside a region lives until the op owning the region ends.
        for inner in [op, *(o for region in op.regions for o in walk(region))]:
            for value in inner.operands:
                if value in last_use:
                    last_use[value] = index
    plan: list[list[Value]] = [[] for _ in block.ops]
    for value, index in last_use.items():
        plan[index].append(value)
    return plan


@dataclass
class Frame:
    """Where a block runs: its batch shape, its active programs and its values.

    Attributes:
        batch: Leading dims of every value: (P,) in a kernel body.
        active: bool array of shape `batch` marking executing programs, or
            None when all are (the fast path: nothing is masked).
        env: Runtime value of each IR value in scope; shared with nested
            control-flow regions (SSA names are unique).
        launch: State shared by the whole chunk.
    """

    batch: tuple[int, ...]
    active: mx.array | None
    env: dict[Value, Runtime]
    launch: Launch

    @property
    def memory(self) -> Memory:
        return self.launch.memory

    def masked(self, active: mx.array | None) -> Frame:
        """A frame over the same values where only `active` programs execute."""
        return Frame(self.batch, active, self.env, self.launch)

    def lanes(self, mask: mx.array | None, shape: tuple[int, ...]) -> mx.array | None:
        """The lanes of a `shape`-block that take effect: `mask` AND the active programs.

        Returns None when every lane does.
        """
        if self.active is None:
            return mask
        active = expand_to(self.active, len(self.batch) + len(shape))
        if mask is None:
            return mx.broadcast_to(active, self.batch + shape)
        return mx.logical_and(mask, active)

    def run(self, block: Block, args: Sequence[Runtime]) -> list[Runtime]:
        """Executes `block` with `args` bound to its arguments.

        Returns:
            The operands of its terminator (`yield` or `condition`), or [].
        """
        for arg, value in zip(block.args, args, strict=True):
            self.env[arg] = value
        for op, dead in zip(block.ops, self.launch.release_plan(block)):
            operands = [self.env[v] for v in op.operands]
            if op.name in TERMINATORS:
                return operands
            self._bind(op, self._execute(op, operands))
            for value in dead:
                del self.env[value]
        return []

    def _execute(self, op: Op, operands: list[Runtime]) -> Any:
        rule = EXECUTORS.get(op.name)
        if rule is None:
            raise InterpreterError(f"the interpreter cannot execute `{op.name}` at {op.loc}")
        try:
            return rule(self, op, operands)
        except InterpreterError:
            raise
        except Exception as exc:  # MLX errors mean malformed IR: point at the op.
            raise InterpreterError(f"`{op.name}` failed ({exc}) at {op.loc}") from exc

    def _bind(self, op: Op, out: Any) -> None:
        if len(op.results) == 1:
            self.env[op.results[0]] = out
        elif op.results:
            for result, value in zip(op.results, out, strict=True):
                self.env[result] = value
