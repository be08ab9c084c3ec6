"""Rules for memory: `load`, `store` and the atomics, and the copy a deferred load makes
straight into threadgroup memory for the `dot` that reads it.

Accesses are vectorized where the pointer's axis info (`axis_info.py`) shows contiguous,
aligned chunks; a chunk that may be cut by the mask or start unaligned falls back to element
accesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .... import ir
from ....errors import UnsupportedError
from ....ir import types as T
from ..entity import Entity
from ..layout import Layout, MmaLayout, RowsLayout
from ..registry import lowers
from ..render import literal
from ..shared_memory import Staging

if TYPE_CHECKING:
    from ..lowering import Lowering


def vector_width(lo: Lowering, ptr: ir.Value, layout: Layout, dtype: T.DType) -> int:
    """Elements per vector access of a load/store, 1 for scalar accesses.

    The widest power of two that divides the layout's chunk, fits the dialect's widest
    vector (16 bytes), and that the pointer's contiguity and (where vectors need natural
    alignment) divisibility allow. A chunk wider than one access (a float32 value in a layout
    sized for halves) is accessed as several vectors.
    """
    info = lo.axis[ptr]
    vec = layout.vec
    while vec > 1 and vec * dtype.itemsize > lo.d.vector_bytes:
        vec //= 2
    while vec > 1 and (
        info.contiguity < vec
        or lo.d.vector_type(lo.ctype(dtype), vec) is None
        or (lo.d.aligned is not None and info.divisibility % vec)  # first address a multiple
    ):
        vec //= 2
    return vec


@dataclass
class Chunk:
    """A vector access to the chunk of slots `i .. i+vec-1`.

    Attributes:
        cond: C condition for one vector access (None: always): the base pointer is aligned
            (where the dialect needs it) and the whole chunk is in bounds.
        by_element: whether a chunk failing `cond` can still have elements to access (an
            unaligned base, or a mask that changes inside the chunk). They are accessed at
            the chunk's first offset plus j (contiguity allows it), so only chunk starts
            stay live in registers.
        masks: each element's mask (None: unmasked).
    """

    cond: str | None
    by_element: bool
    masks: list[str | None]


def vector_chunk(lo: Lowering, ptr: Entity, mask: Entity | None, mask_v: ir.Value | None, vec: int) -> Chunk:
    uniform = mask is None or lo.axis[mask_v].constancy >= vec
    flag = lo.aligned(ptr.base, vec * ptr.dtype.itemsize)
    masks = [None if mask is None else mask.at() if uniform else mask.at(f"i + {j}") for j in range(vec)]
    parts = [flag, None if mask is None else " && ".join(dict.fromkeys(masks))]
    cond = " && ".join(p for p in parts if p) or None
    return Chunk(cond, flag is not None or not uniform, masks)


@lowers("load")
def _lower_load(lo: Lowering, op: ir.Op) -> None:
    ptr = lo.get(op.operands[0])
    mask_v = op.operands[1] if len(op.operands) > 1 else None
    mask = lo.get(mask_v) if mask_v is not None else None
    other = lo.get(op.operands[2]) if len(op.operands) > 2 else None
    if id(op.result) in lo.dots.deferred:
        elem = op.result.type.elem
        lo.env[id(op.result)] = Entity("", elem, lo.layout_of(op.result), deferred=op)
        return
    ent = lo.new_entity(op.result)
    zero = literal(lo.d, 0, ent.dtype)

    def element(slot: str, offset: str, cond: str | None) -> str:
        address = f"{ptr.base}[{offset}]"
        return address if cond is None else f"{cond} ? {address} : {other.at(slot) if other else zero}"

    if ent.layout is None:
        lo.emit(f"{ent.name} = {element('i', ptr.name, mask.name if mask else None)};")
        return
    vec = vector_width(lo, op.operands[0], ent.layout, ent.dtype)
    if vec == 1:
        run = ent.layout.vec
        while run > 1 and not all(v is None or lo.axis[v].constancy % run == 0 for v in op.operands):
            run //= 2
        if run > 1:
            # each run of a chunk reads one address (a per-group scale, say): one load, copied
            lo.open(f"for (int i = 0; i < {ent.layout.slots}; i += {run})")
            lo.emit(f"{ent.name}[i] = {element('i', ptr.at(), mask.at() if mask else None)};")
            for j in range(1, run):
                lo.emit(f"{ent.name}[i + {j}] = {ent.name}[i];")
            lo.close()
            return
        lo.slot_loop(ent.layout)
        lo.emit(f"{ent.name}[i] = {element('i', ptr.at(), mask.at() if mask else None)};")
        lo.close()
        return
    vtype = lo.d.vector_type(lo.ctype(ent.dtype), vec)
    chunk = vector_chunk(lo, ptr, mask, mask_v, vec)
    lo.open(f"for (int i = 0; i < {ent.layout.slots}; i += {vec})")
    if chunk.cond is not None:
        lo.open(f"if ({chunk.cond})")
    lo.emit(f"const {vtype} t = *(({lo.d.global_ptr.format(t='const ' + vtype)})({ptr.base} + {ptr.at()}));")
    for j in range(vec):
        lo.emit(f"{ent.name}[i + {j}] = t[{j}];")
    if chunk.cond is not None:
        lo.close(" else {")
        lo.depth += 1
        for j in range(vec):
            slot = f"i + {j}"
            fill = other.at(slot) if other else zero
            value = element(slot, f"{ptr.at()} + {j}", chunk.masks[j]) if chunk.by_element else fill
            lo.emit(f"{ent.name}[{slot}] = {value};")
        lo.close()
    lo.close()


@lowers("store")
def _lower_store(lo: Lowering, op: ir.Op) -> None:
    ptr, value = lo.get(op.operands[0]), lo.get(op.operands[1])
    mask_v = op.operands[2] if len(op.operands) > 2 else None
    mask = lo.get(mask_v) if mask_v is not None else None
    lo.written_bases.add(ptr.base)
    if ptr.layout is None:
        cond = " && ".join(c for c in ("tid == 0", mask.name if mask else None) if c)
        lo.emit(f"if ({cond}) {ptr.base}[{ptr.name}] = {value.name};")
        return
    layout = ptr.layout
    vec = vector_width(lo, op.operands[0], layout, value.dtype)
    if vec == 1:
        lo.slot_loop(layout)
        cond = " && ".join(c for c in (layout.owner(), mask.at() if mask else None) if c)
        store = f"{ptr.base}[{ptr.at()}] = {value.at()};"
        lo.emit(f"if ({cond}) {store}" if cond else store)
        lo.close()
        return
    vtype = lo.d.vector_type(lo.ctype(value.dtype), vec)
    chunk = vector_chunk(lo, ptr, mask, mask_v, vec)
    lo.open(f"for (int i = 0; i < {layout.slots}; i += {vec})")
    elems = ", ".join(value.at(f"i + {j}") for j in range(vec))
    store = f"*(({lo.d.global_ptr.format(t=vtype)})({ptr.base} + {ptr.at()})) = {vtype}({elems});"
    if chunk.cond is None:
        lo.emit(store)
    elif not chunk.by_element:
        lo.emit(f"if ({chunk.cond}) {store}")
    else:
        lo.open(f"if ({chunk.cond})")
        lo.emit(store)
        lo.close(" else {")
        lo.depth += 1
        for j, cond in enumerate(chunk.masks):
            store = f"{ptr.base}[{ptr.at()} + {j}] = {value.at(f'i + {j}')};"
            lo.emit(f"if ({cond}) {store}" if cond else store)
        lo.close()
    lo.close()


ATOMIC_TYPES = {"add": (T.int32, T.uint32, T.float32), "xchg": (T.int32, T.uint32, T.float32)}


def _check_atomic(lo: Lowering, kind: str, dtype: T.DType) -> None:
    allowed = ATOMIC_TYPES.get(
        kind, (T.int32, T.uint32) if kind in ("and", "or", "xor", "cas") else (T.int32, T.uint32, T.float32)
    )
    if dtype not in allowed:
        supported = ", ".join(map(str, allowed))
        raise lo.error(
            UnsupportedError,
            f"atomic_{kind} on {dtype} is not supported by {lo.d.name}; supported: {supported}",
        )


def _atomic(lo: Lowering, op: ir.Op, render: str, dtype: T.DType) -> None:
    """Runs `render` (an expression of slot `i`) once per owned, unmasked element."""
    ent = lo.new_entity(op.result)
    zero = literal(lo.d, 0, dtype)
    mask = lo.get(op.operands[2]) if op.name == "atomic_rmw" and len(op.operands) > 2 else None
    if ent.layout is None:
        # One thread performs a scalar atomic; everyone reads the old value it saw.
        buf = lo.scratch(dtype, 1)
        lo.barrier()
        cond = " && ".join(c for c in ("tid == 0", mask.name if mask else None) if c)
        lo.emit(f"if ({cond}) {buf}[0] = {render};")
        lo.barrier()
        lo.emit(f"{ent.name} = {buf}[0];")
        return
    layout = ent.layout
    cond = " && ".join(c for c in (layout.owner(), mask.at() if mask else None) if c) or "true"
    lo.slot_loop(layout)
    lo.emit(f"{ent.name}[i] = ({cond}) ? {render} : {zero};")
    lo.close()
    if layout.replicated:
        buf = lo.scratch(dtype, layout.numel)
        lo.barrier()
        lo.emit(f"if ({layout.owner()}) {buf}[tid] = {ent.name}[0];")
        lo.barrier()
        lo.emit(f"{ent.name}[0] = {buf}[{layout.flat_index('0')}];")
    elif isinstance(layout, RowsLayout):  # the old values reach the threads sharing each row
        buf = lo.scratch(dtype, layout.numel)
        lo.barrier()
        lo.emit(
            f"if ({layout.owner()}) for (int i = 0; i < {layout.slots}; ++i) {buf}[{layout.flat_index('i')}] = {ent.name}[i];"
        )
        lo.barrier()
        lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {ent.name}[i] = {buf}[{layout.flat_index('i')}];")


@lowers("atomic_rmw")
def _lower_atomic_rmw(lo: Lowering, op: ir.Op) -> None:
    ptr, value = lo.get(op.operands[0]), lo.get(op.operands[1])
    kind = op.attrs["kind"]
    _check_atomic(lo, kind, value.dtype)
    lo.written_bases.add(ptr.base)
    lo.atomic_bases.add(ptr.base)
    address = f"&{ptr.base}[{ptr.at()}]"
    lo_render = lo.d.atomic(kind, lo.ctype(value.dtype), address, value.at())
    _atomic(lo, op, lo_render, value.dtype)


@lowers("atomic_cas")
def _lower_atomic_cas(lo: Lowering, op: ir.Op) -> None:
    ptr, cmp, value = (lo.get(o) for o in op.operands)
    _check_atomic(lo, "cas", value.dtype)
    lo.written_bases.add(ptr.base)
    lo.atomic_bases.add(ptr.base)
    render = lo.d.atomic_cas(lo.ctype(value.dtype), f"&{ptr.base}[{ptr.at()}]", cmp.at(), value.at())
    _atomic(lo, op, render, value.dtype)


def _materialize(lo: Lowering, v: ir.Value, ent: Entity, layout: Layout) -> Entity:
    """A pure block value recomputed into registers of `layout`."""
    out = Entity(lo.fresh(), ent.dtype, layout, ent.base, ent.wide)
    elem = T.int64 if ent.wide else T.int32 if ent.base is not None else ent.dtype
    lo.emit(f"{lo.ctype(elem) if not elem.is_bool() else 'bool'} {out.name}[{layout.slots}];")
    lo.slot_loop(layout)
    lo.emit(f"{out.name}[i] = {lo.expr_at(v, layout.flat_index('i'))};")
    lo.close()
    return out


def copy_to_shared(lo: Lowering, load: ir.Op, buf: str, staging: Staging) -> None:
    """Performs a deferred load into a staged tile: asynchronous vector copies where the
    chunk allows (masked elements zero-filled), element copies elsewhere. A chunk of up to 16
    bytes stays contiguous in every staging (a swizzle moves 16-byte pieces)."""
    frag = lo.d.matrix.fragments
    ptr_v, mask_v = load.operands[0], (load.operands[1] if len(load.operands) > 1 else None)
    ptr, mask = lo.get(ptr_v), (lo.get(mask_v) if mask_v is not None else None)
    layout = lo.layout_of(load.result)
    if isinstance(layout, MmaLayout) and lo.is_pure(ptr_v) and (mask_v is None or lo.is_pure(mask_v)):
        # A tile with a dot result's element count would copy in the accumulator layout's
        # pairs; its threads are free here: row-major chunks of up to 16 bytes, with the
        # addresses (and mask) recomputed at them.
        layout = Layout(layout.numel, lo.threads, lo.d.vector_bytes // ptr.dtype.itemsize)
        ptr = _materialize(lo, ptr_v, ptr, layout)
        mask = _materialize(lo, mask_v, mask, layout) if mask is not None else None
    ctype = lo.ctype(ptr.dtype)
    zero = literal(lo.d, 0, ptr.dtype)
    cols = staging.cols
    at = staging.at(f"e / {cols}", f"e % {cols}")
    vec = vector_width(lo, ptr_v, layout, ptr.dtype)
    if vec == 1 or cols % vec:
        lo.slot_loop(layout)
        lo.emit(f"const int e = {layout.flat_index('i')};")
        value = f"{ptr.base}[{ptr.at()}]"
        lo.emit(f"{buf}[{at}] = {f'{mask.at()} ? {value} : {zero}' if mask else value};")
        lo.close()
        return
    nbytes = vec * ptr.dtype.itemsize
    chunk = vector_chunk(lo, ptr, mask, mask_v, vec)
    lo.open(f"for (int i = 0; i < {layout.slots}; i += {vec})")
    lo.emit(f"const int e = {layout.flat_index('i')};")
    lo.emit(f"{lo.d.shared_ptr.format(t=ctype)} dst = {buf} + {at};")
    src = f"{ptr.base} + {ptr.at()}"
    flag = lo.aligned(ptr.base, nbytes)
    if chunk.by_element and not (flag is not None and chunk.masks[0] == chunk.masks[-1]):
        # the mask may cut the chunk (a row's tail): one copy when it is wholly in bounds
        lo.open(f"if ({chunk.cond})")
        lo.emit(frag.copy.format(n=nbytes, dst="dst", src=src, bytes=nbytes))
        lo.close(" else {")
    else:
        # the chunk is wholly in or out: one copy, zero-filled when out (if the base is aligned)
        size = nbytes if mask is None else f"({mask.at()} ? {nbytes} : 0)"
        lo.open(f"if ({flag or 'true'})")
        lo.emit(frag.copy.format(n=nbytes, dst="dst", src=src, bytes=size))
        lo.close(" else {")
    lo.depth += 1
    for j, cond in enumerate(chunk.masks):
        value = f"{ptr.base}[{ptr.at()} + {j}]"
        lo.emit(f"dst[{j}] = {f'{cond} ? {value} : {zero}' if cond else value};")
    lo.close()
    lo.close()
