"""`mtriton.reinterpret`: an array passed to a kernel as a pointer to another element type.

MLX has no float8 dtype, so float8 data lives in uint8 arrays; `reinterpret(bits, tl.float8e5)`
hands such an array to a kernel whose pointer parameter then points at float8 values, as
Triton's `triton.reinterpret(tensor, dtype)` does for a torch tensor. Any element type works:
the kernel reads the array's bytes as that type (a float32 array as uint32 bits, say).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..dtypes import MX_TO_IR
from ..errors import LaunchTypeError
from ..ir import types as T


class Reinterpreted:
    """An `mx.array` whose bytes a kernel reads as `dtype` elements (`reinterpret`).

    A launch passes `base` as the buffer and writes the kernel's stores back into it.

    Attributes:
        base: The array.
        dtype: The element type the kernel's pointer parameter has.
    """

    __slots__ = ("base", "dtype")

    def __init__(self, base: mx.array, dtype: T.DType) -> None:
        self.base = base
        self.dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.base.shape)

    def __repr__(self) -> str:
        return f"reinterpret({self.base.dtype} array of shape {list(self.base.shape)}, {self.dtype})"


def reinterpret(array: mx.array | Reinterpreted, dtype: Any) -> mx.array | Reinterpreted:
    """`array` passed to kernels as a pointer to `dtype` elements (Triton's `triton.reinterpret`).

    Args:
        array: The `mx.array` (or an earlier `reinterpret`'s result) whose bytes hold the values,
            float8 values in a uint8 array, say.
        dtype: A `tl` dtype: `tl.float8e4nv`, `tl.float8e5`, or any other.

    Returns:
        The array itself where `dtype` is its own element type, else a `Reinterpreted` to pass
        as the kernel argument.

    Raises:
        LaunchTypeError: `array` is not an mx.array or `dtype` not a `tl` dtype.
    """
    base = array.base if isinstance(array, Reinterpreted) else array
    if not isinstance(base, mx.array):
        raise LaunchTypeError(f"[reinterpret] array: expected an mx.array, got {type(array).__name__}")
    if not isinstance(dtype, T.DType):
        raise LaunchTypeError(f"[reinterpret] dtype: expected a tl dtype such as tl.float8e5, got {dtype!r}")
    if MX_TO_IR.get(base.dtype) == dtype:
        return base
    return Reinterpreted(base, dtype)


def array_of(value: Any) -> mx.array | None:
    """The array behind a kernel argument (`value` itself or a `Reinterpreted`'s base), else None."""
    if isinstance(value, mx.array):
        return value
    if isinstance(value, Reinterpreted):
        return value.base
    return None
