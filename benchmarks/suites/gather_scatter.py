"""Suite `gather_scatter`: `selective_gather` and `selective_scatter_add` against MLX's indexing.

The public functions are timed, with `checked=False` (the range check is a host sync,
which a training step avoids too). The scatter-adds are functional, like MLX's
`.at[idx].add`: each call reads the whole `output` and writes a new one, so their bytes
count that copy. Inputs come from a fixed seed; references are float64 NumPy on the
same (rounded) inputs.

Each case's `kernels` is this module, which imports the two functions: they sort with
MLX and wrap their kernels in `mx.custom_function`, so there is no Triton twin to run.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_primitives.gather_scatter import selective_gather, selective_scatter_add

from ..registry import Case, Sizes, benchmark

__all__ = ["selective_gather", "selective_scatter_add"]  # what `launch` calls through `kernels`

SEED = 0
SHORT_DTYPE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
# rtol/atol of one rounding to this dtype (as tests/conftest.py).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# Table rows, row width, index count: GPU sizes from the gather/scatter issue (1M rows of
# D=128, 256K indices), an embedding table (32K x 4096, 8K tokens), and a skewed case where
# 256K indices fall on 64 rows; CPU sizes are 1/16 to 1/64 of those.
CPU_SIZES = (
    {"rows": 65536, "dim": 128, "count": 16384},
    {"rows": 4096, "dim": 1024, "count": 2048, "dtype": "float16"},
)
GPU_SIZES = (
    {"rows": 1 << 20, "dim": 128, "count": 1 << 18},
    {"rows": 32768, "dim": 4096, "count": 8192, "dtype": "float16"},
)
SKEWED = {"rows": 1 << 20, "dim": 128, "count": 1 << 18, "distinct": 64}
CPU_SKEWED = {"rows": 65536, "dim": 128, "count": 16384, "distinct": 64}
SMOKE = {"rows": 37, "dim": 45, "count": 203, "distinct": 5}


def _inputs(
    rows: int, dim: int, count: int, dtype: str, distinct: int | None
) -> tuple[mx.array, mx.array, mx.array]:
    """A (rows, dim) table, (count,) int32 indices into it, and (count, dim) values.

    With `distinct`, the indices take only that many values: heavy duplication.
    """
    rng = np.random.default_rng(SEED)
    targets = rng.choice(rows, distinct, replace=False) if distinct else np.arange(rows)
    indices = mx.array(targets[rng.integers(0, len(targets), count)].astype(np.int32))
    table, values = (
        mx.array(rng.standard_normal(shape, dtype=np.float32)).astype(getattr(mx, dtype))
        for shape in ((rows, dim), (count, dim))
    )
    mx.eval(table, indices, values)
    return table, indices, values


def _host(array: mx.array) -> np.ndarray:
    """The float64 NumPy copy the reference computes on."""
    return np.array(array.astype(mx.float32), dtype=np.float64)


def _label(rows: int, dim: int, count: int, dtype: str, distinct: int | None) -> str:
    skew = f" on {distinct} rows" if distinct else ""
    return f"{rows}x{dim} {SHORT_DTYPE[dtype]}, {count} idx{skew}"


@benchmark(
    suite="gather_scatter",
    name="gather",
    bound="memory",
    builtin="x[idx]",
    sizes=Sizes(smoke=SMOKE, cpu=CPU_SIZES, gpu=GPU_SIZES),
)
def gather(rows: int, dim: int, count: int, dtype: str = "float32", distinct: int | None = None) -> Case:
    """`count` rows of a (rows, dim) table; bit-exact, so the check has no tolerance."""
    x, idx, _ = _inputs(rows, dim, count, dtype, distinct)
    x64, idx64 = _host(x), np.array(idx)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.selective_gather(buf["x"], buf["idx"], checked=False)

    return Case(
        label=_label(rows, dim, count, dtype, distinct),
        kernels=sys.modules[__name__],
        buffers={"x": x, "idx": idx},
        launch=launch,
        builtin=lambda: x[idx],
        reference=lambda: x64[idx64],
        bytes=2 * count * dim * x.itemsize + idx.nbytes,
        flops=0,
    )


def _scatter_add_case(
    rows: int, dim: int, count: int, dtype: str, distinct: int | None, deterministic: bool
) -> Case:
    """output.at[idx].add(values), as a new array; the tolerance grows with the duplicates."""
    output, idx, values = _inputs(rows, dim, count, dtype, distinct)
    output64, idx64, values64 = _host(output), np.array(idx), _host(values)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.selective_scatter_add(
            buf["output"], buf["values"], buf["idx"], deterministic=deterministic, checked=False
        )

    def reference() -> np.ndarray:
        result = output64.copy()
        np.add.at(result, idx64, values64)
        return result

    most = int(np.bincount(idx64).max())
    return Case(
        label=_label(rows, dim, count, dtype, distinct),
        kernels=sys.modules[__name__],
        buffers={"output": output, "values": values, "idx": idx},
        launch=launch,
        builtin=lambda: output.at[idx].add(values),
        reference=reference,
        bytes=2 * output.nbytes + values.nbytes + idx.nbytes,
        flops=values.size,
        rtol=TOLERANCE[dtype],
        # float32 sums of `most` unit normals: rounding error grows like sqrt(most).
        atol=TOLERANCE[dtype] * math.sqrt(most),
    )


@benchmark(
    suite="gather_scatter",
    name="scatter_add",
    bound="memory",
    builtin="out.at[idx].add(v)",
    sizes=Sizes(smoke=SMOKE, cpu=(*CPU_SIZES, CPU_SKEWED), gpu=(*GPU_SIZES, SKEWED)),
)
def scatter_add(rows: int, dim: int, count: int, dtype: str = "float32", distinct: int | None = None) -> Case:
    """The atomic mode: float32 atomics, summation order left to the threads."""
    return _scatter_add_case(rows, dim, count, dtype, distinct, deterministic=False)


@benchmark(
    suite="gather_scatter",
    name="scatter_add_det",
    bound="memory",
    builtin="out.at[idx].add(v)",
    sizes=Sizes(smoke=SMOKE, cpu=(*CPU_SIZES, CPU_SKEWED), gpu=(*GPU_SIZES, SKEWED)),
)
def scatter_add_det(
    rows: int, dim: int, count: int, dtype: str = "float32", distinct: int | None = None
) -> Case:
    """The deterministic mode: sort, then a fixed-order sum per row (bit-reproducible)."""
    return _scatter_add_case(rows, dim, count, dtype, distinct, deterministic=True)
