"""`mtriton.language` (import it as `tl`): Triton's kernel language for MLX."""

from ..errors import UnsupportedError as _UnsupportedError
from . import extra, math, random
from .block_pointer import advance, block_ptr, load, make_block_ptr, store
from .core import (
    PropagateNan,
    abs,
    arange,
    associative_scan,
    atomic_add,
    atomic_and,
    atomic_cas,
    atomic_max,
    atomic_min,
    atomic_or,
    atomic_xchg,
    atomic_xor,
    bfloat16,
    broadcast,
    broadcast_to,
    cast,
    ceil,
    clamp,
    constexpr,
    cos,
    div_rn,
    dot,
    dtype,
    erf,
    exp,
    exp2,
    expand_dims,
    fdiv,
    float8e4nv,
    float8e5,
    float16,
    float32,
    float64,
    floor,
    fma,
    full,
    full_like,
    int1,
    int8,
    int16,
    int32,
    int64,
    join,
    log,
    log2,
    max,
    maximum,
    min,
    minimum,
    num_programs,
    permute,
    pi32_t,
    pointer_type,
    program_id,
    reduce,
    reshape,
    rsqrt,
    sin,
    split,
    sqrt,
    sqrt_rn,
    sum,
    tanh,
    tensor,
    trans,
    uint8,
    uint16,
    uint32,
    uint64,
    view,
    where,
    xor_sum,
    zeros,
    zeros_like,
)  # fmt: skip
from .hints import (
    cdiv,
    debug_barrier,
    device_assert,
    device_print,
    max_constancy,
    max_contiguous,
    multiple_of,
    range,
    static_assert,
    static_print,
    static_range,
)
from .random import (
    pair_uniform_to_normal,
    philox,
    philox_impl,
    rand,
    rand4x,
    randint,
    randint4x,
    randn,
    randn4x,
    uint_to_uniform_float,
)
from .standard import (
    argmax,
    argmin,
    cat,
    cumprod,
    cumsum,
    interleave,
    ravel,
    sigmoid,
    softmax,
    swizzle2d,
    umulhi,
)

__all__ = [name for name in dir() if not name.startswith("_")]

# Triton's other float8 variants: AMD's (float8e4b8, float8e5b16) and the pre-sm89 NVIDIA one,
# whose conversions Triton's backends define in their own ways.
_UNSUPPORTED_TYPES = ("float8e4b15", "float8e4b8", "float8e5b16")


def __getattr__(name: str) -> object:
    if name in _UNSUPPORTED_TYPES:
        raise _UnsupportedError(
            f"tl.{name} is not supported; the float8 types are tl.float8e4nv (e4m3fn) and tl.float8e5 (e5m2)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
