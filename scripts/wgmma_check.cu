// Checks mtriton's wgmma helpers (mtriton/backends/cuda/helpers/wgmma.cuh) on a Hopper GPU with
// plain nvcc, no MLX: one CTA of one or two warpgroups stages A (M x K) and B in the swizzled
// layouts the lowering writes, runs a wgmma per k-step of 16 through the helpers' descriptors,
// and compares the (M x N) product with the host's, exactly (the inputs are multiples of 1/4
// in [-2, 2), so every product and sum is exact in float). B is MN-major (row-major K x N, as
// the Triton tutorial loads it) or K-major (an N x K tile, as tl.trans of a loaded (N, K) tile).
// Then a persistent loop of wgmma on tiles that stay in shared memory gives the instruction's
// throughput.
//   nvcc -arch=sm_90a -O3 -o /tmp/w scripts/wgmma_check.cu && /tmp/w
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../mtriton/backends/cuda/prelude.cuh"
#include "../mtriton/backends/cuda/helpers/wgmma.cuh"

#define CHECK(x)                                                                   \
  do {                                                                             \
    cudaError_t err = (x);                                                         \
    if (err != cudaSuccess) {                                                      \
      printf("CUDA error %s at line %d: %s\n", #x, __LINE__, cudaGetErrorString(err)); \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

__host__ __device__ constexpr int swizzle_of(int bytes) { return bytes % 128 == 0 ? 128 : bytes % 64 == 0 ? 64 : 32; }
__host__ __device__ constexpr int align1024(int bytes) { return (bytes + 1023) / 1024 * 1024; }

template <int N, int TRANS_B, typename T>
__device__ inline void wgmma(float* d, unsigned long long a, unsigned long long b) {
  if constexpr (N == 16) mt_wgmma_m64n16<TRANS_B>(d, a, b, (const T*)0);
  else if constexpr (N == 32) mt_wgmma_m64n32<TRANS_B>(d, a, b, (const T*)0);
  else if constexpr (N == 64) mt_wgmma_m64n64<TRANS_B>(d, a, b, (const T*)0);
  else if constexpr (N == 128) mt_wgmma_m64n128<TRANS_B>(d, a, b, (const T*)0);
  else mt_wgmma_m64n256<TRANS_B>(d, a, b, (const T*)0);
}

// Stages A and B, then each warpgroup computes its 64 rows of C = A B.
template <typename T, int WG, int N, int K, int TRANS_B>
__global__ void product(const T* A, const T* B, float* C, unsigned int* smem_base) {
  constexpr int M = 64 * WG, SA = swizzle_of(K * 2), SB = TRANS_B ? swizzle_of(N * 2) : swizzle_of(K * 2);
  extern __shared__ float4 smem_v[];
  unsigned char* smem = (unsigned char*)smem_v;
  T* sa = (T*)smem;
  T* sb = (T*)(smem + align1024(M * K * 2));
  if (threadIdx.x == 0) *smem_base = mt_shared_address(smem);
  for (int e = threadIdx.x; e < M * K; e += blockDim.x) sa[mt_wgmma_offset<M, SA, 2>(e / K, e % K)] = A[e];
  for (int e = threadIdx.x; e < K * N; e += blockDim.x) {
    if (TRANS_B) sb[mt_wgmma_offset<K, SB, 2>(e / N, e % N)] = B[e];  // B is K x N
    else sb[mt_wgmma_offset<N, SB, 2>(e / K, e % K)] = B[e];          // B is N x K
  }
  mt_fence_proxy_async();
  __syncthreads();
  float d[N / 2];
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned long long da = mt_wgmma_desc(sa, 16, 8 * SA, SA);
  const unsigned long long db = TRANS_B ? mt_wgmma_desc(sb, K * SB, 8 * SB, SB) : mt_wgmma_desc(sb, 16, 8 * SB, SB);
  mt_wgmma_fence_regs(d, N / 2);
  mt_wgmma_fence();
  for (int kk = 0; kk < K; kk += 16) {
    // rows that are multiples of 8 are not swizzled: the offsets are the descriptors' starts
    const int a_off = mt_wgmma_offset<M, SA, 2>(64 * wg, kk);
    const int b_off = TRANS_B ? mt_wgmma_offset<K, SB, 2>(kk, 0) : mt_wgmma_offset<N, SB, 2>(0, kk);
    wgmma<N, TRANS_B, T>(d, da + ((a_off * 2) >> 4), db + ((b_off * 2) >> 4));
  }
  mt_wgmma_commit();
  mt_wgmma_wait<0>();
  mt_wgmma_fence_regs(d, N / 2);
  for (int j = 0; j < N / 8; ++j)
    for (int r = 0; r < 4; ++r) {
      const int row = 64 * wg + 16 * (warp % 4) + lane / 4 + 8 * (r / 2), col = 8 * j + 2 * (lane % 4) + r % 2;
      C[row * N + col] = d[4 * j + r];
    }
}

template <typename T>
T to(float x);
template <>
__half to<__half>(float x) { return __float2half(x); }
template <>
__nv_bfloat16 to<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

static int failures = 0;

template <typename T, int WG, int N, int K, int TRANS_B>
void check(const char* type) {
  constexpr int M = 64 * WG;
  std::vector<float> a(M * K), b(K * N);
  for (auto& x : a) x = (rand() % 16 - 8) / 4.0f;
  for (auto& x : b) x = (rand() % 16 - 8) / 4.0f;
  std::vector<T> ha(M * K), hb(K * N);
  for (int i = 0; i < M * K; ++i) ha[i] = to<T>(a[i]);
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < N; ++n) hb[TRANS_B ? k * N + n : n * K + k] = to<T>(b[k * N + n]);
  T *da, *db;
  float* dc;
  unsigned int* dbase;
  CHECK(cudaMalloc(&da, ha.size() * sizeof(T)));
  CHECK(cudaMalloc(&db, hb.size() * sizeof(T)));
  CHECK(cudaMalloc(&dc, M * N * sizeof(float)));
  CHECK(cudaMalloc(&dbase, sizeof(unsigned int)));
  CHECK(cudaMemcpy(da, ha.data(), ha.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, hb.data(), hb.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK(cudaMemset(dc, 0xff, M * N * sizeof(float)));  // poison: NaN where nothing is written
  const int smem = align1024(M * K * 2) + K * N * 2;
  auto kernel = product<T, WG, N, K, TRANS_B>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kernel<<<1, 128 * WG, smem>>>(da, db, dc, dbase);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<float> c(M * N);
  unsigned int base;
  CHECK(cudaMemcpy(c.data(), dc, c.size() * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(&base, dbase, sizeof(base), cudaMemcpyDeviceToHost));
  int bad = 0;
  double worst = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double ref = 0;
      for (int k = 0; k < K; ++k) ref += (double)a[m * K + k] * b[k * N + n];
      const double err = c[m * N + n] == c[m * N + n] ? ref - c[m * N + n] : 1e30;
      if (err != 0) ++bad;
      worst = err < 0 ? (-err > worst ? -err : worst) : (err > worst ? err : worst);
    }
  printf("%s %-5s M=%3d N=%3d K=%3d B %-8s swizzle A %3d B %3d: %s (%d of %d wrong, worst %g; shared base %% 1024 = %u)\n",
         bad ? "FAIL" : "PASS", type, M, N, K, TRANS_B ? "MN-major" : "K-major", swizzle_of(K * 2),
         TRANS_B ? swizzle_of(N * 2) : swizzle_of(K * 2), bad ? "mismatch" : "exact", bad, M * N, worst, base % 1024);
  failures += bad != 0;
  CHECK(cudaFree(da));
  CHECK(cudaFree(db));
  CHECK(cudaFree(dc));
  CHECK(cudaFree(dbase));
}

// Throughput: every CTA keeps a 128 x 64 A and a 64 x 256 B (MN-major) in shared memory and
// each of its two warpgroups issues 4 m64n256k16 per iteration, waiting for them each time.
__global__ void throughput(float* out, int iters) {
  constexpr int K = 64, N = 256, SA = 128, SB = 128;
  extern __shared__ float4 smem_v[];
  unsigned char* smem = (unsigned char*)smem_v;
  __half* sa = (__half*)smem;
  __half* sb = (__half*)(smem + 128 * K * 2);
  for (int e = threadIdx.x; e < 128 * K; e += blockDim.x) sa[e] = __float2half(0.001f * (e % 7));
  for (int e = threadIdx.x; e < K * N; e += blockDim.x) sb[e] = __float2half(0.001f * (e % 5));
  mt_fence_proxy_async();
  __syncthreads();
  float d[N / 2];
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  const int wg = threadIdx.x / 128;
  const unsigned long long da = mt_wgmma_desc(sa, 16, 8 * SA, SA) + ((64 * wg * SA) >> 4);
  const unsigned long long db = mt_wgmma_desc(sb, K * SB, 8 * SB, SB);
  for (int it = 0; it < iters; ++it) {
    mt_wgmma_fence_regs(d, N / 2);
    mt_wgmma_fence();
    for (int kk = 0; kk < K; kk += 16) mt_wgmma_m64n256<1>(d, da + ((kk * 2) >> 4), db + ((kk * SB) >> 4), (const __half*)0);
    mt_wgmma_commit();
    mt_wgmma_wait<0>();
    mt_wgmma_fence_regs(d, N / 2);
  }
  float s = 0;
  for (int i = 0; i < N / 2; ++i) s += d[i];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

void time_throughput() {
  int sms;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  float* out;
  CHECK(cudaMalloc(&out, sms * 256 * sizeof(float)));
  const int smem = 128 * 64 * 2 + 64 * 256 * 2, iters = 20000;
  CHECK(cudaFuncSetAttribute(throughput, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  throughput<<<sms, 256, smem>>>(out, 10);
  CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start));
  throughput<<<sms, 256, smem>>>(out, iters);
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  const double flops = 2.0 * 128 * 256 * 64 * (double)iters * sms;
  printf("throughput: %d CTAs x 2 warpgroups, m64n256k16 f16 from shared memory, wait<0> per 4: %.1f TFLOP/s (%.3f ms)\n",
         sms, flops / (ms * 1e-3) / 1e12, ms);
  CHECK(cudaFree(out));
}

int main() {
  srand(1);
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, sm_%d%d\n", prop.name, prop.major, prop.minor);
  check<__half, 1, 64, 64, 1>("f16");
  check<__half, 1, 64, 64, 0>("f16");
  check<__nv_bfloat16, 1, 64, 64, 1>("bf16");
  check<__nv_bfloat16, 1, 64, 64, 0>("bf16");
  check<__half, 1, 128, 64, 1>("f16");
  check<__half, 1, 256, 64, 1>("f16");
  check<__nv_bfloat16, 1, 256, 64, 0>("bf16");
  check<__half, 2, 128, 64, 1>("f16");
  check<__half, 2, 128, 128, 0>("f16");
  check<__half, 1, 16, 16, 1>("f16");   // 32-byte swizzles
  check<__half, 1, 32, 32, 1>("f16");   // 64-byte swizzles
  check<__nv_bfloat16, 1, 32, 32, 0>("bf16");
  check<__half, 1, 64, 16, 0>("f16");
  check<__half, 2, 256, 192, 1>("f16");  // A in three 128-byte panels
  time_throughput();
  printf("%s\n", failures ? "SOME CASES FAILED" : "ALL PASS");
  return failures != 0;
}
