"""References the suites check against: attention in float64 on the host and in float32 on
MLX's device, and float32 row sums and scans in two levels, accurate at GPU widths.

The loader skips modules whose names start with `_`, so this file registers no suite.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ._inputs import host

# Columns per block of the two-level float32 sums and scans.
BLOCK = 64
# Heads of float32 scores the device reference holds at once: 2^28 floats (1 GiB), where all
# 128 heads of B4 H32 L4096 would take 8.6 GB per intermediate.
SCORE_ELEMENTS = 1 << 28
ATTENTION_F32_WHY = (
    "scores and probabilities in float32: half-precision inputs are exact in float32 (and in "
    "TF32, should the GPU's matmul use it); TF32 rounding of the probabilities would add at most "
    "~5e-4 relative to each output, under the 1e-2 tolerance of half precision"
)


def _visible(lq: int, lk: int, causal: bool, window: int | None) -> np.ndarray:
    """Which (query, key) pairs attention sees: queries are the last `lq` positions."""
    pos = np.arange(lq)[:, None] + (lk - lq)
    cols = np.arange(lk)[None, :]
    visible = np.ones((lq, lk), dtype=bool)
    if causal:
        visible &= cols <= pos
    if window is not None:
        visible &= cols > pos - window
    return visible


def attention64(
    q: mx.array, k: mx.array, v: mx.array, causal: bool = False, window: int | None = None
) -> np.ndarray:
    """softmax(q k^T / sqrt(d)) v in float64 on the host, one head at a time (the full score
    tensor at GPU sizes would take tens of GB); (batch, heads, len, dim) arrays, GQA where k
    and v have fewer heads."""
    q64, k64, v64 = host(q), host(k), host(v)
    batch, heads, lq, d = q64.shape
    group, lk = heads // k64.shape[1], k64.shape[2]
    visible = _visible(lq, lk, causal, window)
    out = np.empty_like(q64)
    for b in range(batch):
        for h in range(heads):
            s = np.where(visible, q64[b, h] @ k64[b, h // group].T / math.sqrt(d), -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[b, h] = (p / p.sum(axis=1, keepdims=True)) @ v64[b, h // group]
    return out


def attention32(
    q: mx.array, k: mx.array, v: mx.array, causal: bool = False, window: int | None = None
) -> mx.array:
    """`attention64` in float32 plain MLX ops on MLX's device, a few heads at a time so that
    their scores take at most `SCORE_ELEMENTS` floats; returns float32."""
    batch, heads, lq, d = q.shape
    group, lk = heads // k.shape[1], k.shape[2]
    visible = mx.array(_visible(lq, lk, causal, window))
    chunk = max(1, min(heads, SCORE_ELEMENTS // (lq * lk)))
    scale = 1 / math.sqrt(d)
    outs = []
    for b in range(batch):
        for h0 in range(0, heads, chunk):
            kv = mx.array(np.arange(h0, min(h0 + chunk, heads)) // group)
            qs = q[b, h0 : h0 + chunk].astype(mx.float32)
            ks, vs = (mx.take(t[b], kv, axis=0).astype(mx.float32) for t in (k, v))
            s = mx.where(visible, (qs @ ks.transpose(0, 2, 1)) * scale, -math.inf)
            p = mx.exp(s - mx.max(s, axis=-1, keepdims=True))
            out = (p / mx.sum(p, axis=-1, keepdims=True)) @ vs
            mx.eval(out)  # one chunk's scores at a time
            outs.append(out)
    return mx.concatenate(outs, axis=0).reshape(batch, heads, lq, d)


def _blocks(x: mx.array) -> mx.array:
    """(rows, cols) float32 as (rows, cols / BLOCK, BLOCK), zero-padded."""
    rows, cols = x.shape
    padded = -(-cols // BLOCK) * BLOCK
    return mx.pad(x.astype(mx.float32), [(0, 0), (0, padded - cols)]).reshape(rows, padded // BLOCK, BLOCK)


def row_sum32(x: mx.array) -> mx.array:
    """Each row's sum in float32, within blocks of 64 columns and then across them: at 8192
    columns of a softmax's exponentials a single float32 sum (MLX's on the CPU) was off by 46%
    of the softmax check's tolerance, this one by 1.2%. Returns (rows, 1)."""
    return mx.sum(mx.sum(_blocks(x), axis=2), axis=1, keepdims=True)


def row_cumsum32(x: mx.array) -> mx.array:
    """Each row's inclusive prefix sum in float32, within blocks of 64 columns and then across
    block totals: at 4096 columns its largest error was 7% of the cumsum check's tolerance, a
    single float32 scan's (MLX's on the CPU) 24%."""
    rows, cols = x.shape
    local = mx.cumsum(_blocks(x), axis=2)
    totals = mx.cumsum(local[:, :, -1], axis=1)
    offsets = mx.concatenate([mx.zeros((rows, 1)), totals[:, :-1]], axis=1)  # exclusive: exact
    return (local + offsets[:, :, None]).reshape(rows, -1)[:, :cols]
