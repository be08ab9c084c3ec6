"""Suite `scan_moe` (scans): `associative_scan` rows and one long row against MLX's own scans.

`cumsum_rows` and `cumprod_rows` scan the rows of a matrix: at 8192x4096 float32 the form of
the Triton cumsum quoted in FACTS.md (3.82 TB/s on the H200, one row per program), and at
1024x65536, where each row is 16 blocks scanned reduce-then-scan. `cumsum_long_row` scans one
row of 2**24 elements (4096 blocks, then a second level over their totals). All are memory
bound: their bytes are one read and one write of the array, so the table shows them as a share
of the run's copy bandwidth, though the multi-block scans read their input twice.

Inputs come from a fixed seed; references are float64 NumPy on the same inputs. On GPUs the
row scans are checked on the device in float32 (`row_cumsum32`, the tutorial cumsum's
reference; MLX's `mx.cumprod` for products of values near 1) and the long row against float64
at a sample of positions.

Each case's `kernels` is this module, which imports `associative_scan`: it launches its
kernels from Python (one launch, or two per level of block totals), so there is no Triton twin.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.scan import associative_scan

from ..registry import Case, DeviceReference, SampledReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, host
from ._references import row_cumsum32

__all__ = ["associative_scan"]  # what `launch` calls through `kernels`

# rtol/atol of one rounding to this dtype (as tests/conftest.py).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# Sampled positions of the long row checked against float64 on GPUs.
SAMPLED = 4096
ROW_SIZES = Sizes(
    smoke={"rows": 3, "cols": 4103},  # two blocks, the second a ragged tail
    cpu=({"rows": 256, "cols": 4096}, {"rows": 8, "cols": 65536}),
    gpu=({"rows": 8192, "cols": 4096}, {"rows": 1024, "cols": 65536}),
)
ROW_CUMSUM_WHY = (
    "a two-level float32 scan (within 64-column blocks, then across block totals), the tutorial "
    "cumsum's reference: at 4096 columns its largest error measured 7% of the tolerance"
)
CUMPROD_WHY = (
    "products of values e^N(0, 0.01) stay within a few units of 1, so each float32 step rounds "
    "by ~6e-8 relative: ~sqrt(cols) * 6e-8 in all, below the sqrt(cols) * 1e-5 tolerance"
)


def _label(rows: int, cols: int, dtype: str) -> str:
    return f"{rows}x{cols} {SHORT_DTYPE[dtype]}"


def _row_case(
    x: mx.array, operator: str, builtin: Any, reference: Any, rtol: float, atol: float, fast: DeviceReference
) -> Case:
    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.associative_scan(buf["x"], operator, axis=1)

    rows, cols = x.shape
    return Case(
        label=_label(rows, cols, str(x.dtype).removeprefix("mlx.core.")),
        kernels=sys.modules[__name__],
        buffers={"x": x},
        launch=launch,
        builtin=builtin,
        reference=reference,
        bytes=2 * x.nbytes,
        flops=x.size,
        rtol=rtol,
        atol=atol,
        fast_reference=fast,
    )


@benchmark(suite="scan_moe", name="cumsum_rows", bound="memory", builtin="mx.cumsum", sizes=ROW_SIZES)
def cumsum_rows(rows: int, cols: int, dtype: str = "float32") -> Case:
    """Inclusive prefix sums of unit normals along each row."""
    x = _inputs.Inputs().normal((rows, cols), dtype)
    tol = TOLERANCE[dtype]
    return _row_case(
        x,
        "add",
        builtin=lambda: mx.cumsum(x, axis=1),
        reference=lambda: np.cumsum(host(x), axis=1),
        rtol=tol,
        # Partial sums of unit normals grow like sqrt(cols); so does their rounding error.
        atol=tol * math.sqrt(cols),
        fast=DeviceReference(lambda: row_cumsum32(x), ROW_CUMSUM_WHY),
    )


@benchmark(suite="scan_moe", name="cumprod_rows", bound="memory", builtin="mx.cumprod", sizes=ROW_SIZES)
def cumprod_rows(rows: int, cols: int, dtype: str = "float32") -> Case:
    """Inclusive prefix products along each row of e^N(0, 0.01): near 1, so they neither
    vanish nor overflow at 65536 columns."""
    x = mx.exp(_inputs.Inputs().normal((rows, cols), "float32", scale=0.01)).astype(getattr(mx, dtype))
    tol = TOLERANCE[dtype] * math.sqrt(cols)
    return _row_case(
        x,
        "mul",
        builtin=lambda: mx.cumprod(x, axis=1),
        reference=lambda: np.cumprod(host(x), axis=1),
        rtol=tol,
        atol=tol,
        fast=DeviceReference(lambda: mx.cumprod(x.astype(mx.float32), axis=1), CUMPROD_WHY),
    )


@benchmark(
    suite="scan_moe",
    name="cumsum_long_row",
    bound="memory",
    builtin="mx.cumsum",
    sizes=Sizes(smoke={"n": 20011}, cpu=({"n": 1 << 20},), gpu=({"n": 1 << 24},)),
)
def cumsum_long_row(n: int, dtype: str = "float32") -> Case:
    """One row of `n` unit normals: every block of it waits on the totals of all before it."""
    x = _inputs.Inputs().normal((n,), dtype)
    sample = _inputs.spread_indices(n, SAMPLED)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.associative_scan(buf["x"], "add")

    tol = TOLERANCE[dtype]
    return Case(
        label=f"{n} {SHORT_DTYPE[dtype]}",
        kernels=sys.modules[__name__],
        buffers={"x": x},
        launch=launch,
        builtin=lambda: mx.cumsum(x),
        reference=lambda: np.cumsum(host(x)),
        bytes=2 * x.nbytes,
        flops=x.size,
        rtol=tol,
        atol=tol * math.sqrt(n),
        fast_reference=SampledReference(
            select=lambda out: _inputs.take(out, sample, axis=0),
            run=lambda: np.cumsum(host(x))[sample],
            what=f"{sample.size} of {n} positions (the first, the last and the rest at random), in float64",
        ),
    )
