"""mlx_primitives: building blocks for MLX, every kernel written in mtriton."""

__version__ = "0.1.0"
