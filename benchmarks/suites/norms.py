"""Suite `norms`: the mlx_primitives normalization functions against MLX's fused built-ins.

Each entry times the public function (validation, reshape, launch) as a user calls it.
Inputs come from a fixed seed; references are float64 NumPy on the same (rounded) inputs, and
on GPUs the same formulas in float32 MLX ops on the device (float32 row means at 8192 columns
were off by at most 4% of the 1e-4 tolerance; matmuls of half-precision inputs multiply
exactly in float32 and TF32).
GPU sizes: 8192x8192 float32 rows for the norms (as the tutorials' layer norm), plus
bfloat16 and short rows; a float16 4096^3 projection and a 16-row decoding step for the
fused linear. CPU emulation gets small sizes.

The cases' `kernels` module is this one, through the public functions imported below:
they take `mx.array`s only, so the runner must not launch a Triton twin of them on PyTorch
tensors, and it makes none of a module that does not import mtriton the Triton way
(`norms.py` does, for its kernels).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.norms import fused_add_rmsnorm, fused_rmsnorm_linear, layernorm, rmsnorm

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, f32, host

EPS = 1e-5
ROW_REDUCTION = (
    "float32 row means: at 8192 columns the largest error measured 4% of the tolerance (with "
    "MLX's CPU sums; the GPU's sum in trees, more accurately)"
)
MATMUL_WHY = (
    "half-precision inputs multiply exactly in float32 (and TF32); the float32 normalised rows "
    "round like the kernel's half-precision ones, within the doubled tolerance"
)
# rtol/atol against the float64 reference; 1e-4 at least, as rows of 8192 sum in float32.
TOLERANCE = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}
ROW_SIZES = Sizes(
    smoke={"rows": 17, "cols": 1000},
    cpu=({"rows": 4096, "cols": 1024}, {"rows": 512, "cols": 4099}),
    gpu=(
        {"rows": 8192, "cols": 8192},
        {"rows": 8192, "cols": 8192, "dtype": "bfloat16"},
        {"rows": 32768, "cols": 1024},
    ),
)
# This module as the cases' `kernels` (see the module docstring); `launch` calls the public
# functions re-exported here.
_API = sys.modules[__name__]
__all__ = ["fused_add_rmsnorm", "fused_rmsnorm_linear", "layernorm", "rmsnorm"]


def _rmsnorm64(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + EPS) * w


def _rmsnorm32(x: mx.array, w: mx.array) -> mx.array:
    x, w = f32(x), f32(w)
    return x * mx.rsqrt(mx.mean(x * x, axis=1, keepdims=True) + EPS) * w


def _case(buffers: dict[str, mx.array], **fields: Any) -> Case:
    """A Case of a public function, with its inputs evaluated before timing."""
    return Case(kernels=_API, buffers=_inputs.evaluated(buffers), **fields)


def _torch_functional() -> ModuleType:
    import torch.nn.functional

    return torch.nn.functional


@benchmark(suite="norms", name="rmsnorm", bound="memory", builtin="mx.fast.rms_norm", sizes=ROW_SIZES)
def rmsnorm_entry(rows: int, cols: int, dtype: str = "float32") -> Case:
    """RMSNorm of each row, scaled by a weight."""
    inputs = _inputs.Inputs()
    x, w = inputs.normal((rows, cols), dtype), inputs.normal((cols,), dtype)
    return _case(
        {"x": x, "w": w},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.rmsnorm(buf["x"], buf["w"], EPS),
        builtin=lambda: mx.fast.rms_norm(x, w, EPS),
        reference=lambda: _rmsnorm64(host(x), host(w)),
        bytes=2 * x.nbytes + w.nbytes,
        flops=4 * x.size,  # square, sum, scale, weight
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: _torch_functional().rms_norm(t["x"], (cols,), t["w"], EPS),
        fast_reference=DeviceReference(lambda: _rmsnorm32(x, w), ROW_REDUCTION),
    )


@benchmark(suite="norms", name="layernorm", bound="memory", builtin="mx.fast.layer_norm", sizes=ROW_SIZES)
def layernorm_entry(rows: int, cols: int, dtype: str = "float32") -> Case:
    """LayerNorm of each row with weight and bias; rows have a nonzero mean."""
    inputs = _inputs.Inputs()
    x = inputs.normal((rows, cols), dtype, scale=2.0) + 0.5
    w, b = inputs.normal((cols,), dtype), inputs.normal((cols,), dtype)

    def reference() -> np.ndarray:
        x64 = host(x)
        centered = x64 - x64.mean(axis=1, keepdims=True)
        return centered / np.sqrt((centered**2).mean(axis=1, keepdims=True) + EPS) * host(w) + host(b)

    def reference32() -> mx.array:
        centered = f32(x) - mx.mean(f32(x), axis=1, keepdims=True)
        return centered * mx.rsqrt(mx.mean(centered * centered, axis=1, keepdims=True) + EPS) * f32(w) + f32(
            b
        )

    return _case(
        {"x": x, "w": w, "b": b},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.layernorm(buf["x"], buf["w"], buf["b"], EPS),
        builtin=lambda: mx.fast.layer_norm(x, w, b, EPS),
        reference=reference,
        bytes=2 * x.nbytes + w.nbytes + b.nbytes,
        flops=8 * x.size,  # mean: 1, variance: 3, normalize and affine: 4
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: _torch_functional().layer_norm(t["x"], (cols,), t["w"], t["b"], EPS),
        fast_reference=DeviceReference(reference32, ROW_REDUCTION + " (two passes: mean, centred squares)"),
    )


@benchmark(
    suite="norms",
    name="fused_add_rmsnorm",
    bound="memory",
    builtin="x + r; mx.fast.rms_norm",
    sizes=ROW_SIZES,
)
def fused_add_rmsnorm_entry(rows: int, cols: int, dtype: str = "float32") -> Case:
    """Residual add then RMSNorm: returns the normalized sum and the sum."""
    inputs = _inputs.Inputs()
    x, r, w = (
        inputs.normal((rows, cols), dtype),
        inputs.normal((rows, cols), dtype),
        inputs.normal((cols,), dtype),
    )
    # The sum rounded to the dtype, as the function returns it and then normalizes it.
    h = x + r
    mx.eval(h)

    def reference() -> tuple[np.ndarray, np.ndarray]:
        h64 = host(h)
        return _rmsnorm64(h64, host(w)), h64

    def builtin() -> tuple[mx.array, mx.array]:
        h = x + r
        return mx.fast.rms_norm(h, w, EPS), h

    def torch_op(t: dict[str, Any]) -> Any:
        h = t["x"] + t["r"]
        return _torch_functional().rms_norm(h, (cols,), t["w"], EPS), h

    return _case(
        {"x": x, "r": r, "w": w},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.fused_add_rmsnorm(buf["x"], buf["r"], buf["w"], EPS),
        builtin=builtin,
        reference=reference,
        bytes=4 * x.nbytes + w.nbytes,  # read x and r, write the sum and the normalized sum
        flops=5 * x.size,  # add, square, sum, scale, weight
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=torch_op,
        fast_reference=DeviceReference(lambda: (_rmsnorm32(h, w), f32(h)), ROW_REDUCTION),
    )


@benchmark(
    suite="norms",
    name="fused_rmsnorm_linear",
    bound="compute",
    builtin="mx.fast.rms_norm(x) @ w.T",
    sizes=Sizes(
        smoke={"m": 33, "k": 1000, "n": 75},
        cpu=({"m": 256, "k": 1024, "n": 256}, {"m": 16, "k": 4096, "n": 1024}),
        gpu=(
            {"m": 4096, "k": 4096, "n": 4096, "dtype": "float16"},
            {"m": 16, "k": 4096, "n": 4096, "dtype": "float16"},  # a decoding step
        ),
    ),
)
def fused_rmsnorm_linear_entry(m: int, k: int, n: int, dtype: str = "float32") -> Case:
    """RMSNorm of x's rows fused into the projection x @ W.T that follows it (no bias)."""
    inputs = _inputs.Inputs()
    x, norm_w = inputs.normal((m, k), dtype), inputs.normal((k,), dtype)
    # Scaled so outputs are O(1) whatever k, and the dtype's tolerance applies.
    linear_w = inputs.normal((n, k), dtype, scale=k**-0.5)
    tol = TOLERANCE[dtype]
    return _case(
        {"x": x, "norm_w": norm_w, "linear_w": linear_w},
        label=f"{m}x{n}x{k} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.fused_rmsnorm_linear(buf["x"], buf["norm_w"], buf["linear_w"], None, EPS),
        builtin=lambda: mx.fast.rms_norm(x, norm_w, EPS) @ linear_w.T,
        reference=lambda: _rmsnorm64(host(x), host(norm_w)) @ host(linear_w).T,
        bytes=(m * k + n * k + m * n + k) * x.itemsize,
        flops=2 * m * n * k,  # the normalization's few FLOPs per element of x are negligible
        # Half precision rounds the scaled x before the dot, as the unfused pair does.
        rtol=2 * tol,
        atol=2 * tol,
        torch=lambda t: _torch_functional().linear(
            _torch_functional().rms_norm(t["x"], (k,), t["norm_w"], EPS), t["linear_w"]
        ),
        fast_reference=DeviceReference(lambda: _rmsnorm32(x, norm_w) @ f32(linear_w).T, MATMUL_WHY),
    )
