"""Block pointers (`tl.make_block_ptr`, `tl.advance`) as Triton defines them, built from the
pointer blocks and masks the rest of the language has.

A block pointer names a `block_shape` window at `offsets` into a tensor of `shape` and
`strides` (elements) starting at `base`. Loading through it computes the pointer block
`base + sum_d (offsets[d] + arange(block_shape[d])) * strides[d]`, broadcast over the window, and,
for each dimension in `boundary_check`, a mask that keeps the window inside `[0, shape[d])`;
`padding_option` says what masked elements read ("zero", or "nan" for floats). `order` is a
layout hint in Triton and changes no result here. A block pointer is a compile-time value of
scalar fields, so it can be reassigned in runtime loops (`p = tl.advance(p, (0, BLOCK_K))`):
the frontend carries its fields (`fields`/`with_fields`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import KernelTypeError
from ..ir import types as T
from . import core, semantic
from .core import tensor

PADDING_OPTIONS = ("", "zero", "nan")


@dataclass(frozen=True)
class block_ptr:  # noqa: N801 (Triton's name for the type)
    """What `tl.make_block_ptr` returns; see the module docstring."""

    base: tensor
    shape: tuple[tensor, ...]
    strides: tuple[tensor, ...]
    offsets: tuple[tensor, ...]
    block_shape: tuple[int, ...]
    order: tuple[int, ...]

    def fields(self) -> list[tensor]:
        """The runtime values it holds, in a fixed order (for loop-carried block pointers)."""
        return [self.base, *self.shape, *self.strides, *self.offsets]

    def with_fields(self, values: Sequence[tensor]) -> block_ptr:
        """The same block pointer with new runtime values, in `fields` order."""
        rank = len(self.block_shape)
        return block_ptr(
            values[0],
            tuple(values[1 : 1 + rank]),
            tuple(values[1 + rank : 1 + 2 * rank]),
            tuple(values[1 + 2 * rank :]),
            self.block_shape,
            self.order,
        )

    @property
    def dtype(self) -> T.PointerType:
        return self.base.dtype


def _scalars(what: str, values: Any, rank: int | None, dtype: T.DType) -> tuple[tensor, ...]:
    values = semantic.unwrap(values)
    if not isinstance(values, (tuple, list)):
        raise KernelTypeError(f"make_block_ptr's {what} must be a tuple, got {values!r}")
    if rank is not None and len(values) != rank:
        raise KernelTypeError(f"make_block_ptr's {what} has {len(values)} entries; the block has {rank} dims")
    out = []
    for v in values:
        v = semantic.to_tensor(v)
        if v.shape or not v.dtype.is_int() or v.dtype.is_bool():
            raise KernelTypeError(f"make_block_ptr's {what} must be integer scalars, got {v.type}")
        out.append(semantic.cast(v, dtype) if v.dtype != dtype else v)
    return tuple(out)


def make_block_ptr(
    base: Any, shape: Any, strides: Any, offsets: Any, block_shape: Any, order: Any
) -> block_ptr:
    """A block pointer to the `block_shape` window at `offsets` of the `shape` tensor at `base`."""
    base = semantic.to_tensor(base)
    if base.shape or not base.dtype.is_ptr():
        raise KernelTypeError(f"make_block_ptr's base must be a scalar pointer, got {base.type}")
    dims = tuple(int(semantic.unwrap(d)) for d in semantic.unwrap(block_shape))
    if not dims or any(d <= 0 or d & (d - 1) for d in dims):
        raise KernelTypeError(f"make_block_ptr's block_shape must be powers of two, got {dims}")
    rank = len(dims)
    order = tuple(int(semantic.unwrap(o)) for o in semantic.unwrap(order))
    if sorted(order) != list(range(rank)):
        raise KernelTypeError(f"make_block_ptr's order must be a permutation of range({rank}), got {order}")
    # Triton keeps shapes and strides in 64 bits and offsets in 32
    return block_ptr(
        base,
        _scalars("shape", shape, rank, T.int64),
        _scalars("strides", strides, rank, T.int64),
        _scalars("offsets", offsets, rank, T.int32),
        dims,
        order,
    )


def advance(pointer: Any, offsets: Any) -> block_ptr:
    """`pointer` moved by `offsets` (one per dim, in elements)."""
    if not isinstance(pointer, block_ptr):
        raise KernelTypeError(f"tl.advance needs a block pointer from tl.make_block_ptr, got {pointer!r}")
    deltas = _scalars("advance offsets", offsets, len(pointer.block_shape), T.int32)
    moved = tuple(o + d for o, d in zip(pointer.offsets, deltas))
    return block_ptr(pointer.base, pointer.shape, pointer.strides, moved, pointer.block_shape, pointer.order)


def _window(pointer: block_ptr, boundary_check: Any) -> tuple[tensor, tensor | None]:
    """The pointer block of the window and the mask of its elements inside the tensor."""
    rank = len(pointer.block_shape)
    checks = semantic.unwrap(boundary_check)
    checks = tuple(
        int(semantic.unwrap(c)) for c in (checks if isinstance(checks, (tuple, list)) else (checks,))
    )
    if any(not 0 <= c < rank for c in checks):
        raise KernelTypeError(f"boundary_check dims must lie in range({rank}), got {checks}")
    offsets = None
    mask = None
    for d, size in enumerate(pointer.block_shape):
        # the window's indices along d, shaped to broadcast over the other dims
        index = semantic.cast(semantic.arange(0, size), T.int64) + pointer.offsets[d]
        index = semantic.reshape(index, tuple(size if a == d else 1 for a in range(rank)))
        term = index * pointer.strides[d]
        offsets = term if offsets is None else offsets + term
        if d in checks:
            inside = (index >= 0) & (index < pointer.shape[d])
            mask = inside if mask is None else mask & inside
    assert offsets is not None
    offsets = semantic.broadcast_to(offsets, pointer.block_shape)
    if mask is not None:
        mask = semantic.broadcast_to(mask, pointer.block_shape)
    return pointer.base + offsets, mask


def load(
    pointer: Any,
    mask: Any = None,
    other: Any = None,
    boundary_check: Any = (),
    padding_option: Any = "",
    cache_modifier: Any = "",
    eviction_policy: Any = "",
    volatile: Any = False,
) -> tensor:
    """`tl.load`: through a pointer block with `mask`/`other`, or through a block pointer with
    `boundary_check`/`padding_option`."""
    if not isinstance(pointer, block_ptr):
        _no_boundary_check(boundary_check, padding_option)
        return core.load(pointer, mask, other)
    if mask is not None or other is not None:
        raise KernelTypeError(
            "tl.load through a block pointer takes boundary_check and padding_option, not mask/other"
        )
    padding = semantic.unwrap(padding_option) or ""
    if padding not in PADDING_OPTIONS:
        raise KernelTypeError(f"padding_option must be one of 'zero', 'nan' or '', got {padding!r}")
    pointers, inside = _window(pointer, boundary_check)
    elem = pointer.dtype.element
    if padding == "nan" and not elem.is_floating():
        raise KernelTypeError(f"padding_option='nan' needs a floating-point tensor, got {elem}")
    return semantic.load(pointers, inside, float("nan") if padding == "nan" and inside is not None else None)


def store(
    pointer: Any,
    value: Any,
    mask: Any = None,
    boundary_check: Any = (),
    cache_modifier: Any = "",
    eviction_policy: Any = "",
) -> None:
    """`tl.store`: through a pointer block with `mask`, or through a block pointer with
    `boundary_check`."""
    if not isinstance(pointer, block_ptr):
        _no_boundary_check(boundary_check, "")
        return core.store(pointer, value, mask)
    if mask is not None:
        raise KernelTypeError("tl.store through a block pointer takes boundary_check, not mask")
    pointers, inside = _window(pointer, boundary_check)
    value = semantic.to_tensor(value)
    if value.shape and tuple(value.shape) != pointer.block_shape:
        raise KernelTypeError(
            f"tl.store through a block pointer of block_shape {pointer.block_shape} got a value of shape "
            f"{tuple(value.shape)}"
        )
    semantic.store(pointers, value, inside)
    return None


def _no_boundary_check(boundary_check: Any, padding_option: Any) -> None:
    if semantic.unwrap(boundary_check) or semantic.unwrap(padding_option):
        raise KernelTypeError("boundary_check and padding_option need a block pointer from tl.make_block_ptr")
