"""Row gather and scatter-add: `x[indices]` and `output.at[indices].add(weights * values)`.

Both work on rows: axis 0 of `x` (or `output`) indexes rows and every trailing
axis belongs to the row, exactly as `x[indices]` does in MLX and NumPy. Inside
the kernels an array of shape `(N, *row_shape)` is a row-major `(N, D)` matrix
with `D = prod(row_shape)`; `indices` of any shape are flattened to `(K,)`.

The scatter-add has two modes:

* atomic (default): every contribution is `tl.atomic_add`-ed into a float32
  accumulator. One pass, no sort; the order in which duplicates are summed
  depends on thread timing, so float results can differ in the last bits
  from run to run.
* deterministic: the flat positions `k` are sorted by row (one `mx.sort` of the
  unique keys `row * K + k`, which carry both the row and `k`), then one program per
  block of output rows adds each row's contributions to its old value in a fixed order:
  ascending `k`, except that whole chunks of CHUNK sorted positions inside a long run
  are first summed by a separate pass, so a row duplicated `c` times costs about
  2 * CHUNK + c / CHUNK serial steps rather than `c`. No float atomics and no thread timing
  enter the sums, so results are bit-reproducible (and the interpreter and metal-emu
  agree to the bit). The pass reads the old output and writes the new one, so no
  copy of `output` is made; the sort and a count of each row's indices (integer
  atomics: exact) with its prefix sum are the extra cost.

Indices outside `[0, N)` never cause an out-of-bounds access: the kernels mask
them, so such a gathered row is zeros and such a contribution is dropped.
`checked=True` (the default) turns them into an `IndexError` instead; the
check is one reduction over the indices and a host sync (`.item()`), so pass
`checked=False` in hot loops and inside `mx.compile`, where no sync is allowed.

Gradients come from `mx.custom_function` VJPs built on the same kernels: the
gather's backward is a scatter-add (atomic, or sorted with
`deterministic=True`), and the scatter-add's backward is a gather of the
cotangent, scaled by the weights, with the weights' gradient as a per-row dot
product computed in the same pass.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

import mtriton as triton
import mtriton.language as tl

from ._common import FLOAT_DTYPES, INDEX_DTYPES, check_array, check_ndim, check_shape, pow2_block, tile_rows

# A gather only moves rows, so integer tables (token ids, say) work as well as float ones.
GATHER_DTYPES = (*FLOAT_DTYPES, mx.int32, mx.uint32)

# Elements per program tile: 32 per thread at the default 4 warps, enough to keep loads in
# flight on a GPU without spilling registers.
TILE = 4096
MAX_BLOCK_D = 256
# Sorted positions summed by one program of the deterministic scatter's first pass: a row
# duplicated `c` times costs its program about 2 * CHUNK + c / CHUNK serial steps.
CHUNK = 64


# --------------------------------------------------------------------------- kernels
#
# Offsets are int64 (n_rows * n_cols and n_indices * n_cols may pass 2**31 elements) and every
# 2-D offset block is summed before it meets its pointer,
# `ptr + (rows[:, None] * n_cols + cols[None, :])`: the GPU backends broadcast a (R, 1) pointer
# block through 32-bit shared memory, dropping the high bits of an int64 offset (a compiler
# bug, reported with a repro).


@triton.jit(do_not_specialize=["n_rows", "n_indices"])
def _gather_rows_kernel(
    out_ptr, src_ptr, indices_ptr, weights_ptr, dot_ptr, dot_out_ptr, n_rows, n_indices, n_cols,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """out[k] = src[indices[k]] (times weights[k] when given).

    With `dot_ptr`, also dot_out[k] = sum_d dot[k, d] * src[indices[k], d]: the
    weights' gradient of a scatter-add, computed from the rows already loaded.
    """
    ks = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = ks < n_indices
    rows = tl.load(indices_ptr + ks, mask=k_mask, other=0).to(tl.int64)
    valid = k_mask & (rows >= 0) & (rows < n_rows)
    ks = ks.to(tl.int64)
    if weights_ptr is not None:
        scale = tl.load(weights_ptr + ks, mask=k_mask, other=0.0).to(tl.float32)
    if dot_ptr is not None:
        dots = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for d0 in range(0, n_cols, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        col_mask = (cols < n_cols)[None, :]
        row = tl.load(
            src_ptr + (rows[:, None] * n_cols + cols[None, :]), mask=valid[:, None] & col_mask, other=0
        )
        if weights_ptr is not None:
            result = row.to(tl.float32) * scale[:, None]
        else:
            result = row  # a plain gather copies bits: no round trip through float32
        out_offsets = ks[:, None] * n_cols + cols[None, :]
        tl.store(out_ptr + out_offsets, result.to(out_ptr.dtype.element_ty), mask=k_mask[:, None] & col_mask)
        if dot_ptr is not None:
            other = tl.load(dot_ptr + out_offsets, mask=k_mask[:, None] & col_mask, other=0.0)
            dots += tl.sum(other.to(tl.float32) * row.to(tl.float32), axis=1)
    if dot_ptr is not None:
        tl.store(dot_out_ptr + ks, dots.to(dot_out_ptr.dtype.element_ty), mask=k_mask)


@triton.jit(do_not_specialize=["n_rows", "n_indices"])
def _scatter_add_atomic_kernel(
    acc_ptr, values_ptr, weights_ptr, indices_ptr, n_rows, n_indices, n_cols,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """acc[indices[k]] += weights[k] * values[k] with float32 atomics (acc is float32)."""
    ks = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    k_mask = ks < n_indices
    rows = tl.load(indices_ptr + ks, mask=k_mask, other=0).to(tl.int64)
    valid = k_mask & (rows >= 0) & (rows < n_rows)
    ks = ks.to(tl.int64)
    mask = valid[:, None] & (cols < n_cols)[None, :]
    contribution = tl.load(values_ptr + (ks[:, None] * n_cols + cols[None, :]), mask=mask, other=0.0).to(
        tl.float32
    )
    if weights_ptr is not None:
        contribution *= tl.load(weights_ptr + ks, mask=valid, other=0.0).to(tl.float32)[:, None]
    tl.atomic_add(acc_ptr + (rows[:, None] * n_cols + cols[None, :]), contribution, mask=mask)


@triton.jit(do_not_specialize=["n_rows", "n_indices"])
def _row_counts_kernel(counts_ptr, indices_ptr, n_rows, n_indices, BLOCK: tl.constexpr):
    """counts[r] += the number of in-range indices equal to r (counts starts at zero).

    Integer atomics: the counts are exact whatever order the threads add in.
    """
    ks = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    k_mask = ks < n_indices
    rows = tl.load(indices_ptr + ks, mask=k_mask, other=0).to(tl.int64)
    tl.atomic_add(counts_ptr + rows, 1, mask=k_mask & (rows >= 0) & (rows < n_rows))


@triton.jit
def _add_sorted_run(
    acc, start, stop, rows, tile_mask, cols, keys_ptr, values_ptr, weights_ptr, n_indices, n_cols
):
    """acc + the contributions at sorted positions [start, stop) of each row, in that order.

    The key at a position of row r's run is r * n_indices + k, so k = key - r * n_indices.
    """
    length = stop - start
    for t in range(0, tl.max(length, axis=0)):
        live = t < length
        ks = tl.load(keys_ptr + start + t, mask=live, other=0).to(tl.int64) - rows * n_indices
        mask = live[:, None] & tile_mask
        contribution = tl.load(values_ptr + (ks[:, None] * n_cols + cols[None, :]), mask=mask, other=0.0)
        contribution = contribution.to(tl.float32)
        if weights_ptr is not None:
            contribution *= tl.load(weights_ptr + ks, mask=live, other=0.0).to(tl.float32)[:, None]
        acc += contribution
    return acc


@triton.jit(do_not_specialize=["n_rows", "n_indices"])
def _chunk_sums_kernel(
    sums_ptr, values_ptr, weights_ptr, keys_ptr, n_rows, n_indices, n_cols,
    CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """sums[c] = the sum over sorted positions [c * CHUNK, (c + 1) * CHUNK), in order, for every
    chunk that lies inside one row's run; other chunks are left unwritten (no row reads them).

    These are the pieces a heavily duplicated row is summed from, so that no program adds
    more than about 2 * CHUNK + count / CHUNK terms serially.
    """
    chunks = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    chunk_mask = chunks < n_indices // CHUNK
    start = chunks.to(tl.int64) * CHUNK
    first_key = tl.load(keys_ptr + start, mask=chunk_mask, other=0).to(tl.int64)
    last_key = tl.load(keys_ptr + start + CHUNK - 1, mask=chunk_mask, other=0).to(tl.int64)
    rows = first_key // n_indices
    whole = chunk_mask & (rows == last_key // n_indices) & (rows < n_rows)
    tile_mask = whole[:, None] & (cols < n_cols)[None, :]
    acc = tl.zeros((BLOCK_C, BLOCK_D), dtype=tl.float32)
    stop = tl.where(whole, start + CHUNK, start)
    acc = _add_sorted_run(
        acc, start, stop, rows, tile_mask, cols, keys_ptr, values_ptr, weights_ptr, n_indices, n_cols
    )
    tl.store(sums_ptr + (chunks[:, None].to(tl.int64) * n_cols + cols[None, :]), acc, mask=tile_mask)


@triton.jit(do_not_specialize=["n_rows", "n_indices"])
def _scatter_add_sorted_kernel(
    out_ptr, base_ptr, values_ptr, weights_ptr, keys_ptr, starts_ptr, counts_ptr, sums_ptr,
    n_rows, n_indices, n_cols,
    CHUNK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """out[r] = base[r] + the sum of weights[k] * values[k] over indices[k] == r, in a fixed order.

    `keys` holds row * K + k for every k, sorted: row r's contributions are the `counts[r]`
    keys from position `starts[r]` on, in ascending k. Out-of-range indices were given row N,
    whose keys come last and are not read. A missing `base` reads as zeros. Each row adds its
    run's head, then the chunk sums of `_chunk_sums_kernel` for the whole chunks inside the
    run (when `sums` is given), then the tail: the same order on every run, so the same bits.
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_mask = rows < n_rows
    tile_mask = row_mask[:, None] & (cols < n_cols)[None, :]
    first = tl.load(starts_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    end = first + tl.load(counts_ptr + rows, mask=row_mask, other=0)
    rows = rows.to(tl.int64)
    offsets = rows[:, None] * n_cols + cols[None, :]
    if base_ptr is not None:
        acc = tl.load(base_ptr + offsets, mask=tile_mask, other=0.0).to(tl.float32)
    else:
        acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    if sums_ptr is not None:
        first_chunk = (first + CHUNK - 1) // CHUNK
        end_chunk = end // CHUNK
        chunked = end_chunk > first_chunk
        head_end = tl.where(chunked, first_chunk * CHUNK, end)
        acc = _add_sorted_run(
            acc, first, head_end, rows, tile_mask, cols, keys_ptr, values_ptr, weights_ptr, n_indices, n_cols
        )
        n_chunks = tl.where(chunked, end_chunk - first_chunk, 0)
        for c in range(0, tl.max(n_chunks, axis=0)):
            live = (c < n_chunks)[:, None] & tile_mask
            acc += tl.load(
                sums_ptr + ((first_chunk + c)[:, None] * n_cols + cols[None, :]), mask=live, other=0.0
            )
        tail_start = tl.where(chunked, end_chunk * CHUNK, end)
        acc = _add_sorted_run(
            acc, tail_start, end, rows, tile_mask, cols, keys_ptr, values_ptr, weights_ptr, n_indices, n_cols
        )
    else:
        acc = _add_sorted_run(
            acc, first, end, rows, tile_mask, cols, keys_ptr, values_ptr, weights_ptr, n_indices, n_cols
        )
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=tile_mask)


# --------------------------------------------------------------------------- functions


def _new_output(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """A buffer the launching kernel writes in full (tests swap in a poisoned one to check that)."""
    return triton.empty(shape, dtype)


def _block_d(d: int) -> int:
    return pow2_block(d, MAX_BLOCK_D)


def _block_rows(block_d: int) -> int:
    """Rows per program: a TILE's worth. Not fitted to the row count, so that every count of
    indices shares one compiled kernel per row width."""
    return tile_rows(TILE, block_d)


def _gather_rows(
    src: mx.array,
    indices: mx.array,
    out_dtype: mx.Dtype,
    weights: mx.array | None = None,
    dot_with: mx.array | None = None,
) -> tuple[mx.array, ...]:
    """(K, D) rows of the (N, D) `src` at the flat `indices`, scaled by `weights` when given.

    Returns `(rows,)`, or `(rows, dots)` with `dot_with`: dots[k] = <dot_with[k], src[indices[k]]>
    in `weights`' dtype.
    """
    n, d = src.shape
    k = indices.size
    dot_out = None if dot_with is None else _new_output((k,), weights.dtype)
    if k == 0 or d == 0:
        zeros = (mx.zeros((k, d), out_dtype),)
        return zeros if dot_out is None else (*zeros, mx.zeros((k,), weights.dtype))
    block_d = _block_d(d)
    block_k = _block_rows(block_d)
    return _gather_rows_kernel[(triton.cdiv(k, block_k),)].functional(
        _new_output((k, d), out_dtype), src, indices, weights, dot_with, dot_out, n, k, d,
        BLOCK_K=block_k, BLOCK_D=block_d,
    )  # fmt: skip


def _sorted_keys(indices: mx.array, n_rows: int) -> mx.array:
    """row * K + k for every flat position k, sorted; out-of-range rows become row n_rows.

    The key is unique per k, so the order within a row is ascending k whatever sort MLX
    runs (an argsort of the rows alone leaves the order of equal rows unspecified, and
    needs a gather to fetch them), and a kernel reads both the row and k back from it.
    """
    k = indices.size
    key_dtype = mx.int32 if (n_rows + 1) * k <= 2**31 - 1 else mx.int64
    in_range = (indices >= 0) & (indices < n_rows)
    rows = mx.where(in_range, indices, n_rows).astype(key_dtype)
    return mx.sort(rows * k + mx.arange(k, dtype=key_dtype))


def _scatter_add_rows(
    base: mx.array | None,
    values: mx.array,
    indices: mx.array,
    weights: mx.array | None,
    deterministic: bool,
    n_rows: int,
    out_dtype: mx.Dtype,
) -> mx.array:
    """base + the (n_rows, D) scatter-add of the (K, D) `values` at the flat `indices`.

    A missing `base` counts as zeros (the gather's backward starts from nothing).
    """
    k, d = values.shape
    if k == 0 or n_rows * d == 0:
        return mx.zeros((n_rows, d), out_dtype) if base is None else mx.array(base)
    block_d = _block_d(d)
    if deterministic:
        keys = _sorted_keys(indices, n_rows)
        (counts,) = _row_counts_kernel[(triton.cdiv(k, TILE),)].functional(
            mx.zeros((n_rows,), mx.int32), indices, n_rows, k, BLOCK=TILE
        )
        n_chunks = k // CHUNK
        sums = None
        if n_chunks:
            # Only chunks inside one row's run are written: not a `_new_output`.
            block_c = _block_rows(block_d)
            (sums,) = _chunk_sums_kernel[(triton.cdiv(n_chunks, block_c), triton.cdiv(d, block_d))].functional(
                triton.empty((n_chunks, d), mx.float32), values, weights, keys, n_rows, k, d,
                CHUNK=CHUNK, BLOCK_C=block_c, BLOCK_D=block_d,
            )  # fmt: skip
        block_r = _block_rows(block_d)
        grid = (triton.cdiv(n_rows, block_r), triton.cdiv(d, block_d))
        (out,) = _scatter_add_sorted_kernel[grid].functional(
            _new_output((n_rows, d), out_dtype), base, values, weights, keys,
            mx.cumsum(counts, inclusive=False), counts, sums, n_rows, k, d,
            CHUNK=CHUNK, BLOCK_R=block_r, BLOCK_D=block_d,
        )  # fmt: skip
        return out
    # GPU atomics add float32 (not float16/bfloat16): accumulate there, round once at the end.
    acc = mx.zeros((n_rows, d), mx.float32) if base is None else base.astype(mx.float32)
    block_k = _block_rows(block_d)
    grid = (triton.cdiv(k, block_k), triton.cdiv(d, block_d))
    (acc,) = _scatter_add_atomic_kernel[grid].functional(
        acc, values, weights, indices, n_rows, k, d, BLOCK_K=block_k, BLOCK_D=block_d
    )
    return acc.astype(out_dtype)


def _no_gradient(indices: mx.array) -> mx.array:
    """The (zero) gradient of an index array.

    MLX pairs a VJP's results with the primal arrays by position after dropping Nones, so
    every array primal needs an array here; a None would shift the weights' gradient.
    Lazy, so never computed unless asked for.
    """
    return mx.zeros_like(indices)


@mx.custom_function
def _gather(x: mx.array, indices: mx.array, deterministic: bool) -> mx.array:
    (rows,) = _gather_rows(x, indices, x.dtype)
    return rows


@_gather.vjp
def _gather_vjp(
    primals: tuple[mx.array, mx.array, bool], cotangent: mx.array, output: mx.array
) -> tuple[mx.array, mx.array, None]:
    x, indices, deterministic = primals
    dx = _scatter_add_rows(None, cotangent, indices, None, deterministic, x.shape[0], x.dtype)
    return dx, _no_gradient(indices), None


@mx.custom_function
def _scatter_add(
    base: mx.array, values: mx.array, indices: mx.array, weights: mx.array | None, deterministic: bool
) -> mx.array:
    return _scatter_add_rows(base, values, indices, weights, deterministic, base.shape[0], base.dtype)


@_scatter_add.vjp
def _scatter_add_vjp(
    primals: tuple[mx.array, mx.array, mx.array, mx.array | None, bool],
    cotangent: mx.array,
    output: mx.array,
) -> tuple[mx.array, mx.array, mx.array, mx.array | None, None]:
    _, values, indices, weights, _ = primals
    if weights is None:
        (dvalues,) = _gather_rows(cotangent, indices, values.dtype)
        return cotangent, dvalues, _no_gradient(indices), None, None
    dvalues, dweights = _gather_rows(cotangent, indices, values.dtype, weights=weights, dot_with=values)
    return cotangent, dvalues, _no_gradient(indices), dweights, None


def _check_range(fn: str, indices: mx.array, n_rows: int, table: str) -> None:
    """Raises IndexError naming the first index outside [0, n_rows); one reduction and a sync."""
    if indices.size == 0:
        return
    outside = (indices < 0) | (indices >= n_rows)
    if not mx.any(outside).item():
        return
    first = int(mx.argmax(outside.reshape(-1)).item())
    position = tuple(int(i) for i in np.unravel_index(first, indices.shape))
    value = indices.reshape(-1)[first].item()
    raise IndexError(
        f"[{fn}] indices{list(position)} = {value} is out of range for {table} with {n_rows} rows "
        f"(valid: 0 <= index < {n_rows}); checked=False skips this check and ignores such indices"
    )


def selective_gather(
    x: mx.array, indices: mx.array, *, checked: bool = True, deterministic: bool = False
) -> mx.array:
    """Rows of `x` at `indices`: the same result as `x[indices]`.

    Axis 0 of `x` indexes rows and every trailing axis belongs to the row, so `x` of shape
    `(N, D)` gives `indices.shape + (D,)` and `x` of shape `(N, H, W)` gives
    `indices.shape + (H, W)`. Differentiable with respect to `x`.

    Args:
        x: The table, at least 1-D: float32, float16, bfloat16, int32 or uint32.
        indices: Row numbers in `[0, N)`, any shape: int32, int64 or uint32. Negative
            numbers do not count from the end: they are out of range.
        checked: Raise `IndexError` for an index outside `[0, N)`. This costs a reduction
            over the indices and a host sync; with `checked=False` there is neither, and
            such an index gives a row of zeros (no memory outside `x` is read).
        deterministic: Make the backward pass (a scatter-add into `x`'s gradient) sum
            duplicate indices in a fixed order, so gradients are bit-reproducible.

    Returns:
        An array of shape `indices.shape + x.shape[1:]` and `x`'s dtype.

    Raises:
        TypeError: `x` or `indices` is not an array of a supported dtype.
        ValueError: `x` is 0-d.
        IndexError: With `checked=True`, an index outside `[0, N)`.
    """
    fn = "selective_gather"
    check_array(fn, "x", x, GATHER_DTYPES)
    check_array(fn, "indices", indices, INDEX_DTYPES)
    check_ndim(fn, "x", x, 1, "at least one axis (the rows to gather)", at_least=True)
    if checked:
        _check_range(fn, indices, x.shape[0], "x")
    row_shape = tuple(x.shape[1:])
    table = x.reshape(x.shape[0], math.prod(row_shape))
    rows = _gather(table, indices.reshape(-1), deterministic)
    return rows.reshape(*indices.shape, *row_shape)


def selective_scatter_add(
    output: mx.array,
    values: mx.array,
    indices: mx.array,
    weights: mx.array | None = None,
    deterministic: bool = False,
    *,
    checked: bool = True,
) -> mx.array:
    """`output` with `weights[k] * values[k]` added to row `indices[k]` for every k.

    The same result as `output.at[indices].add(weights[..., None] * values)`: duplicate
    indices accumulate. Rows are axis 0 of `output`, as in `selective_gather`. The caller's
    `output` is left unchanged; the sum is a new array. Products and sums are float32 whatever
    the dtypes, rounded once to `output`'s dtype. Differentiable with respect to `output`,
    `values` and `weights`.

    Args:
        output: The rows added to, at least 1-D: float32, float16 or bfloat16.
        values: Shape `indices.shape + output.shape[1:]`, a float dtype.
        indices: Row numbers in `[0, N)`, any shape: int32, int64 or uint32 (negative
            numbers are out of range).
        weights: One scale per index, shape `indices.shape`, a float dtype; None for 1.
        deterministic: Sort the indices and sum each row's contributions in a fixed order:
            bit-reproducible results, at the cost of a sort. Otherwise float32 atomics, whose
            summation order (and so the last bits) varies from run to run.
        checked: Raise `IndexError` for an index outside `[0, N)` (a reduction over the
            indices and a host sync). With `checked=False` such contributions are dropped.

    Returns:
        An array of `output`'s shape and dtype.

    Raises:
        TypeError: An argument is not an array of a supported dtype.
        ValueError: `output` is 0-d, or `values` or `weights` does not match `indices`.
        IndexError: With `checked=True`, an index outside `[0, N)`.
    """
    fn = "selective_scatter_add"
    check_array(fn, "output", output, FLOAT_DTYPES)
    check_array(fn, "values", values, FLOAT_DTYPES)
    check_array(fn, "indices", indices, INDEX_DTYPES)
    check_ndim(fn, "output", output, 1, "at least one axis (the rows to add to)", at_least=True)
    row_shape = tuple(output.shape[1:])
    check_shape(fn, "values", values, (*indices.shape, *row_shape), "indices.shape + output.shape[1:]")
    if weights is not None:
        check_array(fn, "weights", weights, FLOAT_DTYPES)
        check_shape(fn, "weights", weights, tuple(indices.shape), "indices.shape")
        weights = weights.reshape(-1)
    if checked:
        _check_range(fn, indices, output.shape[0], "output")
    d = math.prod(row_shape)
    result = _scatter_add(
        output.reshape(output.shape[0], d),
        values.reshape(indices.size, d),
        indices.reshape(-1),
        weights,
        deterministic,
    )
    return result.reshape(output.shape)


# --------------------------------------------------------------------------- references


def selective_gather_reference(x: mx.array, indices: mx.array) -> mx.array:
    """`selective_gather` in plain MLX ops (indices in range)."""
    return x[indices]


def selective_scatter_add_reference(
    output: mx.array, values: mx.array, indices: mx.array, weights: mx.array | None = None
) -> mx.array:
    """`selective_scatter_add` in plain MLX ops (indices in range; sums in `output`'s dtype)."""
    if weights is not None:
        values = values * weights.reshape(*weights.shape, *([1] * (output.ndim - 1)))
    return output.at[indices].add(values.astype(output.dtype))
