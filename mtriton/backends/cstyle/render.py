"""C expressions for IR values and elementwise ops, in one dialect.

Everything here is a function of the `Dialect` and the op alone (no lowering state): a
literal of an IR type, an elementwise op applied to operand expressions, a conversion
between element types, and whether a combine region is one builtin operator. The operator
spellings shared by every C-like language are the tables below.
"""

from __future__ import annotations

import math

from ... import float8, ir
from ...ir import types as T
from .dialect import Dialect

# Binary ops spelled as a C operator, the result cast back to its type (C promotes narrow ints).
BINARY_SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
    "floordiv": "/",
    "and": "&",
    "or": "|",
    "xor": "^",
    "shl": "<<",
    "shr": ">>",
}
CMP_SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# Math ops on integers: the C++ overloads, whatever the dialect calls the float versions.
INT_FUNCTIONS = {"maximum": "max", "minimum": "min", "abs": "abs"}
# Combine-region ops a reduction or scan may apply as one operator (`combiner_kind`).
COMBINERS = ("add", "mul", "maximum", "minimum", "and", "or", "xor")


def literal(d: Dialect, value: object, elem: T.ElemType) -> str:
    """C literal of `value` as element type `elem` (pointers: their int32 offsets)."""
    dtype = elem if isinstance(elem, T.DType) else T.int32
    if dtype.is_fp8():  # its code, as the byte that holds it
        code = float8.encode_scalar(float(value), dtype)  # type: ignore[arg-type]
        return f"static_cast<{d.ctype(dtype)}>({code}u)"
    if dtype.is_bool():
        return "true" if value else "false"
    if dtype.is_floating():
        v = float(value)  # type: ignore[arg-type]
        if math.isnan(v):
            text = d.extra["nan"]
        elif math.isinf(v):
            text = d.extra["inf"] if v > 0 else f"(-{d.extra['inf']})"
        else:
            text = repr(v) + d.float_literal_suffix
        return text if dtype == T.float32 else f"static_cast<{d.ctype(dtype)}>({text})"
    v = int(value)  # type: ignore[arg-type]
    if dtype.bits == 64:
        suffix = "LL" if dtype.is_signed() else "ULL"
        return f"static_cast<{d.ctype(dtype)}>({v}{suffix})"
    if dtype.kind == "uint":
        return f"static_cast<{d.ctype(dtype)}>({v}u)"
    return f"static_cast<{d.ctype(dtype)}>({v})" if dtype.bits < 32 else str(v)


def render(d: Dialect, op: ir.Op, args: list[str]) -> str:
    """C expression for an elementwise op applied to operand expressions."""
    name = op.name
    elem = op.result.type.elem
    if name == "addptr":
        return f"({args[0]} + {args[1]})"
    if name == "cmp":
        return f"({args[0]} {CMP_SYMBOLS[op.attrs['pred']]} {args[1]})"
    if name == "where":
        return f"({args[0]} ? {args[1]} : {args[2]})"
    if name == "cast":
        return render_cast(d, args[0], op.operands[0].type.elem, elem, op.attrs.get("rounding", "rtne"))
    if name == "bitcast" and elem.is_ptr():
        return pointer_offsets(args[0], op.operands[0].type.elem.element, elem.element)
    if name == "bitcast":
        return d.extra["bitcast"].format(t=d.ctype(elem), x=args[0])
    if name == "assume":
        return args[0]
    ctype = d.ctype(elem)
    if name == "mod" and not elem.is_floating():
        return f"static_cast<{ctype}>({args[0]} % {args[1]})"
    if name in BINARY_SYMBOLS and elem == T.float32 and name in d.math and "rounding" not in op.attrs:
        # CUDA's div.full; tl.div_rn keeps the correctly rounded `/`
        return f"{d.math[name]}({args[0]}, {args[1]})"
    if name in BINARY_SYMBOLS:
        if elem.is_bool() and name in ("and", "or", "xor"):
            return f"({args[0]} {BINARY_SYMBOLS[name]} {args[1]})"
        return f"static_cast<{ctype}>({args[0]} {BINARY_SYMBOLS[name]} {args[1]})"
    if name == "neg":
        return f"static_cast<{ctype}>(-{args[0]})"
    if name == "not":
        return f"(!{args[0]})" if elem.is_bool() else f"static_cast<{ctype}>(~{args[0]})"
    if name in INT_FUNCTIONS and not elem.is_floating():
        return f"static_cast<{ctype}>({INT_FUNCTIONS[name]}({', '.join(args)}))"
    fn = d.math_function(name)
    if elem == T.float32:
        return f"{fn}({', '.join(args)})"
    # half/bfloat math is computed in float and rounded once, as MLX does
    inner = ", ".join(f"static_cast<float>({a})" for a in args)
    return f"static_cast<{ctype}>({fn}({inner}))"


# The offset a cast to a wider type gives a pointer between two of its elements: far below the
# argument, so that an access through it faults (CUDA, the emulators) as the misaligned access
# it stands for would, instead of reading the element below.
MISALIGNED = -(1 << 30)


def pointer_offsets(x: str, src: T.DType, dst: T.DType) -> str:
    """Offsets `x` in `src` elements as offsets in `dst` elements of the same address."""
    if src.itemsize > dst.itemsize:
        return f"({x} * {src.itemsize // dst.itemsize})"
    if src.itemsize < dst.itemsize:
        ratio = dst.itemsize // src.itemsize
        return f"(({x}) % {ratio} == 0 ? ({x}) / {ratio} : {MISALIGNED})"
    return x


def render_cast(d: Dialect, x: str, src: T.ElemType, dst: T.ElemType, rounding: str = "rtne") -> str:
    """C expression converting `x` from element type `src` to `dst` (`rounding`: "rtne" or "rtz",
    for conversions to a narrower float)."""
    narrow = (T.float16, T.bfloat16)
    if src.is_fp8():  # exactly, through float (which holds every float8 value, as half and bfloat do)
        value = f"mt_{src.short}_to_float({x})"
        return value if dst == T.float32 else f"static_cast<{d.ctype(dst)}>({value})"  # type: ignore[arg-type]
    if dst.is_fp8() or (rounding == "rtz" and dst in narrow):
        value = x if src == T.float32 else f"static_cast<float>({x})"  # exact: from half or bfloat
        if dst.is_fp8():
            return f"mt_float_to_{dst.short}{'_rtz' if rounding == 'rtz' else ''}({value})"
        return f"mt_rtz_{dst.short}({value})"
    if dst.is_bool():
        if src in (T.float16, T.bfloat16):
            return f"(static_cast<float>({x}) != 0.0f)"
        return f"({x} != 0)" if not src.is_bool() else x
    ctype = d.ctype(dst)  # type: ignore[arg-type]
    if src in narrow and dst in narrow:
        return f"static_cast<{ctype}>(static_cast<float>({x}))"
    if src in narrow and not dst.is_floating():
        return f"static_cast<{ctype}>(static_cast<float>({x}))"
    if dst in narrow and not src.is_floating():
        return f"static_cast<{ctype}>(static_cast<float>({x}))"
    return f"static_cast<{ctype}>({x})"


def combiner_kind(region: ir.Block) -> str | None:
    """`add`/`maximum`/... when a combine region is exactly one such op on its two args."""
    if len(region.args) != 2 or len(region.ops) != 2:
        return None
    op, term = region.ops
    if op.name not in COMBINERS or term.operands != [op.result]:
        return None
    return op.name if op.operands in (region.args, region.args[::-1]) else None
