"""The paged KV cache: a pool of fixed-size blocks shared by every sequence and layer.

`BlockPool` preallocates, for each layer, a key and a value pool of shape
(num_blocks, block_size, kv_heads, head_dim). A block id names the same slots in every layer,
so one block table per sequence (a `PagedSequence`) serves all its layers; each layer's
`PagedKVCache` is the mlx-lm cache object of that layer.

- Reference counts: a block is held by every table that lists it. `PagedSequence.fork()`
  shares all of a sequence's blocks (parallel sampling, beam search); a write into a shared
  block first copies it (copy-on-write), so no other sequence ever sees the write.
- Prefix caching: a full block whose token ids are known (`append_tokens`) is registered under
  a hash of its tokens chained with the previous block's hash, so equal hashes mean equal
  prefixes. `match_prefix(tokens)` on a new sequence takes the known full blocks of its
  prompt instead of recomputing them. A registered block nobody holds stays cached until the
  pool needs it; the pool's `EvictionPolicy` picks which one goes (LRU, FIFO).
- Sequence windows: `SlidingWindow` and `SinksWindow` policies also release a sequence's own
  blocks that no future query can see. Whole blocks are released, so a query sees at least
  `window` positions (up to window + block_size - 1).
- Memory: `memory_limit` bytes fix the number of blocks; when no free or evictable block is
  left, allocation raises `PoolExhausted` naming the limit.

A stock mlx-lm model calls `update_and_fetch`, which writes the new keys and values into their
slots (an in-place MLX scatter: `BlockPool.write`) and then gathers the sequence's blocks into contiguous
(1, kv_heads, length, head_dim) arrays for the model's attention: that gather is a copy per
layer and step. The kernel path that reads the pool in place is
`mlx_primitives.attention.paged.paged_attention` with `block_table()` and `context_len`.
`PagedDecodeBatch` runs a stock model's batched decode step on it: its layer caches write the
new token into the pool and, inside `paged_attention_dispatch(model)`, the model's attention
calls become `paged_attention` over the block tables (what `GenerationEngine` does with
`paged_decode="kernel"`).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import mlx.core as mx
import mlx.nn as nn

from .._common import FLOAT_DTYPES, dtype_name
from ..attention.paged import PagedAttentionLaunches
from .contiguous import BatchKVCache, KVCache, _CacheBase, standard_mask

DEFAULT_BLOCK_SIZE = 16
# Room a cache loaded on its own (`PagedKVCache.from_state`) keeps to keep generating.
FROM_STATE_SPARE_BLOCKS = 64


class PoolExhausted(MemoryError):
    """The pool has no free block and nothing it may evict."""


# --------------------------------------------------------------------------- eviction policies


class EvictionPolicy:
    """Which cached block the pool drops, and which of its blocks a sequence keeps.

    `victim` picks among registered blocks no table holds; `keeps` says whether a sequence
    whose next query is at position `start` still needs its logical block `index`;
    `keeps_all` that it always does (the sequences' hot paths then skip asking)."""

    keeps_all = True

    def victim(self, last_used: dict[int, int], registered: dict[int, int]) -> int:
        raise NotImplementedError

    def keeps(self, index: int, start: int, block_size: int) -> bool:
        return True


class LRU(EvictionPolicy):
    """Evicts the cached block used longest ago."""

    def victim(self, last_used: dict[int, int], registered: dict[int, int]) -> int:
        return min(last_used, key=last_used.__getitem__)


class FIFO(EvictionPolicy):
    """Evicts the cached block registered first."""

    def victim(self, last_used: dict[int, int], registered: dict[int, int]) -> int:
        return min(last_used, key=registered.__getitem__)


@dataclass
class SlidingWindow(LRU):
    """Sequences keep the blocks holding their last `window` positions (LRU for cached blocks)."""

    window: int
    keeps_all = False

    def keeps(self, index: int, start: int, block_size: int) -> bool:
        # the next query, at `start`, sees positions > start - window
        return (index + 1) * block_size - 1 > start - self.window


@dataclass
class SinksWindow(SlidingWindow):
    """The blocks holding the first `sinks` positions (attention sinks) and the last `window`."""

    sinks: int = 4

    def keeps(self, index: int, start: int, block_size: int) -> bool:
        return index * block_size < self.sinks or super().keeps(index, start, block_size)


# --------------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool. Blocks are used (some table holds them), cached (registered,
    unheld, reusable by a prefix) or free; the prefix counts are over full prompt blocks
    `match_prefix` looked up."""

    blocks_total: int
    blocks_used: int
    blocks_cached: int
    blocks_free: int
    block_bytes: int
    prefix_lookups: int
    prefix_hits: int

    @property
    def bytes_total(self) -> int:
        return self.blocks_total * self.block_bytes

    @property
    def bytes_used(self) -> int:
        return self.blocks_used * self.block_bytes

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_lookups if self.prefix_lookups else 0.0


class BlockPool:
    """K/V block pools for every layer of a model, with reference counts and a prefix cache.

    Args:
        num_layers: Layers of the model (one key and one value pool each).
        kv_heads: Key/value heads per layer.
        head_dim: Head dimension.
        dtype: Storage dtype (the model's activations' dtype).
        block_size: Token slots per block; a power of two >= 16 for `paged_attention`.
        num_blocks: Blocks in the pool. Give this or `memory_limit`.
        memory_limit: Bytes the pools may take (keys and values of every layer): the number of
            blocks is the most that fit.
        eviction: The policy for cached blocks and sequence windows (default LRU).
    """

    def __init__(
        self,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: mx.Dtype = mx.float16,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        num_blocks: int | None = None,
        memory_limit: int | None = None,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        if dtype not in FLOAT_DTYPES:
            supported = ", ".join(dtype_name(d) for d in FLOAT_DTYPES)
            raise TypeError(f"[BlockPool] dtype is {dtype_name(dtype)}; supported: {supported}")
        if block_size < 1:
            raise ValueError(f"[BlockPool] block_size is {block_size}; expected a positive size")
        self.block_bytes = 2 * num_layers * block_size * kv_heads * head_dim * dtype.size
        if (num_blocks is None) == (memory_limit is None):
            raise ValueError("[BlockPool] give exactly one of num_blocks and memory_limit")
        if memory_limit is not None:
            num_blocks = memory_limit // self.block_bytes
            if num_blocks < 1:
                raise ValueError(
                    f"[BlockPool] memory_limit is {memory_limit} bytes; one block of {block_size} "
                    f"tokens over {num_layers} layers takes {self.block_bytes}"
                )
        assert num_blocks is not None
        if num_blocks < 1:
            raise ValueError(f"[BlockPool] num_blocks is {num_blocks}; expected at least 1")
        self.num_layers, self.kv_heads, self.head_dim, self.dtype = num_layers, kv_heads, head_dim, dtype
        self.block_size, self.num_blocks, self.memory_limit = block_size, num_blocks, memory_limit
        self.eviction = eviction or LRU()
        shape = (num_blocks, block_size, kv_heads, head_dim)
        self.keys = [mx.zeros(shape, dtype) for _ in range(num_layers)]
        self.values = [mx.zeros(shape, dtype) for _ in range(num_layers)]
        self.refs = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.by_hash: dict[int, int] = {}
        self._free = deque(range(num_blocks))
        self._last_used: dict[int, int] = {}  # the evictable blocks: registered, unheld
        self._registered: dict[int, int] = {}
        self._clock = 0
        self.prefix_lookups = 0
        self.prefix_hits = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    # blocks
    def allocate(self) -> int:
        """A block held once: a free one, else the policy's victim among cached blocks."""
        if self._free:
            block = self._free.popleft()
        elif self._last_used:
            block = self.eviction.victim(self._last_used, self._registered)
            self.unregister(block)
            del self._last_used[block]
        else:
            limit = f"memory_limit {self.memory_limit} bytes" if self.memory_limit else "num_blocks"
            raise PoolExhausted(
                f"[BlockPool] all {self.num_blocks} blocks ({limit}) are held by sequences and none "
                "is evictable; release sequences or grow the pool"
            )
        self.refs[block] = 1
        return block

    def hold(self, block: int) -> None:
        if self.refs[block] == 0:
            self._last_used.pop(block, None)
        self.refs[block] += 1

    def release(self, block: int) -> None:
        self.refs[block] -= 1
        if self.refs[block] == 0:
            if self.block_hash[block] is None:
                self._free.append(block)
            else:
                self._last_used[block] = self._tick()

    def register(self, block: int, block_hash: int) -> None:
        """Makes a full block findable by its prefix hash (the first block with a hash wins)."""
        if block_hash in self.by_hash or self.block_hash[block] is not None:
            return
        self.block_hash[block] = block_hash
        self.by_hash[block_hash] = block
        self._registered[block] = self._tick()

    def unregister(self, block: int) -> None:
        """Forgets a block's prefix hash (it is about to change or to be reused)."""
        block_hash = self.block_hash[block]
        if block_hash is not None:
            del self.by_hash[block_hash]
            del self._registered[block]
            self.block_hash[block] = None

    def copy_block(self, src: int, dst: int) -> None:
        for layer in range(self.num_layers):
            self.keys[layer][dst] = self.keys[layer][src]
            self.values[layer][dst] = self.values[layer][src]

    # data
    def write(self, layer: int, keys: mx.array, values: mx.array, slots: mx.array) -> None:
        """Writes (tokens, kv_heads, head_dim) keys and values of `layer` into `slots` (valid
        slots: the sequences' own, no padding).

        An MLX scatter (`pool[slots] = keys` on the pool viewed as slots), not the
        `write_kv_slots` kernel: the kernel's launch returns a new pool (the interpreter copies
        its buffers, the GPU launcher makes one pass over every written array), so each call
        would cost the whole pool. MLX's scatter takes the pool's buffer instead of copying
        when the pool array is donatable, that is when the pool alone holds it, as here (the
        old array is rebound before the graph runs). Measured on MLX 0.32's CPU build: 0.5 ms
        for 32 tokens into pools of 8 MB to 512 MB alike (the kernel: 19 ms to 1.3 s); on an
        H200 with MLX 0.32.4's CUDA build, 0.06-0.10 ms into pools of 2 MB to 268 MB alike once
        warm (the first writes after the pool is made allocate a pool's worth there).
        """
        shape = self.keys[layer].shape
        for pools, new in ((self.keys, keys), (self.values, values)):
            flat = pools[layer].reshape(-1, self.kv_heads, self.head_dim)
            pools[layer] = None  # the scatter's input is then the only holder: donated
            flat[slots] = new
            pools[layer] = flat.reshape(shape)

    def gather(self, layer: int, blocks: list[int], length: int) -> tuple[mx.array, mx.array]:
        """The first `length` slots of `blocks` as contiguous (1, kv_heads, length, head_dim)."""
        ids = mx.array(blocks, dtype=mx.int32)
        out = []
        for pool in (self.keys[layer], self.values[layer]):
            rows = pool[ids].reshape(-1, self.kv_heads, self.head_dim)[:length]
            out.append(rows.transpose(1, 0, 2)[None])
        return out[0], out[1]

    def stats(self) -> PoolStats:
        used = sum(1 for r in self.refs if r > 0)
        return PoolStats(
            blocks_total=self.num_blocks,
            blocks_used=used,
            blocks_cached=len(self._last_used),
            blocks_free=len(self._free),
            block_bytes=self.block_bytes,
            prefix_lookups=self.prefix_lookups,
            prefix_hits=self.prefix_hits,
        )

    @property
    def nbytes(self) -> int:
        return self.num_blocks * self.block_bytes

    def new_sequence(self) -> list[PagedKVCache]:
        """An empty sequence: one `PagedKVCache` per layer, sharing one block table."""
        return PagedSequence(self).layers


def _chain(previous: int, tokens: tuple[int, ...]) -> int:
    return hash((previous, tokens))


# --------------------------------------------------------------------------- sequences


class PagedSequence:
    """One sequence's block table, shared by its layers' caches (`layers`).

    The table lists logical blocks 0, 1, ...; a block released by a window policy is None.
    """

    def __init__(self, pool: BlockPool) -> None:
        self.pool = pool
        self.table: list[int | None] = []
        self.tokens: list[int] = []
        self._hashes: list[int] = []  # chained hashes of the leading full blocks with known tokens
        self.layers = [PagedKVCache(self, layer) for layer in range(pool.num_layers)]

    @property
    def length(self) -> int:
        """Positions every layer has written."""
        return min(layer.offset for layer in self.layers)

    def retained(self, start: int) -> list[int]:
        """The logical blocks a query at `start` (or later) may see."""
        eviction = self.pool.eviction
        if eviction.keeps_all:  # (no block was ever released)
            return list(range(len(self.table)))
        size = self.pool.block_size
        return [i for i, b in enumerate(self.table) if b is not None and eviction.keeps(i, start, size)]

    def reserve(self, start: int, end: int) -> None:
        """Makes blocks for positions [start, end) present and private; releases blocks the
        window no longer needs. The first layer to write a step does the work; the rest find
        it done (a copy-on-write copies every layer's slots before any layer writes)."""
        size = self.pool.block_size
        eviction = self.pool.eviction
        for i in range(0 if eviction.keeps_all else len(self.table)):  # the window's released blocks
            block = self.table[i]
            if block is not None and (i + 1) * size <= start and not eviction.keeps(i, start, size):
                self.pool.release(block)
                self.table[i] = None
        for i in range(start // size, -(-end // size)):
            if i == len(self.table):
                self.table.append(self.pool.allocate())
                continue
            block = self.table[i]
            if block is None:
                raise ValueError(
                    f"[PagedKVCache] position {i * size} was released by the window; it cannot be rewritten"
                )
            if self.pool.refs[block] > 1:  # shared: copy before writing
                fresh = self.pool.allocate()
                self.pool.copy_block(block, fresh)
                self.pool.release(block)
                self.table[i] = fresh
            elif self.pool.block_hash[block] is not None:  # ours alone, rewritten after a trim
                self.pool.unregister(block)
        if len(self._hashes) > start // size:
            del self._hashes[start // size :]

    def slots(self, start: int, end: int) -> mx.array:
        size = self.pool.block_size
        return mx.array([self.table[p // size] * size + p % size for p in range(start, end)], dtype=mx.int32)

    def match_prefix(self, tokens: list[int]) -> int:
        """Takes the cached full blocks of `tokens`' prefix; returns the positions they cover.

        Only on an empty sequence. At least one token is left uncovered, so the model still
        computes the logits of the last prompt token: feed it `tokens[n:]`.
        """
        if self.length or self.table:
            raise ValueError("[PagedSequence.match_prefix] the sequence is not empty")
        size = self.pool.block_size
        previous = 0
        for i in range((len(tokens) - 1) // size):
            self.pool.prefix_lookups += 1
            previous = _chain(previous, tuple(tokens[i * size : (i + 1) * size]))
            block = self.pool.by_hash.get(previous)
            if block is None:
                break
            self.pool.prefix_hits += 1
            self.pool.hold(block)
            self.table.append(block)
            self._hashes.append(previous)
        covered = len(self.table) * size
        self.tokens = list(tokens[:covered])
        for layer in self.layers:
            layer.offset = covered
        return covered

    def append_tokens(self, tokens: list[int]) -> None:
        """Records the token ids of the next positions and registers every full block whose
        tokens are known and whose keys and values every layer has written."""
        self.tokens.extend(int(t) for t in tokens)
        size = self.pool.block_size
        full = min(len(self.tokens), self.length) // size
        for i in range(len(self._hashes), full):
            previous = self._hashes[-1] if self._hashes else 0
            block_hash = _chain(previous, tuple(self.tokens[i * size : (i + 1) * size]))
            self._hashes.append(block_hash)
            if self.table[i] is not None:
                self.pool.register(self.table[i], block_hash)

    def fork(self) -> list[PagedKVCache]:
        """A new sequence sharing every block of this one (writes copy on write)."""
        other = PagedSequence(self.pool)
        for block in self.table:
            if block is not None:
                self.pool.hold(block)
        other.table = list(self.table)
        other.tokens = list(self.tokens)
        other._hashes = list(self._hashes)
        for mine, theirs in zip(self.layers, other.layers):
            theirs.offset = mine.offset
        return other.layers

    def release(self) -> None:
        """Gives every block back (registered blocks stay cached for later prefixes)."""
        for block in self.table:
            if block is not None:
                self.pool.release(block)
        self.table, self.tokens, self._hashes = [], [], []
        for layer in self.layers:
            layer.offset = 0

    def _trimmed(self) -> None:
        size = self.pool.block_size
        keep = -(-max(layer.offset for layer in self.layers) // size)
        for block in self.table[keep:]:
            if block is not None:
                self.pool.release(block)
        del self.table[keep:]
        del self.tokens[self.length :]
        del self._hashes[self.length // size :]


class PagedKVCache(_CacheBase):
    """One layer's view of a `PagedSequence`, following mlx-lm's cache protocol (batch 1).

    Make them with `BlockPool.new_sequence()` or `make_cache(model, "paged")`. `sequence` holds
    the table and the prefix, fork and release operations; `block_table()` and `context_len`
    feed `paged_attention`.
    """

    def __init__(self, sequence: PagedSequence, layer: int) -> None:
        self.sequence = sequence
        self.layer = layer
        self.offset = 0

    @property
    def pool(self) -> BlockPool:
        return self.sequence.pool

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Writes (1, kv_heads, S, head_dim) keys and values into their slots; returns every key
        and value a query may see, gathered contiguous (1, kv_heads, length, head_dim)."""
        pool = self.pool
        expected = (1, pool.kv_heads, keys.shape[2], pool.head_dim)
        for name, array in (("keys", keys), ("values", values)):
            if tuple(array.shape) != expected:
                raise ValueError(
                    f"[PagedKVCache] {name} have shape {tuple(array.shape)}; expected {expected} "
                    "(batch 1: merge sequences into a BatchKVCache to batch them)"
                )
            if array.dtype != pool.dtype:
                raise TypeError(
                    f"[PagedKVCache] {name} have dtype {dtype_name(array.dtype)}; expected the pool's "
                    f"{dtype_name(pool.dtype)}"
                )
        start, end = self.offset, self.offset + keys.shape[2]
        self.sequence.reserve(start, end)
        pool.write(
            self.layer,
            keys[0].transpose(1, 0, 2),
            values[0].transpose(1, 0, 2),
            self.sequence.slots(start, end),
        )
        self.offset = end
        blocks = self.sequence.retained(start)
        return pool.gather(self.layer, [self.sequence.table[i] for i in blocks], self._held(blocks, end))

    def _held(self, blocks: list[int], end: int) -> int:
        """Positions below `end` in the logical `blocks` (only the last one may be partial)."""
        size = self.pool.block_size
        return sum(min(size, end - i * size) for i in blocks)

    def make_mask(
        self, N: int, window_size: int | None = None, return_array: bool = False
    ) -> mx.array | str | None:  # noqa: N803
        blocks = self.sequence.retained(self.offset)
        if (not blocks or blocks == list(range(blocks[-1] + 1))) and window_size is None:
            return standard_mask(N, self.offset, None, return_array)
        # released blocks: the mask follows the true positions of what is gathered
        size = self.pool.block_size
        held = [p for i in blocks for p in range(i * size, min((i + 1) * size, self.offset))]
        positions = mx.array(held + list(range(self.offset, self.offset + N)))
        queries = mx.arange(self.offset, self.offset + N)[:, None]
        mask = positions[None, :] <= queries
        if window_size is not None:
            mask = mask & (positions[None, :] > queries - window_size)
        return mask

    def block_table(self) -> list[int]:
        """The block ids a query sees, in position order (a row of `paged_attention`'s table)."""
        return [self.sequence.table[i] for i in self.sequence.retained(self.offset)]

    @property
    def context_len(self) -> int:
        """The positions `block_table()` holds (a `paged_attention` context length)."""
        return self._held(self.sequence.retained(self.offset), self.offset)

    def to_contiguous(self) -> KVCache:
        """A plain `KVCache` with this layer's keys and values (a copy)."""
        cache = KVCache()
        if self.offset:
            if self.sequence.retained(self.offset) != list(range(len(self.sequence.table))):
                raise ValueError("[PagedKVCache] the window released blocks; the sequence has no full copy")
            keys, values = self.pool.gather(self.layer, self.block_table(), self.offset)
            cache.update_and_fetch(keys, values)
        return cache

    @property
    def state(self) -> tuple:
        """Contiguous keys, values and offset (the pool stays out of a saved prompt cache)."""
        return self.to_contiguous().state

    @state.setter
    def state(self, value: tuple) -> None:
        keys, values, offset = value
        if getattr(self, "sequence", None) is None:  # from_state: a private pool that fits
            _, kv_heads, _, head_dim = keys.shape
            blocks = -(-offset // DEFAULT_BLOCK_SIZE) + FROM_STATE_SPARE_BLOCKS
            pool = BlockPool(1, kv_heads, head_dim, keys.dtype, num_blocks=blocks)
            layer = pool.new_sequence()[0]
            self.sequence, self.layer, self.offset = layer.sequence, 0, 0
            self.sequence.layers[0] = self
        self.load(keys[:, :, :offset], values[:, :, :offset])

    def load(self, keys: mx.array, values: mx.array) -> None:
        """Writes a whole contiguous prefix into an empty layer."""
        if self.offset:
            raise ValueError("[PagedKVCache.load] the layer is not empty")
        if keys.shape[2]:
            self.update_and_fetch(keys.astype(self.pool.dtype), values.astype(self.pool.dtype))

    def is_trimmable(self) -> bool:
        return self.sequence.retained(self.offset) == list(range(len(self.sequence.table)))

    def trim(self, n: int) -> int:
        n = min(self.offset, n)
        self.offset -= n
        self.sequence._trimmed()
        return n

    def size(self) -> int:
        return self.offset

    def empty(self) -> bool:
        return self.offset == 0

    @property
    def nbytes(self) -> int:
        """This layer's share of the blocks its sequence holds."""
        held = sum(1 for b in self.sequence.table if b is not None)
        return held * self.pool.block_bytes // self.pool.num_layers

    @classmethod
    def merge(cls, caches: list[PagedKVCache]) -> BatchKVCache:
        """A contiguous left-padded batch of copies (the model's batched attention path)."""
        return BatchKVCache.merge([c.to_contiguous() for c in caches])


def block_tables(caches: list[PagedKVCache]) -> tuple[mx.array, mx.array]:
    """`paged_attention`'s (batch, max_blocks) int32 block tables and (batch,) context lengths
    for one layer of several sequences of one pool (short tables padded with block 0, which the
    kernel does not read)."""
    rows = [cache.block_table() for cache in caches]
    width = max((len(row) for row in rows), default=0)
    tables = mx.array([row + [0] * (width - len(row)) for row in rows], dtype=mx.int32).reshape(
        len(rows), width
    )
    return tables, mx.array([cache.context_len for cache in caches], dtype=mx.int32)


# --------------------------------------------------------------------------- batched decode in place


class PagedDecodeBatch:
    """One decode step of several sequences of one pool, attending in place.

    The layers' caches (`layers`) follow mlx-lm's cache protocol for a batch of one new token
    per sequence: `update_and_fetch` writes the token's keys and values into its slot of the
    pool (`BlockPool.write`, in place) and hands the new keys back unchanged; the attention must then be
    `attend`, which runs `paged_attention` over the pool through the block tables. Stock mlx-lm
    models call `scaled_dot_product_attention` of `mlx_lm.models.base`; `paged_attention_dispatch`
    routes those calls here for the duration of the model call. Nothing is gathered.

    Args:
        sequences: The batch's sequences, in row order; each gets the next position.
    """

    def __init__(self, sequences: list[PagedSequence]) -> None:
        if not sequences:
            raise ValueError("[PagedDecodeBatch] the batch is empty")
        pool = sequences[0].pool
        if any(s.pool is not pool for s in sequences):
            raise ValueError("[PagedDecodeBatch] the sequences must share one pool")
        self.pool, self.sequences = pool, sequences
        size = pool.block_size
        starts = [s.length for s in sequences]
        rows, lens, slots = [], [], []
        keeps_all = pool.eviction.keeps_all
        for sequence, start in zip(sequences, starts):
            sequence.reserve(start, start + 1)
            if keeps_all:  # every block, every position (the common case, without the scans)
                rows.append(sequence.table)
                lens.append(start + 1)
            else:
                blocks = sequence.retained(start)
                rows.append([sequence.table[i] for i in blocks])
                lens.append(sequence.layers[0]._held(blocks, start + 1))
            slots.append(sequence.table[start // size] * size + start % size)
        width = max(len(row) for row in rows)
        self.block_tables = mx.array([row + [0] * (width - len(row)) for row in rows], dtype=mx.int32)
        self.context_lens = mx.array(lens, dtype=mx.int32)
        self.slots = mx.array(slots, dtype=mx.int32)
        self.offset = mx.array(starts, dtype=mx.int32)  # per row, for RoPE
        self.attention = PagedAttentionLaunches()  # every layer's launch has the same shapes
        self.layers = [PagedDecodeLayer(self, layer) for layer in range(pool.num_layers)]

    def advance(self) -> None:
        """After the model call: every layer wrote and attended; the sequences grow by one."""
        lazy = [layer.layer for layer in self.layers if not (layer.wrote and layer.attended)]
        if lazy:
            raise RuntimeError(
                f"[PagedDecodeBatch] layers {lazy} did not attend through `attend`: the model's attention "
                "must call mlx_lm.models.base.scaled_dot_product_attention inside paged_attention_dispatch"
            )
        for sequence in self.sequences:
            for layer in sequence.layers:
                layer.offset += 1


class PagedDecodeLayer:
    """One layer's cache of a `PagedDecodeBatch` (mlx-lm's protocol, one new token per row)."""

    def __init__(self, batch: PagedDecodeBatch, layer: int) -> None:
        self.batch, self.layer = batch, layer
        self.offset = batch.offset
        self.wrote = self.attended = False

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Writes (batch, kv_heads, 1, head_dim) keys and values into their slots; returns them
        as they came (the attention reads the pool: `attend`)."""
        pool = self.batch.pool
        expected = (self.batch.slots.shape[0], pool.kv_heads, 1, pool.head_dim)
        for name, array in (("keys", keys), ("values", values)):
            if tuple(array.shape) != expected:
                raise ValueError(
                    f"[PagedDecodeLayer] {name} have shape {tuple(array.shape)}; expected {expected}"
                )
            if array.dtype != pool.dtype:
                raise TypeError(
                    f"[PagedDecodeLayer] {name} have dtype {dtype_name(array.dtype)}; expected the pool's "
                    f"{dtype_name(pool.dtype)}"
                )
        pool.write(self.layer, keys[:, :, 0, :], values[:, :, 0, :], self.batch.slots)
        self.wrote = True
        return keys, values

    def attend(self, queries: mx.array, scale: float) -> mx.array:
        """(batch, heads, 1, head_dim) attention of the new queries over each row's pool blocks."""
        if not self.wrote:
            raise RuntimeError(
                "[PagedDecodeLayer] attend before update_and_fetch: the new keys are not written"
            )
        pool, batch = self.batch.pool, self.batch
        expected = (batch.slots.shape[0], queries.shape[1], 1, pool.head_dim)
        if tuple(queries.shape) != expected or queries.dtype != pool.dtype:
            raise ValueError(
                f"[PagedDecodeLayer] queries have shape {tuple(queries.shape)} and dtype "
                f"{dtype_name(queries.dtype)}; expected {expected} in the pool's {dtype_name(pool.dtype)}"
            )
        self.attended = True
        # the batch made the tables and lengths (int32, in range) and `update_and_fetch` checked
        # the keys against the pool: the launch skips `paged_attention`'s checks
        keys, values = pool.keys[self.layer], pool.values[self.layer]
        return batch.attention(queries, keys, values, batch.block_tables, batch.context_lens, scale)

    def make_mask(
        self, N: int, window_size: int | None = None, return_array: bool = False
    ) -> mx.array | str | None:  # noqa: N803
        if N != 1:
            raise ValueError(f"[PagedDecodeLayer] decode runs one token per row, got {N}")
        return None  # the kernel masks each row at its context length

    def size(self) -> int:
        return int(self.batch.context_lens.max().item())


def attention_modules(model: nn.Module) -> list[ModuleType]:
    """The Python modules of `model`'s layers that call a `scaled_dot_product_attention` of
    their own (mlx-lm's model files): what `paged_attention_dispatch` rebinds. Walking the
    model takes ~0.9 ms for a 16-layer Llama, so a caller that dispatches every decode step
    finds them once."""
    modules: dict[str, ModuleType] = {}
    for _, child in model.named_modules():
        module = sys.modules.get(type(child).__module__)
        if module is not None and callable(getattr(module, "scaled_dot_product_attention", None)):
            modules[module.__name__] = module
    return list(modules.values())


@contextmanager
def paged_attention_dispatch(model: nn.Module, modules: list[ModuleType] | None = None) -> Iterator[None]:
    """Within the block, the model's attention over a `PagedDecodeLayer` runs `paged_attention`.

    mlx-lm's attention modules call the `scaled_dot_product_attention` their module imported
    from `mlx_lm.models.base`. For every module of `model`'s layers that has one (`modules`,
    when the caller found them already with `attention_modules(model)`), the name is
    rebound to a dispatcher: a `PagedDecodeLayer` cache goes to its `attend`, any other cache
    (or none) to the original function with the same arguments, so no other cache's behaviour
    changes even while the block runs. The names are restored on exit, also on error. The
    rebinding is of module globals, process-wide for the duration: another thread running a
    model of the same module meanwhile only passes through the dispatcher.
    """
    modules = {
        module.__name__: module for module in (attention_modules(model) if modules is None else modules)
    }
    saved = {name: module.scaled_dot_product_attention for name, module in modules.items()}

    def dispatcher(original: Callable[..., mx.array]) -> Callable[..., mx.array]:
        def attention(queries, keys, values, cache, scale, mask, sinks=None):  # noqa: ANN001, ANN202
            if isinstance(cache, PagedDecodeLayer):
                if sinks is not None:
                    raise ValueError("[paged_attention_dispatch] attention sinks are not supported")
                return cache.attend(queries, scale)
            return original(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)

        attention.__wrapped__ = original
        return attention

    for name, module in modules.items():
        module.scaled_dot_product_attention = dispatcher(saved[name])
    try:
        yield
    finally:
        for name, module in modules.items():
            module.scaled_dot_product_attention = saved[name]
