"""Tensor-core planning: which `dot`s run on register fragments and how their operands travel.

`plan_dots` runs once per kernel, before any code is written. Its steps, each reading the
ones before it:

1. Fragment layouts. Values with the element count of a dot the matrix unit can run on
   register fragments take that dot's accumulator layout (`layout.MmaLayout`), so the dot
   accumulates straight into its result's registers. Where the dialect has a warpgroup unit
   (wgmma) and the dot fits it, the layout is its interleaved variant and the dot runs on it.
   In a kernel that reduces the rows of such a result (attention's row max and sum), every
   dot of that row count stacks its warps along the rows, and values with that many elements
   take the rows of the accumulator layout (`layout.RowsLayout`): the reduction and the
   broadcast back (`m_i[:, None]`) stay in registers.
2. Transposes. A 2-D `permute` used only as a dot operand (`tl.trans(x)`) runs no code: the
   dot stages `x` transposed on the way.
3. Deferred loads. A load whose only use is a fragment dot's operand is copied from global to
   threadgroup memory by the dot itself, through no registers; a B given as `tl.trans` of such
   a load is staged as loaded and read by `ldmatrix` without `.trans`.
4. Stagings. Where each fragment dot's A and B sit in threadgroup memory (`Staging`): rows
   padded against bank conflicts for `ldmatrix`, or the warpgroup unit's swizzled layout.
5. Pipelines. A `for` loop whose deferred loads can be prefetched keeps `num_stages` copies of
   their tiles at the start of threadgroup memory (`software_pipeline.py`); the loop's own
   `num_stages` attribute (`tl.range(..., num_stages=N)`) overrides the kernel's. Scratch
   memory starts after the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import ir
from ...ir import types as T
from .dialect import Dialect, Fragments, MatrixUnit, Warpgroup
from .layout import MmaLayout, RowsLayout, mma_layout
from .render import combiner_kind
from .shared_memory import Staging, align_to
from .software_pipeline import RESERVED_BYTES, Pipeline, Tile, plan_loop

# Per staged dot operand of a pipelined loop: the value and how it is staged.
_Operand = tuple[ir.Value, Staging]


@dataclass
class DotPlan:
    """The kernel's tensor-core plan; values and ops are keyed by `id`.

    Attributes:
        layouts: element count -> the accumulator layout (or the accumulator rows' layout)
            every value of that count takes.
        fragments: each dot that runs on register fragments -> its accumulator layout.
        transposes: a dot operand given as `tl.trans(x)` -> x.
        transposed: a fragment dot's B that is `tl.trans` of a deferred [n, k] load -> the load.
        deferred: the loads their dots perform (global to threadgroup memory).
        shared_operands: deferred loads that several dots read as A (fused SwiGLU's x); they
            stay deferred only where a pipeline stages them once.
        pipelines: each pipelined `for` op -> its plan.
        stage_tiles: each value a pipeline stages -> the pipeline and the tile holding it.
        scratch_base: bytes the stages take at the start of threadgroup memory.
        warpgroup: the fragment dots that run on the warpgroup unit (wgmma).
        stagings: each fragment dot -> how its A and the tile staged for its B (B's
            transposed load, where `transposed` has it) sit in threadgroup memory.
    """

    layouts: dict[int, MmaLayout | RowsLayout] = field(default_factory=dict)
    fragments: dict[int, MmaLayout] = field(default_factory=dict)
    transposes: dict[int, ir.Value] = field(default_factory=dict)
    transposed: dict[int, ir.Op] = field(default_factory=dict)
    deferred: set[int] = field(default_factory=set)
    shared_operands: set[int] = field(default_factory=set)
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    stage_tiles: dict[int, tuple[Pipeline, Tile]] = field(default_factory=dict)
    scratch_base: int = 0
    warpgroup: set[int] = field(default_factory=set)
    stagings: dict[int, tuple[Staging, Staging]] = field(default_factory=dict)


def plan_dots(
    fn: ir.Function, dialect: Dialect, threads: int, num_stages: int, uses: dict[int, int]
) -> DotPlan:
    """Plans the dots of `fn` for `dialect` (see the module docstring).

    Args:
        fn: The kernel.
        dialect: The language, whose matrix unit decides what runs on fragments.
        threads: Threads per program.
        num_stages: The kernel's pipeline depth; a `for` op's `num_stages` attribute wins.
        uses: How many operands read each value, by id.

    Returns:
        The plan the lowering reads while it writes the kernel.
    """
    transposes = _dot_transposes(fn, uses)
    unit = dialect.matrix
    if unit is None or unit.fragments is None:
        return DotPlan(transposes=transposes)
    layouts = _mma_layouts(fn, unit, threads)
    fragments = _fragment_dots(fn, unit, layouts)
    dots = [op for op in ir.walk(fn.body) if id(op) in fragments]
    warpgroup = {id(op) for op in dots if fragments[id(op)].interleaved and _warpgroup_dot(op, unit, threads)}
    deferred, transposed, shared = _deferred_loads(fn, fragments, transposes, uses)
    stagings = {
        id(op): operand_stagings(op, unit, id(op.operands[1]) in transposed, id(op) in warpgroup)
        for op in dots
    }
    pipelines, stage_tiles, base = _plan_pipelines(
        fn, dialect, num_stages, deferred, transposed, fragments, stagings, warpgroup
    )
    if warpgroup:  # dots staged outside a pipeline start on their swizzle's repeat
        base = align_to(base, max(st.align for pair in stagings.values() for st in pair))
    # a load several dots read as A stays deferred only where a pipeline stages it once
    deferred -= shared - set(stage_tiles)
    return DotPlan(
        layouts,
        fragments,
        transposes,
        transposed,
        deferred,
        shared,
        pipelines,
        stage_tiles,
        base,
        warpgroup,
        stagings,
    )


def fragment_strides(dot: ir.Op, frag: Fragments) -> tuple[int, int]:
    """Elements between the staged rows of a fragment dot's A and B: A's rows padded by 16
    bytes (ldmatrix without bank conflicts), B's by the dialect's `pad` elements."""
    a, b = dot.operands[:2]
    return a.type.shape[1] + 16 // a.type.elem.itemsize, b.type.shape[1] + frag.pad


def _swizzled(unit: Warpgroup, rows: int, cols: int, itemsize: int) -> Staging:
    """A tile in the warpgroup unit's layout, with the widest swizzle its rows fill (32, 64
    or 128 bytes: rows of at least 16 two-byte elements)."""
    width = cols * itemsize
    swizzle = 128 if width % 128 == 0 else 64 if width % 64 == 0 else 32
    place = unit.offset.format(rows=rows, swizzle=swizzle, item=itemsize, row="{row}", col="{col}")
    return Staging(rows, cols, cols, itemsize, swizzle, place)


def operand_stagings(
    dot: ir.Op, unit: MatrixUnit, b_transposed: bool, warpgroup: bool
) -> tuple[Staging, Staging]:
    """How a fragment dot's A and B are staged: A as (m, k); B as (k, n), or as its
    transposed load (n, k) when `b_transposed`. The warpgroup unit reads A K-major and such
    a B K-major, a row-major B MN-major."""
    a, b = dot.operands[:2]
    (m, k), n = a.type.shape, b.type.shape[1]
    item = a.type.elem.itemsize
    if warpgroup:
        wg = unit.warpgroup
        return _swizzled(wg, m, k, item), _swizzled(wg, n, k, item) if b_transposed else _swizzled(
            wg, k, n, item
        )
    lda, ldb = fragment_strides(dot, unit.fragments)
    return Staging(m, k, lda, item), Staging(n, k, lda, item) if b_transposed else Staging(k, n, ldb, item)


def _warpgroup_dot(dot: ir.Op, unit: MatrixUnit, threads: int) -> bool:
    """Whether the warpgroup unit runs `dot`: f16/bf16 inputs and an f32 result, 4 or 8 warps
    (one or two warpgroups), m a multiple of 64 per warpgroup, n one instruction's, k a
    multiple of 16."""
    wg = unit.warpgroup
    a, b = dot.operands[:2]
    if wg is None or len(a.type.shape) != 2 or dot.result.type.elem != T.float32:
        return False
    if a.type.elem.short not in unit.inputs or b.type.elem != a.type.elem:
        return False
    (m, k), n = a.type.shape, b.type.shape[1]
    warps = threads // 32
    return warps in (4, 8) and m % (16 * warps) == 0 and n in wg.ns and k % 16 == 0


def _fragment_k(dot: ir.Op, unit: MatrixUnit) -> int | None:
    """The k-step of one tensor-core instruction for `dot`'s inputs, if there is one."""
    elem = dot.operands[0].type.elem
    if elem.short in unit.inputs:
        return unit.k
    tf32 = dot.attrs.get("input_precision") == "tf32" and unit.fragments.mma_tf32 is not None
    return 8 if elem == T.float32 and tf32 else None


def _fragment_shape(dot: ir.Op, unit: MatrixUnit) -> tuple[int, int] | None:
    """(m, n) of a `dot` the matrix unit can run on register fragments (f16/bf16 inputs, or
    f32 ones under input_precision "tf32"; an f32 result; k a multiple of the k-step),
    else None."""
    a, b = dot.operands[:2]
    if len(a.type.shape) != 2 or dot.result.type.elem != T.float32:
        return None
    k_step = _fragment_k(dot, unit)
    return None if k_step is None or a.type.shape[1] % k_step else (a.type.shape[0], b.type.shape[1])


def _mma_layouts(fn: ir.Function, unit: MatrixUnit, threads: int) -> dict[int, MmaLayout | RowsLayout]:
    """Element counts whose values take the accumulator layout of a `dot` that runs on
    register fragments (the first such dot of each count decides its shape; the warpgroup
    unit's interleaved variant where the dot fits it), and the row counts of the dots whose
    rows are reduced, whose values take those rows' layout."""
    dots = [op for op in ir.walk(fn.body) if op.name == "dot" and _fragment_shape(op, unit)]
    numels = {op.result.type.numel for op in dots}
    reduced_rows = {
        op.operands[0].type.shape[0]
        for op in ir.walk(fn.body)
        if op.name == "reduce"
        and op.attrs["axis"] == 1
        and op.operands[0].type.numel in numels
        and len(op.operands[0].type.shape) == 2
        and combiner_kind(op.regions[0]) is not None
    }
    layouts: dict[int, MmaLayout | RowsLayout] = {}
    for op in dots:
        if op.result.type.numel in layouts:
            continue
        m, n = _fragment_shape(op, unit)
        if _warpgroup_dot(op, unit, threads):
            layout = MmaLayout(m * n, threads, m, n, threads // 32, 1, interleaved=True)
        else:
            layout = mma_layout(m, n, threads, rows=m in reduced_rows)
        if layout is not None:
            layouts[layout.numel] = layout
    for layout in list(layouts.values()):
        if layout.m in reduced_rows and layout.warps_n == 1 and layout.m not in layouts:
            layouts[layout.m] = RowsLayout(layout)
    return layouts


def _fragment_dots(
    fn: ir.Function, unit: MatrixUnit, layouts: dict[int, MmaLayout | RowsLayout]
) -> dict[int, MmaLayout]:
    """The dots whose shape is the accumulator layout of their element count, by id."""
    found = {}
    for op in ir.walk(fn.body):
        layout = layouts.get(op.result.type.numel) if op.name == "dot" else None
        if isinstance(layout, MmaLayout) and _fragment_shape(op, unit) == (layout.m, layout.n):
            found[id(op)] = layout
    return found


def _dot_transposes(fn: ir.Function, uses: dict[int, int]) -> dict[int, ir.Value]:
    """2-D `permute`s used only as a `dot` operand, to their source."""
    defs = {id(r): op for op in ir.walk(fn.body) for r in op.results}
    found = {}
    for op in ir.walk(fn.body):
        if op.name != "dot" or len(op.operands[0].type.shape) != 2:
            continue
        for v in op.operands[:2]:
            src = defs.get(id(v))
            if (
                src is not None
                and src.name == "permute"
                and tuple(src.attrs["order"]) == (1, 0)
                and uses[id(v)] == 1
            ):
                found[id(v)] = src.operands[0]
    return found


def _zero_values(fn: ir.Function) -> set[int]:
    """Values that are zero everywhere: a zero constant, splat, broadcast or cast of one."""
    zeros: set[int] = set()
    for op in ir.walk(fn.body):
        if (
            op.name == "constant"
            and op.attrs["value"] == 0
            or (op.name in ("splat", "broadcast", "cast") and id(op.operands[0]) in zeros)
        ):
            zeros.add(id(op.result))
    return zeros


def _deferred_loads(
    fn: ir.Function, fragments: dict[int, MmaLayout], transposes: dict[int, ir.Value], uses: dict[int, int]
) -> tuple[set[int], dict[int, ir.Op], set[int]]:
    """Loads whose only use is an operand of a fragment `dot` later in the same block (or,
    for B, the `tl.trans` that is), with no memory write between them and nothing but zeros
    for masked elements: the dot copies them from global to threadgroup memory itself.

    Returns:
        The deferred loads; the B operands staged as their transposed load (`transposed`);
        the loads several dots read as A (`shared_operands`), which also count as deferred.
    """
    a_uses: dict[int, int] = {}
    for op in ir.walk(fn.body):
        if id(op) in fragments:
            a_uses[id(op.operands[0])] = a_uses.get(id(op.operands[0]), 0) + 1
    zeros = _zero_values(fn)
    deferred: set[int] = set()
    transposed: dict[int, ir.Op] = {}
    shared: set[int] = set()
    for block in [fn.body, *(r for op in ir.walk(fn.body) for r in op.regions)]:
        pending: dict[int, ir.Op] = {}  # candidate loads by result id
        pending_trans: dict[int, ir.Op] = {}  # tl.trans of a candidate, to its load
        for op in block.ops:
            if id(op) in fragments:
                a, b = op.operands[:2]
                deferred |= {id(v) for v in (a, b) if id(v) in pending}
                if id(a) in pending and uses[id(a)] > 1:
                    shared.add(id(a))
                if id(b) in pending_trans:
                    transposed[id(b)] = pending_trans[id(b)]
                    deferred.add(id(pending_trans[id(b)].result))
            if op.name in ir.SIDE_EFFECT_OPS or op.regions:
                pending.clear()  # a store may write what a pending load reads
                pending_trans.clear()
            if op.name == "permute" and id(op.result) in transposes and id(op.operands[0]) in pending:
                pending_trans[id(op.result)] = pending[id(op.operands[0])]
            if op.name == "load" and op.result.type.shape:
                zero_other = len(op.operands) < 3 or id(op.operands[-1]) in zeros
                n_uses = uses.get(id(op.result), 0)
                if zero_other and (n_uses == 1 or n_uses == a_uses.get(id(op.result))):
                    pending[id(op.result)] = op
    return deferred, transposed, shared


def _plan_pipelines(
    fn: ir.Function,
    dialect: Dialect,
    num_stages: int,
    deferred: set[int],
    transposed: dict[int, ir.Op],
    fragments: dict[int, MmaLayout],
    stagings: dict[int, tuple[Staging, Staging]],
    warpgroup: set[int],
) -> tuple[dict[int, Pipeline], dict[int, tuple[Pipeline, Tile]], int]:
    """Plans the loops whose dot operands are prefetched `stages - 1` iterations ahead
    (`software_pipeline.py`). Stages are dropped where they would leave less than
    RESERVED_BYTES of threadgroup memory for the rest (a loop left with fewer than two runs
    unpipelined).

    Returns:
        The pipelines by loop, the tiles by staged value, and the bytes the tiles take.
    """
    pipelines: dict[int, Pipeline] = {}
    stage_tiles: dict[int, tuple[Pipeline, Tile]] = {}
    frag = dialect.matrix.fragments
    if not deferred or frag.copy_wait_group is None:
        return pipelines, stage_tiles, 0
    base = 0
    for loop in (op for op in ir.walk(fn.body) if op.name == "for"):
        stages = int(loop.attrs.get("num_stages", num_stages))
        plan = plan_loop(loop, deferred, stages)
        if plan is None:
            continue
        operands = _loop_operands(loop, plan, transposed, fragments, stagings)
        if operands is None:
            continue
        once, staged = operands
        tiles, stage0, size = _place_tiles(base, once, staged)
        if not size:
            continue
        plan.stages = min(stages, (dialect.max_shared_bytes - RESERVED_BYTES - stage0) // size)
        if plan.stages < 2:
            continue
        plan.stage_bytes = size
        plan.invariant = [v for v, _ in once.values()]
        plan.async_proxy = any(id(op) in warpgroup for op in loop.regions[0].ops)
        first = next(op for op in loop.regions[0].ops if id(op) in fragments)
        plan.overlap = id(first) in warpgroup
        for key, tile in tiles.items():
            stage_tiles[key] = (plan, tile)
        pipelines[id(loop)] = plan
        base = stage0 + plan.stages * size
    return pipelines, stage_tiles, base


def _loop_operands(
    loop: ir.Op,
    plan: Pipeline,
    transposed: dict[int, ir.Op],
    fragments: dict[int, MmaLayout],
    stagings: dict[int, tuple[Staging, Staging]],
) -> tuple[dict[int, _Operand], dict[int, _Operand]] | None:
    """The operands of the loop body's fragment dots that live in threadgroup memory: those
    from outside the loop (staged once) and the prefetched loads (staged per stage); None
    when two dots would stage one value differently (a warpgroup dot and an mma.sync one)."""
    body = loop.regions[0]
    inside = {id(a) for a in body.args} | {id(r) for op in body.ops for r in op.results}
    prefetched = {id(load.result) for load in plan.loads}
    once: dict[int, _Operand] = {}
    staged: dict[int, _Operand] = {}
    for dot in (op for op in body.ops if id(op) in fragments):
        for v, staging in zip(dot.operands[:2], stagings[id(dot)]):
            load = transposed.get(id(v))
            if load is not None:  # staged as loaded: n rows of k
                v = load.result
            group = staged if id(v) in prefetched else once if id(v) not in inside else None
            if group is None:
                continue
            if group.get(id(v), (v, staging))[1] != staging:
                return None
            group[id(v)] = (v, staging)
    return once, staged


def _place_tiles(
    base: int, once: dict[int, _Operand], staged: dict[int, _Operand]
) -> tuple[dict[int, Tile], int, int]:
    """Places a loop's tiles from byte `base`: those staged once, then stage 0 of the
    prefetched ones (stage s sits s stage sizes further on), each on its staging's alignment
    (the size of a stage keeps every stage's tiles on it).

    Returns:
        The tiles, where stage 0 starts and the size of one stage.
    """
    tiles: dict[int, Tile] = {}
    end = stage0 = base
    for group, per_stage in ((once, False), (staged, True)):
        aligns = [staging.align for _, staging in group.values()]
        stage0 = end = align_to(end, max(aligns, default=16))
        for key, (v, staging) in group.items():
            end = align_to(end, staging.align)
            tiles[key] = Tile(end, staging, v.type.elem, per_stage)
            end += staging.nbytes
    size = align_to(end - stage0, max((st.align for _, st in staged.values()), default=16))
    return tiles, stage0, size if staged else 0
