"""Associative scans along any axis: cumsum, cumprod, cummax, cummin, logcumsumexp, a linear
recurrence (`ssm`) and any user `@mtriton.jit` combine function.

Layout. An array of shape `(*outer, n, *inner)` scanned along the axis of size `n` is a set of
`outer * inner` rows; row `r` starts at `(r // inner) * n * inner + r % inner` and steps by
`inner`. The kernels take `n` and `inner` as arguments, so any axis is scanned in place, with
no transpose copy; consecutive rows are adjacent in memory when the axis is not the last, so
a program's tile of (BLOCK_R rows, BLOCK_N steps) loads coalesced either way.

Scan order. A reverse scan reads step `s` from position `n - 1 - s` and runs forward: the same
semantics as `tl.associative_scan(reverse=True)` (the accumulated suffix is the combine's first
operand), and it keeps the masked padding of the last block at the end of the scan order, where
it reaches no valid output, so a user combine function needs no identity there. An exclusive
scan is an inclusive scan of its input shifted by one step in scan order, with the operator's
identity shifted in at step 0; the backward passes use the same shift on some inputs only.

Long rows. A row of up to MAX_BLOCK_N elements is one block, scanned by one program (several
rows per program when they are short). A longer row is split into blocks, reduce-then-scan:
one launch writes each block's total (`PARTIALS`), the totals are scanned by the same function
(recursively: log_B(n) levels), and a second launch rescans each block and combines it with the
total of everything before it (the previous block's inclusive total; block 0 takes none, so no
identity is needed there either). Block totals come from a tree reduction for the commutative
built-ins and from the block's scan otherwise. Two launches per level (a 2**24 row: 4096 blocks,
whose totals are one block: three launches in all) and no Python loop over rows or blocks; the
input is read twice and the output written once.

Precision. float32, float16 and bfloat16 accumulate in float32 (block totals too) and round
once at the store; integer scans are exact in their own type (wrapping as the type does).

Gradients (`mx.custom_function`) for `add`, `mul`, `logaddexp` and `ssm` are scans too:
`add`'s is the opposite-direction scan of the cotangent; `mul`'s and `ssm`'s are the
opposite-direction linear recurrence lambda[t] = g[t] + a[t+1] * lambda[t+1] (no division by
x, so zeros are fine), times the exclusive product (`mul`) or the previous state (`ssm`'s A);
`logaddexp`'s is two opposite-direction log-sum-exp scans of the cotangent's positive and
negative parts.

The environment variable `MLX_PRIMITIVES_MIN_SEQ_FOR_METAL` (default 0: always these kernels)
sends scans of the built-in operators `add`, `mul`, `max`, `min` and `logaddexp` whose axis is
shorter than it to MLX's own `mx.cumsum`, `mx.cumprod`, `mx.cummax`, `mx.cummin` and
`mx.logcumsumexp` (read at every call). `ssm` and user combine functions always run here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import mtriton as triton
import mtriton.language as tl

from ._common import FLOAT_DTYPES, check_array, dtype_name, pow2_block, tile_rows

INT_DTYPES = (mx.int8, mx.int16, mx.int32, mx.int64, mx.uint8, mx.uint16, mx.uint32, mx.uint64)
SCAN_DTYPES = (*FLOAT_DTYPES, *INT_DTYPES)
OPERATORS = ("add", "mul", "max", "min", "logaddexp", "ssm")
# Operators that MLX has a built-in scan for: the MLX_PRIMITIVES_MIN_SEQ_FOR_METAL fallback.
BUILTIN_SCANS = {
    "add": mx.cumsum,
    "mul": mx.cumprod,
    "max": mx.cummax,
    "min": mx.cummin,
    "logaddexp": mx.logcumsumexp,
}
MIN_SEQ_ENV = "MLX_PRIMITIVES_MIN_SEQ_FOR_METAL"
# Elements per program tile (32 per thread at 4 warps) and the longest block one program scans.
TILE = 4096
MAX_BLOCK_N = 4096
# Arrays of this many elements or more take int64 offsets (steps run to twice the size).
WIDE_ELEMENTS = 2**30
# Rows side by side in a program's tile when the scanned axis is strided (rows adjacent).
STRIDED_ROWS = 64
# A user combine function of a tuple of arrays takes at most this many arrays.
MAX_ARITY = 2

Combine = str | Callable[..., Any]


# --------------------------------------------------------------------------- combine functions


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _mul(a, b):
    return a * b


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _min(a, b):
    return tl.minimum(a, b)


@triton.jit
def _logaddexp(a, b):
    # log(exp(a) + exp(b)) = hi + log(1 + exp(lo - hi)); -inf (the identity) and equal values
    # (inf + inf included, where lo - hi is NaN) are taken apart exactly.
    hi = tl.maximum(a, b)
    lo = tl.minimum(a, b)
    both = tl.where(lo == hi, hi + 0.6931471805599453, hi + tl.log(1.0 + tl.exp(lo - hi)))
    return tl.where(lo == -float("inf"), hi, both)


@triton.jit
def _ssm(a1, b1, a2, b2):
    # (a1, b1) is everything before, (a2, b2) what follows: h = a2 * h_before + b2.
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _logaddexp_pair(a1, b1, a2, b2):
    return _logaddexp(a1, a2), _logaddexp(b1, b2)


_COMBINES = {"add": _add, "mul": _mul, "max": _max, "min": _min, "logaddexp": _logaddexp, "ssm": _ssm}
# Combines whose block totals may be summed as a tree, in any order (ssm's and users' keep theirs).
_COMMUTATIVE = (_add, _mul, _max, _min, _logaddexp, _logaddexp_pair)


# --------------------------------------------------------------------------- kernels
#
# A program's tile holds BLOCK_R rows and BLOCK_N scan steps. The backends spread a tile over
# the threads in row-major order, so neighbouring threads should touch neighbouring memory:
# rows along the tile's last axis (shape (BLOCK_N, BLOCK_R), scanned along AXIS 0)
# when the scanned axis is strided and rows are adjacent in memory, steps along it (shape
# (BLOCK_R, BLOCK_N), scanned along AXIS 1) when the scanned axis is the last.


@triton.jit
def _load_steps(ptr, id_ptr, base, row_mask, src, n, inner, REVERSE: tl.constexpr, F32: tl.constexpr):
    """The tile of `ptr` at scan steps `src` (broadcast against the rows at `base`); steps
    outside [0, n) read the identity (`id_ptr[0]`), or 0 without one (only padding past n)."""
    valid = row_mask & (src >= 0) & (src < n)
    if REVERSE:
        position = n - 1 - src
    else:
        position = src
    values = tl.load(ptr + (base + position * inner), mask=valid, other=0)
    if id_ptr is not None:
        values = tl.where(valid, values, tl.load(id_ptr))
    if F32:
        values = values.to(tl.float32)
    return values


@triton.jit(do_not_specialize=["n_rows", "n_blocks", "shift0", "shift1"])
def _scan_kernel(
    out0_ptr, out1_ptr, x0_ptr, x1_ptr, id0_ptr, id1_ptr, carry0_ptr, carry1_ptr,
    n_rows, n, inner, n_blocks, shift0, shift1,
    COMBINE: tl.constexpr, COMMUTATIVE: tl.constexpr, PARTIALS: tl.constexpr, REVERSE: tl.constexpr,
    F32_0: tl.constexpr, F32_1: tl.constexpr,
    WIDE: tl.constexpr, AXIS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One block of BLOCK_N scan steps of BLOCK_R rows: program `pid` takes row tile
    `pid // n_blocks`, block `pid % n_blocks`. A second input (`x1_ptr`) makes it a scan of
    pairs; input k is read `shift<k>` steps back in scan order.

    PARTIALS: stores the block's total at out[row, block] of a (n_rows, n_blocks) matrix (a
    tree reduction when COMMUTATIVE, else the scan's last step). Otherwise stores the block's
    scan, combined with carry[row, block - 1] (the inclusive total of the blocks before it)
    when `carry0_ptr` is given.
    """
    pid = tl.program_id(0)
    block = pid % n_blocks
    rows = (pid // n_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)
    local = tl.arange(0, BLOCK_N)
    steps = block * BLOCK_N + local
    if WIDE:
        rows = rows.to(tl.int64)
        steps = steps.to(tl.int64)
    if AXIS == 0:  # rows along the tile's last axis
        rows_2d = rows[None, :]
        steps_2d = steps[:, None]
        last = local[:, None] == BLOCK_N - 1
    else:
        rows_2d = rows[:, None]
        steps_2d = steps[None, :]
        last = local[None, :] == BLOCK_N - 1
    row_mask = rows_2d < n_rows
    base = (rows_2d // inner) * n * inner + rows_2d % inner
    v0 = _load_steps(x0_ptr, id0_ptr, base, row_mask, steps_2d - shift0, n, inner, REVERSE, F32_0)
    if x1_ptr is not None:
        v1 = _load_steps(x1_ptr, id1_ptr, base, row_mask, steps_2d - shift1, n, inner, REVERSE, F32_1)
    if PARTIALS and COMMUTATIVE:
        at = rows * n_blocks + block
        if x1_ptr is not None:
            t0, t1 = tl.reduce((v0, v1), AXIS, COMBINE)
            tl.store(out1_ptr + at, t1.to(out1_ptr.dtype.element_ty), mask=rows < n_rows)
        else:
            t0 = tl.reduce(v0, AXIS, COMBINE)
        tl.store(out0_ptr + at, t0.to(out0_ptr.dtype.element_ty), mask=rows < n_rows)
    else:
        if x1_ptr is not None:
            s0, s1 = tl.associative_scan((v0, v1), AXIS, COMBINE)
        else:
            s0 = tl.associative_scan(v0, AXIS, COMBINE)
        if PARTIALS:
            at = rows_2d * n_blocks + block + tl.zeros_like(steps_2d)
            tl.store(out0_ptr + at, s0.to(out0_ptr.dtype.element_ty), mask=last & row_mask)
            if x1_ptr is not None:
                tl.store(out1_ptr + at, s1.to(out1_ptr.dtype.element_ty), mask=last & row_mask)
        else:
            if carry0_ptr is not None:
                before = block > 0
                at = rows_2d * n_blocks + block - 1
                c0 = tl.broadcast_to(tl.load(carry0_ptr + at, mask=row_mask & before, other=0), s0.shape)
                if x1_ptr is not None:
                    c1 = tl.broadcast_to(tl.load(carry1_ptr + at, mask=row_mask & before, other=0), s1.shape)
                    t0, t1 = COMBINE(c0, c1, s0, s1)
                    s0 = tl.where(before, t0, s0)
                    s1 = tl.where(before, t1, s1)
                else:
                    s0 = tl.where(before, COMBINE(c0, s0), s0)
            mask = row_mask & (steps_2d < n)
            if REVERSE:
                offsets = base + (n - 1 - steps_2d) * inner
            else:
                offsets = base + steps_2d * inner
            tl.store(out0_ptr + offsets, s0.to(out0_ptr.dtype.element_ty), mask=mask)
            if x1_ptr is not None:
                tl.store(out1_ptr + offsets, s1.to(out1_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- launches


def _new_output(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """A buffer the launching kernel writes in full (tests swap in a poisoned one to check that)."""
    return triton.empty(shape, dtype)


def _accumulator(dtype: mx.Dtype) -> mx.Dtype:
    return mx.float32 if dtype in FLOAT_DTYPES else dtype


def _scan(
    xs: tuple[mx.array, ...],
    combine: Any,
    identities: tuple[mx.array | None, ...],
    axis: int,
    reverse: bool,
    shifts: tuple[int, ...],
    out_dtypes: tuple[mx.Dtype, ...],
) -> tuple[mx.array, ...]:
    """The inclusive scan along `axis` of `xs` (one array, or two scanned as pairs), each input
    shifted by `shifts` steps in scan order with its identity shifted in. Returns one array per
    input, of `out_dtypes`."""
    shape = tuple(xs[0].shape)
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    size = math.prod(shape)
    if size == 0:
        return tuple(mx.zeros(shape, dtype) for dtype in out_dtypes)
    n_rows = size // n
    strided = inner > 1
    if strided:  # rows are adjacent in memory: enough of them side by side to coalesce
        block_r = pow2_block(n_rows, STRIDED_ROWS)
        block_n = min(pow2_block(n, MAX_BLOCK_N), tile_rows(TILE, block_r))
    else:
        block_n = pow2_block(n, MAX_BLOCK_N)
        block_r = min(pow2_block(n_rows, TILE), tile_rows(TILE, block_n))
    n_blocks = triton.cdiv(n, block_n)
    grid = (triton.cdiv(n_rows, block_r) * n_blocks,)
    pair = len(xs) == 2
    x0, x1 = xs[0], xs[1] if pair else None
    # Inclusive scans read no identity: the padding past n reaches no output (see the top).
    id0 = identities[0] if shifts[0] else None
    id1 = identities[1] if pair and shifts[1] else None
    shift0, shift1 = shifts[0], shifts[1] if pair else 0
    meta = {
        "COMBINE": combine,
        "COMMUTATIVE": combine in _COMMUTATIVE,
        "F32_0": xs[0].dtype in FLOAT_DTYPES,
        "F32_1": pair and xs[1].dtype in FLOAT_DTYPES,
        "WIDE": size >= WIDE_ELEMENTS,
        "AXIS": 0 if strided else 1,
        "REVERSE": bool(reverse),
        "BLOCK_R": block_r,
        "BLOCK_N": block_n,
        # Triton's tutorials take 8 warps for rows of 4096 and more.
        "num_warps": 8 if block_r * block_n >= 4096 else 4,
    }
    args = (x0, x1, id0, id1)
    sizes = (n_rows, n, inner, n_blocks, shift0, shift1)
    carries: tuple[mx.array | None, ...] = (None, None)
    if n_blocks > 1:
        totals_dtypes = tuple(_accumulator(x.dtype) for x in xs)
        totals = tuple(_new_output((n_rows, n_blocks), dtype) for dtype in totals_dtypes)
        totals = _scan_kernel[grid].functional(
            totals[0], totals[1] if pair else None, *args, None, None, *sizes, PARTIALS=True, **meta
        )
        # Inclusive totals, in scan order already: block b takes carries[b - 1].
        carries = _scan(totals, combine, (None,) * len(xs), 1, False, (0,) * len(xs), totals_dtypes)
        if not pair:
            carries = (carries[0], None)
    outs = tuple(_new_output(shape, dtype) for dtype in out_dtypes)
    return tuple(
        _scan_kernel[grid].functional(
            outs[0], outs[1] if pair else None, *args, *carries, *sizes, PARTIALS=False, **meta
        )
    )


def _scalar(value: Any, dtype: mx.Dtype) -> mx.array:
    """`value` as a one-element array: kernels read identities through a pointer, exact in any
    dtype (a scalar argument would be an int32, int64 or float32)."""
    if dtype in INT_DTYPES:  # through NumPy: MLX cannot build uint64 values past int64's range
        return mx.array(np.array([value], dtype=dtype_name(dtype)))
    return mx.array([value], dtype=dtype)


def _identity(operator: str, dtype: mx.Dtype) -> mx.array:
    """The operator's identity in `dtype` (the accumulator's for the float dtypes)."""
    if operator in ("add", "ssm"):
        return _scalar(0, dtype)
    if operator == "mul":
        return _scalar(1, dtype)
    if operator == "logaddexp":
        return _scalar(-math.inf, dtype)
    if mx.issubdtype(dtype, mx.floating):
        return _scalar(-math.inf if operator == "max" else math.inf, dtype)
    info = np.iinfo(np.dtype(dtype_name(dtype)))
    return _scalar(info.min if operator == "max" else info.max, dtype)


def _builtin_scan(
    operator: str, x: mx.array, axis: int, reverse: bool, inclusive: bool, A: mx.array | None = None
) -> mx.array:
    """The scan of one of the OPERATORS with our kernels (identity shifted in when exclusive)."""
    shift = 0 if inclusive else 1
    if operator == "ssm":
        ones, zeros = _scalar(1, A.dtype), _scalar(0, x.dtype)
        _, h = _scan((A, x), _ssm, (ones, zeros), axis, reverse, (shift, shift), (A.dtype, x.dtype))
        return h
    (y,) = _scan(
        (x,), _COMBINES[operator], (_identity(operator, x.dtype),), axis, reverse, (shift,), (x.dtype,)
    )
    return y


# --------------------------------------------------------------------------- gradients


@mx.custom_function
def _add_scan(x: mx.array, axis: int, reverse: bool, inclusive: bool) -> mx.array:
    return _builtin_scan("add", x, axis, reverse, inclusive)


@_add_scan.vjp
def _add_scan_vjp(primals: tuple, cotangent: mx.array, output: mx.array) -> tuple:
    _, axis, reverse, inclusive = primals
    return _builtin_scan("add", cotangent, axis, not reverse, inclusive), None, None, None


def _recurrence_adjoint(
    a: mx.array, cotangent: mx.array, axis: int, reverse: bool, inclusive: bool
) -> mx.array:
    """lambda[t] = g[t'] + a[t + 1] * lambda[t + 1] in the opposite direction to `reverse`'s
    (t + 1: the step after t in the forward scan's order), with g[t'] = g[t] for an inclusive
    forward scan and g[t + 1] for an exclusive one: float32."""
    shifts = (1, 0 if inclusive else 1)
    ids = (_scalar(1, a.dtype), _scalar(0, cotangent.dtype))
    _, adjoint = _scan((a, cotangent), _ssm, ids, axis, not reverse, shifts, (mx.float32, mx.float32))
    return adjoint


@mx.custom_function
def _mul_scan(x: mx.array, axis: int, reverse: bool, inclusive: bool) -> mx.array:
    return _builtin_scan("mul", x, axis, reverse, inclusive)


@_mul_scan.vjp
def _mul_scan_vjp(primals: tuple, cotangent: mx.array, output: mx.array) -> tuple:
    # dx[k] = (product of x before k) * (sum over outputs t that x[k] enters of g[t] times the
    # product of x strictly between k and t): a recurrence, so zeros in x need no division.
    x, axis, reverse, inclusive = primals
    if inclusive:
        (before,) = _scan((x,), _mul, (_scalar(1, x.dtype),), axis, reverse, (1,), (mx.float32,))
    else:
        before = output  # an exclusive product is the product before k
    after = _recurrence_adjoint(x, cotangent, axis, reverse, inclusive)
    return (before * after).astype(x.dtype), None, None, None


@mx.custom_function
def _logaddexp_scan(x: mx.array, axis: int, reverse: bool, inclusive: bool) -> mx.array:
    return _builtin_scan("logaddexp", x, axis, reverse, inclusive)


@_logaddexp_scan.vjp
def _logaddexp_scan_vjp(primals: tuple, cotangent: mx.array, output: mx.array) -> tuple:
    # dx[k] = sum over outputs t that x[k] enters of g[t] * exp(x[k] - y[t]): log-sum-exp scans
    # of log|g| - y over the positive and the negative g apart keep it finite.
    x, axis, reverse, inclusive = primals
    g, y = cotangent.astype(mx.float32), output.astype(mx.float32)
    terms = mx.where(y == -math.inf, -math.inf, mx.log(mx.abs(g)) - y)
    positive = mx.where(g > 0, terms, -math.inf)
    negative = mx.where(g < 0, terms, -math.inf)
    shift = 0 if inclusive else 1
    ids = (_scalar(-math.inf, mx.float32),) * 2
    up, down = _scan(
        (positive, negative), _logaddexp_pair, ids, axis, not reverse, (shift, shift), (mx.float32,) * 2
    )
    xf = x.astype(mx.float32)
    return (mx.exp(xf + up) - mx.exp(xf + down)).astype(x.dtype), None, None, None


@mx.custom_function
def _ssm_scan(x: mx.array, A: mx.array, axis: int, reverse: bool, inclusive: bool) -> mx.array:
    return _builtin_scan("ssm", x, axis, reverse, inclusive, A)


@_ssm_scan.vjp
def _ssm_scan_vjp(primals: tuple, cotangent: mx.array, output: mx.array) -> tuple:
    # h[t] = A[t] h[t-1] + x[t]: dx = lambda, dA[t] = lambda[t] * h[t-1].
    x, A, axis, reverse, inclusive = primals
    adjoint = _recurrence_adjoint(A, cotangent, axis, reverse, inclusive)
    if inclusive:
        ids = (_scalar(1, A.dtype), _scalar(0, x.dtype))
        _, previous = _scan((A, x), _ssm, ids, axis, reverse, (1, 1), (mx.float32, mx.float32))
    else:
        previous = output  # an exclusive scan's output at t is h[t-1]
    return adjoint.astype(x.dtype), (adjoint * previous).astype(A.dtype), None, None, None


_DIFFERENTIABLE = {"add": _add_scan, "mul": _mul_scan, "logaddexp": _logaddexp_scan}


# --------------------------------------------------------------------------- public function


def _check_scanned(fn: str, name: str, x: object, like: mx.array | None) -> mx.array:
    check_array(fn, name, x)
    if x.dtype == mx.bool_:
        raise TypeError(
            f"[{fn}] {name} has dtype bool; supported: {', '.join(dtype_name(d) for d in SCAN_DTYPES)} "
            "(cast with .astype(mx.int32) for counts, or use max/min on uint8 for running any/all)"
        )
    if x.dtype not in SCAN_DTYPES:
        supported = ", ".join(dtype_name(d) for d in SCAN_DTYPES)
        raise TypeError(f"[{fn}] {name} has dtype {dtype_name(x.dtype)}; supported: {supported}")
    if like is not None and tuple(x.shape) != tuple(like.shape):
        raise ValueError(f"[{fn}] {name} has shape {tuple(x.shape)}; expected {tuple(like.shape)} to match x")
    if like is not None and x.dtype != like.dtype:
        raise TypeError(
            f"[{fn}] {name} has dtype {dtype_name(x.dtype)}; expected {dtype_name(like.dtype)} to match x"
        )
    return x


def _check_axis(fn: str, axis: object, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"[{fn}] axis has type {type(axis).__name__}; expected an int")
    if ndim == 0:
        raise ValueError(f"[{fn}] x is a scalar (shape ()); expected at least one axis to scan")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"[{fn}] axis is {axis}; expected an axis of x's {ndim} axes, in [{-ndim}, {ndim - 1}]"
        )
    return int(axis) % ndim


def _min_seq_for_builtin(fn: str) -> int:
    text = os.environ.get(MIN_SEQ_ENV, "0").strip() or "0"
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"[{fn}] {MIN_SEQ_ENV} is {text!r}; expected an integer length") from None
    return value


def associative_scan(
    x: mx.array | tuple[mx.array, ...],
    operator: Combine = "add",
    axis: int = -1,
    reverse: bool = False,
    inclusive: bool = True,
    A: mx.array | None = None,
    identity: Any = None,
) -> mx.array | tuple[mx.array, ...]:
    """Scan of `x` along `axis` with an associative operator.

    Args:
        x: The array to scan (float32, float16, bfloat16 or an integer dtype), or, with a user
            combine function of pairs, a tuple of two arrays of one shape.
        operator: "add" (cumsum), "mul" (cumprod), "max", "min", "logaddexp" (logcumsumexp),
            "ssm" (h[t] = A[t] * h[t-1] + x[t]), or an `@mtriton.jit` function combining two
            elements (two tuples of elements, flattened: `fn(a0, a1, b0, b1)`), as
            `tl.associative_scan` takes it; `fn(a, b)` with `a` the earlier part. It must be
            associative; it need not be commutative.
        axis: The axis to scan, of any stride; no copy is made to bring it last.
        reverse: Scan from the end of the axis: out[t] combines x[t], ..., x[n-1] (the later
            part first, as `tl.associative_scan(reverse=True)`).
        inclusive: Whether out[t] includes x[t]; an exclusive scan shifts the identity in.
        A: The decay of "ssm", of x's shape and dtype; only for "ssm".
        identity: The identity of a user combine function (a scalar, or a tuple of one per
            array), needed only for an exclusive scan; built-in operators know theirs.

    Returns:
        The scan, of x's shape and dtype (a tuple for a tuple `x`). Float inputs accumulate in
        float32; integer scans are exact in their type. "add", "mul", "logaddexp" and "ssm"
        (x and A) have gradients.

    Raises:
        ValueError: An unknown operator name, a bad axis, shapes that differ, a missing
            identity for an exclusive user scan, A missing for "ssm" or given for another
            operator.
        TypeError: An unsupported dtype, or dtypes that differ.
    """
    fn = "associative_scan"
    if isinstance(operator, str):
        if operator not in OPERATORS:
            raise ValueError(
                f"[{fn}] operator is {operator!r}; expected one of {', '.join(OPERATORS)} or an @mtriton.jit function"
            )
        if isinstance(x, (tuple, list)):
            raise TypeError(f"[{fn}] x is a {type(x).__name__}; operator {operator!r} scans one mx.array")
        if identity is not None:
            raise ValueError(f"[{fn}] identity is given; built-in operator {operator!r} has its own")
    elif not isinstance(operator, triton.JITFunction):
        raise TypeError(
            f"[{fn}] operator has type {type(operator).__name__}; expected one of {', '.join(OPERATORS)} "
            "or an @mtriton.jit function"
        )
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    if not 1 <= len(xs) <= MAX_ARITY:
        raise ValueError(f"[{fn}] x is a tuple of {len(xs)} arrays; expected 1 to {MAX_ARITY}")
    first = _check_scanned(fn, "x" if len(xs) == 1 else "x[0]", xs[0], None)
    for i, other in enumerate(xs[1:], 1):
        check_array(fn, f"x[{i}]", other)
        if tuple(other.shape) != tuple(first.shape):
            raise ValueError(
                f"[{fn}] x[{i}] has shape {tuple(other.shape)}; expected {tuple(first.shape)} to match x[0]"
            )
        _check_scanned(fn, f"x[{i}]", other, None)
    axis = _check_axis(fn, axis, first.ndim)
    if operator == "ssm":
        if A is None:
            raise ValueError(f"[{fn}] A is missing; operator 'ssm' needs A of x's shape {tuple(first.shape)}")
        _check_scanned(fn, "A", A, first)
        if first.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"[{fn}] x has dtype {dtype_name(first.dtype)}; 'ssm' supports float32, float16, bfloat16"
            )
    elif A is not None:
        raise ValueError(f"[{fn}] A is given for operator {operator!r}; only 'ssm' takes A")
    reverse, inclusive = bool(reverse), bool(inclusive)

    if isinstance(operator, str):
        if operator == "logaddexp" and first.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"[{fn}] x has dtype {dtype_name(first.dtype)}; 'logaddexp' supports float32, float16, bfloat16"
            )
        if operator in BUILTIN_SCANS and first.shape[axis] < _min_seq_for_builtin(fn):
            scan = BUILTIN_SCANS[operator]
            return scan(first, axis=axis, reverse=reverse, inclusive=inclusive).astype(first.dtype)
        if operator == "ssm":
            return _ssm_scan(first, A, axis, reverse, inclusive)
        if operator in _DIFFERENTIABLE and first.dtype in FLOAT_DTYPES:
            return _DIFFERENTIABLE[operator](first, axis, reverse, inclusive)
        return _builtin_scan(operator, first, axis, reverse, inclusive)

    identities: tuple[mx.array | None, ...] = (None,) * len(xs)
    if not inclusive:
        if identity is None:
            raise ValueError(
                f"[{fn}] identity is missing; an exclusive scan with a user combine function shifts it in"
            )
        values = tuple(identity) if isinstance(identity, (tuple, list)) else (identity,)
        if len(values) != len(xs):
            raise ValueError(
                f"[{fn}] identity has {len(values)} values; expected {len(xs)}, one per array of x"
            )
        identities = tuple(_scalar(v, a.dtype) for v, a in zip(values, xs))
    elif identity is not None:
        raise ValueError(f"[{fn}] identity is given for an inclusive scan; only exclusive scans use it")
    shifts = (0 if inclusive else 1,) * len(xs)
    outs = _scan(xs, operator, identities, axis, reverse, shifts, tuple(a.dtype for a in xs))
    return outs if isinstance(x, (tuple, list)) else outs[0]


# --------------------------------------------------------------------------- references


def associative_scan_reference(
    x: mx.array,
    operator: str = "add",
    axis: int = -1,
    reverse: bool = False,
    inclusive: bool = True,
    A: mx.array | None = None,
) -> mx.array:
    """`associative_scan` of a built-in operator in plain mx ops (float32 math for floats).

    "ssm" runs as a log-depth scan of (A, x) pairs: Hillis-Steele doubling, log2(n) steps of
    whole-array shifts and combines.
    """
    dtype = x.dtype
    work = x.astype(mx.float32) if dtype in FLOAT_DTYPES else x
    if operator in BUILTIN_SCANS:
        return BUILTIN_SCANS[operator](work, axis=axis, reverse=reverse, inclusive=inclusive).astype(dtype)
    if operator != "ssm":
        raise ValueError(
            f"[associative_scan_reference] operator is {operator!r}; expected one of {', '.join(OPERATORS)}"
        )
    a, h = mx.moveaxis(A.astype(mx.float32), axis, -1), mx.moveaxis(work, axis, -1)
    if reverse:
        a, h = a[..., ::-1], h[..., ::-1]
    n = h.shape[-1]
    if not inclusive:
        pad = [(0, 0)] * (h.ndim - 1) + [(1, 0)]
        a = mx.pad(a[..., : n - 1], pad, constant_values=1.0)
        h = mx.pad(h[..., : n - 1], pad, constant_values=0.0)
    step = 1
    while step < n:
        pad = [(0, 0)] * (h.ndim - 1) + [(step, 0)]
        a_before = mx.pad(a[..., : n - step], pad, constant_values=1.0)
        h_before = mx.pad(h[..., : n - step], pad, constant_values=0.0)
        a, h = a_before * a, a * h_before + h
        step *= 2
    if reverse:
        h = h[..., ::-1]
    return mx.moveaxis(h, -1, axis).astype(dtype)
