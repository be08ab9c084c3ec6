"""Weight-only INT8 and INT4 quantization, and linear layers that dequantize inside the matmul.

The weight `W` of a linear layer is (out_features, in_features) = (N, K); a layer computes
`x @ W.T (+ bias)`. Three packed formats are understood:

**int8**, affine, per output row (`per_channel=True`) or per tensor:
    `w_q` int8 (..., N, K); `scale` float32 (..., N) or (); `zero_point` int8 of `scale`'s shape;
    `W = scale * (w_q - zero_point)`. The range [min(W, 0), max(W, 0)] is cut into 255 steps, so
    all 256 codes are used (a skewed row keeps twice the resolution of a symmetric code) and 0.0
    is exact (it is code `zero_point`).

**int4**, affine per group of `group_size` consecutive inputs:
    `w_q` uint8 (..., N, K/2): element 2j of a row is the low nibble of byte j, element 2j+1 the
    high nibble. `scales`, `zeros` float32 (..., N, K/group_size); `W = scales * q + zeros`, q in
    [0, 15]. `zeros` is the value of code 0, the group's minimum, as MLX's `biases`. This is
    MLX's 4-bit affine layout byte for byte: MLX packs eight nibbles into a little-endian uint32
    from the least significant bits up, so `w_q_mlx.view(mx.uint8)` is this `w_q`.

**MLX** (`mx.quantize(w, group_size, bits)`, affine, bits 4 or 8): uint32 words holding 32/bits
    codes from the least significant bits up; `W = scales * q + biases`.
    `mlx_quantized_linear` and `QuantizedLinear.from_mlx_quantized` run the kernels on those
    words directly: nothing is repacked.

Every kernel reads codes through `_dequantize_tile`, which is told the code width (`BITS`), how
many codes share one element of the packed array (`PACK`: 1 for int8, 2 for nibbles in bytes,
32/bits for MLX's words), the group length and whether the zero is a code or a float offset.
The linear kernels keep weights packed in memory and dequantize each tile in registers: a
matvec kernel for a few rows of `x` (decode) and a tiled `tl.dot` kernel otherwise (prefill).
Activations are float32, float16 or bfloat16; accumulation is float32; outputs keep `x`'s dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

import mtriton as triton
import mtriton.language as tl

from ._common import (
    FLOAT_DTYPES,
    MAX_STAGED_DOT_ELEMENTS,
    as_rows,
    check_array,
    check_dtype,
    check_ndim,
    check_shape,
    pow2_block,
    tile_rows,
)

# Up to this many rows of x use the matvec kernel (decode); more use the tiled tl.dot kernel.
MATVEC_MAX_ROWS = 8
# Metal's tiles fit its threadgroup memory (MAX_STAGED_DOT_ELEMENTS). CUDA's tensor-core dot
# stages half-precision tiles in up to 200 KB of shared memory: larger tiles, more warps.
_MATMUL_BLOCKS = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}
_CUDA_MATMUL_BLOCKS = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8}
assert (
    _MATMUL_BLOCKS["BLOCK_K"] * (_MATMUL_BLOCKS["BLOCK_M"] + _MATMUL_BLOCKS["BLOCK_N"])
    <= MAX_STAGED_DOT_ELEMENTS
)
# A matvec program reads BLOCK_N rows of W: few rows, long chunks, so that a 4096-row W gives
# a thousand programs to stream it.
_MATVEC_BLOCK_N, _MATVEC_BLOCK_K = 4, 512
_ELEMENTWISE_BLOCK = 1024


# --------------------------------------------------------------------------- kernels


@triton.jit
def _dequantize_tile(
    w_ptr, s_ptr, z_ptr, rows, cols, mask, stride_w, stride_sr, stride_sg,
    BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr, ZERO_IS_CODE: tl.constexpr,
):  # fmt: skip
    # Index arithmetic on the loads rather than join/reshape of unpacked halves: each element
    # reads its own container (neighbours hit the same address) and no data crosses threads.
    word = tl.load(w_ptr + rows * stride_w + cols // PACK, mask=mask, other=0)
    if PACK == 1:
        q = word.to(tl.float32)  # int8 codes
    else:
        q = ((word >> ((cols % PACK) * BITS)) & ((1 << BITS) - 1)).to(tl.float32)
    # Scales are loaded per element, not as a row vector broadcast over the tile: a broadcast
    # of loaded data would be staged through threadgroup memory, repeated loads hit the cache.
    if GROUP == 0:  # one scale per row, or one in all (int8): the same along a row
        params = rows * stride_sr + 0 * cols
    else:
        params = rows * stride_sr + (cols // GROUP) * stride_sg
    scale = tl.load(s_ptr + params, mask=mask, other=0.0).to(tl.float32)
    zero = tl.load(z_ptr + params, mask=mask, other=0)
    if ZERO_IS_CODE:
        w = (q - zero.to(tl.float32)) * scale
    else:
        w = q * scale + zero.to(tl.float32)
    return w


@triton.jit
def _dequantize_kernel(
    out_ptr, n_rows, k, w_ptr, s_ptr, z_ptr, stride_w, stride_sr, stride_sg,
    BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr, ZERO_IS_CODE: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < k)
    w = _dequantize_tile(
        w_ptr, s_ptr, z_ptr, rows[:, None], cols[None, :], mask, stride_w, stride_sr, stride_sg,
        BITS, PACK, GROUP, ZERO_IS_CODE,
    )  # fmt: skip
    tl.store(out_ptr + rows[:, None] * k + cols[None, :], w.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _qmatvec_kernel(
    x_ptr, b_ptr, y_ptr, n, k, w_ptr, s_ptr, z_ptr, stride_w, stride_sr, stride_sg,
    BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr, ZERO_IS_CODE: tl.constexpr,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """y[row] = W @ x[row] for BLOCK_N of the n outputs and one row of x per program."""
    row = tl.program_id(1)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    # Partial products stay elementwise across the K loop; one reduction at the end.
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask = (offs_n[:, None] < n) & (offs_k[None, :] < k)
        w = _dequantize_tile(
            w_ptr, s_ptr, z_ptr, offs_n[:, None], offs_k[None, :], mask, stride_w, stride_sr, stride_sg,
            BITS, PACK, GROUP, ZERO_IS_CODE,
        )  # fmt: skip
        # x read at the tile's shape (a pure address broadcast) for the same reason as scales.
        x = tl.load(x_ptr + row * k + offs_k[None, :] + 0 * offs_n[:, None], mask=mask, other=0.0)
        acc += w * x.to(tl.float32)
    y = tl.sum(acc, axis=1)
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=offs_n < n, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * n + offs_n, y.to(y_ptr.dtype.element_ty), mask=offs_n < n)


@triton.jit
def _qmatmul_kernel(
    x_ptr, b_ptr, y_ptr, m, n, k, w_ptr, s_ptr, z_ptr, stride_w, stride_sr, stride_sg,
    BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr, ZERO_IS_CODE: tl.constexpr,
    HAS_BIAS: tl.constexpr, HALF_DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """y = x @ W.T on (BLOCK_M, BLOCK_N) tiles; each W tile is dequantized to float32 for tl.dot
    (HALF_DOT, for a float16/bfloat16 x on CUDA: split into two terms of x's dtype)."""
    # Grouped program order, as in Triton's matmul tutorial: neighbours share W tiles in cache.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(m, BLOCK_M)
    num_pid_n = tl.cdiv(n, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x_mask = (offs_m[:, None] < m) & (offs_k[None, :] < k)
        x = tl.load(x_ptr + offs_m[:, None] * k + offs_k[None, :], mask=x_mask, other=0.0)
        # The (BLOCK_N, BLOCK_K) tile of W, read along its packed rows, multiplied as tl.trans
        # (the dots stage it transposed; nothing moves it otherwise).
        w_mask = (offs_n[:, None] < n) & (offs_k[None, :] < k)
        w = _dequantize_tile(
            w_ptr, s_ptr, z_ptr, offs_n[:, None], offs_k[None, :], w_mask, stride_w, stride_sr, stride_sg,
            BITS, PACK, GROUP, ZERO_IS_CODE,
        )  # fmt: skip
        if HALF_DOT:
            # Tensor cores take x as it is and W as two half-precision terms, w = hi + lo with
            # lo the rounding error of hi: float32-accurate weights in two fast dots.
            w_hi = w.to(x.dtype)
            acc = tl.dot(x, tl.trans(w_hi), acc)
            acc = tl.dot(x, tl.trans((w - w_hi.to(tl.float32)).to(x.dtype)), acc)
        else:
            acc = tl.dot(x.to(tl.float32), tl.trans(w), acc, input_precision="ieee")
    if HAS_BIAS:  # loaded at the tile's shape, as x in the matvec
        bias = tl.load(b_ptr + offs_n[None, :] + 0 * offs_m[:, None], mask=offs_n[None, :] < n, other=0.0)
        acc += bias.to(tl.float32)
    y_mask = (offs_m[:, None] < m) & (offs_n[None, :] < n)
    tl.store(y_ptr + offs_m[:, None] * n + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=y_mask)


@triton.jit
def _row_range_kernel(w_ptr, lo_ptr, hi_ptr, k, BLOCK_K: tl.constexpr):
    """min(row, 0) and max(row, 0) of each row."""
    row = tl.program_id(0)
    # Starting both at zero puts 0.0 inside the range and makes masked lanes harmless.
    lo = tl.zeros((BLOCK_K,), dtype=tl.float32)
    hi = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(w_ptr + row * k + offs_k, mask=offs_k < k, other=0.0).to(tl.float32)
        lo = tl.minimum(lo, w)
        hi = tl.maximum(hi, w)
    tl.store(lo_ptr + row, tl.min(lo, axis=0))
    tl.store(hi_ptr + row, tl.max(hi, axis=0))


@triton.jit
def _quantize_int8_kernel(
    w_ptr, lo_ptr, hi_ptr, q_ptr, s_ptr, zp_ptr, k, stride_range, BLOCK_K: tl.constexpr
):  # fmt: skip
    """Affine int8 codes of one row from its range (`stride_range` 0: one range for all rows)."""
    row = tl.program_id(0)
    lo = tl.load(lo_ptr + row * stride_range)
    hi = tl.load(hi_ptr + row * stride_range)
    scale = tl.div_rn(hi - lo, 255.0)
    scale = tl.where(scale > 0.0, scale, 1.0)  # an all-zero row: any scale, every code is zp
    zp = tl.clamp(tl.floor(-128.0 - tl.div_rn(lo, scale) + 0.5), -128.0, 127.0)
    tl.store(s_ptr + row, scale)
    tl.store(zp_ptr + row, zp.to(tl.int8))
    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(w_ptr + row * k + offs_k, mask=offs_k < k, other=0.0).to(tl.float32)
        q = tl.clamp(tl.floor(tl.div_rn(w, scale) + 0.5) + zp, -128.0, 127.0)
        tl.store(q_ptr + row * k + offs_k, q.to(tl.int8), mask=offs_k < k)


@triton.jit
def _quantize_int4_kernel(
    w_ptr, q_ptr, s_ptr, z_ptr, n_groups,
    GROUP: tl.constexpr, HALF_BLOCK: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    """Affine 4-bit codes of BLOCK_R groups (rows of GROUP elements), packed two per byte."""
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_j = tl.arange(0, HALF_BLOCK)
    pair = offs_j[None, :] < GROUP // 2
    mask = (offs_r[:, None] < n_groups) & pair
    # Even and odd elements are loaded apart: they become the low and high nibbles of a byte.
    even_ptrs = w_ptr + offs_r[:, None] * GROUP + 2 * offs_j[None, :]
    even = tl.load(even_ptrs, mask=mask, other=0.0).to(tl.float32)
    odd = tl.load(even_ptrs + 1, mask=mask, other=0.0).to(tl.float32)
    lo = tl.minimum(tl.min(tl.where(pair, even, float("inf")), axis=1),
                    tl.min(tl.where(pair, odd, float("inf")), axis=1))  # fmt: skip
    hi = tl.maximum(tl.max(tl.where(pair, even, -float("inf")), axis=1),
                    tl.max(tl.where(pair, odd, -float("inf")), axis=1))  # fmt: skip
    scale = tl.div_rn(hi - lo, 15.0)
    scale = tl.where(scale > 0.0, scale, 1.0)  # a constant group: every code is 0
    q_even = tl.clamp(tl.floor(tl.div_rn(even - lo[:, None], scale[:, None]) + 0.5), 0.0, 15.0).to(tl.int32)
    q_odd = tl.clamp(tl.floor(tl.div_rn(odd - lo[:, None], scale[:, None]) + 0.5), 0.0, 15.0).to(tl.int32)
    packed = (q_even | (q_odd << 4)).to(tl.uint8)
    tl.store(q_ptr + offs_r[:, None] * (GROUP // 2) + offs_j[None, :], packed, mask=mask)
    tl.store(s_ptr + offs_r, scale, mask=offs_r < n_groups)
    tl.store(z_ptr + offs_r, lo, mask=offs_r < n_groups)


# --------------------------------------------------------------------------- functions


def _check_codes(fn: str, w_q: object, dtype: mx.Dtype, in_axis: str, stacked: bool) -> None:
    """`w_q` must be packed codes of `dtype`, (out_features, in_axis), with leading axes if `stacked`."""
    check_array(fn, "w_q", w_q)
    layout = f"(..., out_features, {in_axis})" if stacked else f"(out_features, {in_axis})"
    check_ndim(fn, "w_q", w_q, 2, layout, at_least=stacked)
    check_dtype(fn, "w_q", w_q, (dtype,))


def _check_weight(fn: str, w: object) -> None:
    """`w` must be a float weight to quantize, (..., out_features, in_features)."""
    check_array(fn, "w", w, FLOAT_DTYPES)
    check_ndim(fn, "w", w, 2, "(..., out_features, in_features)", at_least=True)


def _check_group(fn: str, group_size: int, in_features: int, even: bool = True) -> None:
    if not isinstance(group_size, int) or group_size <= 0:
        raise ValueError(f"[{fn}] group_size must be a positive int; got {group_size!r}")
    if in_features % group_size:
        raise ValueError(f"[{fn}] group_size {group_size} does not divide in_features {in_features}")
    if even and group_size % 2:
        raise ValueError(f"[{fn}] group_size {group_size} must be even: two 4-bit codes share a byte")


@dataclass(frozen=True)
class _Packed:
    """A packed weight as the kernels address it: W[n, k] from codes, scales and zeros."""

    codes: mx.array
    scales: mx.array
    zeros: mx.array
    rows: int  # N (all leading axes of the weight)
    in_features: int  # K
    stride_w: int  # packed elements per row
    stride_sr: int  # scale elements per row (0: one scale for the whole tensor)
    stride_sg: int  # scale elements per group (0: one group per row)
    bits: int
    pack: int  # codes per packed element
    group: int
    zero_is_code: bool

    def meta(self) -> dict[str, int | bool]:
        return {"BITS": self.bits, "PACK": self.pack, "GROUP": self.group, "ZERO_IS_CODE": self.zero_is_code}

    def args(self) -> tuple[mx.array | int, ...]:
        # Kernels address parameters through pointers: a 0-d array becomes a 1-element one.
        arrays = (a.reshape(-1) for a in (self.codes, self.scales, self.zeros))
        return (*arrays, self.stride_w, self.stride_sr, self.stride_sg)


def _dequantize(packed: _Packed, shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    rows, k = packed.rows, packed.in_features
    out = triton.empty((rows, k), dtype)
    block_k = pow2_block(k, 128)
    block_r = tile_rows(_ELEMENTWISE_BLOCK, block_k)
    grid = (triton.cdiv(rows, block_r), triton.cdiv(k, block_k))
    _dequantize_kernel[grid](out, rows, k, *packed.args(), **packed.meta(), BLOCK_R=block_r, BLOCK_K=block_k)
    return out.reshape(shape)


def _linear(fn: str, x: mx.array, packed: _Packed, bias: mx.array | None) -> mx.array:
    """x @ W.T (+ bias) for any leading shape of x, with the kernel that suits the row count."""
    check_array(fn, "x", x, FLOAT_DTYPES)
    n, k = packed.rows, packed.in_features
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"[{fn}] x has shape {tuple(x.shape)}; expected (..., {k}) to match in_features {k}")
    if bias is not None:
        check_array(fn, "bias", bias, FLOAT_DTYPES)
        check_shape(fn, "bias", bias, (n,))
    x2 = as_rows(x)
    m = x2.shape[0]
    y = triton.empty((m, n), x.dtype)
    if m <= MATVEC_MAX_ROWS:
        block_n = pow2_block(n, _MATVEC_BLOCK_N)
        block_k = pow2_block(k, _MATVEC_BLOCK_K, 16)
        _qmatvec_kernel[(triton.cdiv(n, block_n), m)](
            x2, bias, y, n, k, *packed.args(), **packed.meta(),
            HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_K=block_k,
        )  # fmt: skip
    else:
        blocks = _CUDA_MATMUL_BLOCKS if triton.current_target() == "cuda" else _MATMUL_BLOCKS
        grid = (triton.cdiv(m, blocks["BLOCK_M"]) * triton.cdiv(n, blocks["BLOCK_N"]),)
        _qmatmul_kernel[grid](
            x2, bias, y, m, n, k, *packed.args(), **packed.meta(),
            HAS_BIAS=bias is not None, HALF_DOT=x.dtype != mx.float32 and blocks is _CUDA_MATMUL_BLOCKS,
            **blocks,
        )  # fmt: skip
    return y.reshape(*x.shape[:-1], n)


def _int8_packed(
    fn: str, w_q: mx.array, scale: mx.array, zero_point: mx.array, stacked: bool = True
) -> _Packed:
    _check_codes(fn, w_q, mx.int8, "in_features", stacked)
    check_array(fn, "scale", scale, FLOAT_DTYPES)
    check_array(fn, "zero_point", zero_point, (mx.int8,))
    per_row = w_q.shape[:-1]
    if tuple(scale.shape) not in ((), tuple(per_row)):
        raise ValueError(
            f"[{fn}] scale has shape {tuple(scale.shape)}; expected () or {tuple(per_row)} (one per output row)"
        )
    check_shape(fn, "zero_point", zero_point, scale.shape)
    k = w_q.shape[-1]
    # One group per row (GROUP 0: no column term); per tensor, every row reads scale[0].
    return _Packed(
        w_q, scale, zero_point, rows=math.prod(per_row), in_features=k, stride_w=k,
        stride_sr=int(scale.ndim > 0), stride_sg=0, bits=8, pack=1, group=0, zero_is_code=True,
    )  # fmt: skip


def _grouped_packed(
    fn: str,
    w_q: mx.array,
    scales: mx.array,
    zeros: mx.array,
    group_size: int,
    stacked: bool,
    *,
    zeros_name: str,
    dtype: mx.Dtype,
    bits: int,
    pack: int,
    in_axis: str,
) -> _Packed:
    """Codes of `bits` bits, `pack` to an element of `w_q` (of `dtype`, its last axis `in_axis`),
    with a float scale and zero (the argument `zeros_name`) per group of `group_size` inputs."""
    _check_codes(fn, w_q, dtype, in_axis, stacked)
    k = pack * w_q.shape[-1]
    _check_group(fn, group_size, k, even=dtype == mx.uint8)
    check_array(fn, "scales", scales, FLOAT_DTYPES)
    check_array(fn, zeros_name, zeros, FLOAT_DTYPES)
    groups = k // group_size
    check_shape(fn, "scales", scales, (*w_q.shape[:-1], groups))
    check_shape(fn, zeros_name, zeros, scales.shape)
    return _Packed(
        w_q, scales, zeros, rows=math.prod(w_q.shape[:-1]), in_features=k, stride_w=w_q.shape[-1],
        stride_sr=groups, stride_sg=1, bits=bits, pack=pack, group=group_size, zero_is_code=False,
    )  # fmt: skip


def _int4_packed(
    fn: str, w_q: mx.array, scales: mx.array, zeros: mx.array, group_size: int, stacked: bool = True
) -> _Packed:
    return _grouped_packed(
        fn, w_q, scales, zeros, group_size, stacked,
        zeros_name="zeros", dtype=mx.uint8, bits=4, pack=2, in_axis="in_features / 2",
    )  # fmt: skip


def _mlx_packed(
    fn: str,
    w_q: mx.array,
    scales: mx.array,
    biases: mx.array,
    group_size: int,
    bits: int,
    stacked: bool = True,
) -> _Packed:
    if bits not in (4, 8):
        raise ValueError(f"[{fn}] bits must be 4 or 8; got {bits!r}")
    return _grouped_packed(
        fn, w_q, scales, biases, group_size, stacked,
        zeros_name="biases", dtype=mx.uint32, bits=bits, pack=32 // bits, in_axis="in_features * bits / 32",
    )  # fmt: skip


def quantize_int8(w: mx.array, per_channel: bool = True) -> tuple[mx.array, mx.array, mx.array]:
    """Quantizes a weight to affine int8: `w ≈ scale * (w_q - zero_point)`.

    Args:
        w: Float weight of shape (..., out_features, in_features).
        per_channel: One scale and zero point per output row (the last axis but one, and any
            leading axes); otherwise one for the whole tensor.

    Returns:
        `(w_q, scale, zero_point)`: int8 codes of `w`'s shape, float32 scales and int8 zero points
        of shape `w.shape[:-1]` (per channel) or `()` (per tensor). Every element is within
        `scale / 2` of its dequantized value.
    """
    fn = "quantize_int8"
    _check_weight(fn, w)
    k = w.shape[-1]
    rows = math.prod(w.shape[:-1])
    block_k = pow2_block(k, _ELEMENTWISE_BLOCK)
    lo, hi = triton.empty((rows,)), triton.empty((rows,))
    _row_range_kernel[(rows,)](w, lo, hi, k, BLOCK_K=block_k)
    if not per_channel:
        lo, hi = mx.min(lo, keepdims=True), mx.max(hi, keepdims=True)
    codes, scale, zero_point = (
        triton.empty(w.shape, mx.int8),
        triton.empty((rows,)),
        triton.empty((rows,), mx.int8),
    )
    _quantize_int8_kernel[(rows,)](w, lo, hi, codes, scale, zero_point, k, int(per_channel), BLOCK_K=block_k)
    if not per_channel:
        return codes, scale[0], zero_point[0]
    return codes, scale.reshape(w.shape[:-1]), zero_point.reshape(w.shape[:-1])


def dequantize_int8(
    w_q: mx.array, scale: mx.array, zero_point: mx.array, dtype: mx.Dtype | None = None
) -> mx.array:
    """`scale * (w_q - zero_point)`, the inverse of `quantize_int8`.

    Args:
        w_q: int8 codes, shape (..., out_features, in_features).
        scale: Float scales of shape `w_q.shape[:-1]` or `()`.
        zero_point: int8 zero points of `scale`'s shape.
        dtype: Output dtype; `scale`'s by default.

    Returns:
        The float weight, shaped as `w_q`.
    """
    packed = _int8_packed("dequantize_int8", w_q, scale, zero_point)
    return _dequantize(packed, w_q.shape, dtype or scale.dtype)


def quantize_int4(w: mx.array, group_size: int = 128) -> tuple[mx.array, mx.array, mx.array]:
    """Quantizes a weight to affine 4-bit codes per group, packed two per byte.

    Args:
        w: Float weight of shape (..., out_features, in_features).
        group_size: Consecutive inputs sharing a scale and zero; must be even and divide
            in_features.

    Returns:
        `(w_q, scales, zeros)`: uint8 of shape (..., out, in/2) with element 2j of a row in the
        low nibble of byte j and element 2j+1 in the high nibble; float32 scales and zeros of
        shape (..., out, in/group_size), `w ≈ scales * q + zeros`. Every element is within
        `scale / 2` of its dequantized value.
    """
    fn = "quantize_int4"
    _check_weight(fn, w)
    k = w.shape[-1]
    _check_group(fn, group_size, k)
    n_groups = math.prod(w.shape) // group_size
    half_block = triton.next_power_of_2(group_size // 2)
    block_r = tile_rows(_ELEMENTWISE_BLOCK, half_block)
    w_q = triton.empty((*w.shape[:-1], k // 2), mx.uint8)
    scales, zeros = triton.empty((n_groups,)), triton.empty((n_groups,))
    _quantize_int4_kernel[(triton.cdiv(n_groups, block_r),)](
        w, w_q, scales, zeros, n_groups, GROUP=group_size, HALF_BLOCK=half_block, BLOCK_R=block_r
    )
    groups_shape = (*w.shape[:-1], k // group_size)
    return w_q, scales.reshape(groups_shape), zeros.reshape(groups_shape)


def dequantize_int4(
    w_q: mx.array, scales: mx.array, zeros: mx.array, group_size: int = 128, dtype: mx.Dtype | None = None
) -> mx.array:
    """`scales * q + zeros` per group, the inverse of `quantize_int4`.

    Args:
        w_q: Packed codes, uint8 of shape (..., out_features, in_features / 2).
        scales: Float scales of shape (..., out_features, in_features / group_size).
        zeros: Float values of code 0, of `scales`' shape.
        group_size: Consecutive inputs sharing a scale and zero.
        dtype: Output dtype; `scales`' by default.

    Returns:
        The float weight of shape (..., out_features, in_features).
    """
    packed = _int4_packed("dequantize_int4", w_q, scales, zeros, group_size)
    return _dequantize(packed, (*w_q.shape[:-1], packed.in_features), dtype or scales.dtype)


def int8_linear(
    x: mx.array, w_q: mx.array, scale: mx.array, zero_point: mx.array, bias: mx.array | None = None
) -> mx.array:
    """`x @ dequantize_int8(w_q, scale, zero_point).T (+ bias)`, dequantizing inside the matmul.

    Args:
        x: Activations of shape (..., in_features), float32, float16 or bfloat16.
        w_q: int8 codes of shape (out_features, in_features), from `quantize_int8`.
        scale: Float scales of shape (out_features,) or ().
        zero_point: int8 zero points of `scale`'s shape.
        bias: Optional float bias of shape (out_features,).

    Returns:
        Shape (..., out_features), `x`'s dtype.
    """
    fn = "int8_linear"
    return _linear(fn, x, _int8_packed(fn, w_q, scale, zero_point, stacked=False), bias)


def int4_linear(
    x: mx.array,
    w_q: mx.array,
    scales: mx.array,
    zeros: mx.array,
    group_size: int = 128,
    bias: mx.array | None = None,
) -> mx.array:
    """`x @ dequantize_int4(w_q, scales, zeros, group_size).T (+ bias)`, weights staying packed.

    Args:
        x: Activations of shape (..., in_features), float32, float16 or bfloat16.
        w_q: Packed codes, uint8 of shape (out_features, in_features / 2), from `quantize_int4`
            (or MLX's 4-bit `w_q.view(mx.uint8)`).
        scales: Float scales of shape (out_features, in_features / group_size).
        zeros: Float values of code 0 (MLX's `biases`), of `scales`' shape.
        group_size: Consecutive inputs sharing a scale and zero.
        bias: Optional float bias of shape (out_features,).

    Returns:
        Shape (..., out_features), `x`'s dtype.
    """
    fn = "int4_linear"
    return _linear(fn, x, _int4_packed(fn, w_q, scales, zeros, group_size, stacked=False), bias)


def mlx_quantized_linear(
    x: mx.array,
    w_q: mx.array,
    scales: mx.array,
    biases: mx.array,
    group_size: int = 64,
    bits: int = 4,
    bias: mx.array | None = None,
) -> mx.array:
    """`mx.quantized_matmul(x, w_q, scales, biases, transpose=True, ...)` (+ bias) with these kernels.

    Runs on MLX's affine format as `mx.quantize(w, group_size, bits)` returns it: the uint32
    words are read in place, nothing is repacked.

    Args:
        x: Activations of shape (..., in_features), float32, float16 or bfloat16.
        w_q: uint32 of shape (out_features, in_features * bits / 32).
        scales: Float scales of shape (out_features, in_features / group_size).
        biases: Float values of code 0, of `scales`' shape.
        group_size: Consecutive inputs sharing a scale and bias.
        bits: 4 or 8.
        bias: Optional float bias of shape (out_features,), added after the product.

    Returns:
        Shape (..., out_features), `x`'s dtype.
    """
    fn = "mlx_quantized_linear"
    return _linear(fn, x, _mlx_packed(fn, w_q, scales, biases, group_size, bits, stacked=False), bias)


# --------------------------------------------------------------------------- modules


class QuantizedLinear(nn.Module):
    """A linear layer holding only packed weights; `x @ W.T (+ bias)` with the kernels above.

    Holds `weight` (packed codes), `scales`, `zeros` and optionally `bias`, frozen as in MLX's
    `nn.QuantizedLinear`. The format follows `weight`'s dtype: int8 (`quantize_int8`, per
    channel), uint8 (`quantize_int4`) or uint32 (MLX's, from `from_mlx_quantized`).

    Args:
        in_features: Input dimension K.
        out_features: Output dimension N.
        bits: 8 or 4.
        group_size: Inputs per scale and zero for 4 bits and for MLX's format (int8 scales
            are per row).
        bias: Whether the layer adds a bias (initialised to zero).
    """

    def __init__(
        self, in_features: int, out_features: int, bits: int = 8, group_size: int = 128, bias: bool = False
    ) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"[QuantizedLinear] bits must be 4 or 8; got {bits!r}")
        self.bits, self.group_size = bits, group_size
        limit = math.sqrt(1 / in_features)  # nn.Linear's initialisation, then quantized
        self._set_weight(mx.random.uniform(-limit, limit, (out_features, in_features)))
        if bias:
            self.bias = mx.zeros((out_features,))
        self.freeze()

    def _set_weight(self, w: mx.array) -> None:
        if self.bits == 8:
            self.weight, self.scales, self.zeros = quantize_int8(w)
        else:
            self.weight, self.scales, self.zeros = quantize_int4(w, self.group_size)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int = 128) -> QuantizedLinear:
        """Quantizes an `nn.Linear` (its bias is kept in float).

        Args:
            linear: The float layer.
            bits: 8 or 4.
            group_size: Inputs per scale for 4 bits.

        Returns:
            The quantized layer.
        """
        out_features, in_features = linear.weight.shape
        layer = cls(in_features, out_features, bits, group_size)
        layer._set_weight(linear.weight)
        if "bias" in linear:
            layer.bias = linear.bias
        return layer

    @classmethod
    def from_mlx_quantized(
        cls,
        w_q: mx.array,
        scales: mx.array,
        biases: mx.array,
        group_size: int = 64,
        bits: int = 4,
        bias: mx.array | None = None,
    ) -> QuantizedLinear:
        """Wraps weights from `mx.quantize(w, group_size, bits)` (affine), kept as MLX packed them.

        Args:
            w_q: uint32 of shape (out_features, in_features * bits / 32).
            scales: Float scales of shape (out_features, in_features / group_size).
            biases: Float values of code 0 (MLX's biases), of `scales`' shape.
            group_size: MLX's group size.
            bits: 4 or 8.
            bias: Optional float bias of shape (out_features,), added after the product.

        Returns:
            A layer computing `mx.quantized_matmul(x, w_q, scales, biases, transpose=True, ...)`.
        """
        fn = "QuantizedLinear.from_mlx_quantized"
        packed = _mlx_packed(fn, w_q, scales, biases, group_size, bits)
        if bias is not None:
            check_array(fn, "bias", bias, FLOAT_DTYPES)
            check_shape(fn, "bias", bias, (packed.rows,))
        layer = cls(packed.in_features, packed.rows, bits, group_size)
        layer.weight, layer.scales, layer.zeros = w_q, scales, biases
        if bias is not None:
            layer.bias = bias
        return layer

    def __call__(self, x: mx.array) -> mx.array:
        bias = self["bias"] if "bias" in self else None
        if self.weight.dtype == mx.uint32:
            return mlx_quantized_linear(
                x, self.weight, self.scales, self.zeros, self.group_size, self.bits, bias
            )
        if self.bits == 8:
            return int8_linear(x, self.weight, self.scales, self.zeros, bias)
        return int4_linear(x, self.weight, self.scales, self.zeros, self.group_size, bias)


# --------------------------------------------------------------------------- references


def _round(a: mx.array) -> mx.array:
    # Halves round up, as the kernels' floor(a + 0.5); mx.round would round them to even.
    return mx.floor(a + 0.5)


def _linear_reference(x: mx.array, w: mx.array, bias: mx.array | None) -> mx.array:
    y = x.astype(mx.float32) @ w.T
    if bias is not None:
        y = y + bias.astype(mx.float32)
    return y.astype(x.dtype)


def quantize_int8_reference(w: mx.array, per_channel: bool = True) -> tuple[mx.array, mx.array, mx.array]:
    """`quantize_int8` in plain MLX ops."""
    w = w.astype(mx.float32)
    axes = -1 if per_channel else None
    lo = mx.minimum(mx.min(w, axis=axes, keepdims=True), 0.0)
    hi = mx.maximum(mx.max(w, axis=axes, keepdims=True), 0.0)
    scale = (hi - lo) / 255.0
    scale = mx.where(scale > 0, scale, 1.0)
    zero_point = mx.clip(_round(-128.0 - lo / scale), -128, 127)
    w_q = mx.clip(_round(w / scale) + zero_point, -128, 127).astype(mx.int8)
    shape = w.shape[:-1] if per_channel else ()
    return w_q, scale.reshape(shape), zero_point.astype(mx.int8).reshape(shape)


def dequantize_int8_reference(w_q: mx.array, scale: mx.array, zero_point: mx.array) -> mx.array:
    """`dequantize_int8` in plain MLX ops (float32)."""
    scale = scale.astype(mx.float32)[..., None] if scale.ndim else scale.astype(mx.float32)
    zero_point = zero_point[..., None] if zero_point.ndim else zero_point
    return (w_q.astype(mx.float32) - zero_point.astype(mx.float32)) * scale


def quantize_int4_reference(w: mx.array, group_size: int = 128) -> tuple[mx.array, mx.array, mx.array]:
    """`quantize_int4` in plain MLX ops."""
    *lead, k = w.shape
    groups = w.astype(mx.float32).reshape(*lead, k // group_size, group_size)
    lo = mx.min(groups, axis=-1, keepdims=True)
    scale = (mx.max(groups, axis=-1, keepdims=True) - lo) / 15.0
    scale = mx.where(scale > 0, scale, 1.0)
    q = mx.clip(_round((groups - lo) / scale), 0, 15).astype(mx.uint8).reshape(*lead, k // 2, 2)
    w_q = q[..., 0] | (q[..., 1] << 4)
    return w_q, scale[..., 0], lo[..., 0]


def dequantize_int4_reference(
    w_q: mx.array, scales: mx.array, zeros: mx.array, group_size: int = 128
) -> mx.array:
    """`dequantize_int4` in plain MLX ops (float32)."""
    *lead, half = w_q.shape
    q = mx.stack([w_q & 0xF, w_q >> 4], axis=-1).reshape(*lead, 2 * half // group_size, group_size)
    w = q.astype(mx.float32) * scales.astype(mx.float32)[..., None] + zeros.astype(mx.float32)[..., None]
    return w.reshape(*lead, 2 * half)


def int8_linear_reference(
    x: mx.array, w_q: mx.array, scale: mx.array, zero_point: mx.array, bias: mx.array | None = None
) -> mx.array:
    """`int8_linear` in plain MLX ops: dequantize, then a float32 matmul."""
    return _linear_reference(x, dequantize_int8_reference(w_q, scale, zero_point), bias)


def int4_linear_reference(
    x: mx.array,
    w_q: mx.array,
    scales: mx.array,
    zeros: mx.array,
    group_size: int = 128,
    bias: mx.array | None = None,
) -> mx.array:
    """`int4_linear` in plain MLX ops: dequantize, then a float32 matmul."""
    return _linear_reference(x, dequantize_int4_reference(w_q, scales, zeros, group_size), bias)
