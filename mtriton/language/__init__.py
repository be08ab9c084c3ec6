"""`mtriton.language` (import it as `tl`): Triton's kernel language for MLX."""

from . import math
from .core import (
    abs, advance, arange, associative_scan, atomic_add, atomic_and, atomic_cas, atomic_max,
    atomic_min, atomic_or, atomic_xchg, atomic_xor, bfloat16, broadcast, broadcast_to, cast,
    cdiv, ceil, clamp, constexpr, cos, debug_barrier, device_assert, device_print, div_rn, dot,
    dtype, erf, exp, exp2, expand_dims, fdiv, float16, float32, float64, floor, fma, full,
    full_like, int1, int8, int16, int32, int64, join, load, log, log2, make_block_ptr, max,
    max_constancy, max_contiguous, maximum, min, minimum, multiple_of, num_programs, permute,
    pointer_type, program_id, range, reduce, reshape, rsqrt, sin, split, sqrt, sqrt_rn,
    static_assert, static_print, static_range, store, sum, tanh, tensor, trans, uint8, uint16,
    uint32, uint64, view, where, xor_sum, zeros, zeros_like,
)  # fmt: skip
from .standard import argmax, argmin, cumprod, cumsum, ravel, sigmoid, softmax, swizzle2d

float8e4nv = float8e5 = None  # not supported: no float8 on the targets yet

__all__ = [name for name in dir() if not name.startswith("_")]
