"""Every environment knob mtriton reads, in one typed place.

Values are read when asked for, so tests and users may set them at any time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    Knob("MTRITON_CACHE_DIR", "folder of the on-disk cache (default: ~/.cache/mtriton)"),
    Knob("MTRITON_DEBUG", "1: show mtriton's internal frames in tracebacks"),
    Knob("MTRITON_DISABLE_DISK_CACHE", "1: do not read or write the on-disk cache"),
    Knob("MTRITON_CXX", "C++ compiler for metal-emu and cuda-emu (default: g++)"),
    Knob("MTRITON_UPDATE_GOLDEN", "1: tests rewrite the golden emitted-source files"),
)


def backend_env() -> str | None:
    value = os.environ.get("MTRITON_BACKEND", "").strip()
    return value or None


def cache_dir() -> Path:
    env = os.environ.get("MTRITON_CACHE_DIR", "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtriton"


def debug() -> bool:
    return _flag("MTRITON_DEBUG")


def disk_cache_enabled() -> bool:
    return not _flag("MTRITON_DISABLE_DISK_CACHE")


def cxx_compiler() -> str:
    return os.environ.get("MTRITON_CXX", "").strip() or "g++"


def update_golden() -> bool:
    return _flag("MTRITON_UPDATE_GOLDEN")
