"""The kernel source a GPU backend hands to MLX: what `mtriton dump-metal` / `dump-cuda` print.

The backends that dump are the rows of `mtriton/targets.py` of a GPU language
that are not emulated; their classes name their `dialect` and
`full_source(fn, opts)`.
"""

from __future__ import annotations

from .. import ir, targets
from ..errors import BackendUnavailable
from ..options import LaunchOptions
from . import backend_class
from .cstyle.kernel import generate

DUMPED = tuple(t.name for t in targets.TARGETS if t.language != "interpreter" and not t.emulated)


def source_dump(target: str, fn: ir.Function, opts: LaunchOptions, full: bool = False) -> str:
    """The kernel source a GPU backend hands to MLX.

    Args:
        target: The backend: one of DUMPED ("metal", "cuda").
        fn: The verified IR function.
        opts: Its launch options.
        full: Give the complete source, with the signature MLX generates, rather than the body.

    Returns:
        The source.

    Raises:
        BackendUnavailable: If `target` is not one of DUMPED.
    """
    if target not in DUMPED:
        raise BackendUnavailable(f"no source to dump for backend {target!r}; expected {' or '.join(DUMPED)}")
    backend = backend_class(target)
    if full:
        return backend.full_source(fn, opts)
    return generate(fn, backend.dialect, opts).body
