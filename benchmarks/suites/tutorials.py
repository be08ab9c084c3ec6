"""Suite `tutorials`: the eight kernels of `examples/tutorial_kernels.py` against MLX built-ins.

Each launch is written once against a kernel module `kernels` and a dict of
buffers, so the same code launches mtriton on MLX arrays and, on CUDA, real
Triton on PyTorch tensors. Inputs come from a fixed seed; references are
float64 NumPy on the same (rounded) inputs.

GPU sizes are those the benchmark issue names; launch options follow Triton's
tutorials (e.g. 8 warps for 8192-wide rows, 128x128x64 matmul tiles).
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np

import mtriton as triton
from examples import tutorial_kernels

from ..registry import Case, Sizes, benchmark

SEED = 0
SHORT_DTYPE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int32": "i32"}
# rtol/atol of a kernel in this dtype against a float64 reference (as tests/conftest.py).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# A float32 tl.dot rounds its inputs to TF32 (10 mantissa bits) on CUDA, as Triton's does.
TF32_TOLERANCE = 1e-3


def _dot_tolerance(dtype: str, default: float) -> float:
    return TF32_TOLERANCE if dtype == "float32" and triton.current_target() == "cuda" else default


# Launch settings of Triton's tutorials on H100 (FACTS.md): 128x128x64 tiles with 8 warps for
# the matmul, 128x64 query/key blocks for attention.
GPU_MATMUL = {"dtype": "float16", "block_m": 128, "block_n": 128, "block_k": 64, "num_warps": 8}
GPU_ATTENTION = {"dtype": "float16", "block_m": 128, "block_n": 64}


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0) -> mx.array:
    return mx.array(rng.standard_normal(shape, dtype=np.float32) * scale).astype(getattr(mx, dtype))


def _host(array: mx.array) -> np.ndarray:
    """The float64 NumPy copy the reference computes on."""
    return np.array(array.astype(mx.float32), dtype=np.float64)


def _poisoned(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """An output buffer of NaN (or -1 for integers), so elements a kernel fails to write show."""
    fill = float("nan") if mx.issubdtype(dtype, mx.floating) else -1
    return mx.full(shape, fill, dtype=dtype)


def _fresh(buf: dict[str, Any], name: str) -> Any:
    """A new output shaped like `buf[name]` for each call, as Triton's tutorials allocate theirs
    (`torch.empty`): on mtriton's GPU backends an `mtriton.empty` output costs no copy, where
    reusing a written array costs a copy-on-write (see mtriton/backends/gpu_launch.py)."""
    like = buf[name]
    if isinstance(like, mx.array):
        return triton.empty(like.shape, like.dtype)
    return like.new_empty(like.shape)


def _label(*dims: int, dtype: str) -> str:
    return "x".join(str(d) for d in dims) + " " + SHORT_DTYPE[dtype]


def _case(buffers: dict[str, mx.array], **fields: Any) -> Case:
    """A Case of a tutorial kernel, with its inputs and outputs evaluated before timing."""
    mx.eval(list(buffers.values()))
    return Case(kernels=tutorial_kernels, buffers=buffers, **fields)


def _torch_functional() -> ModuleType:
    import torch.nn.functional

    return torch.nn.functional


@benchmark(
    suite="tutorials",
    name="vector_add",
    bound="memory",
    builtin="x + y",
    sizes=Sizes(
        smoke={"n": 4099, "block": 256},
        cpu=({"n": 1 << 22}, {"n": 1 << 20}, {"n": 1 << 24}),
        gpu=({"n": 1 << 26}, {"n": 1 << 24}, {"n": 1 << 28}),
    ),
)
def vector_add(n: int, dtype: str = "float32", block: int = 1024) -> Case:
    rng = np.random.default_rng(SEED)
    x, y = _randn(rng, (n,), dtype), _randn(rng, (n,), dtype)
    x64, y64 = _host(x), _host(y)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        out = _fresh(buf, "out")
        kernels.add_kernel[(triton.cdiv(n, block),)](buf["x"], buf["y"], out, n, BLOCK_SIZE=block)
        return out

    return _case(
        {"x": x, "y": y, "out": _poisoned((n,), x.dtype)},
        label=_label(n, dtype=dtype),
        launch=launch,
        builtin=lambda: x + y,
        reference=lambda: x64 + y64,
        bytes=3 * x.nbytes,
        flops=n,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: t["x"] + t["y"],
    )


@benchmark(
    suite="tutorials",
    name="dispatch",
    bound="memory",
    builtin="kernel[grid].raw(...)",
    sizes=Sizes(smoke={"n": 1000}, cpu=({"n": 4096},), gpu=({"n": 4096},)),
)
def dispatch(n: int, dtype: str = "float32") -> Case:
    """What mtriton adds per launch: a tiny vector add through `kernel[grid](...)` against the
    backend's own launch of the same compiled kernel with its arguments already built (on
    GPUs, the bare `mx.fast.metal_kernel`/`cuda_kernel` call), many launches per eval."""
    case = vector_add(n, dtype, block=1024)
    x, y = case.buffers["x"], case.buffers["y"]
    raw = tutorial_kernels.add_kernel[(triton.cdiv(n, 1024),)].raw(
        x, y, triton.empty((n,), x.dtype), n, BLOCK_SIZE=1024
    )
    return dataclasses.replace(case, builtin=lambda: next(out for out in raw() if out is not None))


@benchmark(
    suite="tutorials",
    name="softmax",
    bound="memory",
    builtin="mx.softmax",
    sizes=Sizes(
        smoke={"rows": 37, "cols": 781, "programs": 8},
        cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 1024}, {"rows": 4096, "cols": 4096}),
        gpu=({"rows": 8192, "cols": 8192, "num_warps": 8}, {"rows": 32768, "cols": 1024}),
    ),
)
def softmax(
    rows: int, cols: int, dtype: str = "float32", programs: int | None = None, num_warps: int = 4
) -> Case:
    """Row softmax. `programs` below `rows` makes each program loop over several rows."""
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (rows, cols), dtype, scale=3.0)
    x64 = _host(x)
    grid = (programs or rows,)
    block = triton.next_power_of_2(cols)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        y = _fresh(buf, "y")
        kernels.softmax_kernel[grid](
            y, buf["x"], cols, cols, rows, cols, BLOCK_SIZE=block, num_warps=num_warps
        )
        return y

    def reference() -> np.ndarray:
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return _case(
        {"x": x, "y": _poisoned(x.shape, x.dtype)},
        label=_label(rows, cols, dtype=dtype),
        launch=launch,
        builtin=lambda: mx.softmax(x, axis=-1),
        reference=reference,
        bytes=2 * x.nbytes,
        flops=5 * x.size,  # max, subtract, exp, sum, divide
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: t["x"].softmax(-1),
    )


@benchmark(
    suite="tutorials",
    name="layer_norm",
    bound="memory",
    builtin="mx.fast.layer_norm",
    sizes=Sizes(
        smoke={"rows": 17, "cols": 1000, "block": 128},
        cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4096}),
        gpu=({"rows": 8192, "cols": 8192, "block": 8192, "num_warps": 8}, {"rows": 4096, "cols": 1024}),
    ),
)
def layer_norm(rows: int, cols: int, dtype: str = "float32", block: int = 1024, num_warps: int = 4) -> Case:
    """Layer norm forward; the kernel also writes each row's mean and 1/std, which are checked too."""
    eps = 1e-5
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (rows, cols), dtype, scale=2.0) + 0.5
    w, b = _randn(rng, (cols,), dtype), _randn(rng, (cols,), dtype)
    x64, w64, b64 = _host(x), _host(w), _host(b)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        y, mean, rstd = (_fresh(buf, name) for name in ("y", "mean", "rstd"))
        kernels.layer_norm_fwd_kernel[(rows,)](
            buf["x"], y, buf["w"], buf["b"], mean, rstd, cols, cols, eps,
            BLOCK_SIZE=block, num_warps=num_warps,
        )  # fmt: skip
        return y, mean, rstd

    def reference() -> tuple[np.ndarray, ...]:
        mean = x64.mean(axis=1)
        rstd = 1 / np.sqrt(x64.var(axis=1) + eps)
        return (x64 - mean[:, None]) * rstd[:, None] * w64 + b64, mean, rstd

    return _case(
        {
            "x": x,
            "y": _poisoned(x.shape, x.dtype),
            "w": w,
            "b": b,
            "mean": _poisoned((rows,), mx.float32),
            "rstd": _poisoned((rows,), mx.float32),
        },
        label=_label(rows, cols, dtype=dtype),
        launch=launch,
        builtin=lambda: mx.fast.layer_norm(x, w, b, eps),
        reference=reference,
        bytes=2 * x.nbytes + w.nbytes + b.nbytes + 2 * rows * 4,
        flops=8 * x.size,  # mean: 1, variance: 3, normalise and affine: 4
        rtol=max(TOLERANCE[dtype], 1e-4),
        atol=max(TOLERANCE[dtype], 1e-4),
        torch=lambda t: _torch_functional().layer_norm(t["x"], (cols,), t["w"], t["b"], eps),
    )


@benchmark(
    suite="tutorials",
    name="matmul",
    bound="compute",
    builtin="a @ b",
    sizes=Sizes(
        smoke={"m": 100, "n": 75, "k": 50, "block_m": 32, "block_n": 32, "block_k": 16, "group": 2},
        cpu=(
            {"m": 512, "n": 512, "k": 512},
            {"m": 256, "n": 256, "k": 256},
            {"m": 1024, "n": 1024, "k": 1024},
        ),
        gpu=(
            {"m": 4096, "n": 4096, "k": 4096, **GPU_MATMUL},
            {"m": 8192, "n": 8192, "k": 8192, **GPU_MATMUL},
        ),
    ),
)
def matmul(
    m: int, n: int, k: int, dtype: str = "float32",
    block_m: int = 64, block_n: int = 64, block_k: int = 32, group: int = 8,
    num_warps: int = 4, num_stages: int = 3,
) -> Case:  # fmt: skip
    """Grouped-order tiled matmul, float32 accumulation."""
    rng = np.random.default_rng(SEED)
    a, b = _randn(rng, (m, k), dtype), _randn(rng, (k, n), dtype)
    a64, b64 = _host(a), _host(b)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        c = _fresh(buf, "c")
        kernels.matmul_kernel[grid](
            buf["a"], buf["b"], c, m, n, k, k, 1, n, 1, n, 1,
            BLOCK_SIZE_M=block_m, BLOCK_SIZE_N=block_n, BLOCK_SIZE_K=block_k, GROUP_SIZE_M=group,
            num_warps=num_warps, num_stages=num_stages,
        )  # fmt: skip
        return c

    tol = _dot_tolerance(dtype, TOLERANCE[dtype])
    return _case(
        {"a": a, "b": b, "c": _poisoned((m, n), a.dtype)},
        label=_label(m, n, k, dtype=dtype),
        launch=launch,
        builtin=lambda: a @ b,
        reference=lambda: a64 @ b64,
        bytes=(m * k + k * n + m * n) * a.itemsize,
        flops=2 * m * n * k,
        # Sums of k products, rounded to the output dtype: error grows like sqrt(k).
        rtol=4 * tol,
        atol=max(tol, 1e-4) * math.sqrt(k),
        torch=lambda t: t["a"] @ t["b"],
    )


@benchmark(
    suite="tutorials",
    name="attention",
    bound="compute",
    builtin="mx.fast.scaled_dot_product_attention",
    sizes=Sizes(
        smoke={"batch": 1, "heads": 3, "n_ctx": 77, "head_dim": 32, "block_m": 16, "block_n": 16},
        cpu=(
            {"batch": 1, "heads": 8, "n_ctx": 512, "head_dim": 64},
            {"batch": 1, "heads": 4, "n_ctx": 256, "head_dim": 64},
            {"batch": 1, "heads": 8, "n_ctx": 1024, "head_dim": 64},
        ),
        gpu=(
            {"batch": 4, "heads": 32, "n_ctx": 4096, "head_dim": 128, **GPU_ATTENTION, "num_warps": 8},
            {"batch": 8, "heads": 32, "n_ctx": 1024, "head_dim": 64, **GPU_ATTENTION},
        ),
    ),
)
def attention(
    batch: int, heads: int, n_ctx: int, head_dim: int, dtype: str = "float32",
    block_m: int = 64, block_n: int = 64, num_warps: int = 4, num_stages: int = 3,
) -> Case:  # fmt: skip
    """Flash-attention forward, not causal, on contiguous (batch, heads, n_ctx, head_dim) arrays."""
    rng = np.random.default_rng(SEED)
    shape = (batch, heads, n_ctx, head_dim)
    q, k, v = (_randn(rng, shape, dtype) for _ in range(3))
    q64, k64, v64 = (_host(t).reshape(batch * heads, n_ctx, head_dim) for t in (q, k, v))
    scale = 1 / math.sqrt(head_dim)
    stride_h, stride_m = n_ctx * head_dim, head_dim
    # The kernel's head axis runs over batch and heads together: the layout is contiguous.
    grid = (triton.cdiv(n_ctx, block_m), batch * heads)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        out = _fresh(buf, "out")
        kernels.attention_fwd_kernel[grid](
            buf["q"], buf["k"], buf["v"], out, scale,
            stride_h, stride_m, stride_h, stride_m, stride_h, stride_m, stride_h, stride_m,
            n_ctx, BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=head_dim, CAUSAL=False,
            num_warps=num_warps, num_stages=num_stages,
        )  # fmt: skip
        return out

    def reference() -> np.ndarray:
        # One head at a time: the full score tensor at GPU sizes would need tens of GB.
        out = np.empty_like(q64)
        for h in range(q64.shape[0]):
            s = q64[h] @ k64[h].T * scale
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[h] = (p / p.sum(axis=1, keepdims=True)) @ v64[h]
        return out.reshape(shape)

    tol = _dot_tolerance(dtype, {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}[dtype])
    return _case(
        {"q": q, "k": k, "v": v, "out": _poisoned(shape, q.dtype)},
        label=f"B{batch} H{heads} N{n_ctx} D{head_dim} {SHORT_DTYPE[dtype]}",
        launch=launch,
        builtin=lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale),
        reference=reference,
        bytes=4 * q.nbytes,
        flops=4 * batch * heads * n_ctx * n_ctx * head_dim,  # two matmuls of 2*N*N*D each
        rtol=tol,
        atol=tol,
        torch=lambda t: _torch_functional().scaled_dot_product_attention(t["q"], t["k"], t["v"], scale=scale),
    )


@benchmark(
    suite="tutorials",
    name="cumsum",
    bound="memory",
    builtin="mx.cumsum",
    sizes=Sizes(
        smoke={"rows": 9, "cols": 1000},
        cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4096}),
        gpu=({"rows": 8192, "cols": 4096, "num_warps": 8}, {"rows": 8192, "cols": 1024}),
    ),
)
def cumsum(rows: int, cols: int, dtype: str = "float32", num_warps: int = 4) -> Case:
    """Inclusive prefix sum along each row, one program per row."""
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (rows, cols), dtype)
    x64 = _host(x)
    block = triton.next_power_of_2(cols)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        y = _fresh(buf, "y")
        kernels.cumsum_kernel[(rows,)](buf["x"], y, cols, cols, BLOCK_SIZE=block, num_warps=num_warps)
        return y

    return _case(
        {"x": x, "y": _poisoned(x.shape, x.dtype)},
        label=_label(rows, cols, dtype=dtype),
        launch=launch,
        builtin=lambda: mx.cumsum(x, axis=1),
        reference=lambda: np.cumsum(x64, axis=1),
        bytes=2 * x.nbytes,
        flops=x.size,
        # Partial sums of unit normals grow like sqrt(cols); so does their rounding error.
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype] * math.sqrt(cols),
        torch=lambda t: t["x"].cumsum(1),
    )


@benchmark(
    suite="tutorials",
    name="histogram",
    bound="memory",
    builtin="mx.zeros(bins).at[x].add(1)",
    sizes=Sizes(
        smoke={"n": 5003, "bins": 64, "block": 128},
        cpu=({"n": 1 << 20, "bins": 256}, {"n": 1 << 22, "bins": 256}),
        gpu=({"n": 1 << 26, "bins": 256}, {"n": 1 << 24, "bins": 4096}),
    ),
)
def histogram(n: int, bins: int, block: int = 1024, num_warps: int = 4) -> Case:
    """Counts of int32 values in [0, bins) with atomic adds; the histogram is zeroed on every call."""
    rng = np.random.default_rng(SEED)
    x = mx.array(rng.integers(0, bins, n, dtype=np.int32))
    values = np.array(x).astype(np.int64)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        buf["hist"][...] = 0
        kernels.histogram_kernel[(triton.cdiv(n, block),)](
            buf["x"], buf["hist"], n, bins, BLOCK_SIZE=block, num_warps=num_warps
        )
        return buf["hist"]

    return _case(
        {"x": x, "hist": mx.zeros((bins,), mx.int32)},
        label=f"{n} i32 {bins} bins",
        launch=launch,
        builtin=lambda: mx.zeros((bins,), mx.int32).at[x].add(1),
        reference=lambda: np.bincount(values, minlength=bins).astype(np.float64),
        bytes=x.nbytes + bins * 4,
        flops=n,
        torch=lambda t: t["x"].bincount(minlength=bins),
    )


@benchmark(
    suite="tutorials",
    name="argmax",
    bound="memory",
    builtin="mx.argmax",
    sizes=Sizes(
        smoke={"rows": 33, "cols": 500},
        cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4096}),
        gpu=({"rows": 8192, "cols": 8192, "num_warps": 8}, {"rows": 32768, "cols": 1024}),
    ),
)
def argmax(rows: int, cols: int, dtype: str = "float32", num_warps: int = 4) -> Case:
    """Index of each row's largest element, one program per row."""
    rng = np.random.default_rng(SEED)
    x = _randn(rng, (rows, cols), dtype)
    x64 = _host(x)

    def launch(kernels: ModuleType, buf: dict[str, Any]) -> Any:
        out = _fresh(buf, "out")
        kernels.argmax_kernel[(rows,)](
            buf["x"], out, cols, cols, BLOCK_SIZE=triton.next_power_of_2(cols), num_warps=num_warps
        )
        return out

    return _case(
        {"x": x, "out": _poisoned((rows,), mx.int32)},
        label=_label(rows, cols, dtype=dtype),
        launch=launch,
        builtin=lambda: mx.argmax(x, axis=1),
        reference=lambda: np.argmax(x64, axis=1).astype(np.float64),
        bytes=x.nbytes + rows * 4,
        flops=x.size,
        torch=lambda t: t["x"].argmax(1),
    )
