"""The complete Metal source MLX compiles for a kernel (`mtriton dump-metal --full`)."""

from __future__ import annotations

import functools
from typing import Any

from ... import emulator, ir
from ..gpu_launch import CustomKernelLauncher
from .dialect import METAL, compile_options


def full_metal_source(fn: ir.Function, opts: dict[str, Any]) -> str:
    """The complete Metal source MLX generates for `fn` (MLX's signature rules, reproduced by metal-emu).

    Args:
        fn: The verified IR function.
        opts: Its launch options.

    Returns:
        The header, MLX's signature and the body, every written argument on the copy-on-write path.
    """
    factory = functools.partial(emulator.metal_kernel, compile_options=compile_options(opts))
    return CustomKernelLauncher(fn, METAL, int(opts.get("num_warps", 4)), factory).full_source()
