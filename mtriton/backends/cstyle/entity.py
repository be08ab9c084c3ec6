"""How an IR value lives in the generated C: `Entity`."""

from __future__ import annotations

from dataclasses import dataclass

from ... import ir
from ...ir import types as T
from .layout import Layout, MmaLayout


@dataclass
class Entity:
    """How an IR value lives in the generated code.

    Attributes:
        name: C variable (scalar) or array (block); for pointers, the offset in elements.
        dtype: element type (for pointers, the pointee type).
        layout: None for scalars.
        base: for pointers, the C name of the kernel argument they point into.
    """

    name: str
    dtype: T.DType
    layout: Layout | MmaLayout | None = None
    base: str | None = None
    wide: bool = False  # pointer offsets need 64 bits
    uniform: bool = False  # a block whose elements all equal the scalar expression `name`
    deferred: ir.Op | None = None  # a load the `dot` using it performs (`DotPlan.deferred`)

    def at(self, slot: str = "i") -> str:
        return self.name if self.layout is None or self.uniform else f"{self.name}[{slot}]"
