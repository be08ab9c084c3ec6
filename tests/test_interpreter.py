"""The reference interpreter, on kernels built directly as IR and checked against float64 NumPy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from mtriton import ir
from mtriton.interpreter import InterpreterError, execute, executor
from mtriton.ir import types as T
from mtriton.ir.verifier import verify

Operand = ir.Value | int | float | bool


class KernelBuilder:
    """Terse IR construction: each method appends one op (at line `at(...)`) and returns its result.

    Python numbers given where a value is expected become constants of the other operand's type.
    """

    def __init__(self, name: str, **params: str) -> None:
        self.name = name
        self.builder = ir.Builder()
        self.params = [ir.Param(n, ir.Value(T.BlockType(T.parse_elem(t)), n)) for n, t in params.items()]
        self.builder.block.args = [p.value for p in self.params]
        self.at(1)

    def __getitem__(self, name: str) -> ir.Value:
        return next(p.value for p in self.params if p.name == name)

    def at(self, line: int) -> None:
        self.builder.loc = ir.Loc("k.py", line, 4)

    def function(self) -> ir.Function:
        fn = ir.Function(self.name, self.params, self.builder.block)
        verify(fn)
        return fn

    def op(self, name: str, operands: Sequence[ir.Value], type_: T.BlockType, **attrs: object) -> ir.Value:
        return self.builder.build(name, list(operands), type_, **attrs)

    def const(self, value: bool | int | float, dtype: str = "i32", shape: tuple[int, ...] = ()) -> ir.Value:
        return self.op("constant", [], T.BlockType(T.parse_elem(dtype), shape), value=value)

    def _pair(self, a: Operand, b: Operand) -> tuple[ir.Value, ir.Value]:
        if not isinstance(a, ir.Value):
            a = self.op("constant", [], b.type, value=a)
        if not isinstance(b, ir.Value):
            b = self.op("constant", [], a.type, value=b)
        return a, b

    def binary(self, name: str, a: Operand, b: Operand) -> ir.Value:
        a, b = self._pair(a, b)
        return self.op(name, [a, b], a.type)

    def add(self, a: Operand, b: Operand) -> ir.Value:
        return self.binary("add", a, b)

    def mul(self, a: Operand, b: Operand) -> ir.Value:
        return self.binary("mul", a, b)

    def cmp(self, pred: str, a: Operand, b: Operand) -> ir.Value:
        a, b = self._pair(a, b)
        return self.op("cmp", [a, b], a.type.with_elem(T.int1), pred=pred)

    def unary(self, name: str, x: ir.Value) -> ir.Value:
        return self.op(name, [x], x.type)

    def cast(self, x: ir.Value, dtype: str, name: str = "cast") -> ir.Value:
        return self.op(name, [x], x.type.with_elem(T.parse_elem(dtype)))

    def where(self, cond: ir.Value, a: Operand, b: Operand) -> ir.Value:
        a, b = self._pair(a, b)
        return self.op("where", [cond, a, b], a.type)

    def pid(self, axis: int = 0) -> ir.Value:
        return self.op("program_id", [], T.BlockType(T.int32), axis=axis)

    def arange(self, end: int) -> ir.Value:
        return self.op("arange", [], T.BlockType(T.int32, (end,)), start=0, end=end)

    def splat(self, x: Operand, shape: tuple[int, ...]) -> ir.Value:
        if not isinstance(x, ir.Value):
            return self.const(x, shape=shape)
        return self.op("splat", [x], x.type.with_shape(shape))

    def expand(self, x: ir.Value, axis: int) -> ir.Value:
        shape = list(x.type.shape)
        shape.insert(axis, 1)
        return self.op("expand_dims", [x], x.type.with_shape(tuple(shape)), axis=axis)

    def broadcast(self, x: ir.Value, shape: tuple[int, ...]) -> ir.Value:
        return self.op("broadcast", [x], x.type.with_shape(shape))

    def grid2d(self, rows: ir.Value, cols: ir.Value) -> tuple[ir.Value, ir.Value]:
        """`rows[:, None]` and `cols[None, :]`, both broadcast to (len(rows), len(cols))."""
        shape = rows.type.shape + cols.type.shape
        return self.broadcast(self.expand(rows, 1), shape), self.broadcast(self.expand(cols, 0), shape)

    def span(self, block: int, axis: int = 0) -> ir.Value:
        """`program_id(axis) * block + arange(block)`."""
        return self.add(self.splat(self.mul(self.pid(axis), block), (block,)), self.arange(block))

    def ptr(self, base: ir.Value, offsets: Operand) -> ir.Value:
        if not isinstance(offsets, ir.Value):
            offsets = self.const(offsets)
        if base.type.is_scalar and not offsets.type.is_scalar:
            base = self.splat(base, offsets.type.shape)
        return self.op("addptr", [base, offsets], base.type)

    def load(self, ptr: ir.Value, mask: ir.Value | None = None, other: Operand | None = None) -> ir.Value:
        result = ptr.type.with_elem(ptr.type.elem.element)
        operands = [ptr] + ([mask] if mask is not None else [])
        if other is not None:
            operands.append(
                other if isinstance(other, ir.Value) else self.op("constant", [], result, value=other)
            )
        return self.op("load", operands, result)

    def store(self, ptr: ir.Value, value: ir.Value, mask: ir.Value | None = None) -> None:
        self.builder.create("store", [ptr, value] + ([mask] if mask is not None else []), [])

    def atomic(self, kind: str, ptr: ir.Value, value: Operand, mask: ir.Value | None = None) -> ir.Value:
        result = ptr.type.with_elem(ptr.type.elem.element)
        if not isinstance(value, ir.Value):
            value = self.op("constant", [], result, value=value)
        operands = [ptr, value] + ([mask] if mask is not None else [])
        return self.op("atomic_rmw", operands, result, kind=kind, sem="acq_rel", scope="gpu")

    def _region(
        self,
        types: Sequence[T.BlockType],
        body: Callable[..., Sequence[ir.Value] | None],
        term: str = "yield",
    ) -> ir.Block:
        block = self.builder.new_block(list(types))
        with self.builder.insert_into(block):
            out = body(*block.args)
            if out is not None:
                self.builder.create(term, list(out), [])
        return block

    def combine_op(
        self, name: str, xs: Sequence[ir.Value], combine: Callable[..., Sequence[ir.Value]], **attrs: object
    ) -> list[ir.Value]:
        """`reduce` or `scan`; `combine(lhs, rhs)` gets and returns lists of scalars."""
        n = len(xs)
        scalars = [T.BlockType(x.type.elem) for x in xs]
        region = self._region(scalars * 2, lambda *args: combine(list(args[:n]), list(args[n:])))
        shape = list(xs[0].type.shape)
        if name == "reduce":
            del shape[attrs["axis"]]
        types = [s.with_shape(tuple(shape)) for s in scalars]
        return self.builder.create(name, list(xs), types, attrs, [region]).results

    def single(
        self, name: str, x: ir.Value, axis: int, scan: bool = False, reverse: bool = False
    ) -> ir.Value:
        """A `reduce` (or `scan`) whose region is the one op `name` (the interpreter's fast path)."""
        attrs = {"axis": axis, "reverse": reverse} if scan else {"axis": axis}

        def combine(a: list[ir.Value], b: list[ir.Value]) -> list[ir.Value]:
            return [self.binary(name, a[0], b[0])]

        (out,) = self.combine_op("scan" if scan else "reduce", [x], combine, **attrs)
        return out

    def for_(
        self,
        lb: Operand,
        ub: Operand,
        step: Operand,
        inits: Sequence[ir.Value],
        body: Callable[..., Sequence[ir.Value]],
    ) -> list[ir.Value]:
        lb, ub, step = (v if isinstance(v, ir.Value) else self.const(v) for v in (lb, ub, step))
        region = self._region([lb.type, *(v.type for v in inits)], lambda iv, *c: body(iv, list(c)))
        return self.builder.create(
            "for", [lb, ub, step, *inits], [v.type for v in inits], {}, [region]
        ).results

    def while_(
        self,
        inits: Sequence[ir.Value],
        before: Callable[..., tuple[ir.Value, list[ir.Value]]],
        after: Callable[..., Sequence[ir.Value]],
    ) -> list[ir.Value]:
        def before_body(*args: ir.Value) -> list[ir.Value]:
            cond, values = before(list(args))
            return [cond, *values]

        first = self._region([v.type for v in inits], before_body, "condition")
        passed = [v.type for v in first.terminator.operands[1:]]
        second = self._region(passed, lambda *args: after(list(args)))
        return self.builder.create("while", list(inits), passed, {}, [first, second]).results

    def if_(
        self,
        cond: ir.Value,
        then: Callable[[], Sequence[ir.Value]],
        otherwise: Callable[[], Sequence[ir.Value] | None],
    ) -> list[ir.Value]:
        first = self._region([], then)
        second = self._region([], otherwise)
        types = [v.type for v in first.terminator.operands]
        return self.builder.create("if", [cond], types, {}, [first, second]).results

    def dot(self, a: ir.Value, b: ir.Value, acc: ir.Value, precision: str = "ieee") -> ir.Value:
        return self.op("dot", [a, b, acc], acc.type, input_precision=precision)


def to_mx(x: np.ndarray, dtype: str) -> mx.array:
    """`x` rounded to the float type `dtype` (MLX would make float64 input float32)."""
    mx_type = {"f16": mx.float16, "bf16": mx.bfloat16, "f32": mx.float32, "f64": mx.float64}[dtype]
    return mx.array(x, dtype=mx.float64 if dtype == "f64" else mx.float32).astype(mx_type)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------- elementwise kernels


def vector_add(dtype: str, block: int) -> ir.Function:
    k = KernelBuilder("add_kernel", x_ptr=f"*{dtype}", y_ptr=f"*{dtype}", out_ptr=f"*{dtype}", n="i32")
    offs = k.span(block)
    mask = k.cmp("lt", offs, k.splat(k["n"], (block,)))
    x = k.load(k.ptr(k["x_ptr"], offs), mask)
    y = k.load(k.ptr(k["y_ptr"], offs), mask)
    k.store(k.ptr(k["out_ptr"], offs), k.add(x, y), mask)
    return k.function()


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "f64", "i32", "i8", "u8"])
def test_vector_add_matches_numpy_and_writes_only_the_output(dtype: str, rng: np.random.Generator) -> None:
    n = 1000
    if dtype.startswith(("i", "u")):
        info = np.iinfo(np.dtype(dtype.replace("i", "int").replace("u", "uint")))
        x_np, y_np = (rng.integers(info.min, info.max, n, endpoint=True) for _ in range(2))
        x, y = mx.array(x_np.astype(info.dtype)), mx.array(y_np.astype(info.dtype))
        out = poisoned((n,), x.dtype)
        expected = (x_np + y_np).astype(info.dtype)  # wraps like the kernel
    else:
        x_np, y_np = rng.standard_normal(n), rng.standard_normal(n)
        x, y = to_mx(x_np, dtype), to_mx(y_np, dtype)
        out = poisoned((n,), x.dtype)
        # One rounding of the exact sum of the rounded inputs.
        with mx.stream(mx.cpu):  # MLX computes float64 only on the CPU
            expected = to_numpy((x.astype(mx.float64) + y.astype(mx.float64)).astype(x.dtype))
    x_before = to_numpy(x)
    result = execute(vector_add(dtype, 128), [x, y, out, n], (cdiv(n, 128), 1, 1))
    assert result[0] is None and result[1] is None and result[3] is None
    assert result[2].dtype == out.dtype and result[2].shape == out.shape
    np.testing.assert_array_equal(to_numpy(result[2]), expected)
    np.testing.assert_array_equal(to_numpy(x), x_before)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(poisoned((n,), out.dtype)))  # inputs untouched


def test_row_softmax_matches_float64(rng: np.random.Generator) -> None:
    rows, cols, block = 37, 100, 128
    k = KernelBuilder("softmax_kernel", x_ptr="*f32", out_ptr="*f32", stride="i32", n_cols="i32")
    offs = k.arange(block)
    mask = k.cmp("lt", offs, k.splat(k["n_cols"], (block,)))
    row = k.splat(k.mul(k.pid(), k["stride"]), (block,))
    x = k.load(k.ptr(k["x_ptr"], k.add(row, offs)), mask, other=float("-inf"))
    shifted = k.binary("sub", x, k.splat(k.single("maximum", x, axis=0), (block,)))
    e = k.unary("exp", shifted)
    y = k.binary("div", e, k.splat(k.single("add", e, axis=0), (block,)))
    k.store(k.ptr(k["out_ptr"], k.add(row, offs)), y, mask)
    x_np = rng.standard_normal((rows, cols)) * 4
    out = execute(
        k.function(), [mx.array(x_np, dtype=mx.float32), poisoned((rows, cols)), cols, cols], (rows, 1, 1)
    )[1]
    ref = np.exp(x_np - x_np.max(1, keepdims=True))
    np.testing.assert_allclose(to_numpy(out), ref / ref.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_2d_blocks_with_broadcast_offsets_and_a_2d_grid(rng: np.random.Generator) -> None:
    """out = 2 * x.T, by 16x32 tiles: row and column offsets broadcast against each other."""
    m, n, bm, bn = 50, 70, 16, 32
    k = KernelBuilder("transpose_kernel", x_ptr="*f32", out_ptr="*f32", M="i32", N="i32")
    rows, cols = k.grid2d(k.span(bm, axis=0), k.span(bn, axis=1))
    mask = k.binary(
        "and", k.cmp("lt", rows, k.splat(k["M"], (bm, bn))), k.cmp("lt", cols, k.splat(k["N"], (bm, bn)))
    )
    src = k.add(k.mul(rows, k.splat(k["N"], (bm, bn))), cols)
    dst = k.add(k.mul(cols, k.splat(k["M"], (bm, bn))), rows)
    x = k.load(k.ptr(k["x_ptr"], src), mask)
    k.store(k.ptr(k["out_ptr"], dst), k.mul(x, 2.0), mask)
    x_np = rng.standard_normal((m, n)).astype(np.float32)
    out = execute(k.function(), [mx.array(x_np), poisoned((n, m)), m, n], (cdiv(m, bm), cdiv(n, bn), 1))[1]
    np.testing.assert_array_equal(to_numpy(out), 2 * x_np.T)


def test_layout_ops_round_trip(rng: np.random.Generator) -> None:
    """permute, reshape, join and split move elements where their definitions say."""
    k = KernelBuilder("layout_kernel", x_ptr="*i32", t_ptr="*i32", j_ptr="*i32", s_ptr="*i32")
    rows, cols = k.grid2d(k.arange(4), k.arange(8))
    flat = k.add(k.mul(rows, 8), cols)
    x = k.load(k.ptr(k["x_ptr"], flat))
    transposed = k.op("permute", [x], x.type.with_shape((8, 4)), order=(1, 0))
    k.store(k.ptr(k["t_ptr"], k.op("reshape", [k.arange(32)], T.BlockType(T.int32, (8, 4)))), transposed)
    joined = k.op("join", [x, k.add(x, 100)], x.type.with_shape((4, 8, 2)))
    k.store(k.ptr(k["j_ptr"], k.op("reshape", [k.arange(64)], T.BlockType(T.int32, (4, 8, 2)))), joined)
    low, high = k.builder.create("split", [joined], [x.type, x.type]).results
    k.store(k.ptr(k["s_ptr"], flat), k.binary("sub", high, low))
    x_np = rng.integers(-50, 50, 32).astype(np.int32)
    _, t, j, s = execute(
        k.function(),
        [mx.array(x_np), mx.zeros(32, mx.int32), mx.zeros(64, mx.int32), mx.zeros(32, mx.int32)],
        (1, 1, 1),
    )
    np.testing.assert_array_equal(np.array(t), x_np.reshape(4, 8).T.reshape(-1))
    np.testing.assert_array_equal(np.array(j), np.stack([x_np, x_np + 100], -1).reshape(-1))
    np.testing.assert_array_equal(np.array(s), np.full(32, 100))


def binary_kernel(name: str, dtype: str, n: int) -> ir.Function:
    k = KernelBuilder(f"{name}_kernel", a_ptr=f"*{dtype}", b_ptr=f"*{dtype}", out_ptr=f"*{dtype}")
    offs = k.arange(n)
    a, b = k.load(k.ptr(k["a_ptr"], offs)), k.load(k.ptr(k["b_ptr"], offs))
    k.store(k.ptr(k["out_ptr"], offs), k.binary(name, a, b))
    return k.function()


def run_binary(name: str, dtype: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = execute(
        binary_kernel(name, dtype, len(a)),
        [mx.array(a), mx.array(b), mx.zeros(len(a), mx.array(a).dtype)],
        (1, 1, 1),
    )
    return np.array(out[2])


int32s = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(int32s, int32s.filter(bool)), min_size=1, max_size=16))
def test_integer_floordiv_and_mod_have_c_semantics(pairs: list[tuple[int, int]]) -> None:
    pairs += [(-(2**31), -1), (7, -2), (-7, 2), (-7, -2)]
    a, b = (np.array(v, dtype=np.int32) for v in zip(*pairs))
    quotient = [(abs(x) // abs(y)) * (1 if (x < 0) == (y < 0) else -1) for x, y in pairs]
    quotient = np.array(quotient, dtype=np.int64).astype(np.int32)  # INT_MIN // -1 wraps
    np.testing.assert_array_equal(run_binary("floordiv", "i32", a, b), quotient)
    np.testing.assert_array_equal(
        run_binary("mod", "i32", a, b), np.fmod(a.astype(np.int64), b).astype(np.int32)
    )


def test_float_mod_is_fmod() -> None:
    a = np.array([5.5, -5.5, 5.5, -5.5, 1e-30, -3.0, 7.0], dtype=np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 1e30, np.inf, 0.0], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(run_binary("mod", "f32", a, b), np.fmod(a, b))


def test_shifts_are_arithmetic_on_signed_and_logical_on_unsigned() -> None:
    np.testing.assert_array_equal(
        run_binary("shr", "i32", np.array([-8, 8], np.int32), np.array([1, 1], np.int32)), [-4, 4]
    )
    u = np.array([2**32 - 8], np.uint32)
    np.testing.assert_array_equal(run_binary("shr", "u32", u, np.array([1], np.uint32)), u >> 1)


def test_casts_truncate_and_test_nonzero() -> None:
    k = KernelBuilder("cast_kernel", x_ptr="*f32", i_ptr="*i32", b_ptr="*f32", bits_ptr="*i32")
    offs = k.arange(8)
    x = k.load(k.ptr(k["x_ptr"], offs))
    k.store(k.ptr(k["i_ptr"], offs), k.cast(x, "i32"))
    k.store(k.ptr(k["b_ptr"], offs), k.cast(k.cast(x, "i1"), "f32"))
    k.store(k.ptr(k["bits_ptr"], offs), k.cast(x, "i32", name="bitcast"))
    x_np = np.array([-2.7, -0.5, 0.0, -0.0, 0.25, 1.9, 3.0, -3.0], np.float32)
    out = execute(
        k.function(), [mx.array(x_np)] + [mx.zeros(8, d) for d in (mx.int32, mx.float32, mx.int32)], (1, 1, 1)
    )
    np.testing.assert_array_equal(np.array(out[1]), np.trunc(x_np).astype(np.int32))
    np.testing.assert_array_equal(np.array(out[2]), (x_np != 0).astype(np.float32))
    np.testing.assert_array_equal(np.array(out[3]), x_np.view(np.int32))


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("exp2", np.exp2),
        ("rsqrt", lambda v: 1 / np.sqrt(v)),
        ("erf", None),
        ("log2", np.log2),
        ("tanh", np.tanh),
    ],
)
def test_unary_math(
    name: str, reference: Callable[[np.ndarray], np.ndarray] | None, rng: np.random.Generator
) -> None:
    from math import erf

    k = KernelBuilder(f"{name}_kernel", x_ptr="*f32", out_ptr="*f32")
    offs = k.arange(64)
    k.store(k.ptr(k["out_ptr"], offs), k.unary(name, k.load(k.ptr(k["x_ptr"], offs))))
    x_np = rng.uniform(0.1, 4, 64).astype(np.float32)
    out = execute(k.function(), [mx.array(x_np), mx.zeros(64)], (1, 1, 1))[1]
    expected = (
        np.vectorize(erf)(x_np.astype(np.float64))
        if reference is None
        else reference(x_np.astype(np.float64))
    )
    np.testing.assert_allclose(np.array(out), expected, rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------- reductions, scans and dot


def row_kernel(
    name: str,
    block: int,
    body: Callable[[KernelBuilder, ir.Value, ir.Value], ir.Value],
    dtype: str = "f32",
    other: float = 0.0,
) -> ir.Function:
    """One program per row of `n` columns: out_row = body(k, x_row, mask) where x_row is a block."""
    k = KernelBuilder(name, x_ptr=f"*{dtype}", out_ptr=f"*{dtype}", n="i32")
    offs = k.arange(block)
    mask = k.cmp("lt", offs, k.splat(k["n"], (block,)))
    row = k.add(k.splat(k.mul(k.pid(), k["n"]), (block,)), offs)
    out = body(k, k.load(k.ptr(k["x_ptr"], row), mask, other=other), offs)
    k.store(k.ptr(k["out_ptr"], row), out, mask)
    return k.function()


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("generic", [False, True])
def test_cumsum_by_scan(reverse: bool, generic: bool, rng: np.random.Generator) -> None:
    """`scan` with the single `add` combine (cumsum) and with a two-op region equal to add."""

    def body(k: KernelBuilder, x: ir.Value, offs: ir.Value) -> ir.Value:
        if not generic:
            return k.single("add", x, axis=0, scan=True, reverse=reverse)
        (out,) = k.combine_op(
            "scan", [x], lambda a, b: [k.mul(k.add(a[0], b[0]), 1.0)], axis=0, reverse=reverse
        )
        return out

    rows, cols = 5, 100
    x_np = rng.standard_normal((rows, cols))
    out = execute(
        row_kernel("cumsum_kernel", 128, body),
        [mx.array(x_np, dtype=mx.float32), poisoned((rows, cols)), cols],
        (rows, 1, 1),
    )[1]
    expected = np.flip(np.cumsum(np.flip(x_np, 1), 1), 1) if reverse else np.cumsum(x_np, 1)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reverse", [False, True])
def test_generic_scan_linear_recurrence(reverse: bool, rng: np.random.Generator) -> None:
    """h[t] = a[t] * h[t-1] + b[t] as a scan of (a, b) pairs, a non-commutative combine.

    A reverse scan runs from the far end: h[t] = a[t] * h[t+1] + b[t].
    """
    cols, block = 50, 64
    k = KernelBuilder("recurrence_kernel", a_ptr="*f32", b_ptr="*f32", out_ptr="*f32")
    offs = k.arange(block)
    mask = k.cmp("lt", offs, cols)
    a = k.load(k.ptr(k["a_ptr"], offs), mask, other=1.0)
    b = k.load(k.ptr(k["b_ptr"], offs), mask, other=0.0)

    def combine(left: list[ir.Value], right: list[ir.Value]) -> list[ir.Value]:
        (a1, b1), (a2, b2) = left, right
        return [k.mul(a1, a2), k.add(k.mul(a2, b1), b2)]

    _, h = k.combine_op("scan", [a, b], combine, axis=0, reverse=reverse)
    k.store(k.ptr(k["out_ptr"], offs), h, mask)
    a_np, b_np = rng.uniform(0.5, 1.0, cols), rng.standard_normal(cols)
    out = execute(
        k.function(),
        [mx.array(a_np, dtype=mx.float32), mx.array(b_np, dtype=mx.float32), poisoned((cols,))],
        (1, 1, 1),
    )[2]
    expected, h_prev = np.empty(cols), 0.0
    for t in reversed(range(cols)) if reverse else range(cols):
        expected[t] = h_prev = a_np[t] * h_prev + b_np[t]
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cols", [1, 7, 100, 128])
def test_argmax_by_two_operand_reduce_breaks_ties_to_the_left(cols: int, rng: np.random.Generator) -> None:
    rows, block_rows = 37, 4
    k = KernelBuilder("argmax_kernel", x_ptr="*f32", out_ptr="*i32", M="i32")
    rows_v, cols_v = k.grid2d(k.span(block_rows), k.arange(cols))
    row_ok = k.cmp("lt", rows_v, k.splat(k["M"], (block_rows, cols)))
    x = k.load(k.ptr(k["x_ptr"], k.add(k.mul(rows_v, cols), cols_v)), row_ok, other=0.0)

    def combine(left: list[ir.Value], right: list[ir.Value]) -> list[ir.Value]:
        (v1, i1), (v2, i2) = left, right
        keep = k.binary("or", k.cmp("gt", v1, v2), k.binary("and", k.cmp("eq", v1, v2), k.cmp("lt", i1, i2)))
        return [k.where(keep, v1, v2), k.where(keep, i1, i2)]

    _, index = k.combine_op("reduce", [x, cols_v], combine, axis=1)
    first_row = k.span(block_rows)
    k.store(k.ptr(k["out_ptr"], first_row), index, k.cmp("lt", first_row, k.splat(k["M"], (block_rows,))))
    x_np = rng.integers(0, 5, (rows, cols)).astype(np.float32)  # many ties
    out = execute(
        k.function(), [mx.array(x_np), poisoned((rows,), mx.int32), rows], (cdiv(rows, block_rows), 1, 1)
    )[1]
    np.testing.assert_array_equal(np.array(out), np.argmax(x_np, axis=1))


@pytest.mark.parametrize("name", ["add", "maximum", "minimum", "mul", "and", "or", "xor"])
def test_reduce_fast_and_generic_paths_agree(name: str, rng: np.random.Generator) -> None:
    """Single-op combines (the fast path) equal the same op wrapped so the region runs generically."""
    n = 100
    k = KernelBuilder(f"reduce_{name}_kernel", x_ptr="*i32", out_ptr="*i32")
    x = k.load(k.ptr(k["x_ptr"], k.arange(n)))
    fast = k.single(name, x, axis=0)
    (slow,) = k.combine_op("reduce", [x], lambda a, b: [k.add(k.binary(name, a[0], b[0]), 0)], axis=0)
    k.store(k.ptr(k["out_ptr"], k.const(0)), fast)
    k.store(k.ptr(k["out_ptr"], k.const(1)), slow)
    x_np = (
        rng.integers(1, 4, n).astype(np.int32)
        if name == "mul"
        else rng.integers(-1000, 1000, n).astype(np.int32)
    )
    out = np.array(execute(k.function(), [mx.array(x_np), mx.zeros(2, mx.int32)], (1, 1, 1))[1])
    ufunc = {"add": np.add, "maximum": np.maximum, "minimum": np.minimum, "mul": np.multiply}
    ufunc |= {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}
    expected = ufunc[name].reduce(x_np.astype(np.int64)).astype(np.int32)
    np.testing.assert_array_equal(out, [expected, expected])


def matmul_kernel(in_dtype: str, acc_dtype: str, bm: int, bn: int, bk: int) -> ir.Function:
    """C = A @ B with a K loop carrying the accumulator; masks cover ragged M, N and K."""
    k = KernelBuilder(
        "matmul_kernel",
        a_ptr=f"*{in_dtype}",
        b_ptr=f"*{in_dtype}",
        c_ptr=f"*{acc_dtype}",
        M="i32",
        N="i32",
        K="i32",
    )
    offs_m, offs_n, offs_k = k.span(bm, 0), k.span(bn, 1), k.arange(bk)
    m_ok = k.cmp("lt", offs_m, k.splat(k["M"], (bm,)))
    n_ok = k.cmp("lt", offs_n, k.splat(k["N"], (bn,)))

    def body(k0: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        ks = k.add(k.splat(k0, (bk,)), offs_k)
        k_ok = k.cmp("lt", ks, k.splat(k["K"], (bk,)))
        am, ak = k.grid2d(offs_m, ks)
        a_ok = k.binary("and", *k.grid2d(m_ok, k_ok))
        a = k.load(k.ptr(k["a_ptr"], k.add(k.mul(am, k.splat(k["K"], (bm, bk))), ak)), a_ok, other=0)
        bk_, bn_ = k.grid2d(ks, offs_n)
        b_ok = k.binary("and", *k.grid2d(k_ok, n_ok))
        b = k.load(k.ptr(k["b_ptr"], k.add(k.mul(bk_, k.splat(k["N"], (bk, bn))), bn_)), b_ok, other=0)
        return [k.dot(a, b, carried[0])]

    (acc,) = k.for_(0, k["K"], bk, [k.const(0, acc_dtype, (bm, bn))], body)
    cm, cn = k.grid2d(offs_m, offs_n)
    k.store(
        k.ptr(k["c_ptr"], k.add(k.mul(cm, k.splat(k["N"], (bm, bn))), cn)),
        acc,
        k.binary("and", *k.grid2d(m_ok, n_ok)),
    )
    return k.function()


@pytest.mark.parametrize("in_dtype", ["f32", "f16", "bf16"])
def test_dot_with_k_loop(in_dtype: str, rng: np.random.Generator) -> None:
    m, n, kk = 37, 45, 70
    a, b = to_mx(rng.standard_normal((m, kk)), in_dtype), to_mx(rng.standard_normal((kk, n)), in_dtype)
    out = execute(
        matmul_kernel(in_dtype, "f32", 16, 16, 32),
        [a, b, poisoned((m, n)), m, n, kk],
        (cdiv(m, 16), cdiv(n, 16), 1),
    )[2]
    expected = to_numpy(a).astype(np.float64) @ to_numpy(b).astype(
        np.float64
    )  # f32 accumulation of exact products
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-4, atol=1e-4)


def test_int8_dot_accumulates_exactly_in_int32(rng: np.random.Generator) -> None:
    m, n, kk = 20, 24, 300
    a_np, b_np = (rng.integers(-128, 128, s).astype(np.int8) for s in ((m, kk), (kk, n)))
    out = execute(
        matmul_kernel("i8", "i32", 16, 16, 64),
        [mx.array(a_np), mx.array(b_np), poisoned((m, n), mx.int32), m, n, kk],
        (2, 2, 1),
    )[2]
    np.testing.assert_array_equal(np.array(out), a_np.astype(np.int64) @ b_np.astype(np.int64))


# ---------------------------------------------------------------- control flow


def test_for_with_per_program_bounds_keeps_finished_programs_values(rng: np.random.Generator) -> None:
    """Program p sums x[0..p] (a triangular loop) and writes each step it runs."""
    n = 10
    k = KernelBuilder("triangle_kernel", x_ptr="*f32", sums_ptr="*f32", steps_ptr="*f32", trips_ptr="*i32")
    pid = k.pid()

    def body(i: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        total, count = carried
        k.store(k.ptr(k["steps_ptr"], k.add(k.mul(pid, n), i)), k.cast(i, "f32"))
        return [k.add(total, k.load(k.ptr(k["x_ptr"], i))), k.add(count, 1)]

    total, count = k.for_(0, k.add(pid, 1), 1, [k.const(0.0, "f32"), k.const(0)], body)
    k.store(k.ptr(k["sums_ptr"], pid), total)
    k.store(k.ptr(k["trips_ptr"], pid), count)
    x_np = rng.standard_normal(n).astype(np.float32)
    _, sums, steps, trips = execute(
        k.function(),
        [mx.array(x_np), poisoned((n,)), poisoned((n * n,)), poisoned((n,), mx.int32)],
        (n, 1, 1),
    )
    np.testing.assert_allclose(np.array(sums), np.cumsum(x_np.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.array(trips), np.arange(1, n + 1))
    expected = np.where(np.tri(n, dtype=bool), np.arange(n)[None, :], np.nan)  # NaN: never written
    np.testing.assert_array_equal(np.array(steps).reshape(n, n), expected)


def test_while_with_diverging_exits() -> None:
    """Collatz step counts: each program leaves the loop at its own iteration."""
    n = 30
    k = KernelBuilder("collatz_kernel", out_ptr="*i32")
    start = k.add(k.pid(), 1)

    def before(vals: list[ir.Value]) -> tuple[ir.Value, list[ir.Value]]:
        return k.cmp("ne", vals[0], 1), vals

    def after(vals: list[ir.Value]) -> list[ir.Value]:
        x, steps = vals
        even = k.cmp("eq", k.binary("mod", x, 2), 0)
        return [k.where(even, k.binary("floordiv", x, 2), k.add(k.mul(x, 3), 1)), k.add(steps, 1)]

    _, steps = k.while_([start, k.const(0)], before, after)
    k.store(k.ptr(k["out_ptr"], k.pid()), steps)

    def collatz(x: int) -> int:
        steps = 0
        while x != 1:
            x, steps = (x // 2 if x % 2 == 0 else 3 * x + 1), steps + 1
        return steps

    out = execute(k.function(), [poisoned((n,), mx.int32)], (n, 1, 1))[0]
    np.testing.assert_array_equal(np.array(out), [collatz(i + 1) for i in range(n)])


@pytest.mark.parametrize("uniform", [False, True])
def test_if_on_program_id_runs_side_effects_only_where_taken(uniform: bool, rng: np.random.Generator) -> None:
    """Even programs store x * 2, odd ones x + 1; the if's result is stored by all.

    With `uniform`, the condition is a scalar argument every program agrees on.
    """
    n, block = 300, 64
    k = KernelBuilder("branch_kernel", x_ptr="*f32", a_ptr="*f32", b_ptr="*f32", flag="i32")
    offs = k.span(block)
    mask = k.cmp("lt", offs, n)
    x = k.load(k.ptr(k["x_ptr"], offs), mask)
    cond = k.cmp("ne", k["flag"], 0) if uniform else k.cmp("eq", k.binary("mod", k.pid(), 2), 0)

    def then() -> list[ir.Value]:
        k.store(k.ptr(k["a_ptr"], offs), k.mul(x, 2.0), mask)
        return [k.mul(x, 2.0)]

    def otherwise() -> list[ir.Value]:
        return [k.add(x, 1.0)]

    (y,) = k.if_(cond, then, otherwise)
    k.store(k.ptr(k["b_ptr"], offs), y, mask)
    x_np = rng.standard_normal(n).astype(np.float32)
    _, a, b, _ = execute(
        k.function(), [mx.array(x_np), poisoned((n,)), poisoned((n,)), 1], (cdiv(n, block), 1, 1)
    )
    taken = np.ones(n, bool) if uniform else (np.arange(n) // block) % 2 == 0
    np.testing.assert_array_equal(np.array(a), np.where(taken, x_np * 2, np.nan))
    np.testing.assert_array_equal(np.array(b), np.where(taken, x_np * 2, x_np + 1))


# ---------------------------------------------------------------- atomics


def test_atomic_add_histogram_with_heavy_duplicates(rng: np.random.Generator) -> None:
    """Counts are exact, and each bin's returned old values are 0, 1, ... in launch order."""
    n, bins, block = 1000, 8, 128
    k = KernelBuilder("histogram_kernel", x_ptr="*i32", hist_ptr="*i32", old_ptr="*i32")
    offs = k.span(block)
    mask = k.cmp("lt", offs, n)
    x = k.load(k.ptr(k["x_ptr"], offs), mask)
    old = k.atomic("add", k.ptr(k["hist_ptr"], x), 1, mask)
    k.store(k.ptr(k["old_ptr"], offs), old, mask)
    x_np = rng.integers(0, bins, n).astype(np.int32)
    _, hist, old = execute(
        k.function(),
        [mx.array(x_np), mx.zeros(bins, mx.int32), poisoned((n,), mx.int32)],
        (cdiv(n, block), 1, 1),
    )
    counts = np.bincount(x_np, minlength=bins)
    np.testing.assert_array_equal(np.array(hist), counts)
    for b in range(bins):
        # Programs in order, lanes in order: the documented serialization.
        np.testing.assert_array_equal(np.array(old)[x_np == b], np.arange(counts[b]))


def test_float_atomic_add_sums_duplicates(rng: np.random.Generator) -> None:
    n, block = 500, 64
    k = KernelBuilder("scatter_add_kernel", x_ptr="*f32", idx_ptr="*i32", out_ptr="*f32")
    offs = k.span(block)
    mask = k.cmp("lt", offs, n)
    idx = k.load(k.ptr(k["idx_ptr"], offs), mask)
    k.atomic("add", k.ptr(k["out_ptr"], idx), k.load(k.ptr(k["x_ptr"], offs), mask), mask)
    x_np, idx_np = rng.standard_normal(n).astype(np.float32), rng.integers(0, 5, n).astype(np.int32)
    out = execute(k.function(), [mx.array(x_np), mx.array(idx_np), mx.ones(5)], (cdiv(n, block), 1, 1))[2]
    np.testing.assert_allclose(
        np.array(out), 1 + np.bincount(idx_np, x_np.astype(np.float64), 5), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("kind", ["add", "max", "min", "and", "or", "xor", "xchg"])
def test_atomic_rmw_matches_a_sequential_run(
    kind: str, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    """Final memory and every returned old value equal running the lanes one by one in launch order."""
    n, block, slots = 300, 32, 4
    k = KernelBuilder(f"atomic_{kind}_kernel", v_ptr="*i32", mem_ptr="*i32", old_ptr="*i32")
    offs = k.span(block)
    mask = k.cmp("lt", offs, n)
    value = k.load(k.ptr(k["v_ptr"], offs), mask)
    old = k.atomic(kind, k.ptr(k["mem_ptr"], k.binary("mod", offs, slots)), value, mask)
    k.store(k.ptr(k["old_ptr"], offs), old, mask)
    v_np = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    mem_np = rng.integers(-(2**20), 2**20, slots).astype(np.int32)
    monkeypatch.setattr(executor, "_warned_sequential", set())
    with pytest.warns(UserWarning, match="one program at a time") if kind == "xchg" else nullcontext():
        _, mem, old = execute(
            k.function(), [mx.array(v_np), mx.array(mem_np), poisoned((n,), mx.int32)], (cdiv(n, block), 1, 1)
        )
    combine = {"add": np.add, "max": np.maximum, "min": np.minimum, "and": np.bitwise_and}
    combine |= {"or": np.bitwise_or, "xor": np.bitwise_xor, "xchg": lambda a, b: b}
    expected_mem, expected_old = mem_np.copy(), np.empty(n, np.int32)
    for lane in range(n):
        expected_old[lane] = expected_mem[lane % slots]
        expected_mem[lane % slots] = combine[kind](expected_mem[lane % slots], v_np[lane])
    np.testing.assert_array_equal(np.array(mem), expected_mem)
    np.testing.assert_array_equal(np.array(old), expected_old)


def test_cas_spin_lock_runs_programs_one_at_a_time_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock around a non-atomic increment: deadlocks unless programs run one at a time."""
    monkeypatch.setattr(executor, "_warned_sequential", set())
    programs = 12
    k = KernelBuilder("spin_lock_kernel", lock_ptr="*i32", counter_ptr="*i32")
    lock = k["lock_ptr"]

    def acquire(vals: list[ir.Value]) -> tuple[ir.Value, list[ir.Value]]:
        old = k.op("atomic_cas", [lock, k.const(0), k.const(1)], T.BlockType(T.int32), sem="acq_rel")
        return k.cmp("ne", old, 0), []

    k.while_([], acquire, lambda vals: [])
    counter = k.load(k["counter_ptr"])
    k.store(k["counter_ptr"], k.add(counter, 1))
    k.atomic("xchg", lock, 0)
    with pytest.warns(UserWarning, match="spin_lock_kernel"):
        lock_out, counter_out = execute(
            k.function(), [mx.zeros(1, mx.int32), mx.zeros(1, mx.int32)], (programs, 1, 1)
        )
    assert counter_out.item() == programs and lock_out.item() == 0


# ---------------------------------------------------------------- faults and chunking


def test_out_of_bounds_access_raises_with_location() -> None:
    k = KernelBuilder("oob_kernel", x_ptr="*f32", out_ptr="*f32", limit="i32")
    offs = k.add(k.arange(1024), 7)
    mask = k.cmp("lt", offs, k.splat(k["limit"], (1024,)))
    k.at(12)
    x = k.load(k.ptr(k["x_ptr"], offs), mask)
    k.at(13)
    k.store(k.ptr(k["out_ptr"], offs), x, mask)
    fn = k.function()
    x_in = mx.zeros(1024)
    with pytest.raises(
        InterpreterError,
        match=r"^index 1030 out of bounds for pointer argument 'x_ptr' of 1024 elements at k.py:12:4$",
    ):
        execute(fn, [x_in, mx.zeros(2048), 5000], (1, 1, 1))
    with pytest.raises(InterpreterError, match=r"index 1030 .* 'out_ptr' of 1000 elements at k.py:13:4"):
        execute(fn, [mx.zeros(2048), mx.zeros(1000), 5000], (1, 1, 1))
    # Masked-off lanes may point anywhere.
    out = execute(fn, [x_in, poisoned((1024,)), 1024], (1, 1, 1))[1]
    assert np.isnan(np.array(out)[:7]).all() and not np.isnan(np.array(out)[7:]).any()


def test_selecting_between_pointers_into_different_arguments_raises() -> None:
    k = KernelBuilder("select_kernel", a_ptr="*f32", b_ptr="*f32")
    k.at(5)
    chosen = k.where(k.cmp("eq", k.pid(), 0), k["a_ptr"], k["b_ptr"])
    k.store(chosen, k.const(1.0, "f32"))
    with pytest.raises(InterpreterError, match="different arguments .* at k.py:5:4"):
        execute(k.function(), [mx.zeros(1), mx.zeros(1)], (2, 1, 1))


def test_device_assert_reports_the_first_failing_lane() -> None:
    k = KernelBuilder("assert_kernel", n="i32")
    offs = k.span(8)
    k.at(9)
    k.builder.create("device_assert", [k.cmp("lt", offs, k.splat(k["n"], (8,)))], [], {"msg": "offs < n"})
    fn = k.function()
    execute(fn, [16], (2, 1, 1))
    with pytest.raises(InterpreterError, match=r"offs < n \(pid \(1, 0, 0\) idx \(4\)\) at k.py:9:4"):
        execute(fn, [12], (2, 1, 1))


def test_device_print_prints_each_active_program_and_element(capsys: pytest.CaptureFixture[str]) -> None:
    k = KernelBuilder("print_kernel")
    pid = k.pid()

    def then() -> list[ir.Value]:
        k.builder.create(
            "device_print", [k.add(k.arange(2), k.splat(pid, (2,)))], [], {"prefix": "x: ", "hex": False}
        )
        return []

    k.if_(k.cmp("ne", pid, 1), then, lambda: None)
    execute(k.function(), [], (3, 1, 1))
    lines = [
        "pid (0, 0, 0) idx (0) x: 0",
        "pid (0, 0, 0) idx (1) x: 1",
        "pid (2, 0, 0) idx (0) x: 2",
        "pid (2, 0, 0) idx (1) x: 3",
    ]
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.parametrize("chunked", [False, True])
def test_chunks_run_in_order_and_see_earlier_writes(
    chunked: bool, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    """With a small element budget the grid runs 4 programs at a time.

    Program p reads flag[p - 4] before setting flag[p]: within one chunk every load
    runs before every store, so only a later chunk sees an earlier chunk's flag.
    A ticket counter shows atomics serialize in launch order across chunks.
    """
    n, block = 1000, 64
    k = KernelBuilder(
        "ticket_kernel", x_ptr="*f32", out_ptr="*f32", flag_ptr="*i32", seen_ptr="*i32", counter_ptr="*i32"
    )
    pid = k.pid()
    offs = k.span(block)
    mask = k.cmp("lt", offs, n)
    k.store(k.ptr(k["out_ptr"], offs), k.mul(k.load(k.ptr(k["x_ptr"], offs), mask), 3.0), mask)
    seen = k.load(k.ptr(k["flag_ptr"], k.add(pid, -4)), k.cmp("ge", pid, 4), other=0)
    k.store(k.ptr(k["flag_ptr"], pid), k.const(1))
    k.store(k.ptr(k["seen_ptr"], pid), k.add(seen, k.atomic("add", k["counter_ptr"], 1)))
    if chunked:
        monkeypatch.setattr(executor, "MAX_ELEMENTS", 4 * block)
    programs = cdiv(n, block)
    x_np = rng.standard_normal(n).astype(np.float32)
    args = [mx.array(x_np), poisoned((n,)), mx.zeros(programs, mx.int32), poisoned((programs,), mx.int32)]
    _, out, _, seen, counter = execute(k.function(), [*args, mx.zeros(1, mx.int32)], (programs, 1, 1))
    np.testing.assert_array_equal(np.array(out), x_np * 3)
    assert counter.item() == programs
    ticket = np.arange(programs)
    np.testing.assert_array_equal(np.array(seen), ticket + ((ticket >= 4) if chunked else 0))


def test_loop_carried_pointers_with_per_program_trip_counts() -> None:
    """Pointers advanced in a loop (`ptrs += 4`) keep their value once a program's loop ends."""
    k = KernelBuilder("walk_kernel", x_ptr="*f32", out_ptr="*f32")
    pid = k.pid()
    lanes = k.arange(4)

    def body(i: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        total, ptrs = carried
        return [k.add(total, k.load(ptrs)), k.ptr(ptrs, k.splat(4, (4,)))]

    start = k.ptr(k["x_ptr"], lanes)
    total, ptrs = k.for_(0, k.add(pid, 1), 1, [k.const(0.0, "f32", (4,)), start], body)
    k.store(k.ptr(k["out_ptr"], k.add(k.splat(k.mul(pid, 8), (4,)), lanes)), total)
    k.store(k.ptr(k["out_ptr"], k.add(k.splat(k.add(k.mul(pid, 8), 4), (4,)), lanes)), k.load(ptrs))
    x_np = np.arange(40, dtype=np.float32)
    out = np.array(execute(k.function(), [mx.array(x_np), poisoned((24,))], (3, 1, 1))[1]).reshape(3, 2, 4)
    rows = x_np.reshape(10, 4)
    for p in range(3):
        np.testing.assert_array_equal(out[p, 0], rows[: p + 1].sum(0))
        np.testing.assert_array_equal(out[p, 1], rows[p + 1])


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3000), block=st.sampled_from([16, 64, 256]), seed=st.integers(0, 2**32 - 1))
def test_vector_add_ragged_tails(n: int, block: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x_np, y_np = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    args = [mx.array(x_np), mx.array(y_np), poisoned((n,)), n]
    out = execute(vector_add("f32", block), args, (cdiv(n, block), 1, 1))[2]
    np.testing.assert_array_equal(np.array(out), x_np + y_np)


def test_aliased_pointer_arguments_share_memory() -> None:
    """The same array passed twice is one buffer: an in-place update reads what it writes."""
    k = KernelBuilder("inplace_kernel", x_ptr="*f32", y_ptr="*f32", scale="f32")
    offs = k.arange(16)
    k.store(k.ptr(k["y_ptr"], offs), k.mul(k.load(k.ptr(k["x_ptr"], offs)), k.splat(k["scale"], (16,))))
    k.store(k.ptr(k["y_ptr"], offs), k.add(k.load(k.ptr(k["x_ptr"], offs)), 1.0))
    x = mx.arange(16, dtype=mx.float32)
    out = execute(k.function(), [x, x, mx.array(2.0)], (1, 1, 1))
    np.testing.assert_array_equal(np.array(out[0]), np.arange(16) * 2 + 1)
    np.testing.assert_array_equal(np.array(out[1]), np.arange(16) * 2 + 1)
    np.testing.assert_array_equal(np.array(x), np.arange(16))


def test_nested_control_flow_under_masks() -> None:
    """An `if` and a `device_assert` inside a loop whose trip count differs per program.

    Program p runs p + 1 iterations; odd iterations add i, even ones subtract it, and
    a scalar atomic counts every iteration that really ran.
    """
    n = 9
    k = KernelBuilder("nested_kernel", out_ptr="*i32", count_ptr="*i32")
    pid = k.pid()

    def body(i: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        k.builder.create("device_assert", [k.cmp("le", i, pid)], [], {"msg": "i <= pid"})
        k.atomic("add", k["count_ptr"], 1)
        odd = k.cmp("eq", k.binary("mod", i, 2), 1)
        (total,) = k.if_(odd, lambda: [k.add(carried[0], i)], lambda: [k.binary("sub", carried[0], i)])
        return [total]

    (total,) = k.for_(0, k.add(pid, 1), 1, [k.const(0)], body)
    k.store(k.ptr(k["out_ptr"], pid), total)
    out, count = execute(k.function(), [poisoned((n,), mx.int32), mx.zeros(1, mx.int32)], (n, 1, 1))
    expected = [sum(i if i % 2 else -i for i in range(p + 1)) for p in range(n)]
    np.testing.assert_array_equal(np.array(out), expected)
    assert count.item() == n * (n + 1) // 2


def test_half_precision_reductions_accumulate_in_float32(rng: np.random.Generator) -> None:
    n = 4096
    k = KernelBuilder("sum_kernel", x_ptr="*f16", out_ptr="*f16")
    k.store(k["out_ptr"], k.single("add", k.load(k.ptr(k["x_ptr"], k.arange(n))), axis=0))
    x_np = rng.uniform(0, 1, n).astype(np.float16)
    out = execute(k.function(), [mx.array(x_np), mx.zeros(1, mx.float16)], (1, 1, 1))[1]
    assert out.item() == np.float16(x_np.astype(np.float32).sum())


def test_boolean_reductions() -> None:
    k = KernelBuilder("bool_kernel", x_ptr="*i32", out_ptr="*i32")
    positive = k.cmp("gt", k.load(k.ptr(k["x_ptr"], k.arange(8))), 0)
    for slot, name in enumerate(["and", "or", "xor", "maximum", "minimum"]):
        k.store(k.ptr(k["out_ptr"], slot), k.cast(k.single(name, positive, axis=0), "i32"))
    x_np = np.array([1, 1, -1, 1, 1, -1, 1, 1], np.int32)
    out = execute(k.function(), [mx.array(x_np), mx.zeros(5, mx.int32)], (1, 1, 1))[1]
    np.testing.assert_array_equal(np.array(out), [0, 1, 0, 1, 0])


def test_fma_not_unsigned_division_and_num_programs() -> None:
    k = KernelBuilder("misc_kernel", f_ptr="*f32", u_ptr="*u32", out_f_ptr="*f32", out_u_ptr="*u32")
    offs = k.arange(4)
    f = k.load(k.ptr(k["f_ptr"], offs))
    u = k.load(k.ptr(k["u_ptr"], offs))
    k.store(k.ptr(k["out_f_ptr"], offs), k.op("fma", [f, f, k.splat(k.const(1.0, "f32"), (4,))], f.type))
    grid = k.splat(k.cast(k.op("num_programs", [], T.BlockType(T.int32), axis=0), "u32"), (4,))
    k.store(
        k.ptr(k["out_u_ptr"], offs),
        k.add(k.unary("not", k.binary("floordiv", u, 3)), k.binary("mod", u, grid)),
    )
    f_np = np.array([1.5, -2.0, 3.25, 0.0], np.float32)
    u_np = np.array([2**32 - 1, 7, 9, 0], np.uint32)
    out = execute(
        k.function(), [mx.array(f_np), mx.array(u_np), mx.zeros(4), mx.zeros(4, mx.uint32)], (5, 1, 1)
    )
    np.testing.assert_array_equal(np.array(out[2]), f_np * f_np + 1)
    np.testing.assert_array_equal(np.array(out[3]), ~(u_np // 3) + u_np % 5)


def test_device_print_hex_and_bfloat16(capsys: pytest.CaptureFixture[str]) -> None:
    k = KernelBuilder("print_hex_kernel", x_ptr="*bf16")
    x = k.load(k["x_ptr"])
    k.builder.create("device_print", [k.cast(k.const(-1), "i8")], [], {"prefix": "v ", "hex": True})
    k.builder.create("device_print", [x, k.pid()], [], {"prefix": ""})
    execute(k.function(), [mx.array([1.5], dtype=mx.bfloat16)], (1, 1, 1))
    assert capsys.readouterr().out.splitlines() == [
        "pid (0, 0, 0) idx () v 0xff",
        "pid (0, 0, 0) idx () (operand 0) 1.5",
        "pid (0, 0, 0) idx () (operand 1) 0",
    ]


def test_combine_region_reading_an_enclosing_scalar(rng: np.random.Generator) -> None:
    """A combine region may use a value from outside it: here a clamped max, min(max(a, b), cap)."""
    k = KernelBuilder("clamped_max_kernel", x_ptr="*f32", out_ptr="*f32", cap="f32")
    x = k.load(k.ptr(k["x_ptr"], k.arange(100)))
    (best,) = k.combine_op(
        "reduce", [x], lambda a, b: [k.binary("minimum", k.binary("maximum", a[0], b[0]), k["cap"])], axis=0
    )
    k.store(k["out_ptr"], best)
    x_np = rng.standard_normal(100).astype(np.float32)
    for cap in (0.5, 10.0):
        out = execute(k.function(), [mx.array(x_np), mx.zeros(1), cap], (3, 1, 1))[1]
        assert out.item() == min(x_np.max(), np.float32(cap))
