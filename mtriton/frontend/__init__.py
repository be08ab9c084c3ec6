"""Frontend: a @jit function plus its specialization -> an IR function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import ir
from ..ir import types as T
from ..language import core, semantic
from .codegen import ArgSpec, CodeGenerator

__all__ = ["ArgSpec", "build_ir"]


def build_ir(jit_fn: Any, specs: Sequence[ArgSpec]) -> ir.Function:
    """Builds the IR of `jit_fn` specialized by `specs` (one per parameter, in order).

    Raises:
        CompilationError: pointing at the kernel line that caused it.
    """
    builder = ir.Builder()
    builder.loc = ir.Loc(jit_fn.file, jit_fn.def_line, jit_fn.indent)
    params: list[ir.Param] = []
    scope: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "constexpr":
            scope[spec.name] = spec.value
            continue
        value = ir.Value(T.BlockType(spec.type), spec.name)
        params.append(ir.Param(spec.name, value, spec.divisibility))
        scope[spec.name] = spec.value if spec.value is not None else core.tensor(value)
    builder.block.args = [p.value for p in params]
    fn = ir.Function(jit_fn.__name__, params, builder.block, builder.loc, {})
    codegen = CodeGenerator(jit_fn, builder, scope)
    with semantic.compiling(builder, codegen):
        codegen.generate_body()
    return fn
