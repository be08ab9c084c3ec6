"""mlx_primitives: building blocks for MLX, every kernel written in mtriton.

`mlx_primitives.kernels` holds the fused transformer blocks (norms, GLUs, RoPE, quantized
linears); gather and scatter-add live here at the top level.
"""

from .gather_scatter import selective_gather, selective_scatter_add

__version__ = "0.1.0"

__all__ = ["selective_gather", "selective_scatter_add"]
