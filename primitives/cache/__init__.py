"""KV caches for generation with mlx-lm models, and the paged cache a serving engine builds on.

Every cache follows mlx-lm's cache protocol, so a stock `mlx_lm.models.*` model runs on it
unchanged (`generate_step(..., prompt_cache=make_cache(model, kind))`):

- `KVCache`: every position, contiguous. `QuantizedKVCache(group_size, bits)`: the same in
  `mx.quantize` format (mlx-lm's quantized attention reads it).
  `RotatingKVCache(max_size, keep)`: a sliding window with `keep` attention sinks.
- `BatchKVCache` / `BatchQuantizedKVCache` / `BatchRotatingKVCache`: what the single-sequence
  caches `merge` into, with the `filter`/`extend`/`extract` hooks of mlx-lm's `BatchGenerator`.
- `PagedKVCache` over a `BlockPool`: blocks with reference counts, copy-on-write, prefix
  caching by chained block hashes, eviction policies (`LRU`, `FIFO`, `SlidingWindow`,
  `SinksWindow`), a memory limit and `PoolStats`. See `paged.py`.

`save_prompt_cache` / `load_prompt_cache` write and read mlx-lm's safetensors format; loading
resolves this package's class names (mlx-lm's own loader knows only its classes).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from .contiguous import (
    BatchKVCache,
    BatchQuantizedKVCache,
    BatchRotatingKVCache,
    KVCache,
    QuantizedKVCache,
    RotatingKVCache,
)
from .paged import (
    DEFAULT_BLOCK_SIZE,
    FIFO,
    FROM_STATE_SPARE_BLOCKS,
    LRU,
    BlockPool,
    EvictionPolicy,
    PagedDecodeBatch,
    PagedDecodeLayer,
    PagedKVCache,
    PagedSequence,
    PoolExhausted,
    PoolStats,
    SinksWindow,
    SlidingWindow,
    attention_modules,
    block_tables,
    paged_attention_dispatch,
)

KINDS = ("kv", "rotating", "quantized", "paged")
_CLASSES = {
    cls.__name__: cls
    for cls in (
        KVCache,
        QuantizedKVCache,
        RotatingKVCache,
        BatchKVCache,
        BatchQuantizedKVCache,
        BatchRotatingKVCache,
        PagedKVCache,
    )
}

__all__ = [
    "FIFO",
    "LRU",
    "BatchKVCache",
    "BatchQuantizedKVCache",
    "BatchRotatingKVCache",
    "BlockPool",
    "EvictionPolicy",
    "KVCache",
    "PagedDecodeBatch",
    "PagedDecodeLayer",
    "PagedKVCache",
    "PagedSequence",
    "PoolExhausted",
    "PoolStats",
    "QuantizedKVCache",
    "RotatingKVCache",
    "SinksWindow",
    "SlidingWindow",
    "attention_modules",
    "block_tables",
    "load_prompt_cache",
    "make_cache",
    "model_kv_shape",
    "paged_attention_dispatch",
    "save_prompt_cache",
]


def model_kv_shape(model: nn.Module) -> tuple[int, int, int, mx.Dtype]:
    """(layers, kv_heads, head_dim, dtype) of an mlx-lm model, from its `args` and weights."""
    args = getattr(model, "args", None)
    if args is None or not hasattr(model, "layers"):
        raise TypeError(
            f"[make_cache] model has type {type(model).__name__}; expected an mlx-lm model with args and layers"
        )
    heads = args.num_attention_heads
    kv_heads = getattr(args, "num_key_value_heads", None) or heads
    head_dim = getattr(args, "head_dim", None) or args.hidden_size // heads
    dtype = next(v for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)).dtype
    return len(model.layers), kv_heads, head_dim, dtype


def make_cache(model: nn.Module, kind: str = "kv", **options: Any) -> list[Any]:
    """The per-layer cache list `mlx_lm.generate_step(..., prompt_cache=...)` takes.

    Args:
        model: An mlx-lm model (`model.layers`, `model.args`).
        kind: "kv", "rotating" (options `max_size`, `keep`), "quantized" (`group_size`, `bits`)
            or "paged" (`pool`: a `BlockPool` to share, else one is made from `block_size`,
            `num_blocks` or `memory_limit`, `eviction`, `dtype`). The paged layers of one call
            share one block table and one pool.

    Returns:
        One cache per layer.
    """
    if kind not in KINDS:
        raise ValueError(f"[make_cache] kind is {kind!r}; expected one of {', '.join(KINDS)}")
    layers = len(model.layers)
    if kind == "kv":
        return [KVCache() for _ in range(layers)]
    if kind == "rotating":
        return [RotatingKVCache(options.get("max_size", 4096), options.get("keep", 4)) for _ in range(layers)]
    if kind == "quantized":
        return [
            QuantizedKVCache(options.get("group_size", 64), options.get("bits", 8)) for _ in range(layers)
        ]
    pool = options.pop("pool", None)
    if pool is None:
        n_layers, kv_heads, head_dim, dtype = model_kv_shape(model)
        pool = BlockPool(
            n_layers, kv_heads, head_dim, options.pop("dtype", dtype),
            block_size=options.pop("block_size", DEFAULT_BLOCK_SIZE), num_blocks=options.pop("num_blocks", None),
            memory_limit=options.pop("memory_limit", None), eviction=options.pop("eviction", None),
        )  # fmt: skip
    if options:
        raise TypeError(f"[make_cache] unexpected options for kind {kind!r}: {', '.join(options)}")
    if pool.num_layers != layers:
        raise ValueError(
            f"[make_cache] pool has {pool.num_layers} layers; expected {layers} to match the model"
        )
    return pool.new_sequence()


def save_prompt_cache(file_name: str, cache: list[Any], metadata: dict[str, str] | None = None) -> None:
    """Saves each layer's `state` in mlx-lm's prompt-cache format (safetensors)."""
    scalars: list[Any] = [""]  # a leaf, so tree_flatten keeps the list

    def encode(path: str, value: Any) -> tuple[str, mx.array]:
        if isinstance(value, mx.array):
            return path, value
        if isinstance(value, (bool, int, float)):
            scalars.append((path, "scalar"))
            return path, mx.array(value)
        if value is None:
            scalars.append((path, "none"))
            return path, mx.array([])
        raise ValueError(
            f"[save_prompt_cache] a cache state holds {type(value).__name__}; expected arrays and scalars"
        )

    arrays = dict(encode(path, value) for path, value in tree_flatten([c.state for c in cache]))
    meta = dict(tree_flatten([metadata or {}, [type(c).__name__ for c in cache], scalars]))
    mx.save_safetensors(file_name, arrays, meta)


def load_prompt_cache(
    file_name: str, return_metadata: bool = False, *, pool: BlockPool | None = None
) -> list[Any] | tuple[list[Any], dict[str, str]]:
    """Loads a cache `save_prompt_cache` (this package's or mlx-lm's) wrote.

    Paged layers load into one new sequence of `pool` (given, or one with room for the saved
    tokens plus spare blocks to keep generating).
    """
    arrays, meta = mx.load(file_name, return_metadata=True)
    metadata, classes, scalars = tree_unflatten(list(meta.items()))
    for path, kind in scalars[1:]:
        arrays[path] = arrays[path].item() if kind == "scalar" else None
    states = tree_unflatten(list(arrays.items()))
    unknown = [c for c in classes if c not in _CLASSES]
    if unknown:
        raise ValueError(
            f"[load_prompt_cache] {file_name} holds caches {', '.join(unknown)}; known: {', '.join(_CLASSES)}"
        )
    paged = [i for i, c in enumerate(classes) if c == "PagedKVCache"]
    cache = [None if c == "PagedKVCache" else _CLASSES[c].from_state(s) for c, s in zip(classes, states)]
    if paged:
        keys = states[paged[0]][0]
        if pool is None:
            need = max(-(-states[i][2] // DEFAULT_BLOCK_SIZE) for i in paged)
            pool = BlockPool(
                len(paged), keys.shape[1], keys.shape[3], keys.dtype,
                num_blocks=need + FROM_STATE_SPARE_BLOCKS,
            )  # fmt: skip
        for i, layer in zip(paged, pool.new_sequence()):
            keys, values, offset = states[i]
            layer.load(keys[:, :, :offset], values[:, :, :offset])
            cache[i] = layer
    return (cache, metadata) if return_metadata else cache
