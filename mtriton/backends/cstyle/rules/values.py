"""Rules for values: constants, elementwise ops, program ids, `arange`, aliases (`assume`,
`expand_dims`, `reshape`), `splat`, and the ops that move elements between threads
(`broadcast`, `permute`, `join`, `split`).

A move recomputes a pure source at the element it needs or exchanges the source through
threadgroup memory (`Lowering.gather`); a row vector broadcast over the accumulators it came
from reads the thread's own registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .... import ir
from ....errors import UnsupportedError
from ..entity import Entity
from ..layout import Layout, MmaLayout, RowsLayout
from ..registry import lowers
from ..render import literal, render

if TYPE_CHECKING:
    from ..lowering import Lowering


@lowers("constant")
def _lower_constant(lo: Lowering, op: ir.Op) -> None:
    text = literal(lo.d, op.attrs["value"], op.result.type.elem)
    if op.result.type.shape:
        lo.env[id(op.result)] = Entity(text, op.result.type.elem, lo.layout_of(op.result), uniform=True)
        return
    ent = lo.new_entity(op.result)
    lo.emit(f"{ent.name} = {text};")


@lowers("program_id", "num_programs")
def _lower_program_id(lo: Lowering, op: ir.Op) -> None:
    table = lo.d.program_id if op.name == "program_id" else lo.d.num_programs
    ent = lo.new_entity(op.result)
    lo.emit(f"{ent.name} = (int)({table[op.attrs['axis']]});")


@lowers("arange")
def _lower_arange(lo: Lowering, op: ir.Op) -> None:
    ent = lo.new_entity(op.result)
    lo.slot_loop(ent.layout)
    lo.emit(f"{ent.name}[i] = {op.attrs['start']} + (int)({ent.layout.flat_index('i')});")
    lo.close()


def _elementwise(lo: Lowering, op: ir.Op, base: str | None = None, wide: bool = False) -> None:
    ents = [lo.get(o) for o in op.operands]
    layout = lo.layout_of(op.result)
    if layout is not None and all(e.uniform for e in ents):
        # uniform operands give a uniform result: compute it once, as a scalar
        scalar = ir.Value(ir.BlockType(op.result.type.elem))
        ent = lo.new_entity(scalar, base=base, wide=wide)
        lo.emit(f"{ent.name} = {render(lo.d, op, [e.name for e in ents])};")
        lo.env[id(op.result)] = Entity(ent.name, ent.dtype, layout, base, wide, uniform=True)
        return
    ent = lo.new_entity(op.result, base=base, wide=wide)
    if ent.layout is None:
        lo.emit(f"{ent.name} = {render(lo.d, op, [e.at() for e in ents])};")
        return
    lo.slot_loop(ent.layout)
    lo.emit(f"{ent.name}[i] = {render(lo.d, op, [e.at() for e in ents])};")
    lo.close()


@lowers(*(ir.BINARY_OPS | ir.UNARY_OPS), "cmp", "where", "fma", "cast", "bitcast")
def _lower_elementwise(lo: Lowering, op: ir.Op) -> None:
    if op.name == "where" and op.result.type.elem.is_ptr():
        a, b = lo.get(op.operands[1]), lo.get(op.operands[2])
        if a.base != b.base:
            raise lo.error(UnsupportedError, "tl.where between pointers into different arguments")
        _elementwise(lo, op, base=a.base, wide=a.wide or b.wide)
        return
    if op.name == "bitcast" and op.result.type.elem.is_ptr():
        # a pointer cast: the same address in a view of the argument as the new pointee type,
        # the offsets rescaled to count its elements (`render.pointer_offsets`)
        src = lo.get(op.operands[0])
        dtype = op.result.type.elem.element
        view = lo.view(src.base, dtype)
        if src.dtype.itemsize == dtype.itemsize or (src.layout is None and src.name == "0"):
            # the same offsets (a kernel argument's own offset is 0 in any unit)
            lo.env[id(op.result)] = Entity(src.name, dtype, src.layout, view, src.wide, src.uniform)
            return
        _elementwise(lo, op, base=view, wide=src.wide)
        return
    _elementwise(lo, op)


@lowers("addptr")
def _lower_addptr(lo: Lowering, op: ir.Op) -> None:
    ptr = lo.get(op.operands[0])
    _elementwise(lo, op, base=ptr.base, wide=ptr.wide or op.operands[1].type.elem.bits == 64)
    lo.get(op.result).dtype = ptr.dtype


@lowers("assume", "expand_dims", "reshape")
def _lower_alias(lo: Lowering, op: ir.Op) -> None:
    # The flat order is unchanged, so the canonical layout is too: the same registers.
    src = lo.get(op.operands[0])
    lo.env[id(op.result)] = Entity(
        src.name, src.dtype, lo.layout_of(op.result), src.base, src.wide, src.uniform
    )


@lowers("splat")
def _lower_splat(lo: Lowering, op: ir.Op) -> None:
    # No registers: every element is the scalar, read where it is used.
    src = lo.get(op.operands[0])
    lo.env[id(op.result)] = Entity(
        src.name, src.dtype, lo.layout_of(op.result), src.base, src.wide, uniform=True
    )


@lowers("broadcast", "permute")
def _lower_move(lo: Lowering, op: ir.Op) -> None:
    src = lo.get(op.operands[0])
    if id(op.result) in lo.dots.transposes:  # a dot operand its dot stages itself, transposed
        lo.env[id(op.result)] = Entity("", src.dtype, lo.layout_of(op.result), deferred=src.deferred)
        return
    ent = lo.new_entity(op.result, base=src.base, dtype=src.dtype, wide=src.wide)
    if _rows_over_columns(op, src.layout, ent.layout):
        # each accumulator slot's row is one of the thread's rows: registers only
        lo.emit(
            f"for (int i = 0; i < {ent.layout.slots}; ++i) {ent.name}[i] = {src.at(ent.layout.row_slot('i'))};"
        )
        return
    lo.gather(ent, [(op.operands[0], lambda e: lo.source_index(op, e))], lambda parts: parts[0])


def _rows_over_columns(
    op: ir.Op, src: Layout | MmaLayout | RowsLayout | None, dst: Layout | MmaLayout | RowsLayout | None
) -> bool:
    """Whether `op` broadcasts an (m, 1) row vector in the rows' layout over the columns of an
    accumulator layout with the same rows (`m_i[:, None]` against attention's scores)."""
    if op.name != "broadcast" or not isinstance(src, RowsLayout) or not isinstance(dst, MmaLayout):
        return False
    shape = op.operands[0].type.shape
    return tuple(shape) == (src.mma.m, 1) and dst.m == src.mma.m and dst.row("r") == src.mma.row("r")


@lowers("join")
def _lower_join(lo: Lowering, op: ir.Op) -> None:
    a = lo.get(op.operands[0])
    ent = lo.new_entity(op.result, base=a.base, dtype=a.dtype, wide=a.wide)
    sources = [(op.operands[0], lambda e: f"(({e}) / 2)"), (op.operands[1], lambda e: f"(({e}) / 2)")]
    lo.gather(ent, sources, lambda parts: f"((e % 2) == 0 ? {parts[0]} : {parts[1]})")


@lowers("split")
def _lower_split(lo: Lowering, op: ir.Op) -> None:
    src = lo.get(op.operands[0])
    if not op.results[0].type.shape:  # (2,) to two scalars, which every thread holds
        _split_to_scalars(lo, op, src)
        return
    for half, result in enumerate(op.results):
        ent = lo.new_entity(result, base=src.base, dtype=src.dtype, wide=src.wide)
        lo.gather(ent, [(op.operands[0], lambda e, h=half: f"(({e}) * 2 + {h})")], lambda parts: parts[0])


def _split_to_scalars(lo: Lowering, op: ir.Op, src: Entity) -> None:
    source = op.operands[0]
    results = [lo.new_entity(r, base=src.base, dtype=src.dtype, wide=src.wide) for r in op.results]
    if lo.is_pure(source):
        for half, ent in enumerate(results):
            lo.emit(f"{ent.name} = {lo.expr_at(source, str(half))};")
        return
    lo.barrier()
    buf = lo.scratch(lo.value_dtype(source), 2)
    lo.stage_out(source, buf)
    lo.barrier()
    for half, ent in enumerate(results):
        lo.emit(f"{ent.name} = {buf}[{half}];")
