"""The reference interpreter: runs IR functions with MLX array ops.

It defines the IR's semantics and is the oracle the GPU backends are tested
against. `execute` runs all programs of a launch at once, vectorized over a
leading program dimension; see `executor.py` for the execution model.
"""

from . import control, debug, elementwise, memory, reductions  # each registers its rules with @executes
from .executor import MAX_ELEMENTS, execute
from .machine import EXECUTORS, InterpreterError, check_complete

# Every IR op has a rule (as `ir/verifier.py` checks its arity table): a new op cannot be
# added to the vocabulary without its semantics.
check_complete(EXECUTORS)

__all__ = ["MAX_ELEMENTS", "InterpreterError", "execute"]
