"""The lowering rules, one module per op family, mirroring the interpreter's split.

`values` (constants, elementwise ops, program ids, aliases, splat, moves), `memory` (loads,
stores, atomics), `control` (loops, branches, barriers, debug ops), `reduce`, `scan` and
`dot`; `cooperative` holds what reductions and scans share. Importing the families fills
`RULES` (`registry.py`); the check below then makes sure every IR op has a rule or a reason
in `UNSUPPORTED`.
"""

from ..registry import RULES, UNSUPPORTED, check_complete
from . import control, dot, memory, reduce, scan, values  # each registers its rules with @lowers

check_complete(RULES, UNSUPPORTED)

__all__ = ["RULES", "UNSUPPORTED"]
