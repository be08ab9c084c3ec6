"""The lowering rules, one short function per op family (see `lowering.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ... import ir
from ...errors import UnsupportedError
from ...ir import types as T
from .dialect import MatrixUnit
from .dot_plan import fragment_strides
from .layout import Layout, MmaLayout
from .lowering import Entity, Lowering, lowers
from .render import combiner_kind, literal, render, render_cast
from .shared_memory import array_bytes
from .software_pipeline import Pipeline

# --------------------------------------------------------------------------- values


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
            raise UnsupportedError(f"{lo.loc}: tl.where between pointers into different arguments")
        _elementwise(lo, op, base=a.base, wide=a.wide or b.wide)
        return
    if op.name == "bitcast" and op.result.type.elem.is_ptr():
        src = lo.get(op.operands[0])
        lo.env[id(op.result)] = Entity(src.name, op.result.type.elem.element, src.layout, src.base, src.wide)
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
    lo.gather(ent, [(op.operands[0], lambda e: lo.source_index(op, e))], lambda parts: parts[0])


@lowers("join")
def _lower_join(lo: Lowering, op: ir.Op) -> None:
    a = lo.get(op.operands[0])
    ent = lo.new_entity(op.result, base=a.base, dtype=a.dtype, wide=a.wide)
    sources = [(op.operands[0], lambda e: f"(({e}) / 2)"), (op.operands[1], lambda e: f"(({e}) / 2)")]
    lo.gather(ent, sources, lambda parts: f"((e % 2) == 0 ? {parts[0]} : {parts[1]})")


@lowers("split")
def _lower_split(lo: Lowering, op: ir.Op) -> None:
    src = lo.get(op.operands[0])
    for half, result in enumerate(op.results):
        ent = lo.new_entity(result, base=src.base, dtype=src.dtype, wide=src.wide)
        lo.gather(ent, [(op.operands[0], lambda e, h=half: f"(({e}) * 2 + {h})")], lambda parts: parts[0])


# --------------------------------------------------------------------------- memory


def _vector_width(lo: Lowering, ptr: ir.Value, layout: Layout, dtype: T.DType) -> int:
    """Elements per vector access of a load/store, 1 for scalar accesses."""
    vec = layout.vec
    if vec < 2 or lo.d.vector_type(lo.ctype(dtype), vec) is None:
        return 1
    info = lo.axis[ptr]
    if info.contiguity < vec:
        return 1
    if lo.d.aligned is not None and (info.divisibility % vec or vec * dtype.itemsize > 16):
        return 1  # a chunk's first address must be a multiple of the vector's size
    return vec


@dataclass
class _Chunk:
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


def _chunk(lo: Lowering, ptr: Entity, mask: Entity | None, mask_v: ir.Value | None, vec: int) -> _Chunk:
    uniform = mask is None or lo.axis[mask_v].constancy >= vec
    flag = lo.aligned(ptr.base, vec * ptr.dtype.itemsize)
    masks = [None if mask is None else mask.at() if uniform else mask.at(f"i + {j}") for j in range(vec)]
    parts = [flag, None if mask is None else " && ".join(dict.fromkeys(masks))]
    cond = " && ".join(p for p in parts if p) or None
    return _Chunk(cond, flag is not None or not uniform, masks)


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
    vec = _vector_width(lo, op.operands[0], ent.layout, ent.dtype)
    if vec == 1:
        run = ent.layout.vec
        if run > 1 and all(v is None or lo.axis[v].constancy % run == 0 for v in op.operands):
            # a chunk reads one address (a per-group scale, say): one load, copied
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
    chunk = _chunk(lo, ptr, mask, mask_v, vec)
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
    vec = _vector_width(lo, op.operands[0], layout, value.dtype)
    if vec == 1:
        lo.slot_loop(layout)
        cond = " && ".join(c for c in (layout.owner(), mask.at() if mask else None) if c)
        store = f"{ptr.base}[{ptr.at()}] = {value.at()};"
        lo.emit(f"if ({cond}) {store}" if cond else store)
        lo.close()
        return
    vtype = lo.d.vector_type(lo.ctype(value.dtype), vec)
    chunk = _chunk(lo, ptr, mask, mask_v, vec)
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
        raise UnsupportedError(
            f"{lo.loc}: atomic_{kind} on {dtype} is not supported by {lo.d.name}; supported: {', '.join(map(str, allowed))}"
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


# --------------------------------------------------------------------------- control flow


def _declare_like(lo: Lowering, results: list[ir.Value], sources: list[Entity]) -> list[Entity]:
    return [lo.new_entity(r, base=s.base, dtype=s.dtype, wide=s.wide) for r, s in zip(results, sources)]


def _assign(lo: Lowering, dst: list[Entity], src: list[Entity]) -> None:
    """dst = src elementwise, through temporaries when a source is also a destination."""
    aliased = {d.name for d in dst} & {s.name for s in src}
    temps = src
    if aliased:
        temps = []
        for s in src:
            t = Entity(lo.fresh("t"), s.dtype, s.layout, s.base, s.wide)
            ctype = lo.ctype(s.dtype if s.base is None else (T.int64 if s.wide else T.int32))
            lo.emit(f"{ctype} {t.name}" + (f"[{s.layout.slots}];" if s.layout else ";"))
            _copy(lo, t, s)
            temps.append(t)
    for d, s in zip(dst, temps):
        if d.base != s.base:
            raise UnsupportedError(f"{lo.loc}: a loop-carried pointer must stay inside one argument")
        _copy(lo, d, s)


def _copy(lo: Lowering, dst: Entity, src: Entity) -> None:
    if dst.layout is None:
        lo.emit(f"{dst.name} = {src.name};")
    else:
        lo.emit(f"for (int i = 0; i < {dst.layout.slots}; ++i) {dst.name}[i] = {src.at()};")


def _bind(lo: Lowering, args: list[ir.Value], ents: list[Entity]) -> None:
    for arg, ent in zip(args, ents):
        lo.env[id(arg)] = ent


@lowers("for")
def _lower_for(lo: Lowering, op: ir.Op) -> None:
    lb, ub, step = (lo.get(o) for o in op.operands[:3])
    inits = [lo.get(o) for o in op.operands[3:]]
    carried = _declare_like(lo, op.results, inits)
    _assign(lo, carried, inits)
    body = op.regions[0]
    plan = lo.dots.pipelines.get(id(op))
    ahead = _start_pipeline(lo, plan, op, inits) if plan else None
    iv = Entity(lo.fresh("iv"), op.operands[0].type.elem)
    ctype = lo.ctype(iv.dtype)
    lo.open(f"for ({ctype} {iv.name} = {lb.name}; {iv.name} < {ub.name}; {iv.name} += {step.name})")
    if plan and ahead:
        # this iteration's copies have landed, and every thread is done with the stage refilled next
        lo.emit(lo.d.matrix.fragments.copy_wait_group.format(n=plan.stages - 2))
        lo.barrier()
        _prefetch(lo, plan, op, *ahead, f"({plan.stage_var} + {plan.stages - 1}) % {plan.stages}")
    lo.env[id(body.args[0])] = iv
    _bind(lo, body.args[1:], carried)
    lo.block(ir.Block(ops=body.ops[:-1]))
    _assign(lo, carried, [lo.get(v) for v in body.ops[-1].operands])
    if plan:
        lo.emit(f"{plan.stage_var} = ({plan.stage_var} + 1) % {plan.stages};")
    lo.close()


def _start_pipeline(
    lo: Lowering, plan: Pipeline, loop: ir.Op, inits: list[Entity]
) -> tuple[Entity, list[Entity]]:
    """Declares the stage index and the values that run ahead of the loop, and issues the
    copies of the first `stages - 1` iterations (`software_pipeline.py`); returns the ahead values."""
    lb = lo.get(loop.operands[0])
    body = loop.regions[0]
    plan.stage_var = lo.fresh("stage")
    lo.emit(f"int {plan.stage_var} = 0;")
    iv = Entity(lo.fresh("iv"), lb.dtype)
    lo.emit(f"{lo.ctype(iv.dtype)} {iv.name} = {lb.name};")
    carried = [inits[k] for k in plan.carried]
    ahead = _declare_like(lo, [body.args[1 + k] for k in plan.carried], carried)
    _assign(lo, ahead, carried)
    if plan.invariant:
        lo.barrier()  # an enclosing loop's last pass may still read them
    for v in plan.invariant:
        _, tile = lo.dots.stage_tiles[id(v)]
        _stage_operand(lo, v, lo.shared_at(tile.dtype, tile.at(plan, "0")), tile.ld, tile.dtype)
    stage = lo.fresh("s")
    lo.open(f"for (int {stage} = 0; {stage} < {plan.stages - 1}; ++{stage})")
    _prefetch(lo, plan, loop, iv, ahead, stage)
    lo.close()
    return iv, ahead


def _prefetch(lo: Lowering, plan: Pipeline, loop: ir.Op, iv: Entity, ahead: list[Entity], stage: str) -> None:
    """Issues the copies of the iteration whose induction variable and carried values are
    `iv` and `ahead` into stage `stage`, commits them as one group, then advances both."""
    body, ub, step = loop.regions[0], lo.get(loop.operands[1]), lo.get(loop.operands[2])
    frag = lo.d.matrix.fragments
    outer = dict(lo.env)
    lo.env[id(body.args[0])] = iv
    _bind(lo, [body.args[1 + k] for k in plan.carried], ahead)
    lo.open(f"if ({iv.name} < {ub.name})")
    for address in plan.address_ops:
        lo.op(address)
    for load in plan.loads:
        _, tile = lo.dots.stage_tiles[id(load.result)]
        buf = lo.shared_at(tile.dtype, tile.at(plan, stage))
        _copy_to_shared(lo, load, buf, tile.cols, tile.ld)
    lo.close()
    lo.emit(frag.copy_commit)
    for update in plan.advance_ops:
        lo.op(update)
    _assign(lo, ahead, [lo.get(body.ops[-1].operands[k]) for k in plan.carried])
    lo.emit(f"{iv.name} += {step.name};")
    lo.env = outer


@lowers("while")
def _lower_while(lo: Lowering, op: ir.Op) -> None:
    before, after = op.regions
    inits = [lo.get(o) for o in op.operands]
    carried = _declare_like(lo, before.args, inits)
    _assign(lo, carried, inits)
    cond_op = before.ops[-1]
    results = _declare_like(lo, op.results, inits)
    lo.open("while (true)")
    _bind(lo, before.args, carried)
    lo.block(ir.Block(ops=before.ops[:-1]))
    _assign(lo, results, [lo.get(v) for v in cond_op.operands[1:]])
    lo.emit(f"if (!{lo.get(cond_op.operands[0]).name}) break;")
    _bind(lo, after.args, results)
    lo.block(ir.Block(ops=after.ops[:-1]))
    _assign(lo, carried, [lo.get(v) for v in after.ops[-1].operands])
    lo.close()


@lowers("if")
def _lower_if(lo: Lowering, op: ir.Op) -> None:
    cond = lo.get(op.operands[0])
    then, other = op.regions
    results: list[Entity] | None = None
    if op.results:
        # Declare from the then-branch's yield types (pointer bases come from the branch).
        results = [lo.new_entity(r) for r in op.results]
    lo.open(f"if ({cond.name})")
    _branch(lo, then, results)
    lo.close(" else {")
    lo.depth += 1
    _branch(lo, other, results)
    lo.close()


def _branch(lo: Lowering, region: ir.Block, results: list[Entity] | None) -> None:
    if not region.ops:
        return
    lo.block(ir.Block(ops=region.ops[:-1]))
    if results:
        yielded = [lo.get(v) for v in region.ops[-1].operands]
        for r, y in zip(results, yielded):
            if r.base is not None and r.base != y.base:
                raise UnsupportedError(
                    f"{lo.loc}: the branches of an `if` yield pointers into different arguments"
                )
            r.base, r.dtype = y.base, y.dtype
        _assign(lo, results, yielded)


@lowers("yield", "condition")
def _lower_terminator(lo: Lowering, op: ir.Op) -> None:
    raise AssertionError("terminators are handled by their parent op")


@lowers("debug_barrier")
def _lower_barrier(lo: Lowering, op: ir.Op) -> None:
    lo.barrier()


@lowers("device_print", "device_assert")
def _lower_debug(lo: Lowering, op: ir.Op) -> None:
    lo.emit(f"// {op.name} runs only on the interpreter")


# --------------------------------------------------------------------------- reductions


def _acc_dtypes(region: ir.Block, dtypes: list[T.DType]) -> list[T.DType]:
    """Sums and products of half/bfloat accumulate in float, as the interpreter does."""
    if combiner_kind(region) in ("add", "mul") and dtypes[0] in (T.float16, T.bfloat16):
        return [T.float32]
    return dtypes


def _group_geometry(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, length, inner) of a reduction/scan along `axis`."""
    outer = 1
    for s in shape[:axis]:
        outer *= s
    inner = 1
    for s in shape[axis + 1 :]:
        inner *= s
    return outer, shape[axis], inner


def _group_element(g: str, pos: str, length: int, inner: int) -> str:
    """Flat index of element `pos` of group `g` (g = outer * inner + inner index)."""
    if inner == 1:
        return f"(({g}) * {length} + ({pos}))"
    return f"((({g}) / {inner}) * {length * inner} + ({pos}) * {inner} + ({g}) % {inner})"


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


@lowers("reduce")
def _lower_reduce(lo: Lowering, op: ir.Op) -> None:
    inputs = [lo.get(v) for v in op.operands]
    region = op.regions[0]
    dtypes = _acc_dtypes(region, [e.dtype for e in inputs])
    shape = op.operands[0].type.shape
    axis = op.attrs["axis"]
    outer, length, inner = _group_geometry(shape, axis)
    groups = outer * inner
    threads = lo.threads
    results = [lo.new_entity(r) for r in op.results]
    lo.open()  # a scope for the temporaries
    accs = [lo.fresh("acc") for _ in inputs]

    layout = inputs[0].layout
    if (
        isinstance(layout, MmaLayout)
        and tuple(shape) == (layout.m, layout.n)
        and axis == 1
        and combiner_kind(region) is not None
    ):
        _reduce_mma_rows(lo, op, inputs, dtypes, results, accs)
        lo.close()
        return
    if groups == 1 and not layout.replicated:
        # Each thread folds the elements it holds, then the SIMD group, then the warps.
        for acc, e, dt in zip(accs, inputs, dtypes):
            lo.emit(f"{lo.ctype(dt)} {acc} = {e.at('0')};")
        if layout.slots > 1:
            lo.open(f"for (int i = 1; i < {layout.slots}; ++i)")
            out = lo.combine(region, accs, [e.at() for e in inputs], dtypes)
            for acc, v in zip(accs, out):
                lo.emit(f"{acc} = {v};")
            lo.close()
        _butterfly(lo, op, accs, dtypes, 32)
        if lo.warps > 1:
            _cross_warp(lo, region, accs, dtypes, lo.warps, "0")
        for r, acc in zip(results, accs):
            lo.emit(f"{r.name} = static_cast<{lo.ctype(r.dtype)}>({acc});")
        lo.close()
        return

    # General: stage, fold cooperatively (lanes_per_group threads per group), exchange.
    bufs, offset = _stage_all(lo, op.operands)
    outs = []
    for e in inputs:
        outs.append(lo.scratch(e.dtype, groups, offset))
        offset += array_bytes(e.dtype, groups)
    if groups >= threads:
        lo.open(f"for (int g = tid; g < {groups}; g += {threads})")
        for acc, buf, dt in zip(accs, bufs, dtypes):
            lo.emit(f"{lo.ctype(dt)} {acc} = {buf}[{_group_element('g', '0', length, inner)}];")
        lo.open(f"for (int l = 1; l < {length}; ++l)")
        out = lo.combine(
            region, accs, [f"{b}[{_group_element('g', 'l', length, inner)}]" for b in bufs], dtypes
        )
        for acc, v in zip(accs, out):
            lo.emit(f"{acc} = {v};")
        lo.close()
        for o, acc, e in zip(outs, accs, inputs):
            lo.emit(f"{o}[g] = static_cast<{lo.ctype(e.dtype)}>({acc});")
        lo.close()
    else:
        lanes = min(threads // groups, length)
        lo.emit(f"const int g = min(tid / {lanes}, {groups - 1});")
        lo.emit(f"const int p = tid % {lanes};")
        for acc, buf, dt in zip(accs, bufs, dtypes):
            lo.emit(f"{lo.ctype(dt)} {acc} = {buf}[{_group_element('g', 'p', length, inner)}];")
        if length > lanes:
            lo.open(f"for (int l = p + {lanes}; l < {length}; l += {lanes})")
            out = lo.combine(
                region, accs, [f"{b}[{_group_element('g', 'l', length, inner)}]" for b in bufs], dtypes
            )
            for acc, v in zip(accs, out):
                lo.emit(f"{acc} = {v};")
            lo.close()
        _butterfly(lo, op, accs, dtypes, min(lanes, 32))
        if lanes > 32:
            _cross_warp(lo, region, accs, dtypes, lanes // 32, f"(g * {lanes // 32})", offset)
        lo.emit(f"if (p == 0 && tid < {groups * lanes}) {{")
        for o, acc, e in zip(outs, accs, inputs):
            lo.emit(f"  {o}[g] = static_cast<{lo.ctype(e.dtype)}>({acc});")
        lo.emit("}")
    lo.barrier()
    for r, o in zip(results, outs):
        if r.layout is None:
            lo.emit(f"{r.name} = {o}[0];")
        else:
            lo.slot_loop(r.layout)
            lo.emit(f"{r.name}[i] = {o}[{r.layout.flat_index('i')}];")
            lo.close()
    lo.close()


def _reduce_mma_rows(
    lo: Lowering,
    op: ir.Op,
    inputs: list[Entity],
    dtypes: list[T.DType],
    results: list[Entity],
    accs: list[str],
) -> None:
    """Reduces the rows of an (m, n) block in the accumulator layout (attention's row max and
    sum of scores): each thread folds its elements of each of its rows, the four lanes that
    share a row combine by shuffles, and the warps that share rows through threadgroup memory,
    which also hands each row to its owner in the result's layout. The combiner is a builtin
    one, so the order of the columns does not matter."""
    layout = inputs[0].layout
    region = op.regions[0]
    rows, cols = 2 * layout.tiles_m, 2 * layout.tiles_n  # a thread's rows, and its elements in each

    def slot(c: str) -> str:  # the slot of a thread's element c of its row r
        return f"(4 * ((r / 2) * {layout.tiles_n} + {c} / 2) + 2 * (r % 2) + {c} % 2)"

    for acc, dt in zip(accs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {acc}[{rows}];")
    row_accs = [f"{acc}[r]" for acc in accs]
    lo.open(f"for (int r = 0; r < {rows}; ++r)")
    for acc, e in zip(row_accs, inputs):
        lo.emit(f"{acc} = {e.at(slot('0'))};")
    lo.open(f"for (int c = 1; c < {cols}; ++c)")
    for acc, value in zip(row_accs, lo.combine(region, row_accs, [e.at(slot("c")) for e in inputs], dtypes)):
        lo.emit(f"{acc} = {value};")
    lo.close()
    _butterfly(lo, op, row_accs, dtypes, 4)
    lo.close()
    m, warps_n = layout.m, layout.warps_n
    bufs, offset = [], 0
    for dt in dtypes:
        bufs.append(lo.scratch(dt, warps_n * m, offset))
        offset += array_bytes(dt, warps_n * m)
    lo.barrier()
    lo.open("if (lane % 4 == 0)")
    lo.open(f"for (int r = 0; r < {rows}; ++r)")
    row = f"(warp / {warps_n}) * {m // layout.warps_m} + (r / 2) * 16 + 8 * (r % 2) + lane / 4"
    for buf, acc in zip(bufs, row_accs):
        lo.emit(f"{buf}[(warp % {warps_n}) * {m} + {row}] = {acc};")
    lo.close()
    lo.close()
    lo.barrier()
    lo.slot_loop(results[0].layout)
    lo.emit(f"const int row = {results[0].layout.flat_index('i')};")
    values = [f"{buf}[row]" for buf in bufs]
    for w in range(1, warps_n):
        values = lo.combine(region, values, [f"{buf}[{w * m} + row]" for buf in bufs], dtypes)
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
    bufs = _publish_per_warp(lo, accs, dtypes, offset, lane=0)
    for buf, acc in zip(bufs, accs):
        lo.emit(f"{acc} = {buf}[{first}];")
    lo.open(f"for (int w = 1; w < {warps}; ++w)")
    out = lo.combine(region, accs, [f"{b}[{first} + w]" for b in bufs], dtypes)
    for acc, v in zip(accs, out):
        lo.emit(f"{acc} = {v};")
    lo.close()
    # no barrier after the reads: the next writer of threadgroup memory starts with one


def _publish_per_warp(
    lo: Lowering, values: list[str], dtypes: list[T.DType], offset: int, lane: int
) -> list[str]:
    """Lane `lane` of every warp writes `values` to threadgroup arrays indexed by warp."""
    bufs = _per_warp_buffers(lo, dtypes, offset)
    lo.barrier()
    for buf, value in zip(bufs, values):
        lo.emit(f"if (lane == {lane}) {buf}[warp] = {value};")
    lo.barrier()
    return bufs


def _per_warp_buffers(lo: Lowering, dtypes: list[T.DType], offset: int) -> list[str]:
    """The threadgroup arrays, one value per warp, that `_publish_per_warp` fills at `offset`."""
    bufs = []
    for dt in dtypes:
        bufs.append(lo.scratch(dt, lo.warps, offset))
        offset += array_bytes(dt, lo.warps)
    return bufs


def _stage_all(lo: Lowering, values: list[ir.Value]) -> tuple[list[str], int]:
    """Writes blocks to threadgroup memory, one after another, between barriers.

    Returns:
        Each block's buffer and the first free byte after them.
    """
    offset = 0
    bufs = []
    lo.barrier()
    for v in values:
        dtype = lo.get(v).dtype
        bufs.append(lo.scratch(dtype, v.type.numel, offset))
        offset += array_bytes(dtype, v.type.numel)
        lo.stage_out(v, bufs[-1])
    lo.barrier()
    return bufs, offset


# --------------------------------------------------------------------------- scans


@lowers("scan")
def _lower_scan(lo: Lowering, op: ir.Op) -> None:
    inputs = [lo.get(v) for v in op.operands]
    dtypes = _acc_dtypes(op.regions[0], [e.dtype for e in inputs])
    shape = op.operands[0].type.shape
    outer, length, inner = _group_geometry(shape, op.attrs["axis"])
    groups = outer * inner
    reverse = op.attrs.get("reverse", False)
    region = op.regions[0]
    threads = lo.threads
    results = [lo.new_entity(r) for r in op.results]
    layout = inputs[0].layout
    if groups == 1 and inner == 1 and not reverse and isinstance(layout, Layout) and not layout.replicated:
        _scan_in_registers(lo, op, inputs, results, dtypes)
        return
    lo.open()
    bufs, offset = _stage_all(lo, op.operands)

    def at(g: str, q: str) -> list[str]:
        pos = f"({length - 1} - ({q}))" if reverse else q
        return [f"{b}[{_group_element(g, pos, length, inner)}]" for b in bufs]

    def scan_run(g: str, start: str, count: str, totals: list[str]) -> None:
        """Inclusive scan of positions [start, start + count) of group g, in place."""
        for t, first, dt in zip(totals, at(g, start), dtypes):
            lo.emit(f"{lo.ctype(dt)} {t} = {first};")
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
    vec, threads = layout.vec, lo.threads
    lo.open()
    lo.emit("const int p = tid;")
    regs = [lo.fresh("r") for _ in inputs]
    for r, e, dt in zip(regs, inputs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {r}[{layout.slots}];")
        lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {r}[i] = {e.at()};")
    carry = [lo.fresh("carry") for _ in inputs]
    for c, dt in zip(carry, dtypes):
        lo.emit(f"{lo.ctype(dt)} {c};")
    carry_offset = sum(array_bytes(dt, lo.warps) for dt in dtypes)  # after the per-warp totals
    for k in range(layout.reps):
        first, last = k * vec, k * vec + vec - 1
        for j in range(first + 1, last + 1):
            out = lo.combine(region, [f"{r}[{j - 1}]" for r in regs], [f"{r}[{j}]" for r in regs], dtypes)
            for r, v in zip(regs, out):
                lo.emit(f"{r}[{j}] = {v};")
        excl = _exclusive_lane_scan(lo, op, [f"{r}[{last}]" for r in regs], dtypes, threads, 0)
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
        if k + 1 < layout.reps and lo.warps > 1:
            # the carry grows by the stretch's total: the combined per-warp totals the lane scan
            # published (no barrier: the next writer of threadgroup memory starts with one)
            warp_totals = _per_warp_buffers(lo, dtypes, 0)
            totals = [lo.fresh("tot") for _ in regs]
            for t, buf, dt in zip(totals, warp_totals, dtypes):
                lo.emit(f"{lo.ctype(dt)} {t} = {buf}[0];")
            lo.open(f"for (int w = 1; w < {lo.warps}; ++w)")
            for t, v in zip(totals, lo.combine(region, totals, [f"{b}[w]" for b in warp_totals], dtypes)):
                lo.emit(f"{t} = {v};")
            lo.close()
            new_carry = lo.combine(region, carry, totals, dtypes) if k else totals
            for c, v in zip(carry, new_carry):
                lo.emit(f"{c} = {v};")
        elif k + 1 < layout.reps:  # one warp: the last thread's inclusive value, through memory
            bufs = [lo.scratch(dt, 1, carry_offset + 16 * n) for n, dt in enumerate(dtypes)]
            lo.barrier()
            for buf, r in zip(bufs, regs):
                lo.emit(f"if (tid == {threads - 1}) {buf}[0] = {r}[{last}];")
            lo.barrier()
            for c, buf in zip(carry, bufs):
                lo.emit(f"{c} = {buf}[0];")
    for res, r in zip(results, regs):
        lo.emit(
            f"for (int i = 0; i < {layout.slots}; ++i) {res.name}[i] = static_cast<{lo.ctype(res.dtype)}>({r}[i]);"
        )
    lo.close()


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
    for name, t, dt in zip(incl, totals, dtypes):
        lo.emit(f"{lo.ctype(dt)} {name} = {t};")
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
    bufs = _publish_per_warp(lo, incl, dtypes, offset, lane=31)  # each warp's inclusive total
    first = "(warp - p / 32)"
    pre = [lo.fresh("pw") for _ in excl]
    for name, buf, dt in zip(pre, bufs, dtypes):
        lo.emit(f"{lo.ctype(dt)} {name} = {buf}[{first}];")
    lo.open(f"for (int w = {first} + 1; w < warp; ++w)")
    out = lo.combine(region, pre, [f"{b}[w]" for b in bufs], dtypes)
    for name, v in zip(pre, out):
        lo.emit(f"{name} = {v};")
    lo.close()
    combined = lo.combine(region, pre, excl, dtypes)
    final = []
    for e, pw, c, dt in zip(excl, pre, combined, dtypes):
        name = lo.fresh("ex")
        lo.emit(f"{lo.ctype(dt)} {name} = (p / 32 == 0) ? {e} : ((p % 32 == 0) ? {pw} : {c});")
        final.append(name)
    return final


# --------------------------------------------------------------------------- dot


@lowers("dot")
def _lower_dot(lo: Lowering, op: ir.Op) -> None:
    a_v, b_v, acc_v = op.operands
    if len(a_v.type.shape) != 2:
        raise UnsupportedError(
            f"{lo.loc}: batched (3-D) tl.dot is not supported by the {lo.d.name} backend yet"
        )
    (m, k), (_, n) = a_v.type.shape, b_v.type.shape
    acc = lo.get(acc_v)
    result = lo.new_entity(op.result)
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
    fragments = lo.dots.fragments.get(id(op))
    if fragments is not None:
        _dot_fragments(lo, unit, op, acc, result, fragments)
        return
    layout = result.layout
    if use_unit:
        stage_ctype = unit.stage.format(t=lo.ctype(in_dtype))
        stage_dtype = T.float32 if stage_ctype == "float" else in_dtype
    else:
        stage_dtype = T.int32 if acc.dtype.is_int() else T.float32
    # float32 inputs under "tf32" are rounded as the tensor cores' are, wherever the dot runs
    tf32 = in_dtype == T.float32 and op.attrs.get("input_precision") == "tf32" and "round_tf32" in lo.d.extra
    lo.open()
    a_buf = lo.scratch(stage_dtype, m * k, 0)
    b_buf = lo.scratch(stage_dtype, k * n, array_bytes(stage_dtype, m * k))
    lo.barrier()
    rounding = lo.d.extra["round_tf32"] if tf32 else "{x}"
    for v, buf in ((a_v, a_buf), (b_v, b_buf)):
        _stage_operand(lo, v, buf, v.type.shape[1], stage_dtype, lambda x: rounding.format(x=x))
    lo.barrier()
    if use_unit:
        c_buf = _matrix_unit_tiles(lo, unit, m, n, k, a_buf, b_buf, lo.ctype(stage_dtype))
        lo.slot_loop(layout)
        lo.emit(
            f"{result.name}[i] = static_cast<{lo.ctype(result.dtype)}>({acc.at()} + {c_buf}[{layout.flat_index('i')}]);"
        )
        lo.close()
    else:
        lo.slot_loop(layout)
        lo.emit(f"const int e = {layout.flat_index('i')};")
        lo.emit(f"const int row = e / {n}, col = e % {n};")
        lo.emit(f"{lo.ctype(stage_dtype)} sum = 0;")
        lo.emit(f"for (int kk = 0; kk < {k}; ++kk) sum += {a_buf}[row * {k} + kk] * {b_buf}[kk * {n} + col];")
        lo.emit(f"{result.name}[i] = static_cast<{lo.ctype(result.dtype)}>({acc.at()} + sum);")
        lo.close()
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _dot_fragments(
    lo: Lowering,
    unit: MatrixUnit,
    dot: ir.Op,
    acc: Entity,
    result: Entity,
    layout: MmaLayout,
) -> None:
    """result = acc + A @ B with the result's slots as the accumulator fragments.

    A and B are staged in threadgroup memory with padded rows; each warp then loads, per
    k-step (16 for halves, 8 for TF32), one A fragment per 16-row tile and one B fragment per
    8-column tile of its region and multiplies every pair.
    """
    frag = unit.fragments
    a_v, b_v = dot.operands[:2]
    (m, k), n = a_v.type.shape, b_v.type.shape[1]
    in_dtype = a_v.type.elem
    tf32 = in_dtype == T.float32
    row_piece = 16 // in_dtype.itemsize  # elements in the 16 bytes ldmatrix reads of a row
    # (for TF32, B's rows are padded by 32 bytes: the element reads of a B fragment hit 32 banks)
    lda, ldb = fragment_strides(dot, frag)
    lo.open()
    # operands a pipelined loop prefetched sit in its current stage; the others are staged here
    staged = []
    bufs = []
    offset = 0
    b_load = lo.dots.transposed.get(id(b_v))  # B given as tl.trans of an (n, k) tile, staged as loaded
    b_tile = (b_load.result, k, lda, n) if b_load is not None else (b_v, n, ldb, k)
    for v, cols, ld, rows in ((a_v, k, lda, m), b_tile):
        pipelined = lo.dots.stage_tiles.get(id(v))
        if pipelined is not None:
            plan, tile = pipelined
            bufs.append(lo.shared_at(in_dtype, tile.at(plan, plan.stage_var)))
            continue
        bufs.append(lo.scratch(in_dtype, rows * ld, offset))
        offset += array_bytes(in_dtype, rows * ld)
        staged.append((v, bufs[-1], cols, ld))
    ldb = b_tile[2]
    a_buf, b_buf = bufs
    if staged:
        lo.barrier()
    for v, buf, cols, ld in staged:
        ent = lo.get(v)
        if ent.deferred is not None:
            _copy_to_shared(lo, ent.deferred, buf, cols, ld)
        else:
            _stage_operand(lo, v, buf, ld, in_dtype)
    if any(lo.get(v).deferred is not None for v, *_ in staged):
        lo.emit(frag.copy_wait)
    if staged:
        lo.barrier()
    lo.emit(f"for (int i = 0; i < {layout.slots}; ++i) {result.name}[i] = {acc.at()};")
    tiles_m, tiles_n = layout.tiles_m, layout.tiles_n
    row0 = f"(warp / {layout.warps_n}) * {m // layout.warps_m}"
    col0 = f"(warp % {layout.warps_n}) * {n // layout.warps_n}"
    lo.open(f"for (int kk = 0; kk < {k}; kk += {8 if tf32 else unit.k})")
    lo.emit(f"unsigned int fa[{4 * tiles_m}], fb[{2 * tiles_n}];")
    for mi in range(tiles_m):
        p = f"{a_buf} + ({row0} + {16 * mi} + lane % 16) * {lda} + kk + (lane / 16) * {row_piece}"
        lo.emit((frag.load_a_tf32 if tf32 else frag.load_a).format(r=f"fa + {4 * mi}", p=p))

    def b_tiles(pair: str, single: str, address: Callable[[int, bool], str]) -> None:
        """B fragments two 8-column tiles per load (`pair`, 4 registers), the odd last one
        alone (`single`); `address(ni, paired)` is what lane l passes for tile ni."""
        for ni in range(0, tiles_n - 1, 2):
            lo.emit(pair.format(r=f"fb + {2 * ni}", p=address(ni, True)))
        if tiles_n % 2:
            lo.emit(single.format(r=f"fb + {2 * (tiles_n - 1)}", p=address(tiles_n - 1, False)))

    if b_load is not None:
        # rows of B's transpose: lane l passes row l % 8 of the n-tile 8 * (l / 16) further on,
        # at k-offset l / 8 % 2 (8 halves or 4 floats): (B[k][g], B[k+1][g]) pairs are row g's
        b_tiles(
            frag.load_a,
            frag.load_bt,
            lambda ni, paired: (
                f"{b_buf} + ({col0} + {8 * ni}{' + (lane / 16) * 8' if paired else ''} + lane % 8)"
                f" * {ldb} + kk + ((lane / 8) % 2) * {row_piece}"
            ),
        )
        if tf32:
            lo.emit(frag.tf32_regs.format(r="fb", n=2 * tiles_n))
    elif tf32:
        for ni in range(tiles_n):
            p = f"{b_buf} + kk * {ldb} + {col0} + {8 * ni}"
            lo.emit(frag.load_b_tf32.format(r=f"fb + {2 * ni}", p=p, ld=ldb))
    else:
        b_tiles(
            frag.load_b2,
            frag.load_b,
            lambda ni, paired: (
                f"{b_buf} + (kk + lane % 16) * {ldb} + {col0} + {8 * ni}"
                + (" + (lane / 16) * 8" if paired else "")
            ),
        )
    t = lo.ctype(in_dtype)
    mma = frag.mma_tf32 if tf32 else frag.mma
    for mi in range(tiles_m):
        for ni in range(tiles_n):
            c = f"{result.name} + {4 * (mi * tiles_n + ni)}"
            lo.emit(mma.format(c=c, a=f"fa + {4 * mi}", b=f"fb + {2 * ni}", t=t))
    lo.close()
    lo.close()  # no trailing barrier: the next writer of threadgroup memory starts with one


def _stage_operand(
    lo: Lowering, v: ir.Value, buf: str, ld: int, dtype: T.DType, wrap: Callable[[str], str] = str
) -> None:
    """Writes a 2-D dot operand held in registers to threadgroup memory as `dtype` rows `ld`
    apart (`wrap` applied to each value); an operand given as tl.trans(x) is written from x."""
    rows, cols = v.type.shape
    src = lo.dots.transposes.get(id(v))
    ent = lo.get(src if src is not None else v)
    value = ent.at() if ent.dtype == dtype else render_cast(lo.d, ent.at(), ent.dtype, dtype)
    lo.slot_loop(ent.layout)
    lo.emit(f"const int e = {ent.layout.flat_index('i')};")
    # element e of x (cols x rows) is the operand's (e % rows, e / rows)
    if src is not None:
        at = f"(e % {rows}) * {ld} + e / {rows}"
    else:
        at = "e" if ld == cols else f"(e / {cols}) * {ld} + e % {cols}"
    lo.emit(f"{buf}[{at}] = {wrap(value)};")
    lo.close()


def _materialize(lo: Lowering, v: ir.Value, ent: Entity, layout: Layout) -> Entity:
    """A pure block value recomputed into registers of `layout`."""
    out = Entity(lo.fresh(), ent.dtype, layout, ent.base, ent.wide)
    elem = T.int64 if ent.wide else T.int32 if ent.base is not None else ent.dtype
    lo.emit(f"{lo.ctype(elem) if not elem.is_bool() else 'bool'} {out.name}[{layout.slots}];")
    lo.slot_loop(layout)
    lo.emit(f"{out.name}[i] = {lo.expr_at(v, layout.flat_index('i'))};")
    lo.close()
    return out


def _copy_to_shared(lo: Lowering, load: ir.Op, buf: str, cols: int, ld: int) -> None:
    """Performs a deferred load into a staged tile (rows of `cols` elements, `ld` apart):
    asynchronous vector copies where the chunk allows (masked elements zero-filled), element
    copies elsewhere."""
    frag = lo.d.matrix.fragments
    ptr_v, mask_v = load.operands[0], (load.operands[1] if len(load.operands) > 1 else None)
    ptr, mask = lo.get(ptr_v), (lo.get(mask_v) if mask_v is not None else None)
    layout = lo.layout_of(load.result)
    if isinstance(layout, MmaLayout) and lo.is_pure(ptr_v) and (mask_v is None or lo.is_pure(mask_v)):
        # A tile with a dot result's element count would copy in the accumulator layout's
        # pairs; its threads are free here: row-major chunks of up to 16 bytes, with the
        # addresses (and mask) recomputed at them.
        layout = Layout(layout.numel, lo.threads, lo.d.max_vec)
        ptr = _materialize(lo, ptr_v, ptr, layout)
        mask = _materialize(lo, mask_v, mask, layout) if mask is not None else None
    ctype = lo.ctype(ptr.dtype)
    zero = literal(lo.d, 0, ptr.dtype)
    vec = _vector_width(lo, ptr_v, layout, ptr.dtype)
    if vec == 1 or cols % vec:
        lo.slot_loop(layout)
        lo.emit(f"const int e = {layout.flat_index('i')};")
        value = f"{ptr.base}[{ptr.at()}]"
        lo.emit(
            f"{buf}[(e / {cols}) * {ld} + e % {cols}] = {f'{mask.at()} ? {value} : {zero}' if mask else value};"
        )
        lo.close()
        return
    nbytes = vec * ptr.dtype.itemsize
    chunk = _chunk(lo, ptr, mask, mask_v, vec)
    lo.open(f"for (int i = 0; i < {layout.slots}; i += {vec})")
    lo.emit(f"const int e = {layout.flat_index('i')};")
    lo.emit(f"{lo.d.shared_ptr.format(t=ctype)} dst = {buf} + (e / {cols}) * {ld} + e % {cols};")
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
