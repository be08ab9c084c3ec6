"""Backends: what turns a verified IR function into something that runs.

A backend is registered by name and provides `is_available()` and
`compile(fn, options) -> CompiledKernel`; a compiled kernel is called with the
launch arguments and the grid and returns, per parameter, the new contents of
each pointer argument it wrote (None for the others). The runtime then makes
those contents visible through the caller's arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import mlx.core as mx

from .. import ir, options
from ..errors import BackendUnavailable


class CompiledKernel(Protocol):
    def __call__(self, args: Sequence[Any], grid: tuple[int, int, int]) -> list[mx.array | None]: ...


class Backend(Protocol):
    name: str

    def is_available(self) -> bool: ...

    def compile(self, fn: ir.Function, opts: dict[str, Any]) -> CompiledKernel: ...


_REGISTRY: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_selected: str | None = None


def register(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    """Registers a backend factory under `name` (called on first use)."""

    def deco(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin_backends() -> None:
    from . import (  # noqa: F401
        cuda,
        interpreter,  # noqa: F401
        metal,
    )


def get_backend(name: str) -> Backend:
    """Returns the backend called `name`, raising BackendUnavailable if it cannot run here."""
    _load_builtin_backends()
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; expected one of {', '.join(options.BACKENDS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
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


def default_backend_name() -> str:
    """metal when MLX has Metal, cuda when MLX has CUDA, else interpreter."""
    for name in ("metal", "cuda"):
        if _mlx_has(name):
            return name
    return "interpreter"


def set_backend(name: str | None) -> None:
    """Selects the backend for later launches (`None` returns to the environment/default)."""
    global _selected
    if name is not None and name not in options.BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; expected one of {', '.join(options.BACKENDS)}")
    _selected = name


def source_dump(target: str, fn: ir.Function, opts: dict[str, Any], full: bool = False) -> str:
    """The kernel source a GPU backend hands to MLX (`full`: with the signature MLX generates)."""
    from .cstyle.kernel import generate

    if target == "metal":
        from .metal import METAL, full_metal_source

        return full_metal_source(fn, opts) if full else generate(fn, METAL, int(opts["num_warps"])).body
    if target == "cuda":
        from .cuda import CUDA, full_cuda_source

        return full_cuda_source(fn, opts) if full else generate(fn, CUDA, int(opts["num_warps"])).body
    raise BackendUnavailable(f"no source to dump for backend {target!r}; expected metal or cuda")


def current_backend_name() -> str:
    """`set_backend(...)`, else `MTRITON_BACKEND`, else the automatic default."""
    return _selected or options.backend_env() or default_backend_name()


def current_target() -> str:
    """The language the current backend runs kernels in: "metal" (metal, metal-emu), "cuda"
    (cuda, cuda-emu) or "interpreter"; for choices such as tile sizes that follow the hardware."""
    return current_backend_name().removesuffix("-emu")
