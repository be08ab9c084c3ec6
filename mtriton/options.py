"""Every option mtriton reads, in one typed place: the launch options of `kernel[grid](...)`
(`LaunchOptions`) and the environment knobs.

Environment values are read when asked for, so tests and users may set them at any time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LaunchError
from .targets import TARGETS

BACKENDS = tuple(target.name for target in TARGETS)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Knob:
    """One environment variable and what it means."""

    env: str
    doc: str


KNOBS = (
    Knob("MTRITON_BACKEND", f"backend to run kernels on: one of {', '.join(BACKENDS)}"),
    Knob(
        "MTRITON_CACHE_DIR",
        "folder of the on-disk cache (default: $XDG_CACHE_HOME/mtriton or ~/.cache/mtriton)",
    ),
    Knob(
        "MTRITON_CUDA_ARCH",
        "compute capability the CUDA source is written for, as 90 or 9.0 (default: the device's, from "
        "mx.device_info(); cuda-emu: 90). wgmma needs 90 (sm_90a)",
    ),
    Knob(
        "MTRITON_WGMMA",
        "1: on sm_90, tl.dot runs on the warpgroup unit (wgmma) where its shape fits; default mma.sync "
        "(on the H200 the tutorial matmul ran at 81 TFLOP/s on wgmma, 177 on mma.sync)",
    ),
    Knob("MTRITON_DEBUG", "1: show mtriton's internal frames in tracebacks"),
    Knob("MTRITON_DISABLE_DISK_CACHE", "1: do not read or write the on-disk cache"),
    Knob("MTRITON_CXX", "C++ compiler for metal-emu and cuda-emu (default: g++)"),
    Knob(
        "MTRITON_INTERPRETER_LOOP_LIMIT",
        "iterations after which the interpreter stops a `while` loop (default 10 million)",
    ),
    Knob(
        "MTRITON_TUNING_DB",
        "path of a tuning database (JSON) that @autotune(use_database=True) reads first and writes "
        "its results to (default: <cache dir>/tuning/tuning_db.json, then the package's defaults)",
    ),
    Knob(
        "MTRITON_PRINT_AUTOTUNING",
        "1: print each autotuning result: the database hit that skipped the search, or the search's "
        "time and best config (Triton's TRITON_PRINT_AUTOTUNING=1 does the same)",
    ),
    Knob("MTRITON_UPDATE_GOLDEN", "1: tests rewrite the golden emitted-source files"),
    Knob("TRITON_INTERPRET", "1: run on the interpreter, as Triton does (MTRITON_BACKEND takes precedence)"),
)


# POSIX CPython keeps os.environ's contents in this dict of encoded names and values (setting
# os.environ updates it); a lookup there skips os.environ.get's encoding of the name and
# decoding of the value, ~1 us each on a GPU machine's host, and every launch reads four knobs.
_ENVIRON_DATA: dict[Any, Any] | None = getattr(os.environ, "_data", None) if os.name == "posix" else None
_LAUNCH_KNOBS = ("MTRITON_BACKEND", "TRITON_INTERPRET", "MTRITON_CUDA_ARCH", "MTRITON_WGMMA")
_LAUNCH_KEYS = tuple(os.fsencode(name) for name in _LAUNCH_KNOBS)

LaunchEnv = tuple[Any, Any, Any, Any]


def launch_env() -> LaunchEnv:
    """The raw values (None when unset) of the knobs every launch reads: MTRITON_BACKEND,
    TRITON_INTERPRET, MTRITON_CUDA_ARCH, MTRITON_WGMMA. Read at each call, so a knob set
    mid-process reaches the next launch; compare them only with each other."""
    if _ENVIRON_DATA is not None:
        get = _ENVIRON_DATA.get
        return get(_LAUNCH_KEYS[0]), get(_LAUNCH_KEYS[1]), get(_LAUNCH_KEYS[2]), get(_LAUNCH_KEYS[3])
    get = os.environ.get
    return get(_LAUNCH_KNOBS[0]), get(_LAUNCH_KNOBS[1]), get(_LAUNCH_KNOBS[2]), get(_LAUNCH_KNOBS[3])


def backend_env(env: LaunchEnv | None = None) -> str | None:
    """The backend the environment (or `launch_env()`'s `env`) asks for: MTRITON_BACKEND, else
    the interpreter where Triton's TRITON_INTERPRET=1 is set, else None (the automatic default)."""
    return _backend_from(*(launch_env() if env is None else env)[:2])


@functools.lru_cache(maxsize=64)
def _backend_from(backend: Any, interpret: Any) -> str | None:
    value = _text(backend).strip()
    if value:
        return value
    return "interpreter" if _text(interpret).strip().lower() in ("1", "true", "yes", "on") else None


def _text(raw: Any) -> str:
    """A raw environment value (str, or bytes from os.environ's dict) as text; None is ""."""
    return "" if raw is None else os.fsdecode(raw)


def cache_dir() -> Path:
    env = os.environ.get("MTRITON_CACHE_DIR", "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtriton"


def cuda_arch() -> int | None:
    """MTRITON_CUDA_ARCH as a compute capability times ten (90 for sm_90), None when unset."""
    value = os.environ.get("MTRITON_CUDA_ARCH", "").strip().lower().removeprefix("sm_").rstrip("a")
    if not value:
        return None
    try:
        arch = round(float(value) * 10) if "." in value else int(value)
    except ValueError:
        arch = 0
    if not 50 <= arch < 1000:
        raise LaunchError(
            f"MTRITON_CUDA_ARCH must be a compute capability such as 90, 9.0 or sm_90a, "
            f"got {os.environ['MTRITON_CUDA_ARCH']!r}"
        )
    return arch


def wgmma() -> bool:
    return _flag("MTRITON_WGMMA")


def debug() -> bool:
    return _flag("MTRITON_DEBUG")


def disk_cache_enabled() -> bool:
    return not _flag("MTRITON_DISABLE_DISK_CACHE")


def cxx_compiler() -> str:
    return os.environ.get("MTRITON_CXX", "").strip() or "g++"


def interpreter_loop_limit() -> int:
    """How many iterations the interpreter lets a `while` loop run before it calls it endless."""
    return int(os.environ.get("MTRITON_INTERPRETER_LOOP_LIMIT", "").strip() or 10_000_000)


def tuning_db_path() -> Path | None:
    """MTRITON_TUNING_DB as a path, None when unset."""
    value = os.environ.get("MTRITON_TUNING_DB", "").strip()
    return Path(value).expanduser() if value else None


def print_autotuning() -> bool:
    return _flag("MTRITON_PRINT_AUTOTUNING") or _flag("TRITON_PRINT_AUTOTUNING")


def update_golden() -> bool:
    return _flag("MTRITON_UPDATE_GOLDEN")


# ---------------------------------------------------------------------------------- launch options

MATH_MODES = ("safe", "relaxed", "fast")
MAX_WARPS = 32  # 1,024 threads: Metal's and CUDA's limit per threadgroup/block


@dataclass(frozen=True)
class LaunchOptions:
    """The launch options of `kernel[grid](..., num_warps=4, num_stages=3)`: every default and
    every check in one place. The runtime passes them whole to the backend and its lowering.

    Attributes:
        num_warps: Threads per program, in warps of 32: a power of two up to 32.
        num_stages: Iterations of a loop's `tl.dot` tiles in flight (CUDA's software
            pipelining); 1 or more.
        math_mode: "safe", "relaxed" or "fast", or None for the backend's default. Metal: MLX's
            math mode ("safe", IEEE special values, by default). CUDA: "safe" is exact (expf,
            exp2f, correctly rounded division); "relaxed" and "fast" are Triton's own lowering,
            the default: float32 `exp` as `ex2.approx` of x * log2(e), `exp2` as `ex2.approx`,
            and division as `div.full` (2 ulp; the softmax tutorial spends a third of its
            instructions on exact exp and division otherwise).
        num_ctas: Triton's cluster size; accepted, only 1 exists here.
        maxnreg: Triton's register cap per thread; accepted, no backend acts on it.
        enable_fp_fusion: Triton's multiply-add fusion switch; accepted, no backend acts on it.
    """

    num_warps: int = 4
    num_stages: int = 3
    math_mode: str | None = None
    num_ctas: int = 1
    maxnreg: int | None = None
    enable_fp_fusion: bool = True

    def __post_init__(self) -> None:
        warps = self.num_warps
        if type(warps) is not int or not 1 <= warps <= MAX_WARPS or warps & (warps - 1):
            raise LaunchError(f"num_warps must be a power of two from 1 to {MAX_WARPS}, got {warps!r}")
        if type(self.num_stages) is not int or self.num_stages < 1:
            raise LaunchError(f"num_stages must be an int >= 1, got {self.num_stages!r}")
        if self.math_mode is not None and self.math_mode not in MATH_MODES:
            raise LaunchError(
                f"math_mode must be one of {', '.join(MATH_MODES)} (or None: the backend's default), "
                f"got {self.math_mode!r}"
            )
        if self.num_ctas != 1:
            raise LaunchError(
                f"num_ctas must be 1: no backend launches thread-block clusters, got {self.num_ctas!r}"
            )
        # every launch hashes its options in the cache key: once here, not per launch
        object.__setattr__(self, "_hash", hash(dataclasses.astuple(self)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined,no-any-return]

    def non_default(self) -> dict[str, Any]:
        """The options whose values differ from the defaults."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


LAUNCH_OPTIONS = tuple(f.name for f in dataclasses.fields(LaunchOptions))
DEFAULT_LAUNCH = LaunchOptions()


def launch_options(items: tuple[tuple[str, Any], ...]) -> LaunchOptions:
    """`LaunchOptions(**dict(items))`, built and checked once per distinct set of values (a
    launch that passes options pays a dictionary lookup, not the checks)."""
    # keyed by type too: 4.0 == 4 and True == 1 would otherwise share a checked entry
    key = tuple((name, type(value), value) for name, value in items)
    try:
        return _cached_launch_options(key)
    except TypeError:  # an unhashable value: the checks say what is wrong with it
        return LaunchOptions(**dict(items))


@functools.lru_cache(maxsize=1024)
def _cached_launch_options(key: tuple[tuple[str, type, Any], ...]) -> LaunchOptions:
    return LaunchOptions(**{name: value for name, _, value in key})


_warned: set[str] = set()


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_once(message: str) -> None:
    """`warnings.warn(message)` once per process, attributed to the user's line that led to it
    (the first caller outside mtriton)."""
    if message in _warned:
        return
    _warned.add(message)
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, stacklevel=level)


def warn_ignored(backend: str, names: Iterable[str], where: str = "") -> None:
    """Says once per backend and option that a Triton option given here has no effect there."""
    for name in names:
        warn_once(f"{name}{where} has no effect on the {backend} backend (accepted for Triton compatibility)")
