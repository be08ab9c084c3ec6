"""What every primitive family shares: dtype sets and names, argument checks, row and block helpers.

Argument errors name the public function that was called and the argument, then say what it has
and what was expected, in one grammar: `[rmsnorm] weight has shape (63,); expected (64,) to match
x's last axis`, `[rope] x has dtype int32; supported: float32, float16, bfloat16`. Type and dtype
errors are `TypeError`s, shape errors `ValueError`s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

import mtriton as triton

# Storage dtypes of the float kernels; their math is float32 whatever the storage.
FLOAT_DTYPES = (mx.float32, mx.float16, mx.bfloat16)
# Dtypes of row indices.
INDEX_DTYPES = (mx.int32, mx.int64, mx.uint32)
# Metal's lowering of tl.dot stages both operands as float32 in 32 KB of threadgroup memory:
# tiles need BLOCK_M * BLOCK_K + BLOCK_K * BLOCK_N <= 8192 (and every dot dimension >= 16).
MAX_STAGED_DOT_ELEMENTS = 8192


def dtype_name(dtype: mx.Dtype) -> str:
    """`float16` for `mx.float16`: a dtype as error messages print it."""
    return str(dtype).removeprefix("mlx.core.")


# --------------------------------------------------------------------------- argument checks


def check_array(fn: str, name: str, value: object, dtypes: Sequence[mx.Dtype] | None = None) -> None:
    """`value`, the argument `name` of `fn`, must be an mx.array, of one of `dtypes` if given."""
    if not isinstance(value, mx.array):
        raise TypeError(f"[{fn}] {name} has type {type(value).__name__}; expected an mx.array")
    if dtypes is not None:
        check_dtype(fn, name, value, dtypes)


def check_dtype(fn: str, name: str, array: mx.array, dtypes: Sequence[mx.Dtype]) -> None:
    """`array` must have one of `dtypes`."""
    if array.dtype not in dtypes:
        supported = ", ".join(dtype_name(dtype) for dtype in dtypes)
        raise TypeError(f"[{fn}] {name} has dtype {dtype_name(array.dtype)}; supported: {supported}")


def check_ndim(
    fn: str, name: str, array: mx.array, ndim: int, expected: str, *, at_least: bool = False
) -> None:
    """`array` must have `ndim` axes (`at_least`: `ndim` or more); `expected` describes them."""
    if array.ndim < ndim or (array.ndim > ndim and not at_least):
        raise ValueError(f"[{fn}] {name} has shape {tuple(array.shape)}; expected {expected}")


def check_shape(
    fn: str, name: str, array: mx.array, shape: tuple[int, ...], match: str | None = None
) -> None:
    """`array` must have `shape`; `match` says what that shape comes from."""
    if tuple(array.shape) != tuple(shape):
        because = f" to match {match}" if match else ""
        raise ValueError(f"[{fn}] {name} has shape {tuple(array.shape)}; expected {tuple(shape)}{because}")


def check_like(
    fn: str,
    name: str,
    array: object,
    like: mx.array,
    shape: tuple[int, ...],
    match: str | None = None,
    *,
    like_name: str = "x",
) -> None:
    """`array` must be an mx.array of `like`'s dtype (`like` is the argument `like_name`) and
    of `shape` (`match` as in `check_shape`)."""
    check_array(fn, name, array)
    check_shape(fn, name, array, shape, match)
    if array.dtype != like.dtype:
        raise TypeError(
            f"[{fn}] {name} has dtype {dtype_name(array.dtype)}; "
            f"expected {dtype_name(like.dtype)} to match {like_name}"
        )


def check_linear_weight(fn: str, name: str, weight: object, x: mx.array, out_features: str) -> int:
    """`weight` must be the weight of an `nn.Linear` on `x`'s last axis: (out, in_features), of
    x's dtype. `out_features` names its first axis for the message. Returns that axis's size."""
    check_array(fn, name, weight)
    in_features = x.shape[-1]
    check_ndim(fn, name, weight, 2, f"({out_features}, {in_features})")
    check_like(fn, name, weight, x, (weight.shape[0], in_features), "x's last axis")
    return weight.shape[0]


# --------------------------------------------------------------------------- rows and blocks


def as_rows(x: mx.array) -> mx.array:
    """`x` as a (rows, x.shape[-1]) matrix: every leading axis flattened into the rows."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def pow2_block(n: int, largest: int, smallest: int = 1) -> int:
    """The power of two that covers `n`, clamped to [smallest, largest] (smallest wins)."""
    return max(smallest, min(largest, triton.next_power_of_2(n)))


def tile_rows(tile: int, width: int) -> int:
    """How many rows of `width` elements fill a tile of `tile` elements: at least one."""
    return max(1, tile // width)
