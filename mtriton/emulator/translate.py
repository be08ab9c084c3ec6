"""Rewrites MLX's generated Metal source into a C++ translation unit.

The rewrites never add or remove a line, so compiler messages and barrier
sites keep the Metal source's line numbers:

* ``[[...]]`` attributes are dropped (and the ``host_name`` instantiation
  line becomes a plain explicit instantiation);
* ``threadgroup T name[N];`` declarations become references to storage the
  runtime shares between the threads of a threadgroup;
* float literals: ``0.5h`` becomes a half, an unsuffixed ``0.5`` a float
  (Metal has no double; in C++ it would be one);
* read swizzles such as ``v.xy`` become calls;
* statements record their location (``__EMU_LOC(k)``) so that errors can name
  the ``// kernels.py:42`` comment the mtriton backend puts on each line, or
  the Metal line where there is none.

Then an ``extern "C"`` entry point that unpacks the argument array and calls
the kernel function is appended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .signature import KernelSource

_TOKEN = re.compile(
    r"""(?P<lc>//[^\n]*)
      |(?P<bc>/\*.*?\*/)
      |(?P<str>"(?:\\.|[^"\\\n])*")
      |(?P<chr>'(?:\\.|[^'\\\n])*')
      |(?P<nl>\n)
      |(?P<code>[^/"'\n]+|/)""",
    re.S | re.X,
)
_ATTRIBUTE = re.compile(r"\[\[\s*[A-Za-z_][\w:]*\s*(?:\([^()\]]*\))?\s*\]\]")
_METAL_INCLUDE = re.compile(r"^\s*#\s*include\s*<metal_\w+>")
_DECLARATOR = r"[A-Za-z_]\w*\s*(?:\[[^\];]*\]\s*)*"
_THREADGROUP_DECL = re.compile(
    r"(?<![\w.])threadgroup\s+"
    r"(?P<type>[A-Za-z_][\w:]*(?:\s*<[^;{}()]*?>)?)\s+"
    rf"(?P<decls>{_DECLARATOR}(?:,\s*{_DECLARATOR})*);"
)
_NAME_DIMS = re.compile(r"\s*([A-Za-z_]\w*)\s*(.*?)\s*$", re.S)
_FLOAT_LITERAL = re.compile(
    r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
    r"([fFhH]?)(?![\w.])"
)
_SWIZZLE = re.compile(r"\.([xyzw]{2,4}|[rgba]{2,4})\b(?!\s*\()")
_SWIZZLE_INDEX = {c: i for i, c in enumerate("xyzw")} | {c: i for i, c in enumerate("rgba")}
_PY_LOCATION = re.compile(r"//\s*([\w./\\-]+\.py:\d+(?::\d+)?)\s*$")
# Names of the shim functions that make a thread wait for others; a kernel
# that mentions none of them runs without fibers.
_SYNC_NAMES = (
    "threadgroup_barrier",
    "simdgroup_barrier",
    "simd_",
    "quad_",
    "simdgroup_multiply",
    "atomic_load",
    "atomic_compare_exchange",
)
# Lines starting with these continue a statement rather than begin one.
_CONTINUATIONS = {"else", "case", "default", "catch", "public", "private", "protected"}


@dataclass(frozen=True)
class Translation:
    """A kernel ready for the C++ compiler.

    Attributes:
        cpp: The translation unit.
        locations: Per location id, the Metal line and the ``file.py:line``
            comment on it (or None).
        threadgroup_names: Per threadgroup-array site id, the array's name.
        cooperative: Whether threads may wait for each other (barriers,
            SIMD-group functions, spinning atomics); if not, the runtime
            runs them one after another without switching stacks.
        language: The source language, for error messages.
    """

    cpp: str
    locations: tuple[tuple[int, str | None], ...]
    threadgroup_names: tuple[str, ...]
    cooperative: bool
    language: str = "Metal"


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "code", m.group()) for m in _TOKEN.finditer(text)]


def _merge_code(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for kind, text in tokens:
        if kind == "code" and merged and merged[-1][0] == "code":
            merged[-1] = ("code", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


class _CodeRewriter:
    """Rewrites the code (not comments or strings) of a Metal source."""

    def __init__(self) -> None:
        self.threadgroup_names: list[str] = []

    def _threadgroup(self, m: re.Match[str]) -> str:
        out = []
        for declarator in m.group("decls").split(","):
            dm = _NAME_DIMS.match(declarator)
            assert dm is not None  # the pattern only admits declarators
            name, dims = dm.group(1), dm.group(2)
            site = len(self.threadgroup_names)
            self.threadgroup_names.append(name)
            out.append(f'auto& {name} = __emu::threadgroup_var<{m.group("type")}{dims}>({site}, "{name}");')
        return " ".join(out)

    @staticmethod
    def _literal(m: re.Match[str]) -> str:
        number, suffix = m.group(1), m.group(2)
        if suffix in ("h", "H"):
            return f"((half){number})"
        return number + (suffix or "f")

    @staticmethod
    def _swizzle(m: re.Match[str]) -> str:
        indices = ",".join(str(_SWIZZLE_INDEX[c]) for c in m.group(1))
        return f".template __swz<{indices}>()"

    def rewrite(self, code: str) -> str:
        code = _ATTRIBUTE.sub("", code)
        code = _THREADGROUP_DECL.sub(self._threadgroup, code)
        code = _FLOAT_LITERAL.sub(self._literal, code)
        return _SWIZZLE.sub(self._swizzle, code)


def _rewrite_code(text: str) -> tuple[str, list[str]]:
    rewriter = _CodeRewriter()
    out = []
    for kind, chunk in _merge_code(_tokens(text)):
        if kind == "code" and not _METAL_INCLUDE.match(chunk):
            chunk = rewriter.rewrite(chunk)
        elif kind == "code":
            chunk = ""
        out.append(chunk)
    return "".join(out), rewriter.threadgroup_names


@dataclass
class _LineInfo:
    candidate: bool  # a statement may start here
    first_col: int  # offset of the first code character, -1 if none
    first_word: str
    py_location: str | None


class _Scanner:
    """Tracks braces and parentheses to find where statements start."""

    def __init__(self) -> None:
        self.stack: list[tuple[bool, bool]] = []  # (is block, opened by do)
        self.parens = 0
        self.prev = ""  # previous significant character
        self.prev_word = ""
        self.closed_block = True  # kind of the brace `prev == "}"` closed
        self.after_do = False

    def at_statement_start(self) -> bool:
        if self.parens or not self.stack or not self.stack[-1][0]:
            return False
        if self.prev == "}":
            return self.closed_block
        return self.prev in (";", "{")

    def feed(self, code: str) -> None:
        in_word = False
        for c in code:
            if c.isspace():
                in_word = False
                continue
            is_word = c.isalnum() or c == "_"
            if is_word:
                self.prev_word = self.prev_word + c if in_word else c
            in_word = is_word
            if c == "{":
                word = self.prev_word if self.prev.isalnum() or self.prev == "_" else ""
                block = self.prev in (")", ";", "{", "}") or word in ("else", "do", "try")
                self.stack.append((block, word == "do"))
            elif c == "}":
                if self.stack:
                    self.closed_block, self.after_do = self.stack.pop()
            elif c == "(":
                self.parens += 1
            elif c == ")":
                self.parens = max(0, self.parens - 1)
            if c != "}":
                self.after_do = False
            self.prev = c


def _line_infos(text: str) -> list[_LineInfo]:
    scanner = _Scanner()
    infos: list[_LineInfo] = []
    col = 0
    info = _LineInfo(scanner.at_statement_start(), -1, "", None)
    preprocessor = False
    last_code = ""
    for kind, chunk in _merge_code(_tokens(text)):
        if kind == "nl":
            infos.append(info)
            info = _LineInfo(scanner.at_statement_start(), -1, "", None)
            col = 0
            # A directive continues on the next line after a backslash.
            preprocessor = preprocessor and last_code.rstrip().endswith("\\")
            continue
        if kind == "lc":
            m = _PY_LOCATION.search(chunk)
            info.py_location = m.group(1) if m else None
        if kind == "bc" and "\n" in chunk:
            # A block comment spanning lines: the lines it ends are comment
            # only, and the code after it continues the last one.
            for _ in range(chunk.count("\n")):
                infos.append(info)
                info = _LineInfo(False, -1, "", None)
            col = len(chunk) - chunk.rfind("\n") - 1
            continue
        if kind in ("code", "str", "chr") and info.first_col < 0 and chunk.strip():
            stripped = chunk.lstrip()
            info.first_col = col + len(chunk) - len(stripped)
            wm = re.match(r"[A-Za-z_]\w*", stripped)
            info.first_word = wm.group() if wm else stripped[0]
            preprocessor = preprocessor or stripped.startswith("#")
            if info.first_word == "while" and scanner.after_do:
                info.candidate = False
        if kind == "code":
            last_code = chunk
        if preprocessor:
            info.candidate = False
        elif kind == "code":
            scanner.feed(chunk)
        elif kind in ("str", "chr"):
            scanner.prev, scanner.prev_word = '"', ""
        col += len(chunk)
    infos.append(info)
    return infos


def insert_locations(text: str, body_first: int, body_last: int) -> tuple[str, list[tuple[int, str | None]]]:
    lines = text.split("\n")
    locations: list[tuple[int, str | None]] = []
    for number, (line, info) in enumerate(zip(lines, _line_infos(text), strict=True), start=1):
        in_body = body_first <= number <= body_last
        if not info.candidate or info.first_col < 0 or info.first_word in _CONTINUATIONS:
            continue
        if not (in_body or info.py_location) or (info.first_word == "}" and not info.py_location):
            continue
        loc = len(locations)
        locations.append((number, info.py_location))
        col = info.first_col
        lines[number - 1] = f"{line[:col]}__EMU_LOC({loc}) {line[col:]}"
    return "\n".join(lines), locations


def entry_point(source: KernelSource, prologue: str = "") -> str:
    """The ``extern "C"`` function the runtime calls per thread: it unpacks the argument array,
    runs `prologue` and calls the kernel."""
    args = []
    for k, param in enumerate(source.params):
        if param.kind == "attribute":
            field = f"__t->{param.name}"
            if param.ctype == "uint3":
                args.append(f"uint3({field}[0], {field}[1], {field}[2])")
            else:
                args.append(field)
        elif param.by_reference:
            args.append(f"*({param.ctype})__a[{k}]")
        else:
            args.append(f"({param.ctype})__a[{k}]")
    joined = ",\n      ".join(args)
    return (
        '#line 1 "<metal-emu entry>"\n'
        'extern "C" __attribute__((visibility("default"))) void mtemu_entry(\n'
        "    void* const* __a, const mtemu_attrs* __t) {\n"
        f"  (void)__a;\n  (void)__t;\n{prologue}  {source.function}(\n      {joined});\n}}\n"
    )


def translate(source: KernelSource) -> Translation:
    """Turns a generated Metal source into the emulator's C++.

    Args:
        source: MLX's full source for one call.

    Returns:
        The translation unit and the tables that map runtime ids back to
        source locations and threadgroup array names.
    """
    text = source.text.replace(f'[[host_name("{source.host_name}")]] ', "")
    text, tg_names = _rewrite_code(text)
    body_last = source.text.rfind("\n}\n")
    text, locations = insert_locations(text, source.body_line, source.text.count("\n", 0, body_last) + 1)
    cpp = f'#include "metal_shim.h"\n#line 1 "{source.host_name}.metal"\n{text}\n{entry_point(source)}'
    cooperative = any(name in source.text for name in _SYNC_NAMES)
    return Translation(cpp, tuple(locations), tuple(tg_names), cooperative)
