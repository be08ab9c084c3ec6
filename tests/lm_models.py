"""Tiny random mlx-lm models the cache and engine tests build locally: a Llama with GQA 4/2 and
a Qwen3 with GQA 4/1, both 2 layers of width 64 over a 101-token vocabulary."""

from __future__ import annotations

import pytest

# mlx-lm is the optional `lm` extra (the GPU machine has none): the test modules that import
# these models skip as a whole where it, or the transformers package its generate needs, is absent.
pytest.importorskip("mlx_lm.generate", reason="mlx-lm (the `lm` extra) is not installed")

import mlx.core as mx  # noqa: E402
from mlx_lm.models import llama, qwen3  # noqa: E402

VOCAB = 101


def skip_where_mlx_cannot_quantize(kind: str) -> None:
    """Skips a quantized-cache case on MLX's CUDA build, which has no `quantized_matmul` for
    these float32 models (H200, MLX 0.32.4: "No implementation for problem shape: 7x7x32x4,
    transpose: true, activation: float32, bits: 8, group size: 32"; mlx-lm's own
    QuantizedKVCache fails the same way there)."""
    if kind == "quantized" and mx.default_device() == mx.gpu and mx.cuda.is_available():
        pytest.skip("MLX's CUDA quantized_matmul has no float32 kernel at these sizes")


def tiny_llama() -> llama.Model:
    args = llama.ModelArgs(
        model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-5, vocab_size=VOCAB, tie_word_embeddings=False,
    )  # fmt: skip
    return llama.Model(args)


def tiny_qwen3() -> qwen3.Model:
    args = qwen3.ModelArgs(
        model_type="qwen3", hidden_size=64, num_hidden_layers=2, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-5, vocab_size=VOCAB, max_position_embeddings=512,
        rope_theta=10000.0, tie_word_embeddings=True,
    )  # fmt: skip
    return qwen3.Model(args)


MODELS = {"llama": tiny_llama, "qwen3": tiny_qwen3}
