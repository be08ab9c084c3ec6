// cuda-emu shim: CUDA kernel bodies, as mx.fast.cuda_kernel receives them, compiled as C++17 for
// the CPU on metal-emu's runtime (fibers, barriers, SIMD-group operations, threadgroup memory).
//
// A CUDA block is a threadgroup, a warp a 32-lane SIMD-group. CUDA's built-in variables read the
// running fiber's attributes. The tensor-core and asynchronous-copy helpers that mtriton's CUDA
// prelude writes in inline PTX are defined here in C++, with the same fragment layouts, and the
// prelude leaves its own definitions out when __MTRITON_CUDA_EMU__ is defined.
#pragma once
#include "metal_shim.h"

#define __MTRITON_CUDA_EMU__ 1
#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

typedef half __half;
typedef bfloat __nv_bfloat16;

struct __emu_dim3 {
  unsigned int x, y, z;
};
inline __emu_dim3 __emu_dim(const uint32_t* v) { return {v[0], v[1], v[2]}; }
#define threadIdx (__emu_dim(__emu_ts.attrs->thread_position_in_threadgroup))
#define blockIdx (__emu_dim(__emu_ts.attrs->threadgroup_position_in_grid))
#define blockDim (__emu_dim(__emu_ts.attrs->threads_per_threadgroup))
#define gridDim (__emu_dim(__emu_ts.attrs->threadgroups_per_grid))
#define warpSize 32
#define memcpy __builtin_memcpy  // NVRTC has it built in

#define __syncthreads() __emu_rt->barrier(__LINE__)
#define __syncwarp(...) __emu_rt->simd(__LINE__, nullptr, nullptr, nullptr)

// ------------------------------------------------------------------ conversions and bit casts

inline __half __float2half(float x) { return (__half)x; }
inline __half __float2half_rn(float x) { return (__half)x; }
inline float __half2float(__half x) { return (float)x; }
inline __nv_bfloat16 __float2bfloat16(float x) { return __nv_bfloat16(x); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __nv_bfloat16(x); }
inline float __bfloat162float(__nv_bfloat16 x) { return (float)x; }
inline unsigned short __half_as_ushort(__half x) { return as_type<unsigned short>(x); }
inline __half __ushort_as_half(unsigned short x) { return as_type<__half>(x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 x) { return x.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return bfloat::from_bits(x); }
inline float __int_as_float(int x) { return as_type<float>(x); }
inline int __float_as_int(float x) { return as_type<int>(x); }
inline float __uint_as_float(unsigned int x) { return as_type<float>(x); }
inline unsigned int __float_as_uint(float x) { return as_type<unsigned int>(x); }

// ------------------------------------------------------------------ float math (CUDA's names)

#define __EMU_F1(NAME, BUILTIN) \
  inline float NAME(float x) { return BUILTIN(x); }
__EMU_F1(expf, __builtin_expf)
__EMU_F1(exp2f, __builtin_exp2f)
__EMU_F1(logf, __builtin_logf)
__EMU_F1(log2f, __builtin_log2f)
__EMU_F1(log1pf, __builtin_log1pf)
__EMU_F1(expm1f, __builtin_expm1f)
__EMU_F1(sqrtf, __builtin_sqrtf)
__EMU_F1(sinf, __builtin_sinf)
__EMU_F1(cosf, __builtin_cosf)
__EMU_F1(tanf, __builtin_tanf)
__EMU_F1(tanhf, __builtin_tanhf)
__EMU_F1(fabsf, __builtin_fabsf)
__EMU_F1(erff, __builtin_erff)
__EMU_F1(floorf, __builtin_floorf)
__EMU_F1(ceilf, __builtin_ceilf)
__EMU_F1(truncf, __builtin_truncf)
__EMU_F1(roundf, __builtin_roundf)
__EMU_F1(rintf, __builtin_rintf)
__EMU_F1(log10f, __builtin_log10f)
__EMU_F1(cbrtf, __builtin_cbrtf)
__EMU_F1(asinf, __builtin_asinf)
__EMU_F1(acosf, __builtin_acosf)
__EMU_F1(atanf, __builtin_atanf)
__EMU_F1(sinhf, __builtin_sinhf)
__EMU_F1(coshf, __builtin_coshf)
__EMU_F1(asinhf, __builtin_asinhf)
__EMU_F1(acoshf, __builtin_acoshf)
__EMU_F1(atanhf, __builtin_atanhf)
#undef __EMU_F1
inline float rsqrtf(float x) { return 1.0f / __builtin_sqrtf(x); }
inline float fmodf(float x, float y) { return __builtin_fmodf(x, y); }
inline float fmaxf(float x, float y) { return __builtin_fmaxf(x, y); }
inline float fminf(float x, float y) { return __builtin_fminf(x, y); }
inline float powf(float x, float y) { return __builtin_powf(x, y); }
inline float atan2f(float y, float x) { return __builtin_atan2f(y, x); }
inline float fmaf(float x, float y, float z) { return __builtin_fmaf(x, y, z); }

// The prelude's ex2.approx.f32 and div.full.f32 (Triton's exp2, exp and division): a result
// that is a float (x / 1, 2^k) exactly, as the hardware gives it; any other rounded to float
// with its lowest mantissa bit then cleared, 1.5 ulp off at most, near the 2 ulp CUDA
// documents for them, so accuracy that holds here holds on the GPU.
inline float __emu_two_ulp(double exact) {
  float r = (float)exact;
  if (!__builtin_isfinite(r) || (double)r == exact) return r;
  return __uint_as_float(__float_as_uint(r) & ~1u);
}
inline float mt_ex2_approx(float x) { return __emu_two_ulp(__builtin_exp2((double)x)); }
inline float mt_div_full(float x, float y) { return __emu_two_ulp((double)x / (double)y); }

// ------------------------------------------------------------------ warp shuffles

#define __EMU_SHFL(NAME, METAL)                                                                \
  template <class T>                                                                           \
  inline T NAME(unsigned int, T v, int arg, int width = 32, uint __site = __builtin_LINE()) {   \
    (void)width;                                                                               \
    return metal::METAL(v, (ushort)arg, __site);                                               \
  }
__EMU_SHFL(__shfl_sync, simd_shuffle)
__EMU_SHFL(__shfl_up_sync, simd_shuffle_up)
__EMU_SHFL(__shfl_down_sync, simd_shuffle_down)
__EMU_SHFL(__shfl_xor_sync, simd_shuffle_xor)
#undef __EMU_SHFL

// ------------------------------------------------------------------ atomics
// Fibers never run at once, so a read-modify-write is atomic; `progress` feeds the spin check.

#define __EMU_ATOMIC(NAME, EXPR)                 \
  template <class T, class U>                    \
  inline T NAME(T* p, U v) {                     \
    __EMU_ATOMIC_SCOPE                           \
    T old = *p;                                  \
    *p = EXPR;                                   \
    ++__emu_ts.progress;                         \
    return old;                                  \
  }
__EMU_ATOMIC(atomicAdd, T(old + v))
__EMU_ATOMIC(atomicSub, T(old - v))
__EMU_ATOMIC(atomicExch, T(v))
__EMU_ATOMIC(atomicMax, metal::max(old, T(v)))
__EMU_ATOMIC(atomicMin, metal::min(old, T(v)))
__EMU_ATOMIC(atomicAnd, T(old & v))
__EMU_ATOMIC(atomicOr, T(old | v))
__EMU_ATOMIC(atomicXor, T(old ^ v))
#undef __EMU_ATOMIC
template <class T, class U>
inline T atomicCAS(T* p, U compare, U value) {
  T old;
  {
    __EMU_ATOMIC_SCOPE
    old = *p;
    if (old == T(compare)) {
      *p = T(value);
      ++__emu_ts.progress;
      return old;
    }
  }
  __emu::spin();
  return old;
}

// ------------------------------------------------------------------ tensor cores and cp.async

namespace __emu {

template <class T>
inline float half_bits(uint32_t word, int hi) {
  uint16_t bits = (uint16_t)(hi ? word >> 16 : word);
  T x;
  __builtin_memcpy(&x, &bits, 2);
  return (float)x;
}

struct mma_regs_in {
  uint32_t a[4], b[2];
  float c[4];
};

// D = C + A B for a 16x8 accumulator tile; lane 4g + t gets D[g][2t], D[g][2t+1], D[g+8][2t],
// D[g+8][2t+1], accumulating in float in k order.
template <int K>
void mma_outputs(const float (*A)[K], const float (*B)[8], const float (*C)[8], void* const* outs) {
  for (int l = 0; l < 32; ++l) {
    float* out = static_cast<float*>(outs[l]);
    int g = l >> 2, t = l & 3;
    for (int r = 0; r < 4; ++r) {
      int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
      float acc = C[row][col];
      for (int k = 0; k < K; ++k) acc += A[row][k] * B[k][col];
      out[r] = acc;
    }
  }
}

// mma.sync.m16n8k16.row.col with float accumulators over all 32 lanes (lane = 4 g + t):
// a = A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]; b = B[2t..][g], B[2t+8..][g];
// c = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1] (PTX ISA, "Matrix Fragments for mma.m16n8k16").
template <class T>
int mma_m16n8k16(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  if (mask != 0xffffffffu) return MTEMU_ERR_MATRIX_LANES;
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const mma_regs_in* in = static_cast<const mma_regs_in*>(ins[l]);
    int g = l >> 2, t = l & 3;
    for (int j = 0; j < 2; ++j) {
      A[g][2 * t + j] = half_bits<T>(in->a[0], j);
      A[g + 8][2 * t + j] = half_bits<T>(in->a[1], j);
      A[g][2 * t + 8 + j] = half_bits<T>(in->a[2], j);
      A[g + 8][2 * t + 8 + j] = half_bits<T>(in->a[3], j);
      B[2 * t + j][g] = half_bits<T>(in->b[0], j);
      B[2 * t + 8 + j][g] = half_bits<T>(in->b[1], j);
      C[g][2 * t + j] = in->c[j];
      C[g + 8][2 * t + j] = in->c[2 + j];
    }
  }
  mma_outputs<16>(A, B, C, outs);
  return MTEMU_OK;
}

// mma.sync.m16n8k8.row.col.f32.tf32.tf32.f32: a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4];
// b = B[t][g], B[t+4][g]; c as for m16n8k16. TF32 products are exact in float.
inline int mma_m16n8k8_tf32(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  if (mask != 0xffffffffu) return MTEMU_ERR_MATRIX_LANES;
  float A[16][8], B[8][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const mma_regs_in* in = static_cast<const mma_regs_in*>(ins[l]);
    int g = l >> 2, t = l & 3;
    A[g][t] = as_type<float>(in->a[0]);
    A[g + 8][t] = as_type<float>(in->a[1]);
    A[g][t + 4] = as_type<float>(in->a[2]);
    A[g + 8][t + 4] = as_type<float>(in->a[3]);
    B[t][g] = as_type<float>(in->b[0]);
    B[t + 4][g] = as_type<float>(in->b[1]);
    for (int j = 0; j < 2; ++j) {
      C[g][2 * t + j] = in->c[j];
      C[g + 8][2 * t + j] = in->c[2 + j];
    }
  }
  mma_outputs<8>(A, B, C, outs);
  return MTEMU_OK;
}


// A GPU faults on an access not aligned to its size; the runtime reports the trap.
inline void check_aligned(const void* p, uintptr_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes) __builtin_trap();
}

inline uint32_t pack_bits(const void* lo, const void* hi) {
  uint16_t a, b;
  __builtin_memcpy(&a, lo, 2);
  __builtin_memcpy(&b, hi, 2);
  return (uint32_t)a | ((uint32_t)b << 16);
}

// ldmatrix .m8n8 .b16: lane 8 i + r gives the address of row r of matrix i; without .trans lane
// l receives row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 of each matrix; with .trans it
// receives rows 2 (l % 4) and 2 (l % 4) + 1 of column l / 4.
inline void ldmatrix(uint32_t* r, const void* p, int count, bool trans, uint site) {
  uint32_t lane = __emu_ts.lane;
  check_aligned(p, 16);  // each row is 16 bytes
  uintptr_t mine = reinterpret_cast<uintptr_t>(p);
  for (int i = 0; i < count; ++i) {
    if (!trans) {
      auto row = reinterpret_cast<const uint16_t*>(metal::simd_shuffle(mine, (ushort)(8 * i + lane / 4), site));
      r[i] = pack_bits(row + 2 * (lane % 4), row + 2 * (lane % 4) + 1);
    } else {
      auto row0 = reinterpret_cast<const uint16_t*>(metal::simd_shuffle(mine, (ushort)(8 * i + 2 * (lane % 4)), site));
      auto row1 = reinterpret_cast<const uint16_t*>(metal::simd_shuffle(mine, (ushort)(8 * i + 2 * (lane % 4) + 1), site));
      r[i] = pack_bits(row0 + lane / 4, row1 + lane / 4);
    }
  }
}

// cp.async: a thread's copies land when it waits for them (cp.async.wait_all, or wait_group for
// the groups it covers), the latest a GPU may deliver them, so that a read before the wait sees
// the old contents.
struct pending_copy {
  void* dst;
  const void* src;
  int bytes, src_bytes;
  uint32_t group;  // the number of commits before it was issued
};
constexpr int kMaxPendingCopies = 256;
struct copy_queue {
  int count;
  uint32_t committed;
  pending_copy copies[kMaxPendingCopies];
};
inline copy_queue& copies_of_this_thread() {
  static copy_queue queues[1024];
  return queues[__emu_ts.attrs->thread_index_in_threadgroup];
}
inline void reset_wgmmas();
// Each thread starts with no copies or wgmma in flight (the entry point calls this).
inline void start_thread() {
  copy_queue& q = copies_of_this_thread();
  q.count = 0;
  q.committed = 0;
  reset_wgmmas();
}
// Lands the copies of groups before `group` (all of them for UINT32_MAX), oldest first.
inline void land_copies(uint32_t group) {
  copy_queue& q = copies_of_this_thread();
  int kept = 0;
  for (int i = 0; i < q.count; ++i) {
    pending_copy& c = q.copies[i];
    if (c.group < group) {
      __builtin_memcpy(c.dst, c.src, c.src_bytes);
      __builtin_memset(static_cast<char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
    } else {
      q.copies[kept++] = c;
    }
  }
  q.count = kept;
}

}  // namespace __emu

// cvt.rna.tf32.f32: keep 10 mantissa bits, rounding to nearest with ties away from zero.
inline unsigned int mt_tf32(float x) {
  uint32_t u = as_type<uint32_t>(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf and NaN pass through
  return (u + 0x1000u) & 0xffffe000u;
}
inline void mt_mma_tf32(float* c, const unsigned int* a, const unsigned int* b, uint __site = __builtin_LINE()) {
  __emu::mma_regs_in in{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {c[0], c[1], c[2], c[3]}};
  __emu_rt->simd(__site, &__emu::mma_m16n8k8_tf32, &in, c);
}

template <class T>
inline void mt_mma_regs(float* c, const unsigned int* a, const unsigned int* b, const T*,
                        uint __site = __builtin_LINE()) {
  __emu::mma_regs_in in{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {c[0], c[1], c[2], c[3]}};
  __emu_rt->simd(__site, &__emu::mma_m16n8k16<T>, &in, c);
}
inline void mt_ldmatrix_x4(unsigned int* r, const void* p, uint __site = __builtin_LINE()) {
  __emu::ldmatrix(r, p, 4, false, __site);
}
inline void mt_ldmatrix_x4_trans(unsigned int* r, const void* p, uint __site = __builtin_LINE()) {
  __emu::ldmatrix(r, p, 4, true, __site);
}
inline void mt_ldmatrix_x2(unsigned int* r, const void* p, uint __site = __builtin_LINE()) {
  __emu::ldmatrix(r, p, 2, false, __site);
}
inline void mt_ldmatrix_x2_trans(unsigned int* r, const void* p, uint __site = __builtin_LINE()) {
  __emu::ldmatrix(r, p, 2, true, __site);
}
template <int N>
inline void mt_cp_async(void* dst, const void* src, int src_bytes) {
  static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
  __emu::check_aligned(dst, N);
  __emu::check_aligned(src, N);
  __emu::copy_queue& q = __emu::copies_of_this_thread();
  if (q.count == __emu::kMaxPendingCopies) __emu::land_copies(q.copies[0].group + 1);  // may land early
  q.copies[q.count++] = {dst, src, N, src_bytes < 0 ? 0 : (src_bytes > N ? N : src_bytes), q.committed};
}
inline void mt_cp_async_wait() { __emu::land_copies(UINT32_MAX); }
inline void mt_cp_async_commit() { ++__emu::copies_of_this_thread().committed; }
// cp.async.wait_group N: every committed group but the N latest has landed.
template <int N>
inline void mt_cp_async_wait_group() {
  uint32_t committed = __emu::copies_of_this_thread().committed;
  if (committed > (uint32_t)N) __emu::land_copies(committed - N);
}

// A `__shared__` array is threadgroup memory; the translation rewrites the declarations into
// these (`extern __shared__` takes the launch's dynamic size). The dynamic array is the shared
// window's address 0 for `mt_shared_address`, so it starts on every boundary the swizzled
// layouts of wgmma operands need, as the GPU's does (it ends at a guard page, not on one).
namespace __emu {
inline thread_local const char* shared_window = nullptr;
template <class T>
inline T* dynamic_shared(uint site, uint64_t bytes, const char* name) {
  void* p = __emu_rt->tg_alloc(site, bytes, 16, name);
  shared_window = static_cast<const char*>(p);
  return static_cast<T*>(p);
}
}  // namespace __emu
inline unsigned int mt_shared_address(const void* p) {
  return (unsigned int)(static_cast<const char*>(p) - __emu::shared_window);
}

// ------------------------------------------------------------------ wgmma (helpers/wgmma.cuh)
// Each thread computes its own accumulators when it issues the instruction, reading A and B from
// shared memory through the descriptors as the PTX ISA defines them (the canonical layouts and
// Swizzle<B,4,3> on the byte address); a correct program has made them visible before (a barrier)
// and leaves them alone until wgmma.wait_group, so reading them at issue is what it sees. The GPU
// may read them as late as the wait: the thread hashes the bytes it read at issue and again when
// the wait retires the group, and a difference (a write to an operand before the wait) turns the
// accumulators the instruction wrote into NaN, which the tests' exact comparisons show.
namespace __emu {
// The shared-window byte address of element (mn, k) of a wgmma operand described by `desc`:
// mn < 64 rows of A or N columns of B, k < 16; `mn_major` for an MN-major (transposed) operand.
inline uint32_t wgmma_address(uint64_t desc, bool mn_major, int mn, int k, int item) {
  const uint32_t start = (uint32_t)(desc & 0x3fff) << 4;
  const uint32_t lbo = (uint32_t)((desc >> 16) & 0x3fff) << 4, sbo = (uint32_t)((desc >> 32) & 0x3fff) << 4;
  const int mode = (int)(desc >> 62);
  if ((desc >> 49) & 7) __builtin_trap();  // base offset: mtriton's tiles start on their repeat
  const int swizzle = mode == 1 ? 128 : mode == 2 ? 64 : mode == 3 ? 32 : 0;
  const int t = 16 / item;  // elements in 16 bytes: the ISA's T
  uint32_t off;
  if (!mn_major) {  // ((8,m),(T,2k)): rows 8 apart by 16 bytes (or the swizzle's row), groups by SBO
    off = swizzle ? (mn % 8) * swizzle + (mn / 8) * sbo + k * item
                  : (mn % 8) * 16 + (mn / 8) * sbo + (k % t) * item + (k / t) * lbo;
  } else {  // ((T,x,m),(8,k)): x T-element chunks contiguous along MN, then panels by LBO
    const int per_row = swizzle ? swizzle / item : t;
    off = swizzle ? (mn % per_row) * item + (mn / per_row) * lbo + (k % 8) * swizzle + (k / 8) * sbo
                  : (mn % t) * item + (mn / t) * sbo + (k % 8) * 16 + (k / 8) * lbo;
  }
  uint32_t address = start + off;
  if (swizzle) address ^= ((address >> 7) & (uint32_t)(swizzle / 16 - 1)) << 4;
  return address;
}
template <class T>
inline float wgmma_element(uint64_t desc, bool mn_major, int mn, int k) {
  T x;
  __builtin_memcpy(&x, shared_window + wgmma_address(desc, mn_major, mn, k, 2), 2);
  return (float)x;
}
// wgmma.mma_async m64nNk16, f32 += T x T, scale-d 1: this thread's N / 2 accumulators (warp w of
// its warpgroup: rows 16 w + lane / 4 (+ 8), columns 8 j + 2 (lane % 4) (+ 1)).
// A hash of the operand bytes one wgmma of this thread reads (rows 16 w .. 16 w + 15 of A, all
// n columns of B).
inline uint64_t wgmma_operands_hash(uint64_t a, uint64_t b, int n, bool trans_b) {
  const int w = (int)(threadIdx.x / 32) % 4;
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint32_t address) {
    uint16_t bits;
    __builtin_memcpy(&bits, shared_window + address, 2);
    h = (h ^ bits) * 1099511628211ull;
  };
  for (int k = 0; k < 16; ++k) {
    for (int row = 16 * w; row < 16 * w + 16; ++row) mix(wgmma_address(a, false, row, k, 2));
    for (int col = 0; col < n; ++col) mix(wgmma_address(b, trans_b, col, k, 2));
  }
  return h;
}
struct pending_wgmma {
  float* d;
  uint64_t a, b, hash;
  int n;
  bool trans_b;
  uint32_t group;  // the thread's commits before it was issued
};
constexpr int kMaxPendingWgmma = 64;
struct wgmma_queue {
  int count;
  uint32_t committed;
  pending_wgmma ops[kMaxPendingWgmma];
};
inline wgmma_queue& wgmmas_of_this_thread() {
  static wgmma_queue queues[1024];
  return queues[__emu_ts.attrs->thread_index_in_threadgroup];
}
inline void reset_wgmmas() {
  wgmma_queue& q = wgmmas_of_this_thread();
  q.count = 0;
  q.committed = 0;
}
template <class T>
inline void wgmma(float* d, int n, uint64_t a, uint64_t b, bool trans_b) {
  const int lane = __emu_ts.lane, w = (int)(threadIdx.x / 32) % 4;
  for (int j = 0; j < n / 8; ++j)
    for (int r = 0; r < 4; ++r) {
      const int row = 16 * w + lane / 4 + 8 * (r / 2), col = 8 * j + 2 * (lane % 4) + r % 2;
      float acc = d[4 * j + r];
      for (int k = 0; k < 16; ++k) acc += wgmma_element<T>(a, false, row, k) * wgmma_element<T>(b, trans_b, col, k);
      d[4 * j + r] = acc;
    }
  wgmma_queue& q = wgmmas_of_this_thread();
  if (q.count == kMaxPendingWgmma) __builtin_trap();  // more in flight than a program keeps
  q.ops[q.count++] = {d, a, b, wgmma_operands_hash(a, b, n, trans_b), n, trans_b, q.committed};
}
// Retires the groups before `group`: their operands must be as they were at issue.
inline void retire_wgmmas(uint32_t group) {
  wgmma_queue& q = wgmmas_of_this_thread();
  int kept = 0;
  for (int i = 0; i < q.count; ++i) {
    pending_wgmma& op = q.ops[i];
    if (op.group >= group) {
      q.ops[kept++] = op;
    } else if (wgmma_operands_hash(op.a, op.b, op.n, op.trans_b) != op.hash) {
      for (int j = 0; j < op.n / 2; ++j) op.d[j] = __builtin_nanf("");
    }
  }
  q.count = kept;
}
}  // namespace __emu
inline void mt_wgmma_fence() {}
inline void mt_wgmma_commit() { ++__emu::wgmmas_of_this_thread().committed; }
template <int N>
inline void mt_wgmma_wait() {
  const uint32_t committed = __emu::wgmmas_of_this_thread().committed;
  if (committed > (uint32_t)N) __emu::retire_wgmmas(committed - N);
}
inline void mt_fence_proxy_async() {}
inline void mt_wgmma_fence_regs(float*, int) {}
#define __EMU_WGMMA(N)                                                                   \
  template <int TransB, class T>                                                         \
  inline void mt_wgmma_m64n##N(float* d, unsigned long long a, unsigned long long b, const T*) { \
    __emu::wgmma<T>(d, N, a, b, TransB != 0);                                            \
  }
__EMU_WGMMA(16)
__EMU_WGMMA(32)
__EMU_WGMMA(64)
__EMU_WGMMA(128)
__EMU_WGMMA(256)
#undef __EMU_WGMMA
