"""The emulators' former import path: ``mtriton.backends.metal_emu`` is now ``mtriton.emulator``.

Kept for code written against the old path (``metal_emu.metal_kernel``,
``metal_emu.checks``, ``metal_emu.DataRace``, ...); see docs/metal-emu.md.
"""

from ...emulator import (
    BarrierDivergence,
    Checks,
    CompileError,
    DataRace,
    Deadlock,
    EmulatorError,
    KernelFault,
    MetalKernel,
    OutOfBounds,
    ThreadgroupMemoryError,
    UnwrittenOutput,
    checks,
    full_source,
    get_checks,
    metal_kernel,
    set_checks,
)
