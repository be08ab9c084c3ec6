"""Checks that a function is well-formed IR before passes and backends see it.

`verify` walks the function once. For every op it checks, in order: the name is
in the vocabulary, every operand is defined above the op in its own block or an
enclosing one (a region sees the values of the blocks around it, never those of
a sibling region), the operand, result and region counts, the regions
themselves, and then the op's type rule, one short function per op family
registered with `@_rule`. Terminators (`yield`, `condition`) must end every
region and appear nowhere else; the one exception is the empty `else` region
of an `if` without results. The enclosing op checks what its terminators yield.

Element kinds: `and or xor shl shr floordiv not` take integers (i1 included);
`div pow atan2 fma` and the math functions take floats; `mod` takes either;
no arithmetic takes pointers. float8 (`f8e4nv`, `f8e5`) is storage only: no arithmetic,
comparison, atomic, reduction, scan or dot takes it, and `cast` converts it to and from
floating types only (optionally `rounding = "rtz"`, on conversions to a narrower floating
type). `cast` and `bitcast` keep the shape; `cast` converts
numbers, `bitcast` keeps the width and is the only op that converts pointers (to
pointers). A `for` loop's bounds and step share one integer scalar type, which is
also the induction variable's.

Attributes without a sensible default are required (`constant.value`, every
`axis`, `arange.start/end`, `permute.order`, `cmp.pred`, `atomic_rmw.kind`);
the optional ones (`scan.reverse`, `sem`, `scope`, `input_precision`,
`device_print.prefix/hex`, `device_assert.msg`) are checked when present.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .core import (
    ALL_OPS,
    ATOMIC_KINDS,
    BINARY_OPS,
    CMP_PREDICATES,
    TERMINATORS,
    UNARY_OPS,
    Block,
    Function,
    Loc,
    Op,
    Value,
)
from .types import BlockType, PointerType, int1, int32


class VerificationError(Exception):
    """The IR breaks a rule; the message reads `file:line:col: op: what is wrong`.

    Attributes:
        where: The offending op's name, or `func @name` for the function itself.
        loc: Where the offending op came from in the kernel source.
        op: The offending op, when there is one.
    """

    def __init__(self, where: str, loc: Loc, message: str, op: Op | None = None) -> None:
        super().__init__(f"{loc}: {where}: {message}")
        self.where = where
        self.loc = loc
        self.op = op


def verify(fn: Function) -> None:
    """Checks every rule of the IR on `fn`.

    Args:
        fn: The function to check.

    Raises:
        VerificationError: At the first broken rule, naming the op and its
            source location.
    """
    where = f"func @{fn.name}"
    if fn.body.args != [p.value for p in fn.params]:
        message = "the body's arguments must be the parameters' values, in order"
        raise VerificationError(where, fn.loc, message)
    for param in fn.params:
        if not isinstance(param.value.type, BlockType):
            raise VerificationError(where, fn.loc, f"parameter {param.name} needs a BlockType")
    _Walker(fn.body.args).block(fn.body, set(fn.body.args), inside_region=False)


def _fail(op: Op, message: str) -> NoReturn:
    raise VerificationError(op.name, op.loc, message, op)


# op -> (fewest operands, most operands or None for any, results or None when the
# op's rule checks the count).
_ARITY: dict[str, tuple[int, int | None, int | None]] = {
    **dict.fromkeys(BINARY_OPS, (2, 2, 1)),
    **dict.fromkeys(UNARY_OPS, (1, 1, 1)),
    **dict.fromkeys(("constant", "program_id", "num_programs", "arange"), (0, 0, 1)),
    **dict.fromkeys(("splat", "broadcast", "expand_dims", "reshape"), (1, 1, 1)),
    **dict.fromkeys(("permute", "cast", "bitcast", "assume"), (1, 1, 1)),
    **dict.fromkeys(("join", "cmp", "addptr"), (2, 2, 1)),
    **dict.fromkeys(("fma", "where", "atomic_cas", "dot"), (3, 3, 1)),
    "split": (1, 1, 2),
    "load": (1, 3, 1),
    "store": (2, 3, 0),
    "atomic_rmw": (2, 3, 1),
    "reduce": (1, None, None),
    "scan": (1, None, None),
    "for": (3, None, None),
    "while": (0, None, None),
    "if": (1, 1, None),
    "yield": (0, None, 0),
    "condition": (1, None, 0),
    "debug_barrier": (0, 0, 0),
    "device_print": (0, None, 0),
    "device_assert": (1, 1, 0),
}
_REGIONS = {"reduce": 1, "scan": 1, "for": 1, "while": 2, "if": 2}
assert _ARITY.keys() == ALL_OPS, "every op in the vocabulary needs an arity"


class _Walker:
    """Walks blocks in program order, tracking which values each op may use."""

    def __init__(self, params: list[Value]) -> None:
        self.defined: set[Value] = set(params)

    def block(self, block: Block, visible: set[Value], inside_region: bool) -> None:
        """Checks `block`'s ops; `visible` holds the values they may use."""
        last = len(block.ops) - 1
        for i, op in enumerate(block.ops):
            self.op(op, visible)
            if op.name in TERMINATORS and not (inside_region and i == last):
                _fail(op, "a terminator may only end a region")

    def op(self, op: Op, visible: set[Value]) -> None:
        if op.name not in ALL_OPS:
            _fail(op, "unknown op")
        for i, value in enumerate(op.operands):
            if value not in visible:
                where = "outside its scope" if value in self.defined else "before its definition"
                _fail(op, f"operand {i} ({value.type}) is used {where}")
        fewest, most, results = _ARITY[op.name]
        count = len(op.operands)
        if count < fewest or (most is not None and count > most):
            expected = fewest if fewest == most else f"{fewest}..{most or ''}"
            _fail(op, f"takes {expected} operands, got {count}")
        if results is not None and len(op.results) != results:
            _fail(op, f"has {results} results, got {len(op.results)}")
        if len(op.regions) != _REGIONS.get(op.name, 0):
            _fail(op, f"has {_REGIONS.get(op.name, 0)} regions, got {len(op.regions)}")
        # The type rules below read these types.
        for value in (*op.results, *(arg for region in op.regions for arg in region.args)):
            if not isinstance(value.type, BlockType):
                _fail(op, f"defines a value of type {value.type!r}, not a BlockType")
        for index, region in enumerate(op.regions):
            # A region sees what its op sees, plus its own definitions.
            inner = set(visible)
            self.define(op, region.args, inner)
            self.block(region, inner, inside_region=True)
            empty_else = op.name == "if" and index == 1 and not op.results and not region.ops
            if region.terminator is None and not empty_else:
                _fail(op, f"region {index} does not end with a terminator")
        if op.name not in TERMINATORS:
            _RULES[op.name](op)
        self.define(op, op.results, visible)

    def define(self, op: Op, values: list[Value], visible: set[Value]) -> None:
        for value in values:
            if value in self.defined:
                _fail(op, f"defines a value ({value.type}) that is already defined")
            self.defined.add(value)
            visible.add(value)


# ---- helpers for the type rules ------------------------------------------------------

_INTEGER_ONLY = frozenset(("and", "or", "xor", "shl", "shr", "floordiv", "not"))
_FLOAT_ONLY = frozenset(
    ("div", "pow", "atan2", "fma", "exp", "exp2", "log", "log2", "sqrt", "rsqrt")
    + ("sin", "cos", "tanh", "erf", "floor", "ceil")
)
_SEMANTICS = ("relaxed", "acquire", "release", "acq_rel")
_SCOPES = ("gpu", "cta", "sys")
_PRECISIONS = (None, "tf32", "tf32x3", "ieee")


def _expect(op: Op, what: str, got: BlockType, want: BlockType) -> None:
    if got != want:
        _fail(op, f"{what} has type {got}, expected {want}")


def _expect_all(op: Op, what: str, got: list[Value], want: list[BlockType]) -> None:
    """Checks the types of a list of values (results, region arguments, yields)."""
    if [v.type for v in got] != want:
        have = ", ".join(str(v.type) for v in got)
        _fail(op, f"{what} ({have}), expected ({', '.join(map(str, want))})")


def _no_float8(op: Op, values: list[Value]) -> None:
    for value in values:
        if value.type.elem.is_fp8():
            _fail(op, f"takes no float8, got {value.type}")


def _elementwise(op: Op) -> BlockType:
    """Checks that all operands and the result share one type, and returns it."""
    first = op.operands[0].type
    for i, value in enumerate(op.operands[1:], 1):
        _expect(op, f"operand {i}", value.type, first)
    _expect(op, "the result", op.result.type, first)
    return first


def _attr(op: Op, key: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """The attribute `key`, checking its Python type; None when optional and absent."""
    if key not in op.attrs:
        if required:
            _fail(op, f"needs the attribute {key!r}")
        return None
    value = op.attrs[key]
    # bool is an int to isinstance, never to the IR.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        _fail(op, f"attribute {key!r} = {value!r} has the wrong type")
    return value


def _choice(op: Op, key: str, allowed: tuple[Any, ...], *, required: bool = True) -> None:
    if (key in op.attrs or required) and _attr(op, key, object) not in allowed:
        _fail(op, f"attribute {key!r} = {op.attrs[key]!r}; expected one of {allowed}")


def _axis(op: Op, count: int) -> int:
    axis = _attr(op, "axis", int)
    if not 0 <= axis < count:
        _fail(op, f"axis {axis} is not in 0..{count - 1}")
    return axis


def _pointee(op: Op, ptr: Value) -> BlockType:
    """The type of the values `ptr` points at, checking that it is a pointer."""
    if not isinstance(ptr.type.elem, PointerType):
        _fail(op, f"operand 0 has type {ptr.type}, expected a pointer")
    return ptr.type.with_elem(ptr.type.elem.element)


def _mask(op: Op, mask: Value | None, shape: tuple[int, ...]) -> None:
    if mask is not None:
        _expect(op, "the mask", mask.type, BlockType(int1, shape))


def _terminator(op: Op, index: int, name: str) -> Op | None:
    """The terminator of region `index`, checking its name; None for an empty else."""
    term = op.regions[index].terminator
    if term is not None and term.name != name:
        _fail(term, f"region {index} of {op.name} must end with {name}")
    return term


def _yields(op: Op, index: int, want: list[BlockType]) -> None:
    term = _terminator(op, index, "yield")
    if term is not None:
        _expect_all(term, f"{op.name} region {index} yields", term.operands, want)


# ---- type rules, one per op family -------------------------------------------------------

_Rule = Callable[[Op], object]
_RULES: dict[str, _Rule] = {}


def _rule(*names: str) -> Callable[[_Rule], _Rule]:
    def register(check: _Rule) -> _Rule:
        _RULES.update(dict.fromkeys(names, check))
        return check

    return register


@_rule(*BINARY_OPS, *UNARY_OPS, "fma")
def _check_arithmetic(op: Op) -> None:
    elem = _elementwise(op).elem
    _no_float8(op, op.operands)
    if op.name in _INTEGER_ONLY and not elem.is_int():
        _fail(op, f"takes integers, got {elem.short}")
    if op.name in _FLOAT_ONLY and not elem.is_floating():
        _fail(op, f"takes floats, got {elem.short}")
    if elem.is_ptr():
        _fail(op, f"takes numbers, got {elem.short}")


@_rule("cmp")
def _check_cmp(op: Op) -> None:
    a, b = op.operands
    _expect(op, "operand 1", b.type, a.type)
    _expect(op, "the result", op.result.type, a.type.with_elem(int1))
    _choice(op, "pred", CMP_PREDICATES)
    _no_float8(op, op.operands)


@_rule("where")
def _check_where(op: Op) -> None:
    cond, a, b = op.operands
    _expect(op, "the condition", cond.type, a.type.with_elem(int1))
    _expect(op, "operand 2", b.type, a.type)
    _expect(op, "the result", op.result.type, a.type)


@_rule("constant")
def _check_constant(op: Op) -> None:
    value = _attr(op, "value", (bool, int, float))
    elem = op.result.type.elem
    if elem.is_ptr() or (isinstance(value, float) and not elem.is_floating()):
        _fail(op, f"value {value!r} does not fit {op.result.type}")


@_rule("program_id", "num_programs")
def _check_grid_query(op: Op) -> None:
    _axis(op, 3)
    _expect(op, "the result", op.result.type, BlockType(int32))


@_rule("arange")
def _check_arange(op: Op) -> None:
    start, end = _attr(op, "start", int), _attr(op, "end", int)
    if end <= start:
        _fail(op, f"end {end} must exceed start {start}")
    _expect(op, "the result", op.result.type, BlockType(int32, (end - start,)))


@_rule("splat")
def _check_splat(op: Op) -> None:
    (x,) = op.operands
    if not x.type.is_scalar:
        _fail(op, f"splats a scalar, got {x.type}")
    _expect(op, "the result", op.result.type, op.result.type.with_elem(x.type.elem))


@_rule("broadcast")
def _check_broadcast(op: Op) -> None:
    src, dst = op.operands[0].type, op.result.type
    fits = len(src.shape) == len(dst.shape) and all(
        s in (1, d) for s, d in zip(src.shape, dst.shape, strict=True)
    )
    if src.elem != dst.elem or not fits:
        _fail(op, f"cannot broadcast {src} to {dst}")


@_rule("expand_dims")
def _check_expand_dims(op: Op) -> None:
    src = op.operands[0].type
    axis = _axis(op, len(src.shape) + 1)
    _expect(
        op,
        "the result",
        op.result.type,
        src.with_shape((*src.shape[:axis], 1, *src.shape[axis:])),
    )


@_rule("reshape")
def _check_reshape(op: Op) -> None:
    src, dst = op.operands[0].type, op.result.type
    if src.elem != dst.elem or src.numel != dst.numel:
        _fail(op, f"cannot reshape {src} to {dst}")


@_rule("permute")
def _check_permute(op: Op) -> None:
    src = op.operands[0].type
    order = _attr(op, "order", (tuple, list))
    if len(order) != len(src.shape) or set(order) != set(range(len(src.shape))):
        _fail(
            op,
            f"order {order!r} is not a permutation of the {len(src.shape)} dims of {src}",
        )
    _expect(
        op,
        "the result",
        op.result.type,
        src.with_shape(tuple(src.shape[i] for i in order)),
    )


@_rule("join")
def _check_join(op: Op) -> None:
    a, b = op.operands
    _expect(op, "operand 1", b.type, a.type)
    _expect(op, "the result", op.result.type, a.type.with_shape((*a.type.shape, 2)))


@_rule("split")
def _check_split(op: Op) -> None:
    src = op.operands[0].type
    if src.shape[-1:] != (2,):
        _fail(op, f"splits a last dim of size 2, got {src}")
    _expect_all(op, "the results are", op.results, [src.with_shape(src.shape[:-1])] * 2)


@_rule("cast", "bitcast")
def _check_cast(op: Op) -> None:
    src, dst = op.operands[0].type, op.result.type
    if src.shape != dst.shape:
        _fail(op, f"changes the shape: {src} to {dst}")
    if src.elem.is_ptr() != dst.elem.is_ptr():
        _fail(op, f"converts between a pointer and a number: {src} to {dst}")
    if op.name == "cast" and src.elem.is_ptr():
        _fail(op, f"converts pointers, which takes a bitcast: {src} to {dst}")
    if op.name == "bitcast" and src.elem.bits != dst.elem.bits:
        _fail(op, f"changes the width: {src} to {dst}")
    if op.name == "cast" and (src.elem.is_fp8() or dst.elem.is_fp8()):
        if not (src.elem.is_floating() and dst.elem.is_floating()) or src.elem == dst.elem:
            _fail(op, f"converts float8 to or from a type that is not another floating type: {src} to {dst}")
    if op.name == "cast" and "rounding" in op.attrs:
        _choice(op, "rounding", ("rtne", "rtz"))
        if not (src.elem.is_floating() and dst.elem.is_floating() and dst.elem.bits < src.elem.bits):
            _fail(op, f"a rounding mode is for conversions to a narrower floating type, not {src} to {dst}")


@_rule("addptr")
def _check_addptr(op: Op) -> None:
    ptr, offset = op.operands
    _pointee(op, ptr)
    if offset.type.elem.kind not in ("int", "uint") or offset.type.shape != ptr.type.shape:
        _fail(
            op,
            f"offset has type {offset.type}, expected integers of shape {ptr.type.shape}",
        )
    _expect(op, "the result", op.result.type, ptr.type)


@_rule("load")
def _check_load(op: Op) -> None:
    ptr, mask, other = [*op.operands, None, None][:3]
    want = _pointee(op, ptr)
    _expect(op, "the result", op.result.type, want)
    _mask(op, mask, ptr.type.shape)
    if other is not None:
        _expect(op, "other", other.type, want)


@_rule("store")
def _check_store(op: Op) -> None:
    ptr, value, mask = [*op.operands, None][:3]
    _expect(op, "the value", value.type, _pointee(op, ptr))
    _mask(op, mask, ptr.type.shape)


@_rule("atomic_rmw", "atomic_cas")
def _check_atomic(op: Op) -> None:
    ptr, *values = op.operands
    want = _pointee(op, ptr)
    _no_float8(op, values[:1])
    if op.name == "atomic_rmw":
        _choice(op, "kind", ATOMIC_KINDS)
        kind = op.attrs["kind"]
        if kind in ("and", "or", "xor") and not want.elem.is_int():
            _fail(op, f"atomic {kind} takes integers, got {want}")
        if len(values) == 2:
            _mask(op, values.pop(), ptr.type.shape)
    for i, value in enumerate(values, 1):
        _expect(op, f"operand {i}", value.type, want)
    _expect(op, "the result", op.result.type, want)
    _choice(op, "sem", _SEMANTICS, required=False)
    _choice(op, "scope", _SCOPES, required=False)


@_rule("reduce", "scan")
def _check_combine(op: Op) -> None:
    shape = op.operands[0].type.shape
    _no_float8(op, op.operands)
    for i, value in enumerate(op.operands):
        if value.type.shape != shape:
            _fail(op, f"operand {i} has type {value.type}, expected shape {shape}")
    axis = _axis(op, len(shape))
    scalars = [BlockType(v.type.elem) for v in op.operands]
    _expect_all(op, "the combine region takes", op.regions[0].args, scalars * 2)
    _yields(op, 0, scalars)
    if op.name == "reduce":
        shape = shape[:axis] + shape[axis + 1 :]
    else:
        _attr(op, "reverse", bool, required=False)
    _expect_all(op, "the results are", op.results, [s.with_shape(shape) for s in scalars])


@_rule("dot")
def _check_dot(op: Op) -> None:
    a, b, acc = (v.type.shape for v in op.operands)
    ok = len(a) == len(b) == len(acc) >= 2 and a[:-2] == b[:-2] == acc[:-2]
    if not ok or a[-1] != b[-2] or acc[-2:] != (a[-2], b[-1]):
        _fail(
            op,
            f"shapes {a} @ {b} + {acc} do not fit (..., M, K) @ (..., K, N) + (..., M, N)",
        )
    _expect(op, "the result", op.result.type, op.operands[2].type)
    _choice(op, "input_precision", _PRECISIONS, required=False)
    _no_float8(op, op.operands)


@_rule("for")
def _check_for(op: Op) -> None:
    lb, ub, step, *inits = op.operands
    integer = lb.type.is_scalar and lb.type.elem.kind in ("int", "uint")
    if not integer or ub.type != lb.type or step.type != lb.type:
        bounds = f"{lb.type}, {ub.type}, {step.type}"
        _fail(op, f"bounds ({bounds}) must be integer scalars of one type")
    carried = [v.type for v in inits]
    _expect_all(op, "the body takes", op.regions[0].args, [lb.type, *carried])
    _yields(op, 0, carried)
    _expect_all(op, "the results are", op.results, carried)


@_rule("while")
def _check_while(op: Op) -> None:
    carried = [v.type for v in op.operands]
    _expect_all(op, "the before region takes", op.regions[0].args, carried)
    cond = _terminator(op, 0, "condition")
    assert cond is not None, "_Walker.op has checked that the region ends in one"
    flag, *forwarded = cond.operands
    _expect(cond, "the condition", flag.type, BlockType(int1))
    passed = [v.type for v in forwarded]
    _expect_all(op, "the after region takes", op.regions[1].args, passed)
    _yields(op, 1, carried)
    _expect_all(op, "the results are", op.results, passed)


@_rule("if")
def _check_if(op: Op) -> None:
    _expect(op, "the condition", op.operands[0].type, BlockType(int1))
    for index in (0, 1):
        _expect_all(op, f"region {index} takes", op.regions[index].args, [])
        _yields(op, index, [r.type for r in op.results])


_rule("assume")(_elementwise)


@_rule("debug_barrier", "device_print", "device_assert")
def _check_debug(op: Op) -> None:
    _attr(op, "hex", bool, required=False)
    _attr(op, "prefix", str, required=False)
    _attr(op, "msg", str, required=False)


assert _RULES.keys() | TERMINATORS == ALL_OPS, "every op in the vocabulary needs a rule"
