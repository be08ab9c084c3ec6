// metal-emu shim: what makes GPU threads cooperate - barriers, SIMD-group
// functions, atomics, threadgroup memory and simdgroup matrices.
//
// Every GPU thread is a fiber. A function that needs other threads (a
// barrier, simd_sum, ...) hands the runtime a pointer to its operand and a
// combine function, and sleeps; once the lanes have all arrived the runtime
// runs the combine step over their operands and wakes them.
#pragma once
#include "emu_abi.h"
#include "metal_math.h"

// Set by mtemu_bind when the runtime loads this kernel.
static const mtemu_api* __emu_rt;
// The running thread's state; the runtime swaps `loc` per fiber.
static mtemu_thread_state __emu_ts = {-1, 0, 0, 0, 0, nullptr};

// Statement-location record inserted by the emulator's source rewrite.
#define __EMU_LOC(k) __emu_ts.loc = (k);

#ifdef MTEMU_TRACE
// A traced build (-fsanitize=kernel-address against the runtime's shadow memory): the
// compiler checks every load and store inline and calls these AddressSanitizer entry points
// for the bytes the shadow flags, the data of watched buffers and their neighbours.
extern "C" {
#define __EMU_REPORT(N)                                                                   \
  __attribute__((visibility("hidden"))) void __asan_report_load##N##_noabort(uintptr_t p) { \
    __emu_rt->access((const void*)p, N, 0);                                               \
  }                                                                                       \
  __attribute__((visibility("hidden"))) void __asan_report_store##N##_noabort(uintptr_t p) { \
    __emu_rt->access((const void*)p, N, MTEMU_ACCESS_WRITE);                              \
  }
__EMU_REPORT(1)
__EMU_REPORT(2)
__EMU_REPORT(4)
__EMU_REPORT(8)
__EMU_REPORT(16)
#undef __EMU_REPORT
__attribute__((visibility("hidden"))) void __asan_report_load_n_noabort(uintptr_t p, uintptr_t n) {
  __emu_rt->access((const void*)p, n, 0);
}
__attribute__((visibility("hidden"))) void __asan_report_store_n_noabort(uintptr_t p, uintptr_t n) {
  __emu_rt->access((const void*)p, n, MTEMU_ACCESS_WRITE);
}
// Hooks the instrumentation calls around dynamic initialisers and noreturn calls: nothing to do.
__attribute__((visibility("hidden"))) void __asan_before_dynamic_init(const char*) {}
__attribute__((visibility("hidden"))) void __asan_after_dynamic_init() {}
__attribute__((visibility("hidden"))) void __asan_handle_no_return() {}
}
// Marks the accesses of an atomic operation: two atomics on one address do not race.
struct __emu_atomic_scope {
  __emu_atomic_scope() { __emu_ts.atomic = 1; }
  ~__emu_atomic_scope() { __emu_ts.atomic = 0; }
};
#define __EMU_ATOMIC_SCOPE __emu_atomic_scope __emu_atomic_marker;
#else
#define __EMU_ATOMIC_SCOPE
#endif

namespace __emu {

inline void spin() {
  // A thread that keeps reading an atomic may be waiting for another one:
  // let the others run now and then.
  if (++__emu_ts.spins >= 64) {
    __emu_ts.spins = 0;
    __emu_rt->spin();
  }
}

inline void lane_coord(uint lane, int& row, int& col) {
  // MLX steel's BaseMMAFrag<T, 8, 8>::get_coord: lane -> (row, first column)
  // of the two elements it holds.
  int qid = (int)lane / 4;
  row = (qid & 4) + ((int)lane / 2) % 4;
  col = (qid & 2) * 2 + ((int)lane % 2) * 2;
}

#define __EMU_FOR_LANES(l, mask) \
  for (int l = 0; l < 32; ++l)   \
    if ((mask) >> l & 1u)

struct op_sum {
  template <class T>
  static T apply(T a, T b) { return T(a + b); }
  template <class T>
  static T identity() { return T(0); }
};
struct op_product {
  template <class T>
  static T apply(T a, T b) { return T(a * b); }
  template <class T>
  static T identity() { return T(1); }
};
struct op_min {
  template <class T>
  static T apply(T a, T b) { return metal::min(a, b); }
};
struct op_max {
  template <class T>
  static T apply(T a, T b) { return metal::max(a, b); }
};
struct op_and {
  template <class T>
  static T apply(T a, T b) { return T(a & b); }
};
struct op_or {
  template <class T>
  static T apply(T a, T b) { return T(a | b); }
};
struct op_xor {
  template <class T>
  static T apply(T a, T b) { return T(a ^ b); }
};

// Reductions combine the active lanes in lane order, in the operand's type.
template <class T, class Op>
int reduce(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  T acc{};
  bool first = true;
  __EMU_FOR_LANES(l, mask) {
    T v = *static_cast<const T*>(ins[l]);
    acc = first ? v : Op::apply(acc, v);
    first = false;
  }
  __EMU_FOR_LANES(l, mask) { *static_cast<T*>(outs[l]) = acc; }
  return MTEMU_OK;
}

template <class T, class Op, bool Inclusive>
int scan(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  T acc = Op::template identity<T>();
  __EMU_FOR_LANES(l, mask) {
    T v = *static_cast<const T*>(ins[l]);
    T next = Op::apply(acc, v);
    *static_cast<T*>(outs[l]) = Inclusive ? next : acc;
    acc = next;
  }
  return MTEMU_OK;
}

template <class T>
struct shuffle_in {
  T v;
  int arg;
};

enum ShuffleKind { kIndex, kUp, kDown, kXor, kRotateUp, kRotateDown, kFirst };

// A lane reading from a lane that is inactive or past the SIMD-group keeps
// its own value (Metal: shuffle_up/down leave the edge lanes unchanged).
template <class T, int Kind>
int shuffle(void* const* ins, void* const* outs, uint32_t mask, uint32_t width) {
  int lowest = __builtin_ctz(mask);
  __EMU_FOR_LANES(l, mask) {
    const shuffle_in<T>* in = static_cast<const shuffle_in<T>*>(ins[l]);
    int w = (int)width;
    int src;
    switch (Kind) {
      case kIndex: src = in->arg; break;
      case kUp: src = l - in->arg; break;
      case kDown: src = l + in->arg; break;
      case kXor: src = l ^ in->arg; break;
      case kRotateUp: src = ((l - in->arg) % w + w) % w; break;
      case kRotateDown: src = (l + in->arg) % w; break;
      default: src = lowest; break;
    }
    bool ok = src >= 0 && src < 32 && ((mask >> src) & 1u);
    *static_cast<T*>(outs[l]) = ok ? static_cast<const shuffle_in<T>*>(ins[src])->v : in->v;
  }
  return MTEMU_OK;
}

enum VoteKind { kAll, kAny, kBallot, kIsFirst, kActive };

template <int Kind>
int vote(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  uint64_t ballot = 0;
  __EMU_FOR_LANES(l, mask) {
    if (Kind == kActive || Kind == kIsFirst || *static_cast<const bool*>(ins[l]))
      ballot |= 1ull << l;
  }
  int lowest = __builtin_ctz(mask);
  __EMU_FOR_LANES(l, mask) {
    if (Kind == kAll) *static_cast<bool*>(outs[l]) = ballot == mask;
    if (Kind == kAny) *static_cast<bool*>(outs[l]) = ballot != 0;
    if (Kind == kIsFirst) *static_cast<bool*>(outs[l]) = l == lowest;
    if (Kind == kBallot || Kind == kActive) *static_cast<uint64_t*>(outs[l]) = ballot;
  }
  return MTEMU_OK;
}

template <class TD, class TA, class TB, class TC>
struct mma_in {
  const metal::vec<TA, 2>* a;
  const metal::vec<TB, 2>* b;
  const metal::vec<TC, 2>* c;  // null for simdgroup_multiply
};

// D = A * B (+ C) over the 32 lanes' fragments, accumulated in float in the
// order k = 0..7 starting from C, rounded once to D's type.
template <class TD, class TA, class TB, class TC>
int mma(void* const* ins, void* const* outs, uint32_t mask, uint32_t) {
  if (mask != 0xffffffffu) return MTEMU_ERR_MATRIX_LANES;
  float a[8][8], b[8][8], c[8][8];
  bool has_c = static_cast<const mma_in<TD, TA, TB, TC>*>(ins[0])->c != nullptr;
  for (int l = 0; l < 32; ++l) {
    const mma_in<TD, TA, TB, TC>* in = static_cast<const mma_in<TD, TA, TB, TC>*>(ins[l]);
    int row, col;
    lane_coord(l, row, col);
    for (int i = 0; i < 2; ++i) {
      a[row][col + i] = (float)(*in->a)[i];
      b[row][col + i] = (float)(*in->b)[i];
      c[row][col + i] = has_c ? (float)(*in->c)[i] : 0.0f;
    }
  }
  for (int l = 0; l < 32; ++l) {
    int row, col;
    lane_coord(l, row, col);
    metal::vec<TD, 2>& out = *static_cast<metal::vec<TD, 2>*>(outs[l]);
    for (int i = 0; i < 2; ++i) {
      float acc = c[row][col + i];
      for (int k = 0; k < 8; ++k) acc += a[row][k] * b[k][col + i];
      out[i] = TD(acc);
    }
  }
  return MTEMU_OK;
}

template <class T>
inline T& threadgroup_var(uint site, const char* name) {
  return *static_cast<T*>(__emu_rt->tg_alloc(site, sizeof(T), alignof(T), name));
}

}  // namespace __emu

namespace metal {

// ---------------------------------------------------------------------------
// Barriers. The call site's line identifies the barrier, so that threads
// waiting at different barriers are reported.
// ---------------------------------------------------------------------------

enum class mem_flags : uint {
  mem_none = 0,
  mem_device = 1,
  mem_threadgroup = 2,
  mem_texture = 4,
  mem_threadgroup_imageblock = 8,
  mem_object_data = 16,
};
constexpr mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(uint(a) | uint(b)); }

inline void threadgroup_barrier(mem_flags, uint __site = __builtin_LINE()) {
  __emu_rt->barrier(__site);
}
inline void simdgroup_barrier(mem_flags, uint __site = __builtin_LINE()) {
  __emu_rt->simd(__site, nullptr, nullptr, nullptr);
}

// ---------------------------------------------------------------------------
// SIMD-group functions (32 lanes).
// ---------------------------------------------------------------------------

#define __EMU_SIMD_REDUCE(NAME, OP)                                  \
  template <class T>                                                 \
  inline T NAME(T x, uint __site = __builtin_LINE()) {               \
    T r;                                                             \
    __emu_rt->simd(__site, &__emu::reduce<T, __emu::OP>, &x, &r);    \
    return r;                                                        \
  }
__EMU_SIMD_REDUCE(simd_sum, op_sum)
__EMU_SIMD_REDUCE(simd_product, op_product)
__EMU_SIMD_REDUCE(simd_min, op_min)
__EMU_SIMD_REDUCE(simd_max, op_max)
__EMU_SIMD_REDUCE(simd_and, op_and)
__EMU_SIMD_REDUCE(simd_or, op_or)
__EMU_SIMD_REDUCE(simd_xor, op_xor)
#undef __EMU_SIMD_REDUCE

#define __EMU_SIMD_SCAN(NAME, OP, INCLUSIVE)                                    \
  template <class T>                                                            \
  inline T NAME(T x, uint __site = __builtin_LINE()) {                          \
    T r;                                                                        \
    __emu_rt->simd(__site, &__emu::scan<T, __emu::OP, INCLUSIVE>, &x, &r);      \
    return r;                                                                   \
  }
__EMU_SIMD_SCAN(simd_prefix_inclusive_sum, op_sum, true)
__EMU_SIMD_SCAN(simd_prefix_exclusive_sum, op_sum, false)
__EMU_SIMD_SCAN(simd_prefix_inclusive_product, op_product, true)
__EMU_SIMD_SCAN(simd_prefix_exclusive_product, op_product, false)
#undef __EMU_SIMD_SCAN

#define __EMU_SIMD_SHUFFLE(NAME, KIND)                                         \
  template <class T>                                                           \
  inline T NAME(T x, ushort arg, uint __site = __builtin_LINE()) {             \
    __emu::shuffle_in<T> in{x, (int)arg};                                      \
    T r;                                                                       \
    __emu_rt->simd(__site, &__emu::shuffle<T, __emu::KIND>, &in, &r);          \
    return r;                                                                  \
  }
__EMU_SIMD_SHUFFLE(simd_shuffle, kIndex)
__EMU_SIMD_SHUFFLE(simd_broadcast, kIndex)
__EMU_SIMD_SHUFFLE(simd_shuffle_up, kUp)
__EMU_SIMD_SHUFFLE(simd_shuffle_down, kDown)
__EMU_SIMD_SHUFFLE(simd_shuffle_xor, kXor)
__EMU_SIMD_SHUFFLE(simd_shuffle_rotate_up, kRotateUp)
__EMU_SIMD_SHUFFLE(simd_shuffle_rotate_down, kRotateDown)
#undef __EMU_SIMD_SHUFFLE

template <class T>
inline T simd_broadcast_first(T x, uint __site = __builtin_LINE()) {
  __emu::shuffle_in<T> in{x, 0};
  T r;
  __emu_rt->simd(__site, &__emu::shuffle<T, __emu::kFirst>, &in, &r);
  return r;
}

struct simd_vote {
  typedef ulong vote_t;
  vote_t __v;
  explicit constexpr operator vote_t() const { return __v; }
  bool all() const { return __v == 0xffffffffull; }
  bool any() const { return __v != 0; }
};

inline bool simd_all(bool c, uint __site = __builtin_LINE()) {
  bool r;
  __emu_rt->simd(__site, &__emu::vote<__emu::kAll>, &c, &r);
  return r;
}
inline bool simd_any(bool c, uint __site = __builtin_LINE()) {
  bool r;
  __emu_rt->simd(__site, &__emu::vote<__emu::kAny>, &c, &r);
  return r;
}
inline simd_vote simd_ballot(bool c, uint __site = __builtin_LINE()) {
  uint64_t r;
  __emu_rt->simd(__site, &__emu::vote<__emu::kBallot>, &c, &r);
  return simd_vote{r};
}
inline bool simd_is_first(uint __site = __builtin_LINE()) {
  bool r;
  __emu_rt->simd(__site, &__emu::vote<__emu::kIsFirst>, nullptr, &r);
  return r;
}
inline simd_vote simd_active_threads_mask(uint __site = __builtin_LINE()) {
  uint64_t r;
  __emu_rt->simd(__site, &__emu::vote<__emu::kActive>, nullptr, &r);
  return simd_vote{r};
}

// ---------------------------------------------------------------------------
// Atomics. Fibers of one OS thread never run at the same time, so plain
// read-modify-write is atomic here.
// ---------------------------------------------------------------------------

enum memory_order {
  memory_order_relaxed,
  memory_order_acquire,
  memory_order_release,
  memory_order_acq_rel,
  memory_order_seq_cst,
};

template <class T>
struct atomic {
  T __v;
};
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<bool> atomic_bool;
typedef atomic<float> atomic_float;
typedef atomic<ulong> atomic_ulong;

template <class T>
using __nd = typename std::common_type<T>::type;  // blocks deduction

template <class T>
inline atomic<T>* __emu_atomic(const volatile atomic<T>* o) {
  return const_cast<atomic<T>*>(o);
}

template <class T>
inline void atomic_store_explicit(volatile atomic<T>* o, __nd<T> v, memory_order) {
  __EMU_ATOMIC_SCOPE
  __emu_atomic(o)->__v = v;
  ++__emu_ts.progress;
}
template <class T>
inline T atomic_load_explicit(const volatile atomic<T>* o, memory_order) {
  __emu::spin();
  __EMU_ATOMIC_SCOPE
  return __emu_atomic(o)->__v;
}
template <class T>
inline T atomic_exchange_explicit(volatile atomic<T>* o, __nd<T> v, memory_order) {
  __EMU_ATOMIC_SCOPE
  T old = __emu_atomic(o)->__v;
  __emu_atomic(o)->__v = v;
  ++__emu_ts.progress;
  return old;
}
template <class T>
inline bool atomic_compare_exchange_weak_explicit(volatile atomic<T>* o, thread T* expected,
                                                  __nd<T> desired, memory_order, memory_order) {
  atomic<T>* p = __emu_atomic(o);
  {
    __EMU_ATOMIC_SCOPE
    if (__builtin_memcmp(&p->__v, expected, sizeof(T)) == 0) {
      p->__v = desired;
      ++__emu_ts.progress;
      return true;
    }
    *expected = p->__v;
  }
  __emu::spin();
  return false;
}
template <class T>
inline bool atomic_compare_exchange_strong_explicit(volatile atomic<T>* o, thread T* expected,
                                                    __nd<T> desired, memory_order s,
                                                    memory_order f) {
  return atomic_compare_exchange_weak_explicit(o, expected, desired, s, f);
}

#define __EMU_ATOMIC_RMW(NAME, EXPR)                                                   \
  template <class T>                                                                   \
  inline T atomic_fetch_##NAME##_explicit(volatile atomic<T>* o, __nd<T> v, memory_order) { \
    __EMU_ATOMIC_SCOPE                                                                 \
    atomic<T>* p = __emu_atomic(o);                                                    \
    T old = p->__v;                                                                    \
    p->__v = EXPR;                                                                     \
    ++__emu_ts.progress;                                                               \
    return old;                                                                        \
  }
__EMU_ATOMIC_RMW(add, T(old + v))
__EMU_ATOMIC_RMW(sub, T(old - v))
__EMU_ATOMIC_RMW(and, T(old & v))
__EMU_ATOMIC_RMW(or, T(old | v))
__EMU_ATOMIC_RMW(xor, T(old ^ v))
__EMU_ATOMIC_RMW(min, min(old, T(v)))
__EMU_ATOMIC_RMW(max, max(old, T(v)))
#undef __EMU_ATOMIC_RMW

// ---------------------------------------------------------------------------
// simdgroup_matrix<T, 8, 8>: each lane holds two elements of a row, laid out
// as MLX's steel BaseMMAFrag assumes (see __emu::lane_coord).
// ---------------------------------------------------------------------------

template <class T, int Cols, int Rows>
struct simdgroup_matrix {
  static_assert(Cols == 8 && Rows == 8, "metal-emu supports 8x8 simdgroup matrices only");
  vec<T, 2> __e;
  simdgroup_matrix() = default;
  explicit simdgroup_matrix(T diagonal) {
    int row, col;
    __emu::lane_coord(__emu_ts.lane, row, col);
    for (int i = 0; i < 2; ++i) __e[i] = row == col + i ? diagonal : T(0);
  }
  thread vec<T, 2>& thread_elements() { return __e; }
  const thread vec<T, 2>& thread_elements() const { return __e; }
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int Cols, int Rows>
inline simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value) {
  simdgroup_matrix<T, Cols, Rows> m;
  m.__e = vec<T, 2>(value);
  return m;
}

// Element (r, c) of the matrix is src[(origin.y + r) * elements_per_row +
// origin.x + c]; with transpose, the block at the same origin is transposed.
template <class T, class U>
inline void simdgroup_load(thread simdgroup_matrix<T, 8, 8>& d, const U* src,
                           ulong elements_per_row = 8, ulong2 matrix_origin = ulong2(0, 0),
                           bool transpose_matrix = false) {
  int row, col;
  __emu::lane_coord(__emu_ts.lane, row, col);
  for (int i = 0; i < 2; ++i) {
    ulong r = transpose_matrix ? ulong(col + i) : ulong(row);
    ulong c = transpose_matrix ? ulong(row) : ulong(col + i);
    d.__e[i] = T(src[(matrix_origin.y + r) * elements_per_row + matrix_origin.x + c]);
  }
}

template <class T, class U>
inline void simdgroup_store(const thread simdgroup_matrix<T, 8, 8>& a, U* dst,
                            ulong elements_per_row = 8, ulong2 matrix_origin = ulong2(0, 0),
                            bool transpose_matrix = false) {
  int row, col;
  __emu::lane_coord(__emu_ts.lane, row, col);
  for (int i = 0; i < 2; ++i) {
    ulong r = transpose_matrix ? ulong(col + i) : ulong(row);
    ulong c = transpose_matrix ? ulong(row) : ulong(col + i);
    dst[(matrix_origin.y + r) * elements_per_row + matrix_origin.x + c] = U(a.__e[i]);
  }
}

template <class TD, class TA, class TB, class TC>
inline void simdgroup_multiply_accumulate(thread simdgroup_matrix<TD, 8, 8>& d,
                                          const thread simdgroup_matrix<TA, 8, 8>& a,
                                          const thread simdgroup_matrix<TB, 8, 8>& b,
                                          const thread simdgroup_matrix<TC, 8, 8>& c,
                                          uint __site = __builtin_LINE()) {
  __emu::mma_in<TD, TA, TB, TC> in{&a.__e, &b.__e, &c.__e};
  vec<TD, 2> r;
  __emu_rt->simd(__site, &__emu::mma<TD, TA, TB, TC>, &in, &r);
  d.__e = r;
}

template <class TD, class TA, class TB>
inline void simdgroup_multiply(thread simdgroup_matrix<TD, 8, 8>& d,
                               const thread simdgroup_matrix<TA, 8, 8>& a,
                               const thread simdgroup_matrix<TB, 8, 8>& b,
                               uint __site = __builtin_LINE()) {
  __emu::mma_in<TD, TA, TB, TD> in{&a.__e, &b.__e, nullptr};
  vec<TD, 2> r;
  __emu_rt->simd(__site, &__emu::mma<TD, TA, TB, TD>, &in, &r);
  d.__e = r;
}

}  // namespace metal

#undef __EMU_FOR_LANES

// The kernel translation unit defines mtemu_entry; the runtime finds it here.
extern "C" void mtemu_entry(void* const* args, const mtemu_attrs* attrs);
extern "C" __attribute__((visibility("default"))) void mtemu_bind(const mtemu_api* api,
                                                                  mtemu_kernel* k) {
  __emu_rt = api;
  k->abi = MTEMU_ABI_VERSION;
  k->entry = &mtemu_entry;
  k->state = &__emu_ts;
}
