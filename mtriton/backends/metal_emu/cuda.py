"""The CUDA emulator's former import path: ``mtriton.backends.metal_emu.cuda`` is now ``mtriton.emulator``."""

from ...emulator.cuda import SHARED_MEMORY_LIMIT, CudaKernel, cuda_kernel

__all__ = ["SHARED_MEMORY_LIMIT", "CudaKernel", "cuda_kernel"]
