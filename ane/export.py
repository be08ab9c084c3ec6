"""Exports MLX modules and blocks to Core ML ML Programs with coremltools' MIL builder.

Every block is written once, in the channels-first (B, C, 1, S) layout of Apple's ANE guidance
(ml-ane-transformers): the channel axis is axis 1, the sequence is the last axis, so a linear
layer is a 1x1 convolution and per-channel reductions run over axis 1. `layout="BSC"` keeps
MLX's (B, S, C) arrays at the model's boundary and transposes inside the program instead.

Numerics follow what keeps fp16 safe on the Neural Engine:
- norms divide by the largest magnitude along the channels before squaring, so `x * x` cannot
  overflow fp16 (|x| > 256 would) and the mean of squares stays in [0, 1];
- the causal mask adds `MASK_VALUE` (-1e4), never -inf: -inf turns a fully masked row into NaN
  and the ANE compiler refuses it; -1e4 underflows to exactly 0 after the softmax's exp;
- queries are scaled before the QK^T product so the scores stay small.

Supported modules (weights taken from the module, bf16 converted through float16):
`mlx.nn.Linear`, `mlx.nn.RMSNorm`, `mlx.nn.LayerNorm`, mlx_primitives' `RMSNorm`, `LayerNorm`
and `SwiGLU`, and mlx-lm's llama `MLP`, `Attention` (causal self-attention with `nn.RoPE`,
GQA allowed) and `TransformerBlock` (pre-norm: RMSNorm, attention, RMSNorm, SwiGLU MLP, two
residuals), the block of Llama, Mistral and Qwen2-style checkpoints loaded by mlx-lm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import glu, norms
from ._deps import require_coremltools

LAYOUTS = ("BC1S", "BSC")
PRECISIONS = ("float16", "float32")
MASK_VALUE = -1e4
INPUT_NAME = "x"
OUTPUT_NAME = "y"
# Keys of the Core ML model's user-defined metadata that ANEModule reads back.
META_LAYOUT = "mlx_primitives.layout"
META_BLOCK = "mlx_primitives.block"
META_SEQ_LENS = "mlx_primitives.seq_lens"


def _llama_classes() -> tuple[type, ...]:
    """mlx-lm's llama (Attention, MLP, TransformerBlock), or empty when mlx-lm is absent."""
    try:
        from mlx_lm.models import llama
    except ImportError:
        return ()
    return llama.Attention, llama.MLP, llama.TransformerBlock


# --------------------------------------------------------------------------- weights


def to_numpy_weight(fn: str, name: str, a: mx.array) -> np.ndarray:
    """An MLX weight as float32 NumPy; bfloat16 goes through float16, the precision it runs at."""
    if a.dtype == mx.bfloat16:
        a = a.astype(mx.float16)
        if not bool(mx.all(mx.isfinite(a)).item()):
            raise ValueError(f"[{fn}] {name} has bfloat16 values beyond float16's range (65504)")
    if a.dtype not in (mx.float16, mx.float32):
        raise ValueError(f"[{fn}] {name} must be float32, float16 or bfloat16, got {a.dtype}")
    return np.array(a.astype(mx.float32))


# --------------------------------------------------------------------------- the graph


class _Graph:
    """MIL pieces of the blocks, on (B, C, 1, S) tensors.

    Args:
        mb: coremltools' MIL Builder.
        fn: The public function name used in errors.
        batch: The fixed batch size B.
        max_seq: The longest sequence the program accepts (tables and masks are this long).
        static: Whether the sequence length is fixed (no runtime slicing of tables).
        dtype: The program's float type: every constant is built in it, so an fp16 program has
            fp16 inputs, weights and outputs and no casts.
    """

    def __init__(self, mb: Any, fn: str, batch: int, max_seq: int, static: bool, dtype: type) -> None:
        self.mb, self.fn, self.batch, self.max_seq, self.static = mb, fn, batch, max_seq, static
        self.dtype = dtype

    def _const(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float64).astype(self.dtype)

    def _weight(self, name: str, a: mx.array) -> np.ndarray:
        return self._const(to_numpy_weight(self.fn, name, a))

    def _seq_slice(self, table: np.ndarray, x: Any) -> Any:
        """`table[..., :S]` (and `[..., :S, :S]` for a square one) for x's sequence length S."""
        mb = self.mb
        if self.static:
            return table
        seq = mb.slice_by_index(x=mb.shape(x=x), begin=[3], end=[4])
        lead = np.array(table.shape[: table.ndim - (2 if table.shape[-2] == self.max_seq else 1)], np.int32)
        tail = [seq, seq] if table.shape[-2] == self.max_seq else [seq]
        size = mb.concat(values=[lead, *tail], axis=0)
        return mb.slice_by_size(x=table, begin=np.zeros(table.ndim, np.int32), size=size)

    def linear(self, x: Any, layer: nn.Linear, name: str) -> Any:
        if not isinstance(layer, nn.Linear) or isinstance(layer, nn.QuantizedLinear):
            raise TypeError(f"[{self.fn}] {name} must be an mlx.nn.Linear, got {type(layer).__name__}")
        weight = self._weight(f"{name}.weight", layer.weight)
        kwargs = {"bias": self._weight(f"{name}.bias", layer.bias)} if "bias" in layer else {}
        return self.mb.conv(x=x, weight=weight[:, :, None, None], name=name, **kwargs)

    def _scaled_rms(self, z: Any, eps: float) -> Any:
        """z / sqrt(mean(z^2) + eps) over the channels, computed on z / max|z| so fp16 cannot overflow."""
        mb = self.mb
        root_eps = math.sqrt(eps)
        # The floor keeps (root_eps / m)^2 <= 128^2, finite in fp16, when a column is all zeros.
        m = mb.maximum(
            x=mb.reduce_max(x=mb.abs(x=z), axes=[1], keep_dims=True), y=self._const(root_eps / 128)
        )
        zs = mb.real_div(x=z, y=m)
        mean_sq = mb.reduce_mean(x=mb.mul(x=zs, y=zs), axes=[1], keep_dims=True)
        t = mb.real_div(x=self._const(root_eps), y=m)
        return mb.mul(x=zs, y=mb.rsqrt(x=mb.add(x=mean_sq, y=mb.mul(x=t, y=t))))

    def _affine(self, y: Any, weight: mx.array | None, bias: mx.array | None, name: str) -> Any:
        if weight is not None:
            y = self.mb.mul(x=y, y=self._weight(f"{name}.weight", weight)[None, :, None, None])
        if bias is not None:
            y = self.mb.add(x=y, y=self._weight(f"{name}.bias", bias)[None, :, None, None])
        return y

    def rmsnorm(self, x: Any, norm: nn.Module, name: str) -> Any:
        return self._affine(self._scaled_rms(x, norm.eps), norm.weight, None, name)

    def layernorm(self, x: Any, norm: nn.Module, name: str) -> Any:
        centered = self.mb.sub(x=x, y=self.mb.reduce_mean(x=x, axes=[1], keep_dims=True))
        return self._affine(self._scaled_rms(centered, norm.eps), norm.get("weight"), norm.get("bias"), name)

    def swiglu(self, x: Any, mlp: nn.Module, name: str) -> Any:
        gate = self.linear(x, mlp.gate_proj, f"{name}_gate_proj")
        up = self.linear(x, mlp.up_proj, f"{name}_up_proj")
        return self.linear(self.mb.mul(x=self.mb.silu(x=gate), y=up), mlp.down_proj, f"{name}_down_proj")

    def _rope_tables(self, rope: nn.Module, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """cos and signed-sin tables of shape (1, 1, D, max_seq) for `x * cos + swap(x) * sin`."""
        if type(rope) is not nn.RoPE:
            raise TypeError(f"[{self.fn}] rope must be an mlx.nn.RoPE, got {type(rope).__name__}")
        if rope.traditional or rope.dims != head_dim:
            raise ValueError(
                f"[{self.fn}] rope must rotate halves of the whole head (traditional=False, dims={head_dim}), "
                f"got traditional={rope.traditional}, dims={rope.dims}"
            )
        half = head_dim // 2
        freqs = rope.base ** (-np.arange(half, dtype=np.float64) * 2 / head_dim)
        theta = np.arange(self.max_seq, dtype=np.float64)[None, :] * rope.scale * freqs[:, None]
        cos = np.concatenate([np.cos(theta), np.cos(theta)])
        sin = np.concatenate([-np.sin(theta), np.sin(theta)])
        return self._const(cos[None, None]), self._const(sin[None, None])

    def _rope(self, x: Any, cos: Any, sin: Any, heads: int, head_dim: int) -> Any:
        mb, half = self.mb, head_dim // 2
        end_mask = [True, True, False, True]
        lo = mb.slice_by_index(x=x, begin=[0, 0, 0, 0], end=[0, 0, half, 0], end_mask=end_mask)
        hi = mb.slice_by_index(x=x, begin=[0, 0, half, 0], end=[0, 0, head_dim, 0], end_mask=end_mask)
        swapped = mb.concat(values=[hi, lo], axis=2)
        return mb.add(x=mb.mul(x=x, y=cos), y=mb.mul(x=swapped, y=sin))

    def _repeat_heads(self, t: Any, kv_heads: int, repeats: int, head_dim: int) -> Any:
        """(B, Hkv, D, S) -> (B, Hkv * repeats, D, S), head h reading kv head h // repeats (GQA)."""
        mb, b = self.mb, self.batch
        flat = mb.reshape(x=t, shape=[b, kv_heads, 1, -1])
        tiled = mb.tile(x=flat, reps=[1, 1, repeats, 1])
        return mb.reshape(x=tiled, shape=[b, kv_heads * repeats, head_dim, -1])

    def attention(self, x: Any, attn: nn.Module, name: str) -> Any:
        mb, b = self.mb, self.batch
        heads, kv_heads, head_dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
        q = mb.reshape(x=self.linear(x, attn.q_proj, f"{name}_q_proj"), shape=[b, heads, head_dim, -1])
        k = mb.reshape(x=self.linear(x, attn.k_proj, f"{name}_k_proj"), shape=[b, kv_heads, head_dim, -1])
        v = mb.reshape(x=self.linear(x, attn.v_proj, f"{name}_v_proj"), shape=[b, kv_heads, head_dim, -1])
        cos_table, sin_table = self._rope_tables(attn.rope, head_dim)
        cos, sin = self._seq_slice(cos_table, x), self._seq_slice(sin_table, x)
        q = mb.mul(x=self._rope(q, cos, sin, heads, head_dim), y=self._const(attn.scale))
        k = self._rope(k, cos, sin, kv_heads, head_dim)
        if kv_heads != heads:
            k = self._repeat_heads(k, kv_heads, heads // kv_heads, head_dim)
            v = self._repeat_heads(v, kv_heads, heads // kv_heads, head_dim)
        scores = mb.matmul(x=q, y=k, transpose_x=True)  # (B, H, S, S): queries on rows
        causal = self._const(np.triu(np.full((self.max_seq, self.max_seq), MASK_VALUE), k=1)[None, None])
        probs = mb.softmax(x=mb.add(x=scores, y=self._seq_slice(causal, x)), axis=-1)
        out = mb.matmul(x=v, y=probs, transpose_y=True)  # (B, H, D, S)
        return self.linear(
            mb.reshape(x=out, shape=[b, heads * head_dim, 1, -1]), attn.o_proj, f"{name}_o_proj"
        )

    def block(self, x: Any, blk: nn.Module, name: str) -> Any:
        h = self.mb.add(
            x=x, y=self.attention(self.rmsnorm(x, blk.input_layernorm, "ln1"), blk.self_attn, "attn")
        )
        mlp_out = self.swiglu(self.rmsnorm(h, blk.post_attention_layernorm, "ln2"), blk.mlp, "mlp")
        return self.mb.add(x=h, y=mlp_out)


# --------------------------------------------------------------------------- dispatch


def _block_kind(module: nn.Module) -> tuple[str, int, Callable[[_Graph, Any, nn.Module], Any]]:
    """(kind, channels, graph builder) for a supported module; raises TypeError otherwise."""
    llama = _llama_classes()
    if llama and isinstance(module, llama[2]):
        return "transformer_block", module.hidden_size, lambda g, x, m: g.block(x, m, "block")
    if llama and isinstance(module, llama[0]):
        return "attention", module.q_proj.weight.shape[1], lambda g, x, m: g.attention(x, m, "attn")
    if isinstance(module, (glu.SwiGLU, *llama[1:2])):
        return "swiglu", module.gate_proj.weight.shape[1], lambda g, x, m: g.swiglu(x, m, "mlp")
    if isinstance(module, (nn.RMSNorm, norms.RMSNorm)):
        return "rmsnorm", module.weight.shape[0], lambda g, x, m: g.rmsnorm(x, m, "norm")
    if isinstance(module, (nn.LayerNorm, norms.LayerNorm)):
        return "layernorm", module.dims, lambda g, x, m: g.layernorm(x, m, "norm")
    if isinstance(module, nn.Linear) and not isinstance(module, nn.QuantizedLinear):
        return "linear", module.weight.shape[1], lambda g, x, m: g.linear(x, m, "linear")
    raise TypeError(
        "[export] module must be an mlx.nn.Linear, RMSNorm or LayerNorm, mlx_primitives' RMSNorm, LayerNorm "
        f"or SwiGLU, or mlx-lm's llama MLP, Attention or TransformerBlock, got {type(module).__name__}"
    )


def _seq_lens(seq_len: int | Sequence[int]) -> tuple[int, ...]:
    lens = (seq_len,) if isinstance(seq_len, int) else tuple(seq_len)
    if not lens or not all(isinstance(s, int) and s >= 1 for s in lens):
        raise ValueError(
            f"[export] seq_len must be a positive int or a non-empty sequence of them, got {seq_len!r}"
        )
    return tuple(sorted(set(lens)))


def _target(ct: Any, deployment_target: Any) -> Any:
    if isinstance(deployment_target, str):
        target = getattr(ct.target, deployment_target, None)
        if target is None:
            raise ValueError(
                f"[export] deployment_target must name a coremltools target, got {deployment_target!r}"
            )
        deployment_target = target
    if deployment_target < ct.target.iOS16:
        raise ValueError(
            "[export] deployment_target must be iOS16/macOS13 or later (fp16 inputs and outputs), "
            f"got {deployment_target.name}"
        )
    return deployment_target


def export(
    module: nn.Module,
    *,
    seq_len: int | Sequence[int],
    batch: int = 1,
    layout: str = "BC1S",
    compute_precision: str = "float16",
    deployment_target: Any = "iOS16",
) -> Any:
    """Exports an MLX module to a Core ML ML Program whose weights are the module's.

    Args:
        module: A supported module (see the module docstring); its weights are read now.
        seq_len: The sequence length S, or several of them: a static shape for one, Core ML
            `EnumeratedShapes` for several (the ANE compiles each; tables and masks are sized
            for the longest and sliced at run time).
        batch: The fixed batch size B.
        layout: "BC1S": input and output are (B, C, 1, S), the ANE layout; "BSC": they are
            MLX's (B, S, C) and the program transposes at its edges.
        compute_precision: "float16" (the ANE's precision; inputs and outputs are fp16 too) or
            "float32" (runs on CPU/GPU only; the checker flags it).
        deployment_target: A `coremltools.target` or its name, iOS16/macOS13 or later.

    Returns:
        A `coremltools.models.MLModel` (not loaded: call `.save(path)`), with metadata naming
        its layout, block kind and sequence lengths for `ANEModule`.
    """
    ct = require_coremltools("export")
    mb = ct.converters.mil.Builder
    kind, channels, build = _block_kind(module)
    lens = _seq_lens(seq_len)
    if layout not in LAYOUTS:
        raise ValueError(f"[export] layout must be one of {LAYOUTS}, got {layout!r}")
    if compute_precision not in PRECISIONS:
        raise ValueError(f"[export] compute_precision must be one of {PRECISIONS}, got {compute_precision!r}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"[export] batch must be a positive int, got {batch!r}")
    target = _target(ct, deployment_target)

    def shape_of(s: Any) -> tuple[Any, ...]:
        return (batch, channels, 1, s) if layout == "BC1S" else (batch, s, channels)

    seq = lens[0] if len(lens) == 1 else ct.converters.mil.mil.get_new_symbol()
    io_dtype = np.float16 if compute_precision == "float16" else np.float32
    graph = _Graph(mb, "export", batch, lens[-1], static=len(lens) == 1, dtype=io_dtype)
    types = ct.converters.mil.mil.types
    spec = mb.TensorSpec(shape=shape_of(seq), dtype=types.fp16 if io_dtype is np.float16 else types.fp32)

    @mb.program(input_specs=[spec], opset_version=target)
    def program(x: Any) -> Any:
        if layout == "BSC":
            x = mb.expand_dims(x=mb.transpose(x=x, perm=[0, 2, 1]), axes=[2])
        y = build(graph, x, module)
        if layout == "BSC":
            return mb.transpose(x=mb.squeeze(x=y, axes=[2]), perm=[0, 2, 1], name=OUTPUT_NAME)
        return mb.identity(x=y, name=OUTPUT_NAME)

    shape = ct.EnumeratedShapes(shapes=[shape_of(s) for s in lens]) if len(lens) > 1 else shape_of(lens[0])
    program.functions["main"].set_input_types((ct.TensorType(name=INPUT_NAME, shape=shape, dtype=io_dtype),))
    program.functions["main"].set_output_types([ct.TensorType(name=OUTPUT_NAME, dtype=io_dtype)])
    precision = ct.precision.FLOAT16 if compute_precision == "float16" else ct.precision.FLOAT32
    pipeline = ct.PassPipeline.DEFAULT
    # coremltools 9.0's fusion of a norm's `* weight + bias` into batch_norm builds fp32 mean and
    # variance constants for an fp16 x, a program its own type check then refuses.
    pipeline.remove_passes(["common::fuse_elementwise_to_batchnorm"])
    model = ct.convert(
        program,
        convert_to="mlprogram",
        compute_precision=precision,
        minimum_deployment_target=target,
        compute_units=ct.ComputeUnit.CPU_AND_NE,
        pass_pipeline=pipeline,
        skip_model_load=True,
    )
    model.user_defined_metadata[META_LAYOUT] = layout
    model.user_defined_metadata[META_BLOCK] = kind
    model.user_defined_metadata[META_SEQ_LENS] = ",".join(map(str, lens))
    model.short_description = f"mlx_primitives.ane {kind}, layout {layout}, sequence lengths {lens}"
    return model
