"""Paged attention: attention over keys and values kept in a pool of fixed-size blocks.

A paged KV cache (`mlx_primitives.cache.PagedKVCache`) stores every sequence's keys and values
in blocks of `block_size` token slots taken from one pool per layer,
`k_pool`/`v_pool` of shape (num_blocks, block_size, kv_heads, head_dim). A sequence's block
table lists its blocks in order: token position `j` lives in slot `j % block_size` of block
`block_tables[b, j // block_size]`. Blocks may be shared between sequences (a common prefix).

- `paged_attention` reads K and V through the block table inside the kernel: no sequence is
  ever gathered into a contiguous copy. Each program owns one (batch, kv head) and a tile of
  rows, every (query head of the kv-head group, query) pair, so GQA reads each K/V block once
  per group. It walks the sequence one block per step with the online softmax of the flash
  kernels (`forward.py`: exp2 in log2 units, float32 statistics, `tl.dot`). Decode is one query
  per sequence; chunked prefill is `Lq` queries at positions `context_len - Lq ..
  context_len - 1`, causal among themselves and seeing the whole cached prefix.
- `write_kv_slots` writes new keys and values into their slots (vLLM's slot mapping:
  `slot = block * block_size + offset`; a negative slot is padding and writes nothing).

This is the kernel path for a paged-aware attention or a serving engine. A stock mlx-lm model
calls `cache.update_and_fetch` and wants contiguous K/V back, so `PagedKVCache` gathers there.

The block size must be a power of two of at least 16, as every `tl.dot` dimension must be.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl

from .._common import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    MAX_STAGED_DOT_ELEMENTS,
    check_array,
    check_ndim,
    dtype_name,
    tile_rows,
)
from .forward import _LOG2E, _online_softmax_step, head_block

# Elements per program tile of the slot writer.
TILE = 4096


# --------------------------------------------------------------------------- kernels


@triton.jit(do_not_specialize=("group", "lq", "max_blocks"))
def _paged_attention_kernel(
    Q, K_POOL, V_POOL, BLOCK_TABLES, CONTEXT_LENS, O,
    n_heads, n_kv_heads, group, lq, max_blocks, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, PAGE: tl.constexpr,
):  # fmt: skip
    """One tile of (query head, query) rows of one (batch, kv head) against its paged keys."""
    pid_r = tl.program_id(0)
    pid_bkv = tl.program_id(1)
    b = pid_bkv // n_kv_heads
    kv_h = pid_bkv % n_kv_heads
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    head = kv_h * group + r // lq
    query = r % lq
    row_ok = r < group * lq
    offs_n = tl.arange(0, PAGE)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM

    ctx = tl.load(CONTEXT_LENS + b).to(tl.int32)
    q_pos = ctx - lq + query  # queries are the last lq positions of the sequence
    q_rows = (b * n_heads + head) * lq + query
    q = tl.load(
        Q + q_rows[:, None] * HEAD_DIM + offs_d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0
    )
    qk_scale = scale * _LOG2E
    m_i = tl.zeros([BLOCK_R], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)

    # causal: no row of this tile sees past its last query, so later blocks are not visited
    hi = tl.minimum(ctx, ctx - lq + tl.max(tl.where(row_ok, query, 0), 0) + 1)
    token_stride = n_kv_heads * HEAD_DIM
    table = BLOCK_TABLES + b * max_blocks
    for start in range(0, hi, PAGE):
        # 64-bit: a large pool holds more than 2**31 elements
        block = tl.load(table + start // PAGE).to(tl.int64)
        cols = start + offs_n
        kv_offsets = (block * PAGE + offs_n)[:, None] * token_stride + kv_h * HEAD_DIM + offs_d[None, :]
        kv_ok = (cols[:, None] < ctx) & d_ok[None, :]
        k = tl.load(K_POOL + kv_offsets, mask=kv_ok, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale
        valid = row_ok[:, None] & (cols[None, :] <= q_pos[:, None]) & (cols[None, :] < ctx)
        qk = tl.where(valid, qk, float("-inf"))
        m_i, p, l_i, acc = _online_softmax_step(qk, m_i, l_i, acc)
        v = tl.load(V_POOL + kv_offsets, mask=kv_ok, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision="ieee")

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(
        O + q_rows[:, None] * HEAD_DIM + offs_d[None, :],
        (acc / l_safe[:, None]).to(O.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


@triton.jit
def _write_slots_kernel(
    KEYS, VALUES, SLOTS, K_POOL, V_POOL, n_tokens, n_slots,
    ROW: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Copies BLOCK_T tokens' (kv_heads * head_dim) rows into their pool slots."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    w = tl.arange(0, BLOCK_W)
    slot = tl.load(SLOTS + t, mask=t < n_tokens, other=-1).to(tl.int64)
    ok = ((t < n_tokens) & (slot >= 0) & (slot < n_slots))[:, None] & (w[None, :] < ROW)
    src = t[:, None].to(tl.int64) * ROW + w[None, :]
    dst = slot[:, None] * ROW + w[None, :]
    tl.store(K_POOL + dst, tl.load(KEYS + src, mask=ok, other=0.0), mask=ok)
    tl.store(V_POOL + dst, tl.load(VALUES + src, mask=ok, other=0.0), mask=ok)


# --------------------------------------------------------------------------- checks


def _check_pools(fn: str, k_pool: mx.array, v_pool: mx.array) -> tuple[int, int, int, int]:
    """(num_blocks, block_size, kv_heads, head_dim) of a valid pair of pools."""
    check_array(fn, "k_pool", k_pool, FLOAT_DTYPES)
    check_array(fn, "v_pool", v_pool, FLOAT_DTYPES)
    check_ndim(fn, "k_pool", k_pool, 4, "(num_blocks, block_size, kv_heads, head_dim)")
    if tuple(v_pool.shape) != tuple(k_pool.shape):
        raise ValueError(
            f"[{fn}] v_pool has shape {tuple(v_pool.shape)}; expected {tuple(k_pool.shape)} to match k_pool"
        )
    if v_pool.dtype != k_pool.dtype:
        raise TypeError(
            f"[{fn}] v_pool has dtype {dtype_name(v_pool.dtype)}; expected {dtype_name(k_pool.dtype)} to match k_pool"
        )
    block_size = k_pool.shape[1]
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"[{fn}] k_pool has block size {block_size}; expected a power of two >= 16")
    return tuple(k_pool.shape)  # type: ignore[return-value]


def _check_index(fn: str, name: str, array: object, ndim: int, expected: str) -> None:
    check_array(fn, name, array, INDEX_DTYPES)
    check_ndim(fn, name, array, ndim, expected)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- public functions


def paged_attention(
    q: mx.array,
    k_pool: mx.array,
    v_pool: mx.array,
    block_tables: mx.array,
    context_lens: mx.array,
    scale: float | None = None,
    *,
    checked: bool = True,
) -> mx.array:
    """Causal attention of each sequence's queries over its keys and values in a block pool.

    Sequence `b` has `context_lens[b]` tokens (the new queries included), token `j` in slot
    `j % block_size` of block `block_tables[b, j // block_size]` of the pools. Its `Lq` queries
    sit at positions `context_lens[b] - Lq .. context_lens[b] - 1`: `Lq = 1` is decode, more is
    a chunk of prefill, causal within the chunk. The kernel reads K and V through the table;
    nothing is gathered.

    Args:
        q: Queries, (batch, heads, head_dim) for decode or (batch, heads, Lq, head_dim) (mlx-lm's
            layout). float32, float16 or bfloat16, the pools' dtype.
        k_pool: Keys, (num_blocks, block_size, kv_heads, head_dim); kv_heads divides heads (GQA).
        v_pool: Values, the shape and dtype of `k_pool`.
        block_tables: (batch, max_blocks) integer block ids; entries past a sequence's last block
            are not read.
        context_lens: (batch,) integer token counts, each in [Lq, max_blocks * block_size].
        scale: Score scale; default 1 / sqrt(head_dim).
        checked: Check the block ids and context lengths (a host sync: pass False in hot loops
            and inside `mx.compile`; out-of-range ids then read arbitrary pool rows).

    Returns:
        The attention output, q's shape and dtype.
    """
    fn = "paged_attention"
    check_array(fn, "q", q, FLOAT_DTYPES)
    num_blocks, block_size, kv_heads, head_dim = _check_pools(fn, k_pool, v_pool)
    decode = q.ndim == 3
    if q.ndim not in (3, 4):
        raise ValueError(f"[{fn}] q has shape {tuple(q.shape)}; expected (batch, heads, [Lq,] head_dim)")
    q4 = q[:, :, None, :] if decode else q
    batch, heads, lq, q_dim = q4.shape
    if q_dim != head_dim:
        raise ValueError(f"[{fn}] q has head_dim {q_dim}; expected {head_dim} to match k_pool")
    if q.dtype != k_pool.dtype:
        raise TypeError(
            f"[{fn}] q has dtype {dtype_name(q.dtype)}; expected {dtype_name(k_pool.dtype)} to match k_pool"
        )
    if heads % kv_heads:
        raise ValueError(f"[{fn}] q has {heads} heads; expected a multiple of k_pool's {kv_heads} kv heads")
    _check_index(fn, "block_tables", block_tables, 2, "(batch, max_blocks)")
    _check_index(fn, "context_lens", context_lens, 1, "(batch,)")
    if block_tables.shape[0] != batch or context_lens.shape[0] != batch:
        raise ValueError(
            f"[{fn}] block_tables has shape {tuple(block_tables.shape)} and context_lens "
            f"{tuple(context_lens.shape)}; expected {batch} rows to match q's batch"
        )
    if checked and batch:
        _check_tables(fn, block_tables, context_lens, lq, num_blocks, block_size)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    args, constants, grid = _launch_arguments(
        q4, k_pool, v_pool, block_tables.astype(mx.int32), context_lens.astype(mx.int32), scale
    )
    (out,) = _paged_attention_kernel[grid].functional(*args, **constants)
    return out[:, :, 0, :] if decode else out


class PagedAttentionLaunches:
    """`paged_attention`'s launch without its checks, for a caller that built the arguments
    itself (q (batch, heads, Lq, head_dim), int32 tables and lengths, in range) and launches
    many times: one decode step's layers, each with its own pools and queries. The first call
    of each kind of launch (the queries' and pools' shapes and dtype, the tables' width, the
    scale) looks the kernel's specialization up and builds its launch; later calls of that
    kind only swap their arrays in (the GPU launcher's `rebinder`): a 16-layer decode step
    makes one lookup and one argument pass instead of 16 of each. Layers that differ (their
    own head counts or scale) each get their own."""

    def __init__(self) -> None:
        self._runs: dict[tuple[Any, ...], tuple[Callable[[list[Any]], list[Any]], list[Any]]] = {}

    def __call__(
        self, q: mx.array, k_pool: mx.array, v_pool: mx.array, block_tables: mx.array, context_lens: mx.array,
        scale: float,
    ) -> mx.array:  # fmt: skip
        kind = (q.shape, q.dtype, k_pool.shape, v_pool.shape, k_pool.dtype, block_tables.shape, scale)
        found = self._runs.get(kind)
        if found is None:
            args, constants, grid = _launch_arguments(q, k_pool, v_pool, block_tables, context_lens, scale)
            entry, runtime, grid3 = _paged_attention_kernel.lookup(args, constants, grid)
            rebinder = getattr(entry.kernel, "rebinder", None)
            run = rebinder(runtime, grid3) if rebinder else lambda new: entry.kernel(new, grid3)
            found = self._runs[kind] = (run, runtime[_OUTPUT + 1 :])
        run, scalars = found
        out = triton.empty(q.shape, q.dtype)  # (a fresh output: what a launcher without rebinder needs)
        return run([mx.contiguous(q), k_pool, v_pool, block_tables, context_lens, out, *scalars])[_OUTPUT]


# Where the output O sits among the kernel's runtime arguments.
_OUTPUT = 5


def _launch_arguments(
    q: mx.array,
    k_pool: mx.array,
    v_pool: mx.array,
    block_tables: mx.array,
    context_lens: mx.array,
    scale: float,
) -> tuple[list[Any], dict[str, int], tuple[int, int]]:
    """The paged attention kernel's runtime arguments, constexprs and grid."""
    batch, heads, lq, head_dim = q.shape
    block_size, kv_heads = k_pool.shape[1], k_pool.shape[2]
    block_d = head_block(head_dim)
    block_r = _rows_block("paged_attention", heads // kv_heads * lq, block_d, block_size)
    grid = (triton.cdiv(heads // kv_heads * lq, block_r), batch * kv_heads)
    args = [
        mx.contiguous(q), k_pool, v_pool, block_tables, context_lens, triton.empty(q.shape, q.dtype),
        heads, kv_heads, heads // kv_heads, lq, block_tables.shape[1], scale,
    ]  # fmt: skip
    return args, dict(HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_R=block_r, PAGE=block_size), grid


def _rows_block(fn: str, rows: int, block_d: int, block_size: int) -> int:
    """Rows per program: up to 64, within Metal's staging limit for the q @ k^T dot."""
    block_r = max(16, min(64, triton.next_power_of_2(rows)))
    while block_r > 16 and block_d * (block_r + block_size) > MAX_STAGED_DOT_ELEMENTS:
        block_r //= 2
    if block_d * (block_r + block_size) > MAX_STAGED_DOT_ELEMENTS:
        raise ValueError(
            f"[{fn}] k_pool has block size {block_size} at head_dim {block_d}; "
            f"expected (16 + block_size) * head_dim <= {MAX_STAGED_DOT_ELEMENTS}"
        )
    return block_r


def _check_tables(
    fn: str, block_tables: mx.array, context_lens: mx.array, lq: int, num_blocks: int, block_size: int
) -> None:
    """The blocks each sequence reads exist, and its context fits its table and holds its queries."""
    lens = context_lens.astype(mx.int64)
    longest, shortest = mx.max(lens).item(), mx.min(lens).item()
    capacity = block_tables.shape[1] * block_size
    if longest > capacity:
        raise ValueError(
            f"[{fn}] context_lens has a context of {longest} tokens; expected at most "
            f"{capacity} (block_tables' {block_tables.shape[1]} blocks of {block_size})"
        )
    if shortest < lq:
        raise ValueError(
            f"[{fn}] context_lens has a context of {shortest} tokens; expected at least Lq = {lq}"
        )
    used = mx.arange(block_tables.shape[1])[None, :] * block_size < lens[:, None]
    ids = block_tables.astype(mx.int64)
    bad = used & ((ids < 0) | (ids >= num_blocks))
    if mx.any(bad).item():
        row = int(mx.argmax(mx.any(bad, axis=1)).item())
        col = int(mx.argmax(bad[row]).item())
        raise IndexError(
            f"[{fn}] block_tables[{row}, {col}] is {ids[row, col].item()}; expected a block id in [0, {num_blocks})"
        )


def write_kv_slots(
    keys: mx.array,
    values: mx.array,
    k_pool: mx.array,
    v_pool: mx.array,
    slot_mapping: mx.array,
    *,
    checked: bool = True,
) -> tuple[mx.array, mx.array]:
    """Writes token `t`'s keys and values into slot `slot_mapping[t]` of the pools.

    A slot is `block * block_size + offset`; a negative slot is padding and writes nothing.

    Args:
        keys: (tokens, kv_heads, head_dim) new keys, the pools' dtype.
        values: (tokens, kv_heads, head_dim) new values.
        k_pool: (num_blocks, block_size, kv_heads, head_dim) key pool.
        v_pool: The value pool, k_pool's shape and dtype.
        slot_mapping: (tokens,) integer slots.
        checked: Check that every slot is below num_blocks * block_size (a host sync); unchecked,
            such a slot writes nothing.

    Returns:
        The new key and value pools (every other slot keeps its contents).
    """
    fn = "write_kv_slots"
    num_blocks, block_size, kv_heads, head_dim = _check_pools(fn, k_pool, v_pool)
    for name, array in (("keys", keys), ("values", values)):
        check_array(fn, name, array, FLOAT_DTYPES)
        check_ndim(fn, name, array, 3, f"(tokens, {kv_heads}, {head_dim})")
        if tuple(array.shape[1:]) != (kv_heads, head_dim):
            raise ValueError(
                f"[{fn}] {name} has shape {tuple(array.shape)}; expected (tokens, {kv_heads}, {head_dim}) "
                "to match k_pool"
            )
        if array.dtype != k_pool.dtype:
            raise TypeError(
                f"[{fn}] {name} has dtype {dtype_name(array.dtype)}; expected {dtype_name(k_pool.dtype)} to match k_pool"
            )
    _check_index(fn, "slot_mapping", slot_mapping, 1, "(tokens,)")
    tokens = keys.shape[0]
    if values.shape[0] != tokens or slot_mapping.shape[0] != tokens:
        raise ValueError(
            f"[{fn}] keys, values and slot_mapping have {tokens}, {values.shape[0]} and "
            f"{slot_mapping.shape[0]} tokens; expected the same count"
        )
    n_slots = num_blocks * block_size
    if checked and tokens:
        largest = mx.max(slot_mapping.astype(mx.int64)).item()
        if largest >= n_slots:
            raise IndexError(f"[{fn}] slot_mapping has slot {largest}; expected slots below {n_slots}")
    if tokens == 0:
        return k_pool, v_pool
    row = kv_heads * head_dim
    block_w = triton.next_power_of_2(row)
    block_t = min(tile_rows(TILE, block_w), triton.next_power_of_2(tokens))
    with warnings.catch_warnings():
        # the pools are written, never read, and every slot not written must keep its contents:
        # the copy the launcher warns about is the functional update asked for
        warnings.filterwarnings("ignore", message=".*written, never read")
        return _write_slots_kernel[(triton.cdiv(tokens, block_t),)].functional(
            mx.contiguous(keys), mx.contiguous(values), slot_mapping.astype(mx.int32), k_pool, v_pool,
            tokens, n_slots, ROW=row, BLOCK_T=block_t, BLOCK_W=block_w,
        )  # fmt: skip


# --------------------------------------------------------------------------- references


def paged_attention_reference(
    q: mx.array,
    k_pool: mx.array,
    v_pool: mx.array,
    block_tables: mx.array,
    context_lens: mx.array,
    scale: float | None = None,
) -> mx.array:
    """`paged_attention` in plain mx: each sequence's blocks gathered, then masked softmax."""
    decode = q.ndim == 3
    q4 = q[:, :, None, :] if decode else q
    batch, heads, lq, head_dim = q4.shape
    _, block_size, kv_heads, _ = k_pool.shape
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    lens = [int(n) for n in context_lens.tolist()]
    outs = []
    for b in range(batch):
        n = lens[b]
        blocks = block_tables[b, : -(-n // block_size)]
        k = k_pool[blocks].reshape(-1, kv_heads, head_dim)[:n].transpose(1, 0, 2).astype(mx.float32)
        v = v_pool[blocks].reshape(-1, kv_heads, head_dim)[:n].transpose(1, 0, 2).astype(mx.float32)
        k = mx.repeat(k, heads // kv_heads, axis=0)
        v = mx.repeat(v, heads // kv_heads, axis=0)
        scores = (q4[b].astype(mx.float32) @ k.transpose(0, 2, 1)) * scale
        visible = mx.arange(n)[None, :] <= (mx.arange(lq) + n - lq)[:, None]
        scores = mx.where(visible, scores, -mx.inf)
        outs.append(mx.softmax(scores, axis=-1) @ v)
    out = mx.stack(outs).astype(q.dtype)
    return out[:, :, 0, :] if decode else out
