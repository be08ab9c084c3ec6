"""Suite `quant`: INT8/INT4 linear layers that dequantize inside the matmul, against MLX.

Decode (`*_matvec`, a few rows of x) and prefill (`*_matmul`) shapes, each compared with
`mx.quantized_matmul` on weights MLX quantized from the same float weight (same bit width,
groups of 128), or, for `mlx4_*`, run on MLX's own uint32 words so both sides read the same
bytes; `int4_*_vs_float` compares with the float matmul the quantized layer replaces.
References are float64 NumPy products with the weights the kernels dequantize; on GPUs the
same products in float32 on the device (the dequantized weights are half precision, or float32
from half-precision scales, and multiply exactly or with TF32's ~5e-4 rounding, well under the
tolerance's 8e-3; float32 sums of 4096 products round ~4e-6 relative). Bytes are what
one call must move: the packed weights with their scales and zeros, the activations in and
the outputs out. GPU sizes are a 4096x4096 projection with M = 1 (decode) and M = 512
(prefill) in float16; CPU emulation gets 1024x1024 in float32.

The cases' `kernels` module is this one, through the public functions imported below: they
take `mx.array`s, so there is no Triton twin for the runner to launch on PyTorch tensors
(`quantize.py` imports mtriton the Triton way, which would make the runner try).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx_primitives.quantize import (
    dequantize_int4_reference,
    dequantize_int8_reference,
    int4_linear,
    int8_linear,
    mlx_quantized_linear,
    quantize_int4,
    quantize_int8,
)

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, f32, host

MATMUL_WHY = (
    "dequantized weights times activations in float32: half-precision values multiply exactly "
    "(TF32 would round float32 dequantized weights by ~5e-4 relative, under the 8e-3 tolerance)"
)
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
GROUP = 128  # int4 and MLX's groups; MLX's default of 64 for the mlx4_* entries
MATVEC_SIZES = Sizes(
    smoke={"m": 3, "n": 45, "k": 384},
    cpu=({"m": 1, "n": 1024, "k": 1024}, {"m": 4, "n": 2048, "k": 2048}),
    gpu=(
        {"m": 1, "n": 4096, "k": 4096, "dtype": "float16"},
        {"m": 1, "n": 11008, "k": 4096, "dtype": "float16"},
    ),
)
MATMUL_SIZES = Sizes(
    smoke={"m": 37, "n": 45, "k": 384},
    cpu=({"m": 64, "n": 1024, "k": 1024}, {"m": 128, "n": 1024, "k": 2048}),
    gpu=(
        {"m": 512, "n": 4096, "k": 4096, "dtype": "float16"},
        {"m": 2048, "n": 4096, "k": 4096, "dtype": "float16"},
    ),
)
# This module, holding the public functions `launch` calls (see the module docstring).
_API = sys.modules[__name__]
__all__ = ["int4_linear", "int8_linear", "mlx_quantized_linear"]


def _inputs_of(m: int, n: int, k: int, dtype: str) -> tuple[mx.array, mx.array]:
    """Activations (m, k) and a float weight (n, k) scaled as nn.Linear initialises it."""
    inputs = _inputs.Inputs()
    x = inputs.normal((m, k), dtype)
    w = (inputs.uniform((n, k), -1, 1) / math.sqrt(k)).astype(getattr(mx, dtype))
    return x, w


def _linear_case(
    m: int,
    n: int,
    k: int,
    dtype: str,
    x: mx.array,
    weights: dict[str, mx.array],
    launch: Callable[[Any, dict[str, Any]], Any],
    dequantized: mx.array,
    builtin: Callable[[], mx.array],
    label: str,
) -> Case:
    """A Case of x @ W.T with W packed in `weights`; `dequantized` is W as the kernels see it."""
    buffers = _inputs.evaluated({"x": x, **weights})
    mx.eval(dequantized)
    tol = TOLERANCE[dtype]
    return Case(
        label=f"M{m} N{n} K{k} {SHORT_DTYPE[dtype]} {label}",
        kernels=_API,
        buffers=buffers,
        launch=launch,
        builtin=builtin,
        reference=lambda: host(x) @ host(dequantized).T,
        bytes=sum(a.nbytes for a in buffers.values()) + m * n * x.itemsize,
        flops=2 * m * n * k,
        # Sums of k products, rounded to the output dtype: error grows like sqrt(k).
        rtol=4 * tol,
        atol=max(tol, 1e-4) * math.sqrt(k),
        fast_reference=DeviceReference(lambda: f32(x) @ f32(dequantized).T, MATMUL_WHY),
    )


def _int8_case(m: int, n: int, k: int, dtype: str, against: str) -> Case:
    x, w = _inputs_of(m, n, k, dtype)
    w_q, scale, zero_point = quantize_int8(w)
    if against == "float":
        builtin = lambda: x @ w.T  # noqa: E731
    else:
        mlx_w = mx.quantize(w, group_size=GROUP, bits=8)
        builtin = lambda: mx.quantized_matmul(x, *mlx_w, transpose=True, group_size=GROUP, bits=8)  # noqa: E731
    return _linear_case(
        m, n, k, dtype, x, {"w_q": w_q, "scale": scale, "zero_point": zero_point},
        launch=lambda api, b: api.int8_linear(b["x"], b["w_q"], b["scale"], b["zero_point"]),
        dequantized=dequantize_int8_reference(w_q, scale, zero_point),
        builtin=builtin,
        label="int8/row",
    )  # fmt: skip


def _int4_case(m: int, n: int, k: int, dtype: str, against: str) -> Case:
    x, w = _inputs_of(m, n, k, dtype)
    w_q, scales, zeros = quantize_int4(w, GROUP)
    if against == "float":
        builtin = lambda: x @ w.T  # noqa: E731
    else:
        mlx_w = mx.quantize(w, group_size=GROUP, bits=4)
        builtin = lambda: mx.quantized_matmul(x, *mlx_w, transpose=True, group_size=GROUP, bits=4)  # noqa: E731
    return _linear_case(
        m, n, k, dtype, x, {"w_q": w_q, "scales": scales, "zeros": zeros},
        launch=lambda api, b: api.int4_linear(b["x"], b["w_q"], b["scales"], b["zeros"], GROUP),
        dequantized=dequantize_int4_reference(w_q, scales, zeros, GROUP),
        builtin=builtin,
        label=f"int4/g{GROUP}",
    )  # fmt: skip


def _mlx4_case(m: int, n: int, k: int, dtype: str) -> Case:
    x, w = _inputs_of(m, n, k, dtype)
    group = 64
    w_q, scales, biases = mx.quantize(w, group_size=group, bits=4)
    # float32 parameters: the reference keeps the kernels' float32 dequantization.
    dequantized = mx.dequantize(w_q, scales.astype(mx.float32), biases.astype(mx.float32), group, 4)
    return _linear_case(
        m, n, k, dtype, x, {"w_q": w_q, "scales": scales, "biases": biases},
        launch=lambda api, b: api.mlx_quantized_linear(b["x"], b["w_q"], b["scales"], b["biases"], group, 4),
        dequantized=dequantized,
        builtin=lambda: mx.quantized_matmul(x, w_q, scales, biases, transpose=True, group_size=group, bits=4),
        label=f"mlx4/g{group}",
    )  # fmt: skip


QMM = "mx.quantized_matmul"
FLOAT = "x @ w.T (float weights)"


@benchmark(suite="quant", name="int8_matvec", bound="memory", builtin=QMM, sizes=MATVEC_SIZES)
def int8_matvec(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Decode: int8 weights (per-row scale and zero point) against MLX's 8-bit layer."""
    return _int8_case(m, n, k, dtype, against="mlx")


@benchmark(suite="quant", name="int4_matvec", bound="memory", builtin=QMM, sizes=MATVEC_SIZES)
def int4_matvec(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Decode: 4-bit weights in groups of 128 against MLX's 4-bit layer."""
    return _int4_case(m, n, k, dtype, against="mlx")


@benchmark(suite="quant", name="mlx4_matvec", bound="memory", builtin=QMM, sizes=MATVEC_SIZES)
def mlx4_matvec(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Decode on the same MLX-packed uint32 weights."""
    return _mlx4_case(m, n, k, dtype)


@benchmark(suite="quant", name="int4_matvec_vs_float", bound="memory", builtin=FLOAT, sizes=MATVEC_SIZES)
def int4_matvec_vs_float(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Decode: 4-bit weights against the float layer they replace."""
    return _int4_case(m, n, k, dtype, against="float")


@benchmark(suite="quant", name="int8_matmul", bound="compute", builtin=QMM, sizes=MATMUL_SIZES)
def int8_matmul(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Prefill: int8 weights against MLX's 8-bit layer."""
    return _int8_case(m, n, k, dtype, against="mlx")


@benchmark(suite="quant", name="int4_matmul", bound="compute", builtin=QMM, sizes=MATMUL_SIZES)
def int4_matmul(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Prefill: 4-bit weights against MLX's 4-bit layer."""
    return _int4_case(m, n, k, dtype, against="mlx")


@benchmark(suite="quant", name="mlx4_matmul", bound="compute", builtin=QMM, sizes=MATMUL_SIZES)
def mlx4_matmul(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Prefill on the same MLX-packed uint32 weights."""
    return _mlx4_case(m, n, k, dtype)


@benchmark(suite="quant", name="int4_matmul_vs_float", bound="compute", builtin=FLOAT, sizes=MATMUL_SIZES)
def int4_matmul_vs_float(m: int, n: int, k: int, dtype: str = "float32") -> Case:
    """Prefill: 4-bit weights against the float layer they replace."""
    return _int4_case(m, n, k, dtype, against="float")
