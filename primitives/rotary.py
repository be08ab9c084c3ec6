"""Rotary positional encoding (RoPE) with the semantics of `mx.fast.rope`.

Feature pairs of the first `dims` features are rotated by the angle `position * base**(-2i/dims)`
for pair `i`, where the positions run `offset + arange(L)`, times `scale`, along the
second-to-last axis. `traditional=True` pairs consecutive features (2i, 2i+1); the default pairs
the two halves (i, i + dims/2). Features past `dims` pass through. The backward pass is the
inverse rotation, the same kernel with the angle negated.

Math is float32 whatever the storage dtype (float32, float16, bfloat16), which is kept. The
kernel reads the row-major contents of `x`: a non-contiguous input (a transposed
(B, L, H, D) -> (B, H, L, D) view, say) is copied to row-major by the launch, as MLX's custom
kernels do.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

import mtriton as triton
import mtriton.language as tl
from mtriton.targets import BY_NAME

from ._common import FLOAT_DTYPES, check_array, check_ndim, dtype_name, pow2_block, tile_rows

_PAIRS_PER_PROGRAM = 1024  # positions x pairs of one program's tile
_MAX_SEQS_PER_PROGRAM = 32  # sequences (batch x heads) rotated with one table of angles
_MAX_PASS_BLOCK = 128  # columns copied per step for the features past `dims`


# --------------------------------------------------------------------------- kernels


@triton.jit
def _rope_kernel(
    x_ptr, out_ptr, offset_ptr,
    seq_len, seqs_per_batch, offset_stride, feature_dim,
    scale, neg_log2_base_over_half,
    HALF: tl.constexpr, TRADITIONAL: tl.constexpr, INVERSE: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_HALF: tl.constexpr, PASS_BLOCK: tl.constexpr, SEQS: tl.constexpr,
):  # fmt: skip
    """Rotates positions [BLOCK_L * p, BLOCK_L * (p + 1)) of SEQS sequences of x, seen as
    (n_seqs, seq_len, feature_dim). The sequences share one batch element, hence one offset
    and one table of angles, computed once (the sines and cosines cost more than the data)."""
    positions = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    pos_mask = positions < seq_len
    first_seq = tl.program_id(1) * SEQS
    pairs = tl.arange(0, BLOCK_HALF)
    mask = pos_mask[:, None] & (pairs < HALF)[None, :]

    # A scalar offset is read with offset_stride 0; a per-batch one with stride 1.
    offset = tl.load(offset_ptr + (first_seq // seqs_per_batch) * offset_stride)
    angle_pos = (positions + offset).to(tl.float32) * scale
    inv_freq = tl.exp2(pairs.to(tl.float32) * neg_log2_base_over_half)
    theta = angle_pos[:, None] * inv_freq[None, :]
    cos = tl.cos(theta)
    sin = tl.sin(theta)
    if INVERSE:
        sin = -sin

    if TRADITIONAL:
        first = 2 * pairs
        second = first + 1
    else:
        first = pairs
        second = pairs + HALF
    out_ty = out_ptr.dtype.element_ty
    for seq in range(first_seq, first_seq + SEQS):
        row_offs = (seq.to(tl.int64) * seq_len + positions)[:, None] * feature_dim
        x1 = tl.load(x_ptr + row_offs + first[None, :], mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(x_ptr + row_offs + second[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row_offs + first[None, :], (x1 * cos - x2 * sin).to(out_ty), mask=mask)
        tl.store(out_ptr + row_offs + second[None, :], (x1 * sin + x2 * cos).to(out_ty), mask=mask)
        if PASS_BLOCK > 0:
            cols = tl.arange(0, PASS_BLOCK)
            for start in range(2 * HALF, feature_dim, PASS_BLOCK):
                pass_offs = row_offs + (start + cols)[None, :]
                pass_mask = pos_mask[:, None] & ((start + cols) < feature_dim)[None, :]
                tl.store(out_ptr + pass_offs, tl.load(x_ptr + pass_offs, mask=pass_mask), mask=pass_mask)


# The GPUs choose the warps per program by measurement, through the tuning database (a hit
# skips the search). The CPU backends launch the one default: timing an emulator or the
# interpreter says nothing about a GPU, and the search would compile each config.
_rope_tuned = triton.autotune(
    [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8)],
    key=["HALF", "TRADITIONAL", "BLOCK_L", "BLOCK_HALF", "PASS_BLOCK", "SEQS"],
    use_database=True,
)(_rope_kernel)


def _rope_launcher() -> triton.JITFunction | triton.runtime.autotune.Autotuner:
    target = BY_NAME[triton.current_backend_name()]
    return _rope_kernel if target.emulated or target.language == "interpreter" else _rope_tuned


# --------------------------------------------------------------------------- functions


def _launch(
    x: mx.array, offsets: mx.array, dims: int, traditional: bool, base: float, scale: float, inverse: bool
) -> mx.array:
    out = triton.empty(x.shape, x.dtype)
    if x.size == 0:
        return out
    feature_dim, seq_len = x.shape[-1], x.shape[-2]
    n_seqs = x.size // (feature_dim * seq_len)
    half = dims // 2
    block_half = triton.next_power_of_2(half)
    block_l = pow2_block(seq_len, tile_rows(_PAIRS_PER_PROGRAM, block_half))
    passed = feature_dim - dims
    pass_block = pow2_block(passed, _MAX_PASS_BLOCK) if passed else 0
    # A per-batch offset belongs to the sequences of one index of the first axis; a program's
    # sequences never straddle two.
    seqs_per_batch = n_seqs // x.shape[0] if offsets.size > 1 else n_seqs
    seqs = math.gcd(seqs_per_batch, _MAX_SEQS_PER_PROGRAM)
    _rope_launcher()[(triton.cdiv(seq_len, block_l), n_seqs // seqs)](
        x, out, offsets,
        seq_len, seqs_per_batch, 1 if offsets.size > 1 else 0, feature_dim,
        float(scale), -math.log2(base) / half,
        HALF=half, TRADITIONAL=bool(traditional), INVERSE=inverse,
        BLOCK_L=block_l, BLOCK_HALF=block_half, PASS_BLOCK=pass_block, SEQS=seqs,
    )  # fmt: skip
    return out


@mx.custom_function
def _rope(
    x: mx.array, offsets: mx.array, dims: int, traditional: bool, base: float, scale: float
) -> mx.array:
    return _launch(x, offsets, dims, traditional, base, scale, inverse=False)


@_rope.vjp
def _rope_vjp(
    primals: tuple[mx.array, mx.array, int, bool, float, float], d_out: mx.array, out: mx.array
) -> tuple[mx.array, mx.array, None, None, None, None]:
    """A rotation's transpose is its inverse: rotate the cotangent back by the same angles."""
    x, offsets, dims, traditional, base, scale = primals
    d_x = _launch(d_out, offsets, dims, traditional, base, scale, inverse=True)
    return d_x, mx.zeros_like(offsets), None, None, None, None


def _offsets(x: mx.array, offset: int | mx.array) -> mx.array:
    """`offset` as an int32 array of one element, or of x.shape[0] elements (one per batch)."""
    if isinstance(offset, mx.array):
        if not mx.issubdtype(offset.dtype, mx.integer):
            raise TypeError(f"[rope] offset has dtype {dtype_name(offset.dtype)}; expected an integer dtype")
        per_batch = offset.ndim == 1 and x.ndim >= 3 and offset.size == x.shape[0]
        if offset.size != 1 and not per_batch:
            raise ValueError(
                f"[rope] offset has shape {tuple(offset.shape)}; expected a scalar or a vector of "
                f"x.shape[0] = {x.shape[0]} elements (x of at least 3 dimensions)"
            )
        return offset.reshape(-1).astype(mx.int32)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(
            f"[rope] offset has type {type(offset).__name__}; expected an int or an integer mx.array"
        )
    return mx.array([offset], dtype=mx.int32)


def _check(x: mx.array, dims: int, base: float) -> None:
    check_array("rope", "x", x, FLOAT_DTYPES)
    check_ndim("rope", "x", x, 2, "(..., L, D)", at_least=True)
    if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0 or dims % 2:
        raise ValueError(f"[rope] dims must be a positive even int, got {dims!r}")
    if dims > x.shape[-1]:
        raise ValueError(f"[rope] dims is {dims} but x has only {x.shape[-1]} features (last axis)")
    if not base > 0:
        raise ValueError(f"[rope] base must be positive, got {base!r}")


def rope(
    x: mx.array,
    dims: int,
    traditional: bool = False,
    base: float = 10000.0,
    scale: float = 1.0,
    offset: int | mx.array = 0,
) -> mx.array:
    """Rotary positional encoding, as `mx.fast.rope`.

    Args:
        x: Input of shape (..., L, D), float32, float16 or bfloat16; positions run along L.
            Unlike `mx.fast.rope`, 2-D inputs (L, D) are accepted too.
        dims: How many leading features to rotate; even, at most D. The rest pass through.
        traditional: Rotate consecutive pairs (2i, 2i+1) instead of (i, i + dims/2).
        base: Base of the angular frequencies `base**(-2i/dims)`.
        scale: Factor applied to the positions.
        offset: First position: an int, an integer mx.array scalar, or a vector of x.shape[0]
            offsets (one per batch element, for x of at least 3 dimensions).

    Returns:
        The rotated array, same shape and dtype as `x`; angles and products in float32.
        Differentiable in `x` (the backward is the inverse rotation).
    """
    _check(x, dims, base)
    return _rope(x, _offsets(x, offset), dims, bool(traditional), float(base), float(scale))


# --------------------------------------------------------------------------- modules


class RoPE(nn.Module):
    """Rotary positional encoding, as `mlx.nn.RoPE`, running `rope`.

    Args:
        dims: How many leading features to rotate; the rest pass through.
        traditional: Rotate consecutive pairs instead of the two halves.
        base: Base of the angular frequencies.
        scale: Factor applied to the positions.
    """

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000, scale: float = 1.0) -> None:
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.base = base
        self.scale = scale

    def _extra_repr(self) -> str:
        return f"{self.dims}, traditional={self.traditional}"

    def __call__(self, x: mx.array, offset: int | mx.array = 0) -> mx.array:
        return rope(x, self.dims, self.traditional, self.base, self.scale, offset)


# --------------------------------------------------------------------------- references


def rope_reference(
    x: mx.array,
    dims: int,
    traditional: bool = False,
    base: float = 10000.0,
    scale: float = 1.0,
    offset: int | mx.array = 0,
) -> mx.array:
    """`rope` in plain MLX ops, in float32."""
    half = dims // 2
    offset = mx.array(offset).astype(mx.float32)
    if offset.ndim:  # per batch element: broadcast over every axis but the first
        offset = offset.reshape((-1,) + (1,) * (x.ndim - 2))
    positions = (mx.arange(x.shape[-2], dtype=mx.float32) + offset) * scale
    inv_freq = base ** (-mx.arange(half, dtype=mx.float32) / half)
    theta = positions[..., None] * inv_freq
    cos, sin = mx.cos(theta), mx.sin(theta)
    xf = x.astype(mx.float32)
    if traditional:
        x1, x2 = xf[..., 0:dims:2], xf[..., 1:dims:2]
        pairs = mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
        rotated = pairs.reshape(*pairs.shape[:-2], dims)
    else:
        x1, x2 = xf[..., :half], xf[..., half:dims]
        rotated = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return mx.concatenate([rotated, xf[..., dims:]], axis=-1).astype(x.dtype)
