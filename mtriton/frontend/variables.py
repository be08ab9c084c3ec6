"""How the frontend's variables hold values across runtime control flow.

A variable holds one runtime value, or several for a block pointer (its fields): `Leaf` names
each by variable and position. Loops carry and `if`s merge leaves; `rebound` puts new leaves
back into a scope. Early exits (`break`, `continue`, `return`) are flags kept in the scope
under names no Python variable can have (`RETURN`, `@break0`), and the values an early `return`
gives are variables too (`@value0`, ...): a path that did not return holds a placeholder.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from ..errors import KernelTypeError
from ..ir import types as T
from ..language import core, semantic
from ..language.block_pointer import block_ptr


def is_tensor(x: Any) -> bool:
    return isinstance(x, core.tensor)


def assigned_names(stmts: Sequence[ast.stmt]) -> list[str]:
    """Names a statement list stores to, in first-assignment order."""
    names: dict[str, None] = {}
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.setdefault(node.id, None)
    return list(names)


MISSING = object()
# The scope's name for "an early `return` was taken" (no Python variable can be called so).
RETURN = "@return"
# The scope's names for the values an early `return` gave: `@value0`, `@value1`, ... (a tuple
# returns each element under its own name).
RETURN_VALUE = "@value"


def is_return_value(name: str) -> bool:
    return name.startswith(RETURN_VALUE)


def placeholder(like: core.tensor) -> core.tensor:
    """A value of `like`'s type for a path that did not return: the return flag guards it,
    so it is never read."""
    return semantic.full(like.shape, 0, like.dtype)


# A runtime value a variable holds: (variable, position); a block pointer holds several.
Leaf = tuple[str, int]


def leaves(value: Any) -> list[Any]:
    """The runtime values of a variable: a block pointer's fields, else the value itself."""
    return value.fields() if isinstance(value, block_ptr) else [value]


def leaf_list(name: str, before: Any, now: Any) -> list[Any]:
    """`now`'s runtime values, which must be as many and of the kind `before`'s are."""
    was_ptr, is_ptr = isinstance(before, block_ptr), isinstance(now, block_ptr)
    if was_ptr != is_ptr or (was_ptr and before.block_shape != now.block_shape):
        kinds = [f"a block pointer of block_shape {v.block_shape}" if isinstance(v, block_ptr) else "a value"
                 for v in (before, now)]  # fmt: skip
        raise KernelTypeError(f"`{name}` is {kinds[0]} here and {kinds[1]} there; it must keep its kind")
    return leaves(now)


def rebound(scope: dict[str, Any], keys: Sequence[Leaf], values: Sequence[Any]) -> dict[str, Any]:
    """`scope` with the runtime values at `keys` replaced by `values` (block pointers rebuilt)."""
    out = dict(scope)
    new = dict(zip(keys, values))
    for name in dict.fromkeys(n for n, _ in keys):
        current = [new.get((name, i), leaf) for i, leaf in enumerate(leaves(scope[name]))]
        out[name] = scope[name].with_fields(current) if isinstance(scope[name], block_ptr) else current[0]
    return out


def unify_type(name: str, a: Any, b: Any) -> T.BlockType:
    """The type a variable has after an `if` whose branches give `a` and `b`."""
    if is_tensor(a) and is_tensor(b):
        if a.type != b.type:
            raise KernelTypeError(
                f"variable `{name}` is {a.type} in one branch of the `if` and {b.type} in the other"
            )
        return a.type
    if is_tensor(a) or is_tensor(b):
        return (a if is_tensor(a) else b).type
    dtype = semantic.computation_type(semantic.literal_dtype(a), semantic.literal_dtype(b))
    return T.BlockType(dtype)


def coerce(name: str, value: Any, target: T.BlockType, widening: bool = False) -> core.tensor:
    """Converts `value` to `target` where that is a literal or a scalar growing to a block."""
    value = semantic.unwrap(value)
    if not is_tensor(value):
        return semantic.full(target.shape, value, target.elem)
    if value.type == target:
        return value
    same_shape = tuple(value.shape) == target.shape
    if widening and (not value.shape or same_shape):
        converted = semantic.cast(value, target.elem) if value.dtype != target.elem else value
        return semantic.broadcast_to(converted, target.shape)
    raise KernelTypeError(
        f"loop-carried variable `{name}` is {value.type} before the loop and {target} in the loop body"
    )
