"""Rules for structured control flow: `for`, `while` and `if` over all programs at once.

Programs of a chunk may disagree on a branch or a trip count, so regions run
under an active mask and results merge back with `where`. When every active
program agrees, which is the common case, a region runs without a new mask and
nothing is merged. Loops evaluate their state after each iteration so the lazy
graph stays small, and because trip counts and exits must be known in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from mtriton import options
from mtriton.ir import Op

from .machine import (
    Frame,
    InterpreterError,
    Runtime,
    arrays_of,
    elem_of,
    executes,
    mx_dtype,
    pack,
    select,
)


def _sync(frame: Frame, values: Sequence[Runtime | None], *flags: mx.array) -> None:
    """Evaluates loop state, pending writes and `flags` in one go."""
    mx.eval(*flags, *arrays_of(values), *frame.memory.live())


def _trip_counts(frame: Frame, op: Op, lower: mx.array, upper: mx.array, step: mx.array) -> np.ndarray:
    """Per-program trip counts of a `for`, 0 for inactive programs."""
    lower, upper, step = (np.array(x.astype(mx.int64)) for x in (lower, upper, step))
    active = np.ones(lower.shape, bool) if frame.active is None else np.array(frame.active)
    if np.any(active & (step == 0)):
        raise InterpreterError(f"`for` loop with step 0 at {op.loc}")
    span = np.where(step > 0, upper - lower, lower - upper)
    stride = np.maximum(np.abs(step), 1)
    return np.where(active, np.maximum(-(-span // stride), 0), 0)


@executes("for")
def _for(frame: Frame, op: Op, args: list[Runtime]) -> Any:
    lower, upper, step, *carried = args
    body = op.regions[0]
    iv_dtype = mx_dtype(elem_of(body.args[0]))
    trips = _trip_counts(frame, op, lower, upper, step)
    counted = trips if frame.active is None else trips[np.array(frame.active)]
    # Inactive programs' values are don't-cares, so agreement among the active
    # ones is enough to skip masking.
    uniform = counted.size == 0 or counted.min() == counted.max()
    for k in range(int(trips.max(initial=0))):
        iv = (lower + step * k).astype(iv_dtype)
        if uniform:
            carried = frame.run(body, [iv, *carried])
        else:
            running = mx.array(trips > k)
            updated = frame.masked(running).run(body, [iv, *carried])
            carried = [select(running, new, old, op) for new, old in zip(updated, carried)]
        _sync(frame, carried)
    return pack(op, carried)


@executes("while")
def _while(frame: Frame, op: Op, args: list[Runtime]) -> Any:
    before, after = op.regions
    state: list[Runtime] = list(args)
    active = frame.active
    results: list[Runtime] | None = None
    limit = options.interpreter_loop_limit()
    for _ in range(limit + 1):
        cond, *values = frame.masked(active).run(before, state)
        if results is None or active is None:
            results = values
        else:
            # Programs that left earlier keep the values they left with.
            results = [select(active, new, old, op) for new, old in zip(values, results)]
        going = cond if active is None else mx.logical_and(active, cond)
        any_going, all_going = mx.any(going), mx.all(going)
        _sync(frame, [*results, *values], any_going, all_going)
        if not any_going.item():
            return pack(op, results)
        if not (active is None and all_going.item()):
            active = going
        state = frame.masked(active).run(after, values)
    raise InterpreterError(
        f"a `while` loop ran {limit} iterations without ending (MTRITON_INTERPRETER_LOOP_LIMIT) at {op.loc}"
    )


@executes("if")
def _if(frame: Frame, op: Op, args: list[Runtime]) -> Any:
    cond = args[0]
    then, otherwise = op.regions
    taken, skipped = cond, mx.logical_not(cond)
    if frame.active is not None:
        taken = mx.logical_and(frame.active, taken)
        skipped = mx.logical_and(frame.active, skipped)
    any_taken, any_skipped = mx.any(taken), mx.any(skipped)
    mx.eval(any_taken, any_skipped)
    if not any_skipped.item():
        return pack(op, frame.run(then, []))
    if not any_taken.item():
        return pack(op, frame.run(otherwise, []))
    then_values = frame.masked(taken).run(then, [])
    else_values = frame.masked(skipped).run(otherwise, [])
    merged = [select(cond, a, b, op) for a, b in zip(then_values, else_values, strict=True)]
    return pack(op, merged)
