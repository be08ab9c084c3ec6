"""Removes ops whose results are never used and that have no side effects."""

from __future__ import annotations

from .. import ir


def _has_effect(op: ir.Op) -> bool:
    if op.name in ir.SIDE_EFFECT_OPS or op.name in ("yield", "condition"):
        return True
    return any(_has_effect(inner) for region in op.regions for inner in ir.walk(region))


def eliminate_dead_code(fn: ir.Function) -> None:
    """Deletes dead ops in place, iterating until nothing changes.

    Control-flow ops are kept when anything inside them has an effect, so a
    loop that only stores stays; a loop whose results are unused and that
    stores nothing goes.
    """
    while True:
        used: set[int] = set()
        for op in ir.walk(fn.body):
            used.update(id(v) for v in op.operands)
        removed = _sweep(fn.body, used)
        if not removed:
            return


def _sweep(block: ir.Block, used: set[int]) -> bool:
    removed = False
    kept = []
    for op in block.ops:
        for region in op.regions:
            removed |= _sweep(region, used)
        if not _has_effect(op) and not any(id(r) in used for r in op.results):
            removed = True
            continue
        kept.append(op)
    block.ops = kept
    return removed
