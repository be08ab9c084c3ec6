"""IR passes. `run_pipeline` lists them in the order they run."""

from __future__ import annotations

from .. import ir
from .eliminate_dead_code import eliminate_dead_code


def run_pipeline(fn: ir.Function) -> ir.Function:
    """The passes every kernel goes through between the frontend and a backend."""
    ir.verify(fn)
    eliminate_dead_code(fn)
    ir.verify(fn)
    return fn
