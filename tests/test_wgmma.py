"""`tl.dot` on Hopper's warpgroup unit (wgmma): with MTRITON_WGMMA=1 the CUDA backends write it
for sm_90 (cuda-emu emulates sm_90, decoding the shared-memory descriptors and swizzles as the
PTX ISA defines them), mma.sync for shapes it cannot take, for other GPUs and by default.

Inputs are multiples of 1/4 in [-2, 2): every product and partial sum is exact in float32, so
results must equal the float64 reference exactly, whatever order the hardware sums in; a
misplaced element cannot hide in a tolerance.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import NVCC_SM90A, backend_unavailable_reason, poisoned, to_numpy

import mtriton
import mtriton.language as tl
from mtriton import backends, emulator, options
from mtriton.backends.cstyle.kernel import generate
from mtriton.backends.cuda import full_cuda_source
from mtriton.backends.cuda.dialect import CUDA, dialect_for
from mtriton.options import LaunchOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import tutorial_kernels as K  # noqa: E402

CUDA_BACKENDS = tuple(b for b in ("cuda-emu", "cuda") if backend_unavailable_reason(b) is None)


@pytest.fixture(autouse=True)
def _wgmma_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warpgroup path is opt-in (MTRITON_WGMMA, `dialect_for`): these tests take it."""
    monkeypatch.setenv("MTRITON_WGMMA", "1")


@pytest.fixture(params=CUDA_BACKENDS)
def cuda_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The CUDA backends that run here, with the emulator's race checks where it is one."""
    mtriton.set_backend(request.param)
    try:
        with emulator.checks(races=True) if request.param == "cuda-emu" else contextlib.nullcontext():
            yield request.param
    finally:
        mtriton.set_backend(None)


def quarters(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    return mx.array((rng.integers(-8, 8, size=shape) / 4).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


@mtriton.jit
def _dot_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M: tl.constexpr,
    N: tl.constexpr,
    K: tl.constexpr,
    TRANS_B: tl.constexpr,
    IN_REGS: tl.constexpr,
):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    if TRANS_B:  # b_ptr holds B's transpose, (N, K)
        b = tl.trans(tl.load(b_ptr + rn[:, None] * K + rk[None, :]))
    else:
        b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    if IN_REGS:  # operands computed in registers, staged from there (not copied from global)
        a = a * 2
        b = b * 2
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], tl.dot(a, b))


SHAPES = [  # (M, N, K, warps): one and two warpgroups, one and two 64-row tiles per warpgroup
    (64, 64, 16, 4),
    (64, 16, 32, 4),
    (64, 32, 64, 4),
    (128, 64, 64, 4),
    (128, 128, 64, 8),
    (256, 64, 32, 8),
    (128, 256, 64, 8),
]


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnkw", SHAPES)
def test_dot_on_the_warpgroup_unit(
    cuda_backend: str,
    rng: np.random.Generator,
    dtype: mx.Dtype,
    trans_b: bool,
    mnkw: tuple[int, int, int, int],
) -> None:
    m, n, k, warps = mnkw
    a = quarters(rng, (m, k), dtype)
    b = quarters(rng, (k, n), dtype)
    c = poisoned((m, n))
    _dot_kernel[(1,)](
        a, mx.array(b.T) if trans_b else b, c, M=m, N=n, K=k, TRANS_B=trans_b, IN_REGS=False, num_warps=warps
    )
    np.testing.assert_array_equal(f64(c), f64(a) @ f64(b))


@pytest.mark.parametrize("trans_b", [False, True])
def test_operands_staged_from_registers(cuda_backend: str, rng: np.random.Generator, trans_b: bool) -> None:
    m, n, k = 128, 64, 32
    a, b = quarters(rng, (m, k), mx.float16), quarters(rng, (k, n), mx.float16)
    c = poisoned((m, n))
    _dot_kernel[(1,)](
        a, mx.array(b.T) if trans_b else b, c, M=m, N=n, K=k, TRANS_B=trans_b, IN_REGS=True, num_warps=8
    )
    np.testing.assert_array_equal(f64(c), 4 * f64(a) @ f64(b))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
@pytest.mark.parametrize(
    "blocks", [(128, 128, 64, 8, 3), (64, 64, 32, 4, 3), (128, 64, 16, 4, 2), (64, 256, 32, 8, 1)]
)
def test_tutorial_matmul_ragged(
    cuda_backend: str, rng: np.random.Generator, dtype: mx.Dtype, blocks: tuple[int, int, int, int, int]
) -> None:
    # ragged M, N, K: the tiles' masked rows, columns and k-tail are zero-filled copies; the K
    # loop is pipelined (its stages feed the warpgroup unit) and carries the accumulator
    bm, bn, bk, warps, stages = blocks
    m, n, k = 2 * bm - 37, bn + 21, 3 * bk + 5
    a, b = quarters(rng, (m, k), dtype), quarters(rng, (k, n), dtype)
    c = poisoned((m, n))
    grid = (mtriton.cdiv(m, bm) * mtriton.cdiv(n, bn),)
    K.matmul_kernel[grid](a, b, c, m, n, k, k, 1, n, 1, n, 1, BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn,
                          BLOCK_SIZE_K=bk, GROUP_SIZE_M=2, num_warps=warps, num_stages=stages)  # fmt: skip
    np.testing.assert_array_equal(f64(c), f64(a) @ f64(b))


def _tutorial_matmul_ir(bm: int, bn: int, bk: int, warps: int, stages: int) -> tuple[object, LaunchOptions]:
    """The tutorial matmul's IR for f16 inputs and output at 4096^3 (the IR does not depend on
    the launch options) and the options."""
    size = 4096
    a = mx.zeros((size, size), dtype=mx.float16)
    mtriton.set_backend("interpreter")
    try:
        spec = K.matmul_kernel.warmup(a, a, a, size, size, size, size, 1, size, 1, size, 1,
                                      BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=8,
                                      grid=(1,))  # fmt: skip
    finally:
        mtriton.set_backend(None)
    return spec.fn, LaunchOptions(num_warps=warps, num_stages=stages)


def test_tutorial_config_takes_wgmma_and_others_mma_sync() -> None:
    fn, opts = _tutorial_matmul_ir(128, 128, 64, 8, 3)
    body = generate(fn, CUDA, opts)
    assert body.body.count("mt_wgmma_m64n128<1>(") == 4  # one per k-step of 16
    assert "mt_fence_proxy_async();" in body.body and "mt_wgmma_wait<0>();" in body.body
    assert "mt_mma_regs" not in body.body and "wgmma.mma_async" in body.header
    # the same kernel for a GPU before sm_90, and a shape the warpgroup unit cannot take (two warps)
    two_warps, two_warp_opts = _tutorial_matmul_ir(64, 64, 32, 2, 3)
    for other in (generate(fn, dialect_for(80), opts), generate(two_warps, CUDA, two_warp_opts)):
        assert "mt_mma_regs(" in other.body and "wgmma" not in other.body + other.header


@pytest.mark.parametrize(
    "arch, wgmma", [("", True), ("80", False), ("8.6", False), ("sm_90a", True), ("100", False)]
)
def test_the_cuda_backends_write_for_their_arch(
    monkeypatch: pytest.MonkeyPatch, arch: str, wgmma: bool
) -> None:
    # cuda-emu stands for sm_90 unless MTRITON_CUDA_ARCH says otherwise
    monkeypatch.setenv("MTRITON_CUDA_ARCH", arch)
    fn, opts = _tutorial_matmul_ir(128, 128, 64, 8, 3)
    launcher = backends.get_backend("cuda-emu").compile(fn, opts)
    assert ("mt_wgmma_m64n128" in launcher.source.body) == wgmma


def test_wgmma_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # without MTRITON_WGMMA even sm_90 gets mma.sync (the faster path measured on the H200)
    monkeypatch.delenv("MTRITON_WGMMA")
    fn, opts = _tutorial_matmul_ir(128, 128, 64, 8, 3)
    launcher = backends.get_backend("cuda-emu").compile(fn, opts)
    assert "mt_wgmma" not in launcher.source.body and "mt_mma_regs(" in launcher.source.body


def test_a_wrong_arch_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRITON_CUDA_ARCH", "hopper")
    with pytest.raises(mtriton.LaunchError, match="MTRITON_CUDA_ARCH must be a compute capability.*'hopper'"):
        options.cuda_arch()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_tutorial_config_compiles_without_spills(tmp_path: Path) -> None:
    source = tmp_path / "matmul.cu"
    source.write_text(full_cuda_source(*_tutorial_matmul_ir(128, 128, 64, 8, 3)))
    result = subprocess.run(
        ["nvcc", *NVCC_SM90A, "-Xptxas", "-v", "-c", str(source), "-o", str(tmp_path / "matmul.o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    registers = re.search(r"Used (\d+) registers", result.stderr)
    print(result.stderr)
    assert registers is not None and int(registers.group(1)) <= 255, result.stderr
    assert "0 bytes spill stores, 0 bytes spill loads" in result.stderr, result.stderr


_EMULATED_WGMMA = """
  extern __shared__ float4 smem[];
  __half* sa = (__half*)smem;
  __half* sb = sa + 64 * 16;
  for (int e = threadIdx.x; e < 64 * 16; e += 128) sa[mt_wgmma_offset<64, 32, 2>(e / 16, e % 16)] = a[e];
  for (int e = threadIdx.x; e < 16 * 16; e += 128) sb[mt_wgmma_offset<16, 32, 2>(e / 16, e % 16)] = b[e];
  mt_fence_proxy_async();
  __syncthreads();
  float d[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  mt_wgmma_fence();
  mt_wgmma_m64n16<1>(d, mt_wgmma_desc(sa, 16, 256, 32), mt_wgmma_desc(sb, 16 * 32, 256, 32), (const __half*)0);
  mt_wgmma_commit();
  if (OVERWRITE) sb[threadIdx.x] = __float2half(3.0f);  // before the wait: the GPU may not have read it
  mt_wgmma_wait<0>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int j = 0; j < 2; ++j)
    for (int r = 0; r < 4; ++r)
      out[(16 * warp + lane / 4 + 8 * (r / 2)) * 16 + 8 * j + 2 * (lane % 4) + r % 2] = d[4 * j + r];
"""


@pytest.mark.parametrize("overwrite", [False, True])
def test_emulated_wgmma_reads_operands_until_the_wait(rng: np.random.Generator, overwrite: bool) -> None:
    # One warpgroup, 64x16x16 with 32-byte swizzles, written by hand against the helpers: the
    # emulator decodes the descriptors as the PTX ISA does, and an operand written between the
    # instruction and its wait spoils the accumulators (NaN), as the GPU's late reads could.
    a, b = quarters(rng, (64, 16), mx.float16), quarters(rng, (16, 16), mx.float16)
    header = CUDA.prelude + CUDA.helpers["wgmma"]
    body = f"#define OVERWRITE {int(overwrite)}\n" + _EMULATED_WGMMA
    kernel = emulator.cuda_kernel("wgmma", ["a", "b"], ["out"], body, header=header, shared_memory=4096)
    (out,) = kernel(inputs=[a, b], output_shapes=[(64, 16)], output_dtypes=[mx.float32], grid=(128, 1, 1),
                    threadgroup=(128, 1, 1))  # fmt: skip
    if overwrite:
        assert np.isnan(np.array(out)).all()
    else:
        np.testing.assert_array_equal(np.array(out), f64(a) @ f64(b))
