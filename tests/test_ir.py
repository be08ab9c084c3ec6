"""The IR's text form (print, parse, structural equality) and its verifier."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtriton.ir import (
    ALL_OPS,
    BINARY_OPS,
    CMP_PREDICATES,
    UNARY_OPS,
    UNKNOWN_LOC,
    Block,
    BlockType,
    Builder,
    DType,
    Function,
    Loc,
    Op,
    Param,
    ParseError,
    Value,
    VerificationError,
    parse_function,
    print_function,
    structurally_equal,
    verify,
    walk,
)
from mtriton.ir import types as ty


def t(elem: ty.ElemType, *shape: int) -> BlockType:
    return BlockType(elem, shape)


F32, I32, I1 = t(ty.float32), t(ty.int32), t(ty.int1)
F128, I128, B128 = t(ty.float32, 128), t(ty.int32, 128), t(ty.int1, 128)
P128 = t(ty.PointerType(ty.float32), 128)
INTEGER_ONLY = {"and", "or", "xor", "shl", "shr", "floordiv", "not"}
FLOAT_ONLY = set(UNARY_OPS - {"neg", "abs", "not"}) | {"div", "pow", "atan2"}


class Kernel:
    """A Builder with parameters that gives each op its own source line."""

    def __init__(self, *params: tuple[str, BlockType, int]) -> None:
        self.b = Builder()
        self.line = 0
        self.fn = Function(
            "kernel",
            [Param(name, Value(type_), div) for name, type_, div in params],
            self.b.block,
            Loc("k.py", 1, 0),
        )
        self.b.block.args = [p.value for p in self.fn.params]

    def op(
        self,
        name: str,
        operands: list[Value],
        out: list[BlockType],
        regions: list[Block] | None = None,
        **attrs: object,
    ) -> Op:
        self.line += 1
        self.b.loc = Loc("k.py", self.line, 4)
        return self.b.create(name, operands, out, attrs, regions)

    def __call__(self, name: str, *operands: Value, out: BlockType, **attrs: object) -> Value:
        return self.op(name, list(operands), [out], **attrs).result

    def region(
        self, arg_types: list[BlockType], body: Callable[..., list[Value]], end: str = "yield"
    ) -> Block:
        """A region whose ops `body(*args)` builds; it ends with `end` of what body returns."""
        block = self.b.new_block(arg_types)
        with self.b.insert_into(block):
            self.op(end, body(*block.args), [])
        return block


def everything() -> Function:
    """A kernel that uses every op of the vocabulary, most of them in several forms."""
    k = Kernel(("x_ptr", t(P128.elem), 16), ("i_ptr", t(ty.PointerType(ty.int32)), 16), ("n", I32, 1))
    x_ptr, i_ptr, n = k.b.block.args
    pid = k("program_id", out=I32, axis=0)
    k("num_programs", out=I32, axis=2)
    offs = k("arange", out=I128, start=0, end=128)
    start = k("mul", pid, k("constant", out=I32, value=128), out=I32)
    idx = k("add", k("splat", start, out=I128), offs, out=I128)
    idx = k("assume", idx, out=I128, multiple_of=(16,), max_contiguous=[128])
    mask = k("cmp", idx, k("splat", n, out=I128), out=B128, pred="lt")
    ptrs = k("addptr", k("splat", x_ptr, out=P128), idx, out=P128)
    x = k("load", ptrs, out=F128)
    y = k("load", ptrs, mask, k("constant", out=F128, value=-0.0), out=F128, volatile=True)
    z = k("load", ptrs, mask, out=F128)
    v = x
    for name in sorted(BINARY_OPS - INTEGER_ONLY):
        v = k(name, v, y, out=F128)
    w = idx
    for name in sorted(BINARY_OPS - FLOAT_ONLY):
        w = k(name, w, offs, out=I128)
    for name in sorted(UNARY_OPS - INTEGER_ONLY):
        v = k(name, v, out=F128)
    v = k("where", k("not", mask, out=B128), k("fma", v, y, z, out=F128), x, out=F128)
    k("cast", v, out=t(ty.float16, 128))
    k("bitcast", v, out=I128)
    tile = k("broadcast", k("expand_dims", v, out=t(ty.float32, 1, 128), axis=0), out=t(ty.float32, 64, 128))
    k("reshape", tile, out=t(ty.float32, 128, 64))
    k("permute", tile, out=t(ty.float32, 128, 64), order=(1, 0))
    lo, hi = k.op("split", [k("join", v, x, out=t(ty.float32, 128, 2))], [F128, F128]).results

    def argmax(va: Value, ia: Value, vb: Value, ib: Value) -> list[Value]:
        gt = k("cmp", va, vb, out=I1, pred="gt")
        return [k("where", gt, va, vb, out=F32), k("where", gt, ia, ib, out=I32)]

    combine = k.region([F32, I32, F32, I32], argmax)
    best, arg = k.op("reduce", [lo, idx], [F32, I32], [combine], axis=0).results
    cumsum = k.region([F32, F32], lambda a, b: [k("add", a, b, out=F32)])
    sums = k.op("scan", [hi], [F128], [cumsum], axis=0, reverse=True).result
    for a, b, acc in (((16, 32), (32, 16), (16, 16)), ((2, 16, 8), (2, 8, 16), (2, 16, 16))):
        shapes = (t(ty.float16, *a), t(ty.float16, *b), t(ty.float32, *acc))
        operands = [k("constant", out=shape, value=0.5) for shape in shapes]
        k("dot", *operands, out=shapes[2], input_precision="ieee")
    lb, step = k("constant", out=I32, value=0), k("constant", out=I32, value=1)

    def loop(i: Value, acc: Value, count: Value) -> list[Value]:
        cond = k("cmp", i, lb, out=I1, pred="gt")
        then = k.region([], lambda: [k("add", acc, x, out=F128)])
        acc = k.op("if", [cond], [F128], [then, k.region([], lambda: [acc])]).result
        before = k.region([I32], lambda c: [k("cmp", c, n, out=I1, pred="lt"), c], "condition")
        after = k.region([I32], lambda c: [k("add", c, step, out=I32)])
        return [acc, k.op("while", [count], [I32], [before, after]).result]

    body = k.region([I32, F128, I32], loop)
    total, count = k.op("for", [lb, n, step, z, lb], [F128, I32], [body]).results

    def stores() -> list[Value]:
        k.op("store", [ptrs, total, mask], [])
        k.op("store", [ptrs, sums], [])
        return []

    k.op("if", [k("cmp", count, n, out=I1, pred="ge")], [], [k.region([], stores), Block()])
    iptrs = k("addptr", k("splat", i_ptr, out=t(i_ptr.type.elem, 128)), idx, out=t(i_ptr.type.elem, 128))
    k("atomic_rmw", ptrs, x, mask, out=F128, kind="add", sem="acq_rel", scope="gpu")
    k("atomic_rmw", iptrs, w, out=I128, kind="xor")
    k("atomic_cas", iptrs, w, offs, out=I128, sem="relaxed")
    k.op("debug_barrier", [], [])
    k.op("device_print", [best, arg], [], prefix="best: ", hex=False)
    k.op("device_assert", [mask], [], msg='mask "quoted"\n\\ é')
    k.fn.attrs = {"num_warps": 4, "eps": 1e-5, "big": -(2**70), "tags": ["a", (1,), ()], "none": None}
    return k.fn


def test_everything_prints_parses_and_verifies() -> None:
    fn = everything()
    verify(fn)
    assert {op.name for op in walk(fn.body)} == set(ALL_OPS)
    text = print_function(fn)
    again = parse_function(text)
    assert print_function(again) == text
    assert structurally_equal(fn, again)
    verify(again)


def small() -> Function:
    k = Kernel(("x_ptr", t(P128.elem), 16), ("n", I32, 1))
    x_ptr, n = k.b.block.args
    offs = k("arange", out=I128, start=0, end=128)
    mask = k("cmp", offs, k("splat", n, out=I128), out=B128, pred="lt")
    ptrs = k("addptr", k("splat", x_ptr, out=P128), offs, out=P128)
    k.op("store", [ptrs, k("exp", k("load", ptrs, mask, out=F128), out=F128), mask], [])
    return k.fn


SMALL = """\
func @kernel(%x_ptr: *f32 {divisibility = 16}, %n: i32) {
  %0 = arange {end = 128, start = 0} : <128xi32>  loc("k.py":1:4)
  %1 = splat %n : <128xi32>  loc("k.py":2:4)
  %2 = cmp %0, %1 {pred = "lt"} : <128xi1>  loc("k.py":3:4)
  %3 = splat %x_ptr : <128x*f32>  loc("k.py":4:4)
  %4 = addptr %3, %0 : <128x*f32>  loc("k.py":5:4)
  %5 = load %4, %2 : <128xf32>  loc("k.py":6:4)
  %6 = exp %5 : <128xf32>  loc("k.py":7:4)
  store %4, %6, %2  loc("k.py":8:4)
}  loc("k.py":1:0)
"""


def test_text_form_is_stable() -> None:
    assert print_function(small()) == SMALL
    assert structurally_equal(parse_function(SMALL), small())


def test_locs_can_be_left_out() -> None:
    text = print_function(everything(), locs=False)
    assert "loc(" not in text
    again = parse_function(text)
    assert all(op.loc == UNKNOWN_LOC for op in walk(again.body))
    assert print_function(again, locs=False) == text


def test_unprintable_attribute_is_a_type_error() -> None:
    fn = small()
    fn.attrs["grid"] = {"x": 1}
    with pytest.raises(TypeError, match="IR attribute value"):
        print_function(fn)


@pytest.mark.parametrize(
    ("old", "new", "message", "line", "column"),
    [
        ("%1 = splat %n", "%1 = splat %n,", "unexpected ':'; expected one of: VALUE", 3, 18),
        ("%6 = exp %5", "%6 = exp %9", "%9 is used before its definition", 8, 12),
        ("%1 = splat", "%0 = splat", "%0 is defined twice", 3, 3),
        (': <128xf32>  loc("k.py":7', ': <128xf33>  loc("k.py":7', "unknown type 'f33'", 8, 17),
        ("%6 = exp %5 :", "%6, %7 = exp %5 :", "2 results but 1 result types", 8, 12),
        ('{pred = "lt"}', '{pred = "lt", pred = 1}', "'pred' given twice", 4, 33),
        ("func @kernel(", "func kernel(", "unexpected 'kernel'; expected one of: '@'", 1, 6),
        ("addptr %3,", "addptr %3", "unexpected '%0'; expected one of: ',', ':', '='", 6, 18),
        ("addptr %3,", "addptr $%3,", "unexpected character '$'", 6, 15),
        ("%n: i32", "%n: i32 {divisibility = 1.0}", "takes only an integer {divisibility", 1, 48),
    ],
)
def test_parse_errors_point_at_the_text(old: str, new: str, message: str, line: int, column: int) -> None:
    text = SMALL.replace(old, new, 1)
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        parse_function(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value).startswith(f"line {line}, column {column}: ")


def test_parse_error_at_end_of_text() -> None:
    with pytest.raises(ParseError, match="line 9, column 36: unexpected end of text"):
        parse_function(SMALL.rsplit("}", 1)[0])


@pytest.mark.parametrize(
    "change",
    [
        lambda fn: fn.attrs.update(num_warps=4),
        lambda fn: setattr(fn.body.ops[0], "loc", Loc("k.py", 1, 5)),
        lambda fn: fn.body.ops[2].attrs.update(pred="le"),
        lambda fn: fn.body.ops[0].attrs.update(start=0.0),
        lambda fn: fn.body.ops[0].attrs.update(start=False),
        lambda fn: fn.body.ops[2].operands.reverse(),
        lambda fn: setattr(fn.body.ops[5].results[0], "type", t(ty.float16, 128)),
        lambda fn: fn.body.ops.pop(),
        lambda fn: fn.params.__setitem__(0, dataclasses.replace(fn.params[0], divisibility=1)),
        lambda fn: setattr(fn.params[1].value, "type", t(ty.int64)),
        lambda fn: fn.body.ops[-1].operands.pop(),
        lambda fn: setattr(fn, "name", "other"),
    ],
)
def test_structural_equality_sees_every_difference(change: Callable[[Function], object]) -> None:
    changed = small()
    change(changed)
    assert not structurally_equal(small(), changed)
    assert not structurally_equal(changed, small())


def test_structural_equality_ignores_names_and_matches_nan() -> None:
    a, b = small(), small()
    a.body.ops[0].results[0].name_hint = "offs"
    a.attrs, b.attrs = {"eps": float("nan")}, {"eps": float("nan")}
    assert structurally_equal(a, b)
    a.attrs["eps"], b.attrs["eps"] = 0.0, -0.0
    assert not structurally_equal(a, b)


ELEMENTWISE_DTYPES = (ty.float32, ty.float16, ty.bfloat16, ty.int32, ty.int64, ty.uint8, ty.int1)
attr_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
locs = st.builds(Loc, st.text(max_size=8), st.integers(0, 10**6), st.integers(0, 300))


def literals(dtype: DType) -> st.SearchStrategy[object]:
    if dtype.is_floating():
        return st.floats()
    if dtype.is_bool():
        return st.booleans()
    lo = -(2 ** (dtype.bits - 1)) if dtype.is_signed() else 0
    return st.integers(lo, lo + 2**dtype.bits - 1)


def allowed(name: str, dtype: DType) -> bool:
    if name in INTEGER_ONLY:
        return dtype.is_int()
    return dtype.is_floating() or name not in FLOAT_ONLY


@st.composite
def elementwise_programs(draw: st.DrawFn) -> Function:
    """A random straight-line program of constants and elementwise ops on one shape."""
    shape = draw(st.sampled_from([(), (8,), (4, 16)]))
    k = Kernel(("n", I32, draw(st.sampled_from([1, 8, 16]))))
    pool: dict[DType, list[Value]] = {}
    for _ in range(draw(st.integers(1, 16))):
        dtype = draw(st.sampled_from(ELEMENTWISE_DTYPES))
        out = BlockType(dtype, shape)
        if dtype not in pool:
            result = k("constant", out=out, value=draw(literals(dtype)))
        else:
            a, b = draw(st.sampled_from(pool[dtype])), draw(st.sampled_from(pool[dtype]))
            kind = draw(st.sampled_from(["unary", "binary", "cmp", "where", "cast"]))
            if kind in ("unary", "binary"):
                names = sorted(UNARY_OPS if kind == "unary" else BINARY_OPS)
                name = draw(st.sampled_from([n for n in names if allowed(n, dtype)]))
                result = k(name, *([a] if kind == "unary" else [a, b]), out=out)
            elif kind == "cmp":
                pred = draw(st.sampled_from(CMP_PREDICATES))
                result = k("cmp", a, b, out=out.with_elem(ty.int1), pred=pred)
            elif kind == "where" and ty.int1 in pool:
                result = k("where", draw(st.sampled_from(pool[ty.int1])), a, b, out=out)
            else:
                target = draw(st.sampled_from(ELEMENTWISE_DTYPES))
                result = k("cast", a, out=out.with_elem(target))
        pool.setdefault(result.type.elem, []).append(result)
    printed = [v for values in pool.values() for v in values][:3]
    k.op("device_print", printed, [], prefix=draw(st.text(max_size=8)), hex=draw(st.booleans()))
    for op in walk(k.fn.body):
        op.loc = draw(locs)
    k.fn.attrs = draw(st.dictionaries(st.text(max_size=6), attr_values, max_size=3))
    return k.fn


@settings(max_examples=200, deadline=None)
@given(elementwise_programs())
def test_random_programs_round_trip(fn: Function) -> None:
    verify(fn)
    text = print_function(fn)
    again = parse_function(text)
    assert print_function(again) == text
    assert structurally_equal(fn, again)
    verify(again)


# ---- the verifier rejects one planted bug of each kind -----------------------------------

# Changes `op` in the function; returns the op to blame when that is another one.
Mutation = Callable[[Function, Op], object]


def find(fn: Function, name: str, index: int = 0) -> Op:
    return [op for op in walk(fn.body) if op.name == name][index]


def defined(fn: Function, type_: BlockType) -> Value:
    """A value of `type_` defined at the top of `fn`, to plant as an operand."""
    op = Op("constant", [], [Value(type_)], {"value": 0}, loc=Loc("k.py", 0, 0))
    fn.body.ops.insert(0, op)
    return op.result


def rename(name: str) -> Mutation:
    return lambda fn, op: setattr(op, "name", name)


def retype(type_: BlockType, index: int = 0) -> Mutation:
    return lambda fn, op: setattr(op.results[index], "type", type_)


def replace(index: int, type_: BlockType) -> Mutation:
    return lambda fn, op: op.operands.__setitem__(index, defined(fn, type_))


def set_attr(key: str, value: object) -> Mutation:
    return lambda fn, op: op.attrs.__setitem__(key, value)


def extra_arg(region: int, type_: BlockType) -> Mutation:
    return lambda fn, op: op.regions[region].args.append(Value(type_))


def terminator(region: int, mutate: Callable[[Op], object]) -> Mutation:
    """Changes the terminator of `region`, which is then the op to blame."""

    def change(fn: Function, op: Op) -> Op:
        term = op.regions[region].ops[-1]
        mutate(term)
        return term

    return change


def plant(ops: list[Op], index: int, name: str, operands: list[Value], results: list[Value]) -> Op:
    """Inserts a new op at `index` of `ops` (-1: at the end); it is the op to blame."""
    op = Op(name, operands, results)
    ops.insert(len(ops) if index < 0 else index, op)
    return op


def pointer_add(fn: Function, op: Op) -> None:
    op.name, op.operands = "add", [op.operands[0]] * 2


def in_float8(fn: Function, op: Op) -> None:
    """Makes a binary op compute in float8."""
    f8 = t(ty.float8e5, 128)
    op.operands = [defined(fn, f8)] * 2
    op.result.type = f8


def cast_from(src: BlockType, dst: BlockType) -> Mutation:
    return lambda fn, op: (op.operands.__setitem__(0, defined(fn, src)), setattr(op.result, "type", dst))


F64x128 = t(ty.float32, 64, 128)
BUGS = [
    ("exp", rename("exp3"), "unknown op"),
    ("mul", lambda fn, op: plant(fn.body.ops, 0, "neg", [op.result], [Value(I32)]), "before its definition"),
    (
        "reduce",
        lambda fn, op: plant(fn.body.ops, -1, "not", [op.regions[0].ops[0].result], [Value(I1)]),
        "outside",
    ),
    ("arange", lambda fn, op: plant(fn.body.ops, -1, "neg", [op.result], [op.result]), "already defined"),
    ("fma", lambda fn, op: op.operands.pop(), "takes 3 operands, got 2"),
    ("split", lambda fn, op: op.results.pop(), "has 2 results, got 1"),
    ("add", replace(1, I32), "operand 1 has type i32, expected <128xi32>"),
    ("sub", replace(1, I128), "operand 1 has type <128xi32>, expected <128xf32>"),
    ("cmp", retype(t(ty.int32, 128)), "the result has type <128xi32>, expected <128xi1>"),
    ("maximum", rename("and"), "takes integers, got f32"),
    ("floordiv", rename("div"), "takes floats, got i32"),
    ("not", rename("exp"), "takes floats, got i1"),
    ("where", replace(0, F128), "the condition has type <128xf32>"),
    ("fma", retype(t(ty.float16, 128)), "the result has type <128xf16>"),
    ("cast", retype(t(ty.float16, 64)), "changes the shape"),
    ("bitcast", retype(t(ty.int16, 128)), "changes the width"),
    ("bitcast", retype(t(ty.PointerType(ty.float32), 128)), "converts between a pointer and a number"),
    ("sub", in_float8, "takes no float8, got <128xf8e5>"),
    ("cast", cast_from(I128, t(ty.float8e4nv, 128)), "converts float8 to or from a type that is not"),
    ("cast", set_attr("rounding", "up"), "'rounding' = 'up'; expected one of"),
    (
        "cast",
        lambda fn, op: (
            op.attrs.__setitem__("rounding", "rtz"),
            setattr(op.result, "type", t(ty.float64, 128)),
        ),
        "a rounding mode is for conversions to a narrower floating type",
    ),
    ("addptr", replace(1, F128), "offset has type <128xf32>"),
    ("load", retype(I128), "the result has type <128xi32>, expected <128xf32>"),
    ("load", replace(0, I128), "expected a pointer"),
    ("store", replace(1, I128), "the value has type <128xi32>"),
    ("atomic_rmw", replace(1, I128), "operand 1 has type <128xi32>"),
    ("atomic_cas", replace(2, F128), "operand 2 has type <128xf32>"),
    ("load#1", replace(1, I128), "the mask has type <128xi32>, expected <128xi1>"),
    ("store", replace(2, t(ty.int1, 64)), "the mask has type <64xi1>"),
    ("reduce", extra_arg(0, F32), "the combine region takes (f32, i32, f32, i32, f32)"),
    ("reduce", terminator(0, lambda y: y.operands.pop()), "reduce region 0 yields (f32)"),
    ("reduce", retype(F128), "the results are (<128xf32>, i32), expected (f32, i32)"),
    ("scan", retype(F32), "the results are (f32), expected (<128xf32>)"),
    ("scan", terminator(0, lambda y: y.operands.append(y.operands[0])), "yields (f32, f32)"),
    ("dot", replace(1, t(ty.float16, 16, 16)), "do not fit"),
    ("dot", replace(2, t(ty.float32, 3, 16, 16)), "do not fit"),
    ("for", replace(0, F32), "bounds (f32, i32, i32) must be integer scalars"),
    ("for", extra_arg(0, I32), "the body takes (i32, <128xf32>, i32, i32)"),
    ("for", terminator(0, lambda y: y.operands.reverse()), "for region 0 yields (i32, <128xf32>)"),
    ("for", retype(F32, 1), "the results are (<128xf32>, f32)"),
    ("while", terminator(0, lambda c: c.operands.__setitem__(0, c.operands[1])), "i32, expected i1"),
    ("while", extra_arg(1, I32), "the after region takes (i32, i32), expected (i32)"),
    ("while", terminator(1, lambda y: y.operands.pop()), "while region 1 yields ()"),
    (
        "while",
        terminator(0, lambda c: setattr(c, "name", "yield")),
        "region 0 of while must end with condition",
    ),
    ("if", replace(0, B128), "the condition has type <128xi1>, expected i1"),
    ("if", terminator(1, lambda y: y.operands.clear()), "if region 1 yields (), expected"),
    ("if", lambda fn, op: op.regions[1].ops.clear(), "region 1 does not end with a terminator"),
    ("for", lambda fn, op: op.regions[0].ops.remove(op.regions[0].ops[-1]), "region 0 does not end"),
    (
        "for",
        lambda fn, op: plant(op.regions[0].ops, 0, "yield", [], []),
        "a terminator may only end a region",
    ),
    ("exp", lambda fn, op: plant(fn.body.ops, -1, "yield", [], []), "a terminator may only end a region"),
    ("splat", replace(0, I128), "splats a scalar, got <128xi32>"),
    ("broadcast", retype(t(ty.float32, 64, 64)), "cannot broadcast <1x128xf32> to <64x64xf32>"),
    ("expand_dims", set_attr("axis", 2), "axis 2 is not in 0..1"),
    ("expand_dims", retype(t(ty.float32, 128, 1)), "expected <1x128xf32>"),
    ("reshape", retype(t(ty.float32, 128, 32)), "cannot reshape"),
    ("permute", set_attr("order", (0, 0)), "is not a permutation"),
    ("join", replace(1, I128), "operand 1 has type <128xi32>"),
    ("split", replace(0, F64x128), "splits a last dim of size 2"),
    ("arange", retype(t(ty.int32, 64)), "expected <128xi32>"),
    ("program_id", set_attr("axis", 3), "axis 3 is not in 0..2"),
    ("cmp", lambda fn, op: op.attrs.pop("pred"), "needs the attribute 'pred'"),
    ("atomic_rmw", set_attr("kind", "fadd"), "'kind' = 'fadd'; expected one of"),
    ("constant", set_attr("value", 0.5), "value 0.5 does not fit i32"),
    ("constant", lambda fn, op: setattr(op.result, "type", ty.float32), "not a BlockType"),
    ("fma", lambda fn, op: op.regions.append(Block()), "has 0 regions, got 1"),
    ("program_id", set_attr("axis", True), "attribute 'axis' = True has the wrong type"),
    ("addptr", pointer_add, "takes numbers, got *f32"),
    ("arange", set_attr("start", 128), "end 128 must exceed start 128"),
    ("atomic_rmw", set_attr("kind", "or"), "atomic or takes integers"),
    ("atomic_rmw", set_attr("sem", "seq_cst"), "'sem' = 'seq_cst'; expected one of"),
    ("reduce", replace(1, t(ty.int32, 64)), "operand 1 has type <64xi32>, expected shape (128,)"),
    ("scan", set_attr("reverse", 1), "'reverse' = 1 has the wrong type"),
    ("dot", set_attr("input_precision", "fp8"), "'input_precision' = 'fp8'"),
    ("device_print", set_attr("hex", "yes"), "'hex' = 'yes' has the wrong type"),
]


@pytest.mark.parametrize(("target", "mutate", "fragment"), BUGS, ids=[b[2] for b in BUGS])
def test_verifier_names_op_and_loc(target: str, mutate: Mutation, fragment: str) -> None:
    fn = everything()
    name, _, index = target.partition("#")
    op = find(fn, name, int(index or 0))
    blamed = mutate(fn, op)
    culprit = blamed if isinstance(blamed, Op) else op
    with pytest.raises(VerificationError) as info:
        verify(fn)
    assert str(info.value).startswith(f"{culprit.loc}: {culprit.name}: ")
    assert fragment in str(info.value)
    assert info.value.op is culprit


def test_verifier_checks_the_parameters() -> None:
    fn = small()
    fn.body.args.pop()
    with pytest.raises(VerificationError, match=r"^k.py:1:0: func @kernel: the body's arg"):
        verify(fn)
    fn = small()
    fn.params[1].value.type = ty.int32
    with pytest.raises(VerificationError, match="func @kernel: parameter n needs a BlockType"):
        verify(fn)
