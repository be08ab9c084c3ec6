"""The flash-attention backward kernels (FlashAttention-2, with recomputation), with their launches.

The forward saved only each row's log-sum-exp; the backward recomputes every probability block
from it, P = exp2(qk * scale * log2 e - lse * log2 e), so no (Lq, Lk) matrix is ever stored.
With s = scale * q k^T (+ mask), O = P_drop V and delta_i = dO_i . O_i:

    dV = P_drop^T dO,  dP_drop = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK = scale dS^T Q

where dP is dP_drop through the dropout mask (kept entries scaled by 1 / (1 - p), dropped ones
zero). The log-sum-exp is an output too (chunked cross-attention merges chunks with it):
its cotangent adds P_ij * d_lse_i to dS_ij, which is delta_i - d_lse_i in place of delta_i.

- `_attention_bwd_preprocess_kernel`: delta_i - d_lse_i for every row (zero for rows that saw
  no key: their lse is the constant -inf, so nothing flows through them).
- `_attention_bwd_dkdv_kernel`: one program per (BLOCK_N keys, batch x kv head). It walks the
  query heads of the kv-head group and the query blocks that can see its keys, and sums dK and
  dV over all of them in registers: GQA needs no atomics and the sums are deterministic.
- `_attention_bwd_dq_kernel`: one program per (BLOCK_M queries, batch x query head), walking
  the key blocks the forward walked.
- `_attention_bwd_sinks_kernel`: d sink_h = -sum_{b, i} exp(sink_h - lse_bhi) delta_bhi, one
  program per head.

Masks (causal, window, boolean, additive, bounds) and the dropout stream are applied by the
forward's own helpers and formulas, so both passes see the same probabilities.
"""

from __future__ import annotations

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl

from .forward import _LOG2E, _masked_scores, _strides, _visible, head_block, mask_strides, shapes
from .spec import AttentionSpec


@triton.jit
def _row_lse2(LSE, row_base, rows, lq):
    """The rows' log-sum-exp in log2 units, 0 for rows that saw no key (their scores are all
    -inf, so their probabilities come out 0, not NaN)."""
    lse = tl.load(LSE + row_base + rows, mask=rows < lq, other=0.0)
    return tl.where(lse == float("-inf"), 0.0, lse * _LOG2E)


@triton.jit
def _dropout_keep(seed, bh, rows, cols, lk, dropout_p):
    """Which entries of a probability block survive dropout: the forward's stream, keyed by
    seed + (b * H + h) << 32 with offsets i * Lk + j."""
    stream = seed.to(tl.int64) + (bh.to(tl.int64) << 32)
    return tl.rand(stream, (rows * lk)[:, None] + cols[None, :]) > dropout_p


# --------------------------------------------------------------------------- kernels

# The seed changes every training step and the group size and window with the model: none
# specializes (a seed divisible by 16 would compile a second kernel).
_GENERIC = ("group", "window", "seed")


@triton.jit
def _attention_bwd_preprocess_kernel(
    O, DO, LSE, D_LSE, DELTA, n_heads, lq,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    HAS_D_LSE: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    h = pid_bh % n_heads
    stride_b, stride_h, stride_m = _strides(n_heads, lq, HEAD_DIM, LAYOUT)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = rows < lq
    offsets = b * stride_b + h * stride_h + rows[:, None] * stride_m + offs_d[None, :]
    ok = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + offsets, mask=ok, other=0.0).to(tl.float32)
    do = tl.load(DO + offsets, mask=ok, other=0.0).to(tl.float32)
    delta = tl.sum(o * do, 1)
    if HAS_D_LSE:
        delta -= tl.load(D_LSE + pid_bh * lq + rows, mask=row_ok, other=0.0).to(tl.float32)
    lse = tl.load(LSE + pid_bh * lq + rows, mask=row_ok, other=0.0)
    tl.store(DELTA + pid_bh * lq + rows, tl.where(lse == float("-inf"), 0.0, delta), mask=row_ok)


@triton.jit(do_not_specialize=_GENERIC)
def _attention_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, MASK, stride_mb, stride_mh, stride_mm, stride_mn,
    n_heads, group, lq, lk, scale, window, dropout_p, seed,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, MASK_KIND: tl.constexpr, DROPOUT: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bkv = tl.program_id(1)
    n_kv_heads = n_heads // group
    b = pid_bkv // n_kv_heads
    kv_h = pid_bkv % n_kv_heads
    stride_qb, stride_qh, stride_qm = _strides(n_heads, lq, HEAD_DIM, LAYOUT)
    stride_kb, stride_kh, stride_kn = _strides(n_kv_heads, lk, HEAD_DIM, LAYOUT)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM

    kv_offsets = b * stride_kb + kv_h * stride_kh + cols[:, None] * stride_kn + offs_d[None, :]
    kv_ok = (cols[:, None] < lk) & d_ok[None, :]
    k = tl.load(K + kv_offsets, mask=kv_ok, other=0.0)
    v = tl.load(V + kv_offsets, mask=kv_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    qk_scale = scale * _LOG2E

    # the queries that can see these keys: [lo, hi). Query i sits at position i + lk - lq.
    first_key = pid_n * BLOCK_N - (lk - lq)
    lo = 0
    if CAUSAL:
        lo = tl.maximum(0, first_key) // BLOCK_M * BLOCK_M
    elif WINDOWED:
        lo = tl.maximum(0, first_key - window + 1) // BLOCK_M * BLOCK_M
    hi = lq
    if WINDOWED:
        hi = tl.minimum(lq, first_key + BLOCK_N - 1 + window)

    for h in range(kv_h * group, kv_h * group + group):
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_qb + h * stride_qh
        bh = b * n_heads + h
        mask_base = b * stride_mb + h * stride_mh
        for start_m in range(lo, hi, BLOCK_M):
            rows = start_m + offs_m
            q_ok = (rows[:, None] < lq) & d_ok[None, :]
            q_offsets = rows[:, None] * stride_qm + offs_d[None, :]
            q = tl.load(q_base + q_offsets, mask=q_ok, other=0.0)
            do = tl.load(do_base + q_offsets, mask=q_ok, other=0.0)
            lse2 = _row_lse2(LSE, bh * lq, rows, lq)
            delta = tl.load(DELTA + bh * lq + rows, mask=rows < lq, other=0.0)

            qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
            valid = _visible(rows, cols, rows + (lk - lq), lq, lk, window, CAUSAL, WINDOWED)
            qk = _masked_scores(
                qk, valid, MASK, mask_base + rows[:, None] * stride_mm + cols[None, :] * stride_mn,
                (rows[:, None] < lq) & (cols[None, :] < lk), MASK_KIND,
            )  # fmt: skip
            p = tl.exp2(qk - lse2[:, None])
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            if DROPOUT:
                keep = _dropout_keep(seed, bh, rows, cols, lk, dropout_p)
                p_drop = tl.where(keep, p / (1.0 - dropout_p), 0.0)
                dp = tl.where(keep, dp / (1.0 - dropout_p), 0.0)
            else:
                p_drop = p
            dv = tl.dot(tl.trans(p_drop.to(do.dtype)), do, dv, input_precision="ieee")
            ds = p * (dp - delta[:, None])
            dk = tl.dot(tl.trans(ds.to(q.dtype)), q, dk, input_precision="ieee")

    tl.store(DK + kv_offsets, (dk * scale).to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + kv_offsets, dv.to(DV.dtype.element_ty), mask=kv_ok)


@triton.jit(do_not_specialize=_GENERIC)
def _attention_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, MASK, stride_mb, stride_mh, stride_mm, stride_mn,
    n_heads, group, lq, lk, scale, window, dropout_p, seed,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, MASK_KIND: tl.constexpr, DROPOUT: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    h = pid_bh % n_heads
    kv_h = h // group
    stride_qb, stride_qh, stride_qm = _strides(n_heads, lq, HEAD_DIM, LAYOUT)
    stride_kb, stride_kh, stride_kn = _strides(n_heads // group, lk, HEAD_DIM, LAYOUT)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_pos = rows + (lk - lq)

    q_offsets = b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :]
    q_ok = (rows[:, None] < lq) & d_ok[None, :]
    q = tl.load(Q + q_offsets, mask=q_ok, other=0.0)
    do = tl.load(DO + q_offsets, mask=q_ok, other=0.0)
    lse2 = _row_lse2(LSE, pid_bh * lq, rows, lq)
    delta = tl.load(DELTA + pid_bh * lq + rows, mask=rows < lq, other=0.0)
    k_base = K + b * stride_kb + kv_h * stride_kh
    v_base = V + b * stride_kb + kv_h * stride_kh
    mask_rows = b * stride_mb + h * stride_mh + rows[:, None] * stride_mm
    qk_scale = scale * _LOG2E
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # the keys this block can see, as in the forward: [lo, hi)
    first_pos = pid_m * BLOCK_M + (lk - lq)
    hi = lk
    if CAUSAL:
        hi = tl.minimum(lk, first_pos + BLOCK_M)
    elif WINDOWED:
        hi = tl.minimum(lk, first_pos + BLOCK_M - 1 + window)
    lo = 0
    if WINDOWED:
        lo = tl.maximum(0, first_pos - window + 1) // BLOCK_N * BLOCK_N

    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_ok = (cols[:, None] < lk) & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
        valid = _visible(rows, cols, q_pos, lq, lk, window, CAUSAL, WINDOWED)
        qk = _masked_scores(
            qk, valid, MASK, mask_rows + cols[None, :] * stride_mn,
            (rows[:, None] < lq) & (cols[None, :] < lk), MASK_KIND,
        )  # fmt: skip
        p = tl.exp2(qk - lse2[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision="ieee")
        if DROPOUT:
            keep = _dropout_keep(seed, pid_bh, rows, cols, lk, dropout_p)
            dp = tl.where(keep, dp / (1.0 - dropout_p), 0.0)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision="ieee")

    tl.store(DQ + q_offsets, (dq * scale).to(DQ.dtype.element_ty), mask=q_ok)


@triton.jit
def _attention_bwd_sinks_kernel(
    SINKS, LSE, DELTA, D_SINKS, batch, n_heads, lq, BLOCK: tl.constexpr,
):  # fmt: skip
    h = tl.program_id(0)
    sink = tl.load(SINKS + h).to(tl.float32)
    offs = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for b in range(0, batch):
        row_base = (b * n_heads + h) * lq
        for start in range(0, lq, BLOCK):
            rows = start + offs
            ok = rows < lq
            lse = tl.load(LSE + row_base + rows, mask=ok, other=float("-inf"))
            delta = tl.load(DELTA + row_base + rows, mask=ok, other=0.0)
            weight = tl.where(lse == float("-inf"), 0.0, tl.exp(sink - lse))  # the sink's probability
            total += weight * delta
    tl.store(D_SINKS + h, (-tl.sum(total, 0)).to(D_SINKS.dtype.element_ty))


# --------------------------------------------------------------------------- launches


def backward_config(lq: int, lk: int, head_dim: int) -> dict[str, int]:
    """Query/key block sizes of the dK/dV and dQ kernels (`dkdv_m`, `dkdv_n`, `dq_m`, `dq_n`)
    and their warps.

    Metal stages both operands of each `tl.dot` as float32 in 32 KB of threadgroup memory. Every
    dot here is (M, D) x (D, N) or (N, M) x (M, D), so D x (M + N) <= 8192 and M x (N + D) <= 8192:
    32x32 up to head dim 128, 16x16 at 256, as in the forward. The dK/dV program holds four
    (BLOCK_N, D) tiles (K, V and both accumulators), the dQ program three (BLOCK_M, D) ones, so
    CUDA takes 32 queries x 64 keys for dK/dV and 64 x 32 for dQ, half that at 256 (not tuned on
    a GPU yet). The interpreter runs every program at once: larger blocks only mean fewer steps.
    """
    d = head_block(head_dim)
    target = triton.current_target()
    if target == "cuda":
        dkdv_m, dkdv_n, dq_m, dq_n = (32, 64, 64, 32) if d <= 128 else (16, 32, 32, 16)
    elif target == "metal":
        dkdv_m = dkdv_n = dq_m = dq_n = 32 if d <= 128 else 16
    else:
        dkdv_m = dkdv_n = dq_m = dq_n = 64
    m_cap, n_cap = triton.next_power_of_2(lq), triton.next_power_of_2(lk)
    return {
        "dkdv_m": max(16, min(dkdv_m, m_cap)),
        "dkdv_n": max(16, min(dkdv_n, n_cap)),
        "dq_m": max(16, min(dq_m, m_cap)),
        "dq_n": max(16, min(dq_n, n_cap)),
        "num_warps": 4,
    }


def attention_backward(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    mask: mx.array | None,
    sinks: mx.array | None,
    out: mx.array,
    lse: mx.array,
    d_out: mx.array,
    d_lse: mx.array | None,
    spec: AttentionSpec,
    layout: str,
) -> tuple[mx.array, mx.array, mx.array, mx.array | None]:
    """The gradients of `attention_forward`'s two outputs' loss with respect to its inputs.

    Args:
        q, k, v, mask, sinks, spec, layout: the forward's inputs (mask 4-D, broadcastable to
            (B, H, Lq, Lk)).
        out: the forward's output, q's shape.
        lse: the forward's (B * H, Lq) float32 log-sum-exp (natural units, sink included).
        d_out: the cotangent of `out`.
        d_lse: the cotangent of `lse` (B * H, Lq), or None where the lse was not used.

    Returns:
        dq, dk, dv in the shapes and dtypes of q, k, v, and d_sinks in sinks' (None without).
    """
    batch, heads, kv_heads, lq, lk, head_dim = shapes(q, k, layout)
    block_d = head_block(head_dim)
    config = backward_config(lq, lk, head_dim)
    warps = config["num_warps"]
    d_out = d_out.astype(q.dtype)

    block_rows = max(1, min(triton.next_power_of_2(lq), 4096 // block_d))
    (delta,) = _attention_bwd_preprocess_kernel[(triton.cdiv(lq, block_rows), batch * heads)].functional(
        out, d_out, lse, d_lse, triton.empty((batch * heads, lq), mx.float32), heads, lq,
        LAYOUT=layout, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=block_rows, HAS_D_LSE=d_lse is not None,
        num_warps=warps,
    )  # fmt: skip

    common = dict(
        LAYOUT=layout, HEAD_DIM=head_dim, BLOCK_D=block_d, CAUSAL=spec.causal,
        WINDOWED=spec.window is not None, MASK_KIND=spec.mask_kind, DROPOUT=spec.dropout_p > 0.0,
        num_warps=warps,
    )  # fmt: skip
    scalars = (heads, heads // kv_heads, lq, lk, spec.scale, spec.window or 0, spec.dropout_p, spec.seed)
    grid = (triton.cdiv(lk, config["dkdv_n"]), batch * kv_heads)
    dk, dv = _attention_bwd_dkdv_kernel[grid].functional(
        q, k, v, d_out, lse, delta, triton.empty(k.shape, k.dtype), triton.empty(v.shape, v.dtype),
        mask, *mask_strides(mask), *scalars, BLOCK_M=config["dkdv_m"], BLOCK_N=config["dkdv_n"], **common,
    )  # fmt: skip
    grid = (triton.cdiv(lq, config["dq_m"]), batch * heads)
    (dq,) = _attention_bwd_dq_kernel[grid].functional(
        q, k, v, d_out, lse, delta, triton.empty(q.shape, q.dtype),
        mask, *mask_strides(mask), *scalars, BLOCK_M=config["dq_m"], BLOCK_N=config["dq_n"], **common,
    )  # fmt: skip

    d_sinks = None
    if sinks is not None:
        (d_sinks,) = _attention_bwd_sinks_kernel[(heads,)].functional(
            sinks, lse, delta, triton.empty((heads,), sinks.dtype), batch, heads, lq,
            BLOCK=max(16, min(1024, triton.next_power_of_2(lq))), num_warps=warps,
        )  # fmt: skip
    return dq, dk, dv, d_sinks
