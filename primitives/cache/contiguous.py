"""Contiguous KV caches: one (batch, kv_heads, positions, head_dim) buffer per layer.

Every cache here follows mlx-lm's cache protocol, so a stock `mlx_lm.models.*` model runs on it
unchanged: `update_and_fetch(keys, values)` appends and returns every key and value the new
queries attend to, `offset` counts the positions seen, `make_mask(N, ...)` gives the mask for
`N` new queries, `state` (arrays and scalars) round-trips through `save_prompt_cache` /
`load_prompt_cache`, `is_trimmable`/`trim` drop the newest positions, `nbytes` and `empty()`.
Single-sequence caches `merge` into a `BatchKVCache` (a `BatchRotatingKVCache` for rotating
ones), which `filter`s, `extend`s and `extract`s rows as mlx-lm's `BatchGenerator` asks.

Keys and values are held as a tuple of "parts" that share the positions axis (axis 2): one
array for plain caches, mx.quantize's (packed, scales, biases) for quantized ones. Growing,
trimming, padding and row selection are written once over the parts, so a quantized cache
batches exactly as a plain one does (mlx-lm's QuantizedKVCache does not merge).

Buffers grow in steps of `STEP` positions and new entries are written in place (slice
assignment), so a decode step does not copy the cache.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

# Positions added to a buffer when it fills: decode writes in place between growths.
STEP = 256

Parts = tuple[mx.array, ...]


# --------------------------------------------------------------------------- helpers


def causal_mask(
    n: int, offset: int, window: int | None = None, left_padding: mx.array | None = None
) -> mx.array:
    """Boolean mask of `n` queries at positions offset .. offset + n - 1 over keys 0 .. offset + n - 1:
    causal, within `window` positions (itself included) if given, and (batched) not on a row's
    left padding. (n, keys), or (batch, 1, n, keys) with `left_padding`."""
    keys = mx.arange(offset + n)[None, :]
    queries = mx.arange(offset, offset + n)[:, None]
    mask = keys <= queries
    if window is not None:
        mask = mask & (keys > queries - window)
    if left_padding is not None:
        mask = mask[None, None] & (keys[None, None] >= left_padding[:, None, None, None])
    return mask


def standard_mask(n: int, offset: int, window_size: int | None, return_array: bool) -> mx.array | str | None:
    """The mask mlx-lm's attention takes for `n` new queries after `offset` cached positions:
    None for one query, "causal" where the fused kernel's own causal mask is exact, else an array."""
    if window_size is not None and offset + n > window_size:
        return causal_mask(n, offset, window_size)
    if n == 1:
        return None
    return causal_mask(n, offset) if return_array else "causal"


def _grow(parts: Parts | None, new: Parts, used: int) -> Parts:
    """`parts` with room for `new` after its first `used` positions (grown by whole STEPs)."""
    need = used + new[0].shape[2]
    if parts is not None and need <= parts[0].shape[2]:
        return parts
    steps = -(-new[0].shape[2] // STEP) * STEP
    grown = []
    for i, piece in enumerate(new):
        fresh = mx.zeros((*piece.shape[:2], steps, piece.shape[3]), piece.dtype)
        grown.append(fresh if parts is None else mx.concatenate([parts[i][:, :, :used], fresh], axis=2))
    return tuple(grown)


def _write(parts: Parts, new: Parts, at: int) -> None:
    for piece, value in zip(parts, new):
        piece[:, :, at : at + value.shape[2]] = value


def _upto(parts: Parts, end: int, start: int = 0) -> Parts:
    return tuple(piece[:, :, start:end] for piece in parts)


def _as_parts(x: mx.array | list | tuple | None) -> Parts | None:
    """A state's keys or values (an array, or a quantized triple as a loaded list) as parts."""
    if x is None:
        return None
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _nbytes(parts: Parts | None) -> int:
    return 0 if parts is None else sum(piece.nbytes for piece in parts)


class _CacheBase:
    """Protocol pieces every cache shares."""

    @property
    def meta_state(self) -> str:
        """Older mlx-lm's string metadata; this package keeps every scalar in `state`."""
        return ""

    @meta_state.setter
    def meta_state(self, value: str) -> None:
        pass

    @classmethod
    def from_state(cls, state: tuple) -> _CacheBase:
        """A cache holding `state` (what `load_prompt_cache` calls)."""
        cache = cls.__new__(cls)
        cache.state = state
        return cache

    def size(self) -> int:
        return self.offset


# --------------------------------------------------------------------------- single sequence


class _AppendCache(_CacheBase):
    """Every key and value of the sequence in position order, as parts (see the module docstring)."""

    def __init__(self) -> None:
        self._keys: Parts | None = None
        self._values: Parts | None = None
        self.offset = 0

    def _encode(self, x: mx.array) -> Parts:
        return (x,)

    def _decode(self, parts: Parts) -> mx.array | Parts:
        return parts[0]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple:
        """Appends (B, kv_heads, S, head_dim) keys and values; returns all of them so far."""
        new_k, new_v = self._encode(keys), self._encode(values)
        self._keys = _grow(self._keys, new_k, self.offset)
        self._values = _grow(self._values, new_v, self.offset)
        _write(self._keys, new_k, self.offset)
        _write(self._values, new_v, self.offset)
        self.offset += keys.shape[2]
        return self._fetch(self.offset)

    def _fetch(self, end: int) -> tuple:
        return self._decode(_upto(self._keys, end)), self._decode(_upto(self._values, end))

    @property
    def keys(self) -> mx.array | Parts | None:
        return None if self._keys is None else self._decode(_upto(self._keys, self.offset))

    @property
    def values(self) -> mx.array | Parts | None:
        return None if self._values is None else self._decode(_upto(self._values, self.offset))

    @property
    def state(self) -> tuple:
        if self._keys is None:
            return None, None, self.offset
        return self._fetch(self.offset) + (self.offset,)

    @state.setter
    def state(self, value: tuple) -> None:
        keys, values, self.offset = value
        self._keys, self._values = _as_parts(keys), _as_parts(values)

    def is_trimmable(self) -> bool:
        return True

    def trim(self, n: int) -> int:
        """Drops the newest `n` positions (at most `offset`); returns how many went."""
        n = min(self.offset, n)
        self.offset -= n
        return n

    def make_mask(
        self, N: int, window_size: int | None = None, return_array: bool = False
    ) -> mx.array | str | None:  # noqa: N803
        return standard_mask(N, self.offset, window_size, return_array)

    def empty(self) -> bool:
        return self._keys is None

    @property
    def nbytes(self) -> int:
        return _nbytes(self._keys) + _nbytes(self._values)

    @classmethod
    def merge(cls, caches: list[KVCache]) -> BatchKVCache:
        """One left-padded batch of single-sequence caches (mlx-lm's BatchGenerator calls this)."""
        return BatchKVCache.merge(caches)


class KVCache(_AppendCache):
    """The plain cache: every key and value of the sequence, in position order."""

    def to_quantized(self, group_size: int = 64, bits: int = 4) -> QuantizedKVCache:
        """A `QuantizedKVCache` holding these positions (`generate_step(kv_bits=...)` calls it)."""
        cache = QuantizedKVCache(group_size, bits)
        if self._keys is not None and self.offset:
            keys, values = self._fetch(self.offset)
            cache.update_and_fetch(keys, values)
        return cache


class QuantizedKVCache(_AppendCache):
    """Keys and values stored as `mx.quantize` (packed uint32, scales, biases) triples.

    update_and_fetch returns the triples, as mlx-lm's quantized attention takes them (it sees
    the `bits` and `group_size` attributes). head_dim must be a multiple of group_size.

    Args:
        group_size: Elements per scale and bias (32, 64 or 128).
        bits: Bits per element (2, 3, 4, 5, 6 or 8).
    """

    def __init__(self, group_size: int = 64, bits: int = 8) -> None:
        super().__init__()
        self.group_size = group_size
        self.bits = bits

    def _encode(self, x: mx.array) -> Parts:
        if x.shape[-1] % self.group_size:
            raise ValueError(
                f"[QuantizedKVCache] keys have head_dim {x.shape[-1]}; expected a multiple of group_size {self.group_size}"
            )
        return tuple(mx.quantize(x, group_size=self.group_size, bits=self.bits))

    def _decode(self, parts: Parts) -> Parts:
        return parts

    @property
    def state(self) -> tuple:
        return (*super().state, self.group_size, self.bits)

    @state.setter
    def state(self, value: tuple) -> None:
        *base, self.group_size, self.bits = value
        _AppendCache.state.fset(self, tuple(base))  # type: ignore[attr-defined]

    @classmethod
    def merge(cls, caches: list[KVCache]) -> BatchKVCache:
        return BatchQuantizedKVCache.merge(caches)

    def dequantized(self) -> tuple[mx.array, mx.array]:
        """The cached keys and values dequantized (float, the scales' dtype)."""
        return tuple(  # type: ignore[return-value]
            mx.dequantize(*parts, group_size=self.group_size, bits=self.bits)
            for parts in (_upto(self._keys, self.offset), _upto(self._values, self.offset))
        )


class RotatingKVCache(_CacheBase):
    """A sliding window with attention sinks: the first `keep` positions and the most recent ones.

    After each update at most `max_size - 1` positions stay (the `keep` sinks, then the newest),
    so a decode step attends to the sinks and the last `max_size - keep` positions, itself
    included, as mlx-lm's RotatingKVCache does. A chunk of `S` queries gets those plus its own
    keys, with a mask by true position: a query sees the sinks and the `max_size - keep`
    positions ending at itself. Entries are kept in position order (mlx-lm rotates a ring
    buffer in place), which makes the masks plain and merging trivial.

    Args:
        max_size: Positions a query attends to (sinks included).
        keep: Sink positions at the start that are never dropped.
    """

    def __init__(self, max_size: int, keep: int = 0) -> None:
        if not 0 <= keep < max_size:
            raise ValueError(f"[RotatingKVCache] keep is {keep}; expected 0 <= keep < max_size ({max_size})")
        self.max_size = max_size
        self.keep = keep
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def _retained_positions(self) -> mx.array:
        """The positions of the entries held now, in order."""
        held = 0 if self.keys is None else self.keys.shape[2]
        sinks = min(self.keep, held)
        return mx.concatenate([mx.arange(sinks), mx.arange(self.offset - (held - sinks), self.offset)])

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if self.keys is None:
            all_k, all_v = keys, values
        else:
            all_k = mx.concatenate([self.keys, keys], axis=2)
            all_v = mx.concatenate([self.values, values], axis=2)
        self.offset += keys.shape[2]
        held = all_k.shape[2]
        if held > self.max_size - 1:
            recent = self.max_size - 1 - self.keep
            self.keys = mx.concatenate([all_k[:, :, : self.keep], all_k[:, :, held - recent :]], axis=2)
            self.values = mx.concatenate([all_v[:, :, : self.keep], all_v[:, :, held - recent :]], axis=2)
        else:
            self.keys, self.values = all_k, all_v
        return all_k, all_v

    def make_mask(
        self, N: int, window_size: int | None = None, return_array: bool = False
    ) -> mx.array | str | None:  # noqa: N803
        positions = self._retained_positions()
        if N == 1 and window_size is None:
            return None  # every held entry is in the window
        keys = mx.concatenate([positions, mx.arange(self.offset, self.offset + N)])[None, :]
        queries = mx.arange(self.offset, self.offset + N)[:, None]
        window = self.max_size - self.keep if window_size is None else window_size
        mask = (keys <= queries) & ((keys > queries - window) | (keys < self.keep))
        if window_size is None and self.offset + N <= self.max_size and not return_array:
            return None if N == 1 else "causal"
        return mask

    def size(self) -> int:
        return min(self.offset, self.max_size)

    @property
    def state(self) -> tuple:
        return self.keys, self.values, self.offset, self.keep, self.max_size

    @state.setter
    def state(self, value: tuple) -> None:
        self.keys, self.values, self.offset, self.keep, self.max_size = value

    def is_trimmable(self) -> bool:
        """Trimmable while nothing has been dropped."""
        return self.offset < self.max_size

    def trim(self, n: int) -> int:
        if not self.is_trimmable():
            raise ValueError("[RotatingKVCache.trim] the cache has dropped positions; it cannot be trimmed")
        n = min(self.offset, n)
        self.offset -= n
        if self.keys is not None:
            self.keys, self.values = self.keys[:, :, : self.offset], self.values[:, :, : self.offset]
        return n

    def empty(self) -> bool:
        return self.keys is None

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else self.keys.nbytes + self.values.nbytes

    @classmethod
    def merge(cls, caches: list[RotatingKVCache]) -> BatchRotatingKVCache:
        """One left-padded batch of rotating caches (mlx-lm's BatchGenerator calls this)."""
        return BatchRotatingKVCache.merge(caches)


# --------------------------------------------------------------------------- batches


class BatchKVCache(_CacheBase):
    """Several sequences in one left-padded buffer: row b's first `left_padding[b]` positions
    are padding the mask hides. `offset` is per row (its true length); `_idx` is the buffer's.

    Made by `KVCache.merge`; `filter`, `extend`, `extract`, `prepare` and `finalize` are the
    hooks mlx-lm's `BatchGenerator` drives. The padding is kept on the host (`left_padding` is
    its device copy), so `filter` and `extract` read it without waiting for the device (mlx-lm's
    `BatchKVCache.filter` reads it back from the device: a stall of the pipelined decode each
    time a request leaves).
    """

    single = KVCache

    def __init__(self, left_padding: list[int]) -> None:
        self._keys: Parts | None = None
        self._values: Parts | None = None
        self._pad = np.asarray(left_padding, dtype=np.int64).reshape(-1)  # per row, on the host
        self._pad_device: mx.array | None = None
        self.offset = -self.left_padding
        self._idx = 0
        self._right_padding: np.ndarray | None = None

    @property
    def left_padding(self) -> mx.array:
        """(batch,) int32 padding positions at the start of each row."""
        if self._pad_device is None:
            self._pad_device = mx.array(self._pad, dtype=mx.int32)
        return self._pad_device

    @left_padding.setter
    def left_padding(self, value: mx.array | np.ndarray | list[int]) -> None:
        self._pad = np.array(value, dtype=np.int64).reshape(-1)  # (an mx.array: read back once)
        self._pad_device = None

    # the per-kind pieces: how keys are encoded and handed back
    def _encode(self, x: mx.array) -> Parts:
        return (x,)

    def _decode(self, parts: Parts) -> mx.array | Parts:
        return parts[0]

    def _empty_single(self) -> KVCache:
        return KVCache()

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple:
        new_k, new_v = self._encode(keys), self._encode(values)
        self._keys = _grow(self._keys, new_k, self._idx)
        self._values = _grow(self._values, new_v, self._idx)
        _write(self._keys, new_k, self._idx)
        _write(self._values, new_v, self._idx)
        self._idx += keys.shape[2]
        self.offset = self.offset + keys.shape[2]
        return self._fetch(self._idx)

    def _fetch(self, end: int) -> tuple:
        return self._decode(_upto(self._keys, end)), self._decode(_upto(self._values, end))

    def make_mask(self, N: int, window_size: int | None = None, return_array: bool = False) -> mx.array:  # noqa: N803
        return causal_mask(N, self._idx, window_size, self.left_padding)

    def prepare(self, *, left_padding: list[int] | None = None, lengths: list[int] | None = None, right_padding: list[int] | None = None) -> None:  # fmt: skip
        """Before a prompt step: more left padding (empty cache only), or right padding that
        `finalize` rolls to the left once the padded prompts have been written."""
        if left_padding is not None:
            if self._keys is not None:
                raise ValueError("[BatchKVCache.prepare] left padding can only be added to an empty cache")
            pad = np.asarray(left_padding, dtype=np.int64)
            self.left_padding = self._pad + pad
            self.offset = self.offset - mx.array(pad, dtype=mx.int32)
        if right_padding is not None and max(right_padding) > 0:
            self._right_padding = np.asarray(right_padding, dtype=np.int64)

    def finalize(self) -> None:
        """Moves right padding written by a prompt step to the left of each row."""
        if self._right_padding is None:
            return
        host_shift = self._right_padding
        shift = mx.array(host_shift, dtype=mx.int32)
        source = (mx.arange(self._idx)[None, :] - shift[:, None]) % self._idx  # (B, positions)
        index = source[:, None, :, None]
        self._keys = tuple(mx.take_along_axis(p[:, :, : self._idx], index, axis=2) for p in self._keys)
        self._values = tuple(mx.take_along_axis(p[:, :, : self._idx], index, axis=2) for p in self._values)
        self.offset = self.offset - shift
        self.left_padding = self._pad + host_shift
        self._right_padding = None

    @property
    def state(self) -> tuple:
        if self._keys is None:
            return None, None, self.offset, self.left_padding, self._idx
        return self._fetch(self._idx) + (self.offset, self.left_padding, self._idx)

    @state.setter
    def state(self, value: tuple) -> None:
        keys, values, self.offset, self.left_padding, self._idx = value
        self._keys, self._values = _as_parts(keys), _as_parts(values)
        self._right_padding = None

    def is_trimmable(self) -> bool:
        return True

    def trim(self, n: int) -> int:
        n = min(self._idx, n)
        self._idx -= n
        self.offset = self.offset - n
        return n

    def size(self) -> int:
        return self._idx

    def empty(self) -> bool:
        return self._keys is None

    @property
    def nbytes(self) -> int:
        return _nbytes(self._keys) + _nbytes(self._values)

    def filter(self, batch_indices: list[int] | mx.array) -> None:
        """Keeps only the rows `batch_indices` (in that order), dropping padding every row shares."""
        host_rows = np.array(batch_indices, dtype=np.int64).reshape(-1)
        rows = mx.array(host_rows, dtype=mx.int32)
        if self._keys is not None:
            self._keys = tuple(p[rows] for p in self._keys)
            self._values = tuple(p[rows] for p in self._values)
        self.offset = self.offset[rows]
        pad = self._pad[host_rows]
        shared = int(pad.min()) if pad.size else 0
        if shared > 0:
            if self._keys is not None:
                self._keys = _upto(self._keys, self._idx, shared)
                self._values = _upto(self._values, self._idx, shared)
            self._idx -= shared
        self.left_padding = pad - shared

    def extend(self, other: BatchKVCache) -> None:
        """Appends `other`'s rows, right-aligning both to the longer buffer."""
        width = max(self._idx, other._idx)
        template = self._keys if self._keys is not None else other._keys
        vtemplate = self._values if self._values is not None else other._values

        def aligned(cache: BatchKVCache, parts: Parts | None, like: Parts | None) -> Parts | None:
            if like is None:
                return None
            rows = cache.offset.shape[0]
            if parts is None:
                parts = tuple(mx.zeros((rows, p.shape[1], 0, p.shape[3]), p.dtype) for p in like)
            parts = _upto(parts, cache._idx)
            pad = width - cache._idx
            return tuple(mx.pad(p, [(0, 0), (0, 0), (pad, 0), (0, 0)]) for p in parts)

        keys = [aligned(c, c._keys, template) for c in (self, other)]
        values = [aligned(c, c._values, vtemplate) for c in (self, other)]
        if template is not None:
            self._keys = tuple(mx.concatenate(pair, axis=0) for pair in zip(*keys))
            self._values = tuple(mx.concatenate(pair, axis=0) for pair in zip(*values))
        self.left_padding = np.concatenate(
            [self._pad + (width - self._idx), other._pad + (width - other._idx)]
        )
        self.offset = mx.concatenate([self.offset, other.offset])
        self._idx = width

    def extract(self, idx: int) -> KVCache:
        """Row `idx` as a single-sequence cache (its padding removed)."""
        cache = self._empty_single()
        start = int(self._pad[idx])
        if self._keys is not None:
            keys = tuple(mx.contiguous(p[idx : idx + 1, :, start : self._idx]) for p in self._keys)
            values = tuple(mx.contiguous(p[idx : idx + 1, :, start : self._idx]) for p in self._values)
            cache._keys, cache._values = keys, values
            cache.offset = self._idx - start
        return cache

    @classmethod
    def merge(cls, caches: list[KVCache]) -> BatchKVCache:
        """Single-sequence caches as one batch, each left-padded to the longest."""
        lengths = [c.offset for c in caches]
        longest = max(lengths, default=0)
        batch = cls([longest - n for n in lengths])
        filled = [c for c in caches if c._keys is not None and c.offset]
        if longest == 0 or not filled:
            return batch
        for name in ("_keys", "_values"):
            like = getattr(filled[0], name)
            rows = []
            for c, n in zip(caches, lengths):
                parts = getattr(c, name)
                pieces = []
                for i, p in enumerate(like):
                    body = (
                        parts[i][:, :, :n]
                        if parts is not None and n
                        else mx.zeros((1, p.shape[1], 0, p.shape[3]), p.dtype)
                    )
                    pieces.append(mx.pad(body, [(0, 0), (0, 0), (longest - n, 0), (0, 0)]))
                rows.append(pieces)
            setattr(batch, name, tuple(mx.concatenate(col, axis=0) for col in zip(*rows)))
        batch._idx = longest
        batch.offset = batch.offset + longest
        return batch


class BatchQuantizedKVCache(BatchKVCache):
    """`BatchKVCache` over `mx.quantize` triples (what `QuantizedKVCache.merge` makes)."""

    def __init__(self, left_padding: list[int], group_size: int = 64, bits: int = 8) -> None:
        super().__init__(left_padding)
        self.group_size = group_size
        self.bits = bits

    def _encode(self, x: mx.array) -> Parts:
        return tuple(mx.quantize(x, group_size=self.group_size, bits=self.bits))

    def _decode(self, parts: Parts) -> Parts:
        return parts

    def _empty_single(self) -> QuantizedKVCache:
        return QuantizedKVCache(self.group_size, self.bits)

    @property
    def state(self) -> tuple:
        return (*BatchKVCache.state.fget(self), self.group_size, self.bits)  # type: ignore[attr-defined]

    @state.setter
    def state(self, value: tuple) -> None:
        *base, self.group_size, self.bits = value
        BatchKVCache.state.fset(self, tuple(base))  # type: ignore[attr-defined]

    @classmethod
    def merge(cls, caches: list[QuantizedKVCache]) -> BatchQuantizedKVCache:
        kinds = {(c.group_size, c.bits) for c in caches}
        if len(kinds) > 1:
            raise ValueError(
                f"[QuantizedKVCache.merge] caches have (group_size, bits) {sorted(kinds)}; expected one"
            )
        batch = super().merge(caches)
        batch.group_size, batch.bits = kinds.pop()
        return batch  # type: ignore[return-value]


# The last `BatchRotatingKVCache._decode_plan`: ((max_size, keep, shape), offsets, positions, plan).
_LAST_PLAN: list[Any] = [None]


def _pad_columns(a: np.ndarray, width: int, value: Any) -> np.ndarray:
    """A copy of 2-D `a` with columns of `value` appended up to `width` (np.pad costs ~50 us a
    call, and the rotating batch pads its positions at every decode step)."""
    out = np.full((a.shape[0], width), value, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


class BatchRotatingKVCache(_CacheBase):
    """Several `RotatingKVCache` rows in one left-padded buffer, each keeping its own window.

    Each entry's true position is kept on the host (`positions`, -1 for a free slot), so the
    mask is exact by position whatever the rows' lengths and wherever an entry sits: a query
    sees the sinks and the `max_size - keep` positions ending at itself, as in
    `RotatingKVCache`. A chunk of several tokens is appended, then each row keeps its sinks and
    newest positions in order, right-aligned (free slots on the left, as left padding). A
    single decode token is written in place, each row into a free slot or over a position its
    query no longer sees, so once the buffer holds `max_size` slots decoding copies nothing:
    a ring buffer per row.

    Made by `RotatingKVCache.merge`; `filter`, `extend`, `extract`, `prepare` and `finalize` are
    the hooks mlx-lm's `BatchGenerator` drives. Right padding written between `prepare` and
    `finalize` is marked as padding at once, so it never evicts a real entry.

    Args:
        max_size: Positions a query attends to (sinks included), as in `RotatingKVCache`.
        keep: Sink positions at the start of each row that are never dropped.
        left_padding: Padding tokens at the start of each row's next input (an empty batch).
    """

    single = RotatingKVCache
    # (the `_offset` it copies, the copy); a class default, as mlx-lm's loader skips __init__
    _offset_device: tuple[np.ndarray, mx.array] | None = None

    def __init__(self, max_size: int, keep: int, left_padding: list[int]) -> None:
        if not 0 <= keep < max_size:
            raise ValueError(
                f"[BatchRotatingKVCache] keep is {keep}; expected 0 <= keep < max_size ({max_size})"
            )
        self.max_size = max_size
        self.keep = keep
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        rows = len(left_padding)
        self.positions = np.full((rows, 0), -1, dtype=np.int64)
        # each row's next position (negative over left padding still to come), as RoPE reads it
        self._offset = -np.asarray(left_padding, dtype=np.int64).reshape(rows)
        self._remaining: np.ndarray | None = None  # real tokens still to come in a right-padded prompt

    @property
    def offset(self) -> mx.array:
        """Each row's next position on the device, made once per value of `_offset` (which is
        only ever rebound, never written in place): RoPE reads it twice in every layer."""
        if self._offset_device is None or self._offset_device[0] is not self._offset:
            self._offset_device = (self._offset, mx.array(self._offset, dtype=mx.int32))
        return self._offset_device[1]

    @property
    def left_padding(self) -> mx.array:
        """Free slots of each row (the left padding after a chunk) and padding still to come."""
        held = (self.positions < 0).sum(axis=1) + np.maximum(-self._offset, 0)
        return mx.array(held, dtype=mx.int32)

    def _new_positions(self, n: int) -> np.ndarray:
        """(rows, n) positions of the next `n` tokens, -1 where a token is padding."""
        new = self._offset[:, None] + np.arange(n)[None, :]
        if self._remaining is not None:
            new = np.where(np.arange(n)[None, :] < self._remaining[:, None], new, -1)
        return np.where(new >= 0, new, -1)

    def _retained(self, positions: np.ndarray) -> np.ndarray:
        """Which entries a later query can still see: the sinks and the newest max_size - 1 - keep."""
        newest = self._offset[:, None] - (self.max_size - 1 - self.keep)
        return (positions >= 0) & ((positions < self.keep) | (positions >= newest))

    def _decode_plan(self) -> tuple[int, np.ndarray] | None:
        """(width, slots) for writing one token per row in place: the buffer's width (grown to
        at most max_size when a row has no free slot) and each row's slot; None to append.

        A function of the positions, offsets, max_size and keep alone, so the last plan is
        kept (`_LAST_PLAN`) and found again by content: a model's layers hold the same
        positions at each step, and all but the first (and the mask) then compare two small
        arrays instead of planning."""
        if self.keys is None or self._remaining is not None or (self._offset < 0).any():
            return None
        last = _LAST_PLAN[0]
        if (
            last is not None
            and last[0] == (self.max_size, self.keep, self.positions.shape)
            and np.array_equal(last[1], self._offset)
            and np.array_equal(last[2], self.positions)
        ):
            return last[3]
        plan = self._plan()
        _LAST_PLAN[0] = (
            (self.max_size, self.keep, self.positions.shape),
            self._offset.copy(),
            self.positions.copy(),
            plan,
        )
        return plan

    def _plan(self) -> tuple[int, np.ndarray] | None:
        width = self.positions.shape[1]
        seen_from = self._offset[:, None] - (self.max_size - self.keep)  # the new query sees later ones
        free = (self.positions < 0) | ((self.positions >= self.keep) & (self.positions <= seen_from))
        if not free.any(axis=1).all():
            grown = min(width + STEP, self.max_size)
            if grown == width:
                return None
            free = _pad_columns(free, grown, True)
            width = grown
        return width, free.argmax(axis=1)

    def make_mask(self, N: int, window_size: int | None = None, return_array: bool = False) -> mx.array:  # noqa: N803
        """(rows, 1, N, keys) boolean mask of N new queries over the entries update_and_fetch returns."""
        window = self.max_size - self.keep if window_size is None else window_size
        plan = self._decode_plan() if N == 1 else None
        if plan is not None:
            width, slots = plan
            keys = _pad_columns(self.positions, width, -1)
            keys[np.arange(keys.shape[0]), slots] = self._offset
            keys, queries = keys[:, None, :], self._offset[:, None, None]
            mask = (keys >= 0) & (keys <= queries) & ((keys > queries - window) | (keys < self.keep))
            return mx.array(mask)[:, None]
        new = self._new_positions(N)
        keys = np.concatenate([self.positions, new], axis=1)[:, None, :]
        queries = (self._offset[:, None] + np.arange(N)[None, :])[:, :, None]
        mask = (keys >= 0) & (keys <= queries) & ((keys > queries - window) | (keys < self.keep))
        # a padding query sees itself, so no row of the attention is empty (its output is unused)
        rows, cols = np.nonzero(new < 0)
        mask[rows, cols, self.positions.shape[1] + cols] = True
        return mx.array(mask)[:, None]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if keys.shape[0] != self._offset.shape[0]:
            raise ValueError(
                f"[BatchRotatingKVCache] keys have batch {keys.shape[0]}; expected the cache's {self._offset.shape[0]} rows"
            )
        n = keys.shape[2]
        plan = self._decode_plan() if n == 1 else None
        if plan is not None:
            self._write_in_place(keys, values, *plan)
            return self.keys, self.values
        positions = np.concatenate([self.positions, self._new_positions(n)], axis=1)
        if self.keys is None:
            all_k, all_v = keys, values
        else:
            all_k = mx.concatenate([self.keys, keys], axis=2)
            all_v = mx.concatenate([self.values, values], axis=2)
        if self._remaining is None:
            self._offset = self._offset + n
        else:
            real = np.minimum(self._remaining, n)
            self._offset = self._offset + real
            self._remaining = self._remaining - real
        self._store(all_k, all_v, positions, self._retained(positions))
        return all_k, all_v

    def _write_in_place(self, keys: mx.array, values: mx.array, width: int, slots: np.ndarray) -> None:
        grow = width - self.positions.shape[1]
        if grow:
            pad = [(0, 0), (0, 0), (0, grow), (0, 0)]
            self.keys, self.values = mx.pad(self.keys, pad), mx.pad(self.values, pad)
            self.positions = _pad_columns(self.positions, width, -1)
        self.positions[np.arange(self.positions.shape[0]), slots] = self._offset
        self._offset = self._offset + 1
        if (slots == slots[0]).all():
            at = int(slots[0])
            self.keys[:, :, at : at + 1] = keys
            self.values[:, :, at : at + 1] = values
        else:
            index = mx.array(slots, dtype=mx.int32)[:, None, None, None]
            self.keys = mx.put_along_axis(self.keys, mx.broadcast_to(index, keys.shape), keys, axis=2)
            self.values = mx.put_along_axis(self.values, mx.broadcast_to(index, values.shape), values, axis=2)

    def _normalize(self) -> None:
        """Each row's retained entries in position order, right-aligned in the narrowest buffer."""
        self._store(self.keys, self.values, self.positions, self._retained(self.positions))

    def _store(
        self, keys: mx.array | None, values: mx.array | None, positions: np.ndarray, kept: np.ndarray
    ) -> None:
        """Holds the `kept` entries of each row in position order, right-aligned in the narrowest buffer."""
        width = positions.shape[1]
        held = int(kept.sum(axis=1).max()) if kept.size else 0
        # dropped entries sort first, kept ones after by position (unique within a row)
        order = np.argsort(np.where(kept, positions, -1), axis=1, kind="stable")[:, width - held :]
        self.positions = np.where(
            np.take_along_axis(kept, order, axis=1), np.take_along_axis(positions, order, axis=1), -1
        )
        if keys is None:
            return
        if held == width:
            self.keys, self.values = keys, values
        elif (order == np.arange(width - held, width)[None, :]).all():  # only shared padding goes
            self.keys, self.values = keys[:, :, width - held :], values[:, :, width - held :]
        else:
            index = mx.array(order, dtype=mx.int32)[:, None, :, None]
            self.keys = mx.take_along_axis(keys, index, axis=2)
            self.values = mx.take_along_axis(values, index, axis=2)

    def prepare(self, *, left_padding: list[int] | None = None, lengths: list[int] | None = None, right_padding: list[int] | None = None) -> None:  # fmt: skip
        """Before a prompt step: more left padding (empty cache only), or the real `lengths` of
        right-padded prompts, whose padding is then never held."""
        if left_padding is not None:
            if self.keys is not None:
                raise ValueError(
                    "[BatchRotatingKVCache.prepare] left padding can only be added to an empty cache"
                )
            self._offset = self._offset - np.asarray(left_padding, dtype=np.int64)
        if right_padding is not None and max(right_padding) > 0:
            if lengths is None:
                raise ValueError("[BatchRotatingKVCache.prepare] right_padding needs the prompts' lengths")
            self._remaining = np.asarray(lengths, dtype=np.int64)

    def finalize(self) -> None:
        """Ends a right-padded prompt (its padding was dropped as it was written)."""
        self._remaining = None

    @property
    def state(self) -> tuple:
        positions, offset = mx.array(self.positions, dtype=mx.int32), mx.array(self._offset, dtype=mx.int32)
        return self.keys, self.values, positions, offset, self.keep, self.max_size

    @state.setter
    def state(self, value: tuple) -> None:
        self.keys, self.values, positions, offset, self.keep, self.max_size = value
        self.positions = np.array(positions, dtype=np.int64)
        self._offset = np.array(offset, dtype=np.int64)
        self._remaining = None

    def size(self) -> int:
        """Entries per row in the buffer, padding included."""
        return self.positions.shape[1]

    def empty(self) -> bool:
        return self.keys is None

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else self.keys.nbytes + self.values.nbytes

    def is_trimmable(self) -> bool:
        """Trimmable while no row has dropped a position."""
        return bool((self._offset < self.max_size).all())

    def trim(self, n: int) -> int:
        """Drops the newest `n` positions of every row (at most the shortest row's length)."""
        if not self.is_trimmable():
            raise ValueError(
                "[BatchRotatingKVCache.trim] a row has dropped positions; the cache cannot be trimmed"
            )
        n = max(0, min(n, int(self._offset.min()) if self._offset.size else 0))
        self._offset = self._offset - n
        positions = self.positions
        self._store(self.keys, self.values, positions, (positions >= 0) & (positions < self._offset[:, None]))
        return n

    def filter(self, batch_indices: list[int] | mx.array) -> None:
        """Keeps only the rows `batch_indices` (in that order), dropping padding every row shares."""
        rows = np.array(batch_indices, dtype=np.int64).reshape(-1)
        keys = values = None
        if self.keys is not None:
            index = mx.array(rows, dtype=mx.int32)
            keys, values = self.keys[index], self.values[index]
        self._offset = self._offset[rows]
        if self._remaining is not None:
            self._remaining = self._remaining[rows]
        self.positions = self.positions[rows]
        self.keys, self.values = keys, values
        self._normalize()

    def extend(self, other: BatchRotatingKVCache) -> None:
        """Appends `other`'s rows, right-aligning both to the longer buffer."""
        theirs = (getattr(other, "max_size", None), getattr(other, "keep", None))
        if not isinstance(other, BatchRotatingKVCache) or theirs != (self.max_size, self.keep):
            raise ValueError(
                f"[BatchRotatingKVCache.extend] other must be a BatchRotatingKVCache with (max_size, keep) "
                f"{(self.max_size, self.keep)}, got {type(other).__name__} with {theirs}"
            )
        if self._remaining is not None or other._remaining is not None:
            raise ValueError("[BatchRotatingKVCache.extend] a cache is between prepare and finalize")
        self._normalize()
        other._normalize()
        width = max(self.size(), other.size())
        like = self if self.keys is not None else other

        def aligned(c: BatchRotatingKVCache, name: str) -> mx.array:
            part, template = getattr(c, name), getattr(like, name)
            if part is None:
                part = mx.zeros((c._offset.shape[0], template.shape[1], 0, template.shape[3]), template.dtype)
            return mx.pad(part, [(0, 0), (0, 0), (width - part.shape[2], 0), (0, 0)])

        if like.keys is not None:
            self.keys = mx.concatenate([aligned(self, "keys"), aligned(other, "keys")], axis=0)
            self.values = mx.concatenate([aligned(self, "values"), aligned(other, "values")], axis=0)
        self.positions = np.concatenate(
            [np.pad(c.positions, [(0, 0), (width - c.size(), 0)], constant_values=-1) for c in (self, other)]
        )
        self._offset = np.concatenate([self._offset, other._offset])

    def extract(self, idx: int) -> RotatingKVCache:
        """Row `idx` as a single-sequence `RotatingKVCache` (its padding removed)."""
        self._normalize()
        cache = RotatingKVCache(self.max_size, self.keep)
        held = int((self.positions[idx] >= 0).sum())
        cache.offset = max(int(self._offset[idx]), 0)
        if self.keys is not None and held:
            width = self.size()
            cache.keys = mx.contiguous(self.keys[idx : idx + 1, :, width - held :])
            cache.values = mx.contiguous(self.values[idx : idx + 1, :, width - held :])
        return cache

    @classmethod
    def merge(cls, caches: list[RotatingKVCache]) -> BatchRotatingKVCache:
        """Rotating caches of one `max_size` and `keep` as one batch, each left-padded to the longest."""
        kinds = {(getattr(c, "max_size", None), getattr(c, "keep", None)) for c in caches}
        if len(kinds) != 1 or not all(isinstance(c, RotatingKVCache) for c in caches):
            raise ValueError(
                "[RotatingKVCache.merge] caches must be RotatingKVCaches of one (max_size, keep), got "
                f"{[type(c).__name__ for c in caches]} with {sorted(kinds, key=str)}"
            )
        max_size, keep = kinds.pop()
        batch = cls(max_size, keep, [0] * len(caches))
        held = [0 if c.keys is None else c.keys.shape[2] for c in caches]
        width = max(held, default=0)
        batch._offset = np.array([c.offset for c in caches], dtype=np.int64)
        batch.positions = np.full((len(caches), width), -1, dtype=np.int64)
        for row, (c, n) in enumerate(zip(caches, held)):
            if n:
                batch.positions[row, width - n :] = np.array(c._retained_positions())
        filled = [c for c in caches if c.keys is not None]
        if filled:
            for name in ("keys", "values"):
                like = getattr(filled[0], name)
                rows = [
                    mx.zeros((1, like.shape[1], width, like.shape[3]), like.dtype)
                    if getattr(c, name) is None
                    else mx.pad(getattr(c, name), [(0, 0), (0, 0), (width - n, 0), (0, 0)])
                    for c, n in zip(caches, held)
                ]
                setattr(batch, name, mx.concatenate(rows, axis=0))
        return batch
