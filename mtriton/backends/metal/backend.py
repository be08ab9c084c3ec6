"""The Metal backend (`mx.fast.metal_kernel`) and metal-emu (the same source run on the CPU)."""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from ... import emulator, ir
from ...options import LaunchOptions
from ..gpu_launch import CustomKernelLauncher
from .dialect import METAL, compile_options
from .source import full_metal_source


class _MetalLike:
    """Shared by the real Metal backend and metal-emu: they differ only in the kernel factory."""

    name = "metal"
    options = frozenset({"num_warps", "math_mode"})
    dialect = METAL
    full_source = staticmethod(full_metal_source)

    def factory(self) -> Any:
        raise NotImplementedError

    def compile(self, fn: ir.Function, opts: LaunchOptions) -> CustomKernelLauncher:
        factory = functools.partial(self.factory(), compile_options=compile_options(opts))
        return CustomKernelLauncher(fn, self.dialect, opts, factory)


class MetalBackend(_MetalLike):
    name = "metal"

    def is_available(self) -> bool:
        try:
            return bool(mx.metal.is_available())
        except (AttributeError, RuntimeError):
            return False

    def factory(self) -> Any:
        return mx.fast.metal_kernel


class MetalEmuBackend(_MetalLike):
    name = "metal-emu"

    def is_available(self) -> bool:
        return emulator.is_available()

    def factory(self) -> Any:
        return emulator.metal_kernel
