"""The block-level IR: values, ops, blocks, functions and a builder.

An op works on whole blocks (tiles) of elements, as Triton's `tt` dialect does.
Control flow is structured (`for`, `while`, `if` own regions) and every op
carries the kernel source location it came from.

The op vocabulary, one line each (operands in parentheses, attributes in
brackets; `x?` is optional, `x...` variadic):

  constant [value]                   splat of a Python literal to the result type
  program_id [axis]                  i32 scalar; num_programs [axis] likewise
  arange [start, end]                <end-start x i32>
  splat (x)                          scalar -> block of the result shape
  broadcast (x)                      size-1 dims -> the result shape (same rank)
  expand_dims (x) [axis]             insert a size-1 dim
  reshape (x)                        row-major reshape to the result shape
  permute (x) [order]                transpose; result dim i = input dim order[i]
  join (a, b)                        stack along a new last dim of size 2
  split (x)                          two results: x[..., 0] and x[..., 1]
  cast (x)                           value conversion to the result element type
  bitcast (x)                        reinterpret the bits (same width); on pointers: the
                                     same address read as the new pointee type
  BINARY (a, b)                      add sub mul div floordiv mod and or xor shl
                                     shr maximum minimum pow atan2; same shapes
  cmp (a, b) [pred]                  eq ne lt le gt ge -> i1
  UNARY (x)                          neg not exp exp2 log log2 log10 log1p expm1 sqrt
                                     rsqrt cbrt sin cos tan asin acos atan sinh cosh
                                     tanh asinh acosh atanh abs erf floor ceil trunc
                                     rint (half to even) round (half away from zero)
  fma (a, b, c)                      a * b + c
  where (c, a, b)                    elementwise select
  addptr (ptr, offset)               pointer + offset (in elements)
  load (ptr, mask?, other?)          masked-off lanes read `other` (0 if absent)
  store (ptr, value, mask?)
  atomic_rmw (ptr, value, mask?) [kind, sem, scope]   kind: add max min xchg and
                                     or xor; returns the old values
  atomic_cas (ptr, cmp, value) [sem, scope]
  reduce (x...) [axis] {combine}     the region takes 2n scalars, yields n
  scan (x...) [axis, reverse] {combine}
  dot (a, b, acc) [input_precision]  acc + a @ b over the last two dims
  for (lb, ub, step, init...) {body} body args: iv, iter...; yields iter...
  while (init...) {before} {after}   before yields `condition (c, vals...)`
  if (c) {then} {else}               both regions yield the results
  yield (vals...), condition (c, vals...)
  assume (x) [multiple_of, max_contiguous]   hint; returns x
  debug_barrier, device_print (vals...) [prefix, hex], device_assert (c) [msg]

Types follow one rule: the operands of an elementwise op have been broadcast to
the same shape and converted to one element type by the language's semantic
layer before the op is built (see `mtriton/language/semantic.py`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .types import BlockType

BINARY_OPS = frozenset("add sub mul div floordiv mod and or xor shl shr maximum minimum pow atan2".split())
UNARY_OPS = frozenset(
    "neg not exp exp2 log log2 log10 log1p expm1 sqrt rsqrt cbrt sin cos tan asin acos atan sinh cosh "
    "tanh asinh acosh atanh abs erf floor ceil trunc rint round".split()
)
CMP_PREDICATES = ("eq", "ne", "lt", "le", "gt", "ge")
ATOMIC_KINDS = ("add", "max", "min", "xchg", "and", "or", "xor")
SHAPE_OPS = frozenset("splat broadcast expand_dims reshape permute join split".split())
CONTROL_OPS = frozenset(("for", "while", "if"))
TERMINATORS = frozenset(("yield", "condition"))
OTHER_OPS = frozenset(
    """constant program_id num_programs arange cast bitcast cmp fma where addptr load store
    atomic_rmw atomic_cas reduce scan dot assume debug_barrier device_print
    device_assert""".split()
)
ALL_OPS = BINARY_OPS | UNARY_OPS | SHAPE_OPS | CONTROL_OPS | TERMINATORS | OTHER_OPS
# Ops whose execution writes memory or has another effect; never removed as dead.
SIDE_EFFECT_OPS = frozenset("store atomic_rmw atomic_cas debug_barrier device_print device_assert".split())


@dataclass(frozen=True)
class Loc:
    """A source position: absolute 1-based line and 0-based column in `file`."""

    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_LOC = Loc("<unknown>", 0, 0)


@dataclass(eq=False)
class Value:
    """An SSA value: the result of an op or an argument of a block."""

    type: BlockType
    name_hint: str = ""

    def __repr__(self) -> str:
        return f"Value({self.type}{' ' + self.name_hint if self.name_hint else ''})"


@dataclass(eq=False)
class Block:
    """A list of ops with block arguments; the body of a region."""

    args: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    @property
    def terminator(self) -> Op | None:
        return self.ops[-1] if self.ops and self.ops[-1].name in TERMINATORS else None


@dataclass(eq=False)
class Op:
    """One IR operation."""

    name: str
    operands: list[Value]
    results: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    regions: list[Block] = field(default_factory=list)
    loc: Loc = UNKNOWN_LOC

    @property
    def result(self) -> Value:
        (only,) = self.results
        return only

    def __repr__(self) -> str:
        return f"Op({self.name} @ {self.loc})"


@dataclass(frozen=True)
class Param:
    """A kernel parameter: a pointer or a runtime scalar.

    Attributes:
        name: The Python parameter name.
        value: The block argument that stands for it in the body.
        divisibility: Known divisor of the value (16 when specialized), else 1.
    """

    name: str
    value: Value
    divisibility: int = 1


@dataclass(eq=False)
class Function:
    """A specialized kernel: runtime parameters, constexprs baked in."""

    name: str
    params: list[Param]
    body: Block
    loc: Loc = UNKNOWN_LOC
    attrs: dict[str, Any] = field(default_factory=dict)


def walk(block: Block) -> Iterator[Op]:
    """Yields every op in `block` and its nested regions, in program order."""
    for op in block.ops:
        yield op
        for region in op.regions:
            yield from walk(region)


class Builder:
    """Appends ops to an insertion block; the frontend's only way to make IR."""

    def __init__(self) -> None:
        self.block: Block = Block()
        self.loc: Loc = UNKNOWN_LOC
        self._counter = itertools.count()

    def create(
        self,
        name: str,
        operands: list[Value],
        result_types: list[BlockType],
        attrs: dict[str, Any] | None = None,
        regions: list[Block] | None = None,
    ) -> Op:
        assert name in ALL_OPS, f"unknown IR op {name!r}"
        op = Op(
            name,
            list(operands),
            [Value(t) for t in result_types],
            dict(attrs or {}),
            list(regions or []),
            self.loc,
        )
        self.block.ops.append(op)
        return op

    def build(self, name: str, operands: list[Value], result_type: BlockType, **attrs: Any) -> Value:
        """Creates a single-result op and returns its result."""
        return self.create(name, operands, [result_type], attrs).result

    def new_block(self, arg_types: list[BlockType]) -> Block:
        return Block([Value(t) for t in arg_types])

    def insert_into(self, block: Block) -> _InsertionGuard:
        """`with builder.insert_into(block):` builds into `block`, then restores."""
        return _InsertionGuard(self, block)


class _InsertionGuard:
    def __init__(self, builder: Builder, block: Block) -> None:
        self.builder = builder
        self.block = block

    def __enter__(self) -> Block:
        self.saved = self.builder.block
        self.builder.block = self.block
        return self.block

    def __exit__(self, *exc: object) -> None:
        self.builder.block = self.saved
