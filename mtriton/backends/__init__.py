"""Backends: what turns a verified IR function into something that runs.

Every backend is a row of `mtriton/targets.py`, which names the class that
makes it; the class's module is imported on first use. A backend provides
`is_available()` and `compile(fn, options) -> CompiledKernel`; a compiled
kernel is called with the launch arguments and the grid and returns, per
parameter, the new contents of each pointer argument it wrote (None for the
others). The runtime then makes those contents visible through the caller's
arrays.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any, Protocol

import mlx.core as mx

from .. import ir, options, targets
from ..errors import BackendUnavailable
from ..options import LaunchOptions


class CompiledKernel(Protocol):
    def __call__(self, args: Sequence[Any], grid: tuple[int, int, int]) -> list[mx.array | None]: ...


class Backend(Protocol):
    name: str
    options: frozenset[str]  # the launch options (`LaunchOptions` fields) it acts on

    def is_available(self) -> bool: ...

    def compile(self, fn: ir.Function, opts: LaunchOptions) -> CompiledKernel: ...


_INSTANCES: dict[str, Backend] = {}
_selected: str | None = None


def _target(name: str) -> targets.Target:
    target = targets.BY_NAME.get(name)
    if target is None:
        raise BackendUnavailable(f"unknown backend {name!r}; expected one of {', '.join(options.BACKENDS)}")
    return target


def backend_class(name: str) -> type[Backend]:
    """The class of the backend called `name`, whether or not it can run here."""
    target = _target(name)
    return getattr(importlib.import_module(target.module), target.backend)


def get_backend(name: str) -> Backend:
    """Returns the backend called `name`, raising BackendUnavailable if it cannot run here."""
    if name not in _INSTANCES:
        _INSTANCES[name] = backend_class(name)()
    backend = _INSTANCES[name]
    if not backend.is_available():
        raise BackendUnavailable(f"backend {name!r} is not available on this machine")
    return backend


def _mlx_has(backend: str) -> bool:
    probe = {"metal": lambda: mx.metal.is_available(), "cuda": lambda: mx.cuda.is_available()}
    try:
        return bool(probe[backend]())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def default_backend_name() -> str:
    """metal when MLX has Metal, cuda when MLX has CUDA, else interpreter (asked once: each
    launch reads it, and MLX's devices do not change within a process)."""
    for name in ("metal", "cuda"):
        if _mlx_has(name):
            return name
    return "interpreter"


def set_backend(name: str | None) -> None:
    """Selects the backend for later launches (`None` returns to the environment/default)."""
    global _selected
    if name is not None:
        _target(name)
    _selected = name


def current_backend_name(env: options.LaunchEnv | None = None) -> str:
    """`set_backend(...)`, else `MTRITON_BACKEND` (of `options.launch_env()`, or `env`), else the
    automatic default."""
    return _selected or options.backend_env(env) or default_backend_name()


def current_target() -> str:
    """The language the current backend runs kernels in: "metal" (metal, metal-emu), "cuda"
    (cuda, cuda-emu) or "interpreter"; for choices such as tile sizes that follow the hardware."""
    return _target(current_backend_name()).language
