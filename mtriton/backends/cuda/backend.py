"""The CUDA backend (`mx.fast.cuda_kernel`) and cuda-emu (the same source run on the CPU)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ... import emulator, ir, options
from ...options import LaunchOptions, warn_once
from ..gpu_launch import CustomKernelLauncher
from .dialect import CUDA_MMA, WARPGROUP_ARCH, dialect_for
from .source import full_cuda_source

# The GPU cuda-emu stands for: the first with wgmma, so the CPU tests run that path.
EMULATED_ARCH = WARPGROUP_ARCH


def device_arch() -> int | None:
    """The compute capability (times ten) MLX reports for its CUDA device, None if it does not."""
    info_fn = getattr(mx, "device_info", None) or getattr(getattr(mx, "cuda", None), "device_info", None)
    try:
        info = dict(info_fn()) if info_fn is not None else {}
    except (RuntimeError, TypeError):
        return None
    major, minor = info.get("compute_capability_major"), info.get("compute_capability_minor")
    if major is not None:
        return 10 * int(major) + int(minor or 0)
    arch = str(info.get("architecture", "")).lower().removeprefix("sm_").rstrip("a")
    return int(arch) if arch.isdigit() else None


class CudaBackend:
    """Kernels for `mx.fast.cuda_kernel`, written for the device's compute capability (`arch`:
    the source, so MLX's kernel name, differs where wgmma is used). `dialect` is the default
    (mma.sync), what `mtriton dump-cuda` shows; `--full` shows sm_90's under MTRITON_WGMMA."""

    name = "cuda"
    options = frozenset({"num_warps", "num_stages", "math_mode"})
    dialect = CUDA_MMA
    full_source = staticmethod(full_cuda_source)

    def arch(self) -> int:
        """MTRITON_CUDA_ARCH, else the device's compute capability (times ten)."""
        arch = options.cuda_arch() or device_arch()
        if arch is None:
            warn_once(
                "mx.device_info() gives no compute capability: CUDA kernels are written for sm_80 "
                "(no wgmma); set MTRITON_CUDA_ARCH=90 on a Hopper GPU"
            )
            return 80
        return arch

    def is_available(self) -> bool:
        try:
            return bool(mx.cuda.is_available())
        except (AttributeError, RuntimeError):
            return False

    def factory(self) -> Any:
        return mx.fast.cuda_kernel

    def compile(self, fn: ir.Function, opts: LaunchOptions) -> CustomKernelLauncher:
        return CustomKernelLauncher(fn, dialect_for(self.arch()), opts, self.factory())


class CudaEmuBackend(CudaBackend):
    """The CUDA source run on the CPU (the emulator's runtime with a CUDA shim)."""

    name = "cuda-emu"

    def arch(self) -> int:
        return options.cuda_arch() or EMULATED_ARCH

    def is_available(self) -> bool:
        return emulator.is_available()

    def factory(self) -> Any:
        return emulator.cuda_kernel
