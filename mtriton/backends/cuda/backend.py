"""The CUDA backend (`mx.fast.cuda_kernel`) and cuda-emu (the same source run on the CPU)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ... import emulator, ir
from ...options import LaunchOptions
from ..gpu_launch import CustomKernelLauncher
from .dialect import CUDA
from .source import full_cuda_source


class CudaBackend:
    name = "cuda"
    options = frozenset({"num_warps", "num_stages", "math_mode"})
    dialect = CUDA
    full_source = staticmethod(full_cuda_source)

    def is_available(self) -> bool:
        try:
            return bool(mx.cuda.is_available())
        except (AttributeError, RuntimeError):
            return False

    def factory(self) -> Any:
        return mx.fast.cuda_kernel

    def compile(self, fn: ir.Function, opts: LaunchOptions) -> CustomKernelLauncher:
        return CustomKernelLauncher(fn, self.dialect, opts, self.factory())


class CudaEmuBackend(CudaBackend):
    """The CUDA source run on the CPU (the emulator's runtime with a CUDA shim)."""

    name = "cuda-emu"

    def is_available(self) -> bool:
        return emulator.is_available()

    def factory(self) -> Any:
        return emulator.cuda_kernel
