"""Tests of cuda-emu, the CPU emulator of ``mx.fast.cuda_kernel`` (metal-emu's runtime).

Kernels here are hand-written CUDA bodies; results are checked against float64 NumPy on
random inputs of odd sizes, with metal-emu's unwritten-output and race checks on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

import mtriton
from mtriton import emulator
from mtriton.backends.cuda import PRELUDE
from mtriton.emulator import SHARED_MEMORY_LIMIT, cuda_kernel

RNG = np.random.default_rng(20261126)


@pytest.fixture(autouse=True)
def _all_checks() -> Iterator[None]:
    with emulator.checks(unwritten=True, races=True):
        yield


def _run(kernel: Any, inputs: Sequence[Any], outputs: Sequence[tuple[tuple[int, ...], mx.Dtype]], grid: int,
         block: int) -> list[np.ndarray]:  # fmt: skip
    result = kernel(
        inputs=list(inputs),
        output_shapes=[shape for shape, _ in outputs],
        output_dtypes=[dtype for _, dtype in outputs],
        grid=(grid, 1, 1),
        threadgroup=(block, 1, 1),
    )
    return [np.array(r.astype(mx.float32) if r.dtype == mx.bfloat16 else r) for r in result]


def test_grid_counts_threads_and_blocks_are_whole() -> None:
    # MLX launches ceil(grid / block) whole blocks: the last one runs threads past the grid.
    n = 1000
    x = RNG.standard_normal(n).astype(np.float32)
    body = """
  unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < x_shape[0]) out[i] = 2.0f * x[i] + (float)(gridDim.x * 1000 + blockIdx.x);
"""
    (out,) = _run(cuda_kernel("affine", ["x"], ["out"], body), [mx.array(x)], [((n,), mx.float32)], n, 128)
    blocks = np.arange(n) // 128
    np.testing.assert_array_equal(out, 2 * x + (8 * 1000 + blocks).astype(np.float32))
    unguarded = cuda_kernel("unguarded", ["x"], ["out"], "out[blockIdx.x * blockDim.x + threadIdx.x] = x[0];")
    with pytest.raises(emulator.OutOfBounds, match=r"past the end of output 'out'"):
        _run(unguarded, [mx.array(x)], [((n,), mx.float32)], n, 128)


def test_warp_shuffles_and_shared_memory_reduction() -> None:
    n = 256
    x = RNG.standard_normal(n).astype(np.float32)
    body = """
  extern __shared__ float partial[];
  const unsigned int t = threadIdx.x, lane = t % 32;
  float v = x[t];
  xor_out[t] = __shfl_xor_sync(0xffffffffu, v, 5);
  up_out[t] = __shfl_up_sync(0xffffffffu, v, 3);
  down_out[t] = __shfl_down_sync(0xffffffffu, v, 7);
  idx_out[t] = __shfl_sync(0xffffffffu, v, (lane * 7) % 32);
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  if (lane == 0) partial[t / 32] = v;
  __syncthreads();
  if (t == 0) {
    float s = 0.0f;
    for (int w = 0; w < 8; ++w) s += partial[w];
    sum_out[0] = s;
  }
"""
    kernel = cuda_kernel(
        "shuffles", ["x"], ["xor_out", "up_out", "down_out", "idx_out", "sum_out"], body, shared_memory=32
    )
    shapes = [((n,), mx.float32)] * 4 + [((1,), mx.float32)]
    xor_out, up_out, down_out, idx_out, sum_out = _run(kernel, [mx.array(x)], shapes, n, n)
    t = np.arange(n)
    lane, base = t % 32, t - t % 32
    np.testing.assert_array_equal(xor_out, x[base + (lane ^ 5)])
    np.testing.assert_array_equal(up_out, np.where(lane >= 3, x[t - 3], x))
    np.testing.assert_array_equal(down_out, np.where(lane + 7 < 32, x[np.minimum(t + 7, n - 1)], x))
    np.testing.assert_array_equal(idx_out, x[base + (lane * 7) % 32])
    np.testing.assert_allclose(sum_out[0], x.astype(np.float64).sum(), rtol=1e-5)


def test_missing_barrier_is_a_race() -> None:
    body = """
  extern __shared__ float tile[];
  tile[threadIdx.x] = x[threadIdx.x];
  out[threadIdx.x] = tile[(threadIdx.x + 32) % 64];
"""
    kernel = cuda_kernel("race", ["x"], ["out"], body, shared_memory=256)
    with pytest.raises(emulator.DataRace):
        _run(kernel, [mx.array(RNG.standard_normal(64).astype(np.float32))], [((64,), mx.float32)], 64, 64)
    fixed = cuda_kernel(
        "fixed", ["x"], ["out"], body.replace("  out[", "  __syncthreads();\n  out["), shared_memory=256
    )
    x = RNG.standard_normal(64).astype(np.float32)
    (out,) = _run(fixed, [mx.array(x)], [((64,), mx.float32)], 64, 64)
    np.testing.assert_array_equal(out, np.roll(x, -32))


def test_static_shared_arrays_and_limits() -> None:
    body = """
  __shared__ float a[32], b[32];
  a[threadIdx.x] = x[threadIdx.x];
  b[threadIdx.x] = 2.0f * x[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = a[31 - threadIdx.x] + b[threadIdx.x];
"""
    x = RNG.standard_normal(32).astype(np.float32)
    (out,) = _run(cuda_kernel("static", ["x"], ["out"], body), [mx.array(x)], [((32,), mx.float32)], 32, 32)
    np.testing.assert_array_equal(out, x[::-1] + 2 * x)
    with pytest.raises(ValueError, match=r"shared_memory must be in \[0, 232448\], got 232452"):
        cuda_kernel("big", ["x"], ["out"], body, shared_memory=SHARED_MEMORY_LIMIT + 4)
    past = cuda_kernel(
        "past", ["x"], ["out"], "extern __shared__ float s[];\n  out[0] = s[64];", shared_memory=256
    )
    with pytest.raises(emulator.ThreadgroupMemoryError, match="past the end of threadgroup array 's'"):
        _run(past, [mx.array(x)], [((1,), mx.float32)], 1, 1)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_tensor_core_fragments(dtype: mx.Dtype) -> None:
    # One warp: A (16x16) and B (16x8) through shared memory, ldmatrix (x4; x2.trans) and
    # mma.sync m16n8k16 with float accumulators, in the PTX ISA's fragment layouts.
    ctype = {mx.float16: "__half", mx.bfloat16: "__nv_bfloat16"}[dtype]
    body = f"""
  extern __shared__ float4 smem[];
  {ctype}* sa = ({ctype}*)smem;
  {ctype}* sb = sa + 256;
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) sa[i] = a[i];
  for (int i = lane; i < 128; i += 32) sb[i] = b[i];
  __syncthreads();
  unsigned int ra[4], rb[2];
  // lane l addresses row l % 8 of matrix l / 8: A's quarters in fragment order, B's two halves
  mt_ldmatrix_x4(ra, sa + ((lane % 8) + 8 * ((lane / 8) % 2)) * 16 + 8 * (lane / 16));
  mt_ldmatrix_x2_trans(rb, sb + (lane % 16) * 8);
  float acc[4] = {{c[0], c[0], c[0], c[0]}};
  mt_mma_regs(acc, ra, rb, ({ctype}*)0);
  mt_mma_store(acc, out, 8);
"""
    a = RNG.standard_normal((16, 16)).astype(np.float32)
    b = RNG.standard_normal((16, 8)).astype(np.float32)
    a_in, b_in = mx.array(a).astype(dtype), mx.array(b).astype(dtype)
    kernel = cuda_kernel("mma", ["a", "b", "c"], ["out"], body, header=PRELUDE, shared_memory=768)
    (out,) = _run(kernel, [a_in, b_in, mx.array([0.5], mx.float32)], [((16, 8), mx.float32)], 32, 32)
    a64, b64 = (np.array(v.astype(mx.float32), np.float64) for v in (a_in, b_in))
    np.testing.assert_allclose(out, 0.5 + a64 @ b64, rtol=1e-5, atol=1e-5)


def test_async_copies_land_at_the_wait() -> None:
    # A read before cp.async.wait_all sees shared memory as it was (the emulator's poison, NaN).
    body = """
  extern __shared__ float4 buf[];
  float* s = (float*)buf;
  mt_cp_async<16>(s + 4 * threadIdx.x, x + 4 * threadIdx.x, threadIdx.x == 1 ? 8 : 16);
  early[threadIdx.x] = s[4 * threadIdx.x];
  mt_cp_async_wait();
  for (int j = 0; j < 4; ++j) late[4 * threadIdx.x + j] = s[4 * threadIdx.x + j];
"""
    kernel = cuda_kernel("copies", ["x"], ["early", "late"], body, header=PRELUDE, shared_memory=128)
    x = RNG.standard_normal(32).astype(np.float32)
    early, late = _run(kernel, [mx.array(x)], [((8,), mx.float32), ((32,), mx.float32)], 8, 8)
    assert np.isnan(early).all()
    expected = x.copy()
    expected[6:8] = 0.0  # thread 1 copies 8 of 16 bytes; cp.async fills the rest with zeros
    np.testing.assert_array_equal(late, expected)


def test_errors_name_the_cuda_line() -> None:
    with pytest.raises(emulator.CompileError, match=r"custom_kernel_broken\.cu:\d+"):
        _run(
            cuda_kernel("broken", ["x"], ["out"], "out[0] = x[0] +;"),
            [mx.zeros(4)],
            [((1,), mx.float32)],
            1,
            1,
        )
    body = "float v = x[0];\n  out[threadIdx.x + 1] = v;"
    with pytest.raises(emulator.OutOfBounds, match=r"CUDA line \d+\n\s+\d+ \| out\[threadIdx.x \+ 1\] = v;"):
        _run(cuda_kernel("oob", ["x"], ["out"], body), [mx.zeros(4)], [((4,), mx.float32)], 4, 4)
    with pytest.raises(ValueError, match=r"\[cuda_kernel\] unsupported dtype mlx.core.complex64"):
        _run(
            cuda_kernel("c", ["x"], ["out"], "out[0] = 0;"),
            [mx.zeros(4, mx.complex64)],
            [((1,), mx.float32)],
            1,
            1,
        )


def test_current_target_follows_the_backend() -> None:
    try:
        for name, target in (("cuda-emu", "cuda"), ("metal-emu", "metal"), ("interpreter", "interpreter")):
            mtriton.set_backend(name)
            assert mtriton.current_target() == target
    finally:
        mtriton.set_backend(None)


@pytest.mark.parametrize(
    ("access", "offsets"),
    [
        ("mt_vec<float, 4> v = *((const mt_vec<float, 4>*)(x + OFFSET));\n  out[0] = v[0];", (4, 1)),
        (
            "extern __shared__ float4 s[];\n  mt_cp_async<16>((float*)s + OFFSET, x, 16);\n  mt_cp_async_wait();",
            (4, 2),
        ),
        (
            "extern __shared__ float4 s[];\n  unsigned int r[4];\n  mt_ldmatrix_x4(r, (__half*)s + OFFSET);",
            (8, 4),
        ),
    ],
    ids=["vector", "cp.async", "ldmatrix"],
)
def test_misaligned_accesses_fault(access: str, offsets: tuple[int, int]) -> None:
    # The base of a 16-float input is 16-byte aligned (its end meets a guard page).
    aligned, misaligned = (access.replace("OFFSET", str(k)) + "\n  out[0] = 0;" for k in offsets)
    _run(cuda_kernel("aligned", ["x"], ["out"], aligned, PRELUDE, shared_memory=512), [mx.zeros(16)],
         [((1,), mx.float32)], 32, 32)  # fmt: skip
    kernel = cuda_kernel("misaligned", ["x"], ["out"], misaligned, PRELUDE, shared_memory=512)
    with pytest.raises(emulator.KernelFault, match="misaligned address"):
        _run(kernel, [mx.zeros(16)], [((1,), mx.float32)], 32, 32)


def test_a_warp_runs_ahead_until_a_barrier() -> None:
    # Warp 0 finishes its shuffle and reads warp 1's element before warp 1 has written it: on a
    # GPU nothing orders the two warps without __syncthreads, and the emulator lets warp 0 run
    # ahead, so the missing barrier shows (a SIMD-group operation is no barrier for the others).
    body = """
  extern __shared__ float s[];
  s[threadIdx.x] = x[threadIdx.x];
  float v = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1);
  out[threadIdx.x] = s[(threadIdx.x + 32) % 64] + v;
"""
    x = mx.array(RNG.standard_normal(64).astype(np.float32))
    with pytest.raises(emulator.DataRace):
        _run(
            cuda_kernel("ahead", ["x"], ["out"], body, shared_memory=256), [x], [((64,), mx.float32)], 64, 64
        )
    fixed = body.replace("  out[", "  __syncthreads();\n  out[")
    (out,) = _run(
        cuda_kernel("ahead_fixed", ["x"], ["out"], fixed, shared_memory=256),
        [x],
        [((64,), mx.float32)],
        64,
        64,
    )
    xs = np.array(x)
    np.testing.assert_array_equal(out, np.roll(xs, -32) + xs[np.arange(64) ^ 1])
