"""What one benchmark case measured, the correctness check, and the numbers derived from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import mlx.core as mx
import numpy as np

from .machine import Limits
from .registry import Bound, Size
from .timing import Timing

# Every implementation a case may time, in table order. "builtin" is MLX's own op; "numpy"
# the float64 reference on the host; "triton" and "torch" only run on CUDA machines.
IMPLEMENTATIONS = ("mtriton", "builtin", "unfused", "numpy", "triton", "torch")
# Implementations run on the device under test, judged against the machine's limits.
DEVICE_IMPLEMENTATIONS = ("mtriton", "builtin", "unfused", "triton", "torch")
CUDA_IMPLEMENTATIONS = ("triton", "torch")


@dataclass(frozen=True)
class Check:
    """The outcome of comparing a kernel's output with the float64 reference.

    Attributes:
        status: "ok", "FAIL" (disagrees with the reference) or "ERROR" (raised).
        detail: Why it failed, for the table and the JSON file.
        max_abs_err: Largest absolute difference from the reference.
    """

    status: Literal["ok", "FAIL", "ERROR"]
    detail: str = ""
    max_abs_err: float | None = None


def to_float64(output: Any) -> np.ndarray:
    """An MLX array or a PyTorch tensor as a float64 NumPy array."""
    if isinstance(output, mx.array):
        if output.dtype == mx.bfloat16:  # NumPy has no bfloat16
            output = output.astype(mx.float32)
        return np.array(output).astype(np.float64)
    return output.detach().cpu().double().numpy()


def compare(output: Any, reference: Any, rtol: float, atol: float) -> Check:
    """Checks `output` against `reference` elementwise: |out - ref| <= atol + rtol * |ref|.

    Args:
        output: An array or tensor, or a tuple of them.
        reference: The float64 NumPy result, with the same structure.
        rtol: Relative tolerance.
        atol: Absolute tolerance.

    Returns:
        "ok", or "FAIL" with the count of disagreeing elements and the largest error.
    """
    outputs = output if isinstance(output, tuple) else (output,)
    references = reference if isinstance(reference, tuple) else (reference,)
    if len(outputs) != len(references):
        return Check("FAIL", f"{len(outputs)} outputs, reference has {len(references)}")
    worst, bad, total = 0.0, 0, 0
    for got, want in zip(outputs, references):
        got = to_float64(got)
        if got.shape != want.shape:
            return Check("FAIL", f"shape {got.shape}, reference {want.shape}")
        err = np.abs(got - want)
        bad += int(np.count_nonzero(~(err <= atol + rtol * np.abs(want))))  # NaN counts as bad
        total += err.size
        worst = max(worst, float(np.max(np.where(np.isnan(err), np.inf, err), initial=0.0)))
    if bad:
        return Check("FAIL", f"{bad} of {total} off, max |err| {worst:.3g}", worst)
    return Check("ok", max_abs_err=worst)


@dataclass
class Result:
    """Everything measured for one entry at one size.

    Attributes:
        suite: The entry's suite.
        name: The entry's name.
        label: The size, as shown in the table.
        size: The setup function's keyword arguments.
        bound: "memory" or "compute": which machine limit it is judged against.
        bytes: Bytes one call must read and write at least.
        flops: Operations of one call.
        times: Per implementation that ran, seconds per call.
        checks: Per kernel implementation (mtriton, triton), its check.
    """

    suite: str
    name: str
    label: str
    size: Size
    bound: Bound
    bytes: int
    flops: int
    times: dict[str, Timing] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """mtriton's result agrees with the reference. The other columns' checks are reported,
        not required: MLX built-ins can fail on a backend (mx.quantized_matmul with N = 45 on
        CUDA) and Triton multiplies float32 dots in TF32 by default."""
        mtriton = self.checks.get("mtriton")
        return mtriton is not None and mtriton.status == "ok"

    def rate(self, impl: str) -> float | None:
        """Bytes per second (memory-bound) or operations per second (compute-bound)."""
        if impl not in self.times:
            return None
        work = self.bytes if self.bound == "memory" else self.flops
        return work / self.times[impl].median_s

    def fraction_of_limit(self, impl: str, limits: Limits) -> float | None:
        """The rate as a fraction of copy bandwidth or matmul rate, whichever bounds the job."""
        rate = self.rate(impl)
        if rate is None or (impl in CUDA_IMPLEMENTATIONS and not limits.on_gpu):
            return None
        limit = limits.copy_bytes_per_s if self.bound == "memory" else limits.matmul_flops_per_s
        return rate / limit

    def ratio(self, impl: str, other: str) -> float | None:
        """Time of `impl` over time of `other`: above 1 means `impl` is slower."""
        if impl not in self.times or other not in self.times:
            return None
        return self.times[impl].median_s / self.times[other].median_s

    def to_json(self, limits: Limits) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "name": self.name,
            "label": self.label,
            "size": self.size,
            "bound": self.bound,
            "bytes": self.bytes,
            "flops": self.flops,
            "times": {impl: asdict(timing) for impl, timing in self.times.items()},
            "rate": {impl: self.rate(impl) for impl in self.times},
            "fraction_of_limit": {
                impl: self.fraction_of_limit(impl, limits)
                for impl in self.times
                if impl in DEVICE_IMPLEMENTATIONS
            },
            "ratio_mtriton_to": {
                other: self.ratio("mtriton", other) for other in self.times if other != "mtriton"
            },
            "checks": {impl: asdict(check) for impl, check in self.checks.items()},
        }
