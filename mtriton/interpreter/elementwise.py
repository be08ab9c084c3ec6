"""Rules for the ops without memory or control effects: values, layouts, arithmetic.

Arithmetic computes in the op's element type with MLX. Where MLX's semantics
differ from the IR's (C-style integer division, `fmod`, casts to `i1`), the
rule says so.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import mlx.core as mx
import numpy as np

from mtriton import float8
from mtriton.ir import DType, Op, PointerType
from mtriton.ir import types as T

from .machine import (
    Frame,
    InterpreterError,
    Ptr,
    Runtime,
    elem_of,
    executes,
    expand_to,
    map_value,
    mx_dtype,
    scalar,
    select,
)
from .memory import pointer_cast

# ---------------------------------------------------------------- values


@executes("constant")
def _constant(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    # A broadcast view: a splatted constant costs no memory until combined.
    value = scalar(op.attrs["value"], elem_of(op.result))
    return mx.broadcast_to(value, frame.batch + op.result.type.shape)


@executes("program_id")
def _program_id(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    # Combine regions run with a wider batch that starts with the programs.
    pid = frame.launch.program_ids[op.attrs["axis"]]
    return mx.broadcast_to(expand_to(pid, len(frame.batch)), frame.batch)


@executes("num_programs")
def _num_programs(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    count = mx.array(frame.launch.grid[op.attrs["axis"]], dtype=mx.int32)
    return mx.broadcast_to(count, frame.batch)


@executes("arange")
def _arange(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    lanes = mx.arange(op.attrs["start"], op.attrs["end"], dtype=mx.int32)
    return mx.broadcast_to(lanes, frame.batch + lanes.shape)


@executes("assume")
def _assume(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    return args[0]


@executes("debug_barrier")
def _debug_barrier(frame: Frame, op: Op, args: list[Runtime]) -> None:
    # Programs never share memory mid-flight here: each op runs for all of them at once.
    return None


# ---------------------------------------------------------------- layouts


@executes("splat")
def _splat(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    shape = frame.batch + op.result.type.shape
    return map_value(lambda x: mx.broadcast_to(expand_to(x, len(shape)), shape), args[0])


@executes("broadcast")
def _broadcast(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    shape = frame.batch + op.result.type.shape
    return map_value(lambda x: mx.broadcast_to(x, shape), args[0])


@executes("expand_dims")
def _expand_dims(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    axis = op.attrs["axis"] % len(op.result.type.shape)
    return map_value(lambda x: mx.expand_dims(x, len(frame.batch) + axis), args[0])


@executes("reshape")
def _reshape(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    shape = frame.batch + op.result.type.shape
    return map_value(lambda x: x.reshape(shape), args[0])


@executes("permute")
def _permute(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    nb = len(frame.batch)
    axes = list(range(nb)) + [nb + axis for axis in op.attrs["order"]]
    return map_value(lambda x: mx.transpose(x, axes), args[0])


@executes("join")
def _join(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    a, b = args
    if isinstance(a, Ptr) and isinstance(b, Ptr) and a.param == b.param:
        rem = None
        if a.rem is not None or b.rem is not None:
            zeros = mx.zeros_like(a.offsets)
            rem = mx.stack([zeros if a.rem is None else a.rem, zeros if b.rem is None else b.rem], axis=-1)
        return Ptr(a.param, mx.stack([a.offsets, b.offsets], axis=-1), rem)
    if isinstance(a, Ptr) or isinstance(b, Ptr):
        raise InterpreterError(f"joining pointers into different arguments at {op.loc}")
    return mx.stack([a, b], axis=-1)


@executes("split")
def _split(frame: Frame, op: Op, args: list[Runtime]) -> list[Runtime]:
    return [map_value(lambda x, i=i: x[..., i], args[0]) for i in (0, 1)]


# ---------------------------------------------------------------- conversions


def _no_pointer(op: Op) -> None:
    """Casts between pointers and integers need addresses, which the interpreter does not model."""
    if any(isinstance(v.type.elem, PointerType) for v in [*op.operands, *op.results]):
        raise InterpreterError(
            f"`{op.name}` to or from a pointer is not supported by the interpreter at {op.loc}"
        )


@executes("cast")
def _cast(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    _no_pointer(op)
    x = args[0]
    src, dst = elem_of(op.operands[0]), elem_of(op.result)
    rounding = op.attrs.get("rounding", "rtne")
    if src.is_fp8():  # exact: a table of the 256 values
        return mx.take(_float8_values(src), x.astype(mx.int32)).astype(mx_dtype(dst))
    if dst.is_fp8():
        return _to_float8(x, src, dst, rounding)
    if dst.is_bool():
        return mx.not_equal(x, 0)
    # MLX's astype is C's conversion: float -> int truncates toward zero,
    # int -> narrower int wraps, bool -> number is 0/1; floats round to nearest even.
    out = x.astype(mx_dtype(dst))
    return _toward_zero(x, out, src) if rounding == "rtz" else out


@functools.cache
def _float8_values(dtype: DType) -> mx.array:
    return mx.array(float8.decode_table(dtype))


def _to_float8(x: mx.array, src: DType, dst: DType, rounding: str) -> mx.array:
    """float8 codes of `x` (`mtriton/float8.py`'s conversion, on the host)."""
    host = np.array(x) if src == T.float64 else np.array(x.astype(mx.float32))  # exact
    return mx.array(float8.encode(host, dst, rounding))


def _toward_zero(x: mx.array, rounded: mx.array, src: DType) -> mx.array:
    """`rounded` (`x` rounded to nearest) moved one step toward zero where it rounded away."""
    wide = mx.float64 if src == T.float64 else mx.float32
    with mx.stream(mx.cpu) if wide == mx.float64 else contextlib.nullcontext():
        away = mx.abs(rounded.astype(wide)) > mx.abs(x.astype(wide))
        bits = mx.view(rounded, {2: mx.uint16, 4: mx.uint32}[rounded.itemsize])
        # one code less in magnitude (the sign bit is untouched; infinity becomes the largest value)
        return mx.where(away, mx.view(bits - 1, rounded.dtype), rounded)


@executes("bitcast")
def _bitcast(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    src, dst = op.operands[0].type.elem, op.result.type.elem
    if isinstance(src, PointerType) and isinstance(dst, PointerType):
        return pointer_cast(args[0], src.element, dst.element)
    _no_pointer(op)
    return mx.view(args[0], mx_dtype(elem_of(op.result)))


# ---------------------------------------------------------------- arithmetic


def _trunc_div(a: mx.array, b: mx.array, dtype: DType) -> mx.array:
    """C integer division: truncates toward zero."""
    if not dtype.is_signed():
        return mx.floor_divide(a, b)
    # INT_MIN // -1 traps on x86 (SIGFPE kills the process), so divide by 1 there
    # and negate instead; the wrapped result is what GPUs produce.
    safe = mx.where(b == -1, 1, b)
    floor = mx.floor_divide(a, safe)
    inexact = mx.logical_and(mx.remainder(a, safe) != 0, (a < 0) != (safe < 0))
    return mx.where(b == -1, -a, mx.where(inexact, floor + 1, floor))


def _c_mod(a: mx.array, b: mx.array, dtype: DType) -> mx.array:
    """C remainder (`%` for ints, `fmod` for floats): takes the dividend's sign."""
    if dtype.is_floating():
        # MLX's remainder is Python's (divisor's sign); on magnitudes the two agree
        # exactly, whereas fixing the sign afterwards would round.
        r = mx.remainder(mx.abs(a), mx.abs(b))
        return mx.where(a < 0, -r, r)
    if not dtype.is_signed():
        return mx.remainder(a, b)
    safe = mx.where(b == -1, 1, b)
    r = mx.remainder(a, safe)
    r = mx.where(mx.logical_and(r != 0, (r < 0) != (a < 0)), r - safe, r)
    return mx.where(b == -1, 0, r)


def maxnum(a: mx.array, b: mx.array) -> mx.array:
    """IEEE maxNum, the IR's `maximum` on floats (C's fmax, Triton's default): a NaN operand
    gives the other one; MLX's maximum would give the NaN."""
    return mx.where(mx.isnan(a), b, mx.where(mx.isnan(b), a, mx.maximum(a, b)))


def minnum(a: mx.array, b: mx.array) -> mx.array:
    """IEEE minNum, the IR's `minimum` on floats: a NaN operand gives the other one."""
    return mx.where(mx.isnan(a), b, mx.where(mx.isnan(b), a, mx.minimum(a, b)))


_BINARY: dict[str, Callable[[mx.array, mx.array, DType], mx.array]] = {
    # i1 arithmetic wraps modulo 2 like any integer; MLX's bool + bool saturates.
    "add": lambda a, b, t: mx.bitwise_xor(a, b) if t.is_bool() else a + b,
    "sub": lambda a, b, t: mx.bitwise_xor(a, b) if t.is_bool() else a - b,
    "mul": lambda a, b, t: a * b,
    "div": lambda a, b, t: mx.divide(a, b),
    "floordiv": _trunc_div,
    "mod": _c_mod,
    "and": lambda a, b, t: mx.bitwise_and(a, b),
    "or": lambda a, b, t: mx.bitwise_or(a, b),
    "xor": lambda a, b, t: mx.bitwise_xor(a, b),
    "shl": lambda a, b, t: mx.left_shift(a, b),
    # C++ >> on the array's own type: arithmetic when signed, logical when unsigned.
    "shr": lambda a, b, t: mx.right_shift(a, b),
    "maximum": lambda a, b, t: maxnum(a, b) if t.is_floating() else mx.maximum(a, b),
    "minimum": lambda a, b, t: minnum(a, b) if t.is_floating() else mx.minimum(a, b),
    "pow": lambda a, b, t: mx.power(a, b),
    "atan2": lambda a, b, t: mx.arctan2(a, b),
}


@executes(*_BINARY)
def _binary(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    a, b = args
    return _BINARY[op.name](a, b, elem_of(op.result))


def _not(x: mx.array) -> mx.array:
    return mx.logical_not(x) if x.dtype == mx.bool_ else mx.bitwise_invert(x)


_UNARY: dict[str, Callable[[mx.array], mx.array]] = {
    "neg": mx.negative,
    "not": _not,
    "exp": mx.exp,
    # pow(2, x) rather than exp(x * ln 2), which loses bits for large |x|.
    "exp2": lambda x: mx.power(2.0, x),
    "log": mx.log,
    "log2": mx.log2,
    "sqrt": mx.sqrt,
    "rsqrt": mx.rsqrt,
    "sin": mx.sin,
    "cos": mx.cos,
    "tanh": mx.tanh,
    "abs": mx.abs,
    "erf": mx.erf,
    "floor": mx.floor,
    "ceil": mx.ceil,
    "log10": mx.log10,
    "log1p": mx.log1p,
    "expm1": mx.expm1,
    "cbrt": lambda x: mx.where(x < 0, -mx.power(-x, 1 / 3), mx.power(x, 1 / 3)),
    "tan": mx.tan,
    "asin": mx.arcsin,
    "acos": mx.arccos,
    "atan": mx.arctan,
    "sinh": mx.sinh,
    "cosh": mx.cosh,
    "asinh": mx.arcsinh,
    "acosh": mx.arccosh,
    "atanh": mx.arctanh,
    "trunc": mx.trunc,
    "rint": mx.round,  # MLX rounds halves to even
    "round": lambda x: mx.trunc(x) + mx.where(mx.abs(x - mx.trunc(x)) >= 0.5, mx.sign(x), 0),
}


# MLX computes these in float32 precision even for float64 arrays (measured: relative errors
# of 1e-7, erf 6e-6): float64 takes NumPy's instead, on the host.
_FLOAT64_ON_HOST: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "erf": np.vectorize(math.erf, otypes=[np.float64]),
}


@executes(*_UNARY)
def _unary(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    x = args[0]
    if x.dtype == mx.float64 and op.name in _FLOAT64_ON_HOST:
        return mx.array(_FLOAT64_ON_HOST[op.name](np.array(x)), dtype=mx.float64)
    return _UNARY[op.name](x)


_CMP: dict[str, Callable[[mx.array, mx.array], mx.array]] = {
    "eq": mx.equal,
    "ne": mx.not_equal,
    "lt": mx.less,
    "le": mx.less_equal,
    "gt": mx.greater,
    "ge": mx.greater_equal,
}


@executes("cmp")
def _cmp(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    a, b = args
    if isinstance(a, Ptr) and isinstance(b, Ptr):
        if a.param != b.param:
            raise InterpreterError(f"comparing pointers into different arguments at {op.loc}")
        if a.rem is None and b.rem is None:
            a, b = a.offsets, b.offsets
        else:
            size = op.operands[0].type.elem.element.itemsize
            a, b = a.byte_offsets(size), b.byte_offsets(size)
    return _CMP[op.attrs["pred"]](a, b)


@executes("fma")
def _fma(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    a, b, c = args
    dtype = elem_of(op.result)
    if dtype.is_floating() and dtype.bits < 64:
        # The product is exact in float64, so one final rounding matches a fused multiply-add
        # (up to rare double-rounding ties).
        with mx.stream(mx.cpu):  # MLX computes float64 only on the CPU
            wide = a.astype(mx.float64) * b.astype(mx.float64) + c.astype(mx.float64)
            return wide.astype(mx_dtype(dtype))
    return a * b + c


@executes("where")
def _where(frame: Frame, op: Op, args: list[Runtime]) -> Runtime:
    cond, a, b = args
    return select(cond, a, b, op)
