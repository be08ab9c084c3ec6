"""The kernel language: `tl.tensor`, `tl.constexpr`, dtypes and the builtins.

These functions run while a kernel is compiled: each one appends IR through
`semantic` and returns `tensor`s that wrap IR values. Called outside a kernel
they raise.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from ..errors import KernelTypeError
from ..ir import types as T
from . import semantic

# dtypes, Triton's names
int1 = T.int1
int8, int16, int32, int64 = T.int8, T.int16, T.int32, T.int64
uint8, uint16, uint32, uint64 = T.uint8, T.uint16, T.uint32, T.uint64
float16, bfloat16, float32, float64 = T.float16, T.bfloat16, T.float32, T.float64
float8e4nv, float8e5 = T.float8e4nv, T.float8e5  # storage and conversions: `mtriton/float8.py`
dtype = T.DType
pointer_type = T.PointerType
pi32_t = pointer_type(int32)  # Triton's name for a pointer to int32


class constexpr:
    """A compile-time value; also the annotation that marks constexpr parameters."""

    def __init__(self, value: Any) -> None:
        self.value = value.value if isinstance(value, constexpr) else value

    def __repr__(self) -> str:
        return f"constexpr[{self.value!r}]"

    def __index__(self) -> int:
        return self.value

    def __bool__(self) -> bool:
        return bool(self.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        return self.value == semantic.unwrap(other)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.value(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.value, name)


def _int_tuple(shape: Any) -> tuple[int, ...]:
    shape = semantic.unwrap(shape)
    if isinstance(shape, (int, constexpr)):
        return (int(semantic.unwrap(shape)),)
    return tuple(int(semantic.unwrap(s)) for s in shape)


class tensor:
    """A block of values in a kernel (a scalar when `shape == []`)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.type = handle.type

    @property
    def dtype(self) -> T.DType:
        return self.type.elem

    @property
    def shape(self) -> list[int]:
        return list(self.type.shape)

    @property
    def numel(self) -> int:
        return self.type.numel

    def __repr__(self) -> str:
        return f"tl.tensor({self.type})"

    def __bool__(self) -> bool:
        raise KernelTypeError(
            "a runtime value cannot be used as a Python bool here: use it as the condition of "
            "an `if`/`while`, or combine conditions with `&` and `|`"
        )

    def __iter__(self) -> Any:
        raise KernelTypeError("a tl.tensor cannot be iterated; use tl.split or indexing with None")

    # arithmetic
    def __add__(self, o: Any) -> tensor:
        return semantic.binary("add", self, o)

    def __radd__(self, o: Any) -> tensor:
        return semantic.binary("add", o, self)

    def __sub__(self, o: Any) -> tensor:
        return semantic.binary("sub", self, o)

    def __rsub__(self, o: Any) -> tensor:
        return semantic.binary("sub", o, self)

    def __mul__(self, o: Any) -> tensor:
        return semantic.binary("mul", self, o)

    def __rmul__(self, o: Any) -> tensor:
        return semantic.binary("mul", o, self)

    def __truediv__(self, o: Any) -> tensor:
        return semantic.binary("div", self, o)

    def __rtruediv__(self, o: Any) -> tensor:
        return semantic.binary("div", o, self)

    def __floordiv__(self, o: Any) -> tensor:
        return semantic.binary("floordiv", self, o)

    def __rfloordiv__(self, o: Any) -> tensor:
        return semantic.binary("floordiv", o, self)

    def __mod__(self, o: Any) -> tensor:
        return semantic.binary("mod", self, o)

    def __rmod__(self, o: Any) -> tensor:
        return semantic.binary("mod", o, self)

    def __pow__(self, o: Any) -> tensor:
        return semantic.binary("pow", self, o)

    def __rpow__(self, o: Any) -> tensor:
        return semantic.binary("pow", o, self)

    def __neg__(self) -> tensor:
        return semantic.neg(self)

    def __pos__(self) -> tensor:
        return self

    def __invert__(self) -> tensor:
        return semantic.unary("not", self)

    def __abs__(self) -> tensor:
        return semantic.unary("abs", self)

    # bitwise
    def __and__(self, o: Any) -> tensor:
        return semantic.binary("and", self, o)

    def __rand__(self, o: Any) -> tensor:
        return semantic.binary("and", o, self)

    def __or__(self, o: Any) -> tensor:
        return semantic.binary("or", self, o)

    def __ror__(self, o: Any) -> tensor:
        return semantic.binary("or", o, self)

    def __xor__(self, o: Any) -> tensor:
        return semantic.binary("xor", self, o)

    def __rxor__(self, o: Any) -> tensor:
        return semantic.binary("xor", o, self)

    def __lshift__(self, o: Any) -> tensor:
        return semantic.binary("shl", self, o)

    def __rlshift__(self, o: Any) -> tensor:
        return semantic.binary("shl", o, self)

    def __rshift__(self, o: Any) -> tensor:
        return semantic.binary("shr", self, o)

    def __rrshift__(self, o: Any) -> tensor:
        return semantic.binary("shr", o, self)

    # comparisons
    def __lt__(self, o: Any) -> tensor:
        return semantic.compare("lt", self, o)

    def __le__(self, o: Any) -> tensor:
        return semantic.compare("le", self, o)

    def __gt__(self, o: Any) -> tensor:
        return semantic.compare("gt", self, o)

    def __ge__(self, o: Any) -> tensor:
        return semantic.compare("ge", self, o)

    def __eq__(self, o: Any) -> tensor:  # type: ignore[override]
        return semantic.compare("eq", self, o)

    def __ne__(self, o: Any) -> tensor:  # type: ignore[override]
        return semantic.compare("ne", self, o)

    __hash__ = object.__hash__

    def __getitem__(self, index: Any) -> tensor:
        """`x[None, :]`, `x[:, None]`: insert size-1 dims; `:` keeps a dim."""
        index = semantic.unwrap(index)
        if not isinstance(index, tuple):
            index = (index,)
        out = self
        dim = 0
        for item in index:
            item = semantic.unwrap(item)
            if item is None:
                out = semantic.expand_dims(out, dim)
                dim += 1
            elif isinstance(item, slice) and item == slice(None):
                dim += 1
            else:
                raise KernelTypeError(
                    f"unsupported index {item!r}: only None and ':' are supported on blocks"
                )
        if dim - index.count(None) > len(self.shape):
            raise KernelTypeError(f"too many indices for a block of rank {len(self.shape)}")
        return out

    # methods (Triton exposes many builtins as tensor methods)
    def to(self, dtype: Any, fp_downcast_rounding: Any = None, bitcast: bool = False) -> tensor:
        return cast(self, dtype, fp_downcast_rounding, bitcast)

    @property
    def T(self) -> tensor:
        return trans(self)

    def sum(self, axis: Any = None, keep_dims: bool = False, dtype: Any = None) -> tensor:
        return sum(self, axis, keep_dims, dtype)

    def max(self, axis: Any = None, return_indices: bool = False, keep_dims: bool = False) -> Any:
        return max(self, axis, return_indices, keep_dims=keep_dims)

    def min(self, axis: Any = None, return_indices: bool = False, keep_dims: bool = False) -> Any:
        return min(self, axis, return_indices, keep_dims=keep_dims)

    def reshape(self, *shape: Any, can_reorder: bool = False) -> tensor:
        return reshape(self, shape[0] if len(shape) == 1 else shape, can_reorder=can_reorder)

    def broadcast_to(self, *shape: Any) -> tensor:
        return broadcast_to(self, shape[0] if len(shape) == 1 else shape)

    def expand_dims(self, axis: Any) -> tensor:
        return expand_dims(self, axis)

    def permute(self, *dims: Any) -> tensor:
        return permute(self, dims[0] if len(dims) == 1 else dims)

    def trans(self, *dims: Any) -> tensor:
        return trans(self, *dims)

    def split(self) -> tuple[tensor, tensor]:
        return split(self)

    def cast(self, dtype: Any, fp_downcast_rounding: Any = None, bitcast: bool = False) -> tensor:
        return cast(self, dtype, fp_downcast_rounding, bitcast)

    def view(self, *shape: Any) -> tensor:
        return view(self, *shape)


def tensor_member(fn: Any) -> Any:
    """Makes a language function defined after this module (`standard.py`) a `tensor` method as
    well, as Triton's `_tensor_member_fn` does: `x.cumsum(0)` is `tl.cumsum(x, 0)`."""
    setattr(tensor, fn.__name__, fn)
    return fn


# --------------------------------------------------------------------------- creation


def program_id(axis: Any) -> tensor:
    """The index of this program along grid `axis` (0, 1 or 2), an int32 scalar."""
    return semantic.program_id(axis)


def num_programs(axis: Any) -> tensor:
    """The number of programs along grid `axis`."""
    return semantic.num_programs(axis)


def arange(start: Any, end: Any) -> tensor:
    """`[start, end)` as an int32 block; `end - start` must be a power of two."""
    return semantic.arange(start, end)


def full(shape: Any, value: Any, dtype: Any) -> tensor:
    """A block of `shape` filled with `value`."""
    return semantic.full(_int_tuple(shape), value, semantic.unwrap(dtype))


def zeros(shape: Any, dtype: Any) -> tensor:
    """A block of zeros."""
    return full(shape, 0, dtype)


def zeros_like(x: tensor) -> tensor:
    return full(x.shape, 0, x.dtype)


def full_like(x: tensor, value: Any) -> tensor:
    return full(x.shape, value, x.dtype)


def cast(x: Any, dtype: Any, fp_downcast_rounding: Any = None, bitcast: bool = False) -> tensor:
    """Converts `x` to `dtype` (reinterpreting bits when `bitcast`).

    Args:
        x: The values; pointers cast to another pointer type keep their address (the same
            bytes read as the new type, offsets counting its elements).
        dtype: The new type.
        fp_downcast_rounding: For a conversion to a narrower floating type: "rtne" (to
            nearest, ties to even: the default) or "rtz" (toward zero).
        bitcast: Reinterpret the bits (equal widths) instead of converting the value.

    float8 (`tl.float8e4nv`, `tl.float8e5`) converts to and from the other floating types only
    (exactly from float8; to float8 rounding, with a finite value past the largest one and an
    infinity saturating to it, as Triton's `cvt.rn.satfinite` does: see `mtriton/float8.py`),
    and bitcasts to and from 8-bit integers.
    """
    rounding = semantic.unwrap(fp_downcast_rounding)
    return semantic.cast(x, semantic.unwrap(dtype), bitcast=bool(semantic.unwrap(bitcast)), rounding=rounding)


# --------------------------------------------------------------------------- shape


def broadcast_to(x: Any, *shape: Any) -> tensor:
    return semantic.broadcast_to(semantic.to_tensor(x), _int_tuple(shape[0] if len(shape) == 1 else shape))


def broadcast(a: Any, b: Any) -> tuple[tensor, tensor]:
    a, b = semantic.binary_operands(a, b)
    return semantic.broadcast_pair(a, b)


def expand_dims(x: Any, axis: Any) -> tensor:
    x = semantic.to_tensor(x)
    axes = semantic.unwrap(axis)
    for ax in axes if isinstance(axes, (tuple, list)) else (axes,):
        x = semantic.expand_dims(x, int(semantic.unwrap(ax)))
    return x


def reshape(x: Any, *shape: Any, can_reorder: bool = False) -> tensor:
    """Reshapes in row-major order. Triton lets `can_reorder=True` order the elements as it
    likes; mtriton keeps them in row-major order, which is one such order."""
    return semantic.reshape(semantic.to_tensor(x), _int_tuple(shape[0] if len(shape) == 1 else shape))


def view(x: Any, *shape: Any) -> tensor:
    """Like `reshape` (Triton allows reordering here; mtriton keeps row-major order)."""
    return reshape(x, *shape)


def permute(x: Any, *dims: Any) -> tensor:
    return semantic.permute(semantic.to_tensor(x), _int_tuple(dims[0] if len(dims) == 1 else dims))


def trans(x: Any, *dims: Any) -> tensor:
    """Transposes a 2-D block, or permutes by `dims`."""
    x = semantic.to_tensor(x)
    if dims:
        return permute(x, *dims)
    if len(x.shape) != 2:
        raise KernelTypeError(f"tl.trans without dims needs a 2-D block, got shape {x.shape}")
    return semantic.permute(x, (1, 0))


def join(a: Any, b: Any) -> tensor:
    return semantic.join(a, b)


def split(x: Any) -> tuple[tensor, tensor]:
    return semantic.split(semantic.to_tensor(x))


# --------------------------------------------------------------------------- elementwise


def where(condition: Any, x: Any, y: Any) -> tensor:
    """`x` where `condition` is true, else `y`, broadcast together."""
    return semantic.where(condition, x, y)


class PropagateNan(enum.Enum):
    """What `maximum`, `minimum` and `clamp` do with NaN, as in Triton.

    NONE (the default): a NaN operand gives the other one (IEEE maxNum, C's fmax); only NaN
    with NaN gives NaN. `tl.max`/`tl.min` reductions pass over NaNs the same way. ALL: any NaN
    operand (for `clamp`, a NaN `x`) gives NaN.
    """

    NONE = 0x0000
    ALL = 0xFFFF


def _nan_where(result: tensor, inputs: Sequence[Any], propagate_nan: Any) -> tensor:
    """`result`, or NaN where one of `inputs` is NaN when `propagate_nan` is ALL."""
    mode = semantic.unwrap(propagate_nan)
    if mode is None or mode == PropagateNan.NONE or not result.dtype.is_floating():
        return result
    if mode != PropagateNan.ALL:
        raise KernelTypeError(f"propagate_nan must be tl.PropagateNan.NONE or ALL, got {mode!r}")
    is_nan = [semantic.compare("ne", x, x) for x in inputs if isinstance(x, tensor) and x.dtype.is_floating()]
    if not is_nan:
        return result
    any_nan = is_nan[0]
    for flag in is_nan[1:]:
        any_nan = any_nan | flag
    return where(any_nan, float("nan"), result)


def maximum(x: Any, y: Any, propagate_nan: Any = PropagateNan.NONE) -> tensor:
    """The larger of `x` and `y`, elementwise (NaN: see `PropagateNan`)."""
    return _nan_where(semantic.binary("maximum", x, y), (x, y), propagate_nan)


def minimum(x: Any, y: Any, propagate_nan: Any = PropagateNan.NONE) -> tensor:
    """The smaller of `x` and `y`, elementwise (NaN: see `PropagateNan`)."""
    return _nan_where(semantic.binary("minimum", x, y), (x, y), propagate_nan)


def clamp(x: Any, min: Any, max: Any, propagate_nan: Any = PropagateNan.NONE) -> tensor:
    """`x` limited to [min, max]; with PropagateNan.ALL a NaN `x` stays NaN."""
    return _nan_where(minimum(maximum(x, min), max), (x,), propagate_nan)


def fma(x: Any, y: Any, z: Any) -> tensor:
    return semantic.fma(x, y, z)


def fdiv(x: Any, y: Any, ieee_rounding: bool = False) -> tensor:
    return div_rn(x, y) if ieee_rounding else semantic.binary("div", x, y)


def div_rn(x: Any, y: Any) -> tensor:
    """x / y correctly rounded whatever the math mode (CUDA's relaxed `/` is `div.full`, 2 ulp)."""
    return semantic.binary("div", x, y, rounding="rn")


def _float_unary(name: str) -> Any:
    def op(x: Any) -> tensor:
        x = semantic.to_tensor(x)
        if x.dtype.is_int():  # Triton computes math on integers in float32
            x = semantic.cast(x, T.float32)
        return semantic.unary(name, x)

    op.__name__ = name
    op.__doc__ = f"Elementwise `{name}`."
    return op


exp = _float_unary("exp")
exp2 = _float_unary("exp2")
log = _float_unary("log")
log2 = _float_unary("log2")
sqrt = _float_unary("sqrt")
sqrt_rn = sqrt
rsqrt = _float_unary("rsqrt")
sin = _float_unary("sin")
cos = _float_unary("cos")
tanh = _float_unary("tanh")
erf = _float_unary("erf")
floor = _float_unary("floor")
ceil = _float_unary("ceil")


def abs(x: Any) -> tensor:
    return semantic.unary("abs", x)


# --------------------------------------------------------------------------- memory


def load(
    pointer: Any,
    mask: Any = None,
    other: Any = None,
    cache_modifier: Any = "",
    eviction_policy: Any = "",
    volatile: Any = False,
) -> tensor:
    """Loads a block through a pointer block; masked-off lanes read `other` (or 0). `tl.load`
    (`block_pointer.load`) also takes block pointers."""
    return semantic.load(pointer, mask, other)


def store(
    pointer: Any, value: Any, mask: Any = None, cache_modifier: Any = "", eviction_policy: Any = ""
) -> None:
    """Stores `value` (broadcast and cast to the pointee type) where `mask` is true. `tl.store`
    (`block_pointer.store`) also takes block pointers."""
    semantic.store(pointer, value, mask)


def _atomic(kind: str) -> Any:
    def op(pointer: Any, val: Any, mask: Any = None, sem: Any = None, scope: Any = None) -> tensor:
        return semantic.atomic_rmw(kind, pointer, val, mask, sem, scope)

    op.__name__ = f"atomic_{kind}"
    op.__doc__ = f"Atomic {kind} of `val` into `*pointer` where `mask`; returns the old values."
    return op


atomic_add = _atomic("add")
atomic_max = _atomic("max")
atomic_min = _atomic("min")
atomic_xchg = _atomic("xchg")
atomic_and = _atomic("and")
atomic_or = _atomic("or")
atomic_xor = _atomic("xor")


def atomic_cas(pointer: Any, cmp: Any, val: Any, sem: Any = None, scope: Any = None) -> tensor:
    """Stores `val` where `*pointer == cmp`; returns the old values."""
    return semantic.atomic_cas(pointer, cmp, val, sem, scope)


# --------------------------------------------------------------------------- reductions


def reduce(input: Any, axis: Any, combine_fn: Any, keep_dims: bool = False) -> Any:
    """Reduces `input` (a tensor or a tuple of tensors) along `axis` with `combine_fn`."""
    inputs = list(input) if isinstance(input, (tuple, list)) else [input]
    out = semantic.reduce(inputs, axis, _combine(combine_fn), bool(semantic.unwrap(keep_dims)))
    return tuple(out) if isinstance(input, (tuple, list)) else out[0]


def associative_scan(input: Any, axis: Any, combine_fn: Any, reverse: bool = False) -> Any:
    """Inclusive scan of `input` (a tensor or a tuple of tensors) along `axis`."""
    inputs = list(input) if isinstance(input, (tuple, list)) else [input]
    out = semantic.scan(inputs, axis, _combine(combine_fn), reverse)
    return tuple(out) if isinstance(input, (tuple, list)) else out[0]


def _combine(fn: Any) -> semantic.Combine:
    """Adapts a @jit combine function to a region builder."""
    codegen = semantic.context().codegen

    def combine(a: list[tensor], b: list[tensor]) -> Sequence[tensor]:
        out = codegen.call_function(fn, [*a, *b], {})
        return out if isinstance(out, (tuple, list)) else [out]

    return combine


def _sum_dtype(x: tensor, dtype: Any) -> T.DType:
    dtype = semantic.unwrap(dtype)
    if dtype is not None:
        return dtype
    if x.dtype.is_bool() or (x.dtype.is_int() and x.dtype.bits < 32):
        return T.uint32 if x.dtype.kind == "uint" else T.int32
    return x.dtype


def _builtin_combine(op: str) -> semantic.Combine:
    return lambda a, b: [semantic.binary(op, a[0], b[0])]


def sum(input: Any, axis: Any = None, keep_dims: bool = False, dtype: Any = None) -> tensor:
    """Sum along `axis` (all axes when None); small integers accumulate in int32."""
    x = semantic.to_tensor(input)
    x = semantic.cast(x, _sum_dtype(x, dtype))
    return semantic.reduce([x], axis, _builtin_combine("add"), bool(semantic.unwrap(keep_dims)))[0]


def xor_sum(input: Any, axis: Any = None, keep_dims: bool = False) -> tensor:
    x = semantic.to_tensor(input)
    return semantic.reduce([x], axis, _builtin_combine("xor"), bool(semantic.unwrap(keep_dims)))[0]


def _minmax(op: str, input: Any, axis: Any, return_indices: Any, tie_break_left: Any, keep_dims: Any) -> Any:
    if semantic.unwrap(return_indices):
        x = semantic.to_tensor(input)
        # argmax/argmin are written in the language (standard.py), which attaches them to tensor
        index = (
            x.argmax(axis, tie_break_left, keep_dims)
            if op == "maximum"
            else x.argmin(axis, tie_break_left, keep_dims)
        )
        value = _minmax(op, input, axis, False, True, keep_dims)
        return value, index
    x = semantic.to_tensor(input)
    return semantic.reduce([x], axis, _builtin_combine(op), bool(semantic.unwrap(keep_dims)))[0]


def max(
    input: Any,
    axis: Any = None,
    return_indices: Any = False,
    return_indices_tie_break_left: Any = True,
    keep_dims: Any = False,
) -> Any:
    """Maximum along `axis`; with `return_indices`, also its (first) index."""
    return _minmax("maximum", input, axis, return_indices, return_indices_tie_break_left, keep_dims)


def min(
    input: Any,
    axis: Any = None,
    return_indices: Any = False,
    return_indices_tie_break_left: Any = True,
    keep_dims: Any = False,
) -> Any:
    """Minimum along `axis`; with `return_indices`, also its (first) index."""
    return _minmax("minimum", input, axis, return_indices, return_indices_tie_break_left, keep_dims)


def dot(
    input: Any,
    other: Any,
    acc: Any = None,
    input_precision: Any = None,
    allow_tf32: Any = None,
    max_num_imprecise_acc: Any = None,
    out_dtype: Any = T.float32,
) -> tensor:
    """`acc + input @ other` with float32 accumulation (int32 for int8 inputs).

    float8 inputs run as float16, which holds every float8 value: the products are exact and
    accumulate in float32, as on a float8 matrix unit (up to the order of the sums).
    """
    precision = semantic.unwrap(input_precision)
    if precision is None and semantic.unwrap(allow_tf32) is False:
        precision = "ieee"
    return semantic.dot(input, other, acc, precision, semantic.unwrap(out_dtype))
