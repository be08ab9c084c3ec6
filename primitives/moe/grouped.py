"""The grouped expert GEMM: each expert's contiguous rows times that expert's weight, one launch.

`grouped_matmul(x, weight, group_sizes)` does the job of `mx.gather_mm` with sorted indices for
rows already sorted by expert, `weight` in mlx-lm's `SwitchLinear` layout (E, out, in). Its
programs cover (row tile, column tile) pairs, grouped so that neighbours share weight tiles in
cache; a tile map computed with MLX ops on the device gives each row tile its expert and its
rows, a tile never straddling two experts, so no host sync is needed. Rows outside every group
(the dropped slots, which the dispatch puts last) come out as zeros. float32/float16/bfloat16
weights, or MLX's quantized ones (`mx.quantize`, 4 or 8 bits) dequantized inside the kernel
through quantize.py's `_dequantize_tile`. Gradients: dx is the same kernel with the weight
untransposed, dW a grouped kernel over each expert's rows; quantized weights get none.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl

from .._common import FLOAT_DTYPES, check_array, check_dtype, check_ndim, check_shape, pow2_block
from ..quantize import _dequantize_tile, _mlx_packed

# Largest tiles on Metal (MAX_STAGED_DOT_ELEMENTS: BLOCK_M * BLOCK_K + BLOCK_K * BLOCK_N <= 8192,
# and the weight gradient's BLOCK_N * BLOCK_M + BLOCK_M * BLOCK_K); CUDA stages more.
_BLOCKS = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8}
_CUDA_BLOCKS = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8}


# --------------------------------------------------------------------------- kernels


@triton.jit
def _weight_tile(
    w_ptr, s_ptr, z_ptr, reds, outs, n_red, n_out, stride_w, stride_sr, stride_sg,
    TRANS_W: tl.constexpr, BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    """The (BLOCK_K, BLOCK_N) right operand B[r, c] from one expert's row-major weight W.

    TRANS_W: B = W.T (W's rows are the outputs: the forward of `x @ W.T`); the tile is read along
    W's contiguous rows and transposed in registers. Otherwise B = W (dx = dy @ W). With scales,
    W is MLX's packed codes, dequantized here.
    """
    if TRANS_W:
        rows = outs[:, None]
        cols = reds[None, :]
        mask = (rows < n_out) & (cols < n_red)
    else:
        rows = reds[:, None]
        cols = outs[None, :]
        mask = (rows < n_red) & (cols < n_out)
    if s_ptr is not None:
        w = _dequantize_tile(
            w_ptr, s_ptr, z_ptr, rows, cols, mask, stride_w, stride_sr, stride_sg, BITS, PACK, GROUP, False
        )
    else:
        w = tl.load(w_ptr + (rows * stride_w + cols), mask=mask, other=0.0)
    if TRANS_W:
        w = tl.trans(w)
    return w


@triton.jit(do_not_specialize=["n_tiles"])
def _grouped_matmul_kernel(
    out_ptr, a_ptr, w_ptr, s_ptr, z_ptr, tile_expert_ptr, tile_start_ptr, tile_stop_ptr,
    n_tiles, n, k, stride_w, stride_sr, stride_sg, expert_w, expert_s,
    TRANS_W: tl.constexpr, BITS: tl.constexpr, PACK: tl.constexpr, GROUP: tl.constexpr,
    HALF_DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):  # fmt: skip
    """out[rows] = a[rows] @ B(expert) for the rows [start, stop) of one row tile.

    `a` is (M, k), `out` (M, n). A tile with expert -1 lies outside every group: its K loop is
    empty and it stores zeros. `expert_w`/`expert_s` are the strides of one expert's weight and
    scales.
    """
    # Groups of GROUP_M row tiles walk the column tiles together: each weight tile is read from
    # memory about once per group, and the group's rows stay in cache.
    num_pid_n = tl.cdiv(n, BLOCK_N)
    pid = tl.program_id(0)
    tile, pid_n = tl.swizzle2d(pid // num_pid_n, pid % num_pid_n, n_tiles, num_pid_n, GROUP_M)
    expert = tl.load(tile_expert_ptr + tile)
    start = tl.load(tile_start_ptr + tile)
    stop = tl.load(tile_stop_ptr + tile)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < stop
    rows = rows.to(tl.int64)
    outs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    e = tl.maximum(expert, 0).to(tl.int64)
    w_base = w_ptr + e * expert_w
    s_base = s_ptr
    z_base = z_ptr
    if s_ptr is not None:
        s_base = s_ptr + e * expert_s
        z_base = z_ptr + e * expert_s
    k_stop = tl.where(expert >= 0, k, 0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_stop, BLOCK_K):
        reds = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            a_ptr + (rows[:, None] * k + reds[None, :]),
            mask=row_mask[:, None] & (reds[None, :] < k),
            other=0.0,
        )
        w = _weight_tile(
            w_base,
            s_base,
            z_base,
            reds,
            outs,
            k,
            n,
            stride_w,
            stride_sr,
            stride_sg,
            TRANS_W,
            BITS,
            PACK,
            GROUP,
        )
        if HALF_DOT:
            # Tensor cores take a as it is and the dequantized w as two terms of a's dtype,
            # w = hi + lo with lo the rounding error of hi: float32-accurate weights in two dots.
            w_hi = w.to(a.dtype)
            acc = tl.dot(a, w_hi, acc)
            acc = tl.dot(a, (w - w_hi.to(tl.float32)).to(a.dtype), acc)
        elif s_ptr is not None:
            acc = tl.dot(a.to(tl.float32), w, acc, input_precision="ieee")
        else:
            # "ieee": float32 inputs stay exact (Triton's default rounds them to TF32 on CUDA)
            acc = tl.dot(a, w, acc, input_precision="ieee")
    mask = row_mask[:, None] & (outs[None, :] < n)
    tl.store(out_ptr + (rows[:, None] * n + outs[None, :]), acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grouped_weight_grad_kernel(
    dw_ptr, a_ptr, d_ptr, starts_ptr, stops_ptr, n, k,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dw[e] = d[rows of e].T @ a[rows of e], an (n, k) block per expert (zeros for no rows).

    `a` is (M, k) and `d` (M, n); expert e owns the rows [starts[e], stops[e]).
    """
    e = tl.program_id(0)
    outs = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    reds = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    start = tl.load(starts_ptr + e)
    stop = tl.load(stops_ptr + e)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for r0 in range(start, stop, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        row_mask = (rows < stop)[:, None]
        rows = rows.to(tl.int64)
        d = tl.load(
            d_ptr + (rows[:, None] * n + outs[None, :]), mask=row_mask & (outs[None, :] < n), other=0.0
        )
        a = tl.load(
            a_ptr + (rows[:, None] * k + reds[None, :]), mask=row_mask & (reds[None, :] < k), other=0.0
        )
        acc = tl.dot(tl.trans(d), a, acc, input_precision="ieee")
    offsets = e.to(tl.int64) * n * k + (outs[:, None].to(tl.int64) * k + reds[None, :])
    mask = (outs[:, None] < n) & (reds[None, :] < k)
    tl.store(dw_ptr + offsets, acc.to(dw_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- functions


def _new_output(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """A buffer the launching kernel writes in full (tests swap in a poisoned one to check that)."""
    return triton.empty(shape, dtype)


@dataclass(frozen=True)
class _TileMap:
    """Each row tile's expert (-1: outside every group) and rows [start, stop), and each
    expert's rows [starts, stops): the grouped kernels' view of `group_sizes`."""

    expert: mx.array
    start: mx.array
    stop: mx.array
    group_starts: mx.array
    group_stops: mx.array

    @property
    def n_tiles(self) -> int:
        return self.expert.size


def _tile_map(group_sizes: mx.array, m: int, block_m: int) -> _TileMap:
    """Cuts the M rows into tiles of at most `block_m` rows that never straddle two groups.

    The rows are E groups (clipped to M) and the rest, a tail outside every group. A part of c
    rows takes cdiv(c, block_m) tiles, so all E + 1 parts take at most cdiv(M, block_m) + E: the
    grid's static size. Tiles past the used ones get no rows. MLX ops on (tiles, E + 1): no sync.
    """
    e = group_sizes.size
    stops = mx.minimum(mx.cumsum(group_sizes.astype(mx.int32)), m)
    starts = mx.concatenate([mx.zeros((1,), mx.int32), stops[:-1]])
    part_starts = mx.concatenate([starts, stops[-1:]])
    part_sizes = mx.concatenate([stops - starts, m - stops[-1:]])
    tiles = (part_sizes + block_m - 1) // block_m
    tile_ends = mx.cumsum(tiles)
    n_tiles = triton.cdiv(m, block_m) + e
    t = mx.arange(n_tiles, dtype=mx.int32)
    part = mx.sum(t[:, None] >= tile_ends[None, :], axis=1).astype(mx.int32)  # e + 1: unused
    used = part <= e
    part = mx.minimum(part, e)
    start = mx.take(part_starts, part) + (t - mx.take(tile_ends - tiles, part)) * block_m
    stop = mx.take(part_starts + part_sizes, part)
    return _TileMap(
        expert=mx.where(part < e, part, -1),
        start=mx.where(used, start, m),
        stop=mx.where(used, stop, m),
        group_starts=starts,
        group_stops=stops,
    )


def _blocks(m: int, e: int) -> dict[str, int]:
    """Tile sizes: BLOCK_M fitted to the mean rows per expert (a decode step has a few rows per
    expert, and every partial tile is padding), the rest as `_BLOCKS`; every dot dimension >= 16."""
    blocks = dict(_CUDA_BLOCKS if triton.current_target() == "cuda" else _BLOCKS)
    blocks["BLOCK_M"] = pow2_block(triton.cdiv(m, e), blocks["BLOCK_M"], 16)
    return blocks


def _launch_grouped(
    a: mx.array,
    w: mx.array,
    quant: tuple[mx.array, mx.array, int, int] | None,
    group_sizes: mx.array,
    n: int,
    k: int,
    trans_w: bool,
) -> mx.array:
    """(M, n) = each group's rows of the (M, k) `a` times its expert's operand (see the kernel)."""
    m, e = a.shape[0], w.shape[0]
    if m == 0 or n == 0:
        return mx.zeros((m, n), a.dtype)
    blocks = _blocks(m, e)
    tile_map = _tile_map(group_sizes, m, blocks["BLOCK_M"])
    block_n, block_k = pow2_block(n, blocks["BLOCK_N"], 16), pow2_block(k, blocks["BLOCK_K"], 16)
    if quant is None:
        scales = biases = None
        stride_w, stride_sr, stride_sg, expert_s = w.shape[-1], 0, 0, 0
        meta = {"BITS": 0, "PACK": 1, "GROUP": 0}
    else:
        scales, biases, group_size, bits = quant
        stride_w, stride_sr, stride_sg, expert_s = w.shape[-1], scales.shape[-1], 1, scales[0].size
        meta = {"BITS": bits, "PACK": 32 // bits, "GROUP": group_size}
    # Quantized weights multiply half-precision rows on CUDA's tensor cores in two half terms.
    half_dot = quant is not None and a.dtype != mx.float32 and triton.current_target() == "cuda"
    grid = (tile_map.n_tiles * triton.cdiv(n, block_n),)
    (out,) = _grouped_matmul_kernel[grid].functional(
        _new_output((m, n), a.dtype), a, w, scales, biases, tile_map.expert, tile_map.start, tile_map.stop,
        tile_map.n_tiles, n, k, stride_w, stride_sr, stride_sg, w[0].size, expert_s,
        TRANS_W=trans_w, **meta, HALF_DOT=half_dot, BLOCK_M=blocks["BLOCK_M"], BLOCK_N=block_n, BLOCK_K=block_k,
        GROUP_M=blocks["GROUP_M"], **({"num_warps": blocks["num_warps"]} if "num_warps" in blocks else {}),
    )  # fmt: skip
    return out


def _weight_grad(a: mx.array, d: mx.array, group_sizes: mx.array, e: int) -> mx.array:
    """(E, n, k): per expert, its rows of the (M, n) `d` transposed times its rows of `a`."""
    m, k = a.shape
    n = d.shape[1]
    if m == 0:
        return mx.zeros((e, n, k), a.dtype)
    blocks = _blocks(m, e)
    tile_map = _tile_map(group_sizes, m, blocks["BLOCK_M"])
    block_n, block_k = pow2_block(n, 64, 16), pow2_block(k, 64, 16)
    (dw,) = _grouped_weight_grad_kernel[(e, triton.cdiv(n, block_n), triton.cdiv(k, block_k))].functional(
        _new_output((e, n, k), a.dtype), a, d, tile_map.group_starts, tile_map.group_stops, n, k,
        BLOCK_M=min(blocks["BLOCK_M"], 32), BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return dw


@mx.custom_function
def _grouped_mm(x: mx.array, weight: mx.array, group_sizes: mx.array) -> mx.array:
    return _launch_grouped(x, weight, None, group_sizes, weight.shape[1], weight.shape[2], trans_w=True)


@_grouped_mm.vjp
def _grouped_mm_vjp(
    primals: tuple[mx.array, mx.array, mx.array], cotangent: mx.array, output: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    x, weight, group_sizes = primals
    e, n, k = weight.shape
    dx = _launch_grouped(cotangent, weight, None, group_sizes, k, n, trans_w=False)
    dw = _weight_grad(x, cotangent, group_sizes, e)
    return dx, dw, mx.zeros_like(group_sizes)


@mx.custom_function
def _grouped_qmm(
    x: mx.array,
    w_q: mx.array,
    scales: mx.array,
    biases: mx.array,
    group_sizes: mx.array,
    group_size: int,
    bits: int,
) -> mx.array:
    k = w_q.shape[-1] * 32 // bits
    return _launch_grouped(
        x, w_q, (scales, biases, group_size, bits), group_sizes, w_q.shape[1], k, trans_w=True
    )


@_grouped_qmm.vjp
def _grouped_qmm_vjp(
    primals: tuple[mx.array, mx.array, mx.array, mx.array, mx.array, int, int],
    cotangent: mx.array,
    output: mx.array,
) -> tuple[mx.array | None, ...]:
    """dx only: packed weights get zero gradients (MLX pairs every array primal with one)."""
    x, w_q, scales, biases, group_sizes, group_size, bits = primals
    dx = _launch_grouped(
        cotangent,
        w_q,
        (scales, biases, group_size, bits),
        group_sizes,
        x.shape[1],
        w_q.shape[1],
        trans_w=False,
    )
    return (
        dx, mx.zeros_like(w_q), mx.zeros_like(scales), mx.zeros_like(biases), mx.zeros_like(group_sizes), None, None,
    )  # fmt: skip


def grouped_matmul(
    x: mx.array,
    weight: mx.array,
    group_sizes: mx.array,
    *,
    scales: mx.array | None = None,
    biases: mx.array | None = None,
    group_size: int = 64,
    bits: int = 4,
) -> mx.array:
    """Each expert's contiguous rows of `x` times that expert's weight, transposed, in one launch.

    Rows `[offsets[e], offsets[e] + group_sizes[e])` of `x`, with `offsets` the exclusive cumsum of
    `group_sizes`, give `x[rows] @ weight[e].T`: `mx.gather_mm(x[:, None], weight.swapaxes(-1, -2),
    rhs_indices=expert_of_row, sorted_indices=True)`. Rows past `sum(group_sizes)` belong to no
    expert and come out as zeros; groups running past M are cut at M. Differentiable w.r.t. `x`
    and a float `weight` (grouped kernels for both); quantized weights get zero gradients.

    Args:
        x: (M, in_features) rows in expert order, float32, float16 or bfloat16.
        weight: (E, out_features, in_features) in `x`'s dtype (mlx-lm's `SwitchLinear.weight`), or
            with `scales`, MLX's packed uint32 codes (E, out_features, in_features * bits / 32).
        group_sizes: (E,) rows per expert, int32 (e.g. `ExpertDispatch.group_sizes`); not
            checked against M, which would need a host sync.
        scales: With quantized weights, `mx.quantize`'s scales (E, out_features, in_features /
            group_size).
        biases: With quantized weights, `mx.quantize`'s biases, of `scales`' shape.
        group_size: MLX's quantization group size.
        bits: 4 or 8.

    Returns:
        (M, out_features) in `x`'s dtype; products accumulate in float32.

    Raises:
        TypeError: An argument of the wrong type or dtype.
        ValueError: Shapes that do not match, or a bad `group_size`/`bits`.
    """
    fn = "grouped_matmul"
    check_array(fn, "x", x, FLOAT_DTYPES)
    check_ndim(fn, "x", x, 2, "(rows, in_features)")
    check_array(fn, "weight", weight)
    check_ndim(fn, "weight", weight, 3, "(num_experts, out_features, in_features)")
    check_array(fn, "group_sizes", group_sizes, (mx.int32,))
    check_shape(fn, "group_sizes", group_sizes, (weight.shape[0],), "weight's num_experts")
    if (scales is None) != (biases is None):
        raise ValueError(f"[{fn}] give both scales and biases (quantized weight) or neither")
    if scales is None:
        check_dtype(fn, "weight", weight, (x.dtype,))
        if weight.shape[2] != x.shape[1]:
            raise ValueError(
                f"[{fn}] weight has shape {tuple(weight.shape)}; expected in_features {x.shape[1]} "
                "(axis 2) to match x's last axis"
            )
        return _grouped_mm(x, weight, group_sizes)
    packed = _mlx_packed(fn, weight, scales, biases, group_size, bits)
    if packed.in_features != x.shape[1]:
        raise ValueError(
            f"[{fn}] weight holds in_features {packed.in_features}; expected {x.shape[1]} to match x's last axis"
        )
    return _grouped_qmm(x, weight, scales, biases, group_sizes, group_size, bits)


# --------------------------------------------------------------------------- references


def _expert_of_row_reference(group_sizes: mx.array, m: int) -> mx.array:
    """Each row's group (E for rows past the last group)."""
    ends = mx.cumsum(group_sizes.astype(mx.int32))
    return mx.sum(mx.arange(m)[:, None] >= ends[None, :], axis=1).astype(mx.int32)


def grouped_matmul_reference(x: mx.array, weight: mx.array, group_sizes: mx.array) -> mx.array:
    """`grouped_matmul` in plain MLX ops: `mx.gather_mm` with sorted indices (float weights)."""
    e = weight.shape[0]
    experts = _expert_of_row_reference(group_sizes, x.shape[0])
    y = mx.gather_mm(
        x[:, None, :], weight.swapaxes(-1, -2), rhs_indices=mx.minimum(experts, e - 1), sorted_indices=True
    )[:, 0, :]
    return mx.where((experts < e)[:, None], y, mx.zeros_like(y))
