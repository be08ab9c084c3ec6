"""Triton's float8 types: their formats and the reference conversions (NumPy).

`tl.float8e4nv` is e4m3fn (4 exponent bits, bias 7, 3 mantissa bits; no infinities, S.1111.111
is NaN, the largest magnitude 448) and `tl.float8e5` is e5m2 (5 exponent bits, bias 15, 2
mantissa bits, IEEE-like: S.11111.00 is infinity, S.11111.xx NaN, the largest finite 57344).
MLX has no float8, so values are stored as their bits in uint8 arrays.

Conversions from float8 are exact. Conversions to float8 follow Triton on the GPUs that have
float8 (NVIDIA sm_90, `cvt.rn.satfinite`): round to nearest even, a finite value beyond the
largest magnitude and an infinity saturate to the largest finite value of its sign (both formats:
also e5m2, whose infinity a conversion never produces), NaN gives NaN (0x7F), tiny values round
to a signed zero. With `fp_downcast_rounding="rtz"` they round toward zero: beyond the largest
magnitude is the largest finite value, and an infinity stays one where the format has it (e5m2).

The interpreter converts with these functions; the GPU targets' helpers
(`backends/metal/helpers/f8e*.h`, `backends/cuda/helpers/f8e*.cuh`) compute the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import types as T

NAN = 0x7F
"""The code of the NaN a conversion to float8 gives (either format)."""


@dataclass(frozen=True)
class Format:
    """An 8-bit float: 1 sign bit, `7 - mantissa` exponent bits, `mantissa` bits.

    Attributes:
        mantissa: Stored mantissa bits.
        bias: Exponent bias.
        infinity: Whether an all-ones exponent with a zero mantissa is infinity (e5m2); without
            (e4m3fn) only S.1111.111 is special (NaN).
        max_code: The code of the largest finite magnitude.
    """

    mantissa: int
    bias: int
    infinity: bool
    max_code: int

    @property
    def exponent_mask(self) -> int:
        return (1 << (7 - self.mantissa)) - 1


FORMATS: dict[T.DType, Format] = {
    T.float8e4nv: Format(mantissa=3, bias=7, infinity=False, max_code=0x7E),
    T.float8e5: Format(mantissa=2, bias=15, infinity=True, max_code=0x7B),
}


def decode_table(dtype: T.DType) -> np.ndarray:
    """The float32 value of each of the 256 codes of `dtype` (exact)."""
    fmt = FORMATS[dtype]
    codes = np.arange(256, dtype=np.int64)
    exponent = (codes >> fmt.mantissa) & fmt.exponent_mask
    mantissa = codes & ((1 << fmt.mantissa) - 1)
    subnormal = mantissa * 2.0 ** (1 - fmt.bias - fmt.mantissa)
    normal = (mantissa + (1 << fmt.mantissa)) * np.exp2(
        (exponent - fmt.bias - fmt.mantissa).astype(np.float64)
    )
    magnitude = np.where(exponent == 0, subnormal, normal)
    if fmt.infinity:
        top = exponent == fmt.exponent_mask
        magnitude = np.where(top, np.where(mantissa == 0, np.inf, np.nan), magnitude)
    else:
        magnitude = np.where((codes & 0x7F) == 0x7F, np.nan, magnitude)
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.float32)


def encode(values: np.ndarray, dtype: T.DType, rounding: str = "rtne") -> np.ndarray:
    """The codes of `dtype` nearest `values` (any float array), as uint8 (see the module docstring).

    Args:
        values: Floats of any NumPy float type (bfloat16 given as float32); computed in float64,
            which holds each exactly.
        dtype: `T.float8e4nv` or `T.float8e5`.
        rounding: "rtne" (to nearest, ties to even) or "rtz" (toward zero).
    """
    fmt = FORMATS[dtype]
    x = np.asarray(values, dtype=np.float64)
    a = np.abs(x)
    step = np.floor if rounding == "rtz" else np.rint  # np.rint rounds half to even
    with np.errstate(invalid="ignore", over="ignore"):
        # below the smallest normal: a multiple of the smallest subnormal (2**M of them make
        # the smallest normal, whose code is 2**M: a carry needs no special case)
        subnormal = step(a * 2.0 ** (fmt.mantissa + fmt.bias - 1))
        # normal: a = s * 2**e with s in [1, 2); s * 2**M rounded, a carry into the exponent included
        _, e = np.frexp(a)
        e = e.astype(np.int64) - 1
        scaled = step(np.ldexp(a, (fmt.mantissa - e).astype(np.int32)))
        normal = (e + fmt.bias - 1) * (1 << fmt.mantissa) + scaled
        code = np.where(a < 2.0 ** (1 - fmt.bias), subnormal, normal)
        code = np.where(np.isfinite(a), np.minimum(code, fmt.max_code), fmt.max_code)
    code = code.astype(np.int64)
    if rounding == "rtz" and fmt.infinity:
        code = np.where(np.isinf(a), fmt.exponent_mask << fmt.mantissa, code)
    code = np.where(np.signbit(x), code | 0x80, code)
    return np.where(np.isnan(x), NAN, code).astype(np.uint8)


def encode_scalar(value: float, dtype: T.DType, rounding: str = "rtne") -> int:
    """`encode` of one Python float: the code a float8 literal compiles to."""
    return int(encode(np.array([value]), dtype, rounding)[0])
