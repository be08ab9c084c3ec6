"""The reference interpreter: runs IR functions with MLX array ops.

It defines the IR's semantics and is the oracle the GPU backends are tested
against. `execute` runs all programs of a launch at once, vectorized over a
leading program dimension; see `executor.py` for the execution model.
"""

# The rule modules register themselves with `executes` on import.
from . import control, debug, elementwise, memory, reductions  # noqa: F401
from .executor import MAX_ELEMENTS, execute
from .machine import InterpreterError

__all__ = ["MAX_ELEMENTS", "InterpreterError", "execute"]
