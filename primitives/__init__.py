"""mlx_primitives: building blocks for MLX, every kernel written in mtriton.

One family, one module: `attention` (a package: forward, backward, spec), `norms`, `glu`,
`rotary`, `quantize`, `gather_scatter`, `scan`, `ssm`, `moe` (a package), and the utilities
`training`, `hardware`, `memory`; `cache` (KV caches, paged pools) and `generation` (samplers, a
scheduler and a continuous-batching engine) are packages. Each holds its
kernels, its public functions, its `nn.Module` layers and its `*_reference` functions in plain
MLX ops; every public name is exported here. `mlx_primitives.kernels` re-exports the transformer
blocks under their earlier import path.
"""

from . import cache, distributed, generation
from .attention import (
    ChunkedCrossAttention,
    FlashAttention,
    SlidingWindowAttention,
    attention_reference,
    chunked_cross_attention,
    flash_attention,
    scaled_dot_product_attention,
    sliding_window_attention,
)
from .attention.paged import paged_attention, paged_attention_reference, write_kv_slots
from .attention.quantized_kv import quantized_kv_attention, quantized_kv_attention_reference
from .cache import (
    BlockPool,
    KVCache,
    PagedKVCache,
    QuantizedKVCache,
    RotatingKVCache,
    block_tables,
    make_cache,
)
from .distributed import (
    AllToShardedLinear,
    ExpertParallelMoELayer,
    RingAttention,
    ShardedToAllLinear,
    ring_attention,
    shard_linear,
)
from .gather_scatter import (
    selective_gather,
    selective_gather_reference,
    selective_scatter_add,
    selective_scatter_add_reference,
)
from .generation import GenerationEngine, SamplingParams
from .glu import (
    GeGLU,
    SwiGLU,
    fused_geglu,
    fused_geglu_reference,
    fused_swiglu,
    fused_swiglu_reference,
    geglu,
    geglu_reference,
    swiglu,
    swiglu_reference,
)
from .hardware import ChipFamily, ChipInfo, ChipTier, DeviceInfo, device_info, get_chip_info
from .memory import (
    MemoryEstimate,
    MemoryReport,
    estimate_memory,
    memory_limits,
    memory_report,
    stream_safetensors,
)
from .moe import (
    ExpertDispatch,
    QuantizedSwitchLinear,
    SparseMoELayer,
    SwitchGLU,
    SwitchLinear,
    build_expert_dispatch,
    compute_load_balancing_loss,
    grouped_matmul,
    grouped_matmul_reference,
    router_z_loss,
    sparse_moe_reference,
    switch_glu_reference,
    topk_router,
)
from .norms import (
    LayerNorm,
    RMSNorm,
    fused_add_rmsnorm,
    fused_add_rmsnorm_reference,
    fused_rmsnorm_linear,
    fused_rmsnorm_linear_reference,
    layernorm,
    layernorm_reference,
    rmsnorm,
    rmsnorm_reference,
)
from .quantize import (
    QuantizedLinear,
    dequantize_int4,
    dequantize_int4_reference,
    dequantize_int8,
    dequantize_int8_reference,
    int4_linear,
    int4_linear_reference,
    int8_linear,
    int8_linear_reference,
    mlx_quantized_linear,
    quantize_int4,
    quantize_int4_reference,
    quantize_int8,
    quantize_int8_reference,
)
from .rotary import RoPE, rope, rope_reference
from .scan import associative_scan, associative_scan_reference
from .ssm import MambaBlock, selective_scan, selective_scan_reference
from .training import checkpoint, checkpoint_sequential, checkpointable

__version__ = "0.1.0"

__all__ = [
    "ChunkedCrossAttention", "FlashAttention", "SlidingWindowAttention", "attention_reference",
    "chunked_cross_attention", "flash_attention", "scaled_dot_product_attention",
    "sliding_window_attention",
    "GeGLU", "LayerNorm", "QuantizedLinear", "RMSNorm", "RoPE", "SwiGLU",
    "dequantize_int4", "dequantize_int4_reference", "dequantize_int8", "dequantize_int8_reference",
    "fused_add_rmsnorm", "fused_add_rmsnorm_reference", "fused_geglu", "fused_geglu_reference",
    "fused_rmsnorm_linear", "fused_rmsnorm_linear_reference", "fused_swiglu", "fused_swiglu_reference",
    "geglu", "geglu_reference", "int4_linear", "int4_linear_reference", "int8_linear",
    "int8_linear_reference", "layernorm", "layernorm_reference", "mlx_quantized_linear",
    "quantize_int4", "quantize_int4_reference", "quantize_int8", "quantize_int8_reference",
    "rmsnorm", "rmsnorm_reference", "rope", "rope_reference", "selective_gather",
    "selective_gather_reference", "selective_scatter_add", "selective_scatter_add_reference",
    "swiglu", "swiglu_reference",
    "MambaBlock", "selective_scan", "selective_scan_reference",
    "ExpertDispatch", "QuantizedSwitchLinear", "SparseMoELayer", "SwitchGLU", "SwitchLinear",
    "build_expert_dispatch", "compute_load_balancing_loss", "grouped_matmul", "grouped_matmul_reference",
    "router_z_loss", "sparse_moe_reference", "switch_glu_reference", "topk_router",
    "ChipFamily", "ChipInfo", "ChipTier", "DeviceInfo", "device_info", "get_chip_info",
    "MemoryEstimate", "MemoryReport", "estimate_memory", "memory_limits", "memory_report",
    "stream_safetensors", "checkpoint", "checkpoint_sequential", "checkpointable",
    "cache", "generation", "BlockPool", "KVCache", "PagedKVCache", "QuantizedKVCache", "RotatingKVCache",
    "block_tables", "make_cache", "paged_attention", "paged_attention_reference", "write_kv_slots",
    "quantized_kv_attention", "quantized_kv_attention_reference", "GenerationEngine", "SamplingParams",
    "associative_scan", "associative_scan_reference",
    "distributed", "AllToShardedLinear", "ExpertParallelMoELayer", "RingAttention", "ShardedToAllLinear",
    "ring_attention", "shard_linear",
]  # fmt: skip
