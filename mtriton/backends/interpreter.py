"""The interpreter backend: runs the IR with MLX array ops on any MLX device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from .. import ir
from ..interpreter import execute
from ..options import LaunchOptions


class _Interpreted:
    def __init__(self, fn: ir.Function) -> None:
        self.fn = fn

    def __call__(self, args: Sequence[Any], grid: tuple[int, int, int]) -> list[mx.array | None]:
        return execute(self.fn, args, grid)


class InterpreterBackend:
    name = "interpreter"
    options: frozenset[str] = frozenset()  # no launch option changes what the interpreter does

    def is_available(self) -> bool:
        return True

    def compile(self, fn: ir.Function, opts: LaunchOptions) -> _Interpreted:
        return _Interpreted(fn)
