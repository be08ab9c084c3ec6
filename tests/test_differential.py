"""Hypothesis-driven differential tests: random shapes, block sizes, dtypes and op chains."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from conftest import poisoned, round_tf32, tf32_dots, to_numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtriton as triton
import mtriton.language as tl

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))

blocks = st.sampled_from([16, 32, 64, 128, 256, 512])
float_dtypes = st.sampled_from([mx.float32, mx.float16, mx.bfloat16])

# (tl op, numpy op) pairs that keep values in a tame range
CHAIN_OPS = {
    "add_y": (lambda x, y: x + y, lambda x, y: x + y),
    "mul_y": (lambda x, y: x * y, lambda x, y: x * y),
    "sub_half": (lambda x, y: x - 0.5, lambda x, y: x - 0.5),
    "max_y": (lambda x, y: tl.maximum(x, y), np.maximum),
    "where_pos": (lambda x, y: tl.where(x > 0, x, y), lambda x, y: np.where(x > 0, x, y)),
    "sigmoid": (lambda x, y: tl.sigmoid(x), lambda x, y: 1 / (1 + np.exp(-x))),
    "neg": (lambda x, y: -x, lambda x, y: -x),
}


@triton.jit
def chain_kernel(x_ptr, y_ptr, out_ptr, n, OPS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    for op in OPS:
        x = op(x, y)
    tl.store(out_ptr + offs, x, mask=mask)


@SETTINGS
@given(
    n=st.integers(1, 3000),
    block=blocks,
    dtype=float_dtypes,
    ops=st.lists(st.sampled_from(sorted(CHAIN_OPS)), min_size=1, max_size=5),
    seed=st.integers(0, 2**31),
)
def test_random_elementwise_chains(
    backend: str, n: int, block: int, dtype: mx.Dtype, ops: list[str], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = mx.array(rng.uniform(-2, 2, n).astype(np.float32)).astype(dtype)
    y = mx.array(rng.uniform(-2, 2, n).astype(np.float32)).astype(dtype)
    out = poisoned(n, dtype)
    tl_ops = tuple(CHAIN_OPS[o][0] for o in ops)
    chain_kernel[(triton.cdiv(n, block),)](x, y, out, n, OPS=tl_ops, BLOCK=block)
    xs, ys = to_numpy(x).astype(np.float64), to_numpy(y).astype(np.float64)
    for o in ops:
        xs = CHAIN_OPS[o][1](xs, ys)
    tol = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}[dtype] * 2
    np.testing.assert_allclose(to_numpy(out).astype(np.float64), xs, rtol=tol, atol=tol)


@triton.jit
def row_stats_kernel(x_ptr, sum_ptr, max_ptr, arg_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(sum_ptr + row, tl.sum(x, axis=0))
    masked = tl.where(mask, x, -float("inf"))
    tl.store(max_ptr + row, tl.max(masked, axis=0))
    tl.store(arg_ptr + row, tl.argmax(masked, axis=0))


@SETTINGS
@given(rows=st.integers(1, 40), cols=st.integers(1, 700), dtype=float_dtypes, seed=st.integers(0, 2**31))
def test_random_row_reductions(backend: str, rows: int, cols: int, dtype: mx.Dtype, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = mx.array(rng.standard_normal((rows, cols)).astype(np.float32)).astype(dtype)
    sums, maxs, args = poisoned(rows), poisoned(rows), poisoned(rows, mx.int32)
    row_stats_kernel[(rows,)](x, sums, maxs, args, cols, BLOCK=triton.next_power_of_2(cols))
    xs = to_numpy(x).astype(np.float64)
    np.testing.assert_allclose(np.array(sums), xs.sum(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.array(maxs), xs.max(1).astype(np.float32))
    np.testing.assert_array_equal(np.array(args), xs.argmax(1))


@triton.jit
def small_matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        a = tl.load(
            a_ptr + rm[:, None] * K + (k0 + rk)[None, :],
            mask=(rm[:, None] < M) & ((k0 + rk)[None, :] < K),
            other=0.0,
        )
        b = tl.load(
            b_ptr + (k0 + rk)[:, None] * N + rn[None, :],
            mask=((k0 + rk)[:, None] < K) & (rn[None, :] < N),
            other=0.0,
        )
        acc += tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@SETTINGS
@given(
    m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 70),
    bm=st.sampled_from([16, 32]), bn=st.sampled_from([16, 32]), bk=st.sampled_from([16, 32]),
    seed=st.integers(0, 2**31),
)  # fmt: skip
def test_random_matmuls(backend: str, m: int, n: int, k: int, bm: int, bn: int, bk: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = mx.array(rng.standard_normal((m, k)).astype(np.float32))
    b = mx.array(rng.standard_normal((k, n)).astype(np.float32))
    c = poisoned((m, n))
    small_matmul_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](a, b, c, m, n, k, BM=bm, BN=bn, BK=bk)
    as_f64 = round_tf32 if tf32_dots(backend) else (lambda x: np.asarray(x, np.float64))
    ref = as_f64(np.array(a)) @ as_f64(np.array(b))
    np.testing.assert_allclose(np.array(c), ref, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(
    m=st.integers(1, 100), n=st.integers(1, 100), k=st.integers(1, 150),
    bm=st.sampled_from([16, 32, 64]), bn=st.sampled_from([16, 32, 64]), bk=st.sampled_from([16, 32]),
    dtype=st.sampled_from([mx.float16, mx.bfloat16]), num_warps=st.sampled_from([1, 2, 4]),
    num_stages=st.sampled_from([1, 2, 3, 4]), seed=st.integers(0, 2**31),
)  # fmt: skip
def test_random_half_matmuls(
    backend: str, m: int, n: int, k: int, bm: int, bn: int, bk: int, dtype: mx.Dtype, num_warps: int,
    num_stages: int, seed: int,
) -> None:  # fmt: skip
    # On CUDA: tensor-core fragments where the warps tile the block, pipelined K loops (fewer
    # iterations than stages included), ragged edges everywhere.
    rng = np.random.default_rng(seed)
    a = mx.array(rng.standard_normal((m, k)).astype(np.float32)).astype(dtype)
    b = mx.array(rng.standard_normal((k, n)).astype(np.float32)).astype(dtype)
    c = poisoned((m, n))
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn))
    small_matmul_kernel[grid](
        a, b, c, m, n, k, BM=bm, BN=bn, BK=bk, num_warps=num_warps, num_stages=num_stages
    )
    a64, b64 = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    # The products are exact in float32; k float32 additions in any order are off by at most
    # k * 2**-24 * sum(|a_i b_i|) (rounding's error bound), with a factor 2 of slack.
    bound = 2 * k * 2.0**-24 * (np.abs(a64) @ np.abs(b64))
    err = np.abs(np.array(c, np.float64) - a64 @ b64)
    assert np.all(err <= bound + 1e-7), f"max error {err.max()} beyond the float32 summation bound"
