"""mlx_primitives.kernels: the fused transformer blocks under the import path of earlier releases.

The families now live at the top of the package (`mlx_primitives.norms`, `.glu`, `.quantize`,
`.rotary`) and `mlx_primitives` exports every name; this module re-exports the functions and
modules it always held, so `from mlx_primitives.kernels import RMSNorm` keeps working.
"""

from .glu import GeGLU, SwiGLU, fused_geglu, fused_swiglu, geglu, swiglu
from .norms import LayerNorm, RMSNorm, fused_add_rmsnorm, fused_rmsnorm_linear, layernorm, rmsnorm
from .quantize import (
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    int4_linear,
    int8_linear,
    mlx_quantized_linear,
    quantize_int4,
    quantize_int8,
)
from .rotary import RoPE, rope

__all__ = [
    "GeGLU", "LayerNorm", "QuantizedLinear", "RMSNorm", "RoPE", "SwiGLU", "dequantize_int4",
    "dequantize_int8", "fused_add_rmsnorm", "fused_geglu", "fused_rmsnorm_linear", "fused_swiglu",
    "geglu", "int4_linear", "int8_linear", "layernorm", "mlx_quantized_linear", "quantize_int4",
    "quantize_int8", "rmsnorm", "rope", "swiglu",
]  # fmt: skip
