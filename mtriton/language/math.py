"""`tl.math`: the elementwise math functions, as Triton's `triton.language.math` names them."""

from .core import (  # noqa: F401
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
)  # fmt: skip
from .standard import sigmoid  # noqa: F401
