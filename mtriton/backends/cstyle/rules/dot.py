"""Rules for `dot`: the operands are staged in threadgroup memory and multiplied on the
dialect's matrix unit (`MatrixUnit`), on register fragments where `DotPlan.fragments` says so
(the result's registers are the accumulators: mma.sync fed by ldmatrix, or the warpgroup unit
reading its operands from threadgroup memory where `DotPlan.warpgroup` has the dot), else by a
loop over k per element.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .... import ir
from ....ir import types as T
from ..dialect import MatrixUnit
from ..dot_plan import fragment_strides
from ..entity import Entity
from ..layout import MmaLayout
from ..registry import lowers
from ..render import render_cast
from ..shared_memory import Staging, align_to, array_bytes
from .memory import copy_to_shared

if TYPE_CHECKING:
    from ..lowering import Lowering


@lowers("dot")
def _lower_dot(lo: Lowering, op: ir.Op) -> None:
    acc = lo.get(op.operands[2])
    result = lo.new_entity(op.result)
    if len(op.operands[0].type.shape) == 3:
        _dot_batched(lo, op, acc, result)
        return
    layout = lo.dots.fragments.get(id(op))
    if layout is not None and id(op) in lo.dots.warpgroup:
        _dot_warpgroup(lo, op, acc, result, layout)
    elif layout is not None:
        _dot_fragments(lo, op, acc, result, layout)
    else:
        _dot_staged(lo, op, acc, result)


def _dot_staged(lo: Lowering, dot: ir.Op, acc: Entity, result: Entity) -> None:
    """result = acc + A @ B with both operands staged in threadgroup memory: on the matrix
    unit's tiles where its shapes and input types fit, else by a loop over k per element."""
    a_v, b_v = dot.operands[:2]
    (m, k), n = a_v.type.shape, b_v.type.shape[1]
    unit = lo.d.matrix
    in_dtype = lo.get(a_v).dtype
    use_unit = (
        unit is not None
        and not acc.dtype.is_int()
        and in_dtype.short in unit.inputs
        and m % unit.m == 0
        and n % unit.n == 0
        and k % unit.k == 0
    )
    if use_unit:
        stage_ctype = unit.stage.format(t=lo.ctype(in_dtype))
        stage_dtype = T.float32 if stage_ctype == "float" else in_dtype
    else:
        stage_dtype = T.int32 if acc.dtype.is_int() else T.float32
    # float32 inputs under "tf32" are rounded as the tensor cores' are, wherever the dot runs
    tf32 = in_dtype == T.float32 and dot.attrs.get("input_precision") == "tf32" and "round_tf32" in lo.d.extra
    lo.open()
    a_buf = lo.scratch(stage_dtype, m * k, 0)
    b_buf = lo.scratch(stage_dtype, k * n, array_bytes(stage_dtype, m * k))
    lo.barrier()
    rounding = lo.d.extra["round_tf32"] if tf32 else "{x}"
    for v, buf in ((a_v, a_buf), (b_v, b_buf)):
        rows, cols = v.type.shape
        staging = Staging(rows, cols, cols, stage_dtype.itemsize)
        stage_operand(lo, v, buf, staging, stage_dtype, lambda x: rounding.format(x=x))
    lo.barrier()
    layout, out = result.layout, lo.ctype(result.dtype)
    if use_unit:
        c_buf = _matrix_unit_tiles(lo, unit, m, n, k, a_buf, b_buf, lo.ctype(stage_dtype))
        lo.slot_loop(layout)
        lo.emit(f"{result.name}[i] = static_cast<{out}>({acc.at()} + {c_buf}[{layout.flat_index('i')}]);")
        lo.close()
    else:
        lo.slot_loop(layout)
        lo.emit(f"const int e = {layout.flat_index('i')};")
        lo.emit(f"const int row = e / {n}, col = e % {n};")
        lo.emit(f"{lo.ctype(stage_dtype)} sum = 0;")
        lo.emit(f"for (int kk = 0; kk < {k}; ++kk) sum += {a_buf}[row * {k} + kk] * {b_buf}[kk * {n} + col];")
        lo.emit(f"{result.name}[i] = static_cast<{out}>({acc.at()} + sum);")
        lo.close()
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _dot_batched(lo: Lowering, dot: ir.Op, acc: Entity, result: Entity) -> None:
    """result = acc + A @ B for (batch, m, k) @ (batch, k, n): both operands staged row-major in
    threadgroup memory, each result element a loop over k (no matrix unit: batched dots are
    small in practice; larger ones run out of threadgroup memory with a clear error)."""
    a_v, b_v = dot.operands[:2]
    batch, m, k = a_v.type.shape
    n = b_v.type.shape[2]
    in_dtype = lo.get(a_v).dtype
    stage_dtype = T.int32 if acc.dtype.is_int() else T.float32
    tf32 = in_dtype == T.float32 and dot.attrs.get("input_precision") == "tf32" and "round_tf32" in lo.d.extra
    rounding = lo.d.extra["round_tf32"] if tf32 else "{x}"
    lo.open()
    a_buf = lo.scratch(stage_dtype, batch * m * k, 0)
    b_buf = lo.scratch(stage_dtype, batch * k * n, array_bytes(stage_dtype, batch * m * k))
    lo.barrier()
    for v, buf in ((a_v, a_buf), (b_v, b_buf)):
        ent = lo.get(v)
        value = ent.at() if ent.dtype == stage_dtype else render_cast(lo.d, ent.at(), ent.dtype, stage_dtype)
        lo.slot_loop(ent.layout)
        lo.emit(f"{buf}[{ent.layout.flat_index('i')}] = {rounding.format(x=value)};")
        lo.close()
    lo.barrier()
    layout, out = result.layout, lo.ctype(result.dtype)
    lo.slot_loop(layout)
    lo.emit(f"const int e = {layout.flat_index('i')};")
    lo.emit(f"const int bat = e / {m * n}, row = (e / {n}) % {m}, col = e % {n};")
    lo.emit(f"{lo.ctype(stage_dtype)} sum = 0;")
    lo.emit(
        f"for (int kk = 0; kk < {k}; ++kk) sum += {a_buf}[(bat * {m} + row) * {k} + kk] * "
        f"{b_buf}[(bat * {k} + kk) * {n} + col];"
    )
    lo.emit(f"{result.name}[i] = static_cast<{out}>({acc.at()} + sum);")
    lo.close()
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _dot_fragments(lo: Lowering, dot: ir.Op, acc: Entity, result: Entity, layout: MmaLayout) -> None:
    """result = acc + A @ B with the result's slots as the accumulator fragments.

    A and B are staged in threadgroup memory with padded rows; each warp then loads, per
    k-step (16 for halves, 8 for TF32), one A fragment per 16-row tile and one B fragment per
    8-column tile of its region and multiplies every pair. An A that is itself in registers in
    an accumulator layout with the result's rows (attention's P feeding P @ V) is packed into
    A fragments where it sits: no threadgroup memory, no barrier.
    """
    unit = lo.d.matrix
    frag = unit.fragments
    a_v = dot.operands[0]
    tf32 = a_v.type.elem == T.float32
    a_regs = None if tf32 else _registers_as_a(lo, a_v, layout)
    lo.open()
    a_buf, b_buf = _fragment_operands(lo, dot, a_in_registers=a_regs is not None)
    lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {result.name}[i] = {acc.at()};")
    tiles_m, tiles_n = layout.tiles_m, layout.tiles_n
    lo.open(f"for (int kk = 0; kk < {a_v.type.shape[1]}; kk += {8 if tf32 else unit.k})")
    lo.emit(f"unsigned int fa[{4 * tiles_m}], fb[{2 * tiles_n}];")
    if a_regs is not None:
        _pack_a_fragments(lo, a_regs)
    else:
        _load_a_fragments(lo, dot, layout, a_buf)
    _load_b_fragments(lo, dot, layout, b_buf)
    t = lo.ctype(a_v.type.elem)
    mma = frag.mma_tf32 if tf32 else frag.mma
    for mi in range(tiles_m):
        for ni in range(tiles_n):
            c = f"{result.name} + {4 * (mi * tiles_n + ni)}"
            lo.emit(mma.format(c=c, a=f"fa + {4 * mi}", b=f"fb + {2 * ni}", t=t))
    lo.close()
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _registers_as_a(lo: Lowering, a_v: ir.Value, result: MmaLayout) -> Entity | None:
    """A's entity when it is a 16-bit value in registers in an accumulator layout whose warps
    hold whole rows, the same rows as the result's: its slots are then A fragments already
    (the accumulator fragments of two neighbouring 8-column tiles are the A fragment of one
    16-wide k-step, PTX ISA "Matrix Fragments for mma.m16n8k16")."""
    ent = lo.get(a_v)
    layout = ent.layout
    if not isinstance(layout, MmaLayout) or ent.deferred is not None or ent.uniform:
        return None
    if id(a_v) in lo.dots.stage_tiles or id(a_v) in lo.dots.transposes or ent.dtype.itemsize != 2:
        return None
    whole_rows = layout.warps_n == 1 and result.warps_n == 1 and layout.m == a_v.type.shape[0]
    return ent if whole_rows and layout.row("r") == result.row("r") else None


def _pack_a_fragments(lo: Lowering, a: Entity) -> None:
    """This k-step's A fragment of each 16-row tile, packed from the accumulator-layout slots
    of A's 8-column tiles kk / 8 and kk / 8 + 1."""
    layout = a.layout
    for mi in range(layout.tiles_m):
        tile = f"4 * ({mi * layout.tiles_n} + kk / 8)"
        for r, (ni, pair) in enumerate(((0, 0), (0, 2), (1, 0), (1, 2))):
            lo_slot, hi_slot = f"{tile} + {4 * ni + pair}", f"{tile} + {4 * ni + pair + 1}"
            lo.emit(f"fa[{4 * mi + r}] = mt_pack({a.at(lo_slot)}, {a.at(hi_slot)});")


def _dot_warpgroup(lo: Lowering, dot: ir.Op, acc: Entity, result: Entity, layout: MmaLayout) -> None:
    """result = acc + A @ B on the warpgroup unit (wgmma), the result's slots its accumulators.

    Per k-step of 16, each warpgroup issues one instruction per 64-row tile of its rows (the
    whole n at once) from descriptors of the staged tiles, then commits them as one group and
    waits for it: the accumulators are read next, and a pipelined loop refills the stage. A
    pipelined loop's prefetch for a later iteration (`Lowering.while_multiplying`) is issued
    between the two, while the tensor cores multiply.
    """
    wg = lo.d.matrix.warpgroup
    a_v, b_v = dot.operands[:2]
    (m, k), n = a_v.type.shape, b_v.type.shape[1]
    lo.helpers.add(wg.helper)
    lo.open()
    (a_buf, b_buf), (sa, sb) = _fragment_operands(lo, dot), lo.dots.stagings[id(dot)]
    mn_major = int(id(b_v) not in lo.dots.transposed)  # B as (k, n): n contiguous
    lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {result.name}[i] = {acc.at()};")
    da, db = lo.fresh("da"), lo.fresh("db")
    lo.emit(
        f"const unsigned long long {da} = {wg.desc.format(p=a_buf, lbo=16, sbo=8 * sa.swizzle, swizzle=sa.swizzle)};"
    )
    # MN-major B: LBO steps between its column panels (k rows of the swizzle each), SBO 8 rows on
    b_lbo = k * sb.swizzle if mn_major else 16
    lo.emit(
        f"const unsigned long long {db} = {wg.desc.format(p=b_buf, lbo=b_lbo, sbo=8 * sb.swizzle, swizzle=sb.swizzle)};"
    )
    lo.emit(wg.fence_regs.format(c=result.name, n=layout.slots))
    lo.emit(wg.fence)
    groups, t = lo.warps // 4, lo.ctype(a_v.type.elem)
    warp_rows = f"(warp / 4) * {sa.start(64, 0) // 16}"  # the warpgroup's 64 rows, in 16 bytes
    for kk in range(0, k, 16):
        b = f"{db} + {(sb.start(kk, 0) if mn_major else sb.start(0, kk)) // 16}"
        for mi in range(m // (64 * groups)):
            a = f"{da} + {sa.start(mi * 64 * groups, kk) // 16} + {warp_rows}"
            c = f"{result.name} + {mi * n // 2}"
            lo.emit(wg.mma.format(c=c, a=a, b=b, trans_b=mn_major, t=t, n=n))
    lo.emit(wg.commit)
    if lo.while_multiplying is not None:  # a pipelined loop's next copies, issued meanwhile
        prefetch, lo.while_multiplying, comment = lo.while_multiplying, None, lo.comment
        prefetch()
        lo.comment = comment
    lo.emit(wg.wait.format(n=0))
    lo.emit(wg.fence_regs.format(c=result.name, n=layout.slots))
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _fragment_operands(lo: Lowering, dot: ir.Op, a_in_registers: bool = False) -> tuple[str, str]:
    """Where a fragment dot's A and B sit in threadgroup memory, as C pointers: operands a
    pipelined loop prefetched in its current stage, the others staged here (a deferred load
    copied from global memory, a value in registers written out), between barriers, in the
    plan's stagings. A B given as tl.trans of an (n, k) load is staged as loaded; an A read
    from registers (`a_in_registers`) is not staged (its pointer is empty)."""
    frag = lo.d.matrix.fragments
    a_v, b_v = dot.operands[:2]
    in_dtype = a_v.type.elem
    b_load = lo.dots.transposed.get(id(b_v))
    operands = zip((a_v, b_v if b_load is None else b_load.result), lo.dots.stagings[id(dot)])
    staged = []
    bufs = []
    offset = 0
    for v, staging in operands:
        if v is a_v and a_in_registers:
            bufs.append("")
            continue
        pipelined = lo.dots.stage_tiles.get(id(v))
        if pipelined is not None:
            plan, tile = pipelined
            bufs.append(lo.shared_at(in_dtype, tile.at(plan, plan.stage_var)))
            continue
        offset = align_to(offset, staging.align)
        bufs.append(lo.scratch(in_dtype, staging.nbytes // in_dtype.itemsize, offset))
        offset += staging.nbytes
        staged.append((v, bufs[-1], staging))
    if staged:
        lo.barrier()
    for v, buf, staging in staged:
        ent = lo.get(v)
        if ent.deferred is not None:
            copy_to_shared(lo, ent.deferred, buf, staging)
        else:
            stage_operand(lo, v, buf, staging, in_dtype)
    if any(lo.get(v).deferred is not None for v, *_ in staged):
        lo.emit(frag.copy_wait)
    if staged and id(dot) in lo.dots.warpgroup:
        lo.emit(lo.d.matrix.warpgroup.proxy_fence)
    if staged:
        lo.barrier()
    a_buf, b_buf = bufs
    return a_buf, b_buf


def _load_a_fragments(lo: Lowering, dot: ir.Op, layout: MmaLayout, a_buf: str) -> None:
    """Loads this k-step's A fragment of each of the warp's 16-row tiles into `fa`."""
    frag = lo.d.matrix.fragments
    a_v = dot.operands[0]
    elem = a_v.type.elem
    row_piece = 16 // elem.itemsize  # elements in the 16 bytes ldmatrix reads of a row
    lda, _ = fragment_strides(dot, frag)
    load = frag.load_a_tf32 if elem == T.float32 else frag.load_a
    for mi in range(layout.tiles_m):
        p = f"{a_buf} + ({layout.tile_row('warp', mi)} + lane % 16) * {lda} + kk + (lane / 16) * {row_piece}"
        lo.emit(load.format(r=f"fa + {4 * mi}", p=p))


def _load_b_fragments(lo: Lowering, dot: ir.Op, layout: MmaLayout, b_buf: str) -> None:
    """Loads this k-step's B fragment of each of the warp's 8-column tiles into `fb`: from
    B's staged transpose, from row-major B in TF32 (element reads), or by `ldmatrix.trans`."""
    frag = lo.d.matrix.fragments
    a_v, b_v = dot.operands[:2]
    elem, n = a_v.type.elem, b_v.type.shape[1]
    tf32 = elem == T.float32
    row_piece = 16 // elem.itemsize
    # (for TF32, B's rows are padded by 32 bytes: the element reads of a B fragment hit 32 banks)
    lda, ldb = fragment_strides(dot, frag)
    tiles_n = layout.tiles_n
    col0 = f"(warp % {layout.warps_n}) * {n // layout.warps_n}"
    if id(b_v) in lo.dots.transposed:
        # rows of B's transpose (staged with A's row stride): lane l passes row l % 8 of the
        # n-tile 8 * (l / 16) further on, at k-offset l / 8 % 2 (8 halves or 4 floats):
        # (B[k][g], B[k+1][g]) pairs are row g's
        _paired_b_tiles(
            lo,
            tiles_n,
            frag.load_a,
            frag.load_bt,
            lambda ni, paired: (
                f"{b_buf} + ({col0} + {8 * ni}{' + (lane / 16) * 8' if paired else ''} + lane % 8)"
                f" * {lda} + kk + ((lane / 8) % 2) * {row_piece}"
            ),
        )
        if tf32:
            lo.emit(frag.tf32_regs.format(r="fb", n=2 * tiles_n))
    elif tf32:
        for ni in range(tiles_n):
            p = f"{b_buf} + kk * {ldb} + {col0} + {8 * ni}"
            lo.emit(frag.load_b_tf32.format(r=f"fb + {2 * ni}", p=p, ld=ldb))
    else:
        _paired_b_tiles(
            lo,
            tiles_n,
            frag.load_b2,
            frag.load_b,
            lambda ni, paired: (
                f"{b_buf} + (kk + lane % 16) * {ldb} + {col0} + {8 * ni}"
                + (" + (lane / 16) * 8" if paired else "")
            ),
        )


def _paired_b_tiles(
    lo: Lowering, tiles_n: int, pair: str, single: str, address: Callable[[int, bool], str]
) -> None:
    """B fragments two 8-column tiles per load (`pair`, 4 registers), the odd last one alone
    (`single`); `address(ni, paired)` is what lane l passes for tile ni."""
    for ni in range(0, tiles_n - 1, 2):
        lo.emit(pair.format(r=f"fb + {2 * ni}", p=address(ni, True)))
    if tiles_n % 2:
        lo.emit(single.format(r=f"fb + {2 * (tiles_n - 1)}", p=address(tiles_n - 1, False)))


def stage_operand(
    lo: Lowering, v: ir.Value, buf: str, staging: Staging, dtype: T.DType, wrap: Callable[[str], str] = str
) -> None:
    """Writes a 2-D dot operand held in registers to threadgroup memory as `dtype`, placed as
    `staging` says (`wrap` applied to each value); an operand given as tl.trans(x) is written
    from x."""
    rows, cols = v.type.shape
    src = lo.dots.transposes.get(id(v))
    ent = lo.get(src if src is not None else v)
    value = ent.at() if ent.dtype == dtype else render_cast(lo.d, ent.at(), ent.dtype, dtype)
    lo.slot_loop(ent.layout)
    lo.emit(f"const int e = {ent.layout.flat_index('i')};")
    # element e of x (cols x rows) is the operand's (e % rows, e / rows)
    if src is not None:
        at = staging.at(f"e % {rows}", f"e / {rows}")
    else:
        at = "e" if staging.ld == cols and not staging.swizzle else staging.at(f"e / {cols}", f"e % {cols}")
    lo.emit(f"{buf}[{at}] = {wrap(value)};")
    lo.close()


def _matrix_unit_tiles(
    lo: Lowering, unit: MatrixUnit, m: int, n: int, k: int, a_buf: str, b_buf: str, in_ctype: str
) -> str:
    """C = A @ B on the matrix unit, warps taking output tiles in turn; returns C's buffer.

    Every warp keeps its tiles' accumulators until all warps are done reading A and B, so C
    can overlay them in threadgroup memory.
    """
    tiles_n = n // unit.n
    tiles = (m // unit.m) * tiles_n
    per_warp = -(-tiles // lo.warps)
    c_buf = lo.scratch(T.float32, m * n, 0)
    lo.emit(unit.declare.format(name="mt_c", n=per_warp))
    lo.open(f"for (int s = 0; s < {per_warp}; ++s)")
    lo.emit(f"const int tile = warp + s * {lo.warps};")
    lo.emit(unit.zero.format(c="mt_c[s]"))
    lo.open(f"if (tile < {tiles})")
    lo.emit(f"const int tm = tile / {tiles_n}, tn = tile % {tiles_n};")
    lo.open(f"for (int kk = 0; kk < {k}; kk += {unit.k})")
    a = f"{a_buf} + tm * {unit.m * k} + kk"
    b = f"{b_buf} + kk * {n} + tn * {unit.n}"
    for statement in unit.mma.format(c="mt_c[s]", a=a, lda=k, b=b, ldb=n, t=in_ctype).split("; "):
        lo.emit(statement.rstrip(";") + ";")
    lo.close()
    lo.close()
    lo.close()
    lo.barrier()
    lo.open(f"for (int s = 0; s < {per_warp}; ++s)")
    lo.emit(f"const int tile = warp + s * {lo.warps};")
    dst = f"{c_buf} + (tile / {tiles_n}) * {unit.m * n} + (tile % {tiles_n}) * {unit.n}"
    lo.emit(f"if (tile < {tiles}) {unit.store.format(c='mt_c[s]', dst=dst, ld=n)}")
    lo.close()
    lo.barrier()
    return c_buf
