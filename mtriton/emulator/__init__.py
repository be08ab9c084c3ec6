"""The emulators: MLX's custom kernels, Metal and CUDA, run on the CPU.

``metal_kernel`` and ``cuda_kernel`` take the arguments of
``mx.fast.metal_kernel`` and ``mx.fast.cuda_kernel`` and return callables with
the keyword arguments of MLX's kernel objects. A call writes the source MLX
would generate, compiles it as C++ against a shim of the language (``shim/``)
and runs the grid with each threadgroup's threads as fibers of one runtime,
so barriers and SIMD-group functions behave as on the GPU. Errors a GPU would
hide (out-of-bounds accesses, divergent barriers, races, unwritten outputs)
raise ``EmulatorError`` subclasses that name the thread and the source line.

The package models MLX and nothing of mtriton's compiler: it imports only
``mtriton.options`` (the C++ compiler and the cache folder). See
docs/metal-emu.md.

Example:
    >>> from mtriton import emulator
    >>> kernel = emulator.metal_kernel(
    ...     name="add", input_names=["a", "b"], output_names=["out"],
    ...     source="uint i = thread_position_in_grid.x; out[i] = a[i] + b[i];")
    >>> out = kernel(inputs=[a, b], output_shapes=[a.shape],
    ...              output_dtypes=[a.dtype], grid=(a.size, 1, 1),
    ...              threadgroup=(256, 1, 1))[0]
"""

from .compile import is_available
from .cuda import SHARED_MEMORY_LIMIT, CudaKernel, cuda_kernel
from .errors import (
    BarrierDivergence,
    CompileError,
    DataRace,
    Deadlock,
    EmulatorError,
    KernelFault,
    OutOfBounds,
    RaceAccess,
    ThreadgroupMemoryError,
    UnwrittenOutput,
)
from .metal import MetalKernel, full_source, metal_kernel
from .runner import Checks, checks, get_checks, set_checks

__all__ = [
    "SHARED_MEMORY_LIMIT",
    "BarrierDivergence",
    "Checks",
    "CompileError",
    "CudaKernel",
    "DataRace",
    "Deadlock",
    "EmulatorError",
    "KernelFault",
    "MetalKernel",
    "OutOfBounds",
    "RaceAccess",
    "ThreadgroupMemoryError",
    "UnwrittenOutput",
    "checks",
    "cuda_kernel",
    "full_source",
    "get_checks",
    "is_available",
    "metal_kernel",
    "set_checks",
]
