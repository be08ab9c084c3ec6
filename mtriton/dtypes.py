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
