"""The source of a `@jit` function: what the frontend reads and what its cache key hashes.

`JITSource` holds a Python function's file, parsed body, signature, constexpr parameter names
and the hash of everything the compiled code depends on. It lives in the language layer so that
functions written in the language itself (`standard.py`) are `JITSource`s that kernels call
(the frontend inlines them) without the language importing the launcher:
`mtriton.runtime.jit.JITFunction` adds specialization, caches and `kernel[grid](...)`.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from ..cache import compiler_fingerprint, key_hash
from ..errors import CompilationError, LaunchError
from ..ir import types as T
from . import semantic
from .core import constexpr


def is_constexpr_annotation(annotation: Any) -> bool:
    """Whether a parameter annotation marks a constexpr (`tl.constexpr`, or its name as a string)."""
    if annotation is constexpr:
        return True
    return isinstance(annotation, str) and annotation.split(".")[-1] == "constexpr"


class JITSource:
    """A Python function the frontend compiles: its source, signature and dependencies.

    Attributes:
        fn: The Python function.
        file: Absolute path of its source file.
        first_line: Line of `file` where its source (decorators included) starts.
        def_line: Line of its `def`.
        indent: Columns its source is indented by in `file`.
        src: Its dedented source.
        ast_body: The statements of its body.
        signature: `inspect.signature(fn)`.
        arg_names: Its parameter names, in order.
        constexpr_names: The parameters annotated `tl.constexpr`.
    """

    is_mtriton_jit = True

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.file = inspect.getsourcefile(fn) or "<unknown>"
        try:
            lines, self.first_line = inspect.getsourcelines(fn)
        except (OSError, TypeError):
            raise CompilationError(
                f"@jit needs the source code of {fn.__qualname__}: define kernels in a .py file "
                "(not in exec'd strings or an interactive prompt without source)"
            ) from None
        self.indent = len(lines[0]) - len(lines[0].lstrip())
        self._deps: list[tuple[dict[str, Any], tuple[str, ...], Any]] | None = None
        self._deps_key: str | None = None
        self.src = "".join(lines)
        self.def_line = self.first_line + self._def.lineno - 1
        self.signature = inspect.signature(fn)
        self.arg_names = list(self.signature.parameters)
        self.constexpr_names = {
            p.name for p in self.signature.parameters.values() if is_constexpr_annotation(p.annotation)
        }

    @property
    def src(self) -> str:
        """The function's dedented source. Assigning new source (Triton's `patch_kernel` idiom)
        makes the next launch compile it; its locations still count lines from the original."""
        return self._src

    @src.setter
    def src(self, text: str) -> None:
        src = textwrap.dedent(text)
        fdef = ast.parse(src).body[0]
        if not isinstance(fdef, ast.FunctionDef):
            raise CompilationError("@jit must decorate a function", self.file, self.first_line)
        self._src, self._def, self.ast_body = src, fdef, fdef.body
        self._deps = None  # the cache key is computed afresh

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__module__}:{self.__qualname__})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = semantic.current_context()
        if ctx is None:
            raise LaunchError(
                f"@jit function {self.__name__} is launched as {self.__name__}[grid](...), not called"
            )
        # Called from Python code running inside a kernel being compiled (a constexpr
        # function argument, say): inline it like a call written in the kernel.
        return ctx.codegen.call_function(self, args, kwargs)

    def _collect_deps(self) -> list[tuple[dict[str, Any], tuple[str, ...], Any]]:
        """(globals, path, object) for every global the source reads, by name (`SCALE`) or through
        attributes (`helpers.add`), transitively through @jit calls."""
        deps: list[tuple[dict[str, Any], tuple[str, ...], Any]] = []
        seen = {id(self)}
        recorded: set[tuple[int, tuple[str, ...]]] = set()  # each once: launches re-check them
        stack: list[JITSource] = [self]
        while stack:
            fn = stack.pop()
            globals_ = fn.fn.__globals__
            for path in _global_paths(ast.parse(fn.src), globals_):
                obj = _resolve(globals_, path)
                if (id(globals_), path) in recorded or (len(path) > 1 and _key_part(obj) is None):
                    continue  # an attribute chain counts only where it reaches a value the key holds
                recorded.add((id(globals_), path))
                deps.append((globals_, path, obj))
                dep = getattr(obj, "jit_function", obj)  # through autotune/heuristics
                if isinstance(dep, JITSource) and id(dep) not in seen:
                    seen.add(id(dep))
                    stack.append(dep)
        return deps

    def deps_changed(self) -> bool:
        """Whether a global the source reads was rebound since the key was last computed (every
        launch asks: a loop rather than `any` over a generator, which cost ~1 us more)."""
        if self._deps is None:
            return True
        for g, path, o in self._deps:
            if (g.get(path[0], _MISSING) if len(path) == 1 else _resolve(g, path)) is not o:
                return True
        return False

    def cache_key(self) -> str:
        """Hash of the compiler, this function's source and where it stands in its file (the IR
        records source lines), every @jit function it calls and the constants it reads."""
        if not self.deps_changed():
            return self._deps_key  # type: ignore[return-value]
        self._deps = self._collect_deps()
        parts: list[Any] = [self.src, self.file, self.def_line]
        for _, path, obj in self._deps:
            part = _key_part(obj)
            if part is not None:
                parts.append((path, part))
        self._deps_key = key_hash(compiler_fingerprint(), *parts)
        return self._deps_key


_MISSING = object()
_KEY_SCALARS = (int, float, bool, str, type(None), T.DType)


def _global_paths(tree: ast.AST, globals_: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """The globals a function body reads: names, and attribute chains on them, except those into
    mtriton itself (`tl.load`: the compiler fingerprint covers them)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in globals_:
            yield (node.id,)
        elif isinstance(node, ast.Attribute):
            chain: list[str] = []
            base: ast.AST = node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in globals_:
                obj = globals_[base.id]
                if not (isinstance(obj, ModuleType) and obj.__name__.split(".")[0] == "mtriton"):
                    yield (base.id, *reversed(chain))


def _resolve(globals_: dict[str, Any], path: tuple[str, ...]) -> Any:
    obj = globals_.get(path[0], _MISSING)
    for attr in path[1:]:
        obj = getattr(obj, attr, _MISSING)
    return obj


def _key_part(obj: Any) -> Any:
    """What of a global goes into a cache key: the source of a @jit function, the value of a
    constant (numbers, strings, dtypes, tuples of them, `tl.constexpr`s); None for the rest."""
    obj = getattr(obj, "jit_function", obj)
    if isinstance(obj, JITSource):
        return ("jit", obj.src)
    if isinstance(obj, constexpr):
        obj = obj.value
    if isinstance(obj, _KEY_SCALARS):
        return repr(obj)
    if isinstance(obj, (tuple, list, frozenset)):
        parts = [_key_part(item) for item in obj]
        return None if None in parts else (type(obj).__name__, *parts)
    return None


def jit(fn: Callable[..., Any]) -> JITSource:
    """Marks a function written in the language for kernels to call (`standard.py`).

    Kernels launched with `kernel[grid](...)` use `mtriton.jit` instead.
    """
    return JITSource(fn)
