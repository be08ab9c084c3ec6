"""Suite `tutorials`: the eight kernels of `examples/tutorial_kernels.py` against MLX built-ins,
plus a copy (the run's copy bandwidth), in-place variants and dispatch costs.

Each launch is written once against a kernel module `kernels` and a dict of
buffers, so the same code launches mtriton on MLX arrays and, on CUDA, real
Triton on PyTorch tensors. Inputs come from a fixed seed; references are
float64 NumPy on the same (rounded) inputs, and on GPUs float32 MLX ops on the
device (each entry's `fast_reference` says why that is accurate enough).

`copy` runs first in every run: its `x + 0` is the copy bandwidth of the %lim
columns. The `*_inplace` entries launch on `mx.zeros_like` outputs, against the
same launch on `mtriton.empty` ones (their `fresh` column); `dispatch` and
`dispatch_busy` time `kernel[grid](...)` against the raw launch, quiet and
right after a busy phase.

GPU sizes are those the benchmark issue names; launch options follow Triton's
tutorials (e.g. 8 warps for 8192-wide rows, 128x128x64 matmul tiles).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np

import mtriton as triton
from examples import tutorial_kernels

from .. import kernels as bench_kernels
from ..registry import REGISTRY, Case, DeviceReference, Sizes, benchmark
from . import _inputs
from ._references import ATTENTION_F32_WHY, attention32, attention64, row_cumsum32, row_sum32

SHORT_DTYPE = _inputs.SHORT_DTYPE
# rtol/atol of a kernel in this dtype against a float64 reference (as tests/conftest.py).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# A float32 tl.dot rounds its inputs to TF32 (10 mantissa bits) on CUDA, as Triton's does.
TF32_TOLERANCE = 1e-3
# Why a float32 reference on the device is exact or accurate enough, per kind of entry.
EXACT = "the float32 result is exact (the kernel moves or compares values; no rounding)"
ONE_ROUNDING = "one float32 rounding per element (~6e-8 relative), far below the tolerance"
MATMUL_WHY = (
    "half-precision inputs are exact in float32 and in TF32, so products are exact and only the "
    "float32 accumulation rounds (~sqrt(k) * 6e-8 relative), far below the tolerance"
)
CUMSUM_WHY = (
    "a two-level float32 scan (within 64-column blocks, then across block totals): at 4096 "
    "columns its largest error measured 7% of the tolerance, where one sequential float32 scan "
    "(MLX's on the CPU) took 24%"
)
SOFTMAX_WHY = (
    "exponentials rounded once in float32 and summed in two levels (row_sum32): at 8192 columns "
    "its largest error measured 1.2% of the tolerance"
)
ROW_REDUCTION = (
    "float32 row means: at 8192 columns the largest error measured 4% of the tolerance (with "
    "MLX's CPU sums; the GPU's sum in trees, more accurately)"
)


def _dot_tolerance(dtype: str, default: float) -> float:
    return TF32_TOLERANCE if dtype == "float32" and triton.current_target() == "cuda" else default


# Launch settings of Triton's tutorials on H100 (FACTS.md): 128x128x64 tiles with 8 warps for
# the matmul, 128x64 query/key blocks for attention.
GPU_MATMUL = {"dtype": "float16", "block_m": 128, "block_n": 128, "block_k": 64, "num_warps": 8}
GPU_ATTENTION = {"dtype": "float16", "block_m": 128, "block_n": 64}


def _fresh(buf: dict[str, Any], name: str) -> Any:
    """A new output shaped like `buf[name]` for each call, as Triton's tutorials allocate theirs
    (`torch.empty`): on mtriton's GPU backends an `mtriton.empty` output costs no copy, where
    reusing a written array costs a copy-on-write (see mtriton/backends/gpu_launch.py)."""
    like = buf[name]
    if isinstance(like, mx.array):
        return triton.empty(like.shape, like.dtype)
    return like.new_empty(like.shape)


def _zeros(buf: dict[str, Any], name: str) -> Any:
    """A new output from `mx.zeros_like` for each call: the in-place entries' outputs, an
    existing array the kernel updates (on the GPU backends, through a copy-on-write)."""
    like = buf[name]
    if isinstance(like, mx.array):
        return mx.zeros_like(like)
    return like.new_zeros(like.shape)


Output = Callable[[dict[str, Any], str], Any]
OUTPUTS: dict[str, Output] = {"empty": _fresh, "zeros": _zeros}


def _label(*dims: int, dtype: str) -> str:
    return "x".join(str(d) for d in dims) + " " + SHORT_DTYPE[dtype]


def _case(
    buffers: dict[str, mx.array],
    launch: Callable[[ModuleType, dict[str, Any], Output], Any],
    outputs: str = "empty",
    kernels: ModuleType = tutorial_kernels,
    **fields: Any,
) -> Case:
    """A Case of a tutorial kernel, with its inputs and outputs evaluated before timing.

    Args:
        buffers: The launch's arrays.
        launch: Runs the kernel with outputs made by its third argument.
        outputs: "empty" (`mtriton.empty`, as Triton's tutorials) or "zeros" (`mx.zeros_like`,
            the in-place variant: timed beside the same launch with "empty" outputs, its
            `fresh` column; no Triton or PyTorch columns, which would repeat the base entry's).
        kernels: The module `launch` takes its kernels from.
        **fields: The rest of the Case.
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs: expected one of {', '.join(OUTPUTS)}, got {outputs!r}")
    _inputs.evaluated(buffers)
    case = Case(
        kernels=kernels,
        buffers=buffers,
        launch=lambda kernels, buf: launch(kernels, buf, OUTPUTS[outputs]),
        **fields,
    )
    if outputs == "zeros":
        case.label += " in-place"
        case.fresh = lambda: launch(kernels, buffers, _fresh)
        case.external = False
    return case


def _torch_functional() -> ModuleType:
    import torch.nn.functional

    return torch.nn.functional


def _first_sizes(sizes: Sizes) -> Sizes:
    """`sizes` with only the first CPU and GPU size: the in-place variants' sizes."""
    return Sizes(smoke=sizes.smoke, cpu=sizes.cpu[:1], gpu=sizes.gpu[:1])


COPY_SIZES = Sizes(smoke={"n": 4099, "block": 256}, cpu=({"n": 1 << 24},), gpu=({"n": 1 << 28},))


@benchmark(suite="tutorials", name="copy", bound="memory", builtin="x + 0", sizes=COPY_SIZES)
def copy(n: int, block: int = 1024) -> Case:
    """Device-to-device copy of float32 well past the last-level cache (64 MiB on CPU tiers,
    1 GiB on GPUs): its built-in column is the copy bandwidth every memory-bound entry's
    `%lim` divides by (`machine.measure_limits`), measured in the same run."""
    x = _inputs.Inputs().normal((n,))

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        y = output(buf, "y")
        kernels.copy_kernel[(triton.cdiv(n, block),)](buf["x"], y, n, BLOCK_SIZE=block)
        return y

    return _case(
        {"x": x, "y": _inputs.poisoned((n,), x.dtype)},
        launch,
        kernels=bench_kernels,
        label=_label(n, dtype="float32"),
        builtin=lambda: x + 0,  # MLX does not simplify it away: one read and one write
        reference=lambda: _inputs.host(x),
        bytes=2 * x.nbytes,
        flops=0,
        torch=lambda t: t["x"].clone(),
        fast_reference=DeviceReference(lambda: x, EXACT),
    )


COPY = REGISTRY["tutorials/copy"]

VECTOR_ADD_SIZES = Sizes(
    smoke={"n": 4099, "block": 256},
    cpu=({"n": 1 << 22}, {"n": 1 << 20}, {"n": 1 << 24}),
    gpu=({"n": 1 << 26}, {"n": 1 << 24}, {"n": 1 << 28}),
)


@benchmark(suite="tutorials", name="vector_add", bound="memory", builtin="x + y", sizes=VECTOR_ADD_SIZES)
def vector_add(n: int, dtype: str = "float32", block: int = 1024, outputs: str = "empty") -> Case:
    inputs = _inputs.Inputs()
    x, y = inputs.normal((n,), dtype), inputs.normal((n,), dtype)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        out = output(buf, "out")
        kernels.add_kernel[(triton.cdiv(n, block),)](buf["x"], buf["y"], out, n, BLOCK_SIZE=block)
        return out

    return _case(
        {"x": x, "y": y, "out": _inputs.poisoned((n,), x.dtype)},
        launch,
        outputs,
        label=_label(n, dtype=dtype),
        builtin=lambda: x + y,
        reference=lambda: _inputs.host(x) + _inputs.host(y),
        bytes=3 * x.nbytes,
        flops=n,
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: t["x"] + t["y"],
        fast_reference=DeviceReference(lambda: _inputs.f32(x) + _inputs.f32(y), ONE_ROUNDING),
    )


@benchmark(
    suite="tutorials",
    name="vector_add_inplace",
    bound="memory",
    builtin="x + y",
    sizes=_first_sizes(VECTOR_ADD_SIZES),
)
def vector_add_inplace(n: int, dtype: str = "float32", block: int = 1024) -> Case:
    """The vector add writing into `mx.zeros_like` outputs; `mt/fresh` is its time over the
    same launch with `mtriton.empty` outputs (the in-place target: 1.15x at most)."""
    return vector_add(n, dtype, block, outputs="zeros")


def _dispatch_case(n: int, dtype: str) -> Case:
    case = vector_add(n, dtype, block=1024)
    x, y = case.buffers["x"], case.buffers["y"]
    raw = tutorial_kernels.add_kernel[(triton.cdiv(n, 1024),)].raw(
        x, y, triton.empty((n,), x.dtype), n, BLOCK_SIZE=1024
    )
    case.raw = lambda: next(out for out in raw() if out is not None)
    return case


@benchmark(
    suite="tutorials",
    name="dispatch",
    bound="memory",
    builtin="x + y",
    sizes=Sizes(smoke={"n": 1000}, cpu=({"n": 4096},), gpu=({"n": 4096},)),
)
def dispatch(n: int, dtype: str = "float32") -> Case:
    """What mtriton adds per launch: a tiny vector add through `kernel[grid](...)` against the
    backend's own launch of the same compiled kernel with its arguments already built (the
    `raw` column; on GPUs the bare `mx.fast.metal_kernel`/`cuda_kernel` call), many launches
    per eval. `mt-raw` is the difference (target: 20 us at most)."""
    return _dispatch_case(n, dtype)


def _busy_phase(launches: int, churn_bytes: int) -> Callable[[], None]:
    """Work that leaves mtriton and MLX in the state of a busy program: `launches` launches of
    other tutorial kernels (row softmax, cumsum, argmax, layer norm on 2, 5 and 8 rows of 1024
    columns) and the allocation then release of `churn_bytes` in 16 arrays, evaluated before
    the timed launch."""
    inputs = _inputs.Inputs(1)
    # one width, so the phase compiles four specializations (NVRTC takes ~1 s each on the H200)
    shapes = [(rows, 1024) for rows in (2, 5, 8)]
    xs = _inputs.evaluated({f"{r}x{c}": inputs.normal((r, c)) for r, c in shapes})
    w = _inputs.evaluated({"w": inputs.normal((1024,))})["w"]
    kernels = tutorial_kernels

    def one(k: int) -> Any:
        x = xs["{}x{}".format(*shapes[k % len(shapes)])]
        rows, cols = x.shape
        block = triton.next_power_of_2(cols)
        kind = k // len(shapes) % 4
        if kind == 0:
            y = triton.empty(x.shape, x.dtype)
            kernels.softmax_kernel[(rows,)](y, x, cols, cols, rows, cols, BLOCK_SIZE=block)
            return y
        if kind == 1:
            y = triton.empty(x.shape, x.dtype)
            kernels.cumsum_kernel[(rows,)](x, y, cols, cols, BLOCK_SIZE=block)
            return y
        if kind == 2:
            y = triton.empty((rows,), mx.int32)
            kernels.argmax_kernel[(rows,)](x, y, cols, cols, BLOCK_SIZE=block)
            return y
        y, mean, rstd = triton.empty(x.shape), triton.empty((rows,)), triton.empty((rows,))
        kernels.layer_norm_fwd_kernel[(rows,)](
            x, y, w[:cols], w[:cols], mean, rstd, cols, cols, 1e-5, BLOCK_SIZE=block
        )
        return y

    def busy() -> None:
        mx.eval([one(k) for k in range(launches)])
        churn = [mx.full((churn_bytes // 64,), float(i)) for i in range(16)]
        mx.eval(churn)
        del churn

    return busy


@benchmark(
    suite="tutorials",
    name="dispatch_busy",
    bound="memory",
    builtin="x + y",
    sizes=Sizes(
        smoke={"n": 1000, "launches": 8, "churn_mib": 1},
        cpu=({"n": 4096, "launches": 36, "churn_mib": 64},),
        gpu=({"n": 4096, "launches": 144, "churn_mib": 4096},),
    ),
)
def dispatch_busy(n: int, launches: int, churn_mib: int, dtype: str = "float32") -> Case:
    """`dispatch` with every timed repeat right after a busy phase (`_busy_phase`: `launches`
    launches of other kernels, `churn_mib` MiB allocated and freed) and one launch per eval, so
    each timed launch is the first after it; `mt-raw` is the difference (target: 20 us)."""
    case = _dispatch_case(n, dtype)
    case.label += f" after {launches} launches, {churn_mib} MiB churn"
    case.before_batch = _busy_phase(launches, churn_mib << 20)
    case.launches_per_eval = 1
    case.external = False
    return case


SOFTMAX_SIZES = Sizes(
    smoke={"rows": 37, "cols": 781, "programs": 8},
    cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 1024}, {"rows": 4096, "cols": 4096}),
    gpu=({"rows": 8192, "cols": 8192, "num_warps": 8}, {"rows": 32768, "cols": 1024}),
)


@benchmark(suite="tutorials", name="softmax", bound="memory", builtin="mx.softmax", sizes=SOFTMAX_SIZES)
def softmax(
    rows: int,
    cols: int,
    dtype: str = "float32",
    programs: int | None = None,
    num_warps: int = 4,
    outputs: str = "empty",
) -> Case:
    """Row softmax. `programs` below `rows` makes each program loop over several rows."""
    x = _inputs.Inputs().normal((rows, cols), dtype, scale=3.0)
    grid = (programs or rows,)
    block = triton.next_power_of_2(cols)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        y = output(buf, "y")
        kernels.softmax_kernel[grid](
            y, buf["x"], cols, cols, rows, cols, BLOCK_SIZE=block, num_warps=num_warps
        )
        return y

    def reference() -> np.ndarray:
        x64 = _inputs.host(x)
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def reference32() -> mx.array:
        x32 = _inputs.f32(x)
        e = mx.exp(x32 - mx.max(x32, axis=1, keepdims=True))
        return e / row_sum32(e)

    return _case(
        {"x": x, "y": _inputs.poisoned(x.shape, x.dtype)},
        launch,
        outputs,
        label=_label(rows, cols, dtype=dtype),
        builtin=lambda: mx.softmax(x, axis=-1),
        reference=reference,
        bytes=2 * x.nbytes,
        flops=5 * x.size,  # max, subtract, exp, sum, divide
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype],
        torch=lambda t: t["x"].softmax(-1),
        fast_reference=DeviceReference(reference32, SOFTMAX_WHY),
    )


@benchmark(
    suite="tutorials",
    name="softmax_inplace",
    bound="memory",
    builtin="mx.softmax",
    sizes=_first_sizes(SOFTMAX_SIZES),
)
def softmax_inplace(
    rows: int, cols: int, dtype: str = "float32", programs: int | None = None, num_warps: int = 4
) -> Case:
    """The row softmax writing into `mx.zeros_like` outputs, against `mtriton.empty` ones."""
    return softmax(rows, cols, dtype, programs, num_warps, outputs="zeros")


LAYER_NORM_SIZES = Sizes(
    smoke={"rows": 17, "cols": 1000, "block": 128},
    cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4096}),
    gpu=({"rows": 8192, "cols": 8192, "block": 8192, "num_warps": 8}, {"rows": 4096, "cols": 1024}),
)


@benchmark(
    suite="tutorials", name="layer_norm", bound="memory", builtin="mx.fast.layer_norm", sizes=LAYER_NORM_SIZES
)
def layer_norm(
    rows: int,
    cols: int,
    dtype: str = "float32",
    block: int = 1024,
    num_warps: int = 4,
    outputs: str = "empty",
) -> Case:
    """Layer norm forward; the kernel also writes each row's mean and 1/std, which are checked too."""
    eps = 1e-5
    inputs = _inputs.Inputs()
    x = inputs.normal((rows, cols), dtype, scale=2.0) + 0.5
    w, b = inputs.normal((cols,), dtype), inputs.normal((cols,), dtype)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        y, mean, rstd = (output(buf, name) for name in ("y", "mean", "rstd"))
        kernels.layer_norm_fwd_kernel[(rows,)](
            buf["x"], y, buf["w"], buf["b"], mean, rstd, cols, cols, eps,
            BLOCK_SIZE=block, num_warps=num_warps,
        )  # fmt: skip
        return y, mean, rstd

    def reference() -> tuple[np.ndarray, ...]:
        x64, w64, b64 = _inputs.host(x), _inputs.host(w), _inputs.host(b)
        mean = x64.mean(axis=1)
        rstd = 1 / np.sqrt(x64.var(axis=1) + eps)
        return (x64 - mean[:, None]) * rstd[:, None] * w64 + b64, mean, rstd

    def reference32() -> tuple[mx.array, ...]:
        x32 = _inputs.f32(x)
        mean = mx.mean(x32, axis=1)
        centered = x32 - mean[:, None]
        rstd = mx.rsqrt(mx.mean(centered * centered, axis=1) + eps)
        return centered * rstd[:, None] * _inputs.f32(w) + _inputs.f32(b), mean, rstd

    return _case(
        {
            "x": x,
            "y": _inputs.poisoned(x.shape, x.dtype),
            "w": w,
            "b": b,
            "mean": _inputs.poisoned((rows,), mx.float32),
            "rstd": _inputs.poisoned((rows,), mx.float32),
        },
        launch,
        outputs,
        label=_label(rows, cols, dtype=dtype),
        builtin=lambda: mx.fast.layer_norm(x, w, b, eps),
        reference=reference,
        bytes=2 * x.nbytes + w.nbytes + b.nbytes + 2 * rows * 4,
        flops=8 * x.size,  # mean: 1, variance: 3, normalise and affine: 4
        rtol=max(TOLERANCE[dtype], 1e-4),
        atol=max(TOLERANCE[dtype], 1e-4),
        torch=lambda t: _torch_functional().layer_norm(t["x"], (cols,), t["w"], t["b"], eps),
        fast_reference=DeviceReference(
            reference32, ROW_REDUCTION + " (two passes: mean, then centred squares)"
        ),
    )


@benchmark(
    suite="tutorials",
    name="layer_norm_inplace",
    bound="memory",
    builtin="mx.fast.layer_norm",
    sizes=_first_sizes(LAYER_NORM_SIZES),
)
def layer_norm_inplace(
    rows: int, cols: int, dtype: str = "float32", block: int = 1024, num_warps: int = 4
) -> Case:
    """The layer norm writing y, mean and 1/std into `mx.zeros_like` outputs."""
    return layer_norm(rows, cols, dtype, block, num_warps, outputs="zeros")


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
    inputs = _inputs.Inputs()
    a, b = inputs.normal((m, k), dtype), inputs.normal((k, n), dtype)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        c = output(buf, "c")
        kernels.matmul_kernel[grid](
            buf["a"], buf["b"], c, m, n, k, k, 1, n, 1, n, 1,
            BLOCK_SIZE_M=block_m, BLOCK_SIZE_N=block_n, BLOCK_SIZE_K=block_k, GROUP_SIZE_M=group,
            num_warps=num_warps, num_stages=num_stages,
        )  # fmt: skip
        return c

    tol = _dot_tolerance(dtype, TOLERANCE[dtype])
    return _case(
        {"a": a, "b": b, "c": _inputs.poisoned((m, n), a.dtype)},
        launch,
        label=_label(m, n, k, dtype=dtype),
        builtin=lambda: a @ b,
        reference=lambda: _inputs.host(a) @ _inputs.host(b),
        bytes=(m * k + k * n + m * n) * a.itemsize,
        flops=2 * m * n * k,
        # Sums of k products, rounded to the output dtype: error grows like sqrt(k).
        rtol=4 * tol,
        atol=max(tol, 1e-4) * math.sqrt(k),
        torch=lambda t: t["a"] @ t["b"],
        fast_reference=DeviceReference(lambda: _inputs.f32(a) @ _inputs.f32(b), MATMUL_WHY),
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
    inputs = _inputs.Inputs()
    shape = (batch, heads, n_ctx, head_dim)
    q, k, v = (inputs.normal(shape, dtype) for _ in range(3))
    scale = 1 / math.sqrt(head_dim)
    stride_h, stride_m = n_ctx * head_dim, head_dim
    # The kernel's head axis runs over batch and heads together: the layout is contiguous.
    grid = (triton.cdiv(n_ctx, block_m), batch * heads)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        out = output(buf, "out")
        kernels.attention_fwd_kernel[grid](
            buf["q"], buf["k"], buf["v"], out, scale,
            stride_h, stride_m, stride_h, stride_m, stride_h, stride_m, stride_h, stride_m,
            n_ctx, BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=head_dim, CAUSAL=False,
            num_warps=num_warps, num_stages=num_stages,
        )  # fmt: skip
        return out

    tol = _dot_tolerance(dtype, {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}[dtype])
    return _case(
        {"q": q, "k": k, "v": v, "out": _inputs.poisoned(shape, q.dtype)},
        launch,
        label=f"B{batch} H{heads} N{n_ctx} D{head_dim} {SHORT_DTYPE[dtype]}",
        builtin=lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale),
        reference=lambda: attention64(q, k, v),
        bytes=4 * q.nbytes,
        flops=4 * batch * heads * n_ctx * n_ctx * head_dim,  # two matmuls of 2*N*N*D each
        rtol=tol,
        atol=tol,
        torch=lambda t: _torch_functional().scaled_dot_product_attention(t["q"], t["k"], t["v"], scale=scale),
        fast_reference=DeviceReference(lambda: attention32(q, k, v), ATTENTION_F32_WHY),
    )


CUMSUM_SIZES = Sizes(
    smoke={"rows": 9, "cols": 1000},
    cpu=({"rows": 4096, "cols": 1024}, {"rows": 1024, "cols": 4096}),
    gpu=({"rows": 8192, "cols": 4096, "num_warps": 8}, {"rows": 8192, "cols": 1024}),
)


@benchmark(suite="tutorials", name="cumsum", bound="memory", builtin="mx.cumsum", sizes=CUMSUM_SIZES)
def cumsum(rows: int, cols: int, dtype: str = "float32", num_warps: int = 4, outputs: str = "empty") -> Case:
    """Inclusive prefix sum along each row, one program per row."""
    x = _inputs.Inputs().normal((rows, cols), dtype)
    block = triton.next_power_of_2(cols)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        y = output(buf, "y")
        kernels.cumsum_kernel[(rows,)](buf["x"], y, cols, cols, BLOCK_SIZE=block, num_warps=num_warps)
        return y

    return _case(
        {"x": x, "y": _inputs.poisoned(x.shape, x.dtype)},
        launch,
        outputs,
        label=_label(rows, cols, dtype=dtype),
        builtin=lambda: mx.cumsum(x, axis=1),
        reference=lambda: np.cumsum(_inputs.host(x), axis=1),
        bytes=2 * x.nbytes,
        flops=x.size,
        # Partial sums of unit normals grow like sqrt(cols); so does their rounding error.
        rtol=TOLERANCE[dtype],
        atol=TOLERANCE[dtype] * math.sqrt(cols),
        torch=lambda t: t["x"].cumsum(1),
        fast_reference=DeviceReference(lambda: row_cumsum32(x), CUMSUM_WHY),
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
    x = _inputs.Inputs().integers((n,), bins)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        buf["hist"][...] = 0
        kernels.histogram_kernel[(triton.cdiv(n, block),)](
            buf["x"], buf["hist"], n, bins, BLOCK_SIZE=block, num_warps=num_warps
        )
        return buf["hist"]

    return _case(
        {"x": x, "hist": mx.zeros((bins,), mx.int32)},
        launch,
        label=f"{n} i32 {bins} bins",
        builtin=lambda: mx.zeros((bins,), mx.int32).at[x].add(1),
        # cheap at every size (np.bincount of 2^26 values), so no fast reference
        reference=lambda: np.bincount(np.array(x), minlength=bins).astype(np.float64),
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
    x = _inputs.Inputs().normal((rows, cols), dtype)

    def launch(kernels: ModuleType, buf: dict[str, Any], output: Output) -> Any:
        out = output(buf, "out")
        kernels.argmax_kernel[(rows,)](
            buf["x"], out, cols, cols, BLOCK_SIZE=triton.next_power_of_2(cols), num_warps=num_warps
        )
        return out

    return _case(
        {"x": x, "out": _inputs.poisoned((rows,), mx.int32)},
        launch,
        label=_label(rows, cols, dtype=dtype),
        builtin=lambda: mx.argmax(x, axis=1),
        reference=lambda: np.argmax(_inputs.host(x), axis=1).astype(np.float64),
        bytes=x.nbytes + rows * 4,
        flops=x.size,
        torch=lambda t: t["x"].argmax(1),
        fast_reference=DeviceReference(
            lambda: mx.argmax(x, axis=1), EXACT + "; ties do not occur in random normals"
        ),
    )


@benchmark(
    suite="tutorials",
    name="cumsum_inplace",
    bound="memory",
    builtin="mx.cumsum",
    sizes=_first_sizes(CUMSUM_SIZES),
)
def cumsum_inplace(rows: int, cols: int, dtype: str = "float32", num_warps: int = 4) -> Case:
    """The row cumsum writing into `mx.zeros_like` outputs, against `mtriton.empty` ones."""
    return cumsum(rows, cols, dtype, num_warps, outputs="zeros")
