"""Exceptions raised by the emulators (metal-emu and cuda-emu).

Each names the kernel and, where one thread is to blame, the thread, its
threadgroup and the source location it last passed: the ``kernels.py:42``
comment of the statement, or the line of the Metal source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EmulatorError(RuntimeError):
    """A kernel did something a GPU would not run correctly.

    Attributes:
        kernel: The kernel's host name (``custom_kernel_<name>...``).
        threadgroup: ``threadgroup_position_in_grid`` of the thread to blame.
        thread: Its ``thread_position_in_threadgroup``.
        location: The ``file.py:line`` of the statement it ran last, if the
            source carries one.
        metal_line: The line of the Metal source of that statement.
    """

    def __init__(
        self,
        message: str,
        *,
        kernel: str,
        threadgroup: tuple[int, int, int] | None = None,
        thread: tuple[int, int, int] | None = None,
        location: str | None = None,
        metal_line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kernel = kernel
        self.threadgroup = threadgroup
        self.thread = thread
        self.location = location
        self.metal_line = metal_line


class CompileError(EmulatorError):
    """The C++ compiler rejected the kernel (or the shim lacks a feature)."""


class BarrierDivergence(EmulatorError):
    """Threads of a threadgroup reached different barriers, or some returned
    while others waited at one."""


class Deadlock(EmulatorError):
    """Threads can make no progress (spinning on atomics nothing changes) or
    the kernel ran past its CPU-time budget."""


class OutOfBounds(EmulatorError):
    """A thread accessed memory outside a device buffer (or a wild address).

    Attributes:
        buffer: The parameter whose buffer the address is in the guard of (or
            nearest to); None for an address far from every buffer.
        element: The element index the address falls on, counted from the
            buffer's element 0 (negative before its start).
        access: ``"read"``, ``"write"`` or ``"access"`` (unknown).
    """

    def __init__(
        self,
        message: str,
        *,
        kernel: str,
        threadgroup: tuple[int, int, int] | None = None,
        thread: tuple[int, int, int] | None = None,
        location: str | None = None,
        metal_line: int | None = None,
        buffer: str | None = None,
        element: int | None = None,
        access: str = "access",
    ) -> None:
        super().__init__(
            message,
            kernel=kernel,
            threadgroup=threadgroup,
            thread=thread,
            location=location,
            metal_line=metal_line,
        )
        self.buffer = buffer
        self.element = element
        self.access = access


class ThreadgroupMemoryError(EmulatorError):
    """Threadgroup memory over the 32 KiB limit, or accessed out of bounds."""


class UnwrittenOutput(EmulatorError):
    """Elements of an output no thread wrote (with ``init_value=None``), or of an
    input the kernel writes in place.

    Attributes:
        output: The parameter.
        elements: The flat indices of every element no thread wrote, ascending.
    """

    def __init__(self, message: str, *, output: str, elements: Sequence[int], kernel: str) -> None:
        super().__init__(message, kernel=kernel)
        self.output = output
        self.elements = tuple(elements)


@dataclass(frozen=True)
class RaceAccess:
    """One of the two accesses of a race.

    Attributes:
        threadgroup: ``threadgroup_position_in_grid`` of the thread.
        thread: Its ``thread_position_in_threadgroup``.
        kind: ``"read"``, ``"write"``, ``"atomic read"`` or ``"atomic write"``.
        memory: What it accessed: ``"input 'x'"``, ``"threadgroup array 's'"``.
        element: The element index for a device buffer; the byte offset for a
            threadgroup array.
        size: The bytes accessed.
        location: The ``file.py:line`` of the statement that made it, if the
            source carries one.
        source_line: The line of the Metal (or CUDA) source of that statement.
    """

    threadgroup: tuple[int, int, int]
    thread: tuple[int, int, int]
    kind: str
    memory: str
    element: int
    size: int
    location: str | None
    source_line: int | None


class DataRace(EmulatorError):
    """Outputs depend on the order in which a threadgroup's threads run.

    Attributes:
        accesses: The two conflicting accesses a traced rerun found, in the
            order they ran (empty if it found none).
    """

    def __init__(
        self,
        message: str,
        *,
        kernel: str,
        threadgroup: tuple[int, int, int] | None = None,
        accesses: Sequence[RaceAccess] = (),
    ) -> None:
        first = accesses[0] if accesses else None
        super().__init__(
            message,
            kernel=kernel,
            threadgroup=threadgroup if first is None else first.threadgroup,
            thread=None if first is None else first.thread,
            location=None if first is None else first.location,
            metal_line=None if first is None else first.source_line,
        )
        self.accesses = tuple(accesses)


class KernelFault(EmulatorError):
    """Anything else a thread did wrong: integer division by zero, stack
    overflow, a simdgroup_matrix operation without all 32 lanes."""
