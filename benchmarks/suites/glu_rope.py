"""Suite `glu_rope`: the GLU gates, the fused SwiGLU projection and RoPE against MLX.

Each entry times the public function (validation, reshape, launch) as a user calls it, against
the plain-MLX composition it replaces (`nn.silu(g) * u`, `nn.gelu(g) * u`, two matmuls then the
gate) or MLX's fused built-in (`mx.fast.rope`). Inputs come from a fixed seed; references are
float64 NumPy on the same (rounded) inputs. GPU sizes are LLaMA-shaped (hidden 14336 or 11008,
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

from ..registry import Case, Sizes, benchmark

SEED = 0
SHORT_DTYPE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
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


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0) -> mx.array:
    return mx.array(rng.standard_normal(shape, dtype=np.float32) * scale).astype(getattr(mx, dtype))


def _host(array: mx.array) -> np.ndarray:
    """The float64 NumPy copy the reference computes on."""
    return np.array(array.astype(mx.float32), dtype=np.float64)


def _silu64(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-x))


def _gelu64(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(np.float64))


def _case(buffers: dict[str, mx.array], **fields: Any) -> Case:
    """A Case of a public function, with its inputs evaluated before timing."""
    mx.eval(list(buffers.values()))
    return Case(kernels=_API, buffers=buffers, **fields)


@benchmark(suite="glu_rope", name="swiglu", bound="memory", builtin="nn.silu(g) * u", sizes=GATE_SIZES)
def swiglu_entry(rows: int, cols: int, dtype: str = "float32") -> Case:
    """silu(gate) * up over a (tokens, hidden) pair of projections."""
    rng = np.random.default_rng(SEED)
    g, u = _randn(rng, (rows, cols), dtype, scale=2.0), _randn(rng, (rows, cols), dtype)
    g64, u64 = _host(g), _host(u)
    return _case(
        {"g": g, "u": u},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.swiglu(buf["g"], buf["u"]),
        builtin=lambda: nn.silu(g) * u,
        reference=lambda: _silu64(g64) * u64,
        bytes=3 * g.nbytes,
        flops=5 * g.size,  # exp, add, divide (the sigmoid), two multiplies
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
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
    rng = np.random.default_rng(SEED)
    g, u = _randn(rng, (rows, cols), dtype, scale=2.0), _randn(rng, (rows, cols), dtype)
    g64, u64 = _host(g), _host(u)
    gelu = nn.gelu if approximate == "none" else nn.gelu_approx
    return _case(
        {"g": g, "u": u},
        label=f"{rows}x{cols} {SHORT_DTYPE[dtype]}" + (" tanh" if approximate == "tanh" else ""),
        launch=lambda api, buf: api.geglu(buf["g"], buf["u"], approximate),
        builtin=lambda: gelu(g) * u,
        reference=lambda: _gelu64(g64, approximate) * u64,
        bytes=3 * g.nbytes,
        flops=(6 if approximate == "none" else 10) * g.size,  # erf counted as one operation
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
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
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (tokens, in_features), dtype)
    # Scaled so projections are O(1) whatever in_features, and the dtype's tolerance applies.
    wg = _randn(rng, (hidden, in_features), dtype, scale=in_features**-0.5)
    wu = _randn(rng, (hidden, in_features), dtype, scale=in_features**-0.5)
    x64, wg64, wu64 = _host(x), _host(wg), _host(wu)
    tol = TOLERANCE[dtype]
    return _case(
        {"x": x, "wg": wg, "wu": wu},
        label=f"{tokens}x{hidden}x{in_features} {SHORT_DTYPE[dtype]}",
        launch=lambda api, buf: api.fused_swiglu(buf["x"], buf["wg"], buf["wu"]),
        builtin=lambda: nn.silu(x @ wg.T) * (x @ wu.T),
        reference=lambda: _silu64(x64 @ wg64.T) * (x64 @ wu64.T),
        bytes=(tokens * in_features + 2 * hidden * in_features + tokens * hidden) * x.itemsize,
        flops=4 * tokens * hidden * in_features,  # two matmuls; the gate's FLOPs are negligible
        # Float32 sums of in_features products: rounding grows like sqrt(in_features).
        rtol=2 * tol,
        atol=max(tol, 1e-6 * math.sqrt(in_features)),
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
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (batch, heads, seq, head_dim), dtype)
    x64 = _host(x)
    base, half = 10000.0, dims // 2

    def reference() -> np.ndarray:
        theta = ((np.arange(seq) + offset)[:, None]) * base ** (-np.arange(half) / half)
        cos, sin = np.cos(theta), np.sin(theta)
        first = np.arange(0, dims, 2) if traditional else np.arange(half)
        second = first + 1 if traditional else first + half
        out = x64.copy()
        x1, x2 = x64[..., first], x64[..., second]
        out[..., first] = x1 * cos - x2 * sin
        out[..., second] = x1 * sin + x2 * cos
        return out

    tol = TOLERANCE[dtype]
    # Float32 angles are off by a few ulps of the largest angle, the last position.
    angle_atol = 4 * float(np.finfo(np.float32).eps) * (offset + seq) * float(np.abs(x64).max())
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
    )
