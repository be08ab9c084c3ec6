"""The flash-attention forward kernel and the split-KV decode kernels, with their launches.

Forward (`_attention_fwd_kernel`): one program per (BLOCK_M queries, batch x query head). It
walks the keys in BLOCK_N steps with the online softmax of FlashAttention-2: a running row
maximum `m` and denominator `l` in log2 units (scores are pre-multiplied by scale / ln 2, so
`exp2` does the work), the output accumulated in float32 and divided once at the end. Only the
keys a query block can see are visited: causal blocks above the diagonal and blocks outside the
window are skipped, not computed and masked. The kernel saves each row's log-sum-exp (natural
units) for the backward pass, which recomputes the probabilities from it.

Decode (`_attention_split_kernel` + `_attention_combine_kernel`): with few queries the forward
has too few programs to fill a GPU. The keys are split across programs instead (flash-decoding):
each program computes the partial maximum, denominator and output of its key range, and the
combine kernel merges the splits with their log-sum-exps. The rows of one program are every
(query head of one kv-head group, query) pair, so K and V are read once per group (GQA at
Lq = 1 serves the whole group from one program).

Head dims that are not powers of two (80, 96) run in the next power of two with the padding
masked. Every score, maximum and sum is float32 whatever the storage dtype.
"""

from __future__ import annotations

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl

from .spec import AttentionSpec

_LOG2E = tl.constexpr(1.4426950408889634)  # scores go to log2 units: exp(x) = exp2(x * log2 e)
_LN2 = tl.constexpr(0.6931471805599453)

# Decode: at most this many queries per head, against at least this many keys, take the
# split-KV path (fewer keys make too few splits to pay for the combine).
DECODE_MAX_QUERIES = 8
DECODE_MIN_KEYS = 256


# --------------------------------------------------------------------------- shared pieces


@triton.jit
def _strides(heads, seq, HEAD_DIM: tl.constexpr, LAYOUT: tl.constexpr):
    """(batch, head, position) strides of a row-major (B, H, S, D) or (B, S, H, D) array.

    Computed here rather than passed: Metal counts every scalar argument as a buffer, and a
    kernel may take 31."""
    if LAYOUT == "BHSD":
        return heads * seq * HEAD_DIM, seq * HEAD_DIM, HEAD_DIM
    return seq * heads * HEAD_DIM, HEAD_DIM, heads * HEAD_DIM


@triton.jit
def _visible(rows, cols, q_pos, lq, lk, window, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr):
    """Which (row, key) pairs of a score block a query may see (causality, window, bounds)."""
    valid = (rows[:, None] < lq) & (cols[None, :] < lk) & (cols[None, :] >= 0)
    if CAUSAL:
        valid = valid & (cols[None, :] <= q_pos[:, None])
    if WINDOWED:
        valid = valid & (cols[None, :] > q_pos[:, None] - window)
        if not CAUSAL:
            valid = valid & (cols[None, :] < q_pos[:, None] + window)
    return valid


@triton.jit
def _masked_scores(qk, valid, MASK, mask_offsets, mask_ok, MASK_KIND: tl.constexpr):
    """Scores (log2 units) with the user's mask applied and -inf where a key is not visible.
    `MASK + mask_offsets` addresses the mask's entries for the block (MASK is None without one)."""
    if MASK_KIND == 1:
        valid = valid & (tl.load(MASK + mask_offsets, mask=mask_ok, other=0) != 0)
    if MASK_KIND == 2:
        qk = qk + tl.load(MASK + mask_offsets, mask=mask_ok, other=0.0).to(tl.float32) * _LOG2E
    return tl.where(valid, qk, float("-inf"))


@triton.jit
def _online_softmax_step(qk, m_i, l_i, acc):
    """One key block of the online softmax: the new maximum, the probabilities (relative to
    it), and the old denominator and accumulator rescaled."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    # a row that has seen no visible key keeps m = -inf; subtracting 0 keeps its p at 0, not NaN
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(qk - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    return m_new, p, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None]


# --------------------------------------------------------------------------- forward


# values, not shapes: specializing on their divisibility by 16 would only compile more kernels
@triton.jit(do_not_specialize=("group", "window", "seed"))
def _attention_fwd_kernel(
    Q, K, V, O, LSE, MASK, SINKS, stride_mb, stride_mh, stride_mm, stride_mn,
    n_heads, group, lq, lk, scale, window, dropout_p, seed,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, MASK_KIND: tl.constexpr,
    HAS_SINKS: tl.constexpr, DROPOUT: tl.constexpr,
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
    q_pos = rows + (lk - lq)  # queries are aligned to the end of the keys

    q = tl.load(
        Q + b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :],
        mask=(rows[:, None] < lq) & d_ok[None, :],
        other=0.0,
    )
    k_base = K + b * stride_kb + kv_h * stride_kh
    v_base = V + b * stride_kb + kv_h * stride_kh
    mask_rows = b * stride_mb + h * stride_mh + rows[:, None] * stride_mm
    qk_scale = scale * _LOG2E

    if HAS_SINKS:  # the sink is one more logit of every row: start the softmax from it
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + tl.load(SINKS + h).to(tl.float32) * _LOG2E
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    else:
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # the keys this block can see: [lo, hi)
    first_pos = pid_m * BLOCK_M + (lk - lq)
    hi = lk
    if CAUSAL:
        hi = tl.minimum(lk, first_pos + BLOCK_M)
    elif WINDOWED:
        hi = tl.minimum(lk, first_pos + BLOCK_M - 1 + window)
    lo = 0
    if WINDOWED:
        lo = tl.maximum(0, first_pos - window + 1) // BLOCK_N * BLOCK_N
    # each (batch, head) keys its own Philox stream; 32-bit counters are Philox4x32, 64-bit
    # ones would run the far slower Philox4x64
    dropout_seed = seed.to(tl.int64) + (pid_bh.to(tl.int64) << 32)
    dropout_row = rows * lk

    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_ok = (cols[:, None] < lk) & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
        valid = _visible(rows, cols, q_pos, lq, lk, window, CAUSAL, WINDOWED)
        qk = _masked_scores(
            qk, valid, MASK, mask_rows + cols[None, :] * stride_mn,
            (rows[:, None] < lq) & (cols[None, :] < lk), MASK_KIND,
        )  # fmt: skip
        m_i, p, l_i, acc = _online_softmax_step(qk, m_i, l_i, acc)
        if DROPOUT:  # after the denominator took p: survivors are rescaled, not renormalized
            keep = tl.rand(dropout_seed, dropout_row[:, None] + cols[None, :]) > dropout_p
            p = tl.where(keep, p / (1.0 - dropout_p), 0.0)
        v = tl.load(v_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision="ieee")

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    tl.store(
        O + b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :],
        out.to(O.dtype.element_ty),
        mask=(rows[:, None] < lq) & d_ok[None, :],
    )
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.log2(l_safe)) * _LN2)
    tl.store(LSE + pid_bh * lq + rows, lse, mask=rows < lq)


# --------------------------------------------------------------------------- decode


@triton.jit
def _attention_split_kernel(
    Q, K, V, O_PART, LSE_PART, MASK, stride_mb, stride_mh, stride_mm, stride_mn,
    n_heads, n_kv_heads, group, lq, lk, scale, window, keys_per_split, n_splits,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, WINDOWED: tl.constexpr, MASK_KIND: tl.constexpr,
):  # fmt: skip
    """One key range of one (batch, kv head): rows are (query head of the group, query)."""
    split = tl.program_id(0)
    pid_bkv = tl.program_id(1)
    b = pid_bkv // n_kv_heads
    kv_h = pid_bkv % n_kv_heads
    stride_qb, stride_qh, stride_qm = _strides(n_heads, lq, HEAD_DIM, LAYOUT)
    stride_kb, stride_kh, stride_kn = _strides(n_kv_heads, lk, HEAD_DIM, LAYOUT)
    r = tl.arange(0, BLOCK_R)
    head = kv_h * group + r // lq  # the query head of each row
    query = r % lq
    row_ok = r < group * lq
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_pos = query + (lk - lq)

    q = tl.load(
        Q + b * stride_qb + head[:, None] * stride_qh + query[:, None] * stride_qm + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_base = K + b * stride_kb + kv_h * stride_kh
    v_base = V + b * stride_kb + kv_h * stride_kh
    mask_rows = b * stride_mb + head[:, None] * stride_mh + query[:, None] * stride_mm
    qk_scale = scale * _LOG2E
    m_i = tl.zeros([BLOCK_R], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)

    lo = split * keys_per_split
    hi = tl.minimum(lk, lo + keys_per_split)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_ok = (cols[:, None] < hi) & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
        valid = _visible(query, cols, q_pos, lq, hi, window, CAUSAL, WINDOWED) & row_ok[:, None]
        qk = _masked_scores(
            qk, valid, MASK, mask_rows + cols[None, :] * stride_mn, row_ok[:, None] & (cols[None, :] < hi),
            MASK_KIND,
        )  # fmt: skip
        m_i, p, l_i, acc = _online_softmax_step(qk, m_i, l_i, acc)
        v = tl.load(v_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision="ieee")

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    # partials are laid out (batch, query head, query, split): the combine reads one row's splits
    part_row = ((b * n_heads + head) * lq + query) * n_splits + split
    tl.store(
        O_PART + part_row[:, None] * HEAD_DIM + offs_d[None, :],
        acc / l_safe[:, None],
        mask=row_ok[:, None] & d_ok[None, :],
    )
    lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log2(l_safe))  # log2 units
    tl.store(LSE_PART + part_row, lse, mask=row_ok)


@triton.jit
def _attention_combine_kernel(
    O_PART, LSE_PART, SINKS, O, LSE, n_heads, lq, n_splits,
    LAYOUT: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, HAS_SINKS: tl.constexpr,
):  # fmt: skip
    """Merges one query row's splits: weights exp(lse_s - lse) with lse their log-sum-exp."""
    row = tl.program_id(0)  # (batch, query head, query) flattened
    b = row // (n_heads * lq)
    h = (row // lq) % n_heads
    query = row % lq
    stride_ob, stride_oh, stride_om = _strides(n_heads, lq, HEAD_DIM, LAYOUT)
    s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = s < n_splits
    lse_s = tl.load(LSE_PART + row * n_splits + s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse_s, 0)
    if HAS_SINKS:
        m = tl.maximum(m, tl.load(SINKS + h).to(tl.float32) * _LOG2E)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse_s - m_safe)
    total = tl.sum(w, 0)
    if HAS_SINKS:
        total += tl.exp2(tl.load(SINKS + h).to(tl.float32) * _LOG2E - m_safe)
    parts = tl.load(
        O_PART + (row * n_splits + s)[:, None] * HEAD_DIM + offs_d[None, :],
        mask=s_ok[:, None] & (offs_d[None, :] < HEAD_DIM),
        other=0.0,
    )
    total_safe = tl.where(total == 0.0, 1.0, total)
    out = tl.sum(parts * w[:, None], 0) / total_safe
    tl.store(
        O + b * stride_ob + h * stride_oh + query * stride_om + offs_d,
        out.to(O.dtype.element_ty),
        mask=offs_d < HEAD_DIM,
    )
    tl.store(LSE + row, tl.where(total == 0.0, float("-inf"), (m_safe + tl.log2(total_safe)) * _LN2))


# --------------------------------------------------------------------------- launches


def head_block(head_dim: int) -> int:
    """The power-of-two width the kernels run a head dim in: at least 16, as every dot dimension
    must be (the padding is masked)."""
    return max(16, triton.next_power_of_2(head_dim))


def forward_config(lq: int, lk: int, head_dim: int) -> dict[str, int]:
    """Query/key block sizes for the forward kernel.

    Metal stages both operands of each `tl.dot` as float32 in 32 KB of threadgroup memory, so
    BLOCK_D x (BLOCK_M + BLOCK_N) <= 8192: 32x32 up to head dim 128, 16x16 at 256. CUDA stages
    half-precision tiles in far more shared memory: 128x64 with 8 warps (Triton's tutorial
    setting on the H100), 64x32 at head dim 256. The interpreter runs every program at once, so
    larger blocks only mean fewer loop steps.
    """
    d = head_block(head_dim)
    target = triton.current_target()
    if target == "cuda":
        block_m, block_n, warps = (128, 64, 8) if d <= 128 else (64, 32, 4)
    elif target == "metal":
        block_m = block_n = 32 if d <= 128 else 16
        warps = 4
    else:
        block_m, block_n, warps = 64, 64, 4
    block_m = max(16, min(block_m, triton.next_power_of_2(lq)))
    block_n = max(16, min(block_n, triton.next_power_of_2(lk)))
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": warps}


def mask_strides(mask: mx.array | None) -> tuple[int, int, int, int]:
    """Row-major strides of a 4-D mask with 0 along its broadcast (size-1) axes."""
    if mask is None:
        return 0, 0, 0, 0
    strides, step = [], 1
    for size in reversed(mask.shape):
        strides.append(step if size > 1 else 0)
        step *= size
    return tuple(reversed(strides))  # type: ignore[return-value]


def shapes(q: mx.array, k: mx.array, layout: str) -> tuple[int, int, int, int, int, int]:
    """(batch, heads, kv_heads, Lq, Lk, head_dim) of q and k in `layout`."""
    seq = 2 if layout == "BHSD" else 1
    return q.shape[0], q.shape[3 - seq], k.shape[3 - seq], q.shape[seq], k.shape[seq], q.shape[3]


def takes_decode_path(q: mx.array, k: mx.array, spec: AttentionSpec, layout: str) -> bool:
    """Short queries against many keys (and no dropout) split the keys across programs."""
    _, _, _, lq, lk, _ = shapes(q, k, layout)
    return lq <= DECODE_MAX_QUERIES and lk >= DECODE_MIN_KEYS and spec.dropout_p == 0.0


def forward_launch(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    mask: mx.array | None,
    sinks: mx.array | None,
    spec: AttentionSpec,
    layout: str,
) -> tuple[tuple[int, int], tuple, dict]:
    """The forward kernel's grid, arguments and keywords (outputs fresh)."""
    batch, heads, kv_heads, lq, lk, head_dim = shapes(q, k, layout)
    config = forward_config(lq, lk, head_dim)
    grid = (triton.cdiv(lq, config["BLOCK_M"]), batch * heads)
    args = (
        q, k, v, triton.empty(q.shape, q.dtype), triton.empty((batch * heads, lq), mx.float32),
        mask, sinks, *mask_strides(mask),
        heads, heads // kv_heads, lq, lk, spec.scale, spec.window or 0, spec.dropout_p, spec.seed,
    )  # fmt: skip
    keywords = dict(
        LAYOUT=layout, HEAD_DIM=head_dim, BLOCK_D=head_block(head_dim), CAUSAL=spec.causal,
        WINDOWED=spec.window is not None, MASK_KIND=spec.mask_kind, HAS_SINKS=spec.has_sinks,
        DROPOUT=spec.dropout_p > 0.0, **config,
    )  # fmt: skip
    return grid, args, keywords


def attention_forward(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    mask: mx.array | None,
    sinks: mx.array | None,
    spec: AttentionSpec,
    layout: str,
) -> tuple[mx.array, mx.array]:
    """The attention output (q's shape and dtype) and the (batch * heads, Lq) float32
    log-sum-exp of every row, natural units."""
    if takes_decode_path(q, k, spec, layout):
        return _decode(q, k, v, mask, sinks, spec, layout, shapes(q, k, layout))
    grid, args, keywords = forward_launch(q, k, v, mask, sinks, spec, layout)
    out, lse = _attention_fwd_kernel[grid].functional(*args, **keywords)
    return out, lse


def _decode(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    mask: mx.array | None,
    sinks: mx.array | None,
    spec: AttentionSpec,
    layout: str,
    dims: tuple[int, int, int, int, int, int],
) -> tuple[mx.array, mx.array]:
    batch, heads, kv_heads, lq, lk, head_dim = dims
    group = heads // kv_heads
    block_d = head_block(head_dim)
    block_r = max(16, triton.next_power_of_2(group * lq))
    block_n = 16 if block_d > 128 or triton.current_target() == "metal" and block_r > 16 else 32
    if triton.current_target() == "cuda":
        block_n = 64 if block_d <= 128 else 32
    # enough splits to give the GPU a few programs per core, each with a few key blocks
    n_splits = max(1, min(triton.cdiv(lk, 4 * block_n), triton.cdiv(128, batch * kv_heads)))
    keys_per_split = triton.cdiv(triton.cdiv(lk, n_splits), block_n) * block_n
    n_splits = triton.cdiv(lk, keys_per_split)
    rows = batch * heads * lq
    o_part, lse_part = _attention_split_kernel[(n_splits, batch * kv_heads)].functional(
        q, k, v, triton.empty((rows * n_splits, head_dim), mx.float32),
        triton.empty((rows * n_splits,), mx.float32), mask, *mask_strides(mask),
        heads, kv_heads, group, lq, lk, spec.scale, spec.window or 0, keys_per_split, n_splits,
        LAYOUT=layout, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_R=block_r, BLOCK_N=block_n, CAUSAL=spec.causal,
        WINDOWED=spec.window is not None, MASK_KIND=spec.mask_kind,
    )  # fmt: skip
    out, lse = _attention_combine_kernel[(rows,)].functional(
        o_part, lse_part, sinks, triton.empty(q.shape, q.dtype), triton.empty((batch * heads, lq), mx.float32),
        heads, lq, n_splits, LAYOUT=layout, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_S=triton.next_power_of_2(n_splits),
        HAS_SINKS=spec.has_sinks,
    )  # fmt: skip
    return out, lse
