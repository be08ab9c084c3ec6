"""CUDA, as the C-like lowering writes it: the table of names (`backends/cstyle/dialect.py`).

Everything CUDA-specific is here and in the helpers of `prelude.cuh`; the
lowering is shared (`backends/cstyle/`).
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from ... import options
from ..cstyle.dialect import Dialect, Fragments, MatrixUnit, Warpgroup

_TYPES = {
    "i1": "bool", "i8": "signed char", "i16": "short", "i32": "int", "i64": "long long",
    "u8": "unsigned char", "u16": "unsigned short", "u32": "unsigned int", "u64": "unsigned long long",
    "f16": "__half", "bf16": "__nv_bfloat16", "f32": "float",
    "f8e4nv": "unsigned char", "f8e5": "unsigned char",  # float8: its bits (helpers/f8e*.cuh)
}  # fmt: skip

_ATOMIC_FNS = {"add": "atomicAdd", "max": "mt_atomic_max", "min": "mt_atomic_min", "xchg": "atomicExch",
               "and": "atomicAnd", "or": "atomicOr", "xor": "atomicXor"}  # fmt: skip

# The helpers every kernel's header carries: a CUDA header of its own, read once.
PRELUDE = (resources.files(__package__) / "prelude.cuh").read_text(encoding="utf-8")
# Helpers added to the kernels that use them (`Dialect.helpers`): the float8 conversions and
# those toward zero.
HELPERS = {
    path.name.removesuffix(".cuh"): path.read_text(encoding="utf-8")
    for path in (resources.files(__package__) / "helpers").iterdir()
    if path.name.endswith(".cuh")
}


def _pointer_decl(ctype: str, local: str, source: str, path: str) -> str:
    # MLX names 64-bit integers int64_t/uint64_t, which are `long` on Linux, not our `long long`;
    # inputs are `const T*`, and a written one is a private copy (see gpu_launch): cast always
    return f"{ctype}* {local} = ({ctype}*)({source});"


CUDA = Dialect(
    name="cuda",
    types=_TYPES,
    global_ptr="{t}*",
    # dynamic shared memory: MLX launches with `shared_memory=` bytes, beyond the 48 KB static limit
    shared_array="extern __shared__ float4 mt_smem_v[];\n  unsigned char* mt_smem = (unsigned char*)mt_smem_v;",
    dynamic_shared=True,
    shared_ptr="{t}*",
    barrier="__syncthreads();",
    thread_index="threadIdx.x",
    program_id=("blockIdx.x", "blockIdx.y", "blockIdx.z"),
    num_programs=("gridDim.x", "gridDim.y", "gridDim.z"),
    shuffle_xor="__shfl_xor_sync(0xffffffffu, {v}, {m})",
    shuffle_up="__shfl_up_sync(0xffffffffu, {v}, {d})",
    simd_reduce={},
    simd_prefix_exclusive_sum=None,
    # CUDA's float32 math is libm's name with `f` (expf, log1pf, atan2f) but for these
    math={"abs": "fabsf", "mod": "fmodf", "maximum": "fmaxf", "minimum": "fminf"},
    math_suffix="f",
    # Triton's lowering (its NVIDIA ElementwiseOpToLLVM): float32 exp is ex2.approx of
    # x * log2(e), exp2 is ex2.approx, and division div.full (2 ulp each); half and bfloat16
    # math runs in float, so it takes the same instructions. math_mode="safe" keeps libm's.
    fast_math={"exp": "mt_exp_approx", "exp2": "mt_ex2_approx", "div": "mt_div_full"},
    default_math_mode="relaxed",
    helpers=HELPERS,
    # Vector accesses of up to 16 bytes; they need natural alignment, and MLX passes arrays
    # that are views at any element offset, so kernels test each base pointer (`aligned`).
    vector_type=lambda ctype, n: f"mt_vec<{ctype}, {n}>",
    aligned="(reinterpret_cast<unsigned long long>({p}) % {n}ull == 0ull)",
    atomic=lambda kind, ctype, address, value: f"{_ATOMIC_FNS[kind]}({address}, {value})",
    atomic_cas=lambda ctype, address, cmp, value: f"atomicCAS({address}, {cmp}, {value})",
    # Tensor cores through inline PTX (the prelude's mt_mma): WMMA would need <mma.h>, which
    # MLX's NVRTC include path lacks (crt/mma.h).
    matrix=MatrixUnit(
        m=16,
        n=8,
        k=16,
        inputs=("f16", "bf16"),
        stage="{t}",
        declare="float {name}[{n}][4];",
        zero="{c}[0] = {c}[1] = {c}[2] = {c}[3] = 0.0f;",
        mma="mt_mma({c}, {a}, {lda}, {b}, {ldb});",
        store="mt_mma_store({c}, {dst}, {ld});",
        fragments=Fragments(
            load_a="mt_ldmatrix_x4({r}, {p});",
            load_b2="mt_ldmatrix_x4_trans({r}, {p});",
            load_b="mt_ldmatrix_x2_trans({r}, {p});",
            load_bt="mt_ldmatrix_x2({r}, {p});",
            mma="mt_mma_regs({c}, {a}, {b}, (const {t}*)0);",
            pad=8,
            copy="mt_cp_async<{n}>({dst}, {src}, {bytes});",
            copy_wait="mt_cp_async_wait();",
            copy_commit="mt_cp_async_commit();",
            copy_wait_group="mt_cp_async_wait_group<{n}>();",
            load_a_tf32="mt_load_a_tf32({r}, {p});",
            load_b_tf32="mt_load_b_tf32({r}, {p}, {ld});",
            mma_tf32="mt_mma_tf32({c}, {a}, {b});",
            tf32_regs="mt_tf32_regs({r}, {n});",
        ),
        warpgroup=Warpgroup(
            ns=(16, 32, 64, 128, 256),
            helper="wgmma",
            offset="mt_wgmma_offset<{rows}, {swizzle}, {item}>({row}, {col})",
            desc="mt_wgmma_desc({p}, {lbo}, {sbo}, {swizzle})",
            mma="mt_wgmma_m64n{n}<{trans_b}>({c}, {a}, {b}, (const {t}*)0);",
            fence="mt_wgmma_fence();",
            commit="mt_wgmma_commit();",
            wait="mt_wgmma_wait<{n}>();",
            fence_regs="mt_wgmma_fence_regs({c}, {n});",
            proxy_fence="mt_fence_proxy_async();",
            shared_array="extern __shared__ float4 mt_smem_v[];\n  unsigned char* mt_smem = (unsigned char*)mt_smem_v"
            " + ((1024u - (mt_shared_address(mt_smem_v) & 1023u)) & 1023u);",
            align=1024,
        ),
    ),  # fmt: skip
    prelude=PRELUDE,
    pointer_decl=_pointer_decl,
    max_shared_bytes=200 * 1024,  # measured to work on an H100 through MLX (FACTS.md)
    vector_bytes=16,
    extra={
        "inf": "__int_as_float(0x7f800000)",
        "nan": "__int_as_float(0x7fffffff)",
        "bitcast": "mt_bitcast<{t}>({x})",
        "scalar_arg": "{name}[0]",
        "round_tf32": "__uint_as_float(mt_tf32({x}))",
    },
)

# Every fragment dot on mma.sync: the default, and all there is before sm_90. wgmma is sm_90a's
# alone (PTX ISA: the `a` features are not carried forward; Blackwell has tcgen05 instead).
CUDA_MMA = dataclasses.replace(CUDA, matrix=dataclasses.replace(CUDA.matrix, warpgroup=None))
WARPGROUP_ARCH = 90  # the compute capability (times ten) with wgmma


def dialect_for(arch: int, wgmma: bool | None = None) -> Dialect:
    """The CUDA dialect for a GPU of compute capability `arch` (times ten: 90 for sm_90): with
    the warpgroup unit on sm_90 where `wgmma` (default: MTRITON_WGMMA) asks for it.

    Off by default: on the H200 (2026-12-03) the tutorial matmul (f16 4096^3, 128x128x64,
    8 warps, 3 stages) ran at 81 TFLOP/s on it against 177 on mma.sync (2026-12-02): its loop
    waits for each k-step's group before the next stage's barrier (issue #12).
    """
    wanted = options.wgmma() if wgmma is None else wgmma
    return CUDA if arch == WARPGROUP_ARCH and wanted else CUDA_MMA
