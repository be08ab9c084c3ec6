"""Rules for `reduce`, `scan` and `dot`.

A combine region written as one op on its two arguments (`add`, `maximum`, ...)
maps to the matching MLX reduction or cumulative op. Any other region runs on
whole arrays: its scalar arguments are bound to arrays of every pair being
combined, by giving the region's frame a batch that spans them.

Sums and products of float16/bfloat16 accumulate in float32 and round once at
the end, as GPU backends do; a generic region combines in the element type.
Max and min pass over NaNs, as the IR's `maximum`/`minimum` do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from mtriton.ir import Block, Op, walk

from .machine import Frame, Runtime, elem_of, executes, expand_to, mx_dtype, pack

Reduction = Callable[..., mx.array]


def _ignoring_nan(reduce: Reduction, identity: float, scan: bool) -> Reduction:
    """`reduce` (a max or min, or their cumulative forms) that passes over NaNs, as the IR's
    `maximum`/`minimum` do (C's fmax/fmin): NaN only where every element reduced is NaN."""

    def run(x: mx.array, axis: int, **kwargs: Any) -> mx.array:
        if not mx.issubdtype(x.dtype, mx.floating):
            return reduce(x, axis=axis, **kwargs)
        nan = mx.isnan(x)
        out = reduce(mx.where(nan, identity, x), axis=axis, **kwargs)
        if scan:  # NaN until the first number
            seen = mx.cummax(mx.logical_not(nan).astype(mx.int32), axis=axis, **kwargs) > 0
        else:
            seen = mx.logical_not(mx.all(nan, axis=axis))
        return mx.where(seen, out, float("nan"))

    return run


_REDUCTIONS: dict[str, Reduction] = {
    "add": mx.sum,
    "mul": mx.prod,
    "maximum": _ignoring_nan(mx.max, float("-inf"), scan=False),
    "minimum": _ignoring_nan(mx.min, float("inf"), scan=False),
}
# On i1, max is `or` and min is `and`; `add` and `xor` wrap, so they take the generic path.
_BOOL_REDUCTIONS: dict[str, Reduction] = {
    "and": mx.all,
    "mul": mx.all,
    "minimum": mx.all,
    "or": mx.any,
    "maximum": mx.any,
}
_SCANS: dict[str, Reduction] = {
    "add": mx.cumsum,
    "mul": mx.cumprod,
    "maximum": _ignoring_nan(mx.cummax, float("-inf"), scan=True),
    "minimum": _ignoring_nan(mx.cummin, float("inf"), scan=True),
}
_WIDENED = ("add", "mul")


def _single_op(region: Block) -> str | None:
    """The name of the combine op when `region` is exactly `yield op(a, b)`."""
    if len(region.args) != 2 or len(region.ops) != 2:
        return None
    body, terminator = region.ops
    a, b = region.args
    if terminator.operands != body.results or body.operands not in ([a, b], [b, a]):
        return None
    return body.name


def _accumulator(name: str, x: mx.array) -> mx.array:
    if name in _WIDENED and x.dtype in (mx.float16, mx.bfloat16):
        return x.astype(mx.float32)
    return x


def _combine(frame: Frame, region: Block, left: list[mx.array], right: list[mx.array]) -> list[Runtime]:
    """Runs the combine region elementwise over `left` and `right`.

    A region may read scalars of the enclosing frame (IR regions see the values
    around them); those are broadcast over the region's wider batch.
    """
    batch = left[0].shape
    inner = set(region.args) | {r for op in walk(region) for r in op.results}
    captured = {v for op in walk(region) for v in op.operands if v not in inner}
    env = {v: mx.broadcast_to(expand_to(frame.env[v], len(batch)), batch) for v in captured}
    return Frame(batch, None, env, frame.launch).run(region, left + right)


def _tree_reduce(frame: Frame, region: Block, xs: list[mx.array]) -> list[Runtime]:
    """Reduces the last axis by combining neighbours, log2(n) rounds.

    Neighbouring pairs keep left-right order, so non-commutative combines
    (argmax's tie-break to the left) see their operands as a sequential fold
    would. An odd element out is carried to the next round unchanged.
    """
    n = xs[0].shape[-1]
    while n > 1:
        pairs = n // 2
        left = [x[..., 0 : 2 * pairs : 2] for x in xs]
        right = [x[..., 1 : 2 * pairs : 2] for x in xs]
        merged = _combine(frame, region, left, right)
        if n % 2:
            merged = [mx.concatenate([m, x[..., -1:]], axis=-1) for m, x in zip(merged, xs)]
        xs, n = merged, pairs + n % 2
    return [x[..., 0] for x in xs]


@executes("reduce")
def _reduce(frame: Frame, op: Op, args: list[Runtime]) -> Any:
    axis = len(frame.batch) + op.attrs["axis"]
    region = op.regions[0]
    name = _single_op(region)
    if len(args) == 1 and name is not None:
        x = args[0]
        table = _BOOL_REDUCTIONS if x.dtype == mx.bool_ else _REDUCTIONS
        if name in table:
            out = table[name](_accumulator(name, x), axis=axis)
            return out.astype(mx_dtype(elem_of(op.result)))
    xs = [mx.moveaxis(x, axis, -1) for x in args]
    return pack(op, _tree_reduce(frame, region, xs))


def _hillis_steele(frame: Frame, region: Block, xs: list[mx.array]) -> list[Runtime]:
    """Inclusive scan along the last axis: each round combines with the element `shift` back."""
    n = xs[0].shape[-1]
    shift = 1
    while shift < n:
        merged = _combine(frame, region, [x[..., : n - shift] for x in xs], [x[..., shift:] for x in xs])
        xs = [mx.concatenate([x[..., :shift], m], axis=-1) for x, m in zip(xs, merged)]
        shift *= 2
    return xs


@executes("scan")
def _scan(frame: Frame, op: Op, args: list[Runtime]) -> Any:
    axis = len(frame.batch) + op.attrs["axis"]
    reverse = bool(op.attrs.get("reverse", False))
    region = op.regions[0]
    name = _single_op(region)
    if len(args) == 1 and name in _SCANS and args[0].dtype != mx.bool_:
        x = args[0]
        out = _SCANS[name](_accumulator(name, x), axis=axis, reverse=reverse)
        return out.astype(x.dtype)
    # A reverse scan is a forward scan of the flipped block, flipped back: the
    # combine's left operand is the running value from the far end.
    xs = [mx.moveaxis(x, axis, -1) for x in args]
    if reverse:
        xs = [x[..., ::-1] for x in xs]
    xs = _hillis_steele(frame, region, xs)
    if reverse:
        xs = [x[..., ::-1] for x in xs]
    return pack(op, [mx.moveaxis(x, -1, axis) for x in xs])


@executes("dot")
def _dot(frame: Frame, op: Op, args: list[Runtime]) -> mx.array:
    """`acc + a @ b`, batched over the programs by `mx.matmul`.

    All float inputs multiply in float32 (float64 if either side or the
    accumulator is float64): `input_precision` "tf32"/"tf32x3" are computed as
    exact float32, a superset of their precision. Integer inputs multiply in
    float64, exact for int8 products summed over any realistic K, and add to
    the accumulator in int64 before wrapping to its type.
    """
    a, b, acc = args
    src = elem_of(op.operands[0])
    out = mx_dtype(elem_of(op.result))
    if src.is_int():
        with mx.stream(mx.cpu):  # MLX computes float64 only on the CPU
            product = mx.matmul(a.astype(mx.float64), b.astype(mx.float64)).astype(mx.int64)
            return (product + acc.astype(mx.int64)).astype(out)
    wide = mx.float64 if mx.float64 in (a.dtype, b.dtype, acc.dtype) else mx.float32
    product = mx.matmul(a.astype(wide), b.astype(wide))
    return (product + acc.astype(wide)).astype(out)
