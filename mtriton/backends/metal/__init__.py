"""The Metal target: `dialect.py` (the lowering's table for Metal, with `prelude.metal.h`),
`backend.py` (the `metal` and `metal-emu` backends) and `source.py` (the full source MLX compiles)."""

from .backend import MetalBackend, MetalEmuBackend
from .dialect import METAL, PRELUDE
from .source import full_metal_source
