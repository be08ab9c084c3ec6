"""Block IR -> per-thread C-like code, shared by Metal and CUDA.

A program is one threadgroup/block of `num_warps * 32` threads. Scalars are
uniform: every thread computes the same value, so all control flow (which the
IR only allows on scalars) is uniform and barriers inside it are safe. Blocks
are register arrays in the canonical layout of `layout.py`.

Ops that move elements between threads (broadcast, permute, join, split) either
recompute a *pure* source (an index expression built from `arange`, constants
and scalars) at the element they need, or exchange the source through
threadgroup memory. Reductions, scans and `dot` stage their inputs in
threadgroup memory and work cooperatively; see each `_lower_*` rule. Every sequence
of writes to threadgroup memory starts with a barrier, so readers need none after them.

This module is the driver: `Lowering` holds the state of one kernel's lowering (the
entities of the values lowered so far, the lines written, threadgroup memory in use)
and the helpers rules share. The rules themselves live in `rules/`, one module per
op family, registered per op name with `@lowers(...)` (`registry.py`); `Lowering.run`
walks the IR and calls them. The tensor-core plan (`dot_plan.py`) is made before.
Each emitted statement carries a `// file.py:line` comment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ... import ir
from ...errors import CompilationError, OutOfResources, UnsupportedError
from ...ir import types as T
from ...options import LaunchOptions
from .axis_info import AxisInfoAnalysis
from .dialect import Dialect
from .dot_plan import plan_dots
from .entity import Entity
from .layout import Layout, MmaLayout, ravel, unravel
from .render import combiner_kind, literal, render
from .rules import RULES, UNSUPPORTED
from .shared_memory import align16, array_bytes

PURE_OPS = ir.BINARY_OPS | ir.UNARY_OPS | {
    "constant", "arange", "splat", "broadcast", "expand_dims", "reshape", "permute", "cast",
    "cmp", "where", "fma", "addptr", "assume", "bitcast",
}  # fmt: skip
# An expression that may be repeated as it is: a name or a number.
_SIMPLE = re.compile(r"^(?:[A-Za-z_]\w*|\d+)$")
# Pure ops whose recomputation at an index adds no more than its index: never worth a local.
_RECOMPUTED_FREELY = frozenset(
    ("arange", "constant", "splat", "expand_dims", "reshape", "assume", "broadcast", "permute")
)


def chunk_elements(fn: ir.Function, vector_bytes: int) -> dict[int, int]:
    """Elements per thread chunk of each element count's layout: `vector_bytes` of the
    narrowest type the kernel loads or stores with that count (8 halves, 16 int8).

    Layouts are keyed by element count, so an f16 row loaded, cast to f32 and stored as f16
    (softmax in half) shares one layout: chunks sized for the narrowest type give its accesses
    16 bytes each, where chunks sized for the widest would give them 8. A wider type in the
    same layout then accesses a chunk as several 16-byte vectors (`rules/memory.py`), which
    costs no registers (a thread holds `numel / threads` elements either way) and stays
    coalesced: neighbouring threads' vectors are one chunk apart, and the chunk's later
    vectors read the rest of the same sectors. Counts no access uses keep 4 elements (16
    bytes of a 32-bit type).
    """
    chunks: dict[int, int] = {}
    for op in ir.walk(fn.body):
        if op.name not in ("load", "store") or not op.operands[0].type.shape:
            continue
        ptr = op.operands[0].type
        elems = max(1, vector_bytes // ptr.elem.element.itemsize)
        chunks[ptr.numel] = max(chunks.get(ptr.numel, 1), elems)
    return chunks


@dataclass
class _Memo:
    """One `Lowering.expr_at` call's state: the paths reaching each value, and the text (or
    local) already made for a value at an index."""

    paths: dict[int, int]
    texts: dict[tuple[int, str], str] = field(default_factory=dict)


class Lowering:
    """Writes the body of one kernel for one dialect."""

    def __init__(
        self, fn: ir.Function, dialect: Dialect, opts: LaunchOptions, arg_names: dict[str, str]
    ) -> None:
        self.fn = fn
        self.d = dialect.under(opts.math_mode)
        self.threads = opts.num_warps * 32
        self.warps = opts.num_warps
        self.axis = AxisInfoAnalysis(fn)
        self.lines: list[str] = []
        self.depth = 1
        self.env: dict[int, Entity] = {}
        self.defs: dict[int, ir.Op] = {}
        self.pure: dict[int, bool] = {}  # `is_pure` of the values asked about, by id
        self.counter = 0
        self.comment = ""  # `file.py:line` of the op being lowered, after each statement
        self.op_loc = ir.UNKNOWN_LOC  # where errors point: the op whose rule is running
        self.arg_names = arg_names
        # the pointee type of each pointer argument's C name, and the views of them that pointer
        # casts made: view name -> (the argument's C name, the view's pointee type)
        self.pointee = {
            arg_names[p.name]: p.value.type.elem.element
            for p in fn.params
            if isinstance(p.value.type.elem, T.PointerType)
        }
        self.views: dict[str, tuple[str, T.DType]] = {}
        self.written_bases: set[str] = set()
        self.atomic_bases: set[str] = set()
        self.prologue: dict[str, str] = {}  # name -> statement, placed before the body
        self.helpers: set[str] = set()  # `Dialect.helpers` entries the rules asked for
        # a pipelined loop's prefetch, which the body's first (warpgroup) dot issues while it
        # multiplies (`Pipeline.overlap`)
        self.while_multiplying: Callable[[], None] | None = None
        uses: dict[int, int] = {}  # operands reading each value, by id
        for op in ir.walk(fn.body):
            for v in op.operands:
                uses[id(v)] = uses.get(id(v), 0) + 1
        self.dots = plan_dots(fn, dialect, self.threads, opts.num_stages, uses)
        self.shared_bytes = self.dots.scratch_base
        self.chunks = chunk_elements(fn, dialect.vector_bytes)
        # Threadgroup-memory events so far (barriers, pointers into it, regions that hold
        # either), and the event count and byte range of the last exchange
        # (`cooperative.begin_exchange`): while no event has happened since, the next one
        # needs no leading barrier. None: no exchange yet, nothing read.
        self.memory_events = 0
        self.last_exchange: tuple[int, tuple[int, int] | None] = (0, None)

    @property
    def atomic(self) -> set[str]:
        """Names of the pointer parameters updated with atomics (their final values may
        depend on the order threads run in, e.g. float sums)."""
        return self._params_of(self.atomic_bases)

    @property
    def written(self) -> set[str]:
        """Names of the pointer parameters the kernel stores to or updates atomically."""
        return self._params_of(self.written_bases)

    def _params_of(self, bases: set[str]) -> set[str]:
        roots = {self.views[b][0] if b in self.views else b for b in bases}
        return {p for p, c in self.arg_names.items() if c in roots}

    def view(self, base: str, dtype: T.DType) -> str:
        """The C name of pointer argument `base` (or a view of it) read as `dtype` elements.

        A pointer cast makes such a view: the launch declares it next to the argument, with
        the argument's address space (`Source.pointer_decls`), so every access through it,
        vector, atomic or asynchronous copy, reads and writes `dtype` elements.
        """
        root = self.views[base][0] if base in self.views else base
        if self.pointee[root] == dtype:
            return root
        name = f"{root}_{dtype.short}"
        self.views[name] = (root, dtype)
        return name

    # ------------------------------------------------------------------ emission helpers

    def fresh(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, line: str) -> None:
        comment = f"  // {self.comment}" if self.comment else ""
        self.lines.append("  " * self.depth + line + comment)

    def open(self, header: str = "") -> None:
        """Opens a block: `header {`, or a bare scope for temporaries."""
        self.emit(f"{header} {{" if header else "{")
        self.depth += 1

    def close(self, trailer: str = "") -> None:
        self.depth -= 1
        self.lines.append("  " * self.depth + "}" + trailer)

    def ctype(self, dtype: T.DType) -> str:
        return self.d.ctype(dtype)

    def layout_of(self, v: ir.Value) -> Layout | MmaLayout | None:
        if not v.type.shape:
            return None
        numel = v.type.numel
        return self.dots.layouts.get(numel) or Layout(numel, self.threads, self.chunks.get(numel, 4))

    def new_entity(
        self, v: ir.Value, base: str | None = None, dtype: T.DType | None = None, wide: bool = False
    ) -> Entity:
        """Declares the C variable/array for `v` and records it."""
        elem = v.type.elem
        if isinstance(elem, T.PointerType):
            dtype = dtype or elem.element
            ctype = self.ctype(T.int64 if wide else T.int32)
        else:
            dtype = dtype or elem
            ctype = self.ctype(dtype)
        ent = Entity(self.fresh(), dtype, self.layout_of(v), base, wide)
        if ent.layout is None:
            self.emit(f"{ctype} {ent.name};")
        else:
            self.emit(f"{ctype} {ent.name}[{ent.layout.slots}];")
        self.env[id(v)] = ent
        return ent

    def scratch(self, dtype: T.DType, count: int, offset: int = 0) -> str:
        """A typed pointer to threadgroup scratch memory at byte `offset` (kept 16-aligned)."""
        size = dtype.itemsize if not dtype.is_bool() else 1
        offset += self.dots.scratch_base
        end = offset + size * count
        self.shared_bytes = max(self.shared_bytes, align16(end))
        self._check_shared_bytes()
        return self.shared_at(dtype, str(offset))

    def _check_shared_bytes(self) -> None:
        if self.shared_bytes > self.d.max_shared_bytes:
            raise self.error(
                OutOfResources,
                f"kernel needs {self.shared_bytes} bytes of threadgroup memory; "
                f"{self.d.name} allows {self.d.max_shared_bytes}. Use smaller blocks.",
            )

    def shared_at(self, dtype: T.DType, offset: str) -> str:
        """A typed pointer to threadgroup memory at byte offset `offset` (a C expression)."""
        ctype = self.ctype(dtype) if not dtype.is_bool() else "bool"
        self.memory_events += 1
        return f"(({self.d.shared_ptr.format(t=ctype)})(mt_smem + {offset}))"

    def barrier(self) -> None:
        self.memory_events += 1
        self.emit(self.d.barrier)

    def slot_loop(self, layout: Layout) -> None:
        self.open(f"for (int i = 0; i < {layout.slots}; ++i)")

    def get(self, v: ir.Value) -> Entity:
        return self.env[id(v)]

    # ------------------------------------------------------------------ driver

    def run(self) -> str:
        d = self.d
        self.emit(f"const int tid = (int)({d.thread_index});")
        self.emit("const int lane = tid % 32;")
        self.emit("const int warp = tid / 32;")
        for param in self.fn.params:
            elem = param.value.type.elem
            name = self.arg_names[param.name]
            if isinstance(elem, T.PointerType):
                self.env[id(param.value)] = Entity("0", elem.element, None, name)
            else:
                self.env[id(param.value)] = Entity(d.extra["scalar_arg"].format(name=name), elem)
        body_start = len(self.lines)
        for op in self.fn.body.ops:
            self.op(op)
        self.lines[body_start:body_start] = ["  " + line for line in self.prologue.values()]
        shared_array = d.shared_array
        unit = d.matrix.warpgroup if d.matrix is not None else None
        if unit is not None and unit.helper in self.helpers:  # its tiles start on swizzle boundaries
            shared_array = unit.shared_array
            self.shared_bytes += unit.align
            self._check_shared_bytes()
        if self.shared_bytes:
            self.lines.insert(body_start, "  " + shared_array.format(n16=self.shared_bytes // 16))
        return "\n".join(self.lines) + "\n"

    def aligned(self, base: str, nbytes: int) -> str | None:
        """C name of a flag: kernel argument `base` is `nbytes`-aligned (None: no test needed)."""
        if self.d.aligned is None:
            return None
        name = f"{base}_aligned{nbytes}"
        test = self.d.aligned.format(p=base, n=nbytes)
        self.prologue.setdefault(name, f"const bool {name} = {test};")
        return name

    def block(self, block: ir.Block) -> None:
        """Lowers the ops of a region (a loop's body, a branch). A region that touches
        threadgroup memory counts as an event on entry (a loop's next iteration follows its
        last one) and on exit (it may not have run); one that does not leaves no trace."""
        before = self.memory_events
        self.memory_events += 1
        for op in block.ops:
            self.op(op)
        self.memory_events = before if self.memory_events == before + 1 else self.memory_events + 1

    def op(self, op: ir.Op) -> None:
        # the comment stays the last op's after a nested one (a region's) returns; errors
        # point at the op whose rule raises them
        self.comment = f"{os.path.basename(op.loc.file)}:{op.loc.line}" if op.loc.line else ""
        outer, self.op_loc = self.op_loc, op.loc
        for r in op.results:
            self.defs[id(r)] = op
        for r in op.results:
            elem = r.type.elem
            elem = elem.element if isinstance(elem, T.PointerType) else elem
            if elem.short not in self.d.types:
                raise self.error(
                    UnsupportedError,
                    f"the {self.d.name} backend has no {elem} (float64 runs on the interpreter)",
                )
        rule = RULES.get(op.name)
        if rule is None:
            reason = UNSUPPORTED.get(op.name, "no lowering rule")
            raise self.error(
                UnsupportedError, f"the {self.d.name} backend cannot lower `{op.name}`: {reason}"
            )
        rule(self, op)
        self.op_loc = outer

    def error(self, kind: type[CompilationError], message: str) -> CompilationError:
        """A `kind` error pointing at the source line of the op being lowered."""
        loc = self.op_loc
        return kind(message, loc.file, loc.line, loc.col) if loc.line else kind(message)

    # ------------------------------------------------------------------ values at an index

    def is_pure(self, v: ir.Value) -> bool:
        if not v.type.shape:
            return True
        op = self.defs.get(id(v))
        if op is None:
            return False  # not lowered yet
        if id(v) not in self.pure:
            self.pure[id(v)] = op.name in PURE_OPS and all(self.is_pure(o) for o in op.operands)
        return self.pure[id(v)]

    def expr_at(self, v: ir.Value, flat: str) -> str:
        """C expression for element `flat` of a pure value, recomputed from its definition.

        Where the text would repeat, the pieces become `const` locals, emitted before the
        statement that uses the result: an index that unravelling reads once per dimension
        (a broadcast's or permute's), and a value the expression reaches along several paths.
        Spelled out inline, each move of a chain copied its index into every dimension of the
        next, so the text grew as the product of the ranks: a 9-D block's broadcast offsets
        came to 56 MB of Metal. Named, the code grows with the number of ops.
        """
        return self._expr_at(v, flat, _Memo(self._paths(v)))

    def _children(self, v: ir.Value) -> list[ir.Value]:
        """The values `expr_at` recomputes `v` from."""
        if not v.type.shape:
            return [] if id(v) in self.env else [self.defs[id(v)].operands[0]]
        op = self.defs[id(v)]
        if op.name in ("arange", "constant", "splat"):
            return []
        if op.name in ("expand_dims", "reshape", "assume", "broadcast", "permute"):
            return [op.operands[0]]
        return list(op.operands)

    def _paths(self, root: ir.Value) -> dict[int, int]:
        """How many paths from `root` reach each value it is recomputed from (2 meaning two or more)."""
        order: list[ir.Value] = []
        seen: set[int] = set()
        stack: list[tuple[ir.Value, bool]] = [(root, False)]
        while stack:  # depth-first, each value after everything that reads it
            v, done = stack.pop()
            if done:
                order.append(v)
            elif id(v) not in seen:
                seen.add(id(v))
                stack.append((v, True))
                stack.extend((c, False) for c in self._children(v))
        paths = {id(root): 1}
        for v in reversed(order):
            for c in self._children(v):
                paths[id(c)] = min(2, paths.get(id(c), 0) + paths[id(v)])
        return paths

    def _expr_at(self, v: ir.Value, flat: str, memo: _Memo) -> str:
        key = (id(v), flat)
        if key not in memo.texts:
            text = self._expr_text(v, flat, memo)
            computed = v.type.shape and self.defs[id(v)].name not in _RECOMPUTED_FREELY
            if computed and memo.paths.get(id(v), 0) > 1 and not _SIMPLE.match(text):
                text = self._local(self.value_dtype(v), "x", text)
            memo.texts[key] = text
        return memo.texts[key]

    def _expr_text(self, v: ir.Value, flat: str, memo: _Memo) -> str:
        ent = self.env.get(id(v))
        if not v.type.shape:
            if ent is not None:
                return ent.name
            return self._expr_at(self.defs[id(v)].operands[0], flat, memo)
        op = self.defs[id(v)]
        if op.name == "arange":
            return f"({op.attrs['start']} + (int)({flat}))"
        if op.name == "constant":
            return literal(self.d, op.attrs["value"], v.type.elem)
        if op.name == "splat":
            return self.get(op.operands[0]).name
        if op.name in ("expand_dims", "reshape", "assume"):
            return self._expr_at(op.operands[0], flat, memo)
        if op.name in ("broadcast", "permute"):
            reads = sum(1 for d in op.operands[0].type.shape if d != 1)
            if reads > 1 and not _SIMPLE.match(flat):
                flat = self._local(T.int32, "e", flat)
            return self._expr_at(op.operands[0], self.source_index(op, flat), memo)
        args = [self._expr_at(o, flat, memo) for o in op.operands]
        return render(self.d, op, args)

    def _local(self, dtype: T.DType, prefix: str, text: str) -> str:
        """Emits `const T name = text;` and returns the name."""
        name = self.fresh(prefix)
        self.emit(f"const {self.ctype(dtype)} {name} = {text};")
        return name

    def source_index(self, op: ir.Op, flat: str) -> str:
        """For broadcast/permute: the flat index in the source of result element `flat`."""
        src_shape = op.operands[0].type.shape
        index = unravel(flat, op.result.type.shape)
        if op.name == "broadcast":
            src = [("0" if s == 1 else idx) for s, idx in zip(src_shape, index)]
        else:
            order = op.attrs["order"]
            src = ["0"] * len(order)
            for res_dim, src_dim in enumerate(order):
                src[src_dim] = index[res_dim]
        return ravel(src, src_shape)

    def gather(
        self,
        result: Entity,
        sources: list[tuple[ir.Value, Callable[[str], str]]],
        combine: Callable[[list[str]], str],
    ) -> None:
        """Fills `result`: element e = combine(source_k at index_k(e) for each k).

        Pure sources are recomputed in place; others go through threadgroup memory.
        """
        staged: list[str | None] = []
        offset = 0
        needs_stage = [not self.is_pure(v) for v, _ in sources]
        if any(needs_stage):
            self.barrier()
        for (v, _), stage in zip(sources, needs_stage):
            if not stage:
                staged.append(None)
                continue
            buf = self.scratch(self.value_dtype(v), v.type.numel, offset)
            offset += array_bytes(self.value_dtype(v), v.type.numel)
            self.stage_out(v, buf)
            staged.append(buf)
        if any(needs_stage):
            self.barrier()
        layout = result.layout
        self.slot_loop(layout)
        self.emit(f"const int e = {layout.flat_index('i')};")
        parts = []
        for (v, index), buf in zip(sources, staged):
            idx = index("e")
            parts.append(f"{buf}[{idx}]" if buf is not None else self.expr_at(v, idx))
        self.emit(f"{result.name}[i] = {combine(parts)};")
        self.close()

    def value_dtype(self, v: ir.Value) -> T.DType:
        """The C-level type of `v`'s elements: pointers are their offsets (64-bit when wide)."""
        elem = v.type.elem
        if isinstance(elem, T.PointerType):
            return T.int64 if self.get(v).wide else T.int32
        return elem

    def stage_out(self, v: ir.Value, buf: str) -> None:
        """Writes a block's canonical slots to threadgroup memory at their flat indices."""
        ent = self.get(v)
        layout = ent.layout
        self.slot_loop(layout)
        self.emit(f"{buf}[{layout.flat_index('i')}] = {ent.at()};")
        self.close()

    # ------------------------------------------------------------------ region inlining

    def inline_region(self, region: ir.Block, args: list[str]) -> list[str]:
        """Emits a combine region on scalar C expressions; returns its results' names."""
        for arg, expr in zip(region.args, args):
            ent = Entity(self.fresh("c"), arg.type.elem)  # type: ignore[arg-type]
            self.emit(f"{self.ctype(ent.dtype)} {ent.name} = {expr};")
            self.env[id(arg)] = ent
        for op in region.ops[:-1]:
            self.op(op)
        return [self.get(v).name for v in region.ops[-1].operands]

    def combine(
        self, region: ir.Block, left: list[str], right: list[str], dtypes: list[T.DType]
    ) -> list[str]:
        """Emits combine(left, right), using the plain operator for builtin combiners."""
        kind = combiner_kind(region)
        if kind is not None:
            op = region.ops[0]
            if dtypes[0] != op.result.type.elem and kind in ("add", "mul"):
                # accumulating half/bfloat in float: no rounding to the narrow type per step
                sym = "+" if kind == "add" else "*"
                return [f"(static_cast<float>({left[0]}) {sym} static_cast<float>({right[0]}))"]
            return [render(self.d, op, [left[0], right[0]])]
        return self.inline_region(region, left + right)
