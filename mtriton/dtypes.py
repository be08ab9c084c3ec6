"""The one table between MLX dtypes and the IR's element types."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .ir import types as T

MX_TO_IR: dict[Any, T.DType] = {
    mx.bool_: T.int1, mx.int8: T.int8, mx.int16: T.int16, mx.int32: T.int32, mx.int64: T.int64,
    mx.uint8: T.uint8, mx.uint16: T.uint16, mx.uint32: T.uint32, mx.uint64: T.uint64,
    mx.float16: T.float16, mx.bfloat16: T.bfloat16, mx.float32: T.float32, mx.float64: T.float64,
}  # fmt: skip
IR_TO_MX: dict[T.DType, Any] = {v: k for k, v in MX_TO_IR.items()}


def storage_dtype(dtype: T.DType) -> Any:
    """The MLX dtype whose arrays hold values of the IR type `dtype`.

    MLX has no float8: float8 values live as their bits in uint8 arrays (a kernel reads
    them through a pointer to float8, `mtriton.reinterpret` or a pointer cast).
    """
    if dtype.is_fp8():
        return mx.uint8
    return IR_TO_MX[dtype]
