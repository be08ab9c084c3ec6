"""The Metal backend (`mx.fast.metal_kernel`) and metal-emu (the same source run on the CPU).

Everything Metal-specific is the table below; the lowering is shared
(`backends/cstyle/`).
"""

from __future__ import annotations

import functools
import platform
import shutil
from typing import Any

import mlx.core as mx

from .. import ir, options
from ..errors import LaunchError
from . import register
from .cstyle.dialect import Dialect, MatrixUnit
from .gpu_launch import CustomKernelLauncher

_TYPES = {
    "i1": "bool", "i8": "int8_t", "i16": "short", "i32": "int", "i64": "long",
    "u8": "uchar", "u16": "ushort", "u32": "uint", "u64": "ulong",
    "f16": "half", "bf16": "bfloat16_t", "f32": "float",
}  # fmt: skip

_VECTOR_BASES = {"float", "half", "int", "uint", "short", "ushort", "char", "uchar"}

_ATOMIC_FNS = {"add": "mt_atomic_add", "max": "mt_atomic_max", "min": "mt_atomic_min", "xchg": "mt_atomic_xchg",
               "and": "mt_atomic_and", "or": "mt_atomic_or", "xor": "mt_atomic_xor"}  # fmt: skip

PRELUDE = """\
// mtriton helpers for the kernel body.
#define MT_RELAXED memory_order_relaxed
#define MT_INT_ATOMICS(T, AT) \\
  inline T mt_atomic_add(device T* p, T v) { return atomic_fetch_add_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_max(device T* p, T v) { return atomic_fetch_max_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_min(device T* p, T v) { return atomic_fetch_min_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_and(device T* p, T v) { return atomic_fetch_and_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_or(device T* p, T v) { return atomic_fetch_or_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_xor(device T* p, T v) { return atomic_fetch_xor_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_xchg(device T* p, T v) { return atomic_exchange_explicit((device AT*)p, v, MT_RELAXED); } \\
  inline T mt_atomic_cas(device T* p, T cmp, T v) { \\
    T expected = cmp; \\
    while (!atomic_compare_exchange_weak_explicit((device AT*)p, &expected, v, MT_RELAXED, MT_RELAXED)) { \\
      if (expected != cmp) return expected; \\
    } \\
    return cmp; \\
  }
MT_INT_ATOMICS(int, atomic_int)
MT_INT_ATOMICS(uint, atomic_uint)
inline float mt_atomic_add(device float* p, float v) { return atomic_fetch_add_explicit((device atomic_float*)p, v, MT_RELAXED); }
inline float mt_atomic_xchg(device float* p, float v) { return atomic_exchange_explicit((device atomic_float*)p, v, MT_RELAXED); }
// float max/min: a compare-and-swap loop on the bits
inline float mt_atomic_fminmax(device float* p, float v, bool is_max) {
  device atomic_uint* a = (device atomic_uint*)p;
  uint old = atomic_load_explicit(a, MT_RELAXED);
  while (true) {
    float f = as_type<float>(old);
    if (is_max ? !(v > f) : !(v < f)) return f;
    if (atomic_compare_exchange_weak_explicit(a, &old, as_type<uint>(v), MT_RELAXED, MT_RELAXED)) return f;
  }
}
inline float mt_atomic_max(device float* p, float v) { return mt_atomic_fminmax(p, v, true); }
inline float mt_atomic_min(device float* p, float v) { return mt_atomic_fminmax(p, v, false); }
// erf: Metal has none. Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7.
inline float mt_erf(float x) {
  float s = x < 0.0f ? -1.0f : 1.0f;
  x = fabs(x);
  float t = 1.0f / (1.0f + 0.3275911f * x);
  float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * exp(-x * x);
  return s * y;
}
"""


def _vector_type(ctype: str, n: int) -> str | None:
    # packed vectors need only the element's alignment, so any contiguous run can use them
    return f"packed_{ctype}{n}" if ctype in _VECTOR_BASES and n in (2, 4) else None


def _pointer_decl(ctype: str, local: str, source: str, path: str) -> str:
    if path == "small":  # MLX passes it in the constant address space: read-only
        return f"const constant {ctype}* {local} = {source};"
    if path == "fresh":
        return f"device {ctype}* {local} = {source};"
    # inputs are `const device T*`; a written one is a private copy (see gpu_launch)
    return f"device {ctype}* {local} = (device {ctype}*)({source});"


METAL = Dialect(
    name="metal",
    types=_TYPES,
    global_ptr="device {t}*",
    shared_array="threadgroup float4 mt_smem_v[{n16}];\n  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;",
    dynamic_shared=False,
    shared_ptr="threadgroup {t}*",
    barrier="threadgroup_barrier(mem_flags::mem_threadgroup);",
    thread_index="thread_index_in_threadgroup",
    program_id=(
        "threadgroup_position_in_grid.x",
        "threadgroup_position_in_grid.y",
        "threadgroup_position_in_grid.z",
    ),
    num_programs=("threadgroups_per_grid.x", "threadgroups_per_grid.y", "threadgroups_per_grid.z"),
    shuffle_xor="simd_shuffle_xor({v}, {m})",
    shuffle_up="simd_shuffle_up({v}, {d})",
    simd_reduce={
        "add": "simd_sum({v})",
        "maximum": "simd_max({v})",
        "minimum": "simd_min({v})",
        "mul": "simd_product({v})",
        "and": "simd_and({v})",
        "or": "simd_or({v})",
        "xor": "simd_xor({v})",
    },  # fmt: skip
    simd_prefix_exclusive_sum="simd_prefix_exclusive_sum({v})",
    math={"erf": "mt_erf", "mod": "fmod", "maximum": "max", "minimum": "min", "abs": "abs"},
    vector_type=_vector_type,
    atomic=lambda kind, ctype, address, value: f"{_ATOMIC_FNS[kind]}({address}, {value})",
    atomic_cas=lambda ctype, address, cmp, value: f"mt_atomic_cas({address}, {cmp}, {value})",
    matrix=MatrixUnit(
        m=8,
        n=8,
        k=8,
        inputs=("f32", "f16", "bf16"),
        stage="float",  # every input is staged as float: one simdgroup_float8x8 path
        declare="simdgroup_float8x8 {name}[{n}];",
        zero="{c} = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);",
        mma="simdgroup_float8x8 ma, mb; simdgroup_load(ma, {a}, {lda}); simdgroup_load(mb, {b}, {ldb}); "
        "simdgroup_multiply_accumulate({c}, ma, mb, {c});",
        store="simdgroup_store({c}, {dst}, {ld});",
    ),  # fmt: skip
    prelude=PRELUDE,
    pointer_decl=_pointer_decl,
    max_shared_bytes=32 * 1024,
    extra={"inf": "INFINITY", "nan": "NAN", "bitcast": "as_type<{t}>({x})", "scalar_arg": "{name}"},
)


MATH_MODES = ("safe", "relaxed", "fast")


class _MetalLike:
    """Shared by the real Metal backend and metal-emu: they differ only in the kernel factory."""

    name = "metal"

    def factory(self) -> Any:
        raise NotImplementedError

    def compile(self, fn: ir.Function, opts: dict[str, Any]) -> CustomKernelLauncher:
        mode = opts.get("math_mode", "safe")
        if mode not in MATH_MODES:
            raise LaunchError(f"math_mode must be one of {', '.join(MATH_MODES)}, got {mode!r}")
        factory = functools.partial(self.factory(), compile_options={"math_mode": mode})
        return CustomKernelLauncher(fn, METAL, int(opts.get("num_warps", 4)), factory)


def full_metal_source(fn: ir.Function, opts: dict[str, Any]) -> str:
    """The complete Metal source MLX generates for `fn` (MLX's signature rules, reproduced by metal-emu)."""
    return MetalEmuBackend().compile(fn, opts).full_source()


class MetalBackend(_MetalLike):
    name = "metal"

    def is_available(self) -> bool:
        try:
            return bool(mx.metal.is_available())
        except (AttributeError, RuntimeError):
            return False

    def factory(self) -> Any:
        return mx.fast.metal_kernel


class MetalEmuBackend(_MetalLike):
    name = "metal-emu"

    def is_available(self) -> bool:
        compiler = options.cxx_compiler()
        return platform.system() == "Linux" and shutil.which(compiler) is not None

    def factory(self) -> Any:
        from .. import emulator

        return emulator.metal_kernel


register("metal")(MetalBackend)
register("metal-emu")(MetalEmuBackend)
