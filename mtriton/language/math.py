"""`tl.math`: the elementwise math functions, as Triton's `triton.language.math` and libdevice
name them (`tl.extra.libdevice` holds the same functions under libdevice's names).

Integer inputs are computed in float32, as Triton does; float16/bfloat16 are computed in
float32 and rounded once.
"""

from typing import Any

from ..ir import types as T
from . import semantic
from .core import (
    _float_unary,
    abs,
    ceil,
    cos,
    div_rn,
    erf,
    exp,
    exp2,
    fdiv,
    floor,
    fma,
    log,
    log2,
    rsqrt,
    sin,
    sqrt,
    sqrt_rn,
    tanh,
    tensor,
)
from .standard import sigmoid, umulhi

log10 = _float_unary("log10")
log1p = _float_unary("log1p")
expm1 = _float_unary("expm1")
cbrt = _float_unary("cbrt")
tan = _float_unary("tan")
asin = _float_unary("asin")
acos = _float_unary("acos")
atan = _float_unary("atan")
sinh = _float_unary("sinh")
cosh = _float_unary("cosh")
asinh = _float_unary("asinh")
acosh = _float_unary("acosh")
atanh = _float_unary("atanh")
trunc = _float_unary("trunc")
rint = _float_unary("rint")  # halves to even
nearbyint = rint
round = _float_unary("round")  # halves away from zero


def _float_binary(name: str) -> Any:
    def op(x: Any, y: Any) -> tensor:
        x, y = semantic.binary_operands(x, y)
        if not (x.dtype.is_floating() or y.dtype.is_floating()):  # integers in float32, as Triton
            x, y = semantic.cast(x, T.float32), semantic.cast(y, T.float32)
        return semantic.binary(name, x, y)

    op.__name__ = name
    op.__doc__ = f"Elementwise `{name}`."
    return op


pow = _float_binary("pow")
atan2 = _float_binary("atan2")

__all__ = [
    "abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "cos", "cosh",
    "div_rn", "erf", "exp", "exp2", "expm1", "fdiv", "floor", "fma", "log", "log10", "log1p", "log2",
    "nearbyint", "pow", "rint", "round", "rsqrt", "sigmoid", "sin", "sinh", "sqrt", "sqrt_rn", "tan",
    "tanh", "trunc", "umulhi",
]  # fmt: skip
