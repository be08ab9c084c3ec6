"""Rules for `scan`: a scan of a whole block in flat order runs in registers in one pass (each
thread's chunks, then SIMD shuffles, then one exchange across warps); others stage through
threadgroup memory, each group scanned by a run of lanes whose totals combine by SIMD shuffles
(or the hardware prefix sum) and across warps.
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
    begin_exchange,
    declare,
    end_exchange,
    fold,
    group_element,
    group_geometry,
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
    """A scan over a whole block in flat order, in registers, in one pass over the data (as
    Triton lowers it). Thread t's chunk k covers flat indices (k * threads + t) * vec ..., so
    chunk k of every thread, taken in thread order, is one contiguous stretch.

    Each thread scans its chunks' elements; each warp scans its lanes' chunk totals with
    shuffles, chunk by chunk; lane 31 of every warp publishes its warp's total of every chunk
    in one exchange through threadgroup memory (`begin_exchange`: one or two barriers, where a
    carry per stretch took two per chunk, 8 for a 4096-element row on 8 warps); each thread
    then folds what precedes its chunk (earlier stretches, earlier warps, earlier lanes)
    into it.
    """
    region = op.regions[0]
    layout = inputs[0].layout
    vec, reps, warps = layout.vec, layout.reps, lo.warps
    lo.open()
    lo.emit("const int p = tid;")
    regs = [lo.fresh("r") for _ in inputs]
    for r, e, dt in zip(regs, inputs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {r}[{layout.slots}];")
        lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {r}[i] = {e.at()};")
    lanes = []  # per chunk: (exclusive, inclusive) scans of the chunk totals across the warp
    for k in range(reps):
        first, last = k * vec, k * vec + vec - 1
        for j in range(first + 1, last + 1):
            out = lo.combine(region, [f"{r}[{j - 1}]" for r in regs], [f"{r}[{j}]" for r in regs], dtypes)
            for r, v in zip(regs, out):
                lo.emit(f"{r}[{j}] = {v};")
        lanes.append(_lane_scan(lo, op, [f"{r}[{last}]" for r in regs], dtypes, 32))
    bufs = []  # warp w's total of chunk k at [k * warps + w]: the block's flat order
    size = sum(array_bytes(dt, reps * warps) for dt in dtypes)
    start = offset = begin_exchange(lo, size)
    for dt in dtypes:
        bufs.append(lo.scratch(dt, reps * warps, offset))
        offset += array_bytes(dt, reps * warps)
    lo.open("if (lane == 31)")
    for k, (_, incl) in enumerate(lanes):
        for buf, value in zip(bufs, incl):
            lo.emit(f"{buf}[{k * warps} + warp] = {value};")
    lo.close()
    end_exchange(lo, start, size)
    carry = [lo.fresh("carry") for _ in inputs]  # the stretches before chunk k
    declare(lo, carry, [f"{b}[0]" for b in bufs], dtypes)
    for k, (excl, _) in enumerate(lanes):
        pre = [lo.fresh("pre") for _ in inputs]
        declare(lo, pre, carry, dtypes)
        have = lo.fresh("have")
        lo.emit(f"bool {have} = {'true' if k else 'false'};")
        lo.open("for (int w = 0; w < warp; ++w)")
        _fold_into(lo, region, pre, have, [f"{b}[{k * warps} + w]" for b in bufs], dtypes)
        lo.close()
        lo.open("if (lane > 0)")
        _fold_into(lo, region, pre, have, excl, dtypes)
        lo.close()
        lo.open(f"if ({have}) for (int j = {k * vec}; j < {k * vec + vec}; ++j)")
        out = lo.combine(region, pre, [f"{r}[j]" for r in regs], dtypes)
        for r, v in zip(regs, out):
            lo.emit(f"{r}[j] = {v};")
        lo.close()
        if k + 1 < reps:
            lo.open(f"for (int w = {0 if k else 1}; w < {warps}; ++w)")
            fold(lo, region, carry, [f"{b}[{k * warps} + w]" for b in bufs], dtypes)
            lo.close()
    for res, r in zip(results, regs):
        lo.emit(
            f"for (int i = 0; i < {layout.slots}; ++i) {res.name}[i] = static_cast<{lo.ctype(res.dtype)}>({r}[i]);"
        )
    lo.close()


def _fold_into(
    lo: Lowering, region: ir.Block, accs: list[str], have: str, values: list[str], dtypes: list[T.DType]
) -> None:
    """accs = combine(accs, values), or values where `have` says accs hold nothing yet."""
    lo.open(f"if ({have})")
    fold(lo, region, accs, values, dtypes)
    lo.close(" else {")
    lo.depth += 1
    for acc, value in zip(accs, values):
        lo.emit(f"{acc} = {value};")
    lo.close()
    lo.emit(f"{have} = true;")


def _lane_scan(
    lo: Lowering, op: ir.Op, totals: list[str], dtypes: list[T.DType], width: int
) -> tuple[list[str], list[str]]:
    """Scans `totals` across each run of `width` lanes (at most a SIMD group): the exclusive
    combination (garbage in a run's first lane) and the inclusive one."""
    region = op.regions[0]
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
        return [excl], incl
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
    return excl, incl


def _exclusive_lane_scan(
    lo: Lowering, op: ir.Op, totals: list[str], dtypes: list[T.DType], lanes: int, offset: int
) -> list[str]:
    """The combination of the totals of lanes 0..p-1 of each lane group (garbage for p == 0)."""
    excl, incl = _lane_scan(lo, op, totals, dtypes, min(lanes, 32))
    if lanes <= 32:
        return excl
    return _cross_warp_prefix(lo, op.regions[0], excl, incl, dtypes, offset)


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
