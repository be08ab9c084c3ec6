"""ctypes mirror of ``shim/emu_abi.h`` and the loaded libraries.

The structures must match the header field for field; the runtime checks the
ABI version a kernel was built with before running it.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

from .compile import build_runtime

ABI_VERSION = 2

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

TAG_TG = -1000

_U32x3 = ctypes.c_uint32 * 3


class ThreadState(ctypes.Structure):
    """``mtemu_thread_state``."""

    _fields_ = [
        ("loc", ctypes.c_int32),
        ("lane", ctypes.c_uint32),
        ("progress", ctypes.c_uint32),
        ("spins", ctypes.c_uint32),
        ("attrs", ctypes.c_void_p),
    ]


class Kernel(ctypes.Structure):
    """``mtemu_kernel``: a loaded kernel as the runtime sees it."""

    _fields_ = [
        ("abi", ctypes.c_uint32),
        ("entry", ctypes.c_void_p),
        ("state", ctypes.POINTER(ThreadState)),
    ]


class Launch(ctypes.Structure):
    """``mtemu_launch``: one run of a grid."""

    _fields_ = [
        ("kernel", ctypes.POINTER(Kernel)),
        ("args", ctypes.POINTER(ctypes.c_void_p)),
        ("grid", _U32x3),
        ("group_size", _U32x3),
        ("order", ctypes.c_uint32),
        ("order_from", ctypes.c_uint32),
        ("order_to", ctypes.c_uint32),
        ("group_order", ctypes.c_uint32),
        ("direct", ctypes.c_uint32),
        ("seed", ctypes.c_uint32),
        ("tg_limit", ctypes.c_uint64),
        ("stack_size", ctypes.c_uint64),
        ("cpu_seconds", ctypes.c_double),
        ("tg_poison", ctypes.c_uint32),
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
        lib.mtemu_alloc.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int32]
        lib.mtemu_free.argtypes = [ctypes.c_void_p]
        lib.mtemu_run.argtypes = [ctypes.POINTER(Launch), ctypes.POINTER(Error)]
        lib.mtemu_run.restype = ctypes.c_int
        if lib.mtemu_abi_version() != ABI_VERSION:
            raise RuntimeError("[metal-emu] runtime library and abi.py disagree on the ABI")
        self._lib = lib
        self.api = lib.mtemu_api_table()

    def alloc(self, nbytes: int, align: int, tag: int) -> int:
        """Maps ``nbytes`` that end against a guard page.

        Args:
            nbytes: Size of the buffer.
            align: Required alignment of its start.
            tag: Reported with faults inside the mapping.

        Returns:
            The buffer's address.
        """
        ptr = self._lib.mtemu_alloc(nbytes, align, tag)
        if not ptr:
            raise MemoryError(f"[metal-emu] cannot map a {nbytes}-byte buffer")
        return ptr

    def free(self, ptr: int) -> None:
        """Unmaps a buffer from ``alloc``."""
        self._lib.mtemu_free(ptr)

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
