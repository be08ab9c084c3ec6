"""What machine the run is on, and what it can do at best: copy bandwidth and matmul rate.

Kernels are reported as a percentage of these two limits, measured in the
same run with the same timing method, so that numbers from different
machines compare. The copy bandwidth is the `tutorials/copy` entry's built-in
(`x + 0`), which the runner measures first; this module times the matmul.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from .external import gpu_stack
from .registry import Tier
from .timing import TimingPlan, time_mlx

# Matmuls large enough to reach the peak rate (the best of them counts: MLX's CPU matmul peaks
# at 512, not at 1024); the smoke tier only checks that the probe runs.
MATMUL_SIZES: dict[Tier, tuple[int, ...]] = {"smoke": (64,), "cpu": (512, 1024), "gpu": (4096, 8192)}
# CPUs have no fast half-precision matmul; GPUs are judged at the precision kernels use there.
MATMUL_DTYPE: dict[Tier, mx.Dtype] = {"smoke": mx.float32, "cpu": mx.float32, "gpu": mx.float16}


@dataclass(frozen=True)
class Limits:
    """The machine's measured best rates.

    Attributes:
        device: The MLX device they were measured on.
        on_gpu: Whether that device is a GPU (PyTorch and Triton are judged against
            these limits only then: they run on the GPU).
        copy_bytes_per_s: Bytes read plus written per second by `copy_method`.
        copy_method: What was timed.
        matmul_flops_per_s: FLOPs per second of `matmul_method`.
        matmul_method: What was timed.
    """

    device: str
    on_gpu: bool
    copy_bytes_per_s: float
    copy_method: str
    matmul_flops_per_s: float
    matmul_method: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_limits(tier: Tier, plan: TimingPlan, copy_bytes_per_s: float, copy_method: str) -> Limits:
    """The copy bandwidth measured by the copy entry, and a large matmul timed with MLX.

    Args:
        tier: "smoke" for token sizes; otherwise the matmul sizes follow MLX's device,
            not the backend's tier (the interpreter may run on an MLX GPU).
        plan: The timing plan the kernels use, so that limits and kernels are
            timed the same way.
        copy_bytes_per_s: The copy bandwidth, measured first in the same run by the
            `tutorials/copy` entry's built-in (`x + 0`, bytes read + written).
        copy_method: What that timed.

    Returns:
        The measured limits.
    """
    # Limits are what kernels are divided by: a few more repeats than a kernel gets.
    timing = {
        "warmup": max(plan.warmup, 1),
        "iters": max(plan.iters, 5),
        "launches_per_eval": plan.launches_per_eval,
    }
    on_gpu = mx.default_device().type == mx.DeviceType.gpu
    probe: Tier = "smoke" if tier == "smoke" else "gpu" if on_gpu else "cpu"
    dtype = MATMUL_DTYPE[probe]
    matmul_rates = {}
    for size in MATMUL_SIZES[probe]:
        a = mx.random.normal((size, size)).astype(dtype)
        b = mx.random.normal((size, size)).astype(dtype)
        mx.eval(a, b)
        matmul_rates[size] = 2 * size**3 / time_mlx(lambda a=a, b=b: a @ b, **timing).median_s
    best = max(matmul_rates, key=matmul_rates.__getitem__)
    dtype_name = str(dtype).rsplit(".", 1)[-1]
    return Limits(
        device=str(mx.default_device()),
        on_gpu=on_gpu,
        copy_bytes_per_s=copy_bytes_per_s,
        copy_method=copy_method,
        matmul_flops_per_s=matmul_rates[best],
        matmul_method=f"a @ b, {dtype_name} {best}^3; best of sizes {', '.join(map(str, matmul_rates))}",
    )


def machine_info(backend: str) -> dict[str, Any]:
    """Platform, library versions, the MLX device and the mtriton backend, for the JSON file."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "mlx": mx.__version__,
        "mlx_device": str(mx.default_device()),
        "mlx_device_info": {
            k: v if isinstance(v, (int, float, str)) else str(v) for k, v in mx.device_info().items()
        },
        "backend": backend,
    }
    stack = gpu_stack()
    if stack is not None:
        info.update(stack)
    return info
