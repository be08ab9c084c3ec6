"""The table of lowering rules: `RULES`, filled by `@lowers`, and its completeness check.

A rule is a function `_lower_<op>(lo, op)` in one of the family modules of `rules/`; it
reads its operands with `lo.get`, declares its results with `lo.new_entity` and writes C
with `lo.emit`. `rules/__init__.py` imports every family and then checks, at import time,
that each op of the IR vocabulary (`ir.ALL_OPS`) has a rule or an entry in `UNSUPPORTED`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ... import ir

if TYPE_CHECKING:
    from .lowering import Lowering

Rule = Callable[["Lowering", ir.Op], None]

RULES: dict[str, Rule] = {}

# IR ops the C-like targets do not lower, each with the reason the error gives. Every op
# lowers today; an op added to the vocabulary before its rule is written goes here.
UNSUPPORTED: dict[str, str] = {}


def lowers(*names: str) -> Callable[[Rule], Rule]:
    """Registers the decorated function as the rule that lowers ops `names`."""

    def register(fn: Rule) -> Rule:
        for name in names:
            if name in RULES:
                raise AssertionError(f"two lowering rules for `{name}`")
            RULES[name] = fn
        return fn

    return register


def check_complete(rules: Mapping[str, Rule], unsupported: Mapping[str, str]) -> None:
    """Raises AssertionError naming every IR op with neither a rule nor an `unsupported`
    entry, and every name that is not an IR op or is in both."""
    problems = []
    missing = ir.ALL_OPS - rules.keys() - unsupported.keys()
    if missing:
        problems.append(
            f"no lowering rule for {_names(missing)}: add one with @lowers or list it in UNSUPPORTED"
        )
    unknown = (rules.keys() | unsupported.keys()) - ir.ALL_OPS
    if unknown:
        problems.append(f"lowering rules for {_names(unknown)}, which are not IR ops")
    both = rules.keys() & unsupported.keys()
    if both:
        problems.append(f"{_names(both)} both lowered and listed in UNSUPPORTED")
    if problems:
        raise AssertionError("; ".join(problems))


def _names(ops: set[str]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(ops))
