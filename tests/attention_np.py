"""A float64 NumPy attention with mlx_primitives.attention's conventions (spec.py): the reference
of the attention tests."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
from conftest import to_numpy


def f64(x) -> np.ndarray:  # type: ignore[no-untyped-def]
    return to_numpy(x).astype(np.float64)


def visible(lq: int, lk: int, causal: bool, window: int | None) -> np.ndarray:
    """(Lq, Lk): which keys each query sees, queries aligned to the end of the keys."""
    pos = np.arange(lq)[:, None] + (lk - lq)
    cols = np.arange(lk)[None, :]
    ok = np.ones((lq, lk), dtype=bool)
    if causal:
        ok &= cols <= pos
    if window is not None:
        ok &= cols > pos - window
        if not causal:
            ok &= cols < pos + window
    return ok


def attention64(
    q,  # type: ignore[no-untyped-def]
    k,
    v,
    scale: float | None = None,
    causal: bool = False,
    mask=None,
    window: int | None = None,
    sinks=None,
    keep: np.ndarray | None = None,
    dropout_p: float = 0.0,
    layout: str = "BHSD",
) -> tuple[np.ndarray, np.ndarray]:
    """(output, log-sum-exp) in float64; q, k, v as mx arrays or NumPy in `layout`; `keep`
    a (B, H, Lq, Lk) dropout keep mask."""
    q, k, v = (f64(x) if not isinstance(x, np.ndarray) else x.astype(np.float64) for x in (q, k, v))
    if layout == "BSHD":
        q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    batch, heads, lq, head_dim = q.shape
    lk = k.shape[2]
    group = heads // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = 1 / math.sqrt(head_dim) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    ok = np.broadcast_to(visible(lq, lk, causal, window), s.shape).copy()
    if mask is not None:
        m = mask if isinstance(mask, np.ndarray) else np.array(mask.astype(mx.float32))
        if mask.dtype in (bool, mx.bool_):
            ok &= np.broadcast_to(m.astype(bool), s.shape)
        else:
            s = s + m.astype(np.float64)
    s = np.where(ok, s, -np.inf)
    top = s.max(axis=-1, keepdims=True)
    if sinks is not None:
        sink = f64(sinks)[None, :, None, None]
        top = np.maximum(top, sink)
    top = np.where(np.isinf(top), 0.0, top)
    p = np.exp(s - top)
    denom = p.sum(axis=-1, keepdims=True)
    if sinks is not None:
        denom = denom + np.exp(sink - top)
    with np.errstate(divide="ignore"):
        lse = np.where(denom[..., 0] > 0, np.log(denom[..., 0]) + top[..., 0], -np.inf)
    p = p / np.where(denom == 0, 1.0, denom)
    if keep is not None:
        p = np.where(keep, p / (1 - dropout_p), 0.0)
    out = np.einsum("bhij,bhjd->bhid", p, v)
    if layout == "BSHD":
        out = out.transpose(0, 2, 1, 3)
    return out, lse
