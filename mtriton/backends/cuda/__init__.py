"""The CUDA target: `dialect.py` (the lowering's table for CUDA, with `prelude.cuh`),
`backend.py` (the `cuda` and `cuda-emu` backends) and `source.py` (the full source MLX compiles)."""

from .backend import CudaBackend, CudaEmuBackend
from .dialect import CUDA, PRELUDE
from .source import full_cuda_source
