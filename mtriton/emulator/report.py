"""Turns the runtime's error record into a Python exception.

Messages say what went wrong, then where::

    [metal-emu] kernel oob: out-of-bounds write: 0 bytes past the end of output
    'out' (element 99 of 99, 4-byte elements)
      --> kernels.py:31 (Metal line 7)
          7 | out[i + 1] = a[i];  // kernels.py:31
      thread (2, 0, 0) of threadgroup (3, 0, 0), thread_position_in_grid (98, 0, 0)
      in custom_kernel_oob_float_float
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import abi
from .errors import (
    BarrierDivergence,
    Deadlock,
    EmulatorError,
    KernelFault,
    OutOfBounds,
    RaceAccess,
    ThreadgroupMemoryError,
)


@dataclass(frozen=True)
class Buffer:
    """A guarded buffer of one call.

    Attributes:
        name: The parameter it feeds.
        role: ``"input"``, ``"output"``, ``"shape"``, ``"strides"`` or ``"ndim"``.
        ptr: Start of the mapped bytes.
        nbytes: Their number.
        itemsize: Bytes per element.
        lead: Offset of element 0 from ``ptr`` (inputs with negative strides).
    """

    name: str
    role: str
    ptr: int
    nbytes: int
    itemsize: int
    lead: int


@dataclass(frozen=True)
class Context:
    """What an error message needs to know about the call."""

    name: str
    host_name: str
    lines: Sequence[str]
    locations: Sequence[tuple[int, str | None]]
    threadgroup_names: Sequence[str]
    buffers: Sequence[Buffer]
    group_size: tuple[int, ...]
    timeout_s: float
    language: str = "Metal"


def _triple(values: Sequence[int]) -> tuple[int, int, int]:
    return (int(values[0]), int(values[1]), int(values[2]))


@dataclass(frozen=True)
class _Thread:
    group: tuple[int, int, int]
    pos: tuple[int, int, int]
    loc: int

    def describe(self, ctx: Context) -> str:
        grid = tuple(g * s + p for g, s, p in zip(self.group, ctx.group_size, self.pos, strict=True))
        return f"thread {self.pos} of threadgroup {self.group}, thread_position_in_grid {grid}"


def _location(ctx: Context, loc: int) -> tuple[str | None, int | None]:
    if 0 <= loc < len(ctx.locations):
        line, py = ctx.locations[loc]
        return py, line
    return None, None


def _site(ctx: Context, loc: int) -> str:
    return _site_of(ctx, *_location(ctx, loc))


def _owner(buf: Buffer) -> str:
    return f"'{buf.name}'" if buf.role in ("shape", "strides", "ndim") else f"{buf.role} '{buf.name}'"


def _element(buf: Buffer, offset: int) -> int:
    """The element of `buf` at byte `offset` from its mapped start (floor: -1 just before)."""
    return (offset - buf.lead) // buf.itemsize


def _fault_message(err: abi.Error, ctx: Context) -> tuple[type[EmulatorError], str, dict[str, Any]]:
    verb = {1: "write", 0: "read"}.get(err.access, "access")
    if err.tag >= 0:
        buf = ctx.buffers[err.tag]
        offset = err.offset
        elements = buf.nbytes // buf.itemsize
        if offset >= buf.nbytes:
            where = f"{offset - buf.nbytes} bytes past the end of"
        else:
            where = f"{-offset} bytes before the start of"
        element = _element(buf, offset)
        nearest = ", in no buffer's guard: the nearest buffer" if err.nearest else ""
        return (
            OutOfBounds,
            f"out-of-bounds {verb}: {where} {_owner(buf)} (element {element} of {elements}, "
            f"{buf.itemsize}-byte elements{nearest})",
            {"buffer": buf.name, "element": element, "access": verb},
        )
    if err.tag <= abi.TAG_TG:
        name = ctx.threadgroup_names[abi.TAG_TG - err.tag]
        side = "past the end of" if err.offset >= 0 else "before the start of"
        return (
            ThreadgroupMemoryError,
            f"out-of-bounds {verb} {side} threadgroup array '{name}' ({err.size} bytes; byte offset {err.offset})",
            {},
        )
    return (
        OutOfBounds,
        f"{verb} of address {err.addr:#x}, which is in no buffer (a wild or null pointer)",
        {"access": verb},
    )


_MESSAGES: dict[int, tuple[type[EmulatorError], str]] = {
    abi.ERR_BARRIER_EXITED: (
        BarrierDivergence,
        "threads of a threadgroup wait at a barrier that others of it never reach: they returned",
    ),
    abi.ERR_BARRIER_MISMATCH: (
        BarrierDivergence,
        "threads of a threadgroup wait at different barriers",
    ),
    abi.ERR_SPIN_DEADLOCK: (
        Deadlock,
        "threads spin on atomics that no running thread changes (the emulator runs threadgroups "
        "one at a time; a GPU does not promise more)",
    ),
    abi.ERR_TIMEOUT: (
        Deadlock,
        "the kernel ran for more than {timeout:g} s of CPU time (an endless loop?)",
    ),
    abi.ERR_TG_LIMIT: (
        ThreadgroupMemoryError,
        "threadgroup memory: the arrays need {size} bytes with '{name}', over the 32768-byte limit",
    ),
    abi.ERR_STACK_OVERFLOW: (
        KernelFault,
        "a thread overflowed its stack (a large thread-local array?)",
    ),
    abi.ERR_ARITHMETIC: (
        KernelFault,
        "integer division by zero (or INT_MIN / -1); Metal gives an undefined value",
    ),
    abi.ERR_MATRIX_LANES: (
        KernelFault,
        "a simdgroup_matrix operation ran without all 32 lanes of the SIMD-group",
    ),
    abi.ERR_MISALIGNED: (
        KernelFault,
        "misaligned address: a vector access, cp.async or ldmatrix at an address that is not a "
        "multiple of its size (a GPU faults)",
    ),
}


def raise_error(err: abi.Error, ctx: Context) -> NoReturn:
    """Raises the exception that describes ``err``.

    Args:
        err: The runtime's error record (``kind`` != 0).
        ctx: The call it came from.

    Raises:
        EmulatorError: Always, as the subclass that fits the error.
    """
    group = _triple(err.group)
    first = _Thread(group, _triple(err.pos), err.loc) if err.has_pos else None
    second = _Thread(group, _triple(err.pos2), err.loc2) if err.has_pos2 else None
    kind = err.kind
    fields: dict[str, Any] = {}
    if kind == abi.ERR_FAULT:
        cls, what, fields = _fault_message(err, ctx)
    else:
        cls, template = _MESSAGES.get(kind, (EmulatorError, "internal error (kind {kind}) {name}"))
        what = template.format(
            kind=kind,
            timeout=ctx.timeout_s,
            size=err.size,
            name=err.text.decode(errors="replace"),
        )
    parts = [f"[metal-emu] kernel {ctx.name}: {what}"]
    if first is not None:
        parts.append(_site(ctx, first.loc))
        parts.append(f"  {first.describe(ctx)}")
    if second is not None:
        label = "returned, last" if kind == abi.ERR_BARRIER_EXITED else "waits"
        parts.append(f"  while {second.describe(ctx)} {label} at")
        parts.append(_site(ctx, second.loc))
    parts.append(f"  in {ctx.host_name}")
    py, line = _location(ctx, first.loc) if first else (None, None)
    raise cls(
        "\n".join(parts),
        kernel=ctx.host_name,
        threadgroup=group if first else None,
        thread=first.pos if first else None,
        location=py,
        metal_line=line,
        **fields,
    )


def _memory(ctx: Context, tag: int, offset: int) -> tuple[str, int]:
    """What a traced access touched and the element (device) or byte offset (threadgroup)."""
    if tag >= 0:
        buf = ctx.buffers[tag]
        return _owner(buf), _element(buf, offset)
    return f"threadgroup array '{ctx.threadgroup_names[abi.TAG_TG - tag]}'", offset


def race_accesses(race: abi.Race, ctx: Context) -> list[RaceAccess]:
    """The two accesses of a race a traced run found."""
    out = []
    for a in (race.first, race.second):
        memory, element = _memory(ctx, a.tag, a.offset)
        py, line = _location(ctx, a.loc)
        kind = ("atomic " if a.atomic else "") + ("write" if a.write else "read")
        out.append(RaceAccess(_triple(a.group), _triple(a.pos), kind, memory, element, a.size, py, line))
    return out


def describe_race(accesses: Sequence[RaceAccess], ctx: Context) -> str:
    """Both accesses of a race, each with the statement that made it."""
    first, second = accesses
    same_group = first.threadgroup == second.threadgroup
    order = (
        "with no barrier between" if same_group else "in another threadgroup (nothing orders threadgroups)"
    )
    parts = []
    for k, a in enumerate(accesses):
        if a.memory.startswith("threadgroup array"):
            what = f"byte {a.element}" if a.size == 1 else f"bytes {a.element} to {a.element + a.size - 1}"
        else:
            what = f"element {a.element}"
        lead = "  " if k == 0 else f"  then, {order}, "
        parts.append(f"{lead}thread {a.thread} of threadgroup {a.threadgroup}: {a.kind} of {a.memory} {what}")
        parts.append(_site_of(ctx, a.location, a.source_line))
    return "\n".join(parts)


def _site_of(ctx: Context, py: str | None, line: int | None) -> str:
    if line is None:
        return "  --> (before the first statement of the kernel body)"
    head = f"  --> {py} ({ctx.language} line {line})" if py else f"  --> {ctx.language} line {line}"
    text = ctx.lines[line - 1].strip() if line <= len(ctx.lines) else ""
    return f"{head}\n  {line:>5} | {text}"
