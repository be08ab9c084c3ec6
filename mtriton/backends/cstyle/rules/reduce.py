"""Rules for `reduce`: fold each thread's elements, then across the SIMD group (builtin
SIMD reductions or shuffles), then across warps; blocks with several groups fold
cooperatively from threadgroup memory. Row reductions of a block in the accumulator layout
(`MmaLayout`) stay in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .... import ir
from ....ir import types as T
from ..entity import Entity
from ..layout import Layout, MmaLayout, RowsLayout
from ..registry import lowers
from ..render import combiner_kind
from ..shared_memory import array_bytes
from .cooperative import (
    acc_dtypes,
    declare,
    exchange_per_warp,
    fold,
    group_element,
    group_geometry,
    publish_per_warp,
    stage_all,
)

if TYPE_CHECKING:
    from ..lowering import Lowering

# `at(g, pos)`: C expressions of element `pos` of group `g` of each staged input
_Elements = Callable[[str, str], list[str]]


def _butterfly(lo: Lowering, op: ir.Op, accs: list[str], dtypes: list[T.DType], width: int) -> None:
    """Combines `accs` across each aligned group of `width` lanes (width <= 32); all end equal."""
    region = op.regions[0]
    kind = combiner_kind(region)
    if width == 32 and kind in lo.d.simd_reduce and len(accs) == 1:
        lo.emit(f"{accs[0]} = {lo.d.simd_reduce[kind].format(v=accs[0])};")
        return
    mask = width // 2
    while mask >= 1:
        others = []
        for acc, dtype in zip(accs, dtypes):
            other = lo.fresh("o")
            value = f"static_cast<int>({acc})" if dtype.is_bool() else acc
            shuffled = lo.d.shuffle_xor.format(v=value, m=mask)
            lo.emit(
                f"{lo.ctype(dtype)} {other} = {'(' + shuffled + ' != 0)' if dtype.is_bool() else shuffled};"
            )
            others.append(other)
        if kind is not None:
            out = lo.combine(region, accs, others, dtypes)
        else:
            # keep the operands in lane order: the lower lane's value goes first
            hi = f"((lane & {mask}) != 0)"
            left = [f"({hi} ? {o} : {a})" for a, o in zip(accs, others)]
            right = [f"({hi} ? {a} : {o})" for a, o in zip(accs, others)]
            out = lo.combine(region, left, right, dtypes)
        for acc, value in zip(accs, out):
            lo.emit(f"{acc} = {value};")
        mask //= 2


@dataclass
class _Reduction:
    """One `reduce` being lowered.

    Attributes:
        op: The op.
        inputs: Its operands' entities.
        dtypes: The accumulators' types (float for sums and products of half/bfloat).
        results: Its results' entities.
        accs: The accumulators' C names, one per input.
    """

    op: ir.Op
    inputs: list[Entity]
    dtypes: list[T.DType]
    results: list[Entity]
    accs: list[str]

    @property
    def region(self) -> ir.Block:
        return self.op.regions[0]


@lowers("reduce")
def _lower_reduce(lo: Lowering, op: ir.Op) -> None:
    inputs = [lo.get(v) for v in op.operands]
    dtypes = acc_dtypes(op.regions[0], [e.dtype for e in inputs])
    results = [lo.new_entity(r) for r in op.results]
    lo.open()  # a scope for the temporaries
    red = _Reduction(op, inputs, dtypes, results, [lo.fresh("acc") for _ in inputs])
    outer, _, inner = group_geometry(op.operands[0].type.shape, op.attrs["axis"])
    layout = inputs[0].layout
    if _rows_of_accumulators(op, layout):
        _reduce_mma_rows(lo, red)
    elif outer * inner == 1 and not layout.replicated and not isinstance(layout, RowsLayout):
        _reduce_in_registers(lo, red)
    else:
        _reduce_staged(lo, red)
    lo.close()


def _rows_of_accumulators(op: ir.Op, layout: Layout | MmaLayout) -> bool:
    """Whether `op` reduces the rows of an (m, n) block in the accumulator layout with a
    builtin combiner."""
    return (
        isinstance(layout, MmaLayout)
        and tuple(op.operands[0].type.shape) == (layout.m, layout.n)
        and op.attrs["axis"] == 1
        and combiner_kind(op.regions[0]) is not None
    )


def _reduce_in_registers(lo: Lowering, red: _Reduction) -> None:
    """One group, not replicated: each thread folds the elements it holds, then the SIMD
    group, then the warps."""
    layout = red.inputs[0].layout
    declare(lo, red.accs, [e.at("0") for e in red.inputs], red.dtypes)
    if layout.slots > 1:
        lo.open(f"for (int i = 1; i < {layout.slots}; ++i)")
        fold(lo, red.region, red.accs, [e.at() for e in red.inputs], red.dtypes)
        lo.close()
    _butterfly(lo, red.op, red.accs, red.dtypes, 32)
    if lo.warps > 1:
        bufs = exchange_per_warp(lo, red.accs, red.dtypes, lane=0)
        _fold_per_warp(lo, red.region, red.accs, bufs, red.dtypes, lo.warps, "0")
    for r, acc in zip(red.results, red.accs):
        value = f"static_cast<{lo.ctype(r.dtype)}>({acc})"
        if r.layout is None:
            lo.emit(f"{r.name} = {value};")
        else:  # a block of one element (a (1, n) block reduced along axis 1): every thread has it
            lo.slot_loop(r.layout)
            lo.emit(f"{r.name}[i] = {value};")
            lo.close()


def _reduce_staged(lo: Lowering, red: _Reduction) -> None:
    """Several groups (or a replicated block): the inputs are staged, each group is folded
    cooperatively (by one thread, or a run of lanes), and the results are exchanged through
    threadgroup memory."""
    outer, length, inner = group_geometry(red.op.operands[0].type.shape, red.op.attrs["axis"])
    groups = outer * inner
    bufs, offset = stage_all(lo, red.op.operands)
    outs = []
    for e in red.inputs:
        outs.append(lo.scratch(e.dtype, groups, offset))
        offset += array_bytes(e.dtype, groups)

    def at(g: str, pos: str) -> list[str]:  # element `pos` of group `g` of each input
        return [f"{b}[{group_element(g, pos, length, inner)}]" for b in bufs]

    if groups >= lo.threads:
        _fold_groups_per_thread(lo, red, at, groups, length, outs)
    else:
        _fold_groups_by_lanes(lo, red, at, groups, length, outs, offset)
    lo.barrier()
    for r, o in zip(red.results, outs):
        if r.layout is None:
            lo.emit(f"{r.name} = {o}[0];")
        else:
            lo.slot_loop(r.layout)
            lo.emit(f"{r.name}[i] = {o}[{r.layout.flat_index('i')}];")
            lo.close()


def _fold_groups_per_thread(
    lo: Lowering, red: _Reduction, at: _Elements, groups: int, length: int, outs: list[str]
) -> None:
    """Thread t folds groups t, t + threads, ... alone, into `outs`."""
    lo.open(f"for (int g = tid; g < {groups}; g += {lo.threads})")
    declare(lo, red.accs, at("g", "0"), red.dtypes)
    lo.open(f"for (int l = 1; l < {length}; ++l)")
    fold(lo, red.region, red.accs, at("g", "l"), red.dtypes)
    lo.close()
    for o, acc, e in zip(outs, red.accs, red.inputs):
        lo.emit(f"{o}[g] = static_cast<{lo.ctype(e.dtype)}>({acc});")
    lo.close()


def _fold_groups_by_lanes(
    lo: Lowering, red: _Reduction, at: _Elements, groups: int, length: int, outs: list[str], offset: int
) -> None:
    """A run of lanes per group: each lane folds every lanes-th element of its group, then
    the run combines by shuffles (and across warps, through threadgroup memory from byte
    `offset`, when it spans several); its first lane writes the group's result to `outs`."""
    lanes = min(lo.threads // groups, length)
    lo.emit(f"const int g = min(tid / {lanes}, {groups - 1});")
    lo.emit(f"const int p = tid % {lanes};")
    declare(lo, red.accs, at("g", "p"), red.dtypes)
    if length > lanes:
        lo.open(f"for (int l = p + {lanes}; l < {length}; l += {lanes})")
        fold(lo, red.region, red.accs, at("g", "l"), red.dtypes)
        lo.close()
    _butterfly(lo, red.op, red.accs, red.dtypes, min(lanes, 32))
    if lanes > 32:
        _cross_warp(lo, red.region, red.accs, red.dtypes, lanes // 32, f"(g * {lanes // 32})", offset)
    lo.emit(f"if (p == 0 && tid < {groups * lanes}) {{")
    for o, acc, e in zip(outs, red.accs, red.inputs):
        lo.emit(f"  {o}[g] = static_cast<{lo.ctype(e.dtype)}>({acc});")
    lo.emit("}")


def _reduce_mma_rows(lo: Lowering, red: _Reduction) -> None:
    """Reduces the rows of an (m, n) block in the accumulator layout (attention's row max and
    sum of scores): each thread folds its elements of each of its rows, the four lanes that
    share a row combine by shuffles, and the warps that share rows through threadgroup memory,
    which also hands each row to its owner in the result's layout; a result in the rows'
    layout (`RowsLayout`, warps stacked along the rows) is the lanes' values, no exchange.
    The combiner is a builtin one, so the order of the columns does not matter."""
    inputs, dtypes, results = red.inputs, red.dtypes, red.results
    layout = inputs[0].layout
    rows, cols = 2 * layout.tiles_m, 2 * layout.tiles_n  # a thread's rows, and its elements in each

    def slot(c: str) -> str:  # the slot of a thread's element c of its row r
        return f"(4 * ((r / 2) * {layout.tiles_n} + {c} / 2) + 2 * (r % 2) + {c} % 2)"

    for acc, dt in zip(red.accs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {acc}[{rows}];")
    row_accs = [f"{acc}[r]" for acc in red.accs]
    lo.open(f"for (int r = 0; r < {rows}; ++r)")
    for acc, e in zip(row_accs, inputs):
        lo.emit(f"{acc} = {e.at(slot('0'))};")
    lo.open(f"for (int c = 1; c < {cols}; ++c)")
    fold(lo, red.region, row_accs, [e.at(slot("c")) for e in inputs], dtypes)
    lo.close()
    _butterfly(lo, red.op, row_accs, dtypes, 4)
    in_rows = isinstance(results[0].layout, RowsLayout) and results[0].layout.mma.row("r") == layout.row("r")
    if in_rows:
        for res, acc in zip(results, row_accs):
            lo.emit(f"{res.name}[r] = static_cast<{lo.ctype(res.dtype)}>({acc});")
    lo.close()
    if in_rows:
        return
    m, warps_n = layout.m, layout.warps_n
    bufs, offset = [], 0
    for dt in dtypes:
        bufs.append(lo.scratch(dt, warps_n * m, offset))
        offset += array_bytes(dt, warps_n * m)
    lo.barrier()
    lo.open("if (lane % 4 == 0)")
    lo.open(f"for (int r = 0; r < {rows}; ++r)")
    row = f"{layout.tile_row('warp', 'r / 2')} + 8 * (r % 2) + lane / 4"
    for buf, acc in zip(bufs, row_accs):
        lo.emit(f"{buf}[(warp % {warps_n}) * {m} + {row}] = {acc};")
    lo.close()
    lo.close()
    lo.barrier()
    lo.slot_loop(results[0].layout)
    lo.emit(f"const int row = {results[0].layout.flat_index('i')};")
    values = [f"{buf}[row]" for buf in bufs]
    for w in range(1, warps_n):
        values = lo.combine(red.region, values, [f"{buf}[{w * m} + row]" for buf in bufs], dtypes)
    for res, value in zip(results, values):
        lo.emit(f"{res.name}[i] = static_cast<{lo.ctype(res.dtype)}>({value});")
    lo.close()


def _cross_warp(
    lo: Lowering,
    region: ir.Block,
    accs: list[str],
    dtypes: list[T.DType],
    warps: int,
    first: str,
    offset: int = 0,
) -> None:
    """Combines the per-warp values of `warps` consecutive warps starting at warp `first`."""
    bufs = publish_per_warp(lo, accs, dtypes, offset, lane=0)
    _fold_per_warp(lo, region, accs, bufs, dtypes, warps, first)


def _fold_per_warp(
    lo: Lowering,
    region: ir.Block,
    accs: list[str],
    bufs: list[str],
    dtypes: list[T.DType],
    warps: int,
    first: str,
) -> None:
    """accs = the combination of the published values of warps `first` .. `first + warps - 1`."""
    for buf, acc in zip(bufs, accs):
        lo.emit(f"{acc} = {buf}[{first}];")
    lo.open(f"for (int w = 1; w < {warps}; ++w)")
    fold(lo, region, accs, [f"{b}[{first} + w]" for b in bufs], dtypes)
    lo.close()
    # no barrier after the reads: the next writer of threadgroup memory starts with one, or
    # (`exchange_per_warp`) writes the other buffer
