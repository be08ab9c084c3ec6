"""Benchmark suites: each module here registers its entries with `@benchmark` when imported.

To add a suite, add a module (named after the suite) to this package; `load_all`
imports it, so the runner and `--list` see its entries with no other change. Modules
whose names start with `_` (`_inputs`, `_references`) are helpers the suites share.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Imports every suite module of this package, registering its entries."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
