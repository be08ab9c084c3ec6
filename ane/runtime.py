"""ANEModule: an exported Core ML model as an MLX module (MLX arrays in and out), run on the ANE.

Prediction needs the Core ML runtime, which only macOS has: coremltools' Linux wheel ships no
`libcoremlpython`, so there `predict` raises `CoreMLRuntimeUnavailable` (the NumPy MIL
interpreter, `run_program`, is the way to check an export's numerics on Linux).

Placement on the Neural Engine is Core ML's decision, per op, at load: `compute_units`
CPU_AND_NE asks for it, it does not guarantee it. docs/ane.md says how to confirm on a Mac
(`MLComputePlan`, Xcode's performance report, powermetrics).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ._deps import require_coremltools
from .export import INPUT_NAME, META_BLOCK, META_LAYOUT, OUTPUT_NAME


class CoreMLRuntimeUnavailable(RuntimeError):
    """Core ML cannot run models on this machine (not macOS, or coremltools without its runtime)."""


def coreml_runtime_reason() -> str | None:
    """Why Core ML cannot predict here, or None when it can."""
    if sys.platform != "darwin":
        return (
            f"Core ML runs models on macOS only (this is {sys.platform}); use run_program to check numerics"
        )
    if importlib.util.find_spec("coremltools.libcoremlpython") is None:
        return "this coremltools build has no Core ML runtime (coremltools.libcoremlpython is missing)"
    return None


class ANEModule(nn.Module):
    """An exported Core ML model called like the MLX module it came from.

    Args:
        model: A `coremltools.models.MLModel` from `export`, or its saved `.mlpackage` path.
        compute_units: A `coremltools.ComputeUnit` name; "CPU_AND_NE" asks for the Neural Engine.

    Its `__call__` takes and returns MLX arrays in MLX's (B, S, C) layout whatever the model's
    layout (a (B, C, 1, S) model is transposed to on the host), computing in float16 and
    returning float16. The model is loaded for prediction on first call, so constructing an
    ANEModule works anywhere; predicting needs macOS.
    """

    def __init__(self, model: Any, compute_units: str = "CPU_AND_NE") -> None:
        super().__init__()
        ct = require_coremltools("ANEModule")
        if isinstance(model, (str, os.PathLike)):
            self._path = os.fspath(model)
            model = ct.models.MLModel(self._path, skip_model_load=True)
        else:
            self._path = None
        if not hasattr(ct.ComputeUnit, compute_units):
            raise ValueError(
                f"[ANEModule] compute_units must name a coremltools.ComputeUnit, got {compute_units!r}"
            )
        metadata = model.user_defined_metadata
        if META_LAYOUT not in metadata:
            raise ValueError(
                "[ANEModule] model must come from mlx_primitives.ane.export (its layout metadata is missing)"
            )
        self._spec_model = model
        self._compute_units = getattr(ct.ComputeUnit, compute_units)
        self.layout = metadata[META_LAYOUT]
        self.block = metadata[META_BLOCK]
        self._loaded: Any = None
        self.freeze()

    def _predictor(self) -> Any:
        reason = coreml_runtime_reason()
        if reason is not None:
            raise CoreMLRuntimeUnavailable(f"[ANEModule.predict] {reason}")
        if self._loaded is None:
            ct = require_coremltools("ANEModule")
            path = self._path or self._spec_model.package_path
            self._loaded = ct.models.MLModel(path, compute_units=self._compute_units)
        return self._loaded

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Runs Core ML on a NumPy array in the model's own layout; returns its output."""
        return self._predictor().predict({INPUT_NAME: x})[OUTPUT_NAME]

    def compute_plan(self) -> dict[str, list[str]]:
        """Where Core ML plans to run each op: op names by preferred device (macOS 14.4+).

        Returns:
            {"MLNeuralEngineComputeDevice": [...], "MLGPUComputeDevice": [...],
            "MLCPUComputeDevice": [...]}: the ops of the `main` function that have a device
            (constants have none), from `coremltools.models.compute_plan.MLComputePlan`.
        """
        ct = require_coremltools("ANEModule.compute_plan")
        compiled = self._predictor().get_compiled_model_path()
        plan = ct.models.compute_plan.MLComputePlan.load_from_path(
            compiled, compute_units=self._compute_units
        )
        by_device: dict[str, list[str]] = {}
        for op in plan.model_structure.program.functions["main"].block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is not None:
                device = type(usage.preferred_compute_device).__name__
                by_device.setdefault(device, []).append(
                    op.outputs[0].name if op.outputs else op.operator_name
                )
        return by_device

    def __call__(self, x: mx.array) -> mx.array:
        if x.ndim != 3:
            raise ValueError(f"[ANEModule] x must have shape (B, S, C), got {x.shape}")
        host = np.array(x.astype(mx.float16))
        if self.layout == "BC1S":
            host = np.ascontiguousarray(host.transpose(0, 2, 1)[:, :, None, :])
        out = self.predict(host)
        if self.layout == "BC1S":
            out = out[:, :, 0, :].transpose(0, 2, 1)
        return mx.array(np.ascontiguousarray(out).astype(np.float16))

    def compare(self, reference: nn.Module, x: mx.array, **kwargs: Any) -> dict[str, float]:
        """Max and mean absolute difference to the MLX module on `x` (kwargs go to the module).

        Args:
            reference: The MLX module the model was exported from.
            x: A (B, S, C) input.
            **kwargs: Passed to `reference` (mlx-lm blocks want `mask="causal"`).

        Returns:
            {"max_abs": ..., "mean_abs": ..., "ref_max_abs": ...}.
        """
        ours = np.array(self(x).astype(mx.float32))
        ref = np.array(reference(x, **kwargs).astype(mx.float32))
        diff = np.abs(ours - ref)
        return {
            "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
            "ref_max_abs": float(np.abs(ref).max()),
        }

    def benchmark(
        self, reference: nn.Module, x: mx.array, iters: int = 50, **kwargs: Any
    ) -> dict[str, float]:
        """Median wall time per call, in milliseconds, of Core ML and of the MLX module.

        Args:
            reference: The MLX module the model was exported from.
            x: A (B, S, C) input.
            iters: Timed calls of each (after one warm-up call).
            **kwargs: Passed to `reference`.

        Returns:
            {"coreml_ms": ..., "mlx_ms": ..., "speedup": mlx_ms / coreml_ms}.
        """

        def median_ms(call: Any) -> float:
            call()
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            return 1e3 * float(np.median(times))

        coreml_ms = median_ms(lambda: mx.eval(self(x)))
        mlx_ms = median_ms(lambda: mx.eval(reference(x, **kwargs)))
        return {"coreml_ms": coreml_ms, "mlx_ms": mlx_ms, "speedup": mlx_ms / coreml_ms}
