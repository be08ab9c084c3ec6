"""Benchmark suites: each module here registers its entries with `@benchmark` when imported.

To add a suite, add a module (named after the suite) to this package; `load_all`
imports it, so the runner and `--list` see its entries with no other change.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Imports every suite module of this package, registering its entries."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
