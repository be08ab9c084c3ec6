"""Attention over keys and values in `mx.quantize` format, dequantized in registers.

A `QuantizedKVCache` (mlx_primitives.cache, or mlx-lm's) holds each of K and V as the triple
`mx.quantize` makes along head_dim: packed uint32 words (32 // bits elements each, the first
element in the low bits), and one float scale and bias per `group_size` elements:
`x = scale * q + bias`. mlx-lm's quantized attention runs two `mx.quantized_matmul`s with the
(Lq, Lk) scores in memory between them; this kernel walks the keys in blocks with the online
softmax of the flash kernels (`forward.py`), unpacking each block's words, scales and biases
into float32 tiles in registers, so K and V are read once at their packed size and no score
matrix is stored.

One program per (batch, kv head) and a tile of (query head of the group, query) rows, as in
the paged kernel: GQA reads each packed block once per group. Queries are aligned to the end
of the keys and causal (decode and chunked prefill against the cache).
"""

from __future__ import annotations

import math

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl

from .._common import FLOAT_DTYPES, check_array, check_ndim
from .forward import _LOG2E, _online_softmax_step
from .paged import _rows_block

BITS = (2, 4, 8)
GROUP_SIZES = (32, 64, 128)
BLOCK_N = 16


@triton.jit
def _dequantized_tile(
    W, S, B, rows, row_ok, offs_d, BITS: tl.constexpr, HEAD_DIM: tl.constexpr, GROUP: tl.constexpr
):
    """(rows, HEAD_DIM) float32 values of packed rows: word d // per, shifted by (d % per) * bits."""
    words = tl.load(
        W + rows[:, None] * (HEAD_DIM * BITS // 32) + (offs_d * BITS // 32)[None, :],
        mask=row_ok[:, None],
        other=0,
    )
    codes = (words >> ((offs_d * BITS) % 32).to(tl.uint32)[None, :]) & ((1 << BITS) - 1)
    group = rows[:, None] * (HEAD_DIM // GROUP) + (offs_d // GROUP)[None, :]
    scale = tl.load(S + group, mask=row_ok[:, None], other=0.0).to(tl.float32)
    bias = tl.load(B + group, mask=row_ok[:, None], other=0.0).to(tl.float32)
    return codes.to(tl.float32) * scale + bias


@triton.jit(do_not_specialize=("group", "lq", "lk"))
def _quantized_kv_attention_kernel(
    Q, KW, KS, KB, VW, VS, VB, O, n_heads, n_kv_heads, group, lq, lk, scale,
    HEAD_DIM: tl.constexpr, GROUP: tl.constexpr, BITS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_r = tl.program_id(0)
    pid_bkv = tl.program_id(1)
    b = pid_bkv // n_kv_heads
    kv_h = pid_bkv % n_kv_heads
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    head = kv_h * group + r // lq
    query = r % lq
    row_ok = r < group * lq
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_pos = lk - lq + query
    q_rows = (b * n_heads + head) * lq + query
    q = tl.load(Q + q_rows[:, None] * HEAD_DIM + offs_d[None, :], mask=row_ok[:, None], other=0.0).to(
        tl.float32
    )
    qk_scale = scale * _LOG2E
    m_i = tl.zeros([BLOCK_R], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, HEAD_DIM], dtype=tl.float32)
    seq = pid_bkv * lk  # first key row of this (batch, kv head)
    hi = tl.minimum(lk, lk - lq + tl.max(tl.where(row_ok, query, 0), 0) + 1)
    for start in range(0, hi, BLOCK_N):
        cols = start + offs_n
        ok = cols < lk
        k = _dequantized_tile(KW, KS, KB, seq + cols, ok, offs_d, BITS, HEAD_DIM, GROUP)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
        qk = tl.where(row_ok[:, None] & (cols[None, :] <= q_pos[:, None]) & ok[None, :], qk, float("-inf"))
        m_i, p, l_i, acc = _online_softmax_step(qk, m_i, l_i, acc)
        v = _dequantized_tile(VW, VS, VB, seq + cols, ok, offs_d, BITS, HEAD_DIM, GROUP)
        acc = tl.dot(p, v, acc, input_precision="ieee")
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(
        O + q_rows[:, None] * HEAD_DIM + offs_d[None, :],
        (acc / l_safe[:, None]).to(O.dtype.element_ty),
        mask=row_ok[:, None],
    )


def _check_triple(
    fn: str, name: str, triple: object, dims: tuple[int, int, int], bits: int, group_size: int
) -> None:
    if not isinstance(triple, (tuple, list)) or len(triple) != 3:
        raise TypeError(
            f"[{fn}] {name} has type {type(triple).__name__}; expected mx.quantize's (packed, scales, biases)"
        )
    batch, kv_heads, head_dim = dims
    packed, scales, biases = triple
    check_array(fn, f"{name}[0]", packed, (mx.uint32,))
    check_ndim(fn, f"{name}[0]", packed, 4, "(batch, kv_heads, Lk, head_dim * bits / 32)")
    lk = packed.shape[2]
    expected = (batch, kv_heads, lk, head_dim * bits // 32)
    if tuple(packed.shape) != expected:
        raise ValueError(
            f"[{fn}] {name}[0] has shape {tuple(packed.shape)}; expected {expected} for {bits} bits"
        )
    for part, array in (("1", scales), ("2", biases)):
        check_array(fn, f"{name}[{part}]", array, FLOAT_DTYPES)
        want = (batch, kv_heads, lk, head_dim // group_size)
        if tuple(array.shape) != want:
            raise ValueError(
                f"[{fn}] {name}[{part}] has shape {tuple(array.shape)}; expected {want} for group_size {group_size}"
            )


def quantized_kv_attention(
    q: mx.array,
    keys: tuple[mx.array, mx.array, mx.array],
    values: tuple[mx.array, mx.array, mx.array],
    scale: float | None = None,
    *,
    group_size: int = 64,
    bits: int = 8,
) -> mx.array:
    """Causal attention of q over `mx.quantize`d keys and values (a QuantizedKVCache's fetch).

    Args:
        q: (batch, heads, Lq, head_dim) queries, float32, float16 or bfloat16; head_dim a power
            of two (32, 64, 128, 256).
        keys: (packed, scales, biases) of (batch, kv_heads, Lk, head_dim) keys, kv_heads dividing
            heads (GQA), as `mx.quantize(k, group_size, bits)` returns them.
        values: The values' triple, the same shapes.
        scale: Score scale; default 1 / sqrt(head_dim).
        group_size: The quantization group size (32, 64 or 128).
        bits: Bits per element (2, 4 or 8).

    Returns:
        (batch, heads, Lq, head_dim) in q's dtype. Query i sits at key position Lk - Lq + i.
    """
    fn = "quantized_kv_attention"
    check_array(fn, "q", q, FLOAT_DTYPES)
    check_ndim(fn, "q", q, 4, "(batch, heads, Lq, head_dim)")
    if bits not in BITS:
        raise ValueError(f"[{fn}] bits is {bits}; supported: {', '.join(map(str, BITS))}")
    if group_size not in GROUP_SIZES:
        raise ValueError(f"[{fn}] group_size is {group_size}; supported: {', '.join(map(str, GROUP_SIZES))}")
    batch, heads, lq, head_dim = q.shape
    if head_dim < 32 or head_dim & (head_dim - 1) or head_dim % group_size:
        raise ValueError(
            f"[{fn}] q has head_dim {head_dim}; expected a power of two >= 32 and a multiple of group_size {group_size}"
        )
    if not isinstance(keys, (tuple, list)) or len(keys) != 3 or not isinstance(keys[0], mx.array):
        raise TypeError(
            f"[{fn}] keys has type {type(keys).__name__}; expected mx.quantize's (packed, scales, biases)"
        )
    kv_heads = keys[0].shape[1] if keys[0].ndim == 4 else -1
    if kv_heads < 1 or heads % kv_heads:
        raise ValueError(
            f"[{fn}] keys[0] has shape {tuple(keys[0].shape)}; expected kv heads dividing q's {heads}"
        )
    for name, triple in (("keys", keys), ("values", values)):
        _check_triple(fn, name, triple, (batch, kv_heads, head_dim), bits, group_size)
    lk = keys[0].shape[2]
    if values[0].shape[2] != lk:
        raise ValueError(f"[{fn}] values hold {values[0].shape[2]} positions; expected {lk} to match keys")
    if lq > lk:
        raise ValueError(f"[{fn}] q has {lq} queries; expected at most the {lk} keys")
    group = heads // kv_heads
    block_r = _rows_block(fn, group * lq, head_dim, BLOCK_N)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    grid = (triton.cdiv(group * lq, block_r), batch * kv_heads)
    (out,) = _quantized_kv_attention_kernel[grid].functional(
        mx.contiguous(q), *(mx.contiguous(x) for x in (*keys, *values)), triton.empty(q.shape, q.dtype),
        heads, kv_heads, group, lq, lk, scale,
        HEAD_DIM=head_dim, GROUP=group_size, BITS=bits, BLOCK_R=block_r, BLOCK_N=BLOCK_N,
    )  # fmt: skip
    return out


def quantized_kv_attention_reference(
    q: mx.array,
    keys: tuple[mx.array, mx.array, mx.array],
    values: tuple[mx.array, mx.array, mx.array],
    scale: float | None = None,
    *,
    group_size: int = 64,
    bits: int = 8,
) -> mx.array:
    """`quantized_kv_attention` in plain mx: dequantize, repeat the kv heads, causal softmax."""
    batch, heads, lq, head_dim = q.shape
    k = mx.dequantize(*keys, group_size=group_size, bits=bits).astype(mx.float32)
    v = mx.dequantize(*values, group_size=group_size, bits=bits).astype(mx.float32)
    k, v = (mx.repeat(x, heads // x.shape[1], axis=1) for x in (k, v))
    lk = k.shape[2]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = (q.astype(mx.float32) @ k.transpose(0, 1, 3, 2)) * scale
    visible = mx.arange(lk)[None, :] <= (mx.arange(lq) + lk - lq)[:, None]
    scores = mx.where(visible, scores, -mx.inf)
    return (mx.softmax(scores, axis=-1) @ v).astype(q.dtype)
