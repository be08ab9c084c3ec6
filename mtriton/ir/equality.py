"""Structural equality of IR functions, up to renaming of values."""

from __future__ import annotations

from typing import Any

from .core import Block, Function, Op, Value


def structurally_equal(a: Function, b: Function) -> bool:
    """Whether two functions are the same program.

    Compares names, parameters, function attributes, and op by op the names,
    attributes, result types, locations and regions, with the use-def graph
    matched up to renaming: each value of `a` must correspond to exactly one
    value of `b` wherever either appears. Value `name_hint`s are ignored.

    Args:
        a: One function.
        b: The other.

    Returns:
        True when they are equal.
    """
    params_a = [(p.name, p.divisibility) for p in a.params]
    params_b = [(p.name, p.divisibility) for p in b.params]
    if (a.name, a.loc, params_a) != (b.name, b.loc, params_b):
        return False
    match = _Matching()
    return (
        attrs_equal(a.attrs, b.attrs)
        and match.values([p.value for p in a.params], [p.value for p in b.params])
        and match.blocks(a.body, b.body)
    )


def attrs_equal(a: Any, b: Any) -> bool:
    """Whether two attribute values are equal, also in type.

    `True`, `1` and `1.0` differ here (Python's `==` calls them equal), as do
    tuples and lists; floats compare by `repr`, so `nan` equals itself and
    `-0.0` differs from `0.0`.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(attrs_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(map(attrs_equal, a, b))
    return a == b


class _Matching:
    """A one-to-one correspondence between the values of two functions."""

    def __init__(self) -> None:
        self.forward: dict[Value, Value] = {}
        self.backward: dict[Value, Value] = {}

    def values(self, xs: list[Value], ys: list[Value]) -> bool:
        """Pairs `xs` with `ys`, or says that an earlier pairing contradicts it.

        Definitions and uses go through the same check, so a value used before
        its definition (in IR that does not verify) still compares sensibly.
        """
        if len(xs) != len(ys):
            return False
        for x, y in zip(xs, ys, strict=True):
            if x.type != y.type:
                return False
            if self.forward.setdefault(x, y) is not y or self.backward.setdefault(y, x) is not x:
                return False
        return True

    def blocks(self, a: Block, b: Block) -> bool:
        return self.values(a.args, b.args) and len(a.ops) == len(b.ops) and all(map(self.ops, a.ops, b.ops))

    def ops(self, a: Op, b: Op) -> bool:
        return (
            (a.name, a.loc, len(a.regions)) == (b.name, b.loc, len(b.regions))
            and attrs_equal(a.attrs, b.attrs)
            and self.values(a.operands, b.operands)
            and self.values(a.results, b.results)
            and all(map(self.blocks, a.regions, b.regions))
        )
