"""Type promotion, broadcasting and op building: the one place the language's rules live.

Every `tl` builtin and every operator on a `tl.tensor` ends here. Functions take
`tensor`s or Python literals, apply Triton's rules, and append IR through the
builder of the kernel being compiled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import ir
from ..errors import CompilationError, KernelTypeError, UnsupportedError
from ..ir import types as T
from . import core

_local = threading.local()


class _Context:
    def __init__(self, builder: ir.Builder, codegen: Any) -> None:
        self.builder = builder
        self.codegen = codegen


def current_context() -> _Context | None:
    """The kernel being compiled on this thread, if any."""
    return getattr(_local, "ctx", None)


def context() -> _Context:
    ctx = current_context()
    if ctx is None:
        raise CompilationError("tl functions can only be called inside a @mtriton.jit kernel being compiled")
    return ctx


class compiling:
    """`with compiling(builder, codegen):` makes `tl` calls build into `builder`."""

    def __init__(self, builder: ir.Builder, codegen: Any) -> None:
        self.ctx = _Context(builder, codegen)

    def __enter__(self) -> _Context:
        self.saved = getattr(_local, "ctx", None)
        _local.ctx = self.ctx
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        _local.ctx = self.saved


def builder() -> ir.Builder:
    return context().builder


def _t(value: ir.Value) -> core.tensor:
    return core.tensor(value)


# --------------------------------------------------------------------------- types


def literal_dtype(value: Any) -> T.DType:
    """The dtype a Python literal takes on its own (Triton's rules)."""
    if isinstance(value, bool):
        return T.int1
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return T.int32
        if -(2**63) <= value < 2**63:
            return T.int64
        if value < 2**64:
            return T.uint64
        raise KernelTypeError(f"integer literal {value} does not fit in 64 bits")
    if isinstance(value, float):
        return T.float32
    raise KernelTypeError(f"expected a tensor or a number, got {type(value).__name__} {value!r}")


def constant(value: Any, dtype: T.DType | None = None, shape: Sequence[int] = ()) -> core.tensor:
    dtype = dtype or literal_dtype(value)
    if dtype.is_floating():
        value = float(value)
    elif dtype.is_bool():
        value = bool(value)
    else:
        value = int(value)
    return _t(builder().build("constant", [], T.BlockType(dtype, tuple(shape)), value=value))


def to_tensor(x: Any) -> core.tensor:
    if isinstance(x, core.tensor):
        return x
    if isinstance(x, core.constexpr):
        x = x.value
    return constant(x)


def _integer_promote(a: T.DType, b: T.DType) -> T.DType:
    if a.kind == b.kind:
        return a if a.bits >= b.bits else b
    if a.kind == "uint":
        return a if a.bits >= b.bits else b
    return b if b.bits >= a.bits else a


def computation_type(a: T.DType, b: T.DType, *, div: bool = False) -> T.DType:
    """The element type two operands are computed in (Triton's promotion table)."""
    if a.is_ptr() or b.is_ptr():
        raise KernelTypeError(f"no arithmetic promotion between {a} and {b}")
    if a.is_fp8() or b.is_fp8():
        return _float8_computation_type(a, b)
    if a.is_floating() or b.is_floating():
        # the widest float wins; / and % never compute in half precision (PTX has no half
        # division), and bfloat16 survives only next to bfloat16
        for wide in (T.float64, T.float32):
            if wide in (a, b):
                return wide
        if T.float16 in (a, b):
            return T.float32 if div else T.float16
        return T.bfloat16 if a == b == T.bfloat16 and not div else T.float32
    if div:  # int / int is float32 in Triton
        return T.float32
    if a.is_bool() and b.is_bool():
        return T.int1
    if a.is_bool():
        return b
    if b.is_bool():
        return a
    return _integer_promote(a, b)


def _float8_computation_type(a: T.DType, b: T.DType) -> T.DType:
    """Triton's rules with a float8 operand: the other floating type (float32 next to bfloat16),
    float16 for two different float8 types, and the float8 type itself for two equal ones (which
    only `where` may compute in: `check_no_float8_arithmetic`)."""
    if a == b:
        return a
    other = b if a.is_fp8() else a
    if other.is_fp8():
        return T.float16
    if not other.is_floating():
        raise KernelTypeError(
            f"no arithmetic promotion between {a} and {b}: Triton mixes float8 only with "
            "floating-point types; convert the float8 operand first, e.g. x.to(tl.float32)"
        )
    return T.float32 if other == T.bfloat16 else other


def check_no_float8_arithmetic(what: str, dtype: T.DType) -> None:
    """Refuses to compute `what` in a float8 type, as Triton's GPU backends cannot either."""
    if dtype.is_fp8():
        raise UnsupportedError(
            f"{what} on {dtype} values is not supported: Triton computes it in {dtype}, which its "
            f"GPU backends cannot; convert first, e.g. x.to(tl.float32) (or tl.float16, which holds "
            "every float8 value exactly)"
        )


def _weak_dtype(literal: Any, other: T.DType) -> T.DType:
    """The dtype a Python literal takes next to a tensor of `other` (weak typing)."""
    if isinstance(literal, bool):
        return T.int1
    if isinstance(literal, int):
        if other.is_floating() or (other.is_int() and not other.is_bool()):
            return other
        return literal_dtype(literal)
    if isinstance(literal, float):
        return other if other.is_floating() else T.float32
    return literal_dtype(literal)


def unwrap(x: Any) -> Any:
    return x.value if isinstance(x, core.constexpr) else x


def binary_operands(a: Any, b: Any) -> tuple[core.tensor, core.tensor]:
    """Converts literals next to tensors with the weak-typing rule."""
    a, b = unwrap(a), unwrap(b)
    if not isinstance(a, core.tensor):
        a = constant(a, _weak_dtype(a, b.dtype)) if isinstance(b, core.tensor) else to_tensor(a)
    if not isinstance(b, core.tensor):
        b = constant(b, _weak_dtype(b, a.dtype))
    return a, b


# --------------------------------------------------------------------------- shapes


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    a, b = tuple(a), tuple(b)
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + a
    b = (1,) * (rank - len(b)) + b
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and 1 not in (x, y):
            raise KernelTypeError(f"cannot broadcast shapes {list(a)} and {list(b)} (dim {i})")
        out.append(max(x, y))
    return tuple(out)


def broadcast_to(x: core.tensor, shape: Sequence[int]) -> core.tensor:
    shape = tuple(int(s) for s in shape)
    if tuple(x.shape) == shape:
        return x
    if not x.shape:
        return _t(builder().build("splat", [x.handle], x.type.with_shape(shape)))
    if len(x.shape) > len(shape):
        raise KernelTypeError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
    while len(x.shape) < len(shape):
        x = expand_dims(x, 0)
    broadcast_shapes(x.shape, shape)
    if any(s != d and s != 1 for s, d in zip(x.shape, shape)):
        raise KernelTypeError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
    return _t(builder().build("broadcast", [x.handle], x.type.with_shape(shape)))


def broadcast_pair(a: core.tensor, b: core.tensor) -> tuple[core.tensor, core.tensor]:
    shape = broadcast_shapes(a.shape, b.shape)
    return broadcast_to(a, shape), broadcast_to(b, shape)


def expand_dims(x: core.tensor, axis: int) -> core.tensor:
    rank = len(x.shape) + 1
    if not -rank <= axis < rank:
        raise KernelTypeError(f"expand_dims axis {axis} out of range for rank {rank - 1}")
    axis %= rank
    shape = list(x.shape)
    shape.insert(axis, 1)
    if not x.shape:
        return _t(builder().build("splat", [x.handle], x.type.with_shape(tuple(shape))))
    return _t(builder().build("expand_dims", [x.handle], x.type.with_shape(tuple(shape)), axis=axis))


def reshape(x: core.tensor, shape: Sequence[int]) -> core.tensor:
    shape = tuple(int(unwrap(s)) for s in shape)
    numel = 1
    for s in shape:
        numel *= s
    if numel != x.type.numel:
        raise KernelTypeError(f"cannot reshape {list(x.shape)} ({x.type.numel} elements) to {list(shape)}")
    if tuple(x.shape) == shape:
        return x
    if not x.shape:
        return broadcast_to(x, shape)
    return _t(builder().build("reshape", [x.handle], x.type.with_shape(shape)))


def permute(x: core.tensor, order: Sequence[int]) -> core.tensor:
    order = tuple(int(unwrap(o)) for o in order)
    if sorted(order) != list(range(len(x.shape))):
        raise KernelTypeError(f"permute order {list(order)} is not a permutation of {len(x.shape)} dims")
    if order == tuple(range(len(order))):
        return x
    shape = tuple(x.shape[o] for o in order)
    return _t(builder().build("permute", [x.handle], x.type.with_shape(shape), order=order))


def join(a: core.tensor, b: core.tensor) -> core.tensor:
    a, b = binary_operands(a, b)
    a, b = broadcast_pair(a, b)
    if a.dtype != b.dtype:
        raise KernelTypeError(f"join needs equal dtypes, got {a.dtype} and {b.dtype}")
    return _t(builder().build("join", [a.handle, b.handle], a.type.with_shape((*a.shape, 2))))


def split(x: core.tensor) -> tuple[core.tensor, core.tensor]:
    if not x.shape or x.shape[-1] != 2:
        raise KernelTypeError(f"split needs a last dimension of size 2, got shape {list(x.shape)}")
    t = x.type.with_shape(tuple(x.shape[:-1]))
    op = builder().create("split", [x.handle], [t, t])
    return _t(op.results[0]), _t(op.results[1])


# --------------------------------------------------------------------------- elementwise


ROUNDINGS = ("rtne", "rtz")


def cast(x: Any, dtype: T.DType, bitcast: bool = False, rounding: str | None = None) -> core.tensor:
    """`x` converted to `dtype`; with `bitcast`, its bits reinterpreted (equal widths).

    A pointer cast to another pointer type (`p.to(tl.pointer_type(tl.uint8))`, with or
    without `bitcast`) keeps the address: the result reads the same bytes as the new pointee
    type, and offsets added to it count elements of that type. `rounding` ("rtne", the
    default, or "rtz") is Triton's `fp_downcast_rounding`, for conversions to a narrower
    floating type. float8 converts to and from floating types only (`mtriton/float8.py`).
    """
    x = to_tensor(x)
    if isinstance(dtype, core.constexpr):
        dtype = dtype.value
    if not isinstance(dtype, (T.DType, T.PointerType)):
        raise KernelTypeError(f"expected a dtype such as tl.float32, got {dtype!r}")
    if rounding is not None and rounding not in ROUNDINGS:
        raise KernelTypeError(f"fp_downcast_rounding must be one of {ROUNDINGS}, got {rounding!r}")
    src = x.dtype
    if rounding is not None and not (
        not bitcast and src.is_floating() and dtype.is_floating() and dtype.bits < src.bits
    ):
        raise KernelTypeError(
            f"fp_downcast_rounding is only for conversions to a narrower floating type, not {src} to {dtype}"
        )
    if src == dtype:
        return x
    if src.is_ptr() or dtype.is_ptr():
        if src.is_ptr() and dtype.is_ptr():
            return _t(builder().build("bitcast", [x.handle], x.type.with_elem(dtype)))
        raise UnsupportedError(
            f"casting between pointers and integers ({src} to {dtype}) is not supported: MLX "
            "exposes no array addresses to Python (there is no tensor.data_ptr()), so no integer "
            "can name an array; pass each array as a kernel argument instead"
        )
    if bitcast:
        if src.bits != dtype.bits:
            raise KernelTypeError(
                f"bitcast needs equal widths: {src} ({src.bits} bits) to {dtype} ({dtype.bits} bits)"
            )
        return _t(builder().build("bitcast", [x.handle], x.type.with_elem(dtype)))
    if src.is_fp8() or dtype.is_fp8():
        if not (src.is_floating() and dtype.is_floating()):
            raise KernelTypeError(
                f"cannot convert {src} to {dtype}: Triton converts float8 only to and from floating-point "
                f"types; go through float32 (x.to(tl.float32).to(...)), or bitcast to an 8-bit integer"
            )
        if src.is_fp8() and dtype.is_fp8():  # through float32, which holds every value: one rounding
            return cast(cast(x, T.float32), dtype)
    attrs = {"rounding": rounding} if rounding == "rtz" else {}
    return _t(builder().build("cast", [x.handle], x.type.with_elem(dtype), **attrs))


def _same_type_operands(a: Any, b: Any, *, div: bool = False) -> tuple[core.tensor, core.tensor]:
    a, b = binary_operands(a, b)
    a, b = broadcast_pair(a, b)
    dtype = computation_type(a.dtype, b.dtype, div=div)
    return cast(a, dtype), cast(b, dtype)


def binary(name: str, a: Any, b: Any, **attrs: Any) -> core.tensor:
    """Builds an arithmetic, bitwise or min/max op with Triton's promotion; `attrs` go on the op
    (`rounding="rn"` on a division: correctly rounded under every math mode)."""
    a, b = binary_operands(a, b)
    if name in ("add", "sub") and (a.dtype.is_ptr() or b.dtype.is_ptr()):
        return _pointer_arith(name, a, b)
    if a.dtype.is_ptr() or b.dtype.is_ptr():
        raise KernelTypeError(f"unsupported operand types for {name}: {a.dtype} and {b.dtype}")
    if name in ("and", "or", "xor", "shl", "shr"):
        if not (a.dtype.is_int() and b.dtype.is_int()):
            raise KernelTypeError(f"bitwise {name} needs integer operands, got {a.dtype} and {b.dtype}")
    if name in ("div", "floordiv", "mod") and a.dtype.is_int() and b.dtype.is_int():
        if not (a.dtype.is_bool() or b.dtype.is_bool()) and a.dtype.is_signed() != b.dtype.is_signed():
            raise KernelTypeError(
                f"cannot use /, // or % on {a.dtype} and {b.dtype}: they differ in signedness, which "
                "is unlikely to give a useful answer; cast them to the same signedness"
            )
    if name == "floordiv" and (a.dtype.is_floating() or b.dtype.is_floating()):
        a, b = _same_type_operands(a, b)
        return floor(binary("div", a, b))
    if name == "mod" and (a.dtype.is_floating() or b.dtype.is_floating()):
        # Triton's float %: x - floor(x / y) * y, which takes the divisor's sign (C's fmod, the
        # IR's `mod`, takes the dividend's)
        a, b = _same_type_operands(a, b, div=True)
        return binary("sub", a, binary("mul", floor(binary("div", a, b)), b))
    a, b = _same_type_operands(a, b, div=name == "div")
    check_no_float8_arithmetic(f"`{name}`", a.dtype)
    if name in ("shl", "shr"):
        b = cast(b, a.dtype)
    return _t(builder().build(name, [a.handle, b.handle], a.type, **attrs))


def _pointer_arith(name: str, a: core.tensor, b: core.tensor) -> core.tensor:
    if a.dtype.is_ptr() and b.dtype.is_ptr():
        raise KernelTypeError(f"cannot {name} two pointers ({a.dtype} and {b.dtype})")
    if b.dtype.is_ptr():
        if name == "sub":
            raise KernelTypeError("cannot subtract a pointer from a number")
        a, b = b, a
    if not b.dtype.is_int() or b.dtype.is_bool():
        raise KernelTypeError(f"pointer offsets must be integers, got {b.dtype}")
    a, b = broadcast_pair(a, b)
    if name == "sub":
        b = neg(b)
    return _t(builder().build("addptr", [a.handle, b.handle], a.type))


def compare(pred: str, a: Any, b: Any) -> core.tensor:
    a, b = binary_operands(a, b)
    if a.dtype.is_ptr() and b.dtype.is_ptr():
        a, b = broadcast_pair(a, b)
    else:
        a, b = _same_type_operands(a, b)
        check_no_float8_arithmetic(f"comparison `{pred}`", a.dtype)
    return _t(builder().build("cmp", [a.handle, b.handle], a.type.with_elem(T.int1), pred=pred))


def unary(name: str, x: Any) -> core.tensor:
    x = to_tensor(x)
    check_no_float8_arithmetic(f"`{name}`", x.dtype)
    if name in ("exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "floor", "ceil"):
        if not x.dtype.is_floating():
            raise KernelTypeError(f"{name} needs a floating-point operand, got {x.dtype}")
    if name == "not" and not x.dtype.is_int():
        raise KernelTypeError(f"bitwise not needs an integer operand, got {x.dtype}")
    return _t(builder().build(name, [x.handle], x.type))


def neg(x: Any) -> core.tensor:
    x = to_tensor(x)
    if x.dtype.is_bool():
        raise KernelTypeError("unary - is not defined on int1 (boolean) values; use `~x` or `x == 0`")
    return unary("neg", x)


def floor(x: Any) -> core.tensor:
    return unary("floor", x)


def logical_not(x: Any) -> core.tensor:
    x = to_tensor(x)
    return compare("eq", x, 0)


def logical(name: str, a: Any, b: Any) -> core.tensor:
    """`and`/`or` on runtime booleans: nonzero is true."""
    a, b = binary_operands(a, b)
    a = compare("ne", a, 0) if not a.dtype.is_bool() else a
    b = compare("ne", b, 0) if not b.dtype.is_bool() else b
    return binary(name, a, b)


def where(cond: Any, a: Any, b: Any) -> core.tensor:
    cond = to_tensor(cond)
    if not cond.dtype.is_bool():
        cond = compare("ne", cond, 0)
    a, b = binary_operands(a, b)
    if not (a.dtype.is_ptr() and b.dtype.is_ptr()):
        a, b = _same_type_operands(a, b)
    shape = broadcast_shapes(broadcast_shapes(cond.shape, a.shape), b.shape)
    cond, a, b = broadcast_to(cond, shape), broadcast_to(a, shape), broadcast_to(b, shape)
    return _t(builder().build("where", [cond.handle, a.handle, b.handle], a.type))


def fma(a: Any, b: Any, c: Any) -> core.tensor:
    a, b = binary_operands(a, b)
    a, c = binary_operands(a, c)
    shape = broadcast_shapes(broadcast_shapes(a.shape, b.shape), c.shape)
    dtype = computation_type(computation_type(a.dtype, b.dtype), c.dtype)
    check_no_float8_arithmetic("`fma`", dtype)
    a, b, c = (cast(broadcast_to(x, shape), dtype) for x in (a, b, c))
    return _t(builder().build("fma", [a.handle, b.handle, c.handle], a.type))


# --------------------------------------------------------------------------- memory


def _check_ptr(ptr: Any, what: str) -> core.tensor:
    if not isinstance(ptr, core.tensor) or not ptr.dtype.is_ptr():
        got = ptr.dtype if isinstance(ptr, core.tensor) else type(unwrap(ptr)).__name__
        raise KernelTypeError(f"{what} expects a pointer (a kernel argument plus offsets), got {got}")
    return ptr


def _mask(mask: Any, shape: Sequence[int]) -> core.tensor | None:
    mask = unwrap(mask)
    if mask is None:
        return None
    mask = to_tensor(mask)
    if not mask.dtype.is_bool():
        mask = compare("ne", mask, 0)
    return broadcast_to(mask, shape)


def load(ptr: Any, mask: Any = None, other: Any = None) -> core.tensor:
    ptr = _check_ptr(ptr, "tl.load")
    elem = ptr.dtype.element
    mask_t = _mask(mask, ptr.shape)
    other = unwrap(other)
    if mask_t is not None and tuple(mask_t.shape) != tuple(ptr.shape):
        ptr = broadcast_to(ptr, mask_t.shape)
    operands = [ptr.handle]
    if mask_t is not None:
        operands.append(mask_t.handle)
        if other is not None:
            other_t = cast(broadcast_to(to_tensor(other), ptr.shape), elem)
            operands.append(other_t.handle)
    elif other is not None:
        raise KernelTypeError("tl.load got `other` without `mask`")
    return _t(builder().build("load", operands, ptr.type.with_elem(elem)))


def store(ptr: Any, value: Any, mask: Any = None) -> None:
    ptr = _check_ptr(ptr, "tl.store")
    value = to_tensor(unwrap(value))
    if value.shape and len(value.shape) != len(ptr.shape):
        # Triton broadcasts a stored block to the pointer block's shape, never across ranks
        raise KernelTypeError(
            f"tl.store of a block of shape {list(value.shape)} through pointers of shape {list(ptr.shape)}: "
            "the ranks differ"
        )
    shape = broadcast_shapes(ptr.shape, value.shape)
    ptr = broadcast_to(ptr, shape)
    value = cast(broadcast_to(value, shape), ptr.dtype.element)
    operands = [ptr.handle, value.handle]
    mask_t = _mask(mask, shape)
    if mask_t is not None:
        operands.append(mask_t.handle)
    builder().create("store", operands, [])


def atomic_rmw(kind: str, ptr: Any, value: Any, mask: Any, sem: Any, scope: Any) -> core.tensor:
    ptr = _check_ptr(ptr, f"tl.atomic_{kind}")
    value = to_tensor(unwrap(value))
    shape = broadcast_shapes(ptr.shape, value.shape)
    ptr = broadcast_to(ptr, shape)
    elem = ptr.dtype.element
    check_no_float8_arithmetic(f"tl.atomic_{kind}", elem)
    if kind in ("and", "or", "xor") and not elem.is_int():
        raise KernelTypeError(f"atomic_{kind} needs an integer pointer, got {ptr.dtype}")
    value = cast(broadcast_to(value, shape), elem)
    operands = [ptr.handle, value.handle]
    mask_t = _mask(mask, shape)
    if mask_t is not None:
        operands.append(mask_t.handle)
    attrs = {"kind": kind, "sem": unwrap(sem) or "acq_rel", "scope": unwrap(scope) or "gpu"}
    return _t(builder().create("atomic_rmw", operands, [value.type], attrs).result)


def atomic_cas(ptr: Any, cmp: Any, value: Any, sem: Any, scope: Any) -> core.tensor:
    ptr = _check_ptr(ptr, "tl.atomic_cas")
    elem = ptr.dtype.element
    check_no_float8_arithmetic("tl.atomic_cas", elem)
    cmp = cast(broadcast_to(to_tensor(unwrap(cmp)), ptr.shape), elem)
    value = cast(broadcast_to(to_tensor(unwrap(value)), ptr.shape), elem)
    attrs = {"sem": unwrap(sem) or "acq_rel", "scope": unwrap(scope) or "gpu"}
    op = builder().create("atomic_cas", [ptr.handle, cmp.handle, value.handle], [value.type], attrs)
    return _t(op.result)


# --------------------------------------------------------------------------- reductions, scans, dot


Combine = Callable[[list["core.tensor"], list["core.tensor"]], Sequence["core.tensor"]]


def _combine_region(dtypes: list[T.DType], combine: Combine) -> ir.Block:
    b = builder()
    n = len(dtypes)
    region = b.new_block([T.BlockType(d) for d in dtypes] * 2)
    with b.insert_into(region):
        args = [_t(v) for v in region.args]
        out = combine(args[:n], args[n:])
        out = [out] if isinstance(out, core.tensor) else list(out)
        if len(out) != n:
            raise KernelTypeError(f"combine function returned {len(out)} values, expected {n}")
        out = [cast(to_tensor(o), d) for o, d in zip(out, dtypes)]
        if any(o.shape for o in out):
            raise KernelTypeError("combine function must return scalars")
        b.create("yield", [o.handle for o in out], [])
    return region


def _axis(axis: Any, rank: int) -> int:
    axis = unwrap(axis)
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise KernelTypeError(f"axis {axis!r} out of range for a block of rank {rank}")
    return axis % rank


def reduce(
    inputs: Sequence[core.tensor], axis: Any, combine: Combine, keep_dims: bool = False
) -> list[core.tensor]:
    """Reduces `inputs` (equal shapes) along `axis`; `axis=None` reduces everything."""
    inputs = [to_tensor(x) for x in inputs]
    for x in inputs:
        check_no_float8_arithmetic("a reduction", x.dtype)
    if unwrap(axis) is None:
        numel = inputs[0].type.numel
        flat = [reshape(x, (numel,)) for x in inputs]
        out = reduce(flat, 0, combine)
        if keep_dims:
            out = [reshape(o, (1,) * len(inputs[0].shape)) for o in out]
        return out
    shape = tuple(inputs[0].shape)
    if not shape:
        return inputs
    ax = _axis(axis, len(shape))
    region = _combine_region([x.dtype for x in inputs], combine)
    out_shape = shape[:ax] + shape[ax + 1 :]
    op = builder().create(
        "reduce",
        [x.handle for x in inputs],
        [x.type.with_shape(out_shape) for x in inputs],
        {"axis": ax},
        [region],
    )
    out = [_t(v) for v in op.results]
    if keep_dims:
        out = [expand_dims(o, ax) for o in out]
    return out


def scan(
    inputs: Sequence[core.tensor], axis: Any, combine: Combine, reverse: bool = False
) -> list[core.tensor]:
    inputs = [to_tensor(x) for x in inputs]
    for x in inputs:
        check_no_float8_arithmetic("a scan", x.dtype)
    ax = _axis(axis, len(inputs[0].shape))
    region = _combine_region([x.dtype for x in inputs], combine)
    op = builder().create(
        "scan",
        [x.handle for x in inputs],
        [x.type for x in inputs],
        {"axis": ax, "reverse": bool(unwrap(reverse))},
        [region],
    )
    return [_t(v) for v in op.results]


DOT_PRECISIONS = ("ieee", "tf32", "tf32x3")


def dot(a: Any, b: Any, acc: Any, input_precision: Any, out_dtype: T.DType) -> core.tensor:
    a, b = to_tensor(a), to_tensor(b)
    if len(a.shape) not in (2, 3) or len(a.shape) != len(b.shape):
        raise KernelTypeError(
            f"tl.dot needs two 2-D (or 3-D batched) blocks, got shapes {list(a.shape)} and {list(b.shape)}"
        )
    if a.shape[-1] != b.shape[-2]:
        raise KernelTypeError(f"tl.dot inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    for name, x in (("first", a), ("second", b)):
        if min(x.shape[-2:]) < 16:
            raise KernelTypeError(
                f"tl.dot's {name} operand has shape {list(x.shape)}; every dimension must be >= 16, as in Triton"
            )
    # float8 operands run as float16, which holds every float8 value: the products are exact
    # and accumulate in the accumulator's type, as a float8 matrix unit's would
    a, b = (cast(x, T.float16) if x.dtype.is_fp8() else x for x in (a, b))
    if a.dtype != b.dtype:
        dtype = computation_type(a.dtype, b.dtype)
        a, b = cast(a, dtype), cast(b, dtype)
    precision = unwrap(input_precision) or "tf32"
    if precision not in DOT_PRECISIONS:
        raise KernelTypeError(f"input_precision must be one of {DOT_PRECISIONS}, got {precision!r}")
    shape = (*a.shape[:-1], b.shape[-1])
    acc = unwrap(acc)
    if acc is None:
        acc_dtype = T.int32 if a.dtype.is_int() else (out_dtype or T.float32)
        acc = constant(0, acc_dtype, shape)
    elif tuple(acc.shape) != shape:
        raise KernelTypeError(f"tl.dot acc has shape {list(acc.shape)}, expected {list(shape)}")
    return _t(builder().build("dot", [a.handle, b.handle, acc.handle], acc.type, input_precision=precision))


# --------------------------------------------------------------------------- misc


def program_id(axis: Any) -> core.tensor:
    axis = unwrap(axis)
    if axis not in (0, 1, 2):
        raise KernelTypeError(f"program_id axis must be 0, 1 or 2, got {axis!r}")
    return _t(builder().build("program_id", [], T.BlockType(T.int32), axis=axis))


def num_programs(axis: Any) -> core.tensor:
    axis = unwrap(axis)
    if axis not in (0, 1, 2):
        raise KernelTypeError(f"num_programs axis must be 0, 1 or 2, got {axis!r}")
    return _t(builder().build("num_programs", [], T.BlockType(T.int32), axis=axis))


def arange(start: Any, end: Any) -> core.tensor:
    start, end = unwrap(start), unwrap(end)
    if not isinstance(start, int) or not isinstance(end, int):
        raise KernelTypeError(f"tl.arange needs constexpr integer bounds, got {start!r}, {end!r}")
    n = end - start
    if n <= 0 or n & (n - 1):
        raise KernelTypeError(f"tl.arange's range must be a power of two, got {end} - {start} = {n}")
    return _t(builder().build("arange", [], T.BlockType(T.int32, (n,)), start=start, end=end))


def full(shape: Sequence[Any], value: Any, dtype: T.DType) -> core.tensor:
    shape = tuple(int(unwrap(s)) for s in unwrap(shape))
    dtype = unwrap(dtype)
    value = unwrap(value)
    if isinstance(value, core.tensor):
        return broadcast_to(cast(value, dtype), shape)
    return constant(value, dtype, shape)


def assume(x: Any, **hints: int) -> core.tensor:
    x = to_tensor(x)
    return _t(builder().build("assume", [x.handle], x.type, **hints))


def device_print(prefix: str, args: Sequence[Any], hex: bool) -> None:
    handles = [to_tensor(a).handle for a in args]
    builder().create("device_print", handles, [], {"prefix": prefix, "hex": bool(hex)})


def device_assert(cond: Any, msg: str) -> None:
    cond = to_tensor(cond)
    if not cond.dtype.is_bool():
        cond = compare("ne", cond, 0)
    builder().create("device_assert", [cond.handle], [], {"msg": msg})


def debug_barrier() -> None:
    builder().create("debug_barrier", [], [])
