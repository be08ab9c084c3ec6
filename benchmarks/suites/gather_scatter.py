"""Suite `gather_scatter`: `selective_gather` and `selective_scatter_add` against MLX's indexing.

The public functions are timed, with `checked=False` (the range check is a host sync,
which a training step avoids too). The scatter-adds are functional, like MLX's
`.at[idx].add`: each call reads the whole `output` and writes a new one, so their bytes
count that copy. Inputs come from a fixed seed; references are float64 NumPy on the
same (rounded) inputs. On GPUs the gather is checked on the device (`mx.take`: exact), and the
scatter-adds against float64 on a sample of rows (the most-hit rows, the first and the last, and
rows at random), which needs only those rows of the table and the values aimed at them: float32
sums of the skewed case's 4096 duplicates per row round by as much as the tolerance allows the
kernel, so a float32 reference would not be accurate enough.

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

from ..registry import Case, DeviceReference, SampledReference, Sizes, benchmark
from . import _inputs
from ._inputs import SHORT_DTYPE, host

__all__ = ["selective_gather", "selective_scatter_add"]  # what `launch` calls through `kernels`

# Rows of the output a sampled scatter-add check compares: the most-hit ones and these many more.
SAMPLED_ROWS = 256
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


def _inputs_of(
    rows: int, dim: int, count: int, dtype: str, distinct: int | None
) -> tuple[mx.array, mx.array, mx.array]:
    """A (rows, dim) table, (count,) int32 indices into it, and (count, dim) values.

    With `distinct`, the indices take only that many values: heavy duplication.
    """
    inputs = _inputs.Inputs()
    if distinct:
        targets = np.random.default_rng(_inputs.SEED).choice(rows, distinct, replace=False)
        indices = mx.take(mx.array(targets.astype(np.int32)), inputs.integers((count,), distinct))
    else:
        indices = inputs.integers((count,), rows)
    table, values = inputs.normal((rows, dim), dtype), inputs.normal((count, dim), dtype)
    mx.eval(table, indices, values)
    return table, indices, values


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
    x, idx, _ = _inputs_of(rows, dim, count, dtype, distinct)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.selective_gather(buf["x"], buf["idx"], checked=False)

    return Case(
        label=_label(rows, dim, count, dtype, distinct),
        kernels=sys.modules[__name__],
        buffers={"x": x, "idx": idx},
        launch=launch,
        builtin=lambda: x[idx],
        reference=lambda: host(x)[np.array(idx)],
        bytes=2 * count * dim * x.itemsize + idx.nbytes,
        flops=0,
        fast_reference=DeviceReference(lambda: mx.take(x, idx, axis=0), "exact: a gather rounds nothing"),
    )


def _scatter_add_case(
    rows: int, dim: int, count: int, dtype: str, distinct: int | None, deterministic: bool
) -> Case:
    """output.at[idx].add(values), as a new array; the tolerance grows with the duplicates."""
    output, idx, values = _inputs_of(rows, dim, count, dtype, distinct)
    idx64 = np.array(idx)
    hits = np.bincount(idx64, minlength=rows)

    def launch(kernels: Any, buf: dict[str, Any]) -> Any:
        return kernels.selective_scatter_add(
            buf["output"], buf["values"], buf["idx"], deterministic=deterministic, checked=False
        )

    def reference() -> np.ndarray:
        result = host(output)
        np.add.at(result, idx64, host(values))
        return result

    # The sample: the most-hit rows first (where duplicates sum), then spread ones.
    most_hit = np.argsort(-hits, kind="stable")[: SAMPLED_ROWS // 4]
    sample = np.union1d(most_hit, _inputs.spread_indices(rows, SAMPLED_ROWS))
    aimed = np.flatnonzero(np.isin(idx64, sample))  # the values that land on sampled rows

    def sampled() -> np.ndarray:
        result = host(_inputs.take(output, sample, axis=0))
        aimed_values = host(_inputs.take(values, aimed, axis=0))
        np.add.at(result, np.searchsorted(sample, idx64[aimed]), aimed_values)
        return result

    most = int(hits.max())
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
        fast_reference=SampledReference(
            select=lambda out: _inputs.take(out, sample, axis=0),
            run=sampled,
            what=f"{sample.size} of {rows} rows: the {most_hit.size} most hit (up to {most} values each), "
            "the first, the last and the rest at random",
        ),
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
