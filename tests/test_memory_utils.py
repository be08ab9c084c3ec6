"""mlx_primitives.memory: limits, report, safetensors streaming, memory estimates."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx_primitives.memory import estimate_memory, memory_limits, memory_report, stream_safetensors

LLAMA3_8B = {
    "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256, "torch_dtype": "bfloat16",
}  # fmt: skip


def test_limits_are_applied_and_restored(cpu_stream: None) -> None:
    before = mx.get_memory_limit()
    with memory_limits(memory=1 << 30, cache=0):
        assert mx.get_memory_limit() == 1 << 30
        mx.eval(mx.ones((1 << 18,)) + 1)  # its buffers are freed at once
        assert mx.get_cache_memory() == 0, "a cache limit of 0 keeps no freed buffer"
        inside_cache = mx.set_cache_limit(0)
        assert inside_cache == 0
    assert mx.get_memory_limit() == before
    restored_cache = mx.set_cache_limit(123)
    mx.set_cache_limit(restored_cache)
    assert restored_cache != 0
    mx.clear_cache()


def test_limits_restored_after_an_exception() -> None:
    before = mx.get_memory_limit()
    with pytest.raises(RuntimeError, match="inside"), memory_limits(memory=1 << 29):
        raise RuntimeError("inside")
    assert mx.get_memory_limit() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": -1}, r"\[memory_limits\] memory must be a non-negative int of bytes .*, got -1"),
        ({"cache": 1.5}, r"\[memory_limits\] cache must be a non-negative int of bytes .*, got 1.5"),
        ({"wired": True}, r"\[memory_limits\] wired must be"),
    ],
)
def test_bad_limits(kwargs: dict, message: str) -> None:
    before = mx.get_memory_limit()
    with pytest.raises(ValueError, match=message), memory_limits(**kwargs):
        pass
    assert mx.get_memory_limit() == before


@pytest.mark.skipif(mx.metal.is_available(), reason="Metal sets a wired limit")
def test_wired_limit_without_metal_is_refused() -> None:
    with (
        pytest.raises(ValueError, match=r"\[memory_limits\] wired applies to Metal GPUs"),
        memory_limits(wired=1),
    ):
        pass


def test_memory_report(cpu_stream: None) -> None:
    keep = mx.ones((1 << 16,))
    mx.eval(keep)
    report = memory_report()
    assert report.active >= keep.nbytes and report.peak >= report.active
    assert report.limit == mx.get_memory_limit()
    assert str(report).startswith("MLX memory: active ")


def _write_model(path: Path, layers: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    weights = {f"model.layers.{i}.mlp.{p}.weight": rng.standard_normal((256, 256)).astype(np.float32)
               for i in range(layers) for p in ("up", "down")}  # fmt: skip
    weights["model.embed_tokens.weight"] = rng.standard_normal((64, 256)).astype(np.float32)
    mx.save_safetensors(str(path), {k: mx.array(v) for k, v in weights.items()})
    return weights


def test_streaming_peak_is_one_layer(cpu_stream: None, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    expected = _write_model(path)
    total = os.path.getsize(path)
    mx.synchronize()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    seen = []
    for layer, weights in stream_safetensors(path):
        seen.append(layer)
        for name, w in weights.items():
            np.testing.assert_array_equal(np.array(w), expected[name])
        del weights, w
    peak = mx.get_peak_memory() - base
    assert seen == [*range(8), None]
    # one layer is 1/8.1 of the file; two in memory at once would still pass, the model would not
    assert peak < 0.3 * total, f"streaming peaked at {peak} bytes for a {total}-byte file"
    mx.clear_cache()


def test_streaming_shards_and_bad_paths(tmp_path: Path) -> None:
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    mx.save_safetensors(str(first), {"model.layers.1.w": mx.ones((2,)), "lm_head.weight": mx.zeros((3,))})
    mx.save_safetensors(str(second), {"model.layers.0.w": mx.full((2,), 2.0)})
    got = [(layer, sorted(w)) for layer, w in stream_safetensors([first, second])]
    assert got == [(0, ["model.layers.0.w"]), (1, ["model.layers.1.w"]), (None, ["lm_head.weight"])]
    with pytest.raises(FileNotFoundError, match=r"\[stream_safetensors\] no file"):
        next(stream_safetensors(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"expected .safetensors files, got '.*model.npz'"):
        next(stream_safetensors(tmp_path / "model.npz"))
    with pytest.raises(ValueError, match="needs a group"):
        next(stream_safetensors(first, layer_pattern=r"layers\.\d+"))
    with pytest.raises(ValueError, match="at least one"):
        next(stream_safetensors([]))


def test_estimate_llama3_8b() -> None:
    est = estimate_memory(LLAMA3_8B, batch=1, context=8192)
    # Llama 3 8B has 8.03e9 parameters, and 128 KiB of bfloat16 keys and values per token
    assert abs(est.weights / 2 - 8.03e9) < 0.01e9
    assert est.kv_cache == 8192 * 128 * 1024
    assert estimate_memory(LLAMA3_8B, 4, 8192, kv_dtype="int8").kv_cache == 4 * 8192 * 64 * 1024
    per_token = 2 * 4096 + 4096 + 2 * 1024 + 4096 + 3 * 14336 + 4096  # hidden, norm, qkv, attn, MLP, out
    assert est.activations == 8192 * per_token * 2
    assert est.training_activations == 32 * est.activations
    assert est.checkpointed_activations < est.training_activations / 4
    assert estimate_memory(LLAMA3_8B, 1, 8192, dtype=mx.float32).weights == 2 * est.weights
    assert est.inference == est.weights + est.kv_cache + est.activations


@pytest.mark.parametrize(
    ("config", "batch", "context", "dtype", "message"),
    [
        (
            {k: v for k, v in LLAMA3_8B.items() if k != "hidden_size"},
            1,
            8,
            None,
            "config hidden_size must be a positive int, got nothing",
        ),
        (
            {**LLAMA3_8B, "num_key_value_heads": 0},
            1,
            8,
            None,
            "config num_key_value_heads must be a positive int, got 0",
        ),
        (LLAMA3_8B, 0, 8, None, "batch must be a positive int, got 0"),
        (LLAMA3_8B, 1, 8, "float64", "dtype must be one of"),
        ([1], 1, 8, None, "config must be a dict"),
    ],
)
def test_estimate_bad_input(config, batch, context, dtype, message) -> None:
    with pytest.raises((ValueError, TypeError), match=r"\[estimate_memory\] " + message):
        estimate_memory(config, batch, context, dtype=dtype)
