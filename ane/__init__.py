"""mlx_primitives.ane: Neural Engine offload through coremltools (not yet implemented)."""
