"""Suite `glu_rope`: the GLU gates, the fused SwiGLU projection and RoPE against MLX.

Each entry times the public function (validation, reshape, launch) as a user calls it, against
the plain-MLX composition it replaces (`nn.silu(g) * u`, `nn.gelu(g) * u`, two matmuls then the
gate) or MLX's fused built-in (`mx.fast.rope`). Inputs come from a fixed seed; references are
float64 NumPy on the same (rounded) inputs, and on GPUs the same formulas in float32 MLX ops on
the device (the geglu's float64 reference calls Python's erf per element: ~10 s at GPU sizes).
GPU sizes are LLaMA-shaped (hidden 14336 or 11008,
head_dim 128); CPU emulation gets small ones.

The cases' `kernels` module is this one, holding the public functions `launch` calls: they take
`mx.array`s, so there is no Triton twin for the runner to launch on PyTorch tensors.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_primitives.glu import fused_swiglu, geglu, swiglu
from mlx_primitives.rotary import rope

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, f32, host

ELEMENTWISE_WHY = "a few float32 roundings per element (~1e-7 relative), far below the tolerance"
MATMUL_WHY = (
    "half-precision inputs multiply exactly in float32 (and TF32); float32 sums of in_features "
    "products round ~sqrt(in_features) * 6e-8 relative, far below the tolerance"
)
ROPE_WHY = (
    "angles, cosines and sines in float64 on the host (seq x dims/2 values), rounded once to "
    "float32; the rotation in float32 rounds ~1e-7 relative, under the tolerance"
)
# rtol/atol of a kernel in this dtype against a float64 reference (as tests/conftest.py).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
GATE_SIZES = Sizes(
    smoke={"rows": 7, "cols": 1031},
    cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4099}),
    gpu=({"rows": 8192, "cols": 14336, "dtype": "bfloat16"}, {"rows": 8192, "cols": 14336}),
)
# This module, holding the public functions `launch` calls (see the module docstring).
_API = sys.modules[__name__]
__all__ = ["fused_swiglu", "geglu", "rope", "swiglu"]
# Exact float64 erf: NumPy has none, so the geglu reference calls Python's per element (its
# NumPy time is that loop's, not a vectorized op's).
_erf = np.frompyfunc(math.erf, 1, 1)


def _silu64(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-x))


def _gelu64(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(np.float64))


def _silu32(x: mx.array) -> mx.array:
    return x / (1 + mx.exp(-x))


def _gelu32(x: mx.array, approximate: str) -> mx.array:
    if approximate == "tanh":
        return 0.5 * x * (1 + mx.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + mx.erf(x / math.sqrt(2)))


def _case(buffers: dict[str, mx.array], **fields: Any) -> Case:
    """A Case of a public function, with its inputs evaluated before timing."""
    return Case(kernels=_API, buffers=_inputs.evaluated(buffers), **fields)


@benchmark(suite="glu_rope", name="swiglu", bound="memory", builtin="nn.silu(g) * u", sizes=GATE_SIZES)
def swiglu_entry(rows: int, cols: int, dtype: str = "float32") -> Case:
    """silu(gate) * up over a (tokens, hidden) pair of projections."""
    inputs = _inputs.Inputs()
    g, u = inputs.normal((rows, cols), dtype, scale=2.0), inputs.normal((rows, cols), dtype)
    return _case(
        {"g": g, "u": u},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.swiglu(buf["g"], buf["u"]),
        builtin=lambda: nn.silu(g) * u,
        reference=lambda: _silu64(host(g)) * host(u),
        bytes=3 * g.nbytes,
        flops=5 * g.size,  # exp, add, divide (the sigmoid), two multiplies
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(lambda: _silu32(f32(g)) * f32(u), ELEMENTWISE_WHY),
    )


@benchmark(
    suite="glu_rope",
    name="geglu",
    bound="memory",
    builtin="nn.gelu(g) * u",
    sizes=Sizes(
        smoke={"rows": 7, "cols": 1031},
        cpu=({"rows": 4096, "cols": 1024}, {"rows": 4096, "cols": 1024, "approximate": "tanh"}),
        gpu=(
            {"rows": 8192, "cols": 4096, "dtype": "bfloat16"},
            {"rows": 8192, "cols": 4096, "dtype": "bfloat16", "approximate": "tanh"},
        ),
    ),
)
def geglu_entry(rows: int, cols: int, dtype: str = "float32", approximate: str = "none") -> Case:
    """gelu(gate) * up, exact (erf) or with the tanh approximation."""
    inputs = _inputs.Inputs()
    g, u = inputs.normal((rows, cols), dtype, scale=2.0), inputs.normal((rows, cols), dtype)
    gelu = nn.gelu if approximate == "none" else nn.gelu_approx
    return _case(
        {"g": g, "u": u},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}" + (" tanh" if approximate == "tanh" else ""),
        launch=lambda api, buf: api.geglu(buf["g"], buf["u"], approximate),
        builtin=lambda: gelu(g) * u,
        reference=lambda: _gelu64(host(g), approximate) * host(u),
        bytes=3 * g.nbytes,
        flops=(6 if approximate == "none" else 10) * g.size,  # erf counted as one operation
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(
            lambda: _gelu32(f32(g), approximate) * f32(u), ELEMENTWISE_WHY + " (MLX's float32 erf)"
        ),
    )


@benchmark(
    suite="glu_rope",
    name="fused_swiglu",
    bound="compute",
    builtin="nn.silu(x @ wg.T) * (x @ wu.T)",
    sizes=Sizes(
        smoke={"tokens": 37, "in_features": 70, "hidden": 50},
        cpu=(
            {"tokens": 256, "in_features": 512, "hidden": 512},
            {"tokens": 16, "in_features": 1024, "hidden": 2048},
        ),
        gpu=(
            {"tokens": 4096, "in_features": 4096, "hidden": 11008, "dtype": "float16"},
            {"tokens": 16, "in_features": 4096, "hidden": 11008, "dtype": "float16"},  # a decoding step
        ),
    ),
)
def fused_swiglu_entry(tokens: int, in_features: int, hidden: int, dtype: str = "float32") -> Case:
    """Both input projections of a SwiGLU MLP and the gate, with no projection stored."""
    inputs = _inputs.Inputs()
    x = inputs.normal((tokens, in_features), dtype)
    # Scaled so projections are O(1) whatever in_features, and the dtype's tolerance applies.
    wg = inputs.normal((hidden, in_features), dtype, scale=in_features**-0.5)
    wu = inputs.normal((hidden, in_features), dtype, scale=in_features**-0.5)
    tol = TOLERANCE[dtype]
    return _case(
        {"x": x, "wg": wg, "wu": wu},
        label=f"{tokens}x{hidden}x{in_features} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.fused_swiglu(buf["x"], buf["wg"], buf["wu"]),
        builtin=lambda: nn.silu(x @ wg.T) * (x @ wu.T),
        reference=lambda: _silu64(host(x) @ host(wg).T) * (host(x) @ host(wu).T),
        bytes=(tokens * in_features + 2 * hidden * in_features + tokens * hidden) * x.itemsize,
        flops=4 * tokens * hidden * in_features,  # two matmuls; the gate's FLOPs are negligible
        # Float32 sums of in_features products: rounding grows like sqrt(in_features).
        rtol=2 * tol,
        atol=max(tol, 1e-6 * math.sqrt(in_features)),
        fast_reference=DeviceReference(
            lambda: _silu32(f32(x) @ f32(wg).T) * (f32(x) @ f32(wu).T), MATMUL_WHY
        ),
    )


@benchmark(
    suite="glu_rope",
    name="rope",
    bound="memory",
    builtin="mx.fast.rope",
    sizes=Sizes(
        smoke={"batch": 2, "heads": 3, "seq": 37, "head_dim": 40, "dims": 24, "offset": 5},
        cpu=(
            {"batch": 1, "heads": 8, "seq": 1024, "head_dim": 128},
            {"batch": 1, "heads": 8, "seq": 1024, "head_dim": 128, "traditional": True},
        ),
        gpu=(
            {"batch": 4, "heads": 32, "seq": 4096, "head_dim": 128, "dtype": "float16"},
            {"batch": 4, "heads": 32, "seq": 4096, "head_dim": 128, "dtype": "float16", "traditional": True},
            {"batch": 32, "heads": 32, "seq": 1, "head_dim": 128, "offset": 4095, "dtype": "float16"},
        ),
    ),
)
def rope_entry(
    batch: int,
    heads: int,
    seq: int,
    head_dim: int,
    dims: int | None = None,
    offset: int = 0,
    traditional: bool = False,
    dtype: str = "float32",
) -> Case:
    """Rotary encoding of (batch, heads, seq, head_dim) queries; `dims` rotated (all by default)."""
    dims = head_dim if dims is None else dims
    x = _inputs.Inputs().normal((batch, heads, seq, head_dim), dtype)
    base, half = 10000.0, dims // 2
    theta = ((np.arange(seq) + offset)[:, None]) * base ** (-np.arange(half) / half)
    first = np.arange(0, dims, 2) if traditional else np.arange(half)
    second = first + 1 if traditional else first + half

    def reference() -> np.ndarray:
        cos, sin = np.cos(theta), np.sin(theta)
        x64 = host(x)
        out = x64.copy()
        x1, x2 = x64[..., first], x64[..., second]
        out[..., first] = x1 * cos - x2 * sin
        out[..., second] = x1 * sin + x2 * cos
        return out

    def reference32() -> mx.array:
        cos, sin = (mx.array(np.cos(theta).astype(np.float32)), mx.array(np.sin(theta).astype(np.float32)))
        x32 = f32(x)
        x1, x2 = (mx.take(x32, mx.array(index.astype(np.int32)), axis=-1) for index in (first, second))
        # columns in the order first, second, unrotated; then put back in place
        stacked = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x32[..., dims:]], axis=-1)
        order = np.concatenate([first, second, np.arange(dims, head_dim)])
        return mx.take(stacked, mx.array(np.argsort(order).astype(np.int32)), axis=-1)

    tol = TOLERANCE[dtype]
    # Float32 angles are off by a few ulps of the largest angle, the last position.
    angle_atol = 4 * float(np.finfo(np.float32).eps) * (offset + seq) * mx.max(mx.abs(f32(x))).item()
    return _case(
        {"x": x},
        label=f"B{batch} H{heads} L{seq} D{head_dim} {SHORT_DTYPE[dtype]}"
        + (f" dims {dims}" if dims != head_dim else "")
        + (" trad" if traditional else ""),
        launch=lambda api, buf: api.rope(buf["x"], dims, traditional, base, 1.0, offset),
        builtin=lambda: mx.fast.rope(x, dims, traditional=traditional, base=base, scale=1.0, offset=offset),
        reference=reference,
        bytes=2 * x.nbytes,
        flops=9 * (x.size // head_dim) * half,  # per pair: angle, cos, sin, four multiplies, two adds
        rtol=tol,
        atol=tol + angle_atol,
        fast_reference=DeviceReference(reference32, ROPE_WHY),
    )
