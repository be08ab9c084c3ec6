"""Suite `serving`: decode attention over a paged KV cache and over a quantized one.

- `paged_decode`: `paged_attention` reading K/V through each sequence's block table, against
  what a stock model on `PagedKVCache` does: gather the sequence's blocks into contiguous K/V
  (`pool[table]`) and call `mx.fast.scaled_dot_product_attention`. Sequences share a prefix
  (the first half of their blocks), as prefix caching makes them.
- `write_kv_slots`: one decode step's new keys and values (one token per sequence) written
  into their slots of a pool, the kernel against MLX's scatter (`pool[slots] = keys`, what
  `BlockPool.write` runs). Both return new pools here, since the benchmark keeps the old ones:
  the kernel's launch copies the pool, and so does MLX's scatter when its input is held
  elsewhere; `BlockPool.write` lets MLX donate the pool's buffer (in place on the CPU build).
  Bytes count the new rows, read once and written once, and nothing of the pool.
- `quantized_kv_decode`: `quantized_kv_attention` on 8-bit `mx.quantize` keys and values
  against mlx-lm's quantized attention (two `mx.quantized_matmul`s around a softmax).

Bytes count one read of every key and value each sequence sees (at their stored size) and of
q, and one write of the output; FLOPs are the two products, 4 * heads * context * head_dim per
query. References are float64 NumPy on the same (rounded) inputs.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.attention.paged import paged_attention, write_kv_slots
from mlx_primitives.attention.quantized_kv import quantized_kv_attention

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, host

__all__ = [
    "paged_attention",
    "quantized_kv_attention",
    "write_kv_slots",
]  # what `launch` calls through `kernels`

TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
BLOCK = 16
WHY_FLOAT32 = (
    "float32 scores and softmax over at most 4K keys: within 1e-6 of float64, far inside the tolerance"
)
# Llama-3-8B-like heads (32 query heads over 8 kv heads of 128); GPU: 64 sequences of 2K to
# 4K tokens; CPU: a few short ones.
GPU_PAGED = ({"batch": 64, "heads": 32, "kv_heads": 8, "head_dim": 128, "context": 4096, "dtype": "float16"},)
CPU_PAGED = ({"batch": 4, "heads": 8, "kv_heads": 2, "head_dim": 64, "context": 256},)
SMOKE_PAGED = {"batch": 2, "heads": 4, "kv_heads": 2, "head_dim": 32, "context": 37}
GPU_QUANT = ({"batch": 16, "heads": 32, "kv_heads": 8, "head_dim": 128, "context": 4096, "dtype": "float16"},)
CPU_QUANT = ({"batch": 2, "heads": 8, "kv_heads": 2, "head_dim": 64, "context": 256},)
GPU_WRITE = ({"tokens": 64, "num_blocks": 4096, "kv_heads": 8, "head_dim": 128, "dtype": "float16"},)
CPU_WRITE = ({"tokens": 32, "num_blocks": 256, "kv_heads": 2, "head_dim": 64},)
SMOKE_WRITE = {"tokens": 3, "num_blocks": 4, "kv_heads": 2, "head_dim": 32}
SMOKE_QUANT = {"batch": 1, "heads": 4, "kv_heads": 2, "head_dim": 32, "context": 37}


def _mx_attention(q: mx.array, k: mx.array, v: mx.array, scale: float) -> mx.array:
    """float32 decode attention in plain MLX ops on the device: q (B, H, D), k/v (B, KV, L, D)."""
    group = q.shape[1] // k.shape[1]
    k, v = (mx.repeat(x.astype(mx.float32), group, axis=1) for x in (k, v))
    s = (q.astype(mx.float32)[:, :, None] @ k.transpose(0, 1, 3, 2)) * scale
    return (mx.softmax(s, axis=-1, precise=True) @ v)[:, :, 0]


def _np_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """float64 decode attention: q (B, H, D), k/v (B, KV, L, D), every key visible."""
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = np.einsum("bhd,bhld->bhl", q, k) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhl,bhld->bhd", p / p.sum(-1, keepdims=True), v)


@benchmark(
    suite="serving",
    name="paged_decode",
    bound="memory",
    builtin="pool[table] + mx.fast.sdpa",
    sizes=Sizes(smoke=SMOKE_PAGED, cpu=CPU_PAGED, gpu=GPU_PAGED),
)
def paged_decode(
    batch: int, heads: int, kv_heads: int, head_dim: int, context: int, dtype: str = "float32"
) -> Case:
    """One decode query per sequence; sequences of `context` tokens, sharing their first half."""
    inputs = _inputs.Inputs()
    per_seq = -(-context // BLOCK)
    shared = per_seq // 2
    num_blocks = shared + batch * (per_seq - shared)
    k_pool = inputs.normal((num_blocks, BLOCK, kv_heads, head_dim), dtype)
    v_pool = inputs.normal((num_blocks, BLOCK, kv_heads, head_dim), dtype)
    order = np.random.default_rng(_inputs.SEED).permutation(num_blocks - shared) + shared
    rows = [
        list(range(shared)) + order[b * (per_seq - shared) : (b + 1) * (per_seq - shared)].tolist()
        for b in range(batch)
    ]
    tables = mx.array(rows, dtype=mx.int32)
    lens = mx.array([context] * batch, dtype=mx.int32)
    q = inputs.normal((batch, heads, head_dim), dtype)
    scale = 1.0 / math.sqrt(head_dim)
    mx.eval(k_pool, v_pool, q)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.paged_attention(
            buf["q"], buf["k_pool"], buf["v_pool"], buf["tables"], buf["lens"], scale, checked=False
        )

    def builtin() -> mx.array:
        k = k_pool[tables].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        v = v_pool[tables].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        return mx.fast.scaled_dot_product_attention(q[:, :, None], k, v, scale=scale)[:, :, 0]

    def reference() -> np.ndarray:
        idx = np.array(rows)
        k = host(k_pool)[idx].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        v = host(v_pool)[idx].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        return _np_attention(host(q), k, v, scale)

    def on_device() -> mx.array:
        k = k_pool[tables].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        v = v_pool[tables].reshape(batch, -1, kv_heads, head_dim)[:, :context].transpose(0, 2, 1, 3)
        return _mx_attention(q, k, v, scale)

    itemsize = q.itemsize
    return Case(
        label=f"B{batch} H{heads}/{kv_heads} D{head_dim} ctx {context} {SHORT_DTYPE[dtype]}",
        kernels=sys.modules[__name__],
        buffers={"q": q, "k_pool": k_pool, "v_pool": v_pool, "tables": tables, "lens": lens},
        launch=launch,
        builtin=builtin,
        reference=reference,
        bytes=2 * batch * context * kv_heads * head_dim * itemsize + 2 * q.nbytes + tables.nbytes,
        flops=4 * batch * heads * context * head_dim,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(on_device, WHY_FLOAT32),
        external=False,
    )


@benchmark(
    suite="serving",
    name="quantized_kv_decode",
    bound="memory",
    builtin="mx.quantized_matmul x2",
    sizes=Sizes(smoke=SMOKE_QUANT, cpu=CPU_QUANT, gpu=GPU_QUANT),
)
def quantized_kv_decode(
    batch: int, heads: int, kv_heads: int, head_dim: int, context: int, dtype: str = "float32"
) -> Case:
    """One decode query per sequence over 8-bit keys and values (group size 32)."""
    inputs = _inputs.Inputs()
    group_size, bits = 32, 8
    k = inputs.normal((batch, kv_heads, context, head_dim), dtype)
    v = inputs.normal((batch, kv_heads, context, head_dim), dtype)
    kq, vq = (
        mx.quantize(k, group_size=group_size, bits=bits),
        mx.quantize(v, group_size=group_size, bits=bits),
    )
    q = inputs.normal((batch, heads, 1, head_dim), dtype)
    scale = 1.0 / math.sqrt(head_dim)
    mx.eval(kq, vq, q)
    group = heads // kv_heads

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        keys = (buf["k_packed"], buf["k_scales"], buf["k_biases"])
        values = (buf["v_packed"], buf["v_scales"], buf["v_biases"])
        return kernels.quantized_kv_attention(buf["q"], keys, values, scale, group_size=group_size, bits=bits)

    def builtin() -> mx.array:  # mlx-lm's quantized_scaled_dot_product_attention
        qg = (q * scale).reshape(batch, kv_heads, group, 1, head_dim)
        keys = [x[:, :, None] for x in kq]
        values = [x[:, :, None] for x in vq]
        scores = mx.quantized_matmul(qg, *keys, transpose=True, group_size=group_size, bits=bits)
        probs = mx.softmax(scores, axis=-1, precise=True)
        out = mx.quantized_matmul(probs, *values, transpose=False, group_size=group_size, bits=bits)
        return out.reshape(batch, heads, 1, head_dim)

    def reference() -> np.ndarray:
        k64 = host(mx.dequantize(*kq, group_size=group_size, bits=bits))
        v64 = host(mx.dequantize(*vq, group_size=group_size, bits=bits))
        return _np_attention(host(q)[:, :, 0], k64, v64, scale)[:, :, None]

    def on_device() -> mx.array:
        k32, v32 = (mx.dequantize(*t, group_size=group_size, bits=bits) for t in (kq, vq))
        return _mx_attention(q[:, :, 0], k32, v32, scale)[:, :, None]

    stored = sum(x.nbytes for x in (*kq, *vq))
    names = ("packed", "scales", "biases")
    buffers = {"q": q, **{f"k_{n}": x for n, x in zip(names, kq)}, **{f"v_{n}": x for n, x in zip(names, vq)}}
    return Case(
        label=f"B{batch} H{heads}/{kv_heads} D{head_dim} ctx {context} {SHORT_DTYPE[dtype]} q8",
        kernels=sys.modules[__name__],
        buffers=buffers,
        launch=launch,
        builtin=builtin,
        reference=reference,
        bytes=stored + 2 * q.nbytes,
        flops=4 * batch * heads * context * head_dim,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(on_device, WHY_FLOAT32),
        external=False,
    )


@benchmark(
    suite="serving",
    name="write_kv_slots",
    bound="memory",
    builtin="pool[slots] = keys (mx scatter)",
    sizes=Sizes(smoke=SMOKE_WRITE, cpu=CPU_WRITE, gpu=GPU_WRITE),
)
def write_kv_slots_case(
    tokens: int, num_blocks: int, kv_heads: int, head_dim: int, dtype: str = "float32"
) -> Case:
    """`tokens` new keys and values into distinct random slots of a (num_blocks, 16) pool."""
    inputs = _inputs.Inputs()
    k_pool = inputs.normal((num_blocks, BLOCK, kv_heads, head_dim), dtype)
    v_pool = inputs.normal((num_blocks, BLOCK, kv_heads, head_dim), dtype)
    keys = inputs.normal((tokens, kv_heads, head_dim), dtype)
    values = inputs.normal((tokens, kv_heads, head_dim), dtype)
    chosen = np.random.default_rng(_inputs.SEED).choice(num_blocks * BLOCK, tokens, replace=False)
    slots = mx.array(chosen, dtype=mx.int32)
    mx.eval(k_pool, v_pool, keys, values)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.write_kv_slots(
            buf["keys"], buf["values"], buf["k_pool"], buf["v_pool"], buf["slots"], checked=False
        )

    def builtin() -> tuple[mx.array, mx.array]:
        out = []
        for pool, new in ((k_pool, keys), (v_pool, values)):
            flat = pool.reshape(-1, kv_heads, head_dim)
            flat[slots] = new
            out.append(flat.reshape(pool.shape))
        return out[0], out[1]

    def reference() -> tuple[np.ndarray, np.ndarray]:
        out = []
        for pool, new in ((k_pool, keys), (v_pool, values)):
            flat = host(pool).reshape(-1, kv_heads, head_dim).copy()
            flat[chosen] = host(new)
            out.append(flat.reshape(pool.shape))
        return out[0], out[1]

    return Case(
        label=f"{tokens} tokens into {num_blocks}x{BLOCK} KV{kv_heads} D{head_dim} {SHORT_DTYPE[dtype]}",
        kernels=sys.modules[__name__],
        buffers={"keys": keys, "values": values, "k_pool": k_pool, "v_pool": v_pool, "slots": slots},
        launch=launch,
        builtin=builtin,
        reference=reference,
        bytes=4 * keys.nbytes + slots.nbytes,
        flops=0,
        fast_reference=DeviceReference(builtin, "a copy: MLX's scatter writes the same bits"),
        external=False,
    )
