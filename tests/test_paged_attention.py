"""paged_attention and write_kv_slots against float64 NumPy references, on every backend."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import to_numpy, tolerance
from mlx_primitives.attention.paged import (
    PagedAttentionLaunches,
    paged_attention,
    paged_attention_reference,
    write_kv_slots,
)
from mlx_primitives.attention.quantized_kv import quantized_kv_attention
from mlx_primitives.cache import BlockPool, block_tables

DTYPES = (mx.float32, mx.float16, mx.bfloat16)
BLOCK = 16


def _np_paged_attention(q, k_pool, v_pool, tables, lens, scale):
    """float64: per sequence, its table's slots in order, causal for the last Lq positions."""
    batch, heads, lq, _ = q.shape
    kv_heads = k_pool.shape[2]
    out = np.zeros(q.shape)
    for b in range(batch):
        n = lens[b]
        k = np.concatenate([k_pool[blk] for blk in tables[b]])[:n]  # (n, kv_heads, d)
        v = np.concatenate([v_pool[blk] for blk in tables[b]])[:n]
        for h in range(heads):
            kv = h // (heads // kv_heads)
            s = q[b, h] @ k[:, kv].T * scale
            s[np.arange(n)[None, :] > (np.arange(lq) + n - lq)[:, None]] = -np.inf
            p = np.exp(s - s.max(1, keepdims=True))
            out[b, h] = (p / p.sum(1, keepdims=True)) @ v[:, kv]
    return out


def _case(rng: np.random.Generator, dtype: mx.Dtype, lq: int, head_dim: int = 24):
    batch, heads, kv_heads, num_blocks, max_blocks = 3, 4, 2, 9, 4
    lens = np.array([lq + 4, 2 * BLOCK + 7, 3 * BLOCK + 1])  # odd lengths, partial last blocks
    # drawn with replacement: sequences share blocks (and a sequence may list one twice)
    tables = rng.integers(0, num_blocks, (batch, max_blocks)).astype(np.int32)
    k_pool = rng.standard_normal((num_blocks, BLOCK, kv_heads, head_dim)).astype(np.float32)
    v_pool = rng.standard_normal((num_blocks, BLOCK, kv_heads, head_dim)).astype(np.float32)
    q = rng.standard_normal((batch, heads, lq, head_dim)).astype(np.float32)
    arrays = [mx.array(x).astype(dtype) for x in (q, k_pool, v_pool)]
    # the reference sees the values the kernel sees: rounded to the storage dtype
    q64, k64, v64 = (to_numpy(a).astype(np.float64) for a in arrays)
    return arrays, (q64, k64, v64), tables, lens


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("lq", [1, 5], ids=["decode", "prefill"])
def test_paged_attention_matches_float64(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, lq: int
) -> None:
    (q, k_pool, v_pool), (q64, k64, v64), tables, lens = _case(rng, dtype, lq)
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = paged_attention(q, k_pool, v_pool, mx.array(tables), mx.array(lens, dtype=mx.int32), scale)
    expected = _np_paged_attention(q64, k64, v64, tables, lens, scale)
    assert out.dtype == dtype and out.shape == q.shape
    np.testing.assert_allclose(to_numpy(out), expected, **tolerance(dtype))


def test_paged_attention_decode_layout_and_reference(backend: str, rng: np.random.Generator) -> None:
    """3-D q is decode; the plain-mx reference agrees with the float64 one."""
    (q, k_pool, v_pool), (q64, k64, v64), tables, lens = _case(rng, mx.float32, 1)
    bt, cl = mx.array(tables), mx.array(lens, dtype=mx.int32)
    out = paged_attention(q[:, :, 0], k_pool, v_pool, bt, cl)
    expected = _np_paged_attention(q64, k64, v64, tables, lens, 1.0 / math.sqrt(q.shape[-1]))[:, :, 0]
    assert out.shape == q[:, :, 0].shape
    np.testing.assert_allclose(to_numpy(out), expected, **tolerance(mx.float32))
    np.testing.assert_allclose(
        to_numpy(paged_attention_reference(q[:, :, 0], k_pool, v_pool, bt, cl)),
        expected,
        rtol=1e-5,
        atol=1e-5,
    )


def test_paged_attention_launches_rebind_each_kind_of_layer(backend: str, rng: np.random.Generator) -> None:
    """`PagedAttentionLaunches` over several layers: each call's own arrays, and a layer of
    another scale or head count gets a launch of its own (not the first layer's)."""
    (q, k_pool, v_pool), (q64, k64, v64), tables, lens = _case(rng, mx.float32, 1)
    bt, cl = mx.array(tables), mx.array(lens, dtype=mx.int32)
    launches = PagedAttentionLaunches()
    for scale, heads in ((0.3, 4), (0.3, 4), (0.7, 4), (0.3, 2)):
        layer_q = mx.array(rng.standard_normal((3, heads, 1, q.shape[-1])).astype(np.float32))
        k, v = k_pool * scale, v_pool - scale  # each layer its own pools
        out = launches(layer_q, k, v, bt, cl, scale)
        expected = _np_paged_attention(
            to_numpy(layer_q).astype(np.float64), k64 * scale, v64 - scale, tables, lens, scale
        )
        np.testing.assert_allclose(to_numpy(out), expected, **tolerance(mx.float32))


def test_paged_attention_long_chunk(backend: str, rng: np.random.Generator) -> None:
    """A prefill chunk of 37 queries: 74 rows per kv head, tiled over two programs."""
    (q, k_pool, v_pool), (q64, k64, v64), tables, lens = _case(rng, mx.float32, 37)
    lens = np.maximum(lens, 37)
    out = paged_attention(q, k_pool, v_pool, mx.array(tables), mx.array(lens, dtype=mx.int32))
    expected = _np_paged_attention(q64, k64, v64, tables, lens, 1.0 / math.sqrt(q.shape[-1]))
    np.testing.assert_allclose(to_numpy(out), expected, **tolerance(mx.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_write_kv_slots(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    num_blocks, kv_heads, head_dim, tokens = 5, 2, 24, 11
    shape = (num_blocks, BLOCK, kv_heads, head_dim)
    k_pool = mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)
    v_pool = mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)
    keys = mx.array(rng.standard_normal((tokens, kv_heads, head_dim)).astype(np.float32)).astype(dtype)
    values = mx.array(rng.standard_normal((tokens, kv_heads, head_dim)).astype(np.float32)).astype(dtype)
    slots = rng.choice(num_blocks * BLOCK, tokens, replace=False).astype(np.int32)
    slots[3] = -1  # padding: writes nothing
    new_k, new_v = write_kv_slots(keys, values, k_pool, v_pool, mx.array(slots))
    for pool, new, src in ((k_pool, new_k, keys), (v_pool, new_v, values)):
        expected = to_numpy(pool).reshape(-1, kv_heads, head_dim).copy()
        written = slots >= 0
        expected[slots[written]] = to_numpy(src)[written]
        np.testing.assert_array_equal(to_numpy(new).reshape(-1, kv_heads, head_dim), expected)


# --------------------------------------------------------------------------- bad input


def _valid():
    q = mx.zeros((2, 4, 1, 16))
    pool = mx.zeros((3, BLOCK, 2, 16))
    return q, pool, pool, mx.array([[0, 1], [2, 0]], dtype=mx.int32), mx.array([20, 5], dtype=mx.int32)


def test_block_id_out_of_range() -> None:
    q, k, v, _, lens = _valid()
    with pytest.raises(
        IndexError, match=r"\[paged_attention\] block_tables\[1, 1\] is 3; expected a block id in \[0, 3\)"
    ):
        paged_attention(
            q, k, v, mx.array([[0, 1], [2, 3]], dtype=mx.int32), mx.array([20, 17], dtype=mx.int32)
        )
    # an unused entry past the context may hold anything
    paged_attention(q, k, v, mx.array([[0, 1], [2, 7]], dtype=mx.int32), lens)


def test_context_longer_than_table() -> None:
    q, k, v, tables, _ = _valid()
    with pytest.raises(ValueError, match=r"context of 33 tokens; expected at most 32"):
        paged_attention(q, k, v, tables, mx.array([33, 5], dtype=mx.int32))
    with pytest.raises(ValueError, match=r"expected at least Lq = 3"):
        paged_attention(mx.zeros((2, 4, 3, 16)), k, v, tables, mx.array([2, 5], dtype=mx.int32))


def test_dtype_and_shape_mismatches() -> None:
    q, k, v, tables, lens = _valid()
    with pytest.raises(TypeError, match=r"q has dtype float16; expected float32 to match k_pool"):
        paged_attention(q.astype(mx.float16), k, v, tables, lens)
    with pytest.raises(TypeError, match=r"v_pool has dtype bfloat16; expected float32"):
        paged_attention(q, k, v.astype(mx.bfloat16), tables, lens)
    with pytest.raises(TypeError, match=r"block_tables has dtype float32"):
        paged_attention(q, k, v, tables.astype(mx.float32), lens)
    with pytest.raises(ValueError, match=r"q has 3 heads; expected a multiple of k_pool's 2 kv heads"):
        paged_attention(mx.zeros((2, 3, 1, 16)), k, v, tables, lens)
    with pytest.raises(ValueError, match=r"q has head_dim 8; expected 16"):
        paged_attention(mx.zeros((2, 4, 1, 8)), k, v, tables, lens)
    with pytest.raises(ValueError, match=r"block size 12; expected a power of two >= 16"):
        pool = mx.zeros((3, 12, 2, 16))
        paged_attention(q, pool, pool, tables, lens)
    with pytest.raises(
        IndexError, match=r"\[write_kv_slots\] slot_mapping has slot 48; expected slots below 48"
    ):
        write_kv_slots(mx.zeros((1, 2, 16)), mx.zeros((1, 2, 16)), k, v, mx.array([48], dtype=mx.int32))
    with pytest.raises(TypeError, match=r"\[write_kv_slots\] keys has dtype float16; expected float32"):
        write_kv_slots(
            mx.zeros((1, 2, 16), mx.float16), mx.zeros((1, 2, 16)), k, v, mx.array([0], dtype=mx.int32)
        )


def test_paged_attention_reads_a_paged_cache(backend: str, rng: np.random.Generator) -> None:
    """The kernel path over a PagedKVCache's pool: a sequence and its fork (sharing blocks,
    then diverging by copy-on-write) in one call, against attention on their contiguous copies."""
    kv_heads, head_dim = 2, 32
    pool = BlockPool(1, kv_heads, head_dim, mx.float32, num_blocks=8)

    def random_kv(n: int) -> tuple[mx.array, mx.array]:
        shape = (1, kv_heads, n, head_dim)
        return tuple(mx.array(rng.standard_normal(shape).astype(np.float32)) for _ in range(2))

    (a,) = pool.new_sequence()
    a.update_and_fetch(*random_kv(21))
    (b,) = a.sequence.fork()
    a.update_and_fetch(*random_kv(3))
    b.update_and_fetch(*random_kv(14))
    assert a.block_table()[0] == b.block_table()[0] and a.block_table()[1] != b.block_table()[1]
    tables, lens = block_tables([a, b])
    assert lens.tolist() == [24, 35] and tables.shape == (2, 3)
    q = mx.array(rng.standard_normal((2, 4, 3, head_dim)).astype(np.float32))
    out = paged_attention(q, pool.keys[0], pool.values[0], tables, lens)
    for row, cache in enumerate((a, b)):
        k, v = (to_numpy(x)[0].astype(np.float64) for x in cache.to_contiguous().state[:2])
        # (kv_heads, n, d) as a pool of one "block" per position, for the float64 reference
        n = k.shape[1]
        kp, vp = k.transpose(1, 0, 2)[:, None], v.transpose(1, 0, 2)[:, None]
        expected = _np_paged_attention(
            to_numpy(q[row : row + 1]).astype(np.float64),
            kp,
            vp,
            [list(range(n))],
            [n],
            1 / math.sqrt(head_dim),
        )
        np.testing.assert_allclose(to_numpy(out[row : row + 1]), expected, **tolerance(mx.float32))


# --------------------------------------------------------------------------- quantized keys and values


@pytest.mark.parametrize(
    "dtype, bits", [(mx.float32, 4), (mx.float32, 8), (mx.float16, 8), (mx.bfloat16, 8)], ids=str
)
def test_quantized_kv_attention_matches_float64(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, bits: int
) -> None:
    """Against float64 attention over the dequantized keys and values: GQA, Lk odd, Lq = 1 and 5."""
    batch, heads, kv_heads, lk, head_dim = 2, 4, 2, 37, 64
    k, v = (
        mx.array(rng.standard_normal((batch, kv_heads, lk, head_dim)).astype(np.float32)).astype(dtype)
        for _ in range(2)
    )
    kq, vq = mx.quantize(k, group_size=32, bits=bits), mx.quantize(v, group_size=32, bits=bits)
    k64, v64 = (to_numpy(mx.dequantize(*t, group_size=32, bits=bits)).astype(np.float64) for t in (kq, vq))
    for lq in (1, 5):
        q = mx.array(rng.standard_normal((batch, heads, lq, head_dim)).astype(np.float32)).astype(dtype)
        out = quantized_kv_attention(q, kq, vq, group_size=32, bits=bits)
        # the float64 reference on a pool of one position per block
        expected = np.concatenate([
            _np_paged_attention(
                to_numpy(q[b : b + 1]).astype(np.float64), k64[b].transpose(1, 0, 2)[:, None],
                v64[b].transpose(1, 0, 2)[:, None], [list(range(lk))], [lk], 1 / math.sqrt(head_dim),
            )
            for b in range(batch)
        ])  # fmt: skip
        assert out.dtype == dtype
        np.testing.assert_allclose(to_numpy(out), expected, **tolerance(dtype))


def test_quantized_kv_attention_bad_input() -> None:
    q = mx.zeros((1, 4, 1, 64))
    kq = mx.quantize(mx.zeros((1, 2, 5, 64)), group_size=32, bits=8)
    with pytest.raises(ValueError, match=r"\[quantized_kv_attention\] bits is 3; supported: 2, 4, 8"):
        quantized_kv_attention(q, kq, kq, group_size=32, bits=3)
    with pytest.raises(
        ValueError, match=r"keys\[0\] has shape \(1, 2, 5, 16\); expected \(1, 2, 5, 8\) for 4 bits"
    ):
        quantized_kv_attention(q, kq, kq, group_size=32, bits=4)
    with pytest.raises(
        ValueError, match=r"keys\[1\] has shape \(1, 2, 5, 2\); expected \(1, 2, 5, 1\) for group_size 64"
    ):
        quantized_kv_attention(q, kq, kq, group_size=64, bits=8)
    with pytest.raises(TypeError, match=r"expected mx.quantize's \(packed, scales, biases\)"):
        quantized_kv_attention(q, mx.zeros((1, 2, 5, 64)), kq, group_size=32, bits=8)
    with pytest.raises(ValueError, match=r"q has 6 queries; expected at most the 5 keys"):
        quantized_kv_attention(mx.zeros((1, 4, 6, 64)), kq, kq, group_size=32, bits=8)
