"""A kernel's source: an IR function lowered to a dialect, named by a hash of its text, with
what its launch needs to know (the pointers it writes, those it updates atomically, its
shared memory)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ... import ir
from ...ir import types as T
from ...options import LaunchOptions
from .dialect import Dialect
from .lowering import Lowering


@dataclass(frozen=True)
class Source:
    """A generated kernel: the body MLX receives and what the launch needs to know.

    Attributes:
        views: The pointer casts' views of pointer arguments the body reads: (C name, the
            argument's C name, the view's pointee type).
    """

    name: str
    body: str
    header: str
    written: frozenset[str]
    atomic: frozenset[str]
    shared_bytes: int
    views: tuple[tuple[str, str, T.DType], ...] = ()

    def pointer_decls(
        self, dialect: Dialect, local: str, pointee: T.DType, source: str, path: str
    ) -> list[str]:
        """The statements declaring the kernel's pointer `local` (to `pointee` elements) and its
        views, all pointing at the argument `source` that reaches the kernel by `path`."""
        decls = [dialect.pointer_decl(dialect.ctype(pointee), local, source, path)]
        for name, root, dtype in self.views:
            if root == local:
                decls.append(dialect.pointer_decl(dialect.ctype(dtype), name, source, path))
        return decls


def generate(fn: ir.Function, dialect: Dialect, opts: LaunchOptions) -> Source:
    """Lowers `fn` to `dialect`; pointer argument k is `p{k}`, scalar argument k is `a{k}`."""
    names = {}
    for k, param in enumerate(fn.params):
        names[param.name] = f"p{k}" if isinstance(param.value.type.elem, T.PointerType) else f"a{k}"
    lowering = Lowering(fn, dialect, opts, names)
    body = lowering.run()
    header = dialect.header(fn, frozenset(lowering.helpers))
    # the parameter types too: two specializations can share a body (a scalar stored as given)
    # but not a signature, and MLX knows a kernel by its name
    signature = ",".join(str(p.value.type.elem) for p in fn.params)
    digest = hashlib.sha256((header + body + signature).encode()).hexdigest()[:16]
    return Source(
        f"mtriton_{fn.name}_{digest}",
        body,
        header,
        frozenset(lowering.written),
        frozenset(lowering.atomic),
        lowering.shared_bytes,
        tuple((name, root, dtype) for name, (root, dtype) in lowering.views.items()),
    )
