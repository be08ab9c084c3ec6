// Hopper warpgroup matrix multiply-accumulate (wgmma.mma_async, sm_90a), for the dots whose
// plan says so (`DotPlan.warpgroup`). A warpgroup is four consecutive warps; one wgmma computes a
// 64 x N tile, D += A B with K = 16, from two 64-bit shared-memory matrix descriptors. Warp w of
// the group holds rows 16 w .. 16 w + 15 and, per 8 columns j, the registers d[4 j .. 4 j + 3]
// of mma.sync's m16n8 C fragment (PTX ISA, "Register Fragments and Shared Memory Matrix Layouts"
// of wgmma .m64nNk16), so `MmaLayout` slots line up with them.
//
// Operands are staged in the ISA's canonical swizzled layouts: a tile of R rows by C contiguous
// columns is cut into panels of S bytes of columns (S = 32, 64 or 128: the swizzle), each panel R
// rows of S bytes, and the 16-byte chunk c of row r is stored at chunk c ^ ((r / (128 / S)) %
// (S / 16)), which is Swizzle<log2(S / 16), 4, 3> on the byte address when the tile starts on an
// 8 S-byte boundary. A K-major operand (A, or B given as tl.trans of an (N, K) tile) has its
// rows along M or N; an MN-major one (B as a row-major K x N tile) has its rows along K.
//
// Offset of element (row, col) of such a tile, in elements of ITEM bytes.
template <int ROWS, int S, int ITEM>
__device__ inline int mt_wgmma_offset(int row, int col) {
  constexpr int per_row = S / ITEM, per_chunk = 16 / ITEM;
  const int within = col % per_row;
  const int chunk = (within / per_chunk) ^ ((row / (128 / S)) % (S / 16));
  return (col / per_row) * (ROWS * per_row) + row * per_row + chunk * per_chunk + within % per_chunk;
}
// The matrix descriptor: start address, leading and stride byte offsets (each >> 4, 14 bits) at
// bits 0, 16 and 32, base offset 0 (bits 49-51: tiles start on their swizzle's repeat), and the
// swizzle mode at bits 62-63 (1: 128 bytes, 2: 64, 3: 32). K-major: SBO is the step between
// 8-row groups, LBO is unused (1). MN-major: LBO is the step between panels, SBO between
// groups of 8 rows of K.
__device__ inline unsigned long long mt_wgmma_desc(const void* p, unsigned int lbo, unsigned int sbo, int swizzle) {
  const unsigned long long mode = swizzle == 128 ? 1ull : swizzle == 64 ? 2ull : swizzle == 32 ? 3ull : 0ull;
  return (unsigned long long)((mt_shared_address(p) & 0x3ffffu) >> 4) | ((unsigned long long)((lbo >> 4) & 0x3fffu) << 16) |
         ((unsigned long long)((sbo >> 4) & 0x3fffu) << 32) | (mode << 62);
}
#ifndef __MTRITON_CUDA_EMU__
// Orders this thread's earlier register and shared-memory accesses before the warpgroup's next
// wgmma; writes to shared memory through the generic proxy (st.shared, cp.async) are made
// visible to the async proxy wgmma reads through by fence.proxy.async before the barrier.
__device__ inline void mt_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void mt_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ inline void mt_wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory"); }
__device__ inline void mt_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving accesses to the accumulators across a fence or a wait (the
// wgmma's own operands say nothing about when the asynchronous writes land).
__device__ inline void mt_wgmma_fence_regs(float* d, int n) {
  for (int i = 0; i < n; ++i) asm volatile("" : "+f"(d[i]) :: "memory");
}
// mt_wgmma_m64n<N><TransB>(d, a, b, (const T*)0): d[0 .. N/2) += A B (scale-d 1); TransB 1 reads B
// MN-major. One "+f" operand per accumulator register; the descriptors and flags follow them.
#define MT_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define MT_D32(i) MT_D8(i), MT_D8(i + 8), MT_D8(i + 16), MT_D8(i + 24)
#define MT_D128(i) MT_D32(i), MT_D32(i + 32), MT_D32(i + 64), MT_D32(i + 96)
#define MT_WGMMA_TYPED(N, T, PTX, REGS, A, B, P, TB, ...)                                             \
  template <int TransB>                                                                              \
  __device__ inline void mt_wgmma_m64n##N(float* d, unsigned long long a, unsigned long long b, const T*) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" P ", 0;\n"                                    \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX "." PTX " {" REGS "}, %" A    \
                 ", %" B ", p, 1, 1, 0, %" TB ";\n}\n"                                               \
                 : __VA_ARGS__                                                                       \
                 : "l"(a), "l"(b), "r"(1), "n"(TransB));                                             \
  }
#define MT_WGMMA_N(N, REGS, A, B, P, TB, ...)                      \
  MT_WGMMA_TYPED(N, __half, "f16", REGS, A, B, P, TB, __VA_ARGS__) \
  MT_WGMMA_TYPED(N, __nv_bfloat16, "bf16", REGS, A, B, P, TB, __VA_ARGS__)
#define MT_REGS_N16 \
  "%0, %1, %2, %3, %4, %5, %6, %7"
MT_WGMMA_N(16, MT_REGS_N16, "8", "9", "10", "11", MT_D8(0))
#undef MT_REGS_N16
#define MT_REGS_N32 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
MT_WGMMA_N(32, MT_REGS_N32, "16", "17", "18", "19", MT_D8(0), MT_D8(8))
#undef MT_REGS_N32
#define MT_REGS_N64 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
MT_WGMMA_N(64, MT_REGS_N64, "32", "33", "34", "35", MT_D32(0))
#undef MT_REGS_N64
#define MT_REGS_N128 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, " \
  "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
  "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
MT_WGMMA_N(128, MT_REGS_N128, "64", "65", "66", "67", MT_D32(0), MT_D32(32))
#undef MT_REGS_N128
#define MT_REGS_N256 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, " \
  "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
  "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, " \
  "%66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
  "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, " \
  "%98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, " \
  "%126, %127"
MT_WGMMA_N(256, MT_REGS_N256, "128", "129", "130", "131", MT_D128(0))
#undef MT_REGS_N256
#undef MT_WGMMA_N
#undef MT_WGMMA_TYPED
#undef MT_D128
#undef MT_D32
#undef MT_D8
#endif  // __MTRITON_CUDA_EMU__
