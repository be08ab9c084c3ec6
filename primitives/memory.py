"""mlx_primitives.memory: MLX's memory limits as a context, a memory report, weights streamed
from safetensors files layer by layer, and a model's KV-cache and activation estimate.

(`mtriton.empty` and friends, the arrays kernels fill, are mtriton's `memory` module: a
different subject.)
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

_MB = 1 << 20


def _check_bytes(fn: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"[{fn}] {name} must be a non-negative int of bytes (or None: unchanged), got {value!r}"
        )
    return value


@contextlib.contextmanager
def memory_limits(
    memory: int | None = None, cache: int | None = None, wired: int | None = None
) -> Iterator[None]:
    """Sets MLX's memory limits for the block and restores the previous ones after it.

    Args:
        memory: `mx.set_memory_limit`: the allocation size past which MLX waits for
            scheduled work to free memory before allocating more (not a hard cap).
        cache: `mx.set_cache_limit`: bytes of freed buffers MLX keeps for reuse (0: none).
        wired: `mx.set_wired_limit`: bytes the Metal allocator keeps wired (resident);
            macOS with a Metal GPU only.

    Each is in bytes; None leaves that limit unchanged.
    """
    memory = _check_bytes("memory_limits", "memory", memory)
    cache = _check_bytes("memory_limits", "cache", cache)
    wired = _check_bytes("memory_limits", "wired", wired)
    if wired is not None and not mx.metal.is_available():
        raise ValueError(
            f"[memory_limits] wired applies to Metal GPUs (macOS) only; this MLX has none, got {wired}"
        )
    restore = []
    try:
        if memory is not None:
            restore.append((mx.set_memory_limit, mx.set_memory_limit(memory)))
        if cache is not None:
            restore.append((mx.set_cache_limit, mx.set_cache_limit(cache)))
        if wired is not None:
            restore.append((mx.set_wired_limit, mx.set_wired_limit(wired)))
        yield
    finally:
        for setter, previous in reversed(restore):
            setter(previous)


@dataclass(frozen=True)
class MemoryReport:
    """MLX's allocator at one moment, in bytes.

    Attributes:
        active: Bytes held by live arrays.
        peak: The most `active` has been since the start or `mx.reset_peak_memory()`.
        cache: Freed bytes kept for reuse.
        limit: The memory limit (`mx.set_memory_limit`).
    """

    active: int
    peak: int
    cache: int
    limit: int

    def __str__(self) -> str:
        parts = [
            f"{name} {getattr(self, name) / _MB:.1f} MiB" for name in ("active", "peak", "cache", "limit")
        ]
        return "MLX memory: " + ", ".join(parts)


def memory_report() -> MemoryReport:
    """MLX's active, peak and cached memory and its memory limit now."""
    return MemoryReport(
        mx.get_active_memory(), mx.get_peak_memory(), mx.get_cache_memory(), mx.get_memory_limit()
    )


# --------------------------------------------------------------------------- streaming weights

LAYER_PATTERN = r"layers\.(\d+)\."  # mlx-lm's and Hugging Face's `model.layers.<i>.` names


def stream_safetensors(
    paths: str | os.PathLike[str] | list[str | os.PathLike[str]], layer_pattern: str = LAYER_PATTERN
) -> Iterator[tuple[int | None, dict[str, mx.array]]]:
    """The weights of safetensors files, one layer at a time, read as each is yielded.

    `mx.load` of a safetensors file is lazy: nothing is read until an array is evaluated.
    Each group is evaluated when it is yielded and dropped from here once the loop moves on,
    so memory holds one layer (and what the caller keeps), not the model.

    Args:
        paths: A `.safetensors` file or several (the shards of one model).
        layer_pattern: A regular expression whose first group is the layer index in a weight's
            name.

    Yields:
        (layer index, {name: array}) in increasing layer order, after them
        (None, {name: array}) for the weights of no layer (embeddings, final norm), if any.
    """
    files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not files:
        raise ValueError("[stream_safetensors] paths must name at least one .safetensors file, got none")
    pattern = re.compile(layer_pattern)
    if pattern.groups < 1:
        raise ValueError(
            f"[stream_safetensors] layer_pattern needs a group for the layer index, got {layer_pattern!r}"
        )
    lazy: dict[str, mx.array] = {}
    for path in files:
        if not str(path).endswith(".safetensors"):
            raise ValueError(f"[stream_safetensors] expected .safetensors files, got {str(path)!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"[stream_safetensors] no file {str(path)!r}")
        lazy.update(mx.load(str(path)))  # type: ignore[arg-type]
    groups: dict[int | None, list[str]] = {}
    for name in lazy:
        match = pattern.search(name)
        groups.setdefault(int(match.group(1)) if match else None, []).append(name)
    order = sorted(k for k in groups if k is not None) + ([None] if None in groups else [])
    for layer in order:
        weights = {name: lazy.pop(name) for name in sorted(groups.pop(layer))}
        mx.eval(weights)
        yield layer, weights
        del weights


# --------------------------------------------------------------------------- estimates

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    """What a model needs for a batch of sequences, in bytes.

    Attributes:
        weights: The parameters (embeddings, attention and MLP projections, norms).
        kv_cache: Keys and values of every layer for every position.
        activations: The largest forward working set of one layer (inference: layers run one
            after another, so this is the activation peak, with attention scores never stored).
        training_activations: The activations every layer keeps for the backward pass.
        checkpointed_activations: The same with each layer checkpointed: every layer's input,
            plus one layer's activations rebuilt at a time.
    """

    weights: int
    kv_cache: int
    activations: int
    training_activations: int
    checkpointed_activations: int

    @property
    def inference(self) -> int:
        return self.weights + self.kv_cache + self.activations

    def __str__(self) -> str:
        fields = ("weights", "kv_cache", "activations", "training_activations", "checkpointed_activations")
        return ", ".join(f"{name} {getattr(self, name) / _MB:.1f} MiB" for name in fields)


def _config_int(config: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"[estimate_memory] config {name} must be a positive int, got "
            f"{'nothing' if name not in config and default is None else repr(value)}"
        )
    return value


def _dtype_bytes(dtype: Any) -> int:
    name = str(dtype).removeprefix("mlx.core.").removeprefix("torch.")
    if name not in _DTYPE_BYTES:
        raise ValueError(f"[estimate_memory] dtype must be one of {', '.join(_DTYPE_BYTES)}, got {dtype!r}")
    return _DTYPE_BYTES[name]


def estimate_memory(
    config: Mapping[str, Any], batch: int, context: int, dtype: Any = None, kv_dtype: Any = None
) -> MemoryEstimate:
    """Estimates a decoder's memory from an mlx-lm (Hugging Face) style `config.json` dict.

    Counts, per layer: q, k, v and o projections, a gated MLP (gate, up, down) and two norms;
    then embeddings (twice unless `tie_word_embeddings`). Activations per token of one layer:
    the hidden state, its norm, q, k and v, the attention output, the MLP's gate, up, their
    product and its output; flash attention keeps no score matrix. Mixture-of-experts and
    state-space layers are not counted.

    Args:
        config: Needs `num_hidden_layers`, `hidden_size`, `num_attention_heads`,
            `intermediate_size`, `vocab_size`; reads `num_key_value_heads` (default: the
            attention heads), `head_dim` (default hidden_size // heads), `torch_dtype`.
        batch: Sequences.
        context: Positions per sequence (prompt and generated).
        dtype: Of weights and activations: float32, float16, bfloat16 (an `mx.Dtype` or its
            name; default: the config's `torch_dtype`, else float16).
        kv_dtype: Of the KV cache (default: `dtype`); int8 for a quantized cache.

    Returns:
        A `MemoryEstimate`.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"[estimate_memory] config must be a dict (config.json), got {type(config).__name__}")
    for name, value in (("batch", batch), ("context", context)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"[estimate_memory] {name} must be a positive int, got {value!r}")
    layers = _config_int(config, "num_hidden_layers")
    hidden = _config_int(config, "hidden_size")
    heads = _config_int(config, "num_attention_heads")
    kv_heads = _config_int(config, "num_key_value_heads", heads)
    head_dim = _config_int(config, "head_dim", hidden // heads)
    inter = _config_int(config, "intermediate_size")
    vocab = _config_int(config, "vocab_size")
    size = _dtype_bytes(dtype if dtype is not None else config.get("torch_dtype", "float16"))
    kv_size = _dtype_bytes(kv_dtype) if kv_dtype is not None else size

    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    per_layer = hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    weights = (layers * per_layer + embeddings + hidden) * size

    tokens = batch * context
    kv_cache = 2 * layers * tokens * kv_dim * kv_size
    per_token = 2 * hidden + q_dim + 2 * kv_dim + q_dim + 3 * inter + hidden
    activations = tokens * per_token * size
    return MemoryEstimate(
        weights=weights,
        kv_cache=kv_cache,
        activations=activations,
        training_activations=layers * activations,
        checkpointed_activations=layers * tokens * hidden * size + activations,
    )
