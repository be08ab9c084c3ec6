"""What one benchmark case measured, the correctness check, and the numbers derived from them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import mlx.core as mx
import numpy as np

from .machine import Limits
from .registry import Bound, Size
from .timing import Timing

# Every implementation a case may time, in table order. "builtin" is MLX's own op; "fresh"
# the same mtriton launch with `mtriton.empty` outputs (beside in-place variants); "raw" the
# backend's bare launch of the compiled kernel (beside the dispatch entries); "numpy" the
# float64 reference on the host; "triton" and "torch" only run on CUDA machines.
IMPLEMENTATIONS = ("mtriton", "builtin", "unfused", "fresh", "raw", "numpy", "triton", "torch")
# Implementations run on the device under test, judged against the machine's limits.
DEVICE_IMPLEMENTATIONS = ("mtriton", "builtin", "unfused", "fresh", "raw", "triton", "torch")
CUDA_IMPLEMENTATIONS = ("triton", "torch")
# Baselines of mtriton itself: their absolute difference from mtriton is reported too (the
# dispatch target is a number of microseconds over the raw launch).
MTRITON_BASELINES = ("fresh", "raw")


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
    """An MLX array, a PyTorch tensor or a NumPy array as a float64 NumPy array."""
    if isinstance(output, np.ndarray):
        return output.astype(np.float64, copy=False)
    if isinstance(output, mx.array):
        if output.dtype == mx.bfloat16:  # NumPy has no bfloat16
            output = output.astype(mx.float32)
        return np.array(output).astype(np.float64)
    return output.detach().cpu().double().numpy()


def _errors_host(got: Any, want: np.ndarray, rtol: float, atol: float) -> tuple[int, float]:
    err = np.abs(to_float64(got) - want)
    bad = int(np.count_nonzero(~(err <= atol + rtol * np.abs(want))))  # NaN counts as bad
    return bad, float(np.max(np.where(np.isnan(err), np.inf, err), initial=0.0))


def _errors_device(got: mx.array, want: mx.array, rtol: float, atol: float) -> tuple[int, float]:
    """The check in float32 on MLX's device: moving a GPU-sized output and its reference to the
    host in float64 would cost seconds."""
    err = mx.abs(got.astype(mx.float32) - want.astype(mx.float32))
    bad = mx.sum(mx.logical_not(err <= atol + rtol * mx.abs(want.astype(mx.float32))))  # NaN is bad
    worst = mx.max(mx.where(mx.isnan(err), math.inf, err)) if err.size else mx.array(0.0)
    return int(bad.item()), float(worst.item())


def compare(output: Any, reference: Any, rtol: float, atol: float) -> Check:
    """Checks `output` against `reference` elementwise: |out - ref| <= atol + rtol * |ref|.

    Args:
        output: An array or tensor, or a tuple of them.
        reference: The expected result, with the same structure: float64 NumPy arrays, or
            MLX arrays (a `DeviceReference`), which are compared on MLX's device in float32
            when `output` is MLX's too.
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
        if tuple(got.shape) != tuple(want.shape):
            return Check("FAIL", f"shape {tuple(got.shape)}, reference {tuple(want.shape)}")
        if isinstance(want, mx.array) and isinstance(got, mx.array):
            bad_here, worst_here = _errors_device(got, want, rtol, atol)
        else:
            bad_here, worst_here = _errors_host(got, to_float64(want), rtol, atol)
        bad += bad_here
        total += math.prod(want.shape)
        worst = max(worst, worst_here)
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
        reference: What the checks compared with: `method` ("float64", "float32-device" or
            "float64-sample") and `detail` (why float32 suffices, or which part was checked).
        elapsed_s: Wall seconds of each phase (setup, reference, each implementation), for
            the log and for budgeting the GPU run.
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
    reference: dict[str, str] = field(default_factory=dict)
    elapsed_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """mtriton's result agrees with the reference, and the fast reference with the float64
        one where both ran (`--reference both`). The other columns' checks are reported, not
        required: MLX built-ins can fail on a backend (mx.quantized_matmul with N = 45 on
        CUDA) and Triton multiplies float32 dots in TF32 by default."""
        mtriton = self.checks.get("mtriton")
        fast = self.checks.get("fast_reference")
        return mtriton is not None and mtriton.status == "ok" and (fast is None or fast.status == "ok")

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

    def excess_s(self, impl: str, other: str) -> float | None:
        """Seconds per call `impl` takes beyond `other` (negative where it is faster)."""
        if impl not in self.times or other not in self.times:
            return None
        return self.times[impl].median_s - self.times[other].median_s

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
            "excess_s_mtriton_over": {
                other: self.excess_s("mtriton", other) for other in MTRITON_BASELINES if other in self.times
            },
            "checks": {impl: asdict(check) for impl, check in self.checks.items()},
            "reference": self.reference,
            "elapsed_s": self.elapsed_s,
        }
