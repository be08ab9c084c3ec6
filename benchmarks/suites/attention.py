"""Suite `attention`: mlx_primitives.attention against `mx.fast.scaled_dot_product_attention`
and the unfused MLX composition (softmax(q k^T) v with the score matrix in memory).

Entries: the forward (full and causal), forward + backward (the three input gradients, through
`mx.vjp`), decode (Lq = 1 against long caches, GQA 32/8) and a sliding window (w = 512 at
L = 4096; MLX's sdpa gets the window as a boolean mask). GPU sizes are the attention issue's;
CPU emulation gets small ones. FLOPs count the two products of the visible scores only
(4 * Lq * Lk * D per head, halved by causality, w / L of it in the window); forward + backward
counts 3.5 times the forward (the backward's five products against the forward's two).

The unfused column runs only where its float32 score tensor takes at most 2 GiB: a GPU plan
evaluates ten launches at once, and at B4 H32 L4096 each holds several 8.6 GB tensors.

References: float64 NumPy, one head at a time, for the forward entries on CPU tiers; on GPUs
float32 MLX on the device, a few heads at a time (`_references.attention32`: 30-70 s per entry
on the H200's host in float64 at L4096, against milliseconds). Forward + backward is checked
against the float32 gradients of the unfused MLX composition, on the device, on every tier: a
float64 backward of B4 H32 L4096 on the host would take hours.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.attention import attention_reference, flash_attention, sliding_window_attention

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE
from ._references import ATTENTION_F32_WHY, attention32, attention64

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
# This module is the cases' `kernels`: launches call the public functions re-exported here.
_API = sys.modules[__name__]
__all__ = ["flash_attention", "sliding_window_attention"]

# B4 H32 L4096 D128: the attention issue's long-context size
_LONG = {"batch": 4, "heads": 32, "kv_heads": 32, "lq": 4096, "lk": 4096, "d": 128}
_FORWARD_GPU = (
    {**_LONG, "causal": False, "dtype": "float16"},
    {**_LONG, "causal": True, "dtype": "float16"},
    {**_LONG, "causal": False, "dtype": "bfloat16"},
    {**_LONG, "causal": True, "dtype": "bfloat16"},
    {**_LONG, "batch": 8, "lq": 1024, "lk": 1024, "d": 64, "causal": True, "dtype": "float16"},
)
_FORWARD_CPU = (
    {"batch": 1, "heads": 4, "kv_heads": 4, "lq": 256, "lk": 256, "d": 64, "causal": True},
    {"batch": 1, "heads": 4, "kv_heads": 2, "lq": 256, "lk": 256, "d": 128, "causal": False},
)
_SMOKE = {
    "batch": 1,
    "heads": 2,
    "kv_heads": 1,
    "lq": 37,
    "lk": 45,
    "d": 32,
    "causal": True,
    "dtype": "float32",
}


def _inputs_of(
    batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int, dtype: str
) -> dict[str, mx.array]:
    inputs = _inputs.Inputs()
    return _inputs.evaluated(
        {
            "q": inputs.normal((batch, heads, lq, d), dtype),
            "k": inputs.normal((batch, kv_heads, lk, d), dtype),
            "v": inputs.normal((batch, kv_heads, lk, d), dtype),
        }
    )


def _if_fits(run: Callable[[], Any], batch: int, heads: int, lq: int, lk: int) -> Callable[[], Any] | None:
    """`run` where the unfused composition's float32 (B, H, Lq, Lk) scores fit in 2 GiB."""
    return run if 4 * batch * heads * lq * lk <= 2**31 else None


def _label(
    batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int, dtype: str, extra: str = ""
) -> str:
    kv = f"/{kv_heads}" if kv_heads != heads else ""
    length = f"L{lq}" if lq == lk else f"Lq{lq} Lk{lk}"
    return f"B{batch} H{heads}{kv} {length} D{d} {SHORT_DTYPE[dtype]}{extra}"


def _forward_flops(batch: int, heads: int, lq: int, lk: int, d: int, causal: bool) -> int:
    pairs = lq * lk - (lq * (lq - 1) // 2 if causal else 0)
    return 4 * batch * heads * pairs * d


@benchmark(
    suite="attention",
    name="forward",
    bound="compute",
    builtin="mx.fast.scaled_dot_product_attention",
    sizes=Sizes(smoke=_SMOKE, cpu=_FORWARD_CPU, gpu=_FORWARD_GPU),
)
def forward_entry(
    batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int, causal: bool, dtype: str = "float32"
) -> Case:
    """Flash attention forward, full or causal, GQA where kv_heads < heads."""
    buf = _inputs_of(batch, heads, kv_heads, lq, lk, d, dtype)
    q, k, v = buf["q"], buf["k"], buf["v"]
    scale, mask = 1 / math.sqrt(d), "causal" if causal else None
    return Case(
        label=_label(batch, heads, kv_heads, lq, lk, d, dtype, " causal" if causal else ""),
        kernels=_API,
        buffers=buf,
        launch=lambda api, b: api.flash_attention(b["q"], b["k"], b["v"], causal=causal),
        builtin=lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask),
        unfused=_if_fits(lambda: attention_reference(q, k, v, causal=causal), batch, heads, lq, lk),
        reference=lambda: attention64(q, k, v, causal),
        bytes=2 * q.nbytes + k.nbytes + v.nbytes,
        flops=_forward_flops(batch, heads, lq, lk, d, causal),
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(lambda: attention32(q, k, v, causal), ATTENTION_F32_WHY),
    )


def _gradients(
    attend: Callable[..., mx.array], buf: dict[str, mx.array], cotangent: mx.array
) -> Callable[[], Any]:
    def run() -> tuple[mx.array, ...]:
        _, grads = mx.vjp(attend, [buf["q"], buf["k"], buf["v"]], [cotangent])
        return tuple(grads)

    return run


@benchmark(
    suite="attention",
    name="forward_backward",
    bound="compute",
    builtin="mx.vjp of mx.fast.scaled_dot_product_attention",
    sizes=Sizes(smoke=_SMOKE, cpu=_FORWARD_CPU[:1], gpu=_FORWARD_GPU[:2] + _FORWARD_GPU[4:]),
)
def forward_backward_entry(
    batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int, causal: bool, dtype: str = "float32"
) -> Case:
    """dq, dk, dv of flash attention through its kernel backward (recomputing from the log-sum-exp)."""
    buf = _inputs_of(batch, heads, kv_heads, lq, lk, d, dtype)
    cotangent = _inputs.Inputs(_inputs.SEED + 1).normal(tuple(buf["q"].shape), dtype)
    mx.eval(cotangent)
    scale, mask = 1 / math.sqrt(d), "causal" if causal else None
    unfused = _gradients(lambda q, k, v: attention_reference(q, k, v, causal=causal), buf, cotangent)

    def reference() -> tuple[np.ndarray, ...]:
        return tuple(_inputs.host(g) for g in unfused())

    return Case(
        label=_label(batch, heads, kv_heads, lq, lk, d, dtype, " causal" if causal else ""),
        kernels=_API,
        buffers=buf,
        launch=lambda api, b: _gradients(
            lambda q, k, v: api.flash_attention(q, k, v, causal=causal), b, cotangent
        )(),
        builtin=_gradients(
            lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask),
            buf,
            cotangent,
        ),
        unfused=_if_fits(unfused, batch, heads, lq, lk),
        reference=reference,
        bytes=4 * buf["q"].nbytes + 4 * buf["k"].nbytes,
        flops=_forward_flops(batch, heads, lq, lk, d, causal) * 7 // 2,
        rtol=2 * TOLERANCE[dtype],
        atol=2 * TOLERANCE[dtype],
        # the same gradients, compared on the device instead of copied to the host in float64
        fast_reference=DeviceReference(
            unfused, "the gradients of the float32 unfused composition (the reference on every tier)"
        ),
    )


@benchmark(
    suite="attention",
    name="decode",
    bound="memory",
    builtin="mx.fast.scaled_dot_product_attention",
    sizes=Sizes(
        smoke={
            "batch": 1,
            "heads": 4,
            "kv_heads": 1,
            "lq": 1,
            "lk": 300,
            "d": 64,
            "causal": False,
            "dtype": "float32",
        },
        cpu=({"batch": 1, "heads": 8, "kv_heads": 2, "lq": 1, "lk": 2048, "d": 128, "causal": False},),
        gpu=(
            {
                "batch": 4,
                "heads": 32,
                "kv_heads": 8,
                "lq": 1,
                "lk": 4096,
                "d": 128,
                "causal": False,
                "dtype": "float16",
            },
            {
                "batch": 4,
                "heads": 32,
                "kv_heads": 8,
                "lq": 1,
                "lk": 32768,
                "d": 128,
                "causal": False,
                "dtype": "float16",
            },
        ),
    ),
)
def decode_entry(
    batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int, causal: bool, dtype: str = "float32"
) -> Case:
    """One new token per sequence against a KV cache (split-KV flash-decoding); GQA 32/8."""
    case = forward_entry(batch, heads, kv_heads, lq, lk, d, causal, dtype)
    case.bytes = 2 * case.buffers["q"].nbytes + case.buffers["k"].nbytes + case.buffers["v"].nbytes
    return case


@benchmark(
    suite="attention",
    name="sliding_window",
    bound="compute",
    builtin="mx.fast.scaled_dot_product_attention with a window mask",
    sizes=Sizes(
        smoke={"batch": 1, "heads": 2, "lq": 70, "d": 32, "window": 16, "dtype": "float32"},
        cpu=({"batch": 1, "heads": 4, "lq": 1024, "d": 64, "window": 128},),
        gpu=({"batch": 4, "heads": 32, "lq": 4096, "d": 128, "window": 512, "dtype": "float16"},),
    ),
)
def sliding_window_entry(
    batch: int, heads: int, lq: int, d: int, window: int, dtype: str = "float32"
) -> Case:
    """Causal attention over the last `window` keys: blocks outside the window are skipped."""
    buf = _inputs_of(batch, heads, heads, lq, lq, d, dtype)
    q, k, v = buf["q"], buf["k"], buf["v"]
    pos = mx.arange(lq)
    mask = (pos[:, None] >= pos[None, :]) & (pos[:, None] < pos[None, :] + window)
    mx.eval(mask)
    pairs = sum(min(i + 1, window) for i in range(lq))
    return Case(
        label=_label(batch, heads, heads, lq, lq, d, dtype, f" w{window}"),
        kernels=_API,
        buffers=buf,
        launch=lambda api, b: api.sliding_window_attention(b["q"], b["k"], b["v"], window),
        builtin=lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(d), mask=mask),
        unfused=_if_fits(
            lambda: attention_reference(q, k, v, causal=True, window=window), batch, heads, lq, lq
        ),
        reference=lambda: attention64(q, k, v, True, window),
        bytes=2 * q.nbytes + k.nbytes + v.nbytes,
        flops=4 * batch * heads * pairs * d,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(lambda: attention32(q, k, v, True, window), ATTENTION_F32_WHY),
    )
