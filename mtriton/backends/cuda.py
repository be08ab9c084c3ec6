"""The CUDA backend (`mx.fast.cuda_kernel`): the shared lowering with CUDA's table."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import ir
from ..ir import types as T
from . import register
from .cstyle.dialect import Dialect, Fragments, MatrixUnit
from .gpu_launch import CustomKernelLauncher, generate
from .metal import MetalEmuBackend

_TYPES = {
    "i1": "bool", "i8": "signed char", "i16": "short", "i32": "int", "i64": "long long",
    "u8": "unsigned char", "u16": "unsigned short", "u32": "unsigned int", "u64": "unsigned long long",
    "f16": "__half", "bf16": "__nv_bfloat16", "f32": "float",
}  # fmt: skip

_ATOMIC_FNS = {"add": "atomicAdd", "max": "mt_atomic_max", "min": "mt_atomic_min", "xchg": "atomicExch",
               "and": "atomicAnd", "or": "atomicOr", "xor": "atomicXor"}  # fmt: skip

PRELUDE = """\
// mtriton helpers for the kernel body.
template <typename To, typename From>
__device__ inline To mt_bitcast(From x) {
  static_assert(sizeof(To) == sizeof(From), "bitcast needs equal sizes");
  To y;
  memcpy(&y, &x, sizeof(To));  // NVRTC has memcpy built in (and no __builtin_memcpy)
  return y;
}
__device__ inline int mt_atomic_max(int* p, int v) { return atomicMax(p, v); }
__device__ inline unsigned int mt_atomic_max(unsigned int* p, unsigned int v) { return atomicMax(p, v); }
__device__ inline int mt_atomic_min(int* p, int v) { return atomicMin(p, v); }
__device__ inline unsigned int mt_atomic_min(unsigned int* p, unsigned int v) { return atomicMin(p, v); }
__device__ inline float mt_atomic_fminmax(float* p, float v, bool is_max) {
  unsigned int* a = (unsigned int*)p;
  unsigned int old = *a;
  while (true) {
    float f = __uint_as_float(old);
    if (is_max ? !(v > f) : !(v < f)) return f;
    unsigned int seen = atomicCAS(a, old, __float_as_uint(v));
    if (seen == old) return f;
    old = seen;
  }
}
__device__ inline float mt_atomic_max(float* p, float v) { return mt_atomic_fminmax(p, v, true); }
__device__ inline float mt_atomic_min(float* p, float v) { return mt_atomic_fminmax(p, v, false); }
// A vector of N elements for one aligned load or store.
template <typename T, int N>
struct alignas(sizeof(T) * N) mt_vec {
  T v[N];
  __device__ mt_vec() {}
  template <typename... A>
  __device__ mt_vec(A... a) : v{static_cast<T>(a)...} {}
  __device__ T operator[](int i) const { return v[i]; }
};
// Tensor cores: mma.sync m16n8k16 with float accumulators, fragments read from shared memory in
// the layouts of the PTX ISA ("Matrix Fragments for mma.m16n8k16"): lane = 4 * g + t.
__device__ inline unsigned int mt_pack(__half lo, __half hi) {
  return (unsigned int)__half_as_ushort(lo) | ((unsigned int)__half_as_ushort(hi) << 16);
}
__device__ inline unsigned int mt_pack(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return (unsigned int)__bfloat16_as_ushort(lo) | ((unsigned int)__bfloat16_as_ushort(hi) << 16);
}
template <typename T>
__device__ inline void mt_fragments(const T* A, int lda, const T* B, int ldb, unsigned int a[4], unsigned int b[2]) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  a[0] = mt_pack(A[g * lda + 2 * t], A[g * lda + 2 * t + 1]);
  a[1] = mt_pack(A[(g + 8) * lda + 2 * t], A[(g + 8) * lda + 2 * t + 1]);
  a[2] = mt_pack(A[g * lda + 2 * t + 8], A[g * lda + 2 * t + 9]);
  a[3] = mt_pack(A[(g + 8) * lda + 2 * t + 8], A[(g + 8) * lda + 2 * t + 9]);
  b[0] = mt_pack(B[(2 * t) * ldb + g], B[(2 * t + 1) * ldb + g]);
  b[1] = mt_pack(B[(2 * t + 8) * ldb + g], B[(2 * t + 9) * ldb + g]);
}
// Inline PTX; the CPU emulator (cuda-emu) defines these functions itself.
#ifndef __MTRITON_CUDA_EMU__
#define MT_MMA_REGS(T, PTX_TYPE)                                                                     \\
  __device__ inline void mt_mma_regs(float* c, const unsigned int* a, const unsigned int* b, const T*) { \\
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE ".f32 "             \\
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\\n"                 \\
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                  \\
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));             \\
  }
MT_MMA_REGS(__half, "f16")
MT_MMA_REGS(__nv_bfloat16, "bf16")
// Fragments in registers: ldmatrix from shared memory (16-byte aligned rows) and mma on them.
__device__ inline unsigned int mt_shared_address(const void* p) {
  unsigned long long a;
  asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
  return (unsigned int)a;
}
__device__ inline void mt_ldmatrix_x4(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x4_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x2(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x2_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(mt_shared_address(p)));
}
template <int N>
__device__ inline void mt_cp_async(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\\n"
               :: "r"(mt_shared_address(dst)), "l"(src), "n"(N), "r"(src_bytes) : "memory");
}
__device__ inline void mt_cp_async_wait() { asm volatile("cp.async.wait_all;\\n" ::: "memory"); }
__device__ inline void mt_cp_async_commit() { asm volatile("cp.async.commit_group;\\n" ::: "memory"); }
template <int N>
__device__ inline void mt_cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\\n" :: "n"(N) : "memory"); }
// TF32 (float32 inputs under input_precision="tf32"): round to nearest, ties away, then
// mma.sync m16n8k8: a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b = B[t][g], B[t+4][g].
__device__ inline unsigned int mt_tf32(float x) {
  unsigned int r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
__device__ inline void mt_mma_tf32(float* c, const unsigned int* a, const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif  // __MTRITON_CUDA_EMU__
// The A fragment of a 16x8 float tile: ldmatrix moves 32-bit elements as pairs of 16-bit
// ones (lane l passes row l % 16, column 4 * (l / 16)); B's elements are read one by one.
__device__ inline void mt_tf32_regs(unsigned int* r, int n) {
  for (int j = 0; j < n; ++j) r[j] = mt_tf32(__uint_as_float(r[j]));
}
__device__ inline void mt_load_a_tf32(unsigned int* r, const float* p) {
  mt_ldmatrix_x4(r, p);
  mt_tf32_regs(r, 4);
}
__device__ inline void mt_load_b_tf32(unsigned int* r, const float* B, int ldb) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  r[0] = mt_tf32(B[t * ldb + g]);
  r[1] = mt_tf32(B[(t + 4) * ldb + g]);
}
template <typename T>
__device__ inline void mt_mma(float c[4], const T* A, int lda, const T* B, int ldb) {
  unsigned int a[4], b[2];
  mt_fragments(A, lda, B, ldb, a, b);
  mt_mma_regs(c, a, b, A);
}
__device__ inline void mt_mma_store(const float c[4], float* C, int ldc) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  C[g * ldc + 2 * t] = c[0];
  C[g * ldc + 2 * t + 1] = c[1];
  C[(g + 8) * ldc + 2 * t] = c[2];
  C[(g + 8) * ldc + 2 * t + 1] = c[3];
}
"""


def _pointer_decl(ctype: str, local: str, source: str, path: str) -> str:
    if path == "fresh":
        return f"{ctype}* {local} = {source};"
    # inputs are `const T*`; a written one is a private copy (see gpu_launch)
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
    math={
        "exp": "expf",
        "exp2": "exp2f",
        "log": "logf",
        "log2": "log2f",
        "sqrt": "sqrtf",
        "rsqrt": "rsqrtf",
        "sin": "sinf",
        "cos": "cosf",
        "tanh": "tanhf",
        "abs": "fabsf",
        "erf": "erff",
        "floor": "floorf",
        "ceil": "ceilf",
        "mod": "fmodf",
        "maximum": "fmaxf",
        "minimum": "fminf",
        "pow": "powf",
        "atan2": "atan2f",
    },  # fmt: skip
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
    ),  # fmt: skip
    prelude=PRELUDE,
    pointer_decl=_pointer_decl,
    max_shared_bytes=200 * 1024,  # measured to work on an H100 through MLX (FACTS.md)
    max_vec=4,
    extra={
        "inf": "__int_as_float(0x7f800000)",
        "nan": "__int_as_float(0x7fffffff)",
        "bitcast": "mt_bitcast<{t}>({x})",
        "scalar_arg": "{name}[0]",
        "round_tf32": "__uint_as_float(mt_tf32({x}))",
    },
)


def full_cuda_source(fn: ir.Function, opts: dict[str, Any]) -> str:
    """A complete translation unit as MLX builds it, for `nvcc -arch=sm_90 -c`.

    MLX's generated signature takes the inputs as `const T*` and the outputs as
    `T*`, in order; every written pointer argument is shown on the
    copy-on-write path (an input made writable).
    """
    source = generate(fn, CUDA, int(opts["num_warps"]))
    params, prologue = [], []
    for k, param in enumerate(fn.params):
        elem = param.value.type.elem
        if isinstance(elem, T.PointerType):
            ctype = CUDA.ctype(elem.element)
            params.append(f"const {ctype}* i{k}")
            prologue.append("  " + _pointer_decl(ctype, f"p{k}", f"i{k}", "copy"))
        else:
            params.append(f"const {CUDA.ctype(elem)}* a{k}")
    params.append("int* mt_done")
    return "\n".join(
        [
            "#include <cuda_fp16.h>",
            "#include <cuda_bf16.h>",
            "#include <cstring>",
            source.header,
            f'extern "C" __global__ void {source.name}({", ".join(params)}) {{',
            *prologue,
            source.body + "}",
        ]
    )


class CudaBackend:
    name = "cuda"

    def is_available(self) -> bool:
        try:
            return bool(mx.cuda.is_available())
        except (AttributeError, RuntimeError):
            return False

    def factory(self) -> Any:
        return mx.fast.cuda_kernel

    def compile(self, fn: ir.Function, opts: dict[str, Any]) -> CustomKernelLauncher:
        return CustomKernelLauncher(fn, CUDA, int(opts.get("num_warps", 4)), self.factory())


class CudaEmuBackend(CudaBackend):
    """The CUDA source run on the CPU (metal-emu's runtime with a CUDA shim)."""

    name = "cuda-emu"

    def is_available(self) -> bool:
        return MetalEmuBackend().is_available()

    def factory(self) -> Any:
        from ..emulator import cuda_kernel

        return cuda_kernel


register("cuda")(CudaBackend)
register("cuda-emu")(CudaEmuBackend)
