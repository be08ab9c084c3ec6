"""The lowering shared by the C-like GPU languages (Metal, CUDA)."""
