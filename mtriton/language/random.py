"""Random numbers as Triton makes them: the Philox counter-based generator (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011), so `tl.randint(seed, offsets)` gives
the same bits here as in Triton for the same seed and offsets.

A program draws from `(seed, offset)` alone, with no state: each element's offset is the
counter, the seed the key. 32-bit offsets run Philox4x32, 64-bit ones Philox4x64; ten rounds
by default. `rand` and `randn` turn the integers into floats the way Triton does, so `rand` is
bit-identical too; `randn` goes through `log`, `cos` and `sin`, whose last bits differ between
math libraries.

These are compile-time functions: they build the block ops that compute the numbers.
"""

from __future__ import annotations

from typing import Any

from ..errors import KernelTypeError
from ..ir import types as T
from . import core, semantic
from .standard import umulhi

N_ROUNDS_DEFAULT = 10

# Philox's round multipliers and key increments (the golden ratio and sqrt(3) - 1, in fixed point)
_MULTIPLIERS = {32: (0xD2511F53, 0xCD9E8D57), 64: (0xD2E7470EE14C6C93, 0xCA5A826395121157)}
_KEY_STEPS = {32: (0x9E3779B9, 0xBB67AE85), 64: (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)}
_UNSIGNED = {32: T.uint32, 64: T.uint64}
_SIGNED = {32: T.int32, 64: T.int64}
# 2**-31 and 2**-63, rounded as Triton writes them: the scale from a non-negative int to [0, 1)
_UNIFORM_SCALE = {32: 4.6566127342e-10, 64: 1.0842020432385337e-19}


def _bits(x: core.tensor, what: str) -> int:
    if not x.dtype.is_int() or x.dtype.is_bool() or x.dtype.bits not in (32, 64):
        raise KernelTypeError(f"{what} must be a 32- or 64-bit integer, got {x.dtype}")
    return x.dtype.bits


def philox_impl(
    c0: Any, c1: Any, c2: Any, c3: Any, k0: Any, k1: Any, n_rounds: Any = N_ROUNDS_DEFAULT
) -> tuple:
    """`n_rounds` Philox rounds on the counters `c0..c3` (unsigned blocks of one width) with the
    key `(k0, k1)` of that width; returns the four counters."""
    c0, c1, c2, c3 = (semantic.to_tensor(c) for c in (c0, c1, c2, c3))
    bits = _bits(c0, "philox counters")
    m0, m1 = (semantic.constant(m, c0.dtype) for m in _MULTIPLIERS[bits])
    w0, w1 = _KEY_STEPS[bits]
    for _ in range(int(semantic.unwrap(n_rounds))):
        a, b = c0, c2
        c0 = umulhi(m1, b) ^ c1 ^ k0
        c2 = umulhi(m0, a) ^ c3 ^ k1
        c1 = b * m1
        c3 = a * m0
        k0 = k0 + w0
        k1 = k1 + w1
    return c0, c1, c2, c3


def philox(seed: Any, c0: Any, c1: Any, c2: Any, c3: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> tuple:
    """Philox on counters `c0..c3` (32-bit: Philox4x32 keyed by the seed's two halves; 64-bit:
    Philox4x64 keyed by the seed and 0). Returns four unsigned blocks of the counters' width."""
    seed = semantic.to_tensor(seed)
    _bits(seed, "the seed")
    seed = semantic.cast(seed, T.uint64)
    counters = [semantic.to_tensor(c) for c in (c0, c1, c2, c3)]
    bits = _bits(counters[0], "the offsets")
    unsigned = _UNSIGNED[bits]
    counters = [semantic.cast(semantic.cast(c, _SIGNED[bits]), unsigned, bitcast=True) for c in counters]
    if bits == 32:
        key = semantic.cast(seed & 0xFFFFFFFF, T.uint32), semantic.cast(seed >> 32, T.uint32)
    else:
        key = seed, semantic.constant(0, T.uint64)
    return philox_impl(*counters, *key, n_rounds)


def randint4x(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> tuple:
    """Four blocks of random unsigned integers for each element of `offset`."""
    offset = semantic.to_tensor(offset)
    zero = offset * 0
    return philox(seed, offset, zero, zero, zero, n_rounds)


def randint(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> core.tensor:
    """A block of random unsigned integers (uint32 for 32-bit offsets), one per offset."""
    return randint4x(seed, offset, n_rounds)[0]


def uint_to_uniform_float(x: Any) -> core.tensor:
    """Random integers to float32 in [0, 1), as Triton maps them."""
    x = semantic.to_tensor(x)
    bits = _bits(x, "uint_to_uniform_float's input")
    x = semantic.cast(x, _SIGNED[bits], bitcast=True)
    x = core.where(x < 0, -x - 1, x)
    return x * _UNIFORM_SCALE[bits]


def rand(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> core.tensor:
    """A block of float32 uniform in [0, 1), one per offset."""
    return uint_to_uniform_float(randint(seed, offset, n_rounds))


def rand4x(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> tuple:
    """Four blocks of float32 uniform in [0, 1)."""
    return tuple(uint_to_uniform_float(i) for i in randint4x(seed, offset, n_rounds))


def pair_uniform_to_normal(u1: Any, u2: Any) -> tuple[core.tensor, core.tensor]:
    """Two uniform blocks to two standard normal ones (Box-Muller)."""
    u1 = core.maximum(1.0e-7, u1)
    theta = 6.283185307179586 * semantic.to_tensor(u2)
    r = core.sqrt(-2.0 * core.log(u1))
    return r * core.cos(theta), r * core.sin(theta)


def randn(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> core.tensor:
    """A block of float32 drawn from the standard normal distribution, one per offset."""
    i1, i2, _, _ = randint4x(seed, offset, n_rounds)
    return pair_uniform_to_normal(uint_to_uniform_float(i1), uint_to_uniform_float(i2))[0]


def randn4x(seed: Any, offset: Any, n_rounds: Any = N_ROUNDS_DEFAULT) -> tuple:
    """Four blocks of standard normal float32."""
    u1, u2, u3, u4 = rand4x(seed, offset, n_rounds)
    return (*pair_uniform_to_normal(u1, u2), *pair_uniform_to_normal(u3, u4))
