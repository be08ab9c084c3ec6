"""mlx_primitives.ane: Neural Engine offload of MLX blocks through Core ML ML Programs.

- `export(module, seq_len=...)`: an MLX module (Linear, RMSNorm, LayerNorm, SwiGLU, mlx-lm's
  llama Attention and TransformerBlock) to a Core ML ML Program built with coremltools' MIL
  builder, in the ANE's (B, C, 1, S) layout, fp16, static or enumerated sequence lengths.
- `check(model)`: a static checker of what keeps a program off the Neural Engine (dynamic
  shapes, float32 compute, scatter and dynamic gathers, dimensions over 16384, -inf masks).
- `run_program(model, inputs)`: a NumPy interpreter of the exported MIL ops, the oracle that
  validates exports where Core ML cannot run (Linux).
- `ANEModule(model)`: the exported model as an MLX-in, MLX-out module that predicts on
  `CPU_AND_NE` (macOS only), with `compare` and `benchmark` against the MLX module.

coremltools is an optional extra (`pip install "mlx-primitives[ane]"`): this package imports
without it, and each function that needs it raises an ImportError saying how to install it.
See docs/ane.md.
"""

from ._deps import INSTALL_HINT, require_coremltools
from .checker import ANECompatibilityError, ANECompatibilityWarning, Finding, check
from .export import LAYOUTS, MASK_VALUE, export
from .mil_interpreter import UnsupportedMILOp, run_program
from .milspec import load_program
from .runtime import ANEModule, CoreMLRuntimeUnavailable
