"""The frontend: walks a kernel's Python AST and builds block IR.

Constexpr values stay Python values, so constexpr `if`s and `static_range`
loops resolve here; runtime `if`/`for`/`while` become structured IR ops whose
loop-carried variables are found from the names the body assigns. Every node
passes through `visit`, which records the source location on the builder and
turns any error into a `CompilationError` pointing at the kernel's line.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import ir
from ..errors import CompilationError, KernelTypeError, UnsupportedError, located
from ..ir import types as T
from ..language import core, hints, semantic
from . import variables


@dataclass(frozen=True)
class ArgSpec:
    """How one kernel argument is specialized.

    Attributes:
        name: Parameter name.
        kind: `"ptr"`, `"scalar"` or `"constexpr"`.
        type: Element type (`PointerType` for pointers) of runtime arguments.
        value: The value of constexpr arguments (and of scalars specialized to 1).
        divisibility: 16 when the value (or pointer) is known to divide by 16.
    """

    name: str
    kind: str
    type: Any = None
    value: Any = None
    divisibility: int = 1

    @classmethod
    def pointer(cls, name: str, elem: T.DType) -> ArgSpec:
        """A pointer argument; MLX's buffers start 16-byte aligned."""
        return cls(name, "ptr", T.PointerType(elem), divisibility=16)

    @classmethod
    def scalar(cls, name: str, dtype: T.DType, one: bool = False, divisible_by_16: bool = False) -> ArgSpec:
        """A scalar argument, specialized as Triton does: an integer equal to 1 becomes the
        constant 1, one divisible by 16 says so (for vector accesses)."""
        if one:
            return cls(name, "scalar", dtype, value=1)
        return cls(name, "scalar", dtype, divisibility=16 if divisible_by_16 else 1)


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.MatMult: lambda a, b: core.dot(a, b),
}  # fmt: skip
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip


class _Return(Exception):
    """Unwinds the statements after a `return` of an inlined function."""


# How a returned value is made of runtime values: None for one value, else a tuple of shapes.
_Shape = tuple["_Shape | None", ...] | None


@dataclass(frozen=True)
class _Returned:
    """What the early returns of a function give (inside runtime control flow), which every
    return must match, as in Triton.

    Attributes:
        shape: How the value is made of runtime values (None: one value, a tuple: a tuple).
        types: The types of those values, in order.
        valued: False for `return` without a value.
        line: Where the first such return is.
    """

    shape: _Shape
    types: tuple[T.BlockType, ...]
    valued: bool
    line: int = field(compare=False)

    def describe(self) -> str:
        if not self.valued:
            return "nothing"
        types = iter(self.types)

        def text(shape: _Shape) -> str:
            if shape is None:
                return str(next(types))
            return "(" + ", ".join(text(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"

        return text(self.shape)


def _runtime_values(value: Any) -> tuple[_Shape, list[core.tensor]]:
    """The runtime values a returned value is made of (numbers become blocks, as in Triton)."""
    value = semantic.unwrap(value)
    if isinstance(value, (tuple, list)):
        parts = [_runtime_values(v) for v in value]
        return tuple(shape for shape, _ in parts), [t for _, ts in parts for t in ts]
    if isinstance(value, (bool, int, float)):
        value = semantic.to_tensor(value)
    if not variables.is_tensor(value):
        raise KernelTypeError(
            "a `return` inside runtime control flow must give numbers, blocks or tuples of them, "
            f"got {value!r}"
        )
    if value.dtype.is_ptr():
        raise UnsupportedError(
            f"returning a pointer ({value.type}) from inside runtime control flow is not supported; "
            "return the offsets and add them to the pointer after the call"
        )
    return None, [value]


def _assemble(shape: _Shape, values: Iterator[Any]) -> Any:
    if shape is None:
        return next(values)
    return tuple(_assemble(s, values) for s in shape)


class CodeGenerator(ast.NodeVisitor):
    """Builds IR for one function body (a kernel, or a @jit function being inlined)."""

    def __init__(
        self, jit_fn: Any, builder: ir.Builder, scope: dict[str, Any], callers: tuple[Any, ...] = ()
    ) -> None:
        self.fn = jit_fn
        self.builder = builder
        self.scope = scope
        self.callers = callers  # the functions whose calls are being inlined into this one
        # (break, continue) flags of the runtime loops around the statement being built
        self.loop_flags: list[tuple[str, str]] = []
        self.control_depth = 0
        self.return_value: Any = None
        self.returned: _Returned | None = None  # what the returns inside runtime control flow give

    # ------------------------------------------------------------------ plumbing

    def _where(self, node: ast.AST) -> tuple[str, int, int]:
        line = self.fn.first_line + getattr(node, "lineno", 1) - 1
        return self.fn.file, line, getattr(node, "col_offset", 0) + self.fn.indent

    def visit(self, node: ast.AST) -> Any:
        saved = self.builder.loc
        if hasattr(node, "lineno"):
            self.builder.loc = ir.Loc(*self._where(node))
        try:
            return super().visit(node)
        except (_Return, RecursionError):
            raise
        except CompilationError as err:
            if err.file:
                raise
            raise located(err, *self._where(node)) from err.__cause__
        except Exception as err:
            raise CompilationError(f"{type(err).__name__}: {err}", *self._where(node)) from err
        finally:
            self.builder.loc = saved

    def generic_visit(self, node: ast.AST) -> Any:
        raise UnsupportedError(f"Python syntax `{type(node).__name__}` is not supported in kernels")

    def run_body(self, stmts: Sequence[ast.stmt]) -> None:
        """Builds `stmts`; after a statement that may have left early (`break`, `continue`, or
        `return` inside runtime control flow), the rest runs under `if` the exit was not taken."""
        for i, stmt in enumerate(stmts):
            self.visit(stmt)
            flags = self._exit_flags()
            if any(flag is True for flag in flags):
                return  # an exit taken whatever the inputs: the rest never runs
            if any(variables.is_tensor(flag) for flag in flags) and i + 1 < len(stmts):
                self.visit(self._unless_exited(stmts[i + 1 :], stmt))
                return

    def _exit_names(self) -> list[str]:
        """The flags of the exits that skip the statement being built, if set."""
        names = list(self.loop_flags[-1]) if self.loop_flags else []
        return [n for n in (*names, variables.RETURN) if n in self.scope]

    def _exit_flags(self) -> list[Any]:
        return [semantic.unwrap(self.scope[n]) for n in self._exit_names()]

    def _unless_exited(self, stmts: Sequence[ast.stmt], where: ast.AST) -> ast.If:
        """`if not (exit flags): stmts`, located at `where`. With one flag the `else` sets it
        again, a no-op at run time that tells the frontend the flag is set after the `if`
        wherever `stmts` set it too (a function whose every path returns, say)."""
        names = [n for n in self._exit_names() if variables.is_tensor(self.scope[n])]
        loads = [ast.Name(id=n, ctx=ast.Load()) for n in names]
        taken = loads[0] if len(loads) == 1 else ast.BoolOp(op=ast.Or(), values=loads)
        orelse: list[ast.stmt] = []
        if len(names) == 1:
            orelse = [ast.Assign(targets=[ast.Name(id=names[0], ctx=ast.Store())], value=ast.Constant(True))]
        node = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=taken), body=list(stmts), orelse=orelse)
        for part in (node.test, *orelse):
            for child in ast.walk(part):
                ast.copy_location(child, where)
        return ast.copy_location(node, where)

    def visit_Break(self, node: ast.Break) -> None:
        if not self.loop_flags:
            raise UnsupportedError("`break` outside a loop")
        self.scope[self.loop_flags[-1][0]] = True

    def visit_Continue(self, node: ast.Continue) -> None:
        if not self.loop_flags:
            raise UnsupportedError("`continue` outside a loop")
        self.scope[self.loop_flags[-1][1]] = True

    def lookup(self, name: str) -> Any:
        if name in self.scope:
            return self.scope[name]
        globals_ = self.fn.fn.__globals__
        if name in globals_:
            return semantic.unwrap(globals_[name])
        if name == "range":
            return hints.range
        if name == "print":
            return self._print
        if name in ("min", "max"):
            return self._minmax(name)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise CompilationError(f"name '{name}' is not defined")

    def _print(self, *args: Any, **kwargs: Any) -> None:
        if any(variables.is_tensor(a) for a in args):
            prefix = " ".join(str(a) for a in args if not variables.is_tensor(a))
            hints.device_print(prefix, *(a for a in args if variables.is_tensor(a)))
        else:
            hints.static_print(*args, **kwargs)

    @staticmethod
    def _minmax(name: str) -> Callable[..., Any]:
        py = getattr(builtins, name)
        tl_fn = core.minimum if name == "min" else core.maximum

        def minmax(*args: Any, **kwargs: Any) -> Any:
            if len(args) > 1 and any(variables.is_tensor(a) for a in args):
                out = args[0]
                for a in args[1:]:
                    out = tl_fn(out, a)
                return out
            return py(*args, **kwargs)

        return minmax

    # ------------------------------------------------------------------ statements

    def visit_Expr(self, node: ast.Expr) -> None:
        self.visit(node.value)

    def visit_Pass(self, node: ast.Pass) -> None:
        return None

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.visit(node.value)
        for target in node.targets:
            self.assign(target, value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return
        self.assign(node.target, self.visit(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if not isinstance(node.target, ast.Name):
            raise UnsupportedError("augmented assignment is supported to plain names only")
        current = self.lookup(node.target.id)
        self.assign(node.target, _BINOPS[type(node.op)](current, self.visit(node.value)))

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.scope[target.id] = semantic.unwrap(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if variables.is_tensor(value) or not isinstance(value, (tuple, list)):
                raise KernelTypeError(f"cannot unpack {value!r} into {len(target.elts)} names")
            if len(value) != len(target.elts):
                raise KernelTypeError(f"cannot unpack {len(value)} values into {len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self.assign(t, v)
        else:
            raise UnsupportedError(
                f"assignment to `{ast.unparse(target)}` is not supported; kernels write memory with tl.store"
            )

    def visit_Return(self, node: ast.Return) -> None:
        value = semantic.unwrap(self.visit(node.value)) if node.value is not None else None
        if not self.control_depth:
            self.return_value = value
            raise _Return()
        # inside runtime control flow: the value is kept in variables and the return flag set
        shape, values = _runtime_values(value) if value is not None else (None, [])
        line = self._where(node)[1]
        returned = _Returned(shape, tuple(v.type for v in values), value is not None, line)
        if self.returned is None:
            self.returned = returned
        elif returned != self.returned:
            raise KernelTypeError(
                f"`{self.fn.__name__}` returns {returned.describe()} here but {self.returned.describe()} "
                f"at line {self.returned.line}: every `return` of a function must give the same type"
            )
        for i, v in enumerate(values):
            self.scope[f"{variables.RETURN_VALUE}{i}"] = v
        self.scope[variables.RETURN] = True

    def visit_Assert(self, node: ast.Assert) -> None:
        cond = self.visit(node.test)
        msg = self.visit(node.msg) if node.msg is not None else ast.unparse(node.test)
        hints.device_assert(cond, str(msg))

    def visit_If(self, node: ast.If) -> None:
        cond = semantic.unwrap(self.visit(node.test))
        if not variables.is_tensor(cond):
            self.run_body(node.body if cond else node.orelse)
            return
        if cond.shape:
            raise KernelTypeError(f"an `if` condition must be a scalar, got a block of shape {cond.shape}")
        cond = semantic.compare("ne", cond, 0) if not cond.dtype.is_bool() else cond
        before = dict(self.scope)
        then_block, then_scope = self._branch(node.body, before)
        else_block, else_scope = self._branch(node.orelse, before)
        after = dict(before)
        results: dict[variables.Leaf, T.BlockType] = {}  # the runtime values the branches disagree on
        for name in dict.fromkeys([*then_scope, *else_scope]):
            if variables.is_return_value(name):  # a branch that did not return holds a placeholder
                for block, scope, other in (
                    (then_block, then_scope, else_scope),
                    (else_block, else_scope, then_scope),
                ):
                    if name not in scope:
                        with self.builder.insert_into(block):
                            scope[name] = variables.placeholder(other[name])
            a, b = then_scope.get(name, variables.MISSING), else_scope.get(name, variables.MISSING)
            if a is variables.MISSING or b is variables.MISSING:
                after.pop(name, None)  # defined in one branch only: not visible after the if
                continue
            after[name] = a
            if a is b or (
                not variables.is_tensor(a) and not variables.is_tensor(b) and type(a) is type(b) and a == b
            ):
                continue
            for i, (x, y) in enumerate(zip(variables.leaves(a), variables.leaf_list(name, a, b))):
                if x is not y:
                    results[(name, i)] = variables.unify_type(name, x, y)
        for block, scope in ((then_block, then_scope), (else_block, else_scope)):
            with self.builder.insert_into(block):
                vals = [
                    variables.coerce(n, variables.leaves(scope[n])[i], t).handle
                    for (n, i), t in results.items()
                ]
                self.builder.create("yield", vals, [])
        op = self.builder.create(
            "if", [cond.handle], list(results.values()), regions=[then_block, else_block]
        )
        self.scope = variables.rebound(after, list(results), [core.tensor(r) for r in op.results])

    def _branch(self, stmts: Sequence[ast.stmt], before: dict[str, Any]) -> tuple[ir.Block, dict[str, Any]]:
        block = ir.Block()
        self.scope = dict(before)
        self.control_depth += 1
        try:
            with self.builder.insert_into(block):
                self.run_body(stmts)
        finally:
            self.control_depth -= 1
        return block, self.scope

    def visit_For(self, node: ast.For) -> None:
        if node.orelse:
            raise UnsupportedError("`for ... else` is not supported in kernels")
        iterable = semantic.unwrap(self.visit(node.iter))
        if isinstance(iterable, hints.static_range):
            self._unrolled(node, range(iterable.start, iterable.end, iterable.step))
        elif isinstance(iterable, hints.range):
            self._runtime_for(node, iterable)
        elif isinstance(iterable, (tuple, list)):
            self._unrolled(node, iterable)
        else:
            raise UnsupportedError(
                f"a kernel `for` must iterate over range(...), tl.range(...), tl.static_range(...) "
                f"or a constexpr tuple, got {type(iterable).__name__}"
            )

    def _unrolled(self, node: ast.For, values: Sequence[Any]) -> None:
        """A `tl.static_range` (or constexpr tuple) loop, one copy of the body per value. Its
        `break` and `continue` set flags as a runtime loop's do: one taken whatever the inputs
        (under constexpr conditions) stops the unrolling or skips the rest of the copy, and one
        taken at run time skips, under `if`, the rest of the copy and the copies after it."""
        with self._loop_exits(node):
            for value in values:
                if any(self.scope.get(n) is True for n in (self.loop_flags[-1][0], variables.RETURN)):
                    break
                self.assign(node.target, value)
                self._loop_body(node)
        self._drop_loop_flags()

    def _runtime_for(self, node: ast.For, loop: hints.range) -> None:
        if not isinstance(node.target, ast.Name):
            raise UnsupportedError("a runtime loop variable must be a single name")
        bounds = [semantic.to_tensor(b) for b in (loop.start, loop.end, loop.step)]
        for what, b in zip(("start", "end", "step"), bounds):
            if b.shape or not b.dtype.is_int() or b.dtype.is_bool():
                raise KernelTypeError(f"loop {what} must be an integer scalar, got {b.type}")
        iv_type = T.int64 if any(b.dtype.bits == 64 for b in bounds) else T.int32
        bounds = [semantic.cast(b, iv_type) for b in bounds]
        attrs = {"num_stages": loop.num_stages} if loop.num_stages is not None else {}

        def body(carried: list[core.tensor], block_args: list[ir.Value]) -> None:
            self.scope[node.target.id] = core.tensor(block_args[0])
            self._loop_body(node)

        with self._loop_exits(node):
            init, block, keys = self._carried_region(node, [T.BlockType(iv_type)], body)
        op = self.builder.create(
            "for",
            [b.handle for b in bounds] + [v.handle for v in init],
            [v.type for v in init],
            attrs,
            [block],
        )
        self.scope = variables.rebound(self.scope, keys, [core.tensor(r) for r in op.results])
        self._drop_loop_flags()

    @contextlib.contextmanager
    def _loop_exits(self, node: ast.For | ast.While) -> Iterator[None]:
        """The break/continue flags of a runtime loop while its body is built."""
        depth = len(self.loop_flags)
        flags = (f"@break{depth}", f"@continue{depth}")
        self.scope[flags[0]] = False
        self.loop_flags.append(flags)
        try:
            yield
        finally:
            self.loop_flags.pop()

    def _drop_loop_flags(self) -> None:
        depth = len(self.loop_flags)
        self.scope.pop(f"@break{depth}", None)
        self.scope.pop(f"@continue{depth}", None)

    def _loop_body(self, node: ast.For | ast.While) -> None:
        """One iteration: skipped whole once the loop was left (`break`, an early `return`)."""
        self.scope[self.loop_flags[-1][1]] = False  # `continue` skips the rest of this iteration only
        if any(variables.is_tensor(f) for f in self._exit_flags()):
            self.visit(self._unless_exited(node.body, node))
        else:
            self.run_body(node.body)

    def visit_While(self, node: ast.While) -> None:
        if node.orelse:
            raise UnsupportedError("`while ... else` is not supported in kernels")
        before_block: list[ir.Block] = []

        def after(carried: list[core.tensor], block_args: list[ir.Value]) -> None:
            self._loop_body(node)

        def before(keys: list[variables.Leaf], init: list[core.tensor]) -> None:
            block = self.builder.new_block([v.type for v in init])
            saved = self.scope
            self.scope = variables.rebound(saved, keys, [core.tensor(a) for a in block.args])
            with self.builder.insert_into(block):
                cond = semantic.unwrap(self.visit(node.test))
                if not variables.is_tensor(cond) or cond.shape:
                    raise KernelTypeError("a runtime `while` condition must be a scalar runtime value")
                cond = semantic.compare("ne", cond, 0) if not cond.dtype.is_bool() else cond
                for flag in self._exit_flags():  # a loop left by `break` or `return` stops
                    if variables.is_tensor(flag):
                        cond = semantic.logical("and", cond, semantic.logical_not(flag))
                self.builder.create("condition", [cond.handle] + list(block.args), [])
            self.scope = saved
            before_block[:] = [block]

        with self._loop_exits(node):
            init, after_block, keys = self._carried_region(node, [], after)
            before(keys, init)
        op = self.builder.create(
            "while", [v.handle for v in init], [v.type for v in init], regions=[before_block[0], after_block]
        )
        self.scope = variables.rebound(self.scope, keys, [core.tensor(r) for r in op.results])
        self._drop_loop_flags()

    def _carried_region(
        self,
        node: ast.For | ast.While,
        leading: list[T.BlockType],
        body: Callable[[list[core.tensor], list[ir.Value]], None],
    ) -> tuple[list[core.tensor], ir.Block, list[variables.Leaf]]:
        """Builds a loop body whose region yields the runtime values it reassigns.

        A variable carries one value, or several for a block pointer (its fields; `variables.Leaf` names
        each by variable and position). The body is built, its yielded types compared with the
        initial values', and rebuilt with promoted initial values until they agree (a variable
        initialized with `0` and accumulated as a float block, say).
        """
        # the loop's break flag, the return flag and the returned values are carried where the
        # body sets them (returned values it gives first are added below)
        inner = {type(n) for stmt in node.body for n in ast.walk(stmt)}
        flags = [self.loop_flags[-1][0]] if ast.Break in inner else []
        if ast.Return in inner:
            flags += [variables.RETURN, *(n for n in self.scope if variables.is_return_value(n))]
        candidates = [n for n in (*variables.assigned_names(node.body), *flags) if n in self.scope]
        outer = dict(self.scope)
        init = {(n, i): leaf for n in candidates for i, leaf in enumerate(variables.leaves(outer[n]))}
        for _ in range(8):
            init_t = {k: self._as_tensor(v) for k, v in init.items()}
            keys = list(init_t)
            block = self.builder.new_block(leading + [init_t[k].type for k in keys])
            self.scope = variables.rebound(outer, keys, [core.tensor(a) for a in block.args[len(leading) :]])
            self.control_depth += 1
            try:
                with self.builder.insert_into(block):
                    body([init_t[k] for k in keys], block.args)
                    now = {
                        n: variables.leaf_list(n, outer[n], self.scope[n])
                        for n in dict.fromkeys(n for n, _ in keys)
                    }
                    out = {k: now[k[0]][k[1]] for k in keys}
                    # values a `return` in the body gives, which the loop must carry
                    returned = {
                        n: v for n, v in self.scope.items() if variables.is_return_value(n) and n not in outer
                    }
            finally:
                self.control_depth -= 1
                self.scope = dict(outer)
            changed = bool(returned)
            for name, value in returned.items():  # carried from a placeholder before the loop
                outer[name] = init[(name, 0)] = variables.placeholder(value)
            self.scope = dict(outer)
            for k, arg in zip(keys, block.args[len(leading) :]):
                if variables.is_tensor(out[k]) and out[k].handle is arg:
                    del init[k]  # never reassigned at run time: not loop-carried
                    changed = True
                elif variables.is_tensor(out[k]) and out[k].type != init_t[k].type:
                    init[k] = variables.coerce(k[0], init_t[k], out[k].type, widening=True)
                    changed = True
            if changed:
                continue
            with self.builder.insert_into(block):
                vals = [variables.coerce(k[0], out[k], init_t[k].type).handle for k in keys]
                self.builder.create("yield", vals, [])
            return [init_t[k] for k in keys], block, keys
        raise KernelTypeError("loop-carried variables keep changing type in the loop body")

    def _as_tensor(self, value: Any) -> core.tensor:
        value = semantic.unwrap(value)
        if variables.is_tensor(value):
            return value
        if isinstance(value, (bool, int, float)):
            return semantic.to_tensor(value)
        raise KernelTypeError(
            f"a variable reassigned in a runtime loop must hold a number or a block, got {value!r}"
        )

    # ------------------------------------------------------------------ expressions

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        return self.lookup(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = semantic.unwrap(self.visit(node.value))
        if isinstance(value, (bool, int, float)) and hasattr(core.tensor, node.attr):
            # a number in a variable acts as Triton's constexpr-to-tensor: `acc = 0; acc.to(tl.int64)`
            value = semantic.to_tensor(value)
        return semantic.unwrap(getattr(value, node.attr))

    def visit_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self._elements(node.elts))

    def visit_List(self, node: ast.List) -> list[Any]:
        return self._elements(node.elts)

    def _elements(self, elts: Sequence[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ast.Starred):
                out.extend(self.visit(e.value))
            else:
                out.append(self.visit(e))
        return out

    def visit_Slice(self, node: ast.Slice) -> slice:
        parts = [self.visit(p) if p is not None else None for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        value = semantic.unwrap(self.visit(node.value))
        index = semantic.unwrap(self.visit(node.slice))
        return value[index]

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left = semantic.unwrap(self.visit(node.left))
        right = semantic.unwrap(self.visit(node.right))
        return _BINOPS[type(node.op)](left, right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = semantic.unwrap(self.visit(node.operand))
        if isinstance(node.op, ast.Not):
            return semantic.logical_not(operand) if variables.is_tensor(operand) else not operand
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        return ~operand

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        result = semantic.unwrap(self.visit(node.values[0]))
        for value_node in node.values[1:]:
            if not variables.is_tensor(result) and (not result if is_and else result):
                return result  # Python short circuit on a constexpr
            value = semantic.unwrap(self.visit(value_node))
            if variables.is_tensor(result) or variables.is_tensor(value):
                result = semantic.logical("and" if is_and else "or", result, value)
            else:
                result = value
        return result

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = semantic.unwrap(self.visit(node.left))
        result: Any = None
        for op, right_node in zip(node.ops, node.comparators):
            right = semantic.unwrap(self.visit(right_node))
            value = _CMPOPS[type(op)](left, right)
            result = value if result is None else result & value
            left = right
        return result

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        cond = semantic.unwrap(self.visit(node.test))
        if variables.is_tensor(cond):
            return semantic.where(cond, self.visit(node.body), self.visit(node.orelse))
        return self.visit(node.body) if cond else self.visit(node.orelse)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                v = semantic.unwrap(self.visit(value.value))
                if variables.is_tensor(v):
                    raise UnsupportedError("f-strings may only format constexpr values")
                spec = self.visit(value.format_spec) if value.format_spec else ""
                parts.append(format(v, spec))
            else:
                parts.append(str(value.value))
        return "".join(parts)

    def visit_Call(self, node: ast.Call) -> Any:
        func = semantic.unwrap(self.visit(node.func))
        args = self._elements(node.args)
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self.visit(kw.value))
            else:
                kwargs[kw.arg] = self.visit(kw.value)
        if getattr(func, "is_mtriton_jit", False):
            return self.call_function(func, args, kwargs)
        return func(*args, **kwargs)

    def call_function(self, fn: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Inlines a call to another @jit function."""
        fn = getattr(fn, "jit_function", fn)
        try:
            bound = inspect.signature(fn.fn).bind(*args, **kwargs)
        except TypeError as err:
            raise KernelTypeError(f"bad call to {fn.__name__}: {err}") from None
        bound.apply_defaults()
        for name in fn.constexpr_names:
            if variables.is_tensor(bound.arguments.get(name)):
                raise KernelTypeError(
                    f"{fn.__name__}: argument {name} is tl.constexpr but got a runtime value"
                )
        chain = (*self.callers, self.fn)
        if fn in chain:
            path = " -> ".join(f.__name__ for f in (*chain[chain.index(fn) :], fn))
            raise UnsupportedError(
                f"recursive call ({path}): @jit calls are inlined, so no function may call itself"
            )
        callee = CodeGenerator(fn, self.builder, dict(bound.arguments), chain)
        callee.generate_body()
        return callee.return_value

    def generate_body(self) -> None:
        if any(isinstance(n, ast.Return) for s in self.fn.ast_body if isinstance(s, (ast.If, ast.For, ast.While))
               for n in ast.walk(s)):  # fmt: skip
            self.scope[variables.RETURN] = False  # an early return may come inside runtime control flow
        try:
            self.run_body(self.fn.ast_body)
        except _Return:
            pass
        if self.returned is not None and self.returned.valued:
            if self.scope.get(variables.RETURN) is not True:
                raise KernelTypeError(
                    f"`{self.fn.__name__}` returns a value at line {self.returned.line} but may reach its "
                    "end without a `return`: end it with one",
                    *self._where(self.fn.ast_body[-1]),
                )
            names = (f"{variables.RETURN_VALUE}{i}" for i in range(len(self.returned.types)))
            self.return_value = _assemble(self.returned.shape, (self.scope[n] for n in names))
