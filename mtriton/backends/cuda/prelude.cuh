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
// Triton's float32 exp2 and division (math_mode "relaxed"/"fast"): 2 ulp, full range.
__device__ inline float mt_ex2_approx(float x) {
  float y;
  asm("ex2.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ inline float mt_div_full(float x, float y) {
  float q;
  asm("div.full.f32 %0, %1, %2;" : "=f"(q) : "f"(x), "f"(y));
  return q;
}
#define MT_MMA_REGS(T, PTX_TYPE)                                                                     \
  __device__ inline void mt_mma_regs(float* c, const unsigned int* a, const unsigned int* b, const T*) { \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE ".f32 "             \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                 \
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));             \
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
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x4_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x2(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(mt_shared_address(p)));
}
__device__ inline void mt_ldmatrix_x2_trans(unsigned int* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(mt_shared_address(p)));
}
template <int N>
__device__ inline void mt_cp_async(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n"
               :: "r"(mt_shared_address(dst)), "l"(src), "n"(N), "r"(src_bytes) : "memory");
}
__device__ inline void mt_cp_async_wait() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
__device__ inline void mt_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ inline void mt_cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory"); }
// TF32 (float32 inputs under input_precision="tf32"): round to nearest, ties away, then
// mma.sync m16n8k8: a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b = B[t][g], B[t+4][g].
__device__ inline unsigned int mt_tf32(float x) {
  unsigned int r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
__device__ inline void mt_mma_tf32(float* c, const unsigned int* a, const unsigned int* b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif  // __MTRITON_CUDA_EMU__
// Triton's float32 exp: the product rounds to float first, so |x| * 2^-24 of error in the
// exponent adds to ex2's own (CUDA documents 2 + 1.17 |x| ulp for __expf).
__device__ inline float mt_exp_approx(float x) { return mt_ex2_approx(x * 1.4426950408889634f); }
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
