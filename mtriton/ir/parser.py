"""Reads the IR's text form (see `printer.py`) back into a `Function`.

The grammar lives in `grammar.lark`. Lark's LALR parser turns the leaves
(types, attribute values, locations) into Python objects as it goes; a small
reader then walks the tree in program order to resolve value names, so a name
must be defined above its first use, as the printer writes it. The parser
checks syntax and names only; `verifier.verify` checks the rest.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import PatternStr

from .core import UNKNOWN_LOC, Block, Function, Loc, Op, Param, Value
from .types import BlockType, ElemType, parse_elem

_BLOCK_TYPE = re.compile(r"<((?:\d+x)+)(.+)>")


class ParseError(ValueError):
    """The text is not a well-formed IR function.

    Attributes:
        line: 1-based line of the offending text.
        column: 1-based column of the offending text.
    """

    def __init__(self, message: str, text: str, line: int, column: int) -> None:
        source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        caret = " " * (column - 1) + "^"
        super().__init__(f"line {line}, column {column}: {message}\n  {source}\n  {caret}")
        self.line = line
        self.column = column


def parse_function(text: str) -> Function:
    """Reads one function in the text form that `print_function` writes.

    Args:
        text: The listing.

    Returns:
        A new function; printing it gives back `text` when `text` came from the
        printer.

    Raises:
        ParseError: On a syntax error, an unknown type, a malformed attribute,
            or a value name used before its definition or defined twice. The
            message names the line and column.
    """
    try:
        tree = _lark().parse(text)
        return _Reader().function(tree.children[0])
    except _TokenError as e:
        raise ParseError(e.message, text, e.token.line, e.token.column) from None
    # LALR parsing raises only these two (never UnexpectedEOF: the end of the
    # text is a token).
    except (UnexpectedToken, UnexpectedCharacters) as e:
        raise ParseError(_describe(e), text, e.line, e.column) from None


class _TokenError(Exception):
    """A semantic error found at `token`; `parse_function` adds the text."""

    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


@functools.cache
def _lark() -> Lark:
    grammar = Path(__file__).with_name("grammar.lark").read_text()
    # maybe_placeholders keeps optional parts at fixed child positions (None
    # where absent), which the reader relies on.
    return Lark(grammar, parser="lalr", transformer=_Leaves(), maybe_placeholders=True)


def _describe(e: UnexpectedToken | UnexpectedCharacters) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"unexpected character {e.char!r}"
    expected = ", ".join(sorted(map(_terminal, e.expected)))
    return f"unexpected {_terminal(e.token.type, e.token)}; expected one of: {expected}"


def _terminal(name: str, token: Token | None = None) -> str:
    """How an error message shows a terminal: its text where it is fixed."""
    if name == "_NL":
        return "end of line"
    if name == "$END":
        return "end of text"
    if token is not None:
        return repr(str(token))
    pattern = _lark().get_terminal(name).pattern
    return repr(pattern.value) if isinstance(pattern, PatternStr) else name


@v_args(inline=True)
class _Leaves(Transformer):
    """Turns types, attribute values and locations into Python objects."""

    def block_type(self, token: Token) -> BlockType:
        match = _BLOCK_TYPE.fullmatch(token)
        assert match is not None, "the BLOCK_TYPE terminal guarantees the form"
        dims = tuple(int(d) for d in match.group(1).split("x")[:-1])
        return BlockType(_elem(token, match.group(2)), dims)

    def scalar_type(self, token: Token) -> BlockType:
        return BlockType(_elem(token, token))

    def number(self, token: Token) -> int | float:
        return int(token) if token.lstrip("-").isdigit() else float(token)

    def string_value(self, token: Token) -> str:
        return json.loads(token)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    def none(self) -> None:
        return None

    def tuple_value(self, *items: Any) -> tuple[Any, ...]:
        return items

    def list_value(self, *items: Any) -> list[Any]:
        return list(items)

    def attr(self, key: Token, value: Any) -> tuple[Token, Any]:
        return key, value

    def attr_dict(self, *items: tuple[Token, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for token, value in items:
            key = json.loads(token) if token.type == "STRING" else str(token)
            if key in attrs:
                raise _TokenError(token, f"attribute {key!r} given twice")
            attrs[key] = value
        return attrs

    def loc(self, file: Token, line: Token, col: Token) -> Loc:
        return Loc(json.loads(file), int(line), int(col))

    def func_name(self, token: Token) -> str:
        return json.loads(token) if token.type == "STRING" else str(token)


def _elem(token: Token, text: str) -> ElemType:
    try:
        return parse_elem(text)
    except ValueError as e:
        raise _TokenError(token, str(e)) from None


class _Reader:
    """Builds the function from the tree, resolving `%names` in program order."""

    def __init__(self) -> None:
        self.values: dict[str, Value] = {}

    def define(self, token: Token, type_: BlockType) -> Value:
        if token in self.values:
            raise _TokenError(token, f"value {token} is defined twice")
        self.values[str(token)] = Value(type_)
        return self.values[token]

    def use(self, token: Token) -> Value:
        if token not in self.values:
            raise _TokenError(token, f"value {token} is used before its definition")
        return self.values[token]

    def function(self, tree: Tree) -> Function:
        name, params_tree, attrs, *ops, loc = tree.children
        params = [self.param(p) for p in (params_tree.children if params_tree else [])]
        body = Block([p.value for p in params])
        body.ops = [self.op(o) for o in ops]
        return Function(name, params, body, loc or UNKNOWN_LOC, attrs or {})

    def param(self, tree: Tree) -> Param:
        token, type_, attrs = tree.children
        attrs = dict(attrs or {})
        divisibility = attrs.pop("divisibility", 1)
        if attrs or not isinstance(divisibility, int) or isinstance(divisibility, bool):
            raise _TokenError(token, "a parameter takes only an integer {divisibility = N}")
        return Param(token[1:], self.define(token, type_), divisibility)

    def op(self, tree: Tree) -> Op:
        results, name, operands, attrs, types, *regions, loc = tree.children
        result_tokens = results.children if results else []
        result_types = types.children if types else []
        if len(result_tokens) != len(result_types):
            raise _TokenError(
                name,
                f"{len(result_tokens)} results but {len(result_types)} result types",
            )
        op = Op(
            str(name),
            [self.use(t) for t in (operands.children if operands else [])],
            [],
            attrs or {},
            [self.region(r) for r in regions],
            loc or UNKNOWN_LOC,
        )
        # Results are defined after the regions: an op's regions cannot see them.
        op.results = [self.define(t, ty) for t, ty in zip(result_tokens, result_types, strict=True)]
        return op

    def region(self, tree: Tree) -> Block:
        header, *ops = tree.children
        block = Block()
        if header is not None:
            block.args = [self.define(*arg.children) for arg in header.children]
        block.ops = [self.op(o) for o in ops]
        return block
