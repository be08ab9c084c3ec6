"""Suite `scan_moe`, selective scan: `mlx_primitives.ssm.selective_scan` against the plain-MLX
sequential scan (`selective_scan_reference`: the recurrence one step at a time, as mlx-lm's
Mamba runs it, a handful of MLX ops per step).

Entries: the forward and forward + backward (every input's gradient through `mx.vjp`), with D,
z, delta_bias and softplus as the Mamba block calls it. GPU size: Mamba's B4 L2048 D1536 N16.
Bytes count x, delta, z and out (batch * dim * L each) and B, C (batch * N * L each) once;
forward + backward adds the backward's reads of x, delta, z, B, C and the cotangent and its
writes of dx, d delta, dz, dB and dC. FLOPs: ~9 per state element and step forward (exp, the
decay and input multiply-adds, the C product and sum); forward + backward counts 40: the
forward's 9, the backward's replay of each chunk from its checkpoint (~6) and its reverse step
(~25: the state again, dL/dh and the products of every gradient).

References: float64 NumPy of the recurrence for the forward on CPU tiers; on GPUs, and for the
gradients on every tier, the float32 plain-MLX scan on the device (its sequential float32 sums
are what the kernel computes, in the same order over time).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.ssm import selective_scan, selective_scan_reference

from ..registry import Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, host

__all__ = ["selective_scan"]  # what `launch` calls through `kernels`
_API = sys.modules[__name__]

TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}
_MAMBA = {"batch": 4, "seqlen": 2048, "dim": 1536, "n_state": 16}
GPU_SIZES = ({**_MAMBA, "dtype": "float32"}, {**_MAMBA, "dtype": "bfloat16"})
CPU_SIZES = ({"batch": 1, "seqlen": 64, "dim": 64, "n_state": 16},)
SMOKE = {"batch": 1, "seqlen": 9, "dim": 13, "n_state": 16}
_WHY = "the float32 sequential scan in plain MLX: the kernel's float32 recurrence, step by step"
_NAMES = ("x", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _inputs_of(batch: int, seqlen: int, dim: int, n_state: int, dtype: str) -> dict[str, mx.array]:
    inputs = _inputs.Inputs()
    buf = {
        "x": inputs.normal((batch, dim, seqlen), dtype),
        "delta": inputs.normal((batch, dim, seqlen), dtype, scale=0.5),
        "A": inputs.uniform((dim, n_state), -2.0, -0.5),
        "B": inputs.normal((batch, n_state, seqlen), dtype),
        "C": inputs.normal((batch, n_state, seqlen), dtype),
        "D": inputs.normal((dim,)),
        "z": inputs.normal((batch, dim, seqlen), dtype),
        "delta_bias": inputs.normal((dim,), scale=0.3),
    }
    return _inputs.evaluated(buf)


def _scan64(buf: dict[str, mx.array]) -> np.ndarray:
    """The forward in float64 on the host, step by step."""
    x, delta, A, B, C, D, z, bias = (host(buf[k]) for k in _NAMES)
    delta = np.logaddexp(0.0, delta + bias[:, None])
    h = np.zeros((*x.shape[:2], A.shape[1]))
    y = np.empty_like(x)
    for t in range(x.shape[2]):
        dt = delta[:, :, t, None]
        h = np.exp(dt * A) * h + dt * x[:, :, t, None] * B[:, None, :, t]
        y[:, :, t] = (h * C[:, None, :, t]).sum(-1)
    return (y + D[:, None] * x) * z / (1 + np.exp(-z))


def _call(scan: Callable[..., mx.array], buf: dict[str, Any]) -> mx.array:
    return scan(*(buf[k] for k in _NAMES[:5]), D=buf["D"], z=buf["z"], delta_bias=buf["delta_bias"])


def _label(batch: int, seqlen: int, dim: int, n_state: int, dtype: str) -> str:
    return f"B{batch} L{seqlen} D{dim} N{n_state} {SHORT_DTYPE[dtype]}"


def _sizes(batch: int, seqlen: int, dim: int, n_state: int, dtype: str) -> tuple[int, int, int]:
    """Bytes of one (batch, dim, L) array and of one (batch, N, L) array, and the state steps."""
    item = mx.zeros((), getattr(mx, dtype)).itemsize
    return batch * dim * seqlen * item, batch * n_state * seqlen * item, batch * seqlen * dim * n_state


@benchmark(
    suite="scan_moe",
    name="selective_scan",
    bound="memory",
    builtin="plain-MLX sequential scan (mlx-lm Mamba)",
    sizes=Sizes(smoke=SMOKE, cpu=CPU_SIZES, gpu=GPU_SIZES),
)
def selective_scan_entry(batch: int, seqlen: int, dim: int, n_state: int, dtype: str = "float32") -> Case:
    """The forward with D, z, delta_bias and softplus."""
    buf = _inputs_of(batch, seqlen, dim, n_state, dtype)
    channels, states, steps = _sizes(batch, seqlen, dim, n_state, dtype)
    return Case(
        label=_label(batch, seqlen, dim, n_state, dtype),
        kernels=_API,
        buffers=buf,
        launch=lambda api, b: _call(api.selective_scan, b),
        builtin=lambda: _call(selective_scan_reference, buf),
        reference=lambda: _scan64(buf),
        bytes=4 * channels + 2 * states,
        flops=9 * steps,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        fast_reference=DeviceReference(lambda: _call(selective_scan_reference, buf), _WHY),
        external=False,
    )


def _gradients(scan: Callable[..., mx.array], buf: dict[str, Any], cotangent: mx.array) -> Callable[[], Any]:
    def run() -> tuple[mx.array, ...]:
        def f(*args: mx.array) -> mx.array:
            return _call(scan, dict(zip(_NAMES, args)))

        _, grads = mx.vjp(f, [buf[k] for k in _NAMES], [cotangent])
        return tuple(grads)

    return run


@benchmark(
    suite="scan_moe",
    name="selective_scan_backward",
    bound="memory",
    builtin="mx.vjp of the plain-MLX sequential scan",
    sizes=Sizes(smoke=SMOKE, cpu=CPU_SIZES, gpu=GPU_SIZES),
)
def selective_scan_backward_entry(
    batch: int, seqlen: int, dim: int, n_state: int, dtype: str = "float32"
) -> Case:
    """The gradients of x, delta, A, B, C, D, z and delta_bias: the forward, then the kernel
    backward (chunk checkpoints, reverse time)."""
    buf = _inputs_of(batch, seqlen, dim, n_state, dtype)
    cotangent = _inputs.Inputs(_inputs.SEED + 1).normal(tuple(buf["x"].shape), dtype)
    mx.eval(cotangent)
    channels, states, steps = _sizes(batch, seqlen, dim, n_state, dtype)
    reference = _gradients(selective_scan_reference, buf, cotangent)
    return Case(
        label=_label(batch, seqlen, dim, n_state, dtype),
        kernels=_API,
        buffers=buf,
        launch=lambda api, b: _gradients(api.selective_scan, b, cotangent)(),
        builtin=reference,
        reference=lambda: tuple(host(g) for g in reference()),
        bytes=11 * channels + 6 * states,
        flops=40 * steps,
        rtol=2 * TOLERANCE[dtype],
        atol=2 * TOLERANCE[dtype],
        fast_reference=DeviceReference(reference, "the gradients of " + _WHY),
        external=False,
    )
