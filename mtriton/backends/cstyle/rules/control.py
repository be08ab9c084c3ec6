"""Rules for control flow: `for` (software-pipelined where `DotPlan.pipelines` says so),
`while`, `if`, the terminators, `debug_barrier` and the debug ops.

Control flow is on scalars, so it is uniform across a program's threads. Loop-carried and
yielded values are assigned to the loop's or the `if`'s result entities.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .... import ir
from ....errors import UnsupportedError
from ....ir import types as T
from ..entity import Entity
from ..registry import lowers
from ..software_pipeline import Pipeline
from .dot import stage_operand
from .memory import copy_to_shared

if TYPE_CHECKING:
    from ..lowering import Lowering


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
            raise lo.error(UnsupportedError, "a loop-carried pointer must stay inside one argument")
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
    lo.open(f"for ({ctype} {iv.name} = {lb.name}; {_in_range(lo, op, iv)}; {iv.name} += {step.name})")
    if plan and ahead:
        # this iteration's copies have landed, and every thread is done with the stage refilled next
        lo.emit(lo.d.matrix.fragments.copy_wait_group.format(n=plan.stages - 2))
        if plan.async_proxy:
            lo.emit(lo.d.matrix.warpgroup.proxy_fence)
        lo.barrier()
        prefetch = functools.partial(
            _prefetch, lo, plan, op, *ahead, f"({plan.stage_var} + {plan.stages - 1}) % {plan.stages}"
        )
        if plan.overlap:  # the body's first dot issues it while it multiplies
            lo.while_multiplying = prefetch
        else:
            prefetch()
    lo.env[id(body.args[0])] = iv
    _bind(lo, body.args[1:], carried)
    lo.block(ir.Block(ops=body.ops[:-1]))
    assert lo.while_multiplying is None, "a pipelined loop's prefetch was not issued"
    _assign(lo, carried, [lo.get(v) for v in body.ops[-1].operands])
    if plan:
        lo.emit(f"{plan.stage_var} = ({plan.stage_var} + 1) % {plan.stages};")
    lo.close()


def _in_range(lo: Lowering, loop: ir.Op, iv: Entity) -> str:
    """C condition: `iv` has not passed the loop's end, for a step of either sign (a constant
    step, or the grid size, picks its comparison; `range(n - 1, -1, -1)` counts down)."""
    ub, step = lo.get(loop.operands[1]), lo.get(loop.operands[2])
    known = lo.defs.get(id(loop.operands[2]))
    while known is not None and known.name == "cast":  # a constant widened to the loop's type
        known = lo.defs.get(id(known.operands[0]))
    if known is not None and known.name == "num_programs":  # the grid-stride loop's step: >= 1
        return f"{iv.name} < {ub.name}"
    if known is not None and known.name == "constant":
        return f"{iv.name} < {ub.name}" if known.attrs["value"] > 0 else f"{iv.name} > {ub.name}"
    return f"({step.name} > 0 ? {iv.name} < {ub.name} : {iv.name} > {ub.name})"


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
        stage_operand(lo, v, lo.shared_at(tile.dtype, tile.at(plan, "0")), tile.staging, tile.dtype)
    stage = lo.fresh("s")
    lo.open(f"for (int {stage} = 0; {stage} < {plan.stages - 1}; ++{stage})")
    _prefetch(lo, plan, loop, iv, ahead, stage)
    lo.close()
    return iv, ahead


def _prefetch(lo: Lowering, plan: Pipeline, loop: ir.Op, iv: Entity, ahead: list[Entity], stage: str) -> None:
    """Issues the copies of the iteration whose induction variable and carried values are
    `iv` and `ahead` into stage `stage`, commits them as one group, then advances both."""
    body, step = loop.regions[0], lo.get(loop.operands[2])
    frag = lo.d.matrix.fragments
    outer = dict(lo.env)
    lo.env[id(body.args[0])] = iv
    _bind(lo, [body.args[1 + k] for k in plan.carried], ahead)
    lo.open(f"if ({_in_range(lo, loop, iv)})")
    for address in plan.address_ops:
        lo.op(address)
    for load in plan.loads:
        _, tile = lo.dots.stage_tiles[id(load.result)]
        buf = lo.shared_at(tile.dtype, tile.at(plan, stage))
        copy_to_shared(lo, load, buf, tile.staging)
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
                raise lo.error(
                    UnsupportedError, "the branches of an `if` yield pointers into different arguments"
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
