"""The IR's text form: an MLIR-like listing that `parser.py` reads back.

One op per line; results, operands and block arguments are named `%0, %1, ...`
in order of definition, kernel parameters by their Python names. Result types
are always written, so reading the text needs no type inference:

    func @add_kernel(%x: *f32 {divisibility = 16}, %n: i32) {
      %0 = program_id {axis = 0} : i32  loc("k.py":4:10)
      %1, %2 = split %0 : <64xf32>, <64xf32>
      %3 = for %lb, %ub, %step, %acc : f32 {
      ^(%4: i32, %5: f32):
        yield %5
      }  loc("k.py":7:4)
    }  loc("k.py":2:0)

Attribute dictionaries are written with sorted keys and the location after two
spaces, so equal functions print identically and the text diffs well.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .core import UNKNOWN_LOC, Block, Function, Loc, Op, Value

_INDENT = "  "
# Names that the grammar's NAME terminal reads; others are written JSON-quoted.
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def print_function(fn: Function, *, locs: bool = True) -> str:
    """Writes `fn` in the IR's text form.

    Args:
        fn: The function to print. It need not verify: a value used before its
            definition is named where it first appears, which makes the
            listing useful when debugging a verifier error.
        locs: Whether to write each op's `loc(...)`; unknown locations are
            never written.

    Returns:
        The listing, ending with a newline.
    """
    return _Printer(locs).function(fn)


def _format_attr(value: Any) -> str:
    """Writes one attribute value so that the parser reads back an equal value.

    Args:
        value: A bool, int, float, str, None, or a tuple or list of those.

    Returns:
        The text: floats by `repr` (exact, including `inf`, `nan`, `-0.0`),
        strings JSON-quoted, tuples with Python's `(x,)` for one element.

    Raises:
        TypeError: For any other kind of value.
    """
    # bool before int: bool is a subclass of int but prints differently.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        # float.__repr__ rather than repr(): numpy scalars subclass float but
        # repr as `np.float64(...)`.
        return float.__repr__(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = ", ".join(map(_format_attr, value))
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return f"[{', '.join(map(_format_attr, value))}]"
    raise TypeError(f"IR attribute value {value!r} of type {type(value).__name__} has no text form")


def _format_attrs(attrs: dict[str, Any]) -> str:
    """Writes an attribute dictionary `{key = value, ...}` with sorted keys."""
    items = (f"{_format_name(k)} = {_format_attr(attrs[k])}" for k in sorted(attrs))
    return "{" + ", ".join(items) + "}"


def _format_loc(loc: Loc) -> str:
    """Writes a location as `loc("file":line:col)`."""
    return f"loc({json.dumps(loc.file)}:{loc.line}:{loc.col})"


def _format_name(name: str) -> str:
    return name if _BARE_NAME.fullmatch(name) else json.dumps(name)


class _Printer:
    """Names values as it meets them and collects the output lines."""

    def __init__(self, locs: bool) -> None:
        self.locs = locs
        self.names: dict[Value, str] = {}
        self.numbered = 0
        self.lines: list[str] = []

    def name(self, value: Value) -> str:
        if value not in self.names:
            self.names[value] = f"%{self.numbered}"
            self.numbered += 1
        return self.names[value]

    def typed(self, value: Value) -> str:
        return f"{self.name(value)}: {value.type}"

    def loc_suffix(self, loc: Loc) -> str:
        return f"  {_format_loc(loc)}" if self.locs and loc != UNKNOWN_LOC else ""

    def function(self, fn: Function) -> str:
        params = []
        for param in fn.params:
            self.names[param.value] = f"%{param.name}"
            div = f" {{divisibility = {param.divisibility}}}" if param.divisibility != 1 else ""
            params.append(f"%{param.name}: {param.value.type}{div}")
        attrs = f" attributes {_format_attrs(fn.attrs)}" if fn.attrs else ""
        self.lines.append(f"func @{_format_name(fn.name)}({', '.join(params)}){attrs} {{")
        self.ops(fn.body, 1)
        self.lines.append("}" + self.loc_suffix(fn.loc))
        return "\n".join(self.lines) + "\n"

    def ops(self, block: Block, depth: int) -> None:
        for op in block.ops:
            self.op(op, depth)

    def op(self, op: Op, depth: int) -> None:
        indent = _INDENT * depth
        head = op.name
        if op.operands:
            head += " " + ", ".join(self.name(v) for v in op.operands)
        if op.attrs:
            head += " " + _format_attrs(op.attrs)
        if op.results:
            head = ", ".join(self.name(v) for v in op.results) + " = " + head
            head += " : " + ", ".join(str(v.type) for v in op.results)
        if not op.regions:
            self.lines.append(indent + head + self.loc_suffix(op.loc))
            return
        self.lines.append(f"{indent}{head} {{")
        for i, region in enumerate(op.regions):
            if i:
                self.lines.append(f"{indent}}} {{")
            if region.args:
                self.lines.append(f"{indent}^({', '.join(map(self.typed, region.args))}):")
            self.ops(region, depth + 1)
        self.lines.append(indent + "}" + self.loc_suffix(op.loc))
