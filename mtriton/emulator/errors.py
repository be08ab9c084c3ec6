"""Exceptions raised by the emulators (metal-emu and cuda-emu).

Each names the kernel and, where one thread is to blame, the thread, its
threadgroup and the source location it last passed: the ``kernels.py:42``
comment of the statement, or the line of the Metal source.
"""

from __future__ import annotations


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
    """A thread accessed memory outside a device buffer (or a wild address)."""


class ThreadgroupMemoryError(EmulatorError):
    """Threadgroup memory over the 32 KiB limit, or accessed out of bounds."""


class UnwrittenOutput(EmulatorError):
    """Elements of an output no thread wrote (with ``init_value=None``)."""


class DataRace(EmulatorError):
    """Outputs depend on the order in which a threadgroup's threads run."""


class KernelFault(EmulatorError):
    """Anything else a thread did wrong: integer division by zero, stack
    overflow, a simdgroup_matrix operation without all 32 lanes."""
