"""mlx_primitives.kernels: fused transformer building blocks written in mtriton.

Each family lives in one file (kernels, public functions, plain-MLX references);
the functions and modules are re-exported here.
"""

from .glu import GeGLU, SwiGLU, fused_geglu, fused_swiglu, geglu, swiglu
from .norms import LayerNorm, RMSNorm, fused_add_rmsnorm, fused_rmsnorm_linear, layernorm, rmsnorm
from .rope import RoPE, rope

__all__ = [
    "GeGLU", "LayerNorm", "RMSNorm", "RoPE", "SwiGLU", "fused_add_rmsnorm", "fused_geglu",
    "fused_rmsnorm_linear", "fused_swiglu", "geglu", "layernorm", "rmsnorm", "rope", "swiglu",
]  # fmt: skip
