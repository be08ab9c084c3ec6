"""The Triton tutorial kernels on every backend, against float64 NumPy references.

Sizes are odd so masked tails matter; outputs are poisoned before each launch.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, round_tf32, tf32_dots, to_numpy, tolerance

import mtriton as triton
from examples import tutorial_kernels as K
from mtriton.backends.cstyle.kernel import generate
from mtriton.backends.cuda.dialect import dialect_for
from mtriton.cli import build_specs
from mtriton.options import LaunchOptions

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


@pytest.mark.parametrize("dtype", [*FLOAT_DTYPES, mx.int32])
@pytest.mark.parametrize("n", [1, 1000, 4099])
def test_vector_add(backend: str, rng: np.random.Generator, dtype: mx.Dtype, n: int) -> None:
    if dtype == mx.int32:
        x = mx.array(rng.integers(-1000, 1000, n, dtype=np.int32))
        y = mx.array(rng.integers(-1000, 1000, n, dtype=np.int32))
    else:
        x, y = rand(rng, (n,), dtype), rand(rng, (n,), dtype)
    out = poisoned(n, dtype)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_SIZE"]),)
    K.add_kernel[grid](x, y, out, n, BLOCK_SIZE=256)
    expected = (f64(x) + f64(y)).astype(to_numpy(out).dtype)
    np.testing.assert_allclose(f64(out), expected, **tolerance(dtype))


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("n", [4096, 4099])
def test_vector_add_on_views_at_element_offsets(
    backend: str, rng: np.random.Generator, offset: int, n: int
) -> None:
    # Slices start inside a 16-byte word: CUDA's vector accesses must fall back to scalar ones.
    x, y = rand(rng, (n + offset,))[offset:], rand(rng, (n + 2 * offset,))[2 * offset : n + 2 * offset]
    out = poisoned(n, mx.float32)
    K.add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK_SIZE=1024)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x) + to_numpy(y))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (37, 781), (130, 64)])
def test_fused_softmax(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, int]
) -> None:
    n_rows, n_cols = shape
    x = rand(rng, shape, dtype) * 3
    y = poisoned(shape, dtype)
    block = triton.next_power_of_2(n_cols)
    num_programs = min(n_rows, 8)  # fewer programs than rows: each loops over several rows
    K.softmax_kernel[(num_programs,)](y, x, n_cols, n_cols, n_rows, n_cols, BLOCK_SIZE=block)
    ref = f64(x)
    ref = np.exp(ref - ref.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(f64(y), ref, **tolerance(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(3, 100), (17, 1000)])
def test_layer_norm_forward(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, int]
) -> None:
    m, n = shape
    x = rand(rng, shape, dtype) * 2 + 0.5
    w, b = rand(rng, (n,), dtype), rand(rng, (n,), dtype)
    y = poisoned(shape, dtype)
    mean, rstd = poisoned(m), poisoned(m)
    K.layer_norm_fwd_kernel[(m,)](x, y, w, b, mean, rstd, n, n, 1e-5, BLOCK_SIZE=128)
    xr = f64(x)
    mu = xr.mean(axis=1, keepdims=True)
    sigma = 1 / np.sqrt(xr.var(axis=1, keepdims=True) + 1e-5)
    ref = (xr - mu) * sigma * f64(w) + f64(b)
    np.testing.assert_allclose(f64(mean), mu[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f64(rstd), sigma[:, 0], rtol=1e-4, atol=1e-4)
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(y), ref, rtol=max(tol["rtol"], 1e-4), atol=max(tol["atol"], 1e-4))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mnk", [(64, 64, 64), (100, 75, 50), (33, 130, 17)])
def test_grouped_matmul(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, mnk: tuple[int, int, int]
) -> None:
    m, n, k = mnk
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    c = poisoned((m, n), dtype)
    bm, bn, bk = 32, 32, 16
    grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)
    K.matmul_kernel[grid](a, b, c, m, n, k, k, 1, n, 1, n, 1,
                          BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=2)  # fmt: skip
    if dtype == mx.float32 and tf32_dots(backend):  # Triton's default input_precision on NVIDIA
        ref = round_tf32(np.array(a)) @ round_tf32(np.array(b))
    else:
        ref = f64(a) @ f64(b)
    scale = max(1.0, math.sqrt(k))
    tol = tolerance(dtype)
    np.testing.assert_allclose(f64(c), ref, rtol=tol["rtol"] * 4, atol=max(tol["atol"], 1e-4) * scale)


@pytest.mark.parametrize("num_stages", [1, 2, 4])
@pytest.mark.parametrize("k", [20, 100])
def test_matmul_pipeline_stages(backend: str, rng: np.random.Generator, num_stages: int, k: int) -> None:
    # On CUDA the K loop's tiles are copied num_stages - 1 iterations ahead; 20 has fewer
    # iterations (2) than stages in flight, 100 a ragged last one.
    m, n = 48, 40
    a, b = rand(rng, (m, k), mx.float16), rand(rng, (k, n), mx.float16)
    c = poisoned((m, n), mx.float32)
    grid = (triton.cdiv(m, 16) * triton.cdiv(n, 32),)
    K.matmul_kernel[grid](a, b, c, m, n, k, k, 1, n, 1, n, 1, BLOCK_SIZE_M=16, BLOCK_SIZE_N=32,
                          BLOCK_SIZE_K=16, GROUP_SIZE_M=2, num_warps=2, num_stages=num_stages)  # fmt: skip
    np.testing.assert_allclose(f64(c), f64(a) @ f64(b), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("n_ctx, bm, bn", [(64, 16, 16), (77, 16, 16), (77, 64, 32)])
def test_flash_attention_forward(
    backend: str, rng: np.random.Generator, causal: bool, dtype: mx.Dtype, n_ctx: int, bm: int, bn: int
) -> None:
    # 64x32 blocks: on CUDA the scores stay in the tensor cores' layout, row max and sum included
    heads, d = 3, 32
    q, k, v = (rand(rng, (heads, n_ctx, d), dtype) for _ in range(3))
    out = poisoned((heads, n_ctx, d), dtype)
    sm_scale = 1 / math.sqrt(d)
    stride_h, stride_m = n_ctx * d, d
    grid = (triton.cdiv(n_ctx, bm), heads)
    K.attention_fwd_kernel[grid](q, k, v, out, sm_scale,
                                 stride_h, stride_m, stride_h, stride_m, stride_h, stride_m, stride_h, stride_m,
                                 n_ctx, BLOCK_M=bm, BLOCK_N=bn, HEAD_DIM=d, CAUSAL=causal)  # fmt: skip
    s = np.einsum("hmd,hnd->hmn", f64(q), f64(k)) * sm_scale
    if causal:
        s = np.where(np.tril(np.ones((n_ctx, n_ctx), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = p @ f64(v)
    # float32 on CUDA: both dots round their inputs to TF32 (~5e-4 relative each)
    tol = {mx.float32: 3e-3 if tf32_dots(backend) else 1e-4, mx.float16: 1e-2}[dtype]
    np.testing.assert_allclose(f64(out), ref, rtol=tol, atol=tol)


def _attention(rng: np.random.Generator, n_ctx: int, d: int, dtype: mx.Dtype, causal: bool, **launch: int):
    """(out, float64 reference) of the tutorial attention over 2 heads."""
    heads = 2
    q, k, v = (rand(rng, (heads, n_ctx, d), dtype) for _ in range(3))
    out = poisoned((heads, n_ctx, d), dtype)
    sm_scale = 1 / math.sqrt(d)
    stride_h, stride_m = n_ctx * d, d
    K.attention_fwd_kernel[(triton.cdiv(n_ctx, launch["BLOCK_M"]), heads)](
        q, k, v, out, sm_scale, stride_h, stride_m, stride_h, stride_m, stride_h, stride_m, stride_h, stride_m,
        n_ctx, HEAD_DIM=d, CAUSAL=causal, **launch,
    )  # fmt: skip
    s = np.einsum("hmd,hnd->hmn", f64(q), f64(k)) * sm_scale
    if causal:
        s = np.where(np.tril(np.ones((n_ctx, n_ctx), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return out, (p / p.sum(-1, keepdims=True)) @ f64(v)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_forward_eight_warps(backend: str, rng: np.random.Generator, causal: bool) -> None:
    # The benchmark's 128-row blocks and 8 warps (32 keys: Metal stages 128 x 64 scores past its
    # 32 KB of threadgroup memory): on CUDA the warps stack along the rows, so the
    # row statistics m_i and l_i live in the scores' rows (RowsLayout); 150 leaves a ragged block.
    out, ref = _attention(rng, 150, 16, mx.float16, causal, BLOCK_M=128, BLOCK_N=32, num_warps=8)
    np.testing.assert_allclose(f64(out), ref, rtol=1e-2, atol=1e-2)


def test_flash_attention_row_statistics_stay_in_registers() -> None:
    # The benchmark configuration's CUDA: none of the key loop's barriers is in the row max,
    # the row sum or their broadcasts (before the rows' layout the kernel had 14). On mma.sync
    # P feeds P @ V from registers: one barrier, the pipeline's stage hand-over; with
    # MTRITON_WGMMA both dots run on wgmma, which reads P from shared memory: two more, around it.
    sig = "*fp16,*fp16,*fp16,*fp16,fp32," + ",".join(["i32:16"] * 9)
    constexprs = {"BLOCK_M": 128, "BLOCK_N": 64, "HEAD_DIM": 128, "CAUSAL": False}
    fn = K.attention_fwd_kernel.compile_ir(build_specs(K.attention_fwd_kernel, sig, constexprs), "cuda")
    for wgmma, barriers in ((False, 1), (True, 3)):
        body = generate(fn, dialect_for(90, wgmma), LaunchOptions(num_warps=8, num_stages=3)).body
        loop = body[body.index("for (int iv") :]
        assert loop.count("__syncthreads") == barriers, (wgmma, loop)


# 3 x 4001 in 4096-wide blocks: 8 chunks of 4 per thread (4 chunks of 8 halves; on 8 warps,
# 4 of 4), each scanned in registers, then across lanes and warps at once
@pytest.mark.parametrize("dtype", [mx.float32, mx.int32, mx.float16])
@pytest.mark.parametrize("shape", [(5, 1), (9, 1000), (3, 4001)])
@pytest.mark.parametrize("warps", [4, 8])
def test_cumsum(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, int], warps: int
) -> None:
    rows, cols = shape
    if dtype == mx.int32:
        x = mx.array(rng.integers(-50, 50, shape, dtype=np.int32))
    else:
        x = rand(rng, shape, dtype)
    y = poisoned(shape, dtype)
    K.cumsum_kernel[(rows,)](x, y, cols, cols, BLOCK_SIZE=triton.next_power_of_2(cols), num_warps=warps)
    ref = np.cumsum(f64(x), axis=1)
    if dtype == mx.float16:
        np.testing.assert_allclose(f64(y), ref, rtol=2e-3, atol=0.1)  # each partial sum rounded once
        return
    # float32: a scan's error follows the running sum of magnitudes, not the value it reaches (a
    # sum of 4,000 normals that swings through 100 and back near 0.8 was 1.1e-4 off): 16 float32
    # epsilons of that sum, which a wrong order or a lost block exceeds by orders of magnitude
    bound = 1e-4 + 1e-5 * np.abs(ref) + 16 * 2.0**-24 * np.cumsum(np.abs(f64(x)), axis=1)
    error = np.abs(f64(y) - ref)
    assert (error <= bound).all(), (
        f"largest error over bound {np.max(error / bound):.3g} at {np.unravel_index(np.argmax(error / bound), error.shape)}"
    )


@pytest.mark.parametrize("n, bins", [(1000, 7), (5003, 64)])
def test_histogram_atomic_add(backend: str, rng: np.random.Generator, n: int, bins: int) -> None:
    x = mx.array(rng.integers(-2, bins + 2, n, dtype=np.int32))  # some out of range: masked off
    hist = mx.zeros((bins,), dtype=mx.int32)
    K.histogram_kernel[(triton.cdiv(n, 128),)](x, hist, n, bins, BLOCK_SIZE=128)
    xs = np.array(x)
    ref = np.bincount(xs[(xs >= 0) & (xs < bins)], minlength=bins)
    np.testing.assert_array_equal(np.array(hist), ref)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), (33, 500)])
def test_row_argmax(backend: str, rng: np.random.Generator, dtype: mx.Dtype, shape: tuple[int, int]) -> None:
    rows, cols = shape
    x = mx.array(rng.integers(-20, 20, shape).astype(np.float32)).astype(dtype)  # many ties
    out = poisoned(rows, mx.int32)
    K.argmax_kernel[(rows,)](x, out, cols, cols, BLOCK_SIZE=triton.next_power_of_2(cols))
    np.testing.assert_array_equal(np.array(out), np.argmax(f64(x), axis=1))
