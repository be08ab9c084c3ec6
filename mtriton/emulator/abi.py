"""ctypes mirror of ``shim/emu_abi.h`` and the loaded libraries.

The structures must match the header field for field; the runtime checks the
ABI version a kernel was built with before running it.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .compile import build_kernel, build_runtime, trace_flags
from .errors import EmulatorError

ABI_VERSION = 3

ERR_OK = 0
ERR_BARRIER_EXITED = 1
ERR_BARRIER_MISMATCH = 2
ERR_SPIN_DEADLOCK = 3
ERR_TIMEOUT = 4
ERR_FAULT = 5
ERR_TG_LIMIT = 6
ERR_STACK_OVERFLOW = 7
ERR_ARITHMETIC = 8
ERR_MATRIX_LANES = 9
ERR_INTERNAL = 10
ERR_MISALIGNED = 11
ERR_RACE = 12

TAG_TG = -1000

LAYOUT_END, LAYOUT_START = 0, 1
TRACE_WRITES, TRACE_RACES = 1, 2
ALL_GROUPS = 2**64 - 1

_U32x3 = ctypes.c_uint32 * 3


class ThreadState(ctypes.Structure):
    """``mtemu_thread_state``."""

    _fields_ = [
        ("loc", ctypes.c_int32),
        ("lane", ctypes.c_uint32),
        ("progress", ctypes.c_uint32),
        ("spins", ctypes.c_uint32),
        ("atomic", ctypes.c_uint32),
        ("attrs", ctypes.c_void_p),
    ]


class Kernel(ctypes.Structure):
    """``mtemu_kernel``: a loaded kernel as the runtime sees it."""

    _fields_ = [
        ("abi", ctypes.c_uint32),
        ("entry", ctypes.c_void_p),
        ("state", ctypes.POINTER(ThreadState)),
    ]


class Access(ctypes.Structure):
    """``mtemu_access``: one access of a traced run."""

    _fields_ = [
        ("group", _U32x3),
        ("pos", _U32x3),
        ("loc", ctypes.c_int32),
        ("tag", ctypes.c_int32),
        ("offset", ctypes.c_int64),
        ("size", ctypes.c_uint32),
        ("write", ctypes.c_uint32),
        ("atomic", ctypes.c_uint32),
    ]


class Race(ctypes.Structure):
    """``mtemu_race``: the first two conflicting accesses of a traced run."""

    _fields_ = [("first", Access), ("second", Access)]


class Launch(ctypes.Structure):
    """``mtemu_launch``: one run of a grid."""

    _fields_ = [
        ("kernel", ctypes.POINTER(Kernel)),
        ("args", ctypes.POINTER(ctypes.c_void_p)),
        ("grid", _U32x3),
        ("group_size", _U32x3),
        ("order", ctypes.c_uint32),
        ("group_order", ctypes.c_uint32),
        ("order_from", ctypes.c_uint64),
        ("order_to", ctypes.c_uint64),
        ("direct", ctypes.c_uint32),
        ("seed", ctypes.c_uint32),
        ("tg_limit", ctypes.c_uint64),
        ("stack_size", ctypes.c_uint64),
        ("cpu_seconds", ctypes.c_double),
        ("tg_poison", ctypes.c_uint32),
        ("layout", ctypes.c_uint32),
        ("trace", ctypes.c_uint32),
        ("trace_group", ctypes.c_uint64),
        ("race", ctypes.POINTER(Race)),
    ]


class Error(ctypes.Structure):
    """``mtemu_error``: what went wrong, filled by the runtime."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("loc", ctypes.c_int32),
        ("loc2", ctypes.c_int32),
        ("group", _U32x3),
        ("pos", _U32x3),
        ("pos2", _U32x3),
        ("has_pos", ctypes.c_int32),
        ("has_pos2", ctypes.c_int32),
        ("tag", ctypes.c_int32),
        ("nearest", ctypes.c_int32),
        ("access", ctypes.c_int32),
        ("offset", ctypes.c_int64),
        ("addr", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("text", ctypes.c_char * 160),
    ]


class Runtime:
    """The runtime library: guarded buffers and grid launches."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        lib.mtemu_api_table.restype = ctypes.c_void_p
        lib.mtemu_abi_version.restype = ctypes.c_uint32
        lib.mtemu_alloc.restype = ctypes.c_void_p
        lib.mtemu_alloc.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int32, ctypes.c_uint32]
        lib.mtemu_free.argtypes = [ctypes.c_void_p]
        lib.mtemu_shadow_offset.restype = ctypes.c_uint64
        lib.mtemu_shadow_init.restype = ctypes.c_int
        lib.mtemu_watch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.mtemu_watch.restype = ctypes.c_int
        lib.mtemu_unwatch.argtypes = [ctypes.c_void_p]
        lib.mtemu_group_position.argtypes = [
            ctypes.c_uint64,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_void_p,
        ]
        lib.mtemu_run.argtypes = [ctypes.POINTER(Launch), ctypes.POINTER(Error)]
        lib.mtemu_run.restype = ctypes.c_int
        if lib.mtemu_abi_version() != ABI_VERSION:
            raise RuntimeError("[metal-emu] runtime library and abi.py disagree on the ABI")
        self._lib = lib
        self.api = lib.mtemu_api_table()

    def alloc(self, nbytes: int, align: int, tag: int, layout: int = LAYOUT_END) -> int:
        """Maps ``nbytes`` between guard regions.

        Args:
            nbytes: Size of the buffer.
            align: Required alignment of its start.
            tag: Reported with faults inside the mapping.
            layout: ``LAYOUT_END``: the data ends against the guard after it;
                ``LAYOUT_START``: it starts against the guard before it.

        Returns:
            The buffer's address.
        """
        ptr = self._lib.mtemu_alloc(nbytes, align, tag, layout)
        if not ptr:
            raise MemoryError(f"[metal-emu] cannot map a {nbytes}-byte buffer")
        return ptr

    def free(self, ptr: int) -> None:
        """Unmaps a buffer from ``alloc``."""
        self._lib.mtemu_free(ptr)

    @functools.cached_property
    def shadow_offset(self) -> int:
        """The shadow-memory offset traced builds are compiled with."""
        return int(self._lib.mtemu_shadow_offset())

    def shadow_init(self) -> None:
        """Reserves the shadow memory traced builds read (once per process).

        Raises:
            EmulatorError: If its address range is taken.
        """
        rc = self._lib.mtemu_shadow_init()
        if rc:
            raise EmulatorError(
                f"[metal-emu] cannot reserve the shadow memory of traced kernels at "
                f"{self.shadow_offset:#x}: {os.strerror(rc)}",
                kernel="<runtime>",
            )

    def watch(self, ptr: int, written: np.ndarray | None, races: bool) -> None:
        """Watches a buffer in traced runs: its bytes written go to ``written`` (a uint8 array of
        the buffer's size, or None); with ``races``, its accesses are checked for races."""
        address = None if written is None else written.ctypes.data
        if self._lib.mtemu_watch(ptr, address, int(races)) != 0:
            raise EmulatorError("[metal-emu] cannot watch a buffer: no shadow memory", kernel="<runtime>")

    def unwatch(self, ptr: int) -> None:
        """Stops watching a buffer."""
        self._lib.mtemu_unwatch(ptr)

    def group_position(self, linear: int, groups: Sequence[int]) -> tuple[int, int, int]:
        """The runtime's ``threadgroup_position_in_grid`` of the threadgroup of linear index
        ``linear`` (x fastest) in a grid of ``groups`` threadgroups."""
        pos = (ctypes.c_uint32 * 3)()
        self._lib.mtemu_group_position(linear, (ctypes.c_uint32 * 3)(*groups), pos)
        return (pos[0], pos[1], pos[2])

    def run(self, launch: Launch) -> Error:
        """Runs a grid; returns the error record (``kind`` 0 on success)."""
        err = Error()
        self._lib.mtemu_run(ctypes.byref(launch), ctypes.byref(err))
        return err


@functools.cache
def runtime() -> Runtime:
    """Builds (once per cache) and loads the runtime library."""
    return Runtime(build_runtime())


class LoadedKernel:
    """A kernel library bound to the runtime."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        self.kernel = Kernel()
        bind = self._lib.mtemu_bind
        bind.argtypes = [ctypes.c_void_p, ctypes.POINTER(Kernel)]
        bind(runtime().api, ctypes.byref(self.kernel))


class KernelBuilds:
    """A kernel's library, and its traced build, compiled on first use.

    The traced build checks every load and store against the runtime's shadow
    memory (``-fsanitize=kernel-address``), so that the runtime sees each
    access to a watched buffer: it records writes for the unwritten check of
    outputs written in place and finds the accesses behind a race. It computes
    what the plain build does, about half as fast and compiled in about twice
    the time (measured on the matmul kernels of the test suite), so it runs
    only for those.
    """

    def __init__(self, cpp: str, host_name: str, flags: tuple[str, ...] = ()) -> None:
        self.cpp = cpp
        self.host_name = host_name
        self.flags = flags
        self.plain = LoadedKernel(build_kernel(cpp, host_name, flags))
        self._traced: LoadedKernel | None = None

    def traced(self) -> LoadedKernel:
        """The traced build.

        Raises:
            CompileError: If the compiler cannot build it.
            EmulatorError: If the shadow memory cannot be reserved.
        """
        if self._traced is None:
            rt = runtime()
            extra = trace_flags(rt.shadow_offset, self.host_name)
            path = build_kernel(self.cpp, self.host_name, (*self.flags, *extra))
            rt.shadow_init()  # before loading: the library's constructors read the shadow
            self._traced = LoadedKernel(path)
        return self._traced
