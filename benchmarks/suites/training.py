"""Suite `training`: what gradient checkpointing costs in time for the memory it saves, and
what a warm tuning database saves an autotuned launch.

- `checkpoint_sequential`: one training step (loss and every gradient) of an 8-block gated
  MLP with `mlx_primitives.training.checkpoint_sequential`, against the same step without
  checkpointing. The time column is the recompute's price; the label carries both peak
  memories, measured once at setup (`mx.get_peak_memory`). Checked against the plain step
  run in float64 on the CPU.
- `autotune_warm_database`: the first launch of a newly made `@autotune(use_database=True)`
  kernel whose database holds its key (no search), against the first launch of one that
  searches (4 configs, the autotuner's default timing). Both run with the autotuner's own
  disk cache off, so only the database can answer.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map
from mlx_primitives.training import checkpoint_sequential

import mtriton
import mtriton.language as tl
from mtriton import options

from ..registry import Case, DeviceReference, Sizes, benchmark
from ._inputs import host

LAYERS = 8


class GatedBlock(nn.Module):
    """A gated MLP block whose activations dominate its memory (tests/test_training.py uses it)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.gate = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.norm(x)
        return x + self.down(nn.gelu(self.up(h)) * self.gate(h))


class _Stack(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layers = [GatedBlock(width) for _ in range(LAYERS)]
        self.checkpointed = False

    def __call__(self, x: mx.array) -> mx.array:
        if self.checkpointed:
            return checkpoint_sequential(self.layers, LAYERS, x)
        for layer in self.layers:
            x = layer(x)
        return x


def _step(model: _Stack, x: mx.array, checkpointed: bool) -> tuple[mx.array, ...]:
    """The loss and every gradient, flattened in a fixed order."""
    model.checkpointed = checkpointed
    loss, grads = nn.value_and_grad(model, lambda m, x: (m(x) ** 2).mean())(model, x)
    return (loss, *(g for _, g in tree_flatten(grads)))


def _peak(fn: Any) -> int:
    mx.eval(fn())  # compiled and warm: the measured run allocates only what the step needs
    mx.synchronize()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(fn())
    return mx.get_peak_memory() - base


@benchmark(
    suite="training",
    name="checkpoint_sequential",
    bound="compute",
    builtin="the same step without checkpointing",
    sizes=Sizes(
        smoke={"rows": 37, "width": 16},
        cpu=({"rows": 1024, "width": 64},),
        gpu=({"rows": 16384, "width": 1024}, {"rows": 65536, "width": 512}),
    ),
)
def checkpointed_step(rows: int, width: int) -> Case:
    """A training step of 8 blocks, each checkpointed but the last (see checkpoint_sequential)."""
    mx.random.seed(0)
    model = _Stack(width)
    x = mx.random.normal((rows, width))
    mx.eval(model.parameters(), x)
    plain_peak = _peak(lambda: _step(model, x, False))
    checkpointed_peak = _peak(lambda: _step(model, x, True))

    def reference() -> tuple[np.ndarray, ...]:
        twin = _Stack(width)
        with mx.stream(mx.cpu):  # float64 runs on the CPU alone
            twin.update(tree_map(lambda p: p.astype(mx.float64), model.parameters()))
            out = _step(twin, x.astype(mx.float64), False)
            mx.eval(out)
        return tuple(host(g) for g in out)

    params = sum(p.size for _, p in tree_flatten(model.parameters()))
    matmul_flops = 2 * rows * LAYERS * 6 * width * width  # up, gate, down: 6 width^2 per row
    return Case(
        label=(
            f"{LAYERS}x{rows}x{width} f32, peak {plain_peak / 2**20:.1f} -> "
            f"{checkpointed_peak / 2**20:.1f} MiB ({1 - checkpointed_peak / plain_peak:.0%} saved)"
        ),
        kernels=sys.modules[__name__],
        buffers={"x": x},
        launch=lambda kernels, buf: kernels._step(model, buf["x"], True),
        builtin=lambda: _step(model, x, False),
        reference=reference,
        # parameters read by the forward, the recompute and the backward, gradients written
        bytes=4 * (4 * params + x.size),
        # forward, backward (twice the forward) and the recompute of all but the last block
        flops=matmul_flops * 3 + matmul_flops * (LAYERS - 1) // LAYERS,
        rtol=1e-4,
        atol=1e-5,
        fast_reference=DeviceReference(
            lambda: _step(model, x, False),
            "the plain step in float32: checkpointing reruns the same operations, so the gradients "
            "equal it bit for bit, and float32 is within a quarter of the tolerance of float64",
        ),
        external=False,
    )


# --------------------------------------------------------------------------- autotune


@mtriton.jit
def _scale_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 3.0, mask=mask)


CONFIGS = [mtriton.Config({"BLOCK": b}, num_warps=w) for b, w in ((128, 1), (256, 2), (512, 4), (1024, 4))]


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """mtriton's knobs are read when used: set for one launch, then put back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _first_launch(x: mx.array, database: bool, db_path: str) -> mx.array:
    """A new autotuner's first launch: it knows nothing in memory."""
    kernel = mtriton.autotune(CONFIGS, key=["n"], use_database=database)(_scale_kernel)
    out = mtriton.empty_like(x)
    n = x.size
    with _environment(MTRITON_DISABLE_DISK_CACHE="1", MTRITON_TUNING_DB=db_path):
        kernel[lambda meta: (mtriton.cdiv(n, meta["BLOCK"]),)](x, out, n)
    return out


@benchmark(
    suite="training",
    name="autotune_warm_database",
    bound="memory",
    builtin="the same first launch searching 4 configs",
    sizes=Sizes(smoke={"n": 1000}, cpu=({"n": 1 << 16},), gpu=({"n": 1 << 24},)),
)
def autotune_warm_database(n: int) -> Case:
    """A first launch answered by the tuning database, against one that searches."""
    x = mx.random.normal((n,), key=mx.random.key(1))
    folder = options.cache_dir() / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    warm_db = str(folder / f"tuning-warm-{mtriton.current_backend_name()}.json")
    mx.eval(_first_launch(x, True, warm_db))  # searches once and records the winner
    cold_db = str(folder / "tuning-never-written.json")  # use_database=False never opens it
    return Case(
        label=f"{n} f32, {len(CONFIGS)} configs",
        kernels=sys.modules[__name__],
        buffers={"x": x},
        launch=lambda kernels, buf: kernels._first_launch(buf["x"], True, warm_db),
        builtin=lambda: _first_launch(x, False, cold_db),
        reference=lambda: 3.0 * host(x),
        bytes=2 * x.nbytes,
        flops=n,
        rtol=1e-6,
        fast_reference=DeviceReference(lambda: 3.0 * x, "one float32 multiplication: one rounding"),
        external=False,
    )
