"""State-space scans: Mamba's selective scan, its backward, and the Mamba block built on it.

`selective_scan(x, delta, A, B, C, ...)` runs the recurrence of Mamba's `selective_scan_fn`
(x, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or (batch, groups, N, L)):

    delta'[t] = softplus(delta[t] + delta_bias)           (if delta_softplus)
    h[t]      = exp(delta'[t] A) h[t-1] + delta'[t] B[t] x[t]
    y[t]      = sum_n C[t, n] h[t, n] + D x[t]
    out[t]    = y[t] silu(z[t])                            (if z is given)

in one kernel. Each program owns a block of channels of one batch element (and one group of
B, C), holds its (BLOCK_D, N) state in registers in float32 and walks the sequence one step at
a time, so the (batch, L, dim, N) states never reach memory. A step's work is a few exps and
multiply-adds per state element and one sum over N: the sequence is the only loop, and the
parallelism is batch * dim * N. Every per-step vector a state element needs (delta, x and, by
channel, B and C) is loaded straight in the state's (BLOCK_D, N) shape, with the address repeated
along the axis it does not vary on: the repeated loads hit the cache, where broadcasting a loaded
(BLOCK_D,) vector would exchange it through threadgroup memory behind a barrier every step.

The forward also stores the state at the start of every `_CHUNK` steps (checkpoints, (batch,
dim, L / _CHUNK, N)). The backward walks the chunks from last to first: it recomputes a chunk's
states from its checkpoint into a per-program scratch buffer of `_CHUNK` states (each thread
reads back only the elements it wrote, so no barrier is needed), then runs the chunk in reverse
time, carrying dL/dh. dB and dC sum over the channels of every program that shares a group:
float32 atomics; dA, dD and d delta_bias sum over the batch: per-batch partials summed by MLX.

All math is float32; x, delta, z, B and C share one storage dtype (float32, float16, bfloat16),
which the outputs and their gradients keep. A, D, delta_bias and initial_state may have any float
dtype (the kernels read them as float32; their gradients come back in their own dtype).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

import mtriton as triton
import mtriton.language as tl

from ._common import FLOAT_DTYPES, check_array, check_shape, dtype_name, pow2_block
from .training import checkpointable

# Steps between two checkpoints of the state: the backward recomputes this many states per
# chunk into scratch memory of (batch, dim, _CHUNK, N) float32.
_CHUNK = 64
# softplus(v) is v past this (as PyTorch's and Mamba's): exp(v) would only add rounding.
_SOFTPLUS_THRESHOLD = tl.constexpr(20.0)
_SIZES = ["dim", "seqlen", "d_per_group", "n_groups", "n_state", "n_chunks", "chunk"]


# --------------------------------------------------------------------------- kernels


@triton.jit
def _softplus(v):
    return tl.where(v > _SOFTPLUS_THRESHOLD, v, tl.math.log1p(tl.exp(tl.minimum(v, _SOFTPLUS_THRESHOLD))))


@triton.jit
def _program_tiles(dim, seqlen, d_per_group, n_groups, n_state, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's channels (a block of one group of one batch element) and their offsets.

    Returns its channels and their mask; their (BLOCK_D,) row offsets in x-shaped arrays and the
    same in the state's (BLOCK_D, BLOCK_N) shape, with the state's mask; the (BLOCK_N,) offsets
    of the group's B and C rows and the same repeated over the channels; and the (BLOCK_D,)
    indices batch * dim + channel of the (batch, dim, ...) per-channel arrays.
    """
    pid_b = tl.program_id(1)
    blocks = tl.cdiv(d_per_group, BLOCK_D)
    group = tl.program_id(0) // blocks
    j = (tl.program_id(0) % blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    mask_d = j < d_per_group
    chan = (group * d_per_group + j).to(tl.int64)
    channels = pid_b * dim + chan
    rows = channels * seqlen
    mask2 = mask_d[:, None] & (n < n_state)[None, :]
    rows2 = rows[:, None] + 0 * n[None, :]
    bc1 = ((pid_b * n_groups + group) * n_state + n).to(tl.int64) * seqlen
    bc2 = bc1[None, :] + 0 * chan[:, None]
    return chan, mask_d, rows, rows2, mask2, bc1, bc2, channels


@triton.jit
def _step_inputs(x_ptr, delta_ptr, b_ptr, rows2, bc2, mask2, t, bias2, SOFTPLUS: tl.constexpr):
    """delta' (and the delta + bias it came from), x and B at step t, in the state's shape."""
    raw2 = tl.load(delta_ptr + rows2 + t, mask=mask2, other=0.0).to(tl.float32) + bias2
    if SOFTPLUS:
        dt2 = _softplus(raw2)
    else:
        dt2 = raw2
    x2 = tl.load(x_ptr + rows2 + t, mask=mask2, other=0.0).to(tl.float32)
    b2 = tl.load(b_ptr + bc2 + t, mask=mask2, other=0.0).to(tl.float32)
    return dt2, x2, b2


@triton.jit(do_not_specialize=_SIZES)
def _selective_scan_fwd_kernel(
    x_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, h0_ptr,
    out_ptr, last_ptr, ckpt_ptr,
    dim, seqlen, d_per_group, n_groups, n_state, n_chunks, chunk,
    HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    chan, mask_d, rows, rows2, mask2, bc1, bc2, channels = _program_tiles(
        dim, seqlen, d_per_group, n_groups, n_state, BLOCK_D, BLOCK_N
    )
    n = tl.arange(0, BLOCK_N)
    states2 = channels[:, None] * n_state + n[None, :]
    ckpt2 = channels[:, None] * (n_chunks * n_state) + n[None, :]
    a2 = tl.load(a_ptr + chan[:, None] * n_state + n[None, :], mask=mask2, other=0.0)
    bias2 = tl.load(bias_ptr + chan[:, None] + 0 * n[None, :], mask=mask2, other=0.0)
    d1 = tl.load(d_ptr + chan, mask=mask_d, other=0.0)
    h = tl.load(h0_ptr + states2, mask=mask2, other=0.0)
    for c in range(0, n_chunks):
        tl.store(ckpt_ptr + ckpt2 + c * n_state, h, mask=mask2)
        for t in range(c * chunk, tl.minimum(seqlen, c * chunk + chunk)):
            dt2, x2, b2 = _step_inputs(x_ptr, delta_ptr, b_ptr, rows2, bc2, mask2, t, bias2, SOFTPLUS)
            c2 = tl.load(c_ptr + bc2 + t, mask=mask2, other=0.0).to(tl.float32)
            h = tl.exp(dt2 * a2) * h + dt2 * x2 * b2
            x1 = tl.load(x_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32)
            y = tl.sum(h * c2, axis=1) + d1 * x1
            if HAS_Z:
                z1 = tl.load(z_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32)
                y = y * z1 * tl.sigmoid(z1)
            tl.store(out_ptr + rows + t, y.to(out_ptr.dtype.element_ty), mask=mask_d)
    tl.store(last_ptr + states2, h, mask=mask2)


@triton.jit(do_not_specialize=_SIZES)
def _selective_scan_bwd_kernel(
    x_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, ckpt_ptr, d_out_ptr, d_last_ptr,
    dx_ptr, d_delta_ptr, dz_ptr, da_ptr, db_ptr, dc_ptr, dd_ptr, d_bias_ptr, d_h0_ptr, scratch_ptr,
    dim, seqlen, d_per_group, n_groups, n_state, n_chunks, chunk,
    HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Reverse time, a chunk at a time; `g` carries dL/dh[t] (its future part until step t's own).

    da/dd/d_bias are per-batch partials ((batch, dim, N) and (batch, dim)); db/dc are float32
    accumulators that every program of a group adds into.
    """
    chan, mask_d, rows, rows2, mask2, bc1, bc2, channels = _program_tiles(
        dim, seqlen, d_per_group, n_groups, n_state, BLOCK_D, BLOCK_N
    )
    n = tl.arange(0, BLOCK_N)
    states2 = channels[:, None] * n_state + n[None, :]
    ckpt2 = channels[:, None] * (n_chunks * n_state) + n[None, :]
    mask_n = n < n_state
    a2 = tl.load(a_ptr + chan[:, None] * n_state + n[None, :], mask=mask2, other=0.0)
    bias2 = tl.load(bias_ptr + chan[:, None] + 0 * n[None, :], mask=mask2, other=0.0)
    bias1 = tl.load(bias_ptr + chan, mask=mask_d, other=0.0)
    d1 = tl.load(d_ptr + chan, mask=mask_d, other=0.0)
    # this program's `chunk` scratch states, tile after tile
    program = tl.program_id(1) * tl.num_programs(0) + tl.program_id(0)
    local2 = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]
    scratch2 = program.to(tl.int64) * chunk * (BLOCK_D * BLOCK_N) + local2
    g = tl.load(d_last_ptr + states2, mask=mask2, other=0.0)
    da_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    d_bias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        t0 = c * chunk
        steps = tl.minimum(seqlen, t0 + chunk) - t0
        h = tl.load(ckpt_ptr + ckpt2 + c * n_state, mask=mask2, other=0.0)
        for s in range(0, steps):
            tl.store(scratch_ptr + scratch2 + s * (BLOCK_D * BLOCK_N), h)
            dt2, x2, b2 = _step_inputs(x_ptr, delta_ptr, b_ptr, rows2, bc2, mask2, t0 + s, bias2, SOFTPLUS)
            h = tl.exp(dt2 * a2) * h + dt2 * x2 * b2
        for r in range(0, steps):
            s = steps - 1 - r
            t = t0 + s
            h_prev = tl.load(scratch_ptr + scratch2 + s * (BLOCK_D * BLOCK_N))
            dt2, x2, b2 = _step_inputs(x_ptr, delta_ptr, b_ptr, rows2, bc2, mask2, t, bias2, SOFTPLUS)
            c2 = tl.load(c_ptr + bc2 + t, mask=mask2, other=0.0).to(tl.float32)
            decay2 = tl.exp(dt2 * a2)
            h = decay2 * h_prev + dt2 * x2 * b2
            # dL/dy[t], in the state's shape and by channel
            d_out2 = tl.load(d_out_ptr + rows2 + t, mask=mask2, other=0.0).to(tl.float32)
            d_out1 = tl.load(d_out_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32)
            x1 = tl.load(x_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_Z:
                z2 = tl.load(z_ptr + rows2 + t, mask=mask2, other=0.0).to(tl.float32)
                dy2 = d_out2 * z2 * tl.sigmoid(z2)
                z1 = tl.load(z_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32)
                sig1 = tl.sigmoid(z1)
                dy1 = d_out1 * z1 * sig1
                y1 = tl.sum(h * c2, axis=1) + d1 * x1
                dz1 = d_out1 * y1 * sig1 * (1.0 + z1 * (1.0 - sig1))
                tl.store(dz_ptr + rows + t, dz1.to(dz_ptr.dtype.element_ty), mask=mask_d)
            else:
                dy2 = d_out2
                dy1 = d_out1
            g = g + c2 * dy2
            tl.atomic_add(dc_ptr + bc1 + t, tl.sum(dy2 * h, axis=0), mask=mask_n)
            tl.atomic_add(db_ptr + bc1 + t, tl.sum(g * dt2 * x2, axis=0), mask=mask_n)
            g_decay = g * h_prev * decay2
            da_acc += g_decay * dt2
            d_dt1 = tl.sum(g_decay * a2 + g * b2 * x2, axis=1)
            dx1 = tl.sum(g * dt2 * b2, axis=1) + dy1 * d1
            dd_acc += dy1 * x1
            if SOFTPLUS:
                raw1 = tl.load(delta_ptr + rows + t, mask=mask_d, other=0.0).to(tl.float32) + bias1
                d_raw1 = d_dt1 * tl.sigmoid(raw1)
            else:
                d_raw1 = d_dt1
            d_bias_acc += d_raw1
            tl.store(dx_ptr + rows + t, dx1.to(dx_ptr.dtype.element_ty), mask=mask_d)
            tl.store(d_delta_ptr + rows + t, d_raw1.to(d_delta_ptr.dtype.element_ty), mask=mask_d)
            g = decay2 * g
    tl.store(d_h0_ptr + states2, g, mask=mask2)
    tl.store(da_ptr + states2, da_acc, mask=mask2)
    tl.store(dd_ptr + channels, dd_acc, mask=mask_d)
    tl.store(d_bias_ptr + channels, d_bias_acc, mask=mask_d)


# --------------------------------------------------------------------------- launches


def _config(d_per_group: int, n_state: int) -> dict[str, int]:
    """Tiles of 128 states (one warp's chunks of four floats), wider only for N past 128.

    The scan's parallelism is batch * dim * N, so small programs keep more of them in flight:
    Mamba's B4 D1536 N16 is 768 programs of one warp.
    """
    block_n = pow2_block(n_state, 1024)
    block_d = pow2_block(d_per_group, max(1, 128 // block_n))
    return {"BLOCK_D": block_d, "BLOCK_N": block_n, "num_warps": max(1, block_d * block_n // 128)}


def _grid(batch: int, groups: int, d_per_group: int, config: dict[str, int]) -> tuple[int, int]:
    return (groups * triton.cdiv(d_per_group, config["BLOCK_D"]), batch)


@mx.custom_function
def _selective_scan(
    x: mx.array,
    delta: mx.array,
    A: mx.array,
    B: mx.array,
    C: mx.array,
    D: mx.array,
    z: mx.array | None,
    delta_bias: mx.array,
    initial_state: mx.array,
    *,
    softplus: bool,
    chunk: int,
) -> tuple[mx.array, mx.array, mx.array]:
    """out, the last state and the checkpoints; B, C are (batch, groups, N, L), the rest float32."""
    batch, dim, seqlen = x.shape
    groups, n_state = B.shape[1], B.shape[2]
    n_chunks = triton.cdiv(seqlen, chunk)
    config = _config(dim // groups, n_state)
    out = triton.empty(x.shape, x.dtype)
    last = triton.empty((batch, dim, n_state), mx.float32)
    checkpoints = triton.empty((batch, dim, n_chunks, n_state), mx.float32)
    _selective_scan_fwd_kernel[_grid(batch, groups, dim // groups, config)](
        x, delta, A, B, C, D, z, delta_bias, initial_state, out, last, checkpoints,
        dim, seqlen, dim // groups, groups, n_state, n_chunks, chunk,
        HAS_Z=z is not None, SOFTPLUS=softplus, **config,
    )  # fmt: skip
    return out, last, checkpoints


@_selective_scan.vjp
def _selective_scan_vjp(
    primals: list[mx.array | None],
    cotangents: list[mx.array],
    outputs: list[mx.array],
    *,
    softplus: bool,
    chunk: int,
) -> tuple[mx.array | None, ...]:
    x, delta, A, B, C, D, z, delta_bias, initial_state = primals
    d_out, d_last, _ = cotangents
    checkpoints = outputs[2]
    batch, dim, seqlen = x.shape
    groups, n_state = B.shape[1], B.shape[2]
    n_chunks = checkpoints.shape[2]
    config = _config(dim // groups, n_state)
    grid = _grid(batch, groups, dim // groups, config)
    dx, d_delta = triton.empty(x.shape, x.dtype), triton.empty(delta.shape, delta.dtype)
    dz = None if z is None else triton.empty(z.shape, z.dtype)
    da = triton.empty((batch, dim, n_state), mx.float32)
    db, dc = triton.zeros(B.shape, mx.float32), triton.zeros(C.shape, mx.float32)
    dd, d_bias = triton.empty((batch, dim), mx.float32), triton.empty((batch, dim), mx.float32)
    d_h0 = triton.empty(initial_state.shape, mx.float32)
    steps = min(chunk, seqlen)
    scratch = triton.empty((grid[0] * grid[1], steps, config["BLOCK_D"], config["BLOCK_N"]), mx.float32)
    _selective_scan_bwd_kernel[grid](
        x, delta, A, B, C, D, z, delta_bias, checkpoints, d_out, d_last.astype(mx.float32),
        dx, d_delta, dz, da, db, dc, dd, d_bias, d_h0, scratch,
        dim, seqlen, dim // groups, groups, n_state, n_chunks, steps,
        HAS_Z=z is not None, SOFTPLUS=softplus, **config,
    )  # fmt: skip
    return (
        dx,
        d_delta,
        da.sum(axis=0),
        db.astype(B.dtype),
        dc.astype(C.dtype),
        dd.sum(axis=0),
        dz,
        d_bias.sum(axis=0),
        d_h0,
    )


# --------------------------------------------------------------------------- functions


def _check_scan(
    fn: str,
    x: mx.array,
    delta: mx.array,
    A: mx.array,
    B: mx.array,
    C: mx.array,
    D: mx.array | None,
    z: mx.array | None,
    delta_bias: mx.array | None,
    initial_state: mx.array | None,
) -> None:
    check_array(fn, "x", x, FLOAT_DTYPES)
    if x.ndim != 3:
        raise ValueError(f"[{fn}] x has shape {tuple(x.shape)}; expected 3 axes (batch, dim, L)")
    batch, dim, seqlen = x.shape
    if seqlen == 0:
        raise ValueError(f"[{fn}] x has shape {tuple(x.shape)}; expected a sequence of at least one step")
    for name, value in (("delta", delta), ("z", z)):
        if value is not None:
            check_array(fn, name, value)
            check_shape(fn, name, value, x.shape, "x")
            if value.dtype != x.dtype:
                raise TypeError(
                    f"[{fn}] {name} has dtype {dtype_name(value.dtype)}; expected {dtype_name(x.dtype)} to match x"
                )
    check_array(fn, "A", A, FLOAT_DTYPES)
    if A.ndim != 2 or A.shape[0] != dim:
        raise ValueError(f"[{fn}] A has shape {tuple(A.shape)}; expected ({dim}, N) to match x's dim")
    n_state = A.shape[1]
    for name, value in (("B", B), ("C", C)):
        check_array(fn, name, value)
        if value.ndim == 3:
            check_shape(fn, name, value, (batch, n_state, seqlen), "x's (batch, L) and A's N")
        elif value.ndim == 4:
            groups = value.shape[1]
            if groups == 0 or dim % groups:
                raise ValueError(
                    f"[{fn}] {name} has shape {tuple(value.shape)}; its groups must divide x's dim {dim}"
                )
            check_shape(fn, name, value, (batch, groups, n_state, seqlen), "x's (batch, L) and A's N")
        else:
            raise ValueError(
                f"[{fn}] {name} has shape {tuple(value.shape)}; "
                f"expected (batch, N, L) = {(batch, n_state, seqlen)} or (batch, groups, N, L)"
            )
        if value.dtype != x.dtype:
            raise TypeError(
                f"[{fn}] {name} has dtype {dtype_name(value.dtype)}; expected {dtype_name(x.dtype)} to match x"
            )
    if tuple(B.shape) != tuple(C.shape):
        raise ValueError(f"[{fn}] C has shape {tuple(C.shape)}; expected {tuple(B.shape)} to match B")
    for name, value in (("D", D), ("delta_bias", delta_bias)):
        if value is not None:
            check_array(fn, name, value, FLOAT_DTYPES)
            check_shape(fn, name, value, (dim,), "x's dim")
    if initial_state is not None:
        check_array(fn, "initial_state", initial_state, FLOAT_DTYPES)
        check_shape(fn, "initial_state", initial_state, (batch, dim, n_state), "(batch, dim, N) of x and A")


def selective_scan(
    x: mx.array,
    delta: mx.array,
    A: mx.array,
    B: mx.array,
    C: mx.array,
    D: mx.array | None = None,
    z: mx.array | None = None,
    delta_bias: mx.array | None = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    initial_state: mx.array | None = None,
) -> mx.array | tuple[mx.array, mx.array]:
    """Mamba's selective scan (`selective_scan_fn`) in one kernel; see the module docstring.

    Args:
        x: Inputs of shape (batch, dim, L).
        delta: Step sizes, (batch, dim, L), before `delta_bias` and the softplus.
        A: State matrix, (dim, N) (negative for a decaying state).
        B: Input projections, (batch, N, L), or (batch, groups, N, L) where channel d uses group
            d // (dim / groups).
        C: Output projections, shaped as B.
        D: Optional skip weights, (dim,).
        z: Optional gate, (batch, dim, L): the output is multiplied by silu(z).
        delta_bias: Optional bias added to delta, (dim,).
        delta_softplus: Whether delta (plus its bias) goes through softplus.
        return_last_state: Also return the state after the last step.
        initial_state: Optional state before the first step, (batch, dim, N); zeros if None.
            Carrying `last_state` into the next call continues the sequence.

    Returns:
        out, (batch, dim, L) in x's dtype, and with `return_last_state` the last state,
        (batch, dim, N) in float32. x, delta, z, B and C share one dtype (float32, float16 or
        bfloat16). Differentiable in every array argument through the kernel backward.
    """
    fn = "selective_scan"
    _check_scan(fn, x, delta, A, B, C, D, z, delta_bias, initial_state)
    batch, dim, _ = x.shape
    n_state = A.shape[1]
    if B.ndim == 3:
        B, C = mx.expand_dims(B, 1), mx.expand_dims(C, 1)
    # The small arguments travel as float32 (their gradients convert back), and absent ones as
    # zeros: each of them would otherwise double the kernel's specializations.
    zeros = mx.zeros((dim,), mx.float32)
    out, last, _ = _selective_scan(
        x,
        delta,
        A.astype(mx.float32),
        B,
        C,
        zeros if D is None else D.astype(mx.float32),
        z,
        zeros if delta_bias is None else delta_bias.astype(mx.float32),
        (
            mx.zeros((batch, dim, n_state), mx.float32)
            if initial_state is None
            else initial_state.astype(mx.float32)
        ),
        softplus=bool(delta_softplus),
        chunk=_CHUNK,
    )
    return (out, last) if return_last_state else out


# --------------------------------------------------------------------------- modules


class MambaBlock(nn.Module):
    """The Mamba mixer block (mlx-lm's `MambaBlock`, the reference `Mamba` module) on the kernel.

    in_proj to (x, z), a causal depthwise conv1d over time with SiLU, x_proj to (dt, B, C),
    dt_proj, the selective scan with A = -exp(A_log), D, delta_bias = dt_proj's bias and softplus,
    the SiLU(z) gate, and out_proj.

    Args:
        d_model: Input and output features.
        d_state: State size N.
        d_conv: Kernel size of the causal convolution.
        expand: d_inner = expand * d_model.
        dt_rank: Rank of the step-size projection; ceil(d_model / 16) if None.
        conv_bias: Whether the convolution has a bias.
        bias: Whether in_proj and out_proj have biases.
        checkpoint: Recompute the block in the backward pass instead of keeping its
            intermediates (`mlx_primitives.training.checkpointable`).

    Parameter names and shapes follow mlx-lm's Mamba (`in_proj`, `conv1d`, `x_proj`, `dt_proj`,
    `A_log`, `D`, `out_proj`), so its checkpoints load directly.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        conv_bias: bool = True,
        bias: bool = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # S4D-real initialisation, as Mamba's: A[d, n] = -(n + 1)
        self.A_log = mx.log(
            mx.repeat(mx.arange(1, d_state + 1, dtype=mx.float32)[None], self.d_inner, axis=0)
        )
        self.D = mx.ones((self.d_inner,))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    @checkpointable
    def __call__(self, x: mx.array, *, reference: bool = False) -> mx.array:
        """Mixes `x` of shape (batch, L, d_model) along time; `reference` runs
        `selective_scan_reference` instead of the kernel (same parameters, same result)."""
        x, z = mx.split(self.in_proj(x), 2, axis=-1)
        # causal: the convolution sees d_conv - 1 zeros before the first step
        x = nn.silu(self.conv1d(mx.pad(x, [(0, 0), (self.d_conv - 1, 0), (0, 0)])))
        dt, B, C = mx.split(self.x_proj(x), [self.dt_rank, self.dt_rank + self.d_state], axis=-1)
        delta = dt @ self.dt_proj.weight.T
        scan = selective_scan_reference if reference else selective_scan
        y = scan(
            x.transpose(0, 2, 1),
            delta.transpose(0, 2, 1),
            -mx.exp(self.A_log),
            B.transpose(0, 2, 1),
            C.transpose(0, 2, 1),
            D=self.D,
            z=z.transpose(0, 2, 1),
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(0, 2, 1))


# --------------------------------------------------------------------------- references


def selective_scan_reference(
    x: mx.array,
    delta: mx.array,
    A: mx.array,
    B: mx.array,
    C: mx.array,
    D: mx.array | None = None,
    z: mx.array | None = None,
    delta_bias: mx.array | None = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    initial_state: mx.array | None = None,
) -> mx.array | tuple[mx.array, mx.array]:
    """`selective_scan` in plain MLX ops: the sequential recurrence, one step at a time in
    float32, as mlx-lm's Mamba runs it (a handful of ops per step)."""
    _check_scan("selective_scan_reference", x, delta, A, B, C, D, z, delta_bias, initial_state)
    batch, dim, seqlen = x.shape
    n_state = A.shape[1]
    dtype = x.dtype
    x, delta, A = x.astype(mx.float32), delta.astype(mx.float32), A.astype(mx.float32)
    if B.ndim == 4:  # (batch, groups, N, L): each channel reads its group's row
        B, C = (mx.repeat(v, dim // v.shape[1], axis=1) for v in (B, C))
    else:
        B, C = mx.expand_dims(B, 1), mx.expand_dims(C, 1)
    B, C = B.astype(mx.float32), C.astype(mx.float32)
    if delta_bias is not None:
        delta = delta + delta_bias.astype(mx.float32)[:, None]
    if delta_softplus:
        delta = nn.softplus(delta)
    h = (
        mx.zeros((batch, dim, n_state), mx.float32)
        if initial_state is None
        else initial_state.astype(mx.float32)
    )
    ys = []
    for t in range(seqlen):
        dt = delta[:, :, t, None]
        h = mx.exp(dt * A) * h + dt * x[:, :, t, None] * B[..., t]
        ys.append((h * C[..., t]).sum(axis=-1))
    y = mx.stack(ys, axis=-1)
    if D is not None:
        y = y + D.astype(mx.float32)[:, None] * x
    if z is not None:
        y = y * nn.silu(z.astype(mx.float32))
    out = y.astype(dtype)
    return (out, h) if return_last_state else out
