"""Software pipelining of `dot` operand loads in loops (`num_stages`), Triton's pipeliner in small.

A `for` loop whose body feeds register-fragment dots from deferred loads (see
`dot_plan.py`) keeps `num_stages` copies of those operand tiles in threadgroup memory (the
loop's own `num_stages` attribute, from `tl.range`, else the kernel's). While iteration i multiplies the tiles of stage i % S, the asynchronous copies of
iterations i+1 .. i+S-1 are in flight:

    prologue:  for s < S-1: issue the copies of iteration s into stage s; commit
    iteration i:
        wait until the copies of iteration i have landed; barrier
        issue the copies of iteration i+S-1 into stage (i+S-1) % S (read by iteration i-1,
        which every thread has finished: the barrier); commit
        the body, whose dots read stage i % S

(Where the body's first dot runs on the warpgroup unit, the copies are issued once that dot's
instructions are, while it multiplies: `Pipeline.overlap`.)

The copies of a later iteration need its pointers and masks before the body computes them:
they are recomputed "ahead" from copies of the loop-carried values they depend on, advanced
each iteration by the ops that compute those values' yields. A loop qualifies when those ops
depend only on the induction variable, such carried values and values from outside the loop,
and the body writes no memory (a store could change what a prefetched load reads).

`plan_loop` decides this for one loop (`dot_plan.py` places the tiles); the `for` rule
(`rules/control.py`) writes the prologue and the prefetches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import ir
from ...ir import types as T
from .shared_memory import Staging

# Shared memory left to the rest of the kernel when the stages take the largest share.
RESERVED_BYTES = 48 * 1024


@dataclass
class Tile:
    """One dot operand of a pipelined loop in threadgroup memory: a prefetched load (one copy
    per stage) or a value from outside the loop (staged once, before it)."""

    offset: int  # bytes from the start of threadgroup memory (of stage 0)
    staging: Staging  # where its elements sit
    dtype: T.DType
    per_stage: bool = True

    def at(self, plan: Pipeline, stage: str) -> str:
        """The C byte offset of this tile in stage `stage`."""
        return f"{self.offset} + ({stage}) * {plan.stage_bytes}" if self.per_stage else str(self.offset)


@dataclass
class Pipeline:
    """The plan for one `for` op.

    Attributes:
        stages: copies of each tile kept in flight (>= 2).
        loads: the deferred loads the loop prefetches, in body order.
        address_ops: body ops computing those loads' pointers and masks, in body order.
        carried: indices (into the body's loop-carried arguments) of the values they read.
        advance_ops: body ops computing the yields of `carried`, in body order.
        invariant: dot operands from outside the loop, staged once before it.
        stage_bytes: bytes of one stage of the prefetched tiles.
        stage_var: C name of the current stage index (set while lowering the loop).
        async_proxy: whether warpgroup dots read the stages (through the async proxy: the
            copies are fenced for it before the barrier that publishes them).
        overlap: whether the body's first dot on the stages runs on the warpgroup unit: the
            prefetch is then issued while it multiplies (after its commit, before its wait),
            not before it. The barrier that starts the iteration already follows every
            thread's wait for the previous iteration's dots, so the stage it refills is free.
    """

    stages: int
    loads: list[ir.Op]
    address_ops: list[ir.Op]
    carried: list[int]
    advance_ops: list[ir.Op]
    invariant: list[ir.Value] = field(default_factory=list)
    stage_bytes: int = 0
    stage_var: str = ""
    async_proxy: bool = False
    overlap: bool = False


def _slice(body: ir.Block, roots: list[ir.Value]) -> tuple[set[int], set[int]] | None:
    """Ids of the body ops `roots` depend on and ids of the body arguments they read; None
    when that takes a load, a dot, a region or a side effect."""
    defs = {id(r): op for op in body.ops for r in op.results}
    args = {id(a) for a in body.args}
    ops: set[int] = set()
    read: set[int] = set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if id(v) in args:
            read.add(id(v))
            continue
        op = defs.get(id(v))
        if op is None or id(op) in ops:
            continue  # defined outside the loop, or seen
        if op.name in ("load", "dot") or op.regions or op.name in ir.SIDE_EFFECT_OPS:
            return None
        ops.add(id(op))
        stack.extend(op.operands)
    return ops, read


def plan_loop(loop: ir.Op, deferred: set[int], stages: int) -> Pipeline | None:
    """The pipeline for `loop` when its body prefetches deferred loads, else None."""
    body = loop.regions[0]
    if stages < 2 or any(op.name in ir.SIDE_EFFECT_OPS for op in ir.walk(body)):
        return None
    loads = [op for op in body.ops if op.name == "load" and id(op.result) in deferred]
    if not loads:
        return None
    found = _slice(body, [v for op in loads for v in op.operands])
    if found is None:
        return None
    address, read = found
    carried_args = body.args[1:]
    yields = body.ops[-1].operands
    # The carried values the addresses read, closed under what their own updates read.
    wanted = {k for k, a in enumerate(carried_args) if id(a) in read}
    while True:
        found = _slice(body, [yields[k] for k in wanted])
        if found is None:
            return None
        advance, more = found
        grown = wanted | {k for k, a in enumerate(carried_args) if id(a) in more}
        if grown == wanted:
            break
        wanted = grown
    return Pipeline(
        stages=stages,
        loads=loads,
        address_ops=[op for op in body.ops if id(op) in address],
        carried=sorted(wanted),
        advance_ops=[op for op in body.ops if id(op) in advance],
    )
