"""mlx_primitives.kernels: fused transformer building blocks written in mtriton."""
