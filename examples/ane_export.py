"""Exports a Llama transformer block to a Core ML ML Program for the Neural Engine, and checks it.

    pip install ".[ane]"   # coremltools (and mlx-lm for the block)
    python examples/ane_export.py [out.mlpackage]

Runs on Linux: the saved program is reloaded and executed by mlx_primitives' NumPy MIL
interpreter (fp16 at every op) and compared with the MLX block. On a Mac, `ANEModule` runs the
same package through Core ML on CPU_AND_NE (see docs/ane.md).
"""

import os
import sys
import tempfile

import mlx.core as mx
import mlx_primitives.ane as ane
import numpy as np
from mlx_lm.models import llama


def main() -> None:
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=1,
        intermediate_size=176,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=32,
    )
    mx.random.seed(0)
    block = llama.TransformerBlock(args)

    # Two context lengths, as Core ML EnumeratedShapes; the ANE's (B, C, 1, S) layout.
    model = ane.export(block, seq_len=(16, 32), layout="BC1S")
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "block.mlpackage")
    model.save(path)
    findings = ane.check(path)  # raises on anything that keeps the program off the ANE

    x = mx.random.normal((1, 32, args.hidden_size)).astype(mx.float16)
    ref = np.array(block(x.astype(mx.float32), mask="causal"))
    x_bc1s = np.array(x).transpose(0, 2, 1)[:, :, None, :]  # (B, S, C) -> (B, C, 1, S)
    y = ane.run_program(path, {"x": x_bc1s})["y"][:, :, 0, :].transpose(0, 2, 1)
    err = float(np.abs(y.astype(np.float32) - ref).max())
    assert err < 4e-3 * max(1.0, float(np.abs(ref).max())), f"max abs error {err}"
    print(f"saved {path}; checker findings: {len(findings)}; max abs error vs MLX {err:.2e}")
    if sys.platform == "darwin":
        module = ane.ANEModule(path)
        print("Core ML on CPU_AND_NE:", module.compare(block, x, mask="causal"))
        print("timing:", module.benchmark(block, x, mask="causal"))
    print("OK")


if __name__ == "__main__":
    main()
