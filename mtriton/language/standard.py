"""Language functions written in the language itself, as in Triton's standard library.

The @jit functions here are inlined into the kernels that call them; the
plain functions build their index blocks and hand @jit combine functions to
`reduce`/`associative_scan`.
"""

from __future__ import annotations

from typing import Any

from ..errors import KernelTypeError
from ..ir import types as T
from . import core, semantic
from .source import jit


@jit
def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return 1 / (1 + core.exp(-x))


@jit
def softmax(x, dim=None, keep_dims=False, ieee_rounding=False):
    """exp(x - max) / sum(exp(x - max)) along `dim` (0 when None)."""
    axis = 0 if dim is None else dim
    z = x - core.max(x, axis, keep_dims=True)
    num = core.exp(z)
    den = core.sum(num, axis, keep_dims=True)
    return num / den


@jit
def _sum_combine(a, b):
    return a + b


@jit
def _prod_combine(a, b):
    return a * b


@jit
def _argmax_combine_left(value1, index1, value2, index2):
    # NaN counts as the largest value, and ties keep the smaller index.
    nan1 = value1 != value1
    gt = (value1 > value2) | nan1 | ((value1 == value2) & (index1 < index2))
    return core.where(gt, value1, value2), core.where(gt, index1, index2)


@jit
def _argmax_combine_any(value1, index1, value2, index2):
    gt = (value1 > value2) | (value1 != value1)
    return core.where(gt, value1, value2), core.where(gt, index1, index2)


@jit
def _argmin_combine_left(value1, index1, value2, index2):
    nan1 = value1 != value1
    lt = (value1 < value2) | nan1 | ((value1 == value2) & (index1 < index2))
    return core.where(lt, value1, value2), core.where(lt, index1, index2)


@jit
def _argmin_combine_any(value1, index1, value2, index2):
    lt = (value1 < value2) | (value1 != value1)
    return core.where(lt, value1, value2), core.where(lt, index1, index2)


def _index_along(x: core.tensor, axis: int) -> core.tensor:
    """A block of x's shape holding each element's index along `axis`."""
    n = x.shape[axis]
    index = semantic.arange(0, n)
    for d in range(len(x.shape)):
        if d != axis:
            index = semantic.expand_dims(index, d)
    return semantic.broadcast_to(index, x.shape)


def _arg_reduce(x: Any, axis: Any, combine: Any, keep_dims: Any) -> core.tensor:
    x = semantic.to_tensor(x)
    axis = semantic.unwrap(axis)
    if axis is None:
        x = semantic.reshape(x, (x.numel,))
        axis = 0
    axis = semantic._axis(axis, len(x.shape))
    _, index = core.reduce((x, _index_along(x, axis)), axis, combine, keep_dims)
    return index


@core.tensor_member
def argmax(input: Any, axis: Any, tie_break_left: Any = True, keep_dims: Any = False) -> core.tensor:
    """Index of the maximum along `axis` (the first one when `tie_break_left`)."""
    left = semantic.unwrap(tie_break_left)
    return _arg_reduce(input, axis, _argmax_combine_left if left else _argmax_combine_any, keep_dims)


@core.tensor_member
def argmin(input: Any, axis: Any, tie_break_left: Any = True, keep_dims: Any = False) -> core.tensor:
    """Index of the minimum along `axis` (the first one when `tie_break_left`)."""
    left = semantic.unwrap(tie_break_left)
    return _arg_reduce(input, axis, _argmin_combine_left if left else _argmin_combine_any, keep_dims)


def _scan_input(input: Any, dtype: Any) -> core.tensor:
    x = semantic.to_tensor(input)
    return semantic.cast(x, core._sum_dtype(x, dtype))


@core.tensor_member
def cumsum(input: Any, axis: Any = 0, reverse: Any = False, dtype: Any = None) -> core.tensor:
    """Inclusive prefix sum along `axis`; small integers accumulate in int32."""
    return core.associative_scan(_scan_input(input, dtype), axis, _sum_combine, reverse)


@core.tensor_member
def cumprod(input: Any, axis: Any = 0, reverse: Any = False) -> core.tensor:
    """Inclusive prefix product along `axis`."""
    return core.associative_scan(semantic.to_tensor(input), axis, _prod_combine, reverse)


def ravel(x: Any) -> core.tensor:
    """The block as 1-D, row-major."""
    x = semantic.to_tensor(x)
    return semantic.reshape(x, (x.numel,))


def swizzle2d(i: Any, j: Any, size_i: Any, size_j: Any, size_g: Any) -> tuple[Any, Any]:
    """Reorders a row-major (i, j) grid into groups of `size_g` rows (for L2 reuse)."""
    ij = i * size_j + j
    size_gj = size_g * size_j
    group_id = ij // size_gj
    off_i = group_id * size_g
    size_g = core.minimum(size_i - off_i, size_g)
    ij = ij % size_gj
    new_i = off_i + ij % size_g
    new_j = ij // size_g
    return new_i, new_j


def interleave(a: Any, b: Any) -> core.tensor:
    """The elements of `a` and `b` alternating along the last axis: (..., n) twice to (..., 2n)."""
    joined = semantic.join(a, b)
    return semantic.reshape(joined, (*joined.shape[:-2], 2 * joined.shape[-2]))


def cat(input: Any, other: Any, can_reorder: bool = False) -> core.tensor:
    """`input` then `other` along axis 0: (n, ...) twice to (2n, ...).

    Triton requires `can_reorder=True` and may order the elements as it likes; here they are
    always in order, so any `can_reorder` is accepted.
    """
    joined = semantic.join(input, other)  # (n, ..., 2)
    rank = len(joined.shape)
    front = semantic.permute(joined, (rank - 1, *range(rank - 1)))  # (2, n, ...)
    return semantic.reshape(front, (2 * joined.shape[0], *joined.shape[1:-1]))


def umulhi(x: Any, y: Any) -> core.tensor:
    """The high half of the full product of two integers read as unsigned: bits 32 to 63 of the
    product of 32-bit integers, 64 to 127 for 64-bit ones. The result has the operands' dtype."""
    x, y = semantic.binary_operands(x, y)
    x, y = semantic.broadcast_pair(x, y)
    dtype = semantic.computation_type(x.dtype, y.dtype)
    if not dtype.is_int() or dtype.is_bool() or dtype.bits not in (32, 64):
        raise KernelTypeError(f"tl.umulhi needs 32- or 64-bit integers, got {x.dtype} and {y.dtype}")
    unsigned = T.uint32 if dtype.bits == 32 else T.uint64
    x, y = (semantic.cast(semantic.cast(v, dtype), unsigned, bitcast=True) for v in (x, y))
    if dtype.bits == 32:
        product = semantic.cast(x, T.uint64) * semantic.cast(y, T.uint64)
        high = semantic.cast(product >> 32, T.uint32)
    else:  # four 32-bit partial products, carried into the high word
        x_lo, x_hi, y_lo, y_hi = x & 0xFFFFFFFF, x >> 32, y & 0xFFFFFFFF, y >> 32
        cross = ((x_lo * y_lo) >> 32) + ((x_hi * y_lo) & 0xFFFFFFFF) + x_lo * y_hi
        high = x_hi * y_hi + ((x_hi * y_lo) >> 32) + (cross >> 32)
    return semantic.cast(high, dtype, bitcast=True)
