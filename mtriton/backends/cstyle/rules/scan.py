"""Rules for `scan`: a scan of a whole block in flat order runs in registers chunk by chunk
with a carry; others stage through threadgroup memory, each group scanned by a run of lanes
whose totals combine by SIMD shuffles (or the hardware prefix sum) and across warps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .... import ir
from ....ir import types as T
from ..entity import Entity
from ..layout import Layout
from ..registry import lowers
from ..render import combiner_kind
from ..shared_memory import array_bytes
from .cooperative import (
    acc_dtypes,
    declare,
    fold,
    group_element,
    group_geometry,
    per_warp_buffers,
    publish_per_warp,
    stage_all,
)

if TYPE_CHECKING:
    from ..lowering import Lowering


@lowers("scan")
def _lower_scan(lo: Lowering, op: ir.Op) -> None:
    inputs = [lo.get(v) for v in op.operands]
    dtypes = acc_dtypes(op.regions[0], [e.dtype for e in inputs])
    outer, _, inner = group_geometry(op.operands[0].type.shape, op.attrs["axis"])
    results = [lo.new_entity(r) for r in op.results]
    layout = inputs[0].layout
    whole_block = outer * inner == 1 and not op.attrs.get("reverse", False)
    if whole_block and isinstance(layout, Layout) and not layout.replicated:
        _scan_in_registers(lo, op, inputs, results, dtypes)
    else:
        _scan_staged(lo, op, inputs, results, dtypes)


def _scan_staged(
    lo: Lowering, op: ir.Op, inputs: list[Entity], results: list[Entity], dtypes: list[T.DType]
) -> None:
    """A scan through threadgroup memory: the inputs are staged and scanned in place, each
    group by one thread, or in chunks by a run of lanes whose chunk totals are combined by
    an exclusive scan across the lanes and added to each chunk."""
    region = op.regions[0]
    outer, length, inner = group_geometry(op.operands[0].type.shape, op.attrs["axis"])
    groups = outer * inner
    reverse = op.attrs.get("reverse", False)
    threads = lo.threads
    lo.open()
    bufs, offset = stage_all(lo, op.operands)

    def at(g: str, q: str) -> list[str]:
        pos = f"({length - 1} - ({q}))" if reverse else q
        return [f"{b}[{group_element(g, pos, length, inner)}]" for b in bufs]

    def scan_run(g: str, start: str, count: str, totals: list[str]) -> None:
        """Inclusive scan of positions [start, start + count) of group g, in place."""
        declare(lo, totals, at(g, start), dtypes)
        lo.open(f"for (int q = {start} + 1; q < {start} + {count}; ++q)")
        out = lo.combine(region, totals, at(g, "q"), dtypes)
        for t, v, cell, e in zip(totals, out, at(g, "q"), inputs):
            lo.emit(f"{t} = {v};")
            lo.emit(f"if (active) {cell} = static_cast<{lo.ctype(e.dtype)}>({t});")
        lo.close()

    if groups >= threads:
        lo.emit("const bool active = true;")
        lo.open(f"for (int g = tid; g < {groups}; g += {threads})")
        scan_run("g", "0", str(length), [lo.fresh("s") for _ in inputs])
        lo.close()
    else:
        lanes = min(threads // groups, length)
        chunk = length // lanes
        lo.emit(f"const int g = min(tid / {lanes}, {groups - 1});")
        lo.emit(f"const int p = tid % {lanes};")
        lo.emit(f"const bool active = tid < {groups * lanes};")
        totals = [lo.fresh("s") for _ in inputs]
        scan_run("g", f"p * {chunk}", str(chunk), totals)
        prefix = _exclusive_lane_scan(lo, op, totals, dtypes, lanes, offset)
        lo.open("if (p > 0 && active)")
        lo.open(f"for (int q = p * {chunk}; q < p * {chunk} + {chunk}; ++q)")
        out = lo.combine(region, prefix, at("g", "q"), dtypes)
        for cell, v, e in zip(at("g", "q"), out, inputs):
            lo.emit(f"{cell} = static_cast<{lo.ctype(e.dtype)}>({v});")
        lo.close()
        lo.close()
    lo.barrier()
    for r, buf in zip(results, bufs):
        lo.slot_loop(r.layout)
        lo.emit(f"{r.name}[i] = {buf}[{r.layout.flat_index('i')}];")
        lo.close()
    lo.close()


def _scan_in_registers(
    lo: Lowering, op: ir.Op, inputs: list[Entity], results: list[Entity], dtypes: list[T.DType]
) -> None:
    """A scan over a whole block in flat order, in registers: thread t's chunk k covers flat
    indices (k * threads + t) * vec ..., so chunk k of every thread, taken in thread order, is
    one contiguous stretch. Per chunk: scan its elements, combine the chunk totals across
    threads (SIMD shuffles, then across warps), prefix the carry of the stretches before."""
    region = op.regions[0]
    layout = inputs[0].layout
    vec = layout.vec
    lo.open()
    lo.emit("const int p = tid;")
    regs = [lo.fresh("r") for _ in inputs]
    for r, e, dt in zip(regs, inputs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {r}[{layout.slots}];")
        lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {r}[i] = {e.at()};")
    carry = [lo.fresh("carry") for _ in inputs]
    for c, dt in zip(carry, dtypes):
        lo.emit(f"{lo.ctype(dt)} {c};")
    for k in range(layout.reps):
        first, last = k * vec, k * vec + vec - 1
        for j in range(first + 1, last + 1):
            out = lo.combine(region, [f"{r}[{j - 1}]" for r in regs], [f"{r}[{j}]" for r in regs], dtypes)
            for r, v in zip(regs, out):
                lo.emit(f"{r}[{j}] = {v};")
        excl = _exclusive_lane_scan(lo, op, [f"{r}[{last}]" for r in regs], dtypes, lo.threads, 0)
        if k:  # the stretches before this one come first
            with_carry = lo.combine(region, carry, excl, dtypes)
            prefix = [f"(tid > 0 ? {w} : {c})" for w, c in zip(with_carry, carry)]
        else:
            prefix = excl
        names = [lo.fresh("pre") for _ in regs]
        for name, value, dt in zip(names, prefix, dtypes):
            lo.emit(f"const {lo.ctype(dt)} {name} = {value};")
        lo.open(
            f"for (int j = {first}; j <= {last}; ++j)"
            if k
            else f"if (tid > 0) for (int j = {first}; j <= {last}; ++j)"
        )
        out = lo.combine(region, names, [f"{r}[j]" for r in regs], dtypes)
        for r, v in zip(regs, out):
            lo.emit(f"{r}[j] = {v};")
        lo.close()
        if k + 1 < layout.reps:
            _grow_carry(lo, region, carry, [f"{r}[{last}]" for r in regs], dtypes, first=not k)
    for res, r in zip(results, regs):
        lo.emit(
            f"for (int i = 0; i < {layout.slots}; ++i) {res.name}[i] = static_cast<{lo.ctype(res.dtype)}>({r}[i]);"
        )
    lo.close()


def _grow_carry(
    lo: Lowering, region: ir.Block, carry: list[str], last: list[str], dtypes: list[T.DType], first: bool
) -> None:
    """Adds the stretch just scanned to the carry (sets it, after the `first` stretch).

    With several warps, the stretch's total is the combination of the per-warp totals the
    lane scan published (no barrier: the next writer of threadgroup memory starts with one).
    With one warp, it is the last thread's inclusive value `last`, passed through memory.
    """
    if lo.warps > 1:
        warp_totals = per_warp_buffers(lo, dtypes, 0)
        totals = [lo.fresh("tot") for _ in carry]
        declare(lo, totals, [f"{buf}[0]" for buf in warp_totals], dtypes)
        lo.open(f"for (int w = 1; w < {lo.warps}; ++w)")
        fold(lo, region, totals, [f"{b}[w]" for b in warp_totals], dtypes)
        lo.close()
        new_carry = totals if first else lo.combine(region, carry, totals, dtypes)
        for c, v in zip(carry, new_carry):
            lo.emit(f"{c} = {v};")
        return
    carry_offset = sum(array_bytes(dt, lo.warps) for dt in dtypes)  # after the per-warp totals
    bufs = [lo.scratch(dt, 1, carry_offset + 16 * n) for n, dt in enumerate(dtypes)]
    lo.barrier()
    for buf, value in zip(bufs, last):
        lo.emit(f"if (tid == {lo.threads - 1}) {buf}[0] = {value};")
    lo.barrier()
    for c, buf in zip(carry, bufs):
        lo.emit(f"{c} = {buf}[0];")


def _exclusive_lane_scan(
    lo: Lowering, op: ir.Op, totals: list[str], dtypes: list[T.DType], lanes: int, offset: int
) -> list[str]:
    """The combination of the totals of lanes 0..p-1 of each lane group (garbage for p == 0)."""
    region = op.regions[0]
    width = min(lanes, 32)
    incl = [lo.fresh("in") for _ in totals]
    prefix_sum = lo.d.simd_prefix_exclusive_sum
    if (
        width == 32
        and prefix_sum
        and combiner_kind(region) == "add"
        and len(totals) == 1
        and not dtypes[0].is_bool()
    ):
        # A whole SIMD group per lane group: the hardware prefix sum does it in one step.
        excl = lo.fresh("ex")
        lo.emit(f"{lo.ctype(dtypes[0])} {excl} = {prefix_sum.format(v=totals[0])};")
        lo.emit(f"{lo.ctype(dtypes[0])} {incl[0]} = {excl} + {totals[0]};")
        if lanes == 32:
            return [excl]
        return _cross_warp_prefix(lo, region, [excl], incl, dtypes, offset)
    declare(lo, incl, totals, dtypes)
    d = 1
    while d < width:
        ups = []
        for name, dt in zip(incl, dtypes):
            up = lo.fresh("u")
            value = f"static_cast<int>({name})" if dt.is_bool() else name
            shuffled = lo.d.shuffle_up.format(v=value, d=d)
            lo.emit(f"{lo.ctype(dt)} {up} = {'(' + shuffled + ' != 0)' if dt.is_bool() else shuffled};")
            ups.append(up)
        out = lo.combine(region, ups, incl, dtypes)
        lo.open(f"if ((p % {width}) >= {d})")
        for name, v in zip(incl, out):
            lo.emit(f"{name} = {v};")
        lo.close()
        d *= 2
    excl = [lo.fresh("ex") for _ in totals]
    for name, i, dt in zip(excl, incl, dtypes):
        value = f"static_cast<int>({i})" if dt.is_bool() else i
        shuffled = lo.d.shuffle_up.format(v=value, d=1)
        lo.emit(f"{lo.ctype(dt)} {name} = {'(' + shuffled + ' != 0)' if dt.is_bool() else shuffled};")
    if lanes <= 32:
        return excl
    return _cross_warp_prefix(lo, region, excl, incl, dtypes, offset)


def _cross_warp_prefix(
    lo: Lowering, region: ir.Block, excl: list[str], incl: list[str], dtypes: list[T.DType], offset: int
) -> list[str]:
    """Extends per-warp exclusive prefixes to lane groups spanning several warps."""
    bufs = publish_per_warp(lo, incl, dtypes, offset, lane=31)  # each warp's inclusive total
    first = "(warp - p / 32)"
    pre = [lo.fresh("pw") for _ in excl]
    declare(lo, pre, [f"{buf}[{first}]" for buf in bufs], dtypes)
    lo.open(f"for (int w = {first} + 1; w < warp; ++w)")
    fold(lo, region, pre, [f"{b}[w]" for b in bufs], dtypes)
    lo.close()
    combined = lo.combine(region, pre, excl, dtypes)
    final = []
    for e, pw, c, dt in zip(excl, pre, combined, dtypes):
        name = lo.fresh("ex")
        lo.emit(f"{lo.ctype(dt)} {name} = (p / 32 == 0) ? {e} : ((p % 32 == 0) ? {pw} : {c});")
        final.append(name)
    return final
