"""Shape ops on high-rank blocks (a 9-D block of 2s): reshape, permute, trans with dims, view
and reshape with `can_reorder`, on every backend against NumPy, and the size of the code they
lower to (recomputed index arithmetic must not grow with the rank's nesting)."""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np
import pytest
from conftest import backend_unavailable_reason, poisoned, to_numpy

import mtriton
import mtriton.language as tl

SHAPE = (2,) * 9
NUMEL = 512
ORDER = (8, 3, 0, 6, 1, 7, 2, 5, 4)
INVERSE = tuple(int(i) for i in np.argsort(ORDER))


@mtriton.jit
def _nine_d_kernel(x_ptr, out_ptr, n, ORDER: tl.constexpr, INVERSE: tl.constexpr):
    # offsets of a 9-D block built by broadcasting, as high-rank Triton kernels index
    a = tl.arange(0, 2)
    off = (
        a[:, None, None, None, None, None, None, None, None] * 256
        + a[None, :, None, None, None, None, None, None, None] * 128
        + a[None, None, :, None, None, None, None, None, None] * 64
        + a[None, None, None, :, None, None, None, None, None] * 32
        + a[None, None, None, None, :, None, None, None, None] * 16
        + a[None, None, None, None, None, :, None, None, None] * 8
        + a[None, None, None, None, None, None, :, None, None] * 4
        + a[None, None, None, None, None, None, None, :, None] * 2
        + a[None, None, None, None, None, None, None, None, :]
    )
    mask = off < n
    x = tl.load(x_ptr + off, mask=mask, other=0)
    y = tl.permute(x, ORDER)
    # 0: the round trip, stored through the permuted offsets and mask
    tl.store(out_ptr + tl.permute(off, ORDER), y, mask=tl.permute(mask, ORDER))
    # 1: the permuted block flattened in row-major order
    flat = tl.arange(0, 512)
    tl.store(out_ptr + 512 + flat, tl.reshape(y, (512,)))
    # 2: tl.trans with dims undoes the permutation
    tl.store(out_ptr + 1024 + off, tl.trans(y, INVERSE))
    # 3: a view to another high rank, permuted back through a 2-D transpose
    v = tl.view(y, (4, 2, 8, 2, 4))
    t = tl.trans(tl.reshape(v, (32, 16)))
    tl.store(out_ptr + 1536 + tl.arange(0, 16)[:, None] * 32 + tl.arange(0, 32)[None, :], t)
    # 4: reshape with can_reorder=True (mtriton keeps row-major order), reduced and broadcast back
    r = y.reshape(8, 64, can_reorder=True)
    s = tl.sum(r, axis=1)
    tl.store(out_ptr + 2048 + flat, tl.reshape(tl.broadcast_to(s[:, None], (8, 64)), (512,)))


def _reference(x: np.ndarray, n: int) -> np.ndarray:
    full = np.zeros(NUMEL, np.float64)
    full[:n] = x[:n]
    block = full.reshape(SHAPE)
    y = block.transpose(ORDER)
    out = np.full((5, NUMEL), np.nan)
    out[0, :n] = x[:n]
    out[1] = y.reshape(-1)
    out[2] = full
    out[3] = y.reshape(32, 16).T.reshape(-1)
    out[4] = np.repeat(y.reshape(8, 64).sum(axis=1), 64)
    return out


@pytest.mark.parametrize(("dtype", "n"), [(mx.float32, 301), (mx.float16, 512), (mx.int32, 77)])
def test_nine_d_shape_ops(backend: str, rng: np.random.Generator, dtype: mx.Dtype, n: int) -> None:
    if dtype == mx.int32:
        x_np = rng.integers(-100, 100, NUMEL).astype(np.float64)
    else:
        x_np = np.round(rng.uniform(-3, 3, NUMEL) * 4) / 4  # quarters: sums of 64 are exact in float16
    x = mx.array(x_np).astype(dtype)
    out = poisoned(5 * NUMEL, dtype)
    _nine_d_kernel[(1,)](x, out, n, ORDER=ORDER, INVERSE=INVERSE)
    got = to_numpy(out).astype(np.float64).reshape(5, NUMEL)
    expected = _reference(x_np, n)
    if dtype == mx.int32:
        unwritten = to_numpy(poisoned(1, dtype)).astype(np.float64)[0]
        expected = np.where(np.isnan(expected), unwritten, expected)
    np.testing.assert_array_equal(got, expected)


def test_nine_d_code_stays_small() -> None:
    """The recomputed 9-D offsets used to nest each level's index expression in the next:
    about 30 MB of Metal that no compiler finished with. Each index is now a named local."""
    x, out = mx.zeros(NUMEL), mx.zeros(5 * NUMEL)
    entry = _nine_d_kernel.warmup(x, out, 301, ORDER=ORDER, INVERSE=INVERSE, grid=(1,))
    for target in ("metal", "cuda"):
        source = entry.asm[target]
        assert len(source) < 60_000, f"{target}: {len(source)} bytes"


def test_nine_d_compiles_quickly() -> None:
    reason = backend_unavailable_reason("metal-emu")
    if reason is not None:
        pytest.skip(reason)
    mtriton.set_backend("metal-emu")
    try:
        start = time.perf_counter()
        _nine_d_kernel[(1,)](mx.zeros(NUMEL), mx.zeros(5 * NUMEL), 9, ORDER=INVERSE, INVERSE=ORDER)
        assert time.perf_counter() - start < 60
    finally:
        mtriton.set_backend(None)
