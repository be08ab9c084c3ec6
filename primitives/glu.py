"""Gated linear units: SwiGLU and GeGLU, alone and fused with their two input projections.

`swiglu(gate, up)` is `silu(gate) * up` and `geglu(gate, up)` is `gelu(gate) * up`, one pass over
memory each. `fused_swiglu(x, w_gate, w_up)` computes both projections of `x` for the same output
tile in one tiled `tl.dot` loop over the input features and applies the gate in the epilogue, so
the two (tokens, hidden) projections never reach memory. `SwiGLU`/`GeGLU` are the transformer
MLP blocks built on them.

All math is float32 whatever the storage dtype (float32, float16, bfloat16), which is kept. Kernels
read the row-major contents of their arguments: a non-contiguous input (a transposed view, say) is
copied to row-major by the launch, as MLX's custom kernels do. Each function has an
`mx.custom_function` VJP whose elementwise work is an mtriton kernel.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

import mtriton as triton
import mtriton.language as tl

from ._common import (
    FLOAT_DTYPES,
    MAX_STAGED_DOT_ELEMENTS,
    as_rows,
    check_array,
    check_like,
    check_linear_weight,
    check_ndim,
    pow2_block,
)

_SQRT1_2 = tl.constexpr(0.7071067811865476)  # 1/sqrt(2), for the exact gelu's erf
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)  # the normal density's constant
# gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
# sigmoid form needs no tanh (which Triton's core language lacks) and saturates cleanly.
_TWO_SQRT_2_OVER_PI = tl.constexpr(2 * 0.7978845608028654)
_GELU_CUBIC = tl.constexpr(0.044715)

_ELEMENTWISE_BLOCK = 1024
_GELU_FORMS = {"none": "gelu", "tanh": "gelu_tanh"}


# --------------------------------------------------------------------------- kernels


@triton.jit
def _activation(x, ACTIVATION: tl.constexpr):
    """silu, gelu or gelu_tanh of a float32 block."""
    if ACTIVATION == "silu":
        y = x * tl.sigmoid(x)
    elif ACTIVATION == "gelu":
        y = 0.5 * x * (1.0 + tl.erf(x * _SQRT1_2))
    else:
        y = x * tl.sigmoid(_TWO_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
    return y


@triton.jit
def _activation_grad(x, ACTIVATION: tl.constexpr):
    """The derivative of `_activation` at a float32 block."""
    if ACTIVATION == "silu":
        s = tl.sigmoid(x)
        dy = s * (1.0 + x * (1.0 - s))
    elif ACTIVATION == "gelu":
        dy = 0.5 * (1.0 + tl.erf(x * _SQRT1_2)) + x * _INV_SQRT_2PI * tl.exp(-0.5 * x * x)
    else:
        s = tl.sigmoid(_TWO_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
        dy = s + x * s * (1.0 - s) * _TWO_SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
    return dy


@triton.jit
def _glu_fwd_kernel(gate_ptr, up_ptr, out_ptr, n_elements, ACTIVATION: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    gate = tl.load(gate_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(up_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    out = _activation(gate, ACTIVATION) * up
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _glu_bwd_kernel(
    gate_ptr, up_ptr, d_out_ptr, d_gate_ptr, d_up_ptr, n_elements,
    ACTIVATION: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    gate = tl.load(gate_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(up_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    d_out = tl.load(d_out_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    d_gate = d_out * up * _activation_grad(gate, ACTIVATION)
    d_up = d_out * _activation(gate, ACTIVATION)
    tl.store(d_gate_ptr + offs, d_gate.to(d_gate_ptr.dtype.element_ty), mask=mask)
    tl.store(d_up_ptr + offs, d_up.to(d_up_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _project_tile(
    x_ptr, w_gate_ptr, w_up_ptr, b_gate_ptr, b_up_ptr, m, n, k,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """This program's (BLOCK_M, BLOCK_N) tile of x @ w_gate.T (+ b_gate) and x @ w_up.T (+ b_up).

    Returns the two float32 tiles and the tile's row and column indices. Programs walk the tiles
    in groups of GROUP_M rows so that neighbouring programs share weight columns in cache.
    """
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(m, BLOCK_M)
    num_pid_n = tl.cdiv(n, BLOCK_N)
    pid_m, pid_n = tl.swizzle2d(pid // num_pid_n, pid % num_pid_n, num_pid_m, num_pid_n, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # Rows and columns past the edge wrap around (their results are never stored), so only the
    # K tail needs a mask.
    rows = offs_m % m
    cols = offs_n % n
    x_ptrs = x_ptr + rows[:, None] * k + offs_k[None, :]
    # Weights are (N, K) row-major (nn.Linear): each (BLOCK_N, BLOCK_K) tile is read along its
    # contiguous rows and multiplied as tl.trans(w), which no backend moves through memory.
    w_offs = cols[:, None] * k + offs_k[None, :]
    w_gate_ptrs = w_gate_ptr + w_offs
    w_up_ptrs = w_up_ptr + w_offs
    acc_gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        k_left = k - k0
        x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        w_gate = tl.load(w_gate_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        w_up = tl.load(w_up_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        # "ieee": float32 inputs stay exact (Triton's default rounds them to TF32 on CUDA)
        acc_gate = tl.dot(x, tl.trans(w_gate), acc_gate, input_precision="ieee")
        acc_up = tl.dot(x, tl.trans(w_up), acc_up, input_precision="ieee")
        x_ptrs += BLOCK_K
        w_gate_ptrs += BLOCK_K
        w_up_ptrs += BLOCK_K
    if b_gate_ptr is not None:
        acc_gate += tl.load(b_gate_ptr + cols).to(tl.float32)[None, :]
        acc_up += tl.load(b_up_ptr + cols).to(tl.float32)[None, :]
    return acc_gate, acc_up, offs_m, offs_n


@triton.jit
def _fused_glu_fwd_kernel(
    x_ptr, w_gate_ptr, w_up_ptr, b_gate_ptr, b_up_ptr, out_ptr, m, n, k,
    ACTIVATION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    gate, up, offs_m, offs_n = _project_tile(
        x_ptr, w_gate_ptr, w_up_ptr, b_gate_ptr, b_up_ptr, m, n, k, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M
    )
    out = _activation(gate, ACTIVATION) * up
    mask = (offs_m[:, None] < m) & (offs_n[None, :] < n)
    out_ptrs = out_ptr + offs_m[:, None] * n + offs_n[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fused_glu_bwd_kernel(
    x_ptr, w_gate_ptr, w_up_ptr, b_gate_ptr, b_up_ptr, d_out_ptr, d_gate_ptr, d_up_ptr, m, n, k,
    ACTIVATION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """Recomputes the projections and writes the gradients before the activation."""
    gate, up, offs_m, offs_n = _project_tile(
        x_ptr, w_gate_ptr, w_up_ptr, b_gate_ptr, b_up_ptr, m, n, k, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M
    )
    mask = (offs_m[:, None] < m) & (offs_n[None, :] < n)
    offs = offs_m[:, None] * n + offs_n[None, :]
    d_out = tl.load(d_out_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    d_gate = d_out * up * _activation_grad(gate, ACTIVATION)
    d_up = d_out * _activation(gate, ACTIVATION)
    tl.store(d_gate_ptr + offs, d_gate.to(d_gate_ptr.dtype.element_ty), mask=mask)
    tl.store(d_up_ptr + offs, d_up.to(d_up_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- functions


def _check_pair(fn: str, gate: mx.array, up: mx.array) -> None:
    check_array(fn, "gate", gate, FLOAT_DTYPES)
    check_array(fn, "up", up, FLOAT_DTYPES)
    check_like(fn, "up", up, gate, gate.shape, "gate", like_name="gate")


def _gelu_activation(fn: str, approximate: str) -> str:
    if approximate not in _GELU_FORMS:
        raise ValueError(f"[{fn}] approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU_FORMS[approximate]


def _elementwise_grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _ELEMENTWISE_BLOCK),)


@mx.custom_function
def _glu(gate: mx.array, up: mx.array, activation: str) -> mx.array:
    out = triton.empty(gate.shape, gate.dtype)
    n = gate.size
    _glu_fwd_kernel[_elementwise_grid(n)](gate, up, out, n, ACTIVATION=activation, BLOCK=_ELEMENTWISE_BLOCK)
    return out


@_glu.vjp
def _glu_vjp(
    primals: tuple[mx.array, mx.array, str], d_out: mx.array, out: mx.array
) -> tuple[mx.array, mx.array, None]:
    gate, up, activation = primals
    d_gate, d_up = triton.empty(gate.shape, gate.dtype), triton.empty(up.shape, up.dtype)
    n = gate.size
    _glu_bwd_kernel[_elementwise_grid(n)](
        gate, up, d_out, d_gate, d_up, n, ACTIVATION=activation, BLOCK=_ELEMENTWISE_BLOCK
    )
    return d_gate, d_up, None


def _fused_config(m: int, n: int, k: int) -> dict[str, int]:
    """Tile sizes: 64x64x32, smaller for small problems; every dot dimension >= 16.

    64x64x32 stages 16 KB per dot, half of Metal's threadgroup memory, so two programs can
    share a GPU core. CUDA stages half-precision tiles in far more shared memory: 128x64x64
    with 8 warps.
    """
    if triton.current_target() == "cuda":  # half-precision tiles on the tensor cores
        block_m, block_n, block_k = pow2_block(m, 128, 16), pow2_block(n, 64, 16), pow2_block(k, 64, 16)
        return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "num_warps": 8}
    block_m, block_n, block_k = pow2_block(m, 64, 16), pow2_block(n, 64, 16), pow2_block(k, 32, 16)
    assert block_k * (block_m + block_n) <= MAX_STAGED_DOT_ELEMENTS
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8}


def _fused_launch(
    kernel: triton.JITFunction,
    x2d: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None,
    b_up: mx.array | None,
    outputs: tuple[mx.array | None, ...],
    activation: str,
) -> None:
    (m, k), n = x2d.shape, w_gate.shape[0]
    config = _fused_config(m, n, k)
    grid = (triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"]),)
    kernel[grid](x2d, w_gate, w_up, b_gate, b_up, *outputs, m, n, k, ACTIVATION=activation, **config)


@mx.custom_function
def _fused_glu(
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None,
    b_up: mx.array | None,
    activation: str,
) -> mx.array:
    hidden = w_gate.shape[0]
    x2d = as_rows(x)
    out = triton.empty((x2d.shape[0], hidden), x.dtype)
    if out.size:
        _fused_launch(_fused_glu_fwd_kernel, x2d, w_gate, w_up, b_gate, b_up, (out,), activation)
    return out.reshape(*x.shape[:-1], hidden)


@_fused_glu.vjp
def _fused_glu_vjp(
    primals: tuple[mx.array, mx.array, mx.array, mx.array | None, mx.array | None, str],
    d_out: mx.array,
    out: mx.array,
) -> tuple[mx.array | None, ...]:
    """One kernel recomputes both projections and writes the gradients before the activation
    (d_gate, d_up); the input and weight gradients are then MLX matmuls of those."""
    x, w_gate, w_up, b_gate, b_up, activation = primals
    hidden = w_gate.shape[0]
    x2d = as_rows(x)
    m = x2d.shape[0]
    d_gate, d_up = triton.empty((m, hidden), x.dtype), triton.empty((m, hidden), x.dtype)
    if d_gate.size:
        d_out2d = d_out.reshape(m, hidden)
        _fused_launch(
            _fused_glu_bwd_kernel, x2d, w_gate, w_up, b_gate, b_up, (d_out2d, d_gate, d_up), activation
        )
    d_x = (d_gate @ w_gate + d_up @ w_up).reshape(x.shape)
    d_w_gate = d_gate.T @ x2d
    d_w_up = d_up.T @ x2d
    d_b_gate = None if b_gate is None else d_gate.sum(axis=0).astype(b_gate.dtype)
    d_b_up = None if b_up is None else d_up.sum(axis=0).astype(b_up.dtype)
    return d_x, d_w_gate, d_w_up, d_b_gate, d_b_up, None


def _check_fused(
    fn: str,
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None,
    b_up: mx.array | None,
) -> None:
    check_array(fn, "x", x, FLOAT_DTYPES)
    check_ndim(fn, "x", x, 1, "(..., in_features)", at_least=True)
    hidden = check_linear_weight(fn, "w_gate", w_gate, x, "hidden")
    check_like(fn, "w_up", w_up, x, w_gate.shape, "w_gate")
    if (b_gate is None) != (b_up is None):
        raise ValueError(f"[{fn}] give both b_gate and b_up or neither")
    for name, bias in (("b_gate", b_gate), ("b_up", b_up)):
        if bias is not None:
            check_like(fn, name, bias, x, (hidden,))


def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """SwiGLU's gating, `silu(gate) * up`, in one pass.

    Args:
        gate: The gate projection, any shape, float32, float16 or bfloat16.
        up: The up projection, same shape and dtype as `gate`.

    Returns:
        `silu(gate) * up` in `gate`'s dtype, computed in float32. Differentiable.
    """
    _check_pair("swiglu", gate, up)
    return _glu(gate, up, "silu")


def geglu(gate: mx.array, up: mx.array, approximate: str = "none") -> mx.array:
    """GeGLU's gating, `gelu(gate) * up`, in one pass.

    Args:
        gate: The gate projection, any shape, float32, float16 or bfloat16.
        up: The up projection, same shape and dtype as `gate`.
        approximate: "none" for the exact erf form (`mlx.nn.gelu`), "tanh" for the tanh
            approximation (`mlx.nn.gelu_approx`).

    Returns:
        `gelu(gate) * up` in `gate`'s dtype, computed in float32. Differentiable.
    """
    activation = _gelu_activation("geglu", approximate)
    _check_pair("geglu", gate, up)
    return _glu(gate, up, activation)


def fused_swiglu(
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None = None,
    b_up: mx.array | None = None,
) -> mx.array:
    """`silu(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up)` without storing either projection.

    Args:
        x: Inputs of shape (..., in_features).
        w_gate: Gate weight, (hidden, in_features) as in `nn.Linear`.
        w_up: Up weight, same shape as `w_gate`.
        b_gate: Optional gate bias of shape (hidden,); give both biases or neither.
        b_up: Optional up bias of shape (hidden,).

    Returns:
        An array of shape (..., hidden) in `x`'s dtype. All arrays share one dtype (float32,
        float16 or bfloat16); products accumulate in float32. Differentiable: the backward
        recomputes the projections in one kernel and uses MLX matmuls for the weight gradients.
    """
    _check_fused("fused_swiglu", x, w_gate, w_up, b_gate, b_up)
    return _fused_glu(x, w_gate, w_up, b_gate, b_up, "silu")


def fused_geglu(
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None = None,
    b_up: mx.array | None = None,
    approximate: str = "none",
) -> mx.array:
    """`gelu(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up)` without storing either projection.

    Args:
        x: Inputs of shape (..., in_features).
        w_gate: Gate weight, (hidden, in_features) as in `nn.Linear`.
        w_up: Up weight, same shape as `w_gate`.
        b_gate: Optional gate bias of shape (hidden,); give both biases or neither.
        b_up: Optional up bias of shape (hidden,).
        approximate: "none" (exact erf gelu) or "tanh" (`mlx.nn.gelu_approx`).

    Returns:
        An array of shape (..., hidden) in `x`'s dtype; see `fused_swiglu`.
    """
    activation = _gelu_activation("fused_geglu", approximate)
    _check_fused("fused_geglu", x, w_gate, w_up, b_gate, b_up)
    return _fused_glu(x, w_gate, w_up, b_gate, b_up, activation)


# --------------------------------------------------------------------------- modules


class _GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with the gating fused into the two input projections."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None, bias: bool) -> None:
        super().__init__()
        out_features = in_features if out_features is None else out_features
        self.gate_proj = nn.Linear(in_features, hidden_features, bias=bias)
        self.up_proj = nn.Linear(in_features, hidden_features, bias=bias)
        self.down_proj = nn.Linear(hidden_features, out_features, bias=bias)

    def _projections(self) -> tuple[mx.array, mx.array, mx.array | None, mx.array | None]:
        gate, up = self.gate_proj, self.up_proj
        return gate.weight, up.weight, gate.get("bias"), up.get("bias")


class SwiGLU(_GatedMLP):
    """The SwiGLU MLP block of LLaMA-style transformers: `down(silu(gate(x)) * up(x))`.

    Args:
        in_features: Input (and, by default, output) feature count.
        hidden_features: Width of the gated hidden layer.
        out_features: Output feature count; `in_features` when None.
        bias: Whether the three projections have biases.

    Its `gate_proj`, `up_proj` and `down_proj` are `nn.Linear` layers, so checkpoints of that
    layout load directly.
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = False
    ) -> None:
        super().__init__(in_features, hidden_features, out_features, bias)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(fused_swiglu(x, *self._projections()))


class GeGLU(_GatedMLP):
    """The GeGLU MLP block: `down(gelu(gate(x)) * up(x))`.

    Args:
        in_features: Input (and, by default, output) feature count.
        hidden_features: Width of the gated hidden layer.
        out_features: Output feature count; `in_features` when None.
        bias: Whether the three projections have biases.
        approximate: "none" (exact erf gelu) or "tanh" (`mlx.nn.gelu_approx`).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        bias: bool = False,
        approximate: str = "none",
    ) -> None:
        super().__init__(in_features, hidden_features, out_features, bias)
        _gelu_activation("GeGLU", approximate)
        self.approximate = approximate

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(fused_geglu(x, *self._projections(), approximate=self.approximate))


# --------------------------------------------------------------------------- references


def _projections_reference(
    x: mx.array, w_gate: mx.array, w_up: mx.array, b_gate: mx.array | None, b_up: mx.array | None
) -> tuple[mx.array, mx.array]:
    """The gate and up projections of `x`, as `nn.Linear` computes them."""
    gate, up = x @ w_gate.T, x @ w_up.T
    if b_gate is not None:
        gate, up = gate + b_gate, up + b_up
    return gate, up


def swiglu_reference(gate: mx.array, up: mx.array) -> mx.array:
    """`swiglu` in plain MLX ops."""
    return nn.silu(gate) * up


def geglu_reference(gate: mx.array, up: mx.array, approximate: str = "none") -> mx.array:
    """`geglu` in plain MLX ops."""
    act = nn.gelu if _gelu_activation("geglu_reference", approximate) == "gelu" else nn.gelu_approx
    return act(gate) * up


def fused_swiglu_reference(
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None = None,
    b_up: mx.array | None = None,
) -> mx.array:
    """`fused_swiglu` in plain MLX ops (both projections materialized)."""
    return swiglu_reference(*_projections_reference(x, w_gate, w_up, b_gate, b_up))


def fused_geglu_reference(
    x: mx.array,
    w_gate: mx.array,
    w_up: mx.array,
    b_gate: mx.array | None = None,
    b_up: mx.array | None = None,
    approximate: str = "none",
) -> mx.array:
    """`fused_geglu` in plain MLX ops (both projections materialized)."""
    return geglu_reference(*_projections_reference(x, w_gate, w_up, b_gate, b_up), approximate)
