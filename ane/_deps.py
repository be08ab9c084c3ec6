"""The optional coremltools dependency: imported on first use, never at `import mlx_primitives.ane`."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "mlx-primitives[ane]"  (or, from a checkout: pip install ".[ane]")'


def require_coremltools(fn: str) -> ModuleType:
    """Returns the `coremltools` module, or raises an ImportError that says how to install it.

    Args:
        fn: The public function that needs coremltools, named in the error.

    Returns:
        The imported `coremltools` module.
    """
    try:
        return importlib.import_module("coremltools")
    except ImportError as err:
        raise ImportError(f"[{fn}] needs coremltools, which is not installed: {INSTALL_HINT}") from err
