"""The complete Metal source MLX compiles for a kernel (`mtriton dump-metal --full`)."""

from __future__ import annotations

import functools

from ... import emulator, ir
from ...options import LaunchOptions
from ..gpu_launch import CustomKernelLauncher
from .dialect import METAL, compile_options


def full_metal_source(fn: ir.Function, opts: LaunchOptions) -> str:
    """The complete Metal source MLX generates for `fn` (MLX's signature rules, reproduced by metal-emu).

    Args:
        fn: The verified IR function.
        opts: Its launch options.

    Returns:
        The header, MLX's signature and the body, every written argument on the copy-on-write path.
    """
    factory = functools.partial(emulator.metal_kernel, compile_options=compile_options(opts))
    return CustomKernelLauncher(fn, METAL, opts, factory).full_source()
