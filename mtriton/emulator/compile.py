"""Compiles the runtime and kernels to shared libraries, with a disk cache.

Libraries are cached in ``metal-emu/`` under mtriton's cache folder
(``options.cache_dir()``: ``$MTRITON_CACHE_DIR``, else
``$XDG_CACHE_HOME/mtriton``, else ``~/.cache/mtriton``), named by a hash of
everything that shapes the binary: the source, the compiler and its version,
the flags and the shim. Each is compiled to a temporary file in the same
folder and moved into place with ``os.replace``, so parallel test workers
never see a partial library. With ``MTRITON_DISABLE_DISK_CACHE=1`` they go to
a folder of this process instead, removed at exit: nothing is read from or
left in the shared cache.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import options
from .errors import CompileError

SHIM_DIR = Path(__file__).parent / "shim"
_SHIM_HEADERS = (
    "emu_abi.h",
    "metal_types.h",
    "metal_math.h",
    "metal_simd.h",
    "metal_shim.h",
    "cuda_shim.h",
    "runtime_memory.h",
)
_RUNTIME_SOURCE = "runtime.cpp"

_COMMON_FLAGS = (
    "-std=c++17",
    "-fPIC",
    "-shared",
    "-fno-strict-aliasing",
    "-fwrapv",  # GPU integer arithmetic wraps
    "-ffp-contract=off",  # no fused multiply-add unless the source asks
    "-fno-math-errno",
    "-fno-exceptions",
    "-fno-rtti",
    "-w",
)
# -O1 compiles about as fast as -O0 for these small units and runs several
# times faster.
_KERNEL_FLAGS = ("-O1", "-fvisibility=hidden")
# The runtime longjmps from a signal handler on another stack, which glibc's
# fortified longjmp would take for stack corruption.
_RUNTIME_FLAGS = ("-O2", "-fvisibility=hidden", "-pthread", "-U_FORTIFY_SOURCE")


@dataclass(frozen=True)
class Toolchain:
    """A C++ compiler and what identifies its output.

    Attributes:
        command: The compiler command line (``MTRITON_CXX``, default ``g++``).
        identity: Its ``--version`` output, part of every cache key.
        flags: Flags this compiler needs beyond the common ones.
    """

    command: tuple[str, ...]
    identity: str
    flags: tuple[str, ...]


# Flags used where the compiler takes them. Stack-clash probes make a frame
# larger than the guard page below a fiber's stack touch that page instead of
# jumping over it. clang on x86, and g++ 13 and later, compute _Float16
# arithmetic in float unless told to round after each operation, as Metal does
# (ARM has native half).
_OPTIONAL_FLAGS = (
    ("-fstack-clash-protection",),
    ("-Xclang", "-ffloat16-excess-precision=none"),
    ("-fexcess-precision=16",),
)


# A traced build: every load and store is checked inline against the runtime's shadow memory
# (AddressSanitizer's kernel mode, whose runtime entry points the shim defines), and accesses
# to stack memory are not given redzones. g++ and clang spell the options differently.
_TRACE_SPELLINGS = (
    (
        "-fsanitize=kernel-address",
        "-fasan-shadow-offset={offset:#x}",
        "--param", "asan-stack=0",
        "--param", "asan-globals=0",
        "--param", "asan-use-after-return=0",
        "--param", "asan-instrumentation-with-call-threshold=1000000",
    ),
    (
        "-fsanitize=kernel-address",
        "-mllvm", "-asan-mapping-offset={offset:#x}",
        "-mllvm", "-asan-stack=0",
        "-mllvm", "-asan-globals=0",
        "-mllvm", "-asan-instrumentation-with-call-threshold=1000000",
    ),
)  # fmt: skip


@functools.cache
def _trace_flags(command: tuple[str, ...], offset: int) -> tuple[str, ...] | None:
    for spelling in _TRACE_SPELLINGS:
        flags = tuple(f.format(offset=offset) for f in spelling)
        if _accepts(command, flags):
            return (*flags, "-DMTEMU_TRACE=1")
    return None


def trace_flags(shadow_offset: int, kernel: str) -> tuple[str, ...]:
    """The flags of a kernel's traced build (see ``abi.KernelBuilds``).

    Args:
        shadow_offset: The runtime's shadow-memory offset.
        kernel: The kernel's host name, for the error.

    Raises:
        CompileError: If the compiler takes neither g++'s nor clang's spelling of
            ``-fsanitize=kernel-address`` with a shadow offset.
    """
    flags = _trace_flags(toolchain().command, shadow_offset)
    if flags is None:
        raise CompileError(
            f"[metal-emu] {options.cxx_compiler()} cannot build the traced kernel this check needs: "
            "it takes neither -fsanitize=kernel-address -fasan-shadow-offset=... (g++) nor "
            "-fsanitize=kernel-address -mllvm -asan-mapping-offset=... (clang)",
            kernel=kernel,
        )
    return flags


def _accepts(command: tuple[str, ...], flags: tuple[str, ...]) -> bool:
    probe = [*command, *flags, "-x", "c++", "-fsyntax-only", "-"]
    return subprocess.run(probe, input="", capture_output=True, text=True).returncode == 0


@functools.cache
def _toolchain(cxx: str) -> Toolchain:
    command = tuple(shlex.split(cxx))
    try:
        identity = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"[metal-emu] cannot run the C++ compiler {cxx!r}: {exc}") from exc
    flags = tuple(f for option in _OPTIONAL_FLAGS if _accepts(command, option) for f in option)
    return Toolchain(command, identity, flags)


def is_available() -> bool:
    """Whether the emulators can run here: on Linux, with the C++ compiler (``MTRITON_CXX``) installed."""
    return platform.system() == "Linux" and shutil.which(options.cxx_compiler()) is not None


def toolchain() -> Toolchain:
    """Returns the compiler in use (``MTRITON_CXX`` or ``g++``)."""
    return _toolchain(options.cxx_compiler())


@functools.cache
def _private_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mtriton-emu-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def cache_dir() -> Path:
    """Returns the folder compiled libraries are cached in."""
    if not options.disk_cache_enabled():
        return _private_dir()
    return options.cache_dir() / "metal-emu"


@functools.cache
def shim_digest() -> str:
    """Hash of the shim headers and runtime source (the "shim version")."""
    digest = hashlib.sha256()
    for name in (*_SHIM_HEADERS, _RUNTIME_SOURCE):
        digest.update(name.encode())
        digest.update((SHIM_DIR / name).read_bytes())
    return digest.hexdigest()


def _build(prefix: str, source: str, flags: tuple[str, ...], kernel: str) -> Path:
    tools = toolchain()
    all_flags = (*_COMMON_FLAGS, *flags, *tools.flags)
    key = hashlib.sha256(
        "\0".join([_FORMAT, source, tools.identity, *tools.command, *all_flags, shim_digest()]).encode()
    ).hexdigest()[:40]
    folder = cache_dir()
    target = folder / f"{prefix}-{key}.so"
    if _intact(target):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        cpp = Path(tmp) / f"{prefix}.cpp"
        cpp.write_text(source)
        out = Path(tmp) / f"{prefix}.so"
        command = [*tools.command, *all_flags, f"-I{SHIM_DIR}", str(cpp), "-o", str(out)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(
                f"[metal-emu] {' '.join(tools.command)} rejected kernel {kernel}:\n{result.stderr.strip()}",
                kernel=kernel,
            )
        library = out.read_bytes()
        out.write_bytes(library + _TRAILER + hashlib.sha256(library).hexdigest().encode())
        os.replace(out, target)
    return target


# A library's SHA-256 follows its last byte (the loader reads only what the ELF headers map), so
# one atomic rename publishes both and a damaged file is found before it is loaded: loading a
# truncated library can kill the process with SIGBUS.
_TRAILER = b"\0mtriton-sha256:"
_FORMAT = "checksum-trailer-1"  # in the key: libraries of the older, unchecked layout are not read
_TRAILER_BYTES = len(_TRAILER) + 64


def _intact(path: Path) -> bool:
    """Whether `path` holds a whole library; a damaged one is named, deleted and rebuilt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as err:
        options.warn_once(f"[metal-emu] cannot read the cached library {path} ({err}): rebuilding it")
        return False
    library, trailer, digest = data[:-_TRAILER_BYTES], data[-_TRAILER_BYTES:-64], data[-64:]
    if trailer == _TRAILER and hashlib.sha256(library).hexdigest().encode() == digest:
        return True
    options.warn_once(
        f"[metal-emu] cached library {path} is damaged (checksum mismatch): deleted, rebuilding it"
    )
    try:
        path.unlink()
    except OSError:
        pass
    return False


def build_runtime() -> Path:
    """Compiles (or finds in the cache) the fiber runtime library."""
    source = (SHIM_DIR / _RUNTIME_SOURCE).read_text()
    return _build("runtime", source, _RUNTIME_FLAGS, "<runtime>")


def build_kernel(cpp: str, kernel: str, flags: tuple[str, ...] = ()) -> Path:
    """Compiles (or finds in the cache) one kernel's translation unit.

    Args:
        cpp: The translation unit from ``translate.translate``.
        kernel: The kernel's host name, for error messages.
        flags: Compiler flags beyond the usual ones.

    Returns:
        The path of the shared library.

    Raises:
        CompileError: If the compiler rejects the source.
    """
    return _build("kernel", cpp, (*_KERNEL_FLAGS, *flags), kernel)
