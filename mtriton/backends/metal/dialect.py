"""Metal, as the C-like lowering writes it: the table of names (`backends/cstyle/dialect.py`).

Everything Metal-specific is here and in the helpers of `prelude.metal.h`; the
lowering is shared (`backends/cstyle/`).
"""

from __future__ import annotations

from importlib import resources

from ...options import LaunchOptions
from ..cstyle.dialect import Dialect, MatrixUnit

_TYPES = {
    "i1": "bool", "i8": "int8_t", "i16": "short", "i32": "int", "i64": "long",
    "u8": "uchar", "u16": "ushort", "u32": "uint", "u64": "ulong",
    "f16": "half", "bf16": "bfloat16_t", "f32": "float",
    "f8e4nv": "uchar", "f8e5": "uchar",  # float8: its bits (helpers/f8e*.h)
}  # fmt: skip

_VECTOR_BASES = {"float", "half", "int", "uint", "short", "ushort", "char", "uchar"}

_ATOMIC_FNS = {"add": "mt_atomic_add", "max": "mt_atomic_max", "min": "mt_atomic_min", "xchg": "mt_atomic_xchg",
               "and": "mt_atomic_and", "or": "mt_atomic_or", "xor": "mt_atomic_xor"}  # fmt: skip

# The helpers every kernel's header carries: a Metal header of its own, read once.
PRELUDE = (resources.files(__package__) / "prelude.metal.h").read_text(encoding="utf-8")
# Math Metal lacks, one file per IR op, and the float8 and toward-zero conversions, added to the
# kernels that use them (`Dialect.helpers`).
HELPERS = {
    path.name.removesuffix(".h"): path.read_text(encoding="utf-8")
    for path in (resources.files(__package__) / "helpers").iterdir()
    if path.name.endswith(".h")
}


def _vector_type(ctype: str, n: int) -> str | None:
    # packed vectors need only the element's alignment, so any contiguous run can use them;
    # Metal has no vectors longer than 4, so 8 halves are two packed_half4 accesses
    base = "char" if ctype == "int8_t" else ctype
    return f"packed_{base}{n}" if base in _VECTOR_BASES and n in (2, 4) else None


def _pointer_decl(ctype: str, local: str, source: str, path: str) -> str:
    # the cast: `ctype` may differ from the array's type (a pointer cast's view, `reinterpret`)
    if path == "small":  # MLX passes it in the constant address space: read-only
        return f"const constant {ctype}* {local} = (const constant {ctype}*)({source});"
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
    math={
        "erf": "mt_erf",
        "mod": "fmod",
        "maximum": "max",
        "minimum": "min",
        "abs": "abs",
        "log1p": "mt_log1p",
        "expm1": "mt_expm1",
        "cbrt": "mt_cbrt",
    },  # fmt: skip
    helpers=HELPERS,
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


def compile_options(opts: LaunchOptions) -> dict[str, str]:
    """MLX's `compile_options` for a kernel launched with `opts`: the math mode (`LaunchOptions`
    checks it), "safe" unless one is given."""
    return {"math_mode": opts.math_mode or "safe"}
