"""Normalization layers: RMSNorm, LayerNorm, residual add + RMSNorm, RMSNorm fused into a linear layer.

Every function normalizes the last axis of `x` (any leading batch shape, flattened to rows),
keeps `x`'s dtype (float32, float16 or bfloat16) and accumulates in float32. One program
handles one row. Forward kernels hold rows of up to `_MAX_ROW_IN_BLOCK` columns in registers
and read them once; longer rows, and the backward kernels, walk the row in chunks of at most
`_MAX_BLOCK` columns as in Triton's layer-norm tutorial, so rows of any length work.

Gradients come from `mx.custom_function`s whose VJPs are kernels too. They recompute each
row's statistics from `x` rather than saving them in the forward pass, which keeps the
forward outputs exactly what the caller asked for; that costs RMSNorm nothing (its sums ride
along the pass that reads `x` and `dy` anyway) and LayerNorm one more read of each row.
Weight and bias gradients are sums over rows: each backward program adds its group of rows
into one row of float32 partial sums, and a second kernel sums the partials.

Two kernels read back global memory that the same program wrote earlier (the new residual,
the partial sums). That is safe without a barrier because mtriton gives every block of one
shape the same thread layout: the thread that stored an element reads it back (in blocks
smaller than the program, other threads' copies may be stale but are never stored).

Kernels see their arrays in logical row-major order (MLX copies a non-contiguous input into
a contiguous buffer at the launch), so transposed or sliced inputs work as they are.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

import mtriton as triton
import mtriton.language as tl

from ._common import (
    FLOAT_DTYPES,
    MAX_STAGED_DOT_ELEMENTS,
    as_rows,
    check_array,
    check_like,
    check_linear_weight,
    check_ndim,
    pow2_block,
)

# The longest row chunk one program holds at once; longer rows loop over chunks.
_MAX_BLOCK = 4096
# Forward kernels hold rows up to this long in registers (512 threads of 32 floats) and
# read them once instead of twice.
_MAX_ROW_IN_BLOCK = 16384
# Backward programs, each owning a group of rows and one row of the weight-gradient partial
# sums: enough to fill a GPU several times over, few enough that the partials stay small.
_BWD_PROGRAMS = 512
# Tile of the partial-sum reduction: BLOCK_G partial rows by BLOCK_N columns per step.
_SUM_BLOCK_G, _SUM_BLOCK_N = 32, 64
# Tiles of the fused RMSNorm + linear matmul on Metal, within its threadgroup memory.
_LINEAR_BLOCK_K = 32
_LINEAR_MAX_BLOCK_MN = 64
assert _LINEAR_BLOCK_K * 2 * _LINEAR_MAX_BLOCK_MN <= MAX_STAGED_DOT_ELEMENTS


# --------------------------------------------------------------------------- kernels


@triton.jit
def _rmsnorm_input(x_ptr, res_ptr, h_ptr, cols, mask, HAS_RESIDUAL: tl.constexpr):
    """x, or the new residual x + res (also stored to h), as float32."""
    x = tl.load(x_ptr + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        # Rounded to the stored dtype first, so y normalizes exactly the returned residual.
        x = (x.to(tl.float32) + tl.load(res_ptr + cols, mask=mask, other=0.0).to(tl.float32)).to(x.dtype)
        tl.store(h_ptr + cols, x, mask=mask)
    return x.to(tl.float32)


@triton.jit
def _rmsnorm_fwd_kernel(
    x_ptr, res_ptr, w_ptr, y_ptr, h_ptr, n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, ROW_IN_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    start = tl.program_id(0).to(tl.int64) * n_cols  # int64: arrays may pass 2**31 elements
    x_ptr += start
    y_ptr += start
    if HAS_RESIDUAL:
        res_ptr += start
        h_ptr += start
    if ROW_IN_BLOCK:  # the row stays in registers: one read
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = _rmsnorm_input(x_ptr, res_ptr, h_ptr, cols, mask, HAS_RESIDUAL)
        w = tl.load(w_ptr + cols, mask=mask).to(tl.float32)  # before the reduction: latencies overlap
        rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        tl.store(y_ptr + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)
        return
    sum_sq = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = _rmsnorm_input(x_ptr, res_ptr, h_ptr, cols, cols < n_cols, HAS_RESIDUAL)
        sum_sq += x * x
    rstd = tl.rsqrt(tl.sum(sum_sq, axis=0) / n_cols + eps)
    if HAS_RESIDUAL:
        x_ptr = h_ptr  # the new residual, read back: one load instead of two (module docstring: why safe)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask).to(tl.float32)
        tl.store(y_ptr + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_bwd_kernel(
    x_ptr, w_ptr, dy_ptr, dres_ptr, dx_ptr, dw_partial_ptr, n_rows, n_cols, eps, rows_per_program,
    HAS_DRESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # y = x * r * w with r = rsqrt(mean(x^2) + eps), so with g = dy * w:
    # dx = r * g - x * r^3 * sum(g * x) / n_cols, and dw = sum over rows of dy * x * r.
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    dw_partial_ptr += pid * n_cols
    for row in range(row_start, row_end):
        base = row.to(tl.int64) * n_cols
        sum_sq = tl.zeros([BLOCK], dtype=tl.float32)
        sum_gx = tl.zeros([BLOCK], dtype=tl.float32)
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x = tl.load(x_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            sum_sq += x * x
            sum_gx += dy * w * x
        rstd = tl.rsqrt(tl.sum(sum_sq, axis=0) / n_cols + eps)
        c = rstd * rstd * rstd * tl.sum(sum_gx, axis=0) / n_cols
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x = tl.load(x_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            dx = dy * w * rstd - x * c
            if HAS_DRESIDUAL:
                dx += tl.load(dres_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(dx_ptr + base + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
            # The group's first row starts the partial sums (the buffer starts unspecified);
            # later rows add to what this thread stored for the row before.
            dw = tl.load(dw_partial_ptr + cols, mask=mask & (row > row_start), other=0.0)
            tl.store(dw_partial_ptr + cols, dw + dy * x * rstd, mask=mask)


@triton.jit
def _layernorm_affine(y, w_ptr, b_ptr, cols, mask, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr):
    if HAS_WEIGHT:
        y *= tl.load(w_ptr + cols, mask=mask).to(tl.float32)
    if HAS_BIAS:
        y += tl.load(b_ptr + cols, mask=mask).to(tl.float32)
    return y


@triton.jit
def _layernorm_row(
    x, w_ptr, b_ptr, n_cols, eps, cols, mask, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr
):
    """The normalized row `x` (float32, masked elements 0), its weight and bias loaded before
    the reductions so that their latencies overlap."""
    w = tl.load(w_ptr + cols, mask=mask).to(tl.float32) if HAS_WEIGHT else 1.0
    b = tl.load(b_ptr + cols, mask=mask).to(tl.float32) if HAS_BIAS else 0.0
    xc = tl.where(mask, x - tl.sum(x, axis=0) / n_cols, 0.0)
    return xc * tl.rsqrt(tl.sum(xc * xc, axis=0) / n_cols + eps) * w + b


@triton.jit
def _layernorm_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, n_cols, eps,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ROW_IN_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    start = tl.program_id(0).to(tl.int64) * n_cols
    x_ptr += start
    y_ptr += start
    if ROW_IN_BLOCK:  # the row stays in registers: one read
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        y = _layernorm_row(x, w_ptr, b_ptr, n_cols, eps, cols, mask, HAS_WEIGHT, HAS_BIAS)
        tl.store(y_ptr + cols, y.to(y_ptr.dtype.element_ty), mask=mask)
        return
    # Mean first, then the variance around it: one-pass E[x^2] - E[x]^2 loses every digit
    # in float32 when |mean| >> std.
    sum_x = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        sum_x += tl.load(x_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    mean = tl.sum(sum_x, axis=0) / n_cols
    sum_sq = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < n_cols
        xc = tl.where(mask, tl.load(x_ptr + cols, mask=mask, other=0.0).to(tl.float32) - mean, 0.0)
        sum_sq += xc * xc
    rstd = tl.rsqrt(tl.sum(sum_sq, axis=0) / n_cols + eps)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < n_cols
        y = (tl.load(x_ptr + cols, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
        y = _layernorm_affine(y, w_ptr, b_ptr, cols, mask, HAS_WEIGHT, HAS_BIAS)
        tl.store(y_ptr + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _layernorm_bwd_kernel(
    x_ptr, w_ptr, dy_ptr, dx_ptr, dw_partial_ptr, db_partial_ptr, n_rows, n_cols, eps, rows_per_program,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # With x_hat = (x - mean) * r and g = dy * w: dx = r * (g - mean(g) - x_hat * mean(g * x_hat)),
    # dw = sum over rows of dy * x_hat, db = sum over rows of dy.
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    if HAS_WEIGHT:
        dw_partial_ptr += pid * n_cols
    if HAS_BIAS:
        db_partial_ptr += pid * n_cols
    for row in range(row_start, row_end):
        base = row.to(tl.int64) * n_cols
        sum_x = tl.zeros([BLOCK], dtype=tl.float32)
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            sum_x += tl.load(x_ptr + base + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        mean = tl.sum(sum_x, axis=0) / n_cols
        sum_sq = tl.zeros([BLOCK], dtype=tl.float32)
        sum_g = tl.zeros([BLOCK], dtype=tl.float32)
        sum_gxc = tl.zeros([BLOCK], dtype=tl.float32)
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            mask = cols < n_cols
            xc = tl.where(mask, tl.load(x_ptr + base + cols, mask=mask, other=0.0).to(tl.float32) - mean, 0.0)
            g = tl.load(dy_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_WEIGHT:
                g *= tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            sum_sq += xc * xc
            sum_g += g
            sum_gxc += g * xc
        rstd = tl.rsqrt(tl.sum(sum_sq, axis=0) / n_cols + eps)
        mean_g = tl.sum(sum_g, axis=0) / n_cols
        mean_gx_hat = tl.sum(sum_gxc, axis=0) * rstd / n_cols
        for off in range(0, n_cols, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x_hat = (tl.load(x_ptr + base + cols, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
            dy = tl.load(dy_ptr + base + cols, mask=mask, other=0.0).to(tl.float32)
            g = dy
            if HAS_WEIGHT:
                g = dy * tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            dx = rstd * (g - mean_g - x_hat * mean_gx_hat)
            tl.store(dx_ptr + base + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
            first = row > row_start  # the group's first row starts the partial sums
            if HAS_WEIGHT:
                dw = tl.load(dw_partial_ptr + cols, mask=mask & first, other=0.0)
                tl.store(dw_partial_ptr + cols, dw + dy * x_hat, mask=mask)
            if HAS_BIAS:
                db = tl.load(db_partial_ptr + cols, mask=mask & first, other=0.0)
                tl.store(db_partial_ptr + cols, db + dy, mask=mask)


@triton.jit
def _column_sum_kernel(partial_ptr, out_ptr, n_groups, n_cols, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr):
    # out[j] = sum over g of partial[g, j]: finishes the weight gradients from the per-group partials.
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_G, BLOCK_N], dtype=tl.float32)
    for g0 in range(0, n_groups, BLOCK_G):
        rows = g0 + tl.arange(0, BLOCK_G)
        mask = (rows[:, None] < n_groups) & (cols[None, :] < n_cols)
        acc += tl.load(partial_ptr + rows[:, None] * n_cols + cols[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + cols, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=cols < n_cols)


@triton.jit
def _rmsnorm_linear_kernel(
    x_ptr, norm_w_ptr, linear_w_ptr, b_ptr, out_ptr, m, n, k, eps,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # rmsnorm(x) @ W.T == ((x * norm_weight) @ W.T) * rstd per row, and the K loop reads each
    # row of x in full: it sums the squares on the way, so the normalized x is never stored.
    # Each program's tiles are addressed from its own base pointers (int64: x, W and the
    # output may pass 2**31 elements), with small int32 offsets inside them.
    row0 = tl.program_id(1) * BLOCK_M
    out0 = tl.program_id(0) * BLOCK_N
    x_ptr += row0.to(tl.int64) * k
    linear_w_ptr += out0.to(tl.int64) * k
    out_ptr += row0.to(tl.int64) * n + out0
    rows = tl.arange(0, BLOCK_M)
    outs = tl.arange(0, BLOCK_N)
    row_ok = rows < m - row0
    out_ok = outs < n - out0
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    sum_sq = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x_mask = row_ok[:, None] & (ks[None, :] < k)
        x = tl.load(x_ptr + rows[:, None] * k + ks[None, :], mask=x_mask, other=0.0).to(tl.float32)
        sum_sq += x * x
        nw = tl.load(norm_w_ptr + ks, mask=ks < k, other=0.0).to(tl.float32)
        a = (x * nw[None, :]).to(x_ptr.dtype.element_ty)
        # W is (out, in): its tile is read along contiguous rows and multiplied as tl.trans(w).
        w_mask = out_ok[:, None] & (ks[None, :] < k)
        w = tl.load(linear_w_ptr + outs[:, None] * k + ks[None, :], mask=w_mask, other=0.0)
        acc = tl.dot(a, tl.trans(w), acc, input_precision="ieee")  # float32 exact (not TF32) on CUDA
    rstd = tl.rsqrt(tl.sum(sum_sq, axis=1) / k + eps)
    out = acc * rstd[:, None]
    if HAS_BIAS:
        out += tl.load(b_ptr + out0 + outs, mask=out_ok, other=0.0).to(tl.float32)[None, :]
    out_mask = row_ok[:, None] & out_ok[None, :]
    tl.store(out_ptr + rows[:, None] * n + outs[None, :], out.to(out_ptr.dtype.element_ty), mask=out_mask)


# --------------------------------------------------------------------------- functions


def _row_config(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for rows of `n` columns: the whole row when it fits one block."""
    block = pow2_block(n, _MAX_BLOCK)
    return block, min(max(block // 256, 1), 8)


def _forward_row_config(n: int) -> dict[str, Any]:
    """Launch options of a forward kernel: rows up to `_MAX_ROW_IN_BLOCK` columns are held
    in registers (at most 32 per thread) and read once; longer rows loop over chunks."""
    if n > _MAX_ROW_IN_BLOCK:
        block, num_warps = _row_config(n)
        return {"BLOCK": block, "num_warps": num_warps, "ROW_IN_BLOCK": False}
    block = triton.next_power_of_2(n)
    return {"BLOCK": block, "num_warps": min(max(block // 256, 1), 16), "ROW_IN_BLOCK": True}


def _bwd_grid(m: int) -> tuple[int, int]:
    """(programs, rows per program) of a backward kernel over `m` rows."""
    rows_per_program = triton.cdiv(m, _BWD_PROGRAMS)
    return triton.cdiv(m, rows_per_program), rows_per_program


def _column_sum(partial: mx.array, dtype: mx.Dtype) -> mx.array:
    """The sum over the rows of a float32 (groups, n) array of partial sums, in `dtype`."""
    groups, n = partial.shape
    (out,) = _column_sum_kernel[(triton.cdiv(n, _SUM_BLOCK_N),)].functional(
        partial, triton.empty((n,), dtype), groups, n, BLOCK_G=_SUM_BLOCK_G, BLOCK_N=_SUM_BLOCK_N
    )
    return out


def _rmsnorm_forward(
    x: mx.array, weight: mx.array, residual: mx.array | None, eps: float
) -> tuple[mx.array, ...]:
    """(y,) for rows `x`, or (y, x + residual) when a residual is given."""
    m, n = x.shape
    fused = residual is not None
    return _rmsnorm_fwd_kernel[(m,)].functional(
        x, residual, weight, triton.empty(x.shape, x.dtype), triton.empty(x.shape, x.dtype) if fused else None,
        n, eps, HAS_RESIDUAL=fused, **_forward_row_config(n),
    )  # fmt: skip


def _rmsnorm_backward(
    x: mx.array, weight: mx.array, dy: mx.array, dresidual: mx.array | None, eps: float
) -> tuple[mx.array, mx.array]:
    """(dx, dweight) of rmsnorm on rows `x`; `dresidual` is added to dx when given."""
    m, n = x.shape
    block, num_warps = _row_config(n)
    programs, rows_per_program = _bwd_grid(m)
    dx, dw_partial = _rmsnorm_bwd_kernel[(programs,)].functional(
        x, weight, dy, dresidual, triton.empty(x.shape, x.dtype), triton.empty((programs, n), mx.float32),
        m, n, eps, rows_per_program, HAS_DRESIDUAL=dresidual is not None, BLOCK=block, num_warps=num_warps,
    )  # fmt: skip
    return dx, _column_sum(dw_partial, weight.dtype)


@mx.custom_function
def _rmsnorm_rows(x: mx.array, weight: mx.array, *, eps: float) -> mx.array:
    return _rmsnorm_forward(x, weight, None, eps)[0]


@_rmsnorm_rows.vjp
def _rmsnorm_rows_vjp(
    primals: list[mx.array], dy: mx.array, y: mx.array, *, eps: float
) -> tuple[mx.array, ...]:
    x, weight = primals
    return _rmsnorm_backward(x, weight, dy, None, eps)


@mx.custom_function
def _fused_add_rmsnorm_rows(
    x: mx.array, residual: mx.array, weight: mx.array, *, eps: float
) -> tuple[mx.array, mx.array]:
    return _rmsnorm_forward(x, weight, residual, eps)


@_fused_add_rmsnorm_rows.vjp
def _fused_add_rmsnorm_rows_vjp(
    primals: list[mx.array], cotangents: list[mx.array], outputs: list[mx.array], *, eps: float
) -> tuple[mx.array, ...]:
    _, _, weight = primals
    dy, dh = cotangents
    # The new residual h = x + residual is an output, so the backward reads it instead of
    # recomputing it; dh arrives through both uses of h, and x and residual share the gradient.
    dx, dweight = _rmsnorm_backward(outputs[1], weight, dy, dh, eps)
    return dx, dx, dweight


@mx.custom_function
def _layernorm_rows(x: mx.array, weight: mx.array | None, bias: mx.array | None, *, eps: float) -> mx.array:
    m, n = x.shape
    (y,) = _layernorm_fwd_kernel[(m,)].functional(
        x, weight, bias, triton.empty(x.shape, x.dtype), n, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, **_forward_row_config(n),
    )  # fmt: skip
    return y


@_layernorm_rows.vjp
def _layernorm_rows_vjp(
    primals: list[mx.array | None], dy: mx.array, y: mx.array, *, eps: float
) -> tuple[mx.array | None, ...]:
    x, weight, bias = primals
    m, n = x.shape
    block, num_warps = _row_config(n)
    programs, rows_per_program = _bwd_grid(m)
    partial = lambda param: None if param is None else triton.empty((programs, n), mx.float32)
    dx, *partials = _layernorm_bwd_kernel[(programs,)].functional(
        x, weight, dy, triton.empty(x.shape, x.dtype), partial(weight), partial(bias), m, n, eps, rows_per_program,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK=block, num_warps=num_warps,
    )  # fmt: skip
    grads = iter(partials)
    dweight = None if weight is None else _column_sum(next(grads), weight.dtype)
    dbias = None if bias is None else _column_sum(next(grads), bias.dtype)
    return dx, dweight, dbias


@mx.custom_function
def _rmsnorm_linear_rows(
    x: mx.array, norm_weight: mx.array, linear_weight: mx.array, linear_bias: mx.array | None, *, eps: float
) -> mx.array:
    m, k = x.shape
    n = linear_weight.shape[0]
    cuda = triton.current_target() == "cuda"  # larger half-precision tiles: tensor cores
    block_m = pow2_block(m, 128 if cuda else _LINEAR_MAX_BLOCK_MN, 16)
    block_n = pow2_block(n, _LINEAR_MAX_BLOCK_MN, 16)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m))
    (out,) = _rmsnorm_linear_kernel[grid].functional(
        x, norm_weight, linear_weight, linear_bias, triton.empty((m, n), x.dtype), m, n, k, eps,
        HAS_BIAS=linear_bias is not None, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_K=64 if cuda else _LINEAR_BLOCK_K, num_warps=8 if cuda else 4,
    )  # fmt: skip
    return out


@_rmsnorm_linear_rows.vjp
def _rmsnorm_linear_rows_vjp(
    primals: list[mx.array | None], dout: mx.array, out: mx.array, *, eps: float
) -> tuple[mx.array | None, ...]:
    x, norm_weight, linear_weight, linear_bias = primals
    # The backward needs the normalized rows for the weight gradient, so it makes them here.
    (normed,) = _rmsnorm_forward(x, norm_weight, None, eps)
    dlinear_weight = dout.T @ normed
    dbias = None if linear_bias is None else dout.astype(mx.float32).sum(axis=0).astype(linear_bias.dtype)
    dx, dnorm_weight = _rmsnorm_backward(x, norm_weight, dout @ linear_weight, None, eps)
    return dx, dnorm_weight, dlinear_weight, dbias


def _check_x(fn: str, x: object, eps: float) -> None:
    check_array(fn, "x", x, FLOAT_DTYPES)
    check_ndim(fn, "x", x, 1, "at least one axis to normalize", at_least=True)
    if not eps > 0:
        raise ValueError(f"[{fn}] eps is {eps}; expected a positive number")


def rmsnorm(x: mx.array, weight: mx.array, eps: float = 1e-5) -> mx.array:
    """Root-mean-square normalization of the last axis, scaled by `weight`.

    Computes `x / sqrt(mean(x**2) + eps) * weight` in float32 and returns it in x's dtype.
    Differentiable with respect to `x` and `weight` (the backward runs as mtriton kernels).

    Args:
        x: Input of shape (..., dims), float32, float16 or bfloat16.
        weight: Scale of shape (dims,), of x's dtype.
        eps: Added to the mean square before the square root.

    Returns:
        The normalized array, of x's shape and dtype.

    Raises:
        TypeError: x or weight is not an mx.array, or has an unsupported or mismatched dtype.
        ValueError: weight's shape does not match x's last axis, x is a scalar, or eps <= 0.
    """
    _check_x("rmsnorm", x, eps)
    check_like("rmsnorm", "weight", weight, x, x.shape[-1:], "x's last axis")
    if x.size == 0:
        return rmsnorm_reference(x, weight, eps)
    return _rmsnorm_rows(as_rows(x), weight, eps=eps).reshape(x.shape)


def layernorm(
    x: mx.array, weight: mx.array | None = None, bias: mx.array | None = None, eps: float = 1e-5
) -> mx.array:
    """Layer normalization of the last axis, with an optional scale and shift.

    Computes `(x - mean(x)) / sqrt(var(x) + eps) * weight + bias` in float32 and returns it in
    x's dtype; an absent `weight` scales by 1 and an absent `bias` shifts by 0. Differentiable
    with respect to `x`, `weight` and `bias`.

    Args:
        x: Input of shape (..., dims), float32, float16 or bfloat16.
        weight: Scale of shape (dims,) and x's dtype, or None.
        bias: Shift of shape (dims,) and x's dtype, or None.
        eps: Added to the variance before the square root.

    Returns:
        The normalized array, of x's shape and dtype.

    Raises:
        TypeError: An argument is not an mx.array, or has an unsupported or mismatched dtype.
        ValueError: weight's or bias's shape does not match x's last axis, x is a scalar, or eps <= 0.
    """
    _check_x("layernorm", x, eps)
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None:
            check_like("layernorm", name, param, x, x.shape[-1:], "x's last axis")
    if x.size == 0:
        return layernorm_reference(x, weight, bias, eps)
    return _layernorm_rows(as_rows(x), weight, bias, eps=eps).reshape(x.shape)


def fused_add_rmsnorm(
    x: mx.array, residual: mx.array, weight: mx.array, eps: float = 1e-5
) -> tuple[mx.array, mx.array]:
    """Adds `x` to the residual stream and RMS-normalizes the sum, in one kernel.

    The transformer block pattern `h = x + residual; y = rmsnorm(h)` without a separate add:
    each row of `h` is written once and read back once. `y` is exactly `rmsnorm(h, weight, eps)`
    of the returned `h` (the sum is rounded to x's dtype first). Differentiable with respect to
    `x`, `residual` and `weight`.

    Args:
        x: Input of shape (..., dims), float32, float16 or bfloat16.
        residual: The residual stream, of x's shape and dtype.
        weight: Scale of shape (dims,), of x's dtype.
        eps: Added to the mean square before the square root.

    Returns:
        (normed, new_residual): `rmsnorm(x + residual)` and `x + residual`, of x's shape and dtype.

    Raises:
        TypeError: An argument is not an mx.array, or has an unsupported or mismatched dtype.
        ValueError: residual's shape differs from x's, weight's does not match x's last axis,
            x is a scalar, or eps <= 0.
    """
    _check_x("fused_add_rmsnorm", x, eps)
    check_like("fused_add_rmsnorm", "residual", residual, x, x.shape, "x")
    check_like("fused_add_rmsnorm", "weight", weight, x, x.shape[-1:], "x's last axis")
    if x.size == 0:
        return fused_add_rmsnorm_reference(x, residual, weight, eps)
    normed, new_residual = _fused_add_rmsnorm_rows(as_rows(x), as_rows(residual), weight, eps=eps)
    return normed.reshape(x.shape), new_residual.reshape(x.shape)


def fused_rmsnorm_linear(
    x: mx.array,
    norm_weight: mx.array,
    linear_weight: mx.array,
    linear_bias: mx.array | None = None,
    eps: float = 1e-5,
) -> mx.array:
    """`rmsnorm(x, norm_weight) @ linear_weight.T + linear_bias` without storing the normalized x.

    One tiled matmul kernel: each K step scales its tile of x by `norm_weight` and adds its
    squares to the row sums, and the epilogue multiplies each output row by that row's
    1/rms (`rmsnorm(x) @ W.T == ((x * norm_weight) @ W.T) * rstd`). Differentiable; the
    backward materializes the normalized rows once for the weight gradient.

    Args:
        x: Input of shape (..., in_features), float32, float16 or bfloat16.
        norm_weight: RMSNorm scale of shape (in_features,), of x's dtype.
        linear_weight: Linear weight of shape (out_features, in_features) (`nn.Linear`'s
            layout), of x's dtype.
        linear_bias: Linear bias of shape (out_features,) and x's dtype, or None.
        eps: Added to the mean square before the square root.

    Returns:
        Array of shape (..., out_features) and x's dtype.

    Raises:
        TypeError: An argument is not an mx.array, or has an unsupported or mismatched dtype.
        ValueError: A weight's shape does not match x's last axis or the other weight,
            x is a scalar, or eps <= 0.
    """
    fn = "fused_rmsnorm_linear"
    _check_x(fn, x, eps)
    check_like(fn, "norm_weight", norm_weight, x, x.shape[-1:], "x's last axis")
    n = check_linear_weight(fn, "linear_weight", linear_weight, x, "out_features")
    if linear_bias is not None:
        check_like(fn, "linear_bias", linear_bias, x, (n,), "linear_weight's out_features")
    if x.size == 0 or n == 0:
        return fused_rmsnorm_linear_reference(x, norm_weight, linear_weight, linear_bias, eps)
    out = _rmsnorm_linear_rows(as_rows(x), norm_weight, linear_weight, linear_bias, eps=eps)
    return out.reshape(*x.shape[:-1], n)


# --------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    """RMS normalization over the last axis with a learned scale, like `mlx.nn.RMSNorm`.

    Holds `weight` (initialized to ones, float32) under the same name as `mlx.nn.RMSNorm`,
    so state dicts load either way. The weight must have the input's dtype: cast the module
    with `set_dtype` for float16 or bfloat16 inputs.

    Args:
        dims: Size of the normalized (last) axis.
        eps: Added to the mean square before the square root.
    """

    def __init__(self, dims: int, eps: float = 1e-5) -> None:
        super().__init__()
        if eps <= 0.0:
            raise ValueError(f"[RMSNorm] eps is {eps}; expected a positive number")
        self.weight = mx.ones((dims,))
        self.eps = eps

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"

    def __call__(self, x: mx.array) -> mx.array:
        return rmsnorm(x, self.weight, self.eps)


class LayerNorm(nn.Module):
    """Layer normalization over the last axis, like `mlx.nn.LayerNorm`.

    With `affine`, holds `weight` (ones) and, with `bias` too, `bias` (zeros), named as in
    `mlx.nn.LayerNorm` so state dicts load either way. Parameters must have the input's
    dtype: cast the module with `set_dtype` for float16 or bfloat16 inputs.

    Args:
        dims: Size of the normalized (last) axis.
        eps: Added to the variance before the square root.
        affine: Learn a per-feature scale (and shift, see `bias`).
        bias: With `affine`, learn a per-feature shift too.
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        if eps <= 0.0:
            raise ValueError(f"[LayerNorm] eps is {eps}; expected a positive number")
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.eps = eps
        self.dims = dims

    def _extra_repr(self) -> str:
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x: mx.array) -> mx.array:
        return layernorm(x, self.get("weight"), self.get("bias"), self.eps)


# --------------------------------------------------------------------------- references


def rmsnorm_reference(x: mx.array, weight: mx.array, eps: float = 1e-5) -> mx.array:
    """`rmsnorm` in plain MLX ops (float32 math, result in x's dtype)."""
    xf = x.astype(mx.float32)
    y = xf * mx.rsqrt(mx.mean(xf * xf, axis=-1, keepdims=True) + eps) * weight.astype(mx.float32)
    return y.astype(x.dtype)


def layernorm_reference(
    x: mx.array, weight: mx.array | None = None, bias: mx.array | None = None, eps: float = 1e-5
) -> mx.array:
    """`layernorm` in plain MLX ops (float32 math, result in x's dtype)."""
    xf = x.astype(mx.float32)
    centered = xf - mx.mean(xf, axis=-1, keepdims=True)
    y = centered * mx.rsqrt(mx.mean(centered * centered, axis=-1, keepdims=True) + eps)
    if weight is not None:
        y = y * weight.astype(mx.float32)
    if bias is not None:
        y = y + bias.astype(mx.float32)
    return y.astype(x.dtype)


def fused_add_rmsnorm_reference(
    x: mx.array, residual: mx.array, weight: mx.array, eps: float = 1e-5
) -> tuple[mx.array, mx.array]:
    """`fused_add_rmsnorm` in plain MLX ops: (rmsnorm(x + residual), x + residual)."""
    new_residual = x + residual
    return rmsnorm_reference(new_residual, weight, eps), new_residual


def fused_rmsnorm_linear_reference(
    x: mx.array,
    norm_weight: mx.array,
    linear_weight: mx.array,
    linear_bias: mx.array | None = None,
    eps: float = 1e-5,
) -> mx.array:
    """`fused_rmsnorm_linear` in plain MLX ops: the normalized rows, then the matmul."""
    out = rmsnorm_reference(x, norm_weight, eps) @ linear_weight.T
    return out if linear_bias is None else out + linear_bias
