"""Attention: flash attention forward and backward, an SDPA drop-in, decode, sliding window,
chunked cross-attention and dropout, every kernel written in mtriton.

- `scaled_dot_product_attention(q, k, v, scale=, mask=, sinks=)`: the contract of
  `mx.fast.scaled_dot_product_attention`, for models that call it (mlx-lm's included).
- `flash_attention(...)`: the same kernels with every option: causal, masks, windows, dropout,
  (B, H, S, D) or (B, S, H, D) layout, the log-sum-exp.
- `sliding_window_attention` and `chunked_cross_attention`, and `nn.Module`s over them:
  `FlashAttention`, `SlidingWindowAttention`, `ChunkedCrossAttention`.

Memory is O(L): no (Lq, Lk) matrix is ever stored, forward or backward. The forward saves only
each row's log-sum-exp; the backward recomputes the probabilities from it. Keys and values may
have fewer heads than the queries (GQA/MQA, kv heads dividing q heads): they are read in place,
never repeated. Queries are aligned to the end of the keys (`Lq <= Lk`: prefill and decode
against a cache). Short queries (Lq <= 8) take a split-KV decode path. The conventions for
masks, windows, sinks and dropout are in `spec.py`; a query that sees no key gets a zero row
(MLX's own kernels give the mean of V there: their masks fill with the most negative float).

Kernels see their arrays in row-major order: non-contiguous inputs are copied at the launch.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from .._common import FLOAT_DTYPES, check_array, dtype_name
from ..training import checkpointable
from .backward import attention_backward
from .forward import attention_forward
from .spec import MASK_ADDITIVE, MASK_BOOL, MASK_NONE, AttentionSpec

LAYOUTS = ("BHSD", "BSHD")
MAX_HEAD_DIM = 256


# --------------------------------------------------------------------------- the differentiable core


@mx.custom_function
def _attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    mask: mx.array | None,
    sinks: mx.array | None,
    *,
    spec: AttentionSpec,
    layout: str,
) -> tuple[mx.array, mx.array]:
    return attention_forward(q, k, v, mask, sinks, spec, layout)


@_attention.vjp
def _attention_vjp(
    primals: list[mx.array | None],
    cotangents: list[mx.array],
    outputs: list[mx.array],
    *,
    spec: AttentionSpec,
    layout: str,
) -> tuple[mx.array | None, ...]:
    q, k, v, mask, sinks = primals
    d_out, d_lse = cotangents
    out, lse = outputs
    dq, dk, dv, d_sinks = attention_backward(q, k, v, mask, sinks, out, lse, d_out, d_lse, spec, layout)
    # the mask is a constant of the computation: no gradient flows into it
    d_mask = None if mask is None else mx.zeros_like(mask)
    return dq, dk, dv, d_mask, d_sinks


# --------------------------------------------------------------------------- argument checks


def _check_qkv(fn: str, q: mx.array, k: mx.array, v: mx.array, layout: str) -> tuple[int, ...]:
    """(batch, heads, kv_heads, Lq, Lk, head_dim) of valid q, k, v in `layout`."""
    if layout not in LAYOUTS:
        raise ValueError(f"[{fn}] layout is {layout!r}; expected one of {', '.join(LAYOUTS)}")
    names = "(batch, heads, seq, head_dim)" if layout == "BHSD" else "(batch, seq, heads, head_dim)"
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_array(fn, name, x, FLOAT_DTYPES)
        if x.ndim != 4:
            raise ValueError(f"[{fn}] {name} has shape {tuple(x.shape)}; expected 4 axes {names} ({layout})")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise TypeError(
                f"[{fn}] {name} has dtype {dtype_name(x.dtype)}; expected {dtype_name(q.dtype)} to match q"
            )
    if tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"[{fn}] v has shape {tuple(v.shape)}; expected {tuple(k.shape)} to match k")
    seq = 2 if layout == "BHSD" else 1
    batch, lq, heads, head_dim = q.shape[0], q.shape[seq], q.shape[3 - seq], q.shape[3]
    lk, kv_heads = k.shape[seq], k.shape[3 - seq]
    if k.shape[0] != batch:
        raise ValueError(f"[{fn}] k has batch {k.shape[0]}; expected {batch} to match q")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"[{fn}] q has head_dim {head_dim}; supported: 1 to {MAX_HEAD_DIM}")
    if k.shape[3] != head_dim:
        raise ValueError(f"[{fn}] k has head_dim {k.shape[3]}; expected {head_dim} to match q")
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"[{fn}] k has {kv_heads} heads; expected a divisor of q's {heads} heads")
    if lq == 0 or lk == 0:
        raise ValueError(f"[{fn}] q has {lq} and k {lk} positions; expected at least one each")
    return batch, heads, kv_heads, lq, lk, head_dim


def _mask_array(fn: str, mask: mx.array, dims: tuple[int, ...]) -> tuple[mx.array, int]:
    """`mask` as a 4-D array broadcastable to (batch, heads, Lq, Lk), and its kind."""
    batch, heads, _, lq, lk, _ = dims
    target = (batch, heads, lq, lk)
    if not isinstance(mask, mx.array):
        raise TypeError(f"[{fn}] mask has type {type(mask).__name__}; expected an mx.array or 'causal'")
    if mask.dtype == mx.bool_:
        kind = MASK_BOOL
    elif mask.dtype in FLOAT_DTYPES:
        kind = MASK_ADDITIVE
    else:
        raise TypeError(
            f"[{fn}] mask has dtype {dtype_name(mask.dtype)}; expected bool (keep where True) "
            "or a float dtype (added to the scores)"
        )
    shape = (1,) * (4 - mask.ndim) + tuple(mask.shape)
    if mask.ndim > 4 or any(m not in (1, t) for m, t in zip(shape, target)):
        raise ValueError(
            f"[{fn}] mask has shape {tuple(mask.shape)}; expected a shape that broadcasts to "
            f"(batch, heads, Lq, Lk) = {target}"
        )
    return mask.reshape(shape), kind


def _check_sinks(fn: str, sinks: mx.array, heads: int) -> None:
    check_array(fn, "sinks", sinks, FLOAT_DTYPES)
    if tuple(sinks.shape) != (heads,):
        raise ValueError(
            f"[{fn}] sinks has shape {tuple(sinks.shape)}; expected ({heads},): one per query head"
        )


# --------------------------------------------------------------------------- public functions


def flash_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    scale: float | None = None,
    causal: bool = False,
    mask: mx.array | None = None,
    window: int | None = None,
    dropout_p: float = 0.0,
    seed: int | None = None,
    layout: str = "BHSD",
    return_lse: bool = False,
    sinks: mx.array | None = None,
) -> mx.array | tuple[mx.array, mx.array]:
    """Attention softmax(scale * q k^T + mask) v with O(L) memory, forward and backward.

    Args:
        q: queries, (B, H, Lq, D) or (B, Lq, H, D) per `layout`; float32, float16 or bfloat16.
        k: keys, (B, Hkv, Lk, D) in the same layout and dtype; Hkv divides H (GQA/MQA).
        v: values, the shape of `k`.
        scale: multiplies the scores; default 1 / sqrt(D).
        causal: query position p (queries aligned to the end of the keys) sees keys j <= p.
        mask: a boolean (keep where True) or additive float array broadcastable to
            (B, H, Lq, Lk), combined with `causal` and `window`.
        window: each query sees the `window` keys up to and including its position
            (two-sided, |p - j| < window, without `causal`).
        dropout_p: the chance to drop each attention probability; survivors scale by
            1 / (1 - dropout_p). Reproducible by `seed`; forward and backward agree.
        seed: the dropout stream's seed; drawn from `mx.random` when None.
        layout: "BHSD" or "BSHD", for q, k, v and the output.
        return_lse: also return the (B, H, Lq) float32 log-sum-exp of every row's scores.
        sinks: one logit per query head, (H,), that joins every softmax denominator.

    Returns:
        The output, q's shape and dtype (and the log-sum-exp with `return_lse`). A query that
        sees no key gets zeros and a log-sum-exp of -inf.
    """
    fn = "flash_attention"
    dims = _check_qkv(fn, q, k, v, layout)
    batch, heads, _, lq, _, head_dim = dims
    mask_kind = MASK_NONE
    if mask is not None:
        mask, mask_kind = _mask_array(fn, mask, dims)
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"[{fn}] window is {window!r}; expected a positive int or None")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"[{fn}] dropout_p is {dropout_p!r}; expected 0 <= dropout_p < 1")
    if sinks is not None:
        _check_sinks(fn, sinks, heads)
    if dropout_p > 0.0 and seed is None:
        seed = int(mx.random.randint(0, 2**31 - 1, ()).item())
    spec = AttentionSpec(
        scale=float(1.0 / math.sqrt(head_dim) if scale is None else scale),
        causal=bool(causal),
        window=window,
        mask_kind=mask_kind,
        has_sinks=sinks is not None,
        dropout_p=float(dropout_p),
        seed=int(seed or 0),
    )
    out, lse = _attention(q, k, v, mask, sinks, spec=spec, layout=layout)
    if return_lse:
        return out, lse.reshape(batch, heads, lq)
    return out


def scaled_dot_product_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float,
    mask: mx.array | str | None = None,
    sinks: mx.array | None = None,
) -> mx.array:
    """A drop-in for `mx.fast.scaled_dot_product_attention`, with gradients from kernels.

    Args:
        q: (B, H, Lq, D) queries.
        k: (B, Hkv, Lk, D) keys; Hkv divides H.
        v: (B, Hkv, Lk, D) values.
        scale: multiplies the scores.
        mask: "causal", a boolean mask (keep where True) or an additive mask broadcastable to
            (B, H, Lq, Lk).
        sinks: (H,) attention sinks: one logit per head in every softmax denominator.

    Returns:
        (B, H, Lq, D) in q's dtype. Fully masked rows are zeros (MLX gives the mean of V).
    """
    causal = isinstance(mask, str)
    if causal and mask != "causal":
        raise ValueError(f"[scaled_dot_product_attention] mask is {mask!r}; expected 'causal' or an mx.array")
    return flash_attention(q, k, v, scale=scale, causal=causal, mask=None if causal else mask, sinks=sinks)  # type: ignore[return-value]


def sliding_window_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    window_size: int,
    causal: bool = True,
    scale: float | None = None,
    layout: str = "BHSD",
) -> mx.array:
    """Attention where each query sees only the `window_size` keys up to its own position.

    O(L * window) work and O(L) memory: key blocks outside the window are skipped. The window
    matches mlx-lm's `create_causal_mask(N, offset, window_size)` (and its rotating KV cache):
    query position p sees keys p - window_size < j <= p. With `causal=False` it is two-sided,
    |p - j| < window_size.

    Args:
        q, k, v: as in `flash_attention`.
        window_size: the number of keys each query sees, itself included.
        causal: a one-sided (True) or two-sided window.
        scale: default 1 / sqrt(D).
        layout: "BHSD" or "BSHD".

    Returns:
        The output, q's shape and dtype.
    """
    if not isinstance(window_size, int) or window_size < 1:
        raise ValueError(
            f"[sliding_window_attention] window_size is {window_size!r}; expected a positive int"
        )
    return flash_attention(q, k, v, scale=scale, causal=causal, window=window_size, layout=layout)  # type: ignore[return-value]


def chunked_cross_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    chunk_size: int = 1024,
    scale: float | None = None,
    mask: mx.array | None = None,
    layout: str = "BHSD",
) -> mx.array:
    """Cross-attention over very long keys, `chunk_size` keys at a time.

    Each chunk runs the flash kernel with its log-sum-exp; the chunks' outputs merge with
    weights exp(lse_chunk - lse). Peak memory follows the chunk (plus q and the output), and
    the result equals full attention within float32 rounding. Gradients flow through every
    chunk's kernels.

    Args:
        q: (B, H, Lq, D) queries (or BSHD).
        k, v: (B, Hkv, Lk, D) keys and values, Lk as long as you like.
        chunk_size: keys per chunk.
        scale: default 1 / sqrt(D).
        mask: boolean or additive, broadcastable to (B, H, Lq, Lk); sliced per chunk.
        layout: "BHSD" or "BSHD".

    Returns:
        The output, q's shape and dtype.
    """
    fn = "chunked_cross_attention"
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"[{fn}] chunk_size is {chunk_size!r}; expected a positive int")
    dims = _check_qkv(fn, q, k, v, layout)
    lk = dims[4]
    if mask is not None:
        mask = _mask_array(fn, mask, dims)[0]
    seq = 2 if layout == "BHSD" else 1
    out = lse = None
    for start in range(0, lk, chunk_size):
        keys = slice(start, min(lk, start + chunk_size))
        index = (slice(None),) * seq + (keys,)
        chunk_mask = None if mask is None else mask[..., keys] if mask.shape[-1] > 1 else mask
        o_c, lse_c = flash_attention(
            q, k[index], v[index], scale=scale, mask=chunk_mask, layout=layout, return_lse=True
        )  # type: ignore[misc]
        lse_c = lse_c if layout == "BHSD" else lse_c.transpose(0, 2, 1)
        if out is None:
            out, lse = o_c.astype(mx.float32), lse_c
            continue
        new_lse = mx.logaddexp(lse, lse_c)
        # rows that saw no key so far have lse = -inf on both sides: subtracting 0 there gives
        # weights of 0, not NaN (in the gradient too, which a masked NaN would still reach)
        finite = mx.where(new_lse == -math.inf, 0.0, new_lse)
        w_old = mx.exp(lse - finite)[..., None]
        w_new = mx.exp(lse_c - finite)[..., None]
        out, lse = out * w_old + o_c.astype(mx.float32) * w_new, new_lse
    return out.astype(q.dtype)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- modules


class FlashAttention(nn.Module):
    """Multi-head attention on precomputed q, k, v: a thin module over `flash_attention`.

    `FlashAttention(num_heads=12, head_dim=64, causal=True)(q, k, v)` with q of shape
    (B, S, H, D) (the default layout "BSHD"). Dropout applies in training mode only.
    `checkpoint=True` keeps only q, k, v for the backward pass, which reruns the forward
    kernel (`mlx_primitives.training.checkpoint`).
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        causal: bool = False,
        window: int | None = None,
        dropout_p: float = 0.0,
        scale: float | None = None,
        layout: str = "BSHD",
        checkpoint: bool = False,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.num_heads, self.head_dim = num_heads, head_dim
        self.causal, self.window, self.dropout_p, self.layout = causal, window, dropout_p, layout
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else scale

    def __call__(self, q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None = None) -> mx.array:
        _check_heads("FlashAttention", q, self.num_heads, self.head_dim, self.layout)
        dropout_p = self.dropout_p if self.training else 0.0
        # Drawn here, outside a checkpoint: its rerun in the backward pass must drop the same elements.
        seed = int(mx.random.randint(0, 2**31 - 1, ()).item()) if dropout_p > 0.0 else None
        return self._attend(q, k, v, mask, dropout_p, seed)

    @checkpointable
    def _attend(
        self, q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None, dropout_p: float, seed: int | None
    ) -> mx.array:
        return flash_attention(  # type: ignore[return-value]
            q, k, v, scale=self.scale, causal=self.causal, mask=mask, window=self.window,
            dropout_p=dropout_p, seed=seed, layout=self.layout,
        )  # fmt: skip


class SlidingWindowAttention(nn.Module):
    """`sliding_window_attention` as a module (layout "BSHD" by default; `checkpoint` as in
    `FlashAttention`)."""

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        window_size: int,
        causal: bool = True,
        layout: str = "BSHD",
        checkpoint: bool = False,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.num_heads, self.head_dim, self.window_size = num_heads, head_dim, window_size
        self.causal, self.layout = causal, layout

    @checkpointable
    def __call__(self, q: mx.array, k: mx.array, v: mx.array) -> mx.array:
        _check_heads("SlidingWindowAttention", q, self.num_heads, self.head_dim, self.layout)
        return sliding_window_attention(q, k, v, self.window_size, causal=self.causal, layout=self.layout)


class ChunkedCrossAttention(nn.Module):
    """`chunked_cross_attention` as a module (layout "BSHD" by default; `checkpoint` as in
    `FlashAttention`)."""

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        chunk_size: int = 1024,
        layout: str = "BSHD",
        checkpoint: bool = False,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.num_heads, self.head_dim, self.chunk_size, self.layout = num_heads, head_dim, chunk_size, layout

    @checkpointable
    def __call__(self, q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None = None) -> mx.array:
        _check_heads("ChunkedCrossAttention", q, self.num_heads, self.head_dim, self.layout)
        return chunked_cross_attention(q, k, v, self.chunk_size, mask=mask, layout=self.layout)


def _check_heads(fn: str, q: mx.array, heads: int, head_dim: int, layout: str) -> None:
    check_array(fn, "q", q)
    axis = 1 if layout == "BHSD" else 2
    if q.ndim != 4 or q.shape[axis] != heads or q.shape[3] != head_dim:
        raise ValueError(
            f"[{fn}] q has shape {tuple(q.shape)}; expected {heads} heads of {head_dim} "
            f"({'(B, H, S, D)' if layout == 'BHSD' else '(B, S, H, D)'})"
        )


# --------------------------------------------------------------------------- references


def attention_reference(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    scale: float | None = None,
    causal: bool = False,
    mask: mx.array | None = None,
    window: int | None = None,
    layout: str = "BHSD",
    sinks: mx.array | None = None,
) -> mx.array:
    """`flash_attention` in plain MLX ops (float32, the (Lq, Lk) scores materialised), with the
    same conventions: fully masked rows are zeros. For tests and benchmarks."""
    if layout == "BSHD":
        q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    dtype = q.dtype
    q, k, v = (x.astype(mx.float32) for x in (q, k, v))
    batch, heads, lq, head_dim = q.shape
    kv_heads, lk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    group = heads // kv_heads
    k, v = (mx.repeat(x, group, axis=1) for x in (k, v))
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale
    pos = mx.arange(lq)[:, None] + (lk - lq)
    cols = mx.arange(lk)[None, :]
    visible = mx.ones((lq, lk), dtype=mx.bool_)
    if causal:
        visible = visible & (cols <= pos)
    if window is not None:
        visible = visible & (cols > pos - window)
        if not causal:
            visible = visible & (cols < pos + window)
    visible = mx.broadcast_to(visible, scores.shape)
    if mask is not None and mask.dtype == mx.bool_:
        visible = visible & mask
    elif mask is not None:
        scores = scores + mask.astype(mx.float32)
    scores = mx.where(visible, scores, -math.inf)
    if sinks is not None:
        sink_col = mx.broadcast_to(sinks.astype(mx.float32)[None, :, None, None], (batch, heads, lq, 1))
        scores = mx.concatenate([scores, sink_col], axis=-1)
    top = mx.max(scores, axis=-1, keepdims=True)
    top = mx.where(top == -math.inf, 0.0, top)
    p = mx.exp(scores - top)
    denom = mx.sum(p, axis=-1, keepdims=True)
    p = p / mx.where(denom == 0, 1.0, denom)
    if sinks is not None:
        p = p[..., :lk]
    out = (p @ v).astype(dtype)
    return out if layout == "BHSD" else out.transpose(0, 2, 1, 3)


__all__ = [
    "AttentionSpec",
    "ChunkedCrossAttention",
    "FlashAttention",
    "SlidingWindowAttention",
    "attention_reference",
    "chunked_cross_attention",
    "flash_attention",
    "scaled_dot_product_attention",
    "sliding_window_attention",
]
