"""`execute`: runs an IR function over a launch grid with MLX array ops.

All programs of a chunk execute together: every IR value carries a leading
program dimension, and control flow that programs disagree on runs under
masks (see `control.py`). Chunks are sized so that no value exceeds
`MAX_ELEMENTS` elements, and run one after another: later chunks see earlier
chunks' writes, as later-scheduled programs would on a GPU.

Kernels with `atomic_cas` or `atomic_rmw` xchg are usually locks or spin
loops, which deadlock when every program advances in lock step (the holder
never gets past the loop that the others spin in). They run one program at a
time, in launch order, and warn once per kernel because that is slow.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import mlx.core as mx

from mtriton.ir import Block, DType, Function, PointerType, Value, walk

from .machine import Frame, InterpreterError, Launch, Memory, Ptr, Runtime, mx_dtype, scalar

MAX_ELEMENTS = 1 << 24
"""Largest number of elements one value may hold across a chunk's programs."""

_warned_sequential: set[str] = set()

Arg = mx.array | int | float | bool


def execute(fn: Function, args: Sequence[Arg], grid: tuple[int, int, int]) -> list[mx.array | None]:
    """Runs `fn` once per program of `grid`, on MLX's default device.

    A kernel with float64 arguments runs on the CPU device, the only one
    where MLX computes float64.

    Args:
        fn: The kernel to run.
        args: One per `fn.params`, in order. A pointer parameter takes an
            `mx.array` whose row-major contents are the memory it points to, in
            its bytes, read as the pointer's element type (an array of another
            dtype is reinterpreted, as `mtriton.reinterpret` passes it); passing
            the same array object for two pointer parameters makes them alias. A scalar parameter takes a
            Python number or a 0-d array. Inputs are never modified.
        grid: Programs along axes 0, 1 and 2; axis 0 varies fastest.

    Returns:
        Per parameter: the new contents (input shape and dtype) of each pointer
        parameter that a store or atomic executed on, else None.

    Raises:
        InterpreterError: A runtime fault (out-of-bounds access, failed
            `device_assert`, unsupported construct), located at its op.
    """
    if len(args) != len(fn.params):
        raise InterpreterError(f"kernel {fn.name!r} takes {len(fn.params)} arguments, got {len(args)}")
    if any(isinstance(arg, mx.array) and arg.dtype == mx.float64 for arg in args):
        with mx.stream(mx.cpu):
            return _execute(fn, args, grid)
    return _execute(fn, args, grid)


def _execute(fn: Function, args: Sequence[Arg], grid: tuple[int, int, int]) -> list[mx.array | None]:
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    memory, slots = _memory(fn, args)
    bindings = [
        _scalar_arg(fn, param.name, arg, param.value.type.elem) if slot is None else slot
        for param, arg, slot in zip(fn.params, args, slots)
    ]
    programs = grid[0] * grid[1] * grid[2]
    sequential = _is_sequential(fn)
    if sequential and fn.name not in _warned_sequential:
        _warned_sequential.add(fn.name)
        warnings.warn(
            f"kernel {fn.name!r} uses atomic_cas or atomic_xchg: the interpreter runs it "
            "one program at a time, which is slow",
            stacklevel=2,
        )
    chunk = 1 if sequential else max(1, MAX_ELEMENTS // _largest_value(fn))
    plans: dict[Block, list[list[Value]]] = {}
    for start in range(0, programs, chunk):
        _run_chunk(fn, memory, bindings, grid, range(start, min(start + chunk, programs)), plans)
    results: list[mx.array | None] = []
    for arg, slot in zip(args, slots):
        if slot is None or slot not in memory.written:
            results.append(None)
        else:
            results.append(memory.contents(slot, arg.dtype, arg.shape))
    return results


def _memory(fn: Function, args: Sequence[Arg]) -> tuple[Memory, list[int | None]]:
    """Flat buffers for the pointer arguments, and each parameter's buffer slot."""
    names = [p.name for p in fn.params]
    sizes = [0] * len(args)
    nbytes = [0] * len(args)
    buffers: list[mx.array | None] = [None] * len(args)
    slots: list[int | None] = []
    for i, (param, arg) in enumerate(zip(fn.params, args)):
        elem = param.value.type.elem
        if not isinstance(elem, PointerType):
            slots.append(None)
            continue
        alias = next((j for j in range(i) if args[j] is arg and slots[j] is not None), None)
        if alias is not None:
            slots.append(alias)
            continue
        if not isinstance(arg, mx.array):
            raise InterpreterError(
                f"argument {param.name!r} of kernel {fn.name!r} must be an mx.array holding "
                f"{elem.element} values, got {type(arg).__name__}"
            )
        sizes[i] = arg.size
        nbytes[i] = arg.nbytes
        # padding to a multiple of 8 bytes, then the 8-byte scratch slot (see `Memory`)
        extra = ((nbytes[i] + 7) // 8 * 8 + 8 - nbytes[i]) // arg.itemsize
        buffers[i] = mx.concatenate([arg.reshape(-1), mx.zeros((extra,), dtype=arg.dtype)])
        slots.append(i)
    return Memory(names, sizes, nbytes, buffers), slots


def _is_sequential(fn: Function) -> bool:
    """Whether `fn` must run one program at a time (see the module docstring)."""
    return any(
        op.name == "atomic_cas" or (op.name == "atomic_rmw" and op.attrs.get("kind") == "xchg")
        for op in walk(fn.body)
    )


def _largest_value(fn: Function) -> int:
    """The element count of the largest value in `fn`, per program."""
    largest = 1
    for op in walk(fn.body):
        values = list(op.results)
        for region in op.regions:
            values += region.args
        for value in values:
            largest = max(largest, value.type.numel)
    return largest


def _run_chunk(
    fn: Function,
    memory: Memory,
    bindings: list[int | mx.array],
    grid: tuple[int, int, int],
    programs: range,
    plans: dict[Block, list[list[Value]]],
) -> None:
    """Runs the programs in `programs` together.

    Args:
        bindings: Per parameter, its buffer slot (pointers) or its 0-d value (scalars).
        plans: Release plans, shared by all chunks of the launch (see `Launch`).
    """
    count = len(programs)
    flat = mx.arange(programs.start, programs.stop, dtype=mx.int64)
    program_ids = (
        (flat % grid[0]).astype(mx.int32),
        (flat // grid[0] % grid[1]).astype(mx.int32),
        (flat // (grid[0] * grid[1])).astype(mx.int32),
    )
    values: list[Runtime] = []
    for binding in bindings:
        if isinstance(binding, int):
            zero = mx.array(0, dtype=memory.index_dtype(binding))
            values.append(Ptr(binding, mx.broadcast_to(zero, (count,))))
        else:
            values.append(mx.broadcast_to(binding, (count,)))
    frame = Frame((count,), None, {}, Launch(fn.name, grid, program_ids, memory, plans))
    frame.run(fn.body, values)
    mx.eval(*memory.live())


def _scalar_arg(fn: Function, name: str, arg: Arg, dtype: DType) -> mx.array:
    """A scalar argument as a 0-d array of its parameter's type."""
    if isinstance(arg, mx.array):
        if arg.size != 1:
            raise InterpreterError(f"scalar argument {name!r} of kernel {fn.name!r} got shape {arg.shape}")
        return arg.reshape(()).astype(mx_dtype(dtype))
    return scalar(arg, dtype)
