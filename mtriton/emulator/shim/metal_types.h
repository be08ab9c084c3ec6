// metal-emu shim: Metal's scalar and vector types in C++17.
//
// Only the C headers the shim needs are included, so that names such as
// `abs`, `exp` or `select` resolve to the Metal overloads below and not to
// the C library's.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <type_traits>

// Address spaces are meaningless on the CPU. `threadgroup` storage
// declarations are rewritten before compilation; what remains are pointer
// qualifiers.
#define device
#define constant
#define thread
#define threadgroup
#define ray_data
#define object_data
#define METAL_FUNC inline __attribute__((always_inline))
#define MTL_CONST

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef _Float16 half;

// bfloat: 16-bit storage; arithmetic in float, rounded to nearest even.
struct bfloat {
  uint16_t bits;
  bfloat() = default;
  static constexpr bfloat from_bits(uint16_t b) {
    bfloat r{};
    r.bits = b;
    return r;
  }
  static uint16_t round(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
  }
  bfloat(float f) : bits(round(f)) {}
  bfloat(double f) : bits(round((float)f)) {}
  bfloat(half f) : bits(round((float)f)) {}
  bfloat(int f) : bits(round((float)f)) {}
  bfloat(uint f) : bits(round((float)f)) {}
  bfloat(long f) : bits(round((float)f)) {}
  bfloat(ulong f) : bits(round((float)f)) {}
  bfloat(long long f) : bits(round((float)f)) {}
  bfloat(unsigned long long f) : bits(round((float)f)) {}
  bfloat(short f) : bits(round((float)f)) {}
  bfloat(ushort f) : bits(round((float)f)) {}
  bfloat(bool f) : bits(round((float)f)) {}
  operator float() const {
    uint32_t u = (uint32_t)bits << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};

namespace __emu {
// Single-token names, for macros that build T(x) casts.
typedef long long llong;
typedef unsigned long long ullong;

template <class T>
struct is_scalar : std::integral_constant<bool, std::is_arithmetic<T>::value> {};
template <>
struct is_scalar<half> : std::true_type {};
template <>
struct is_scalar<bfloat> : std::true_type {};
template <class T>
struct is_float
    : std::integral_constant<bool, std::is_floating_point<T>::value> {};
template <>
struct is_float<half> : std::true_type {};
template <>
struct is_float<bfloat> : std::true_type {};

// Result type of a binary operator with a bfloat operand: bfloat with
// integers, the wider floating type otherwise.
template <class U>
using bf_result =
    typename std::conditional<std::is_integral<U>::value || std::is_same<U, bfloat>::value,
                              bfloat, float>::type;
template <class U>
using if_bf_peer = typename std::enable_if<
    std::is_arithmetic<U>::value || std::is_same<U, half>::value || std::is_same<U, bfloat>::value,
    int>::type;
}  // namespace __emu

#define __EMU_BF_BINOP(OP)                                                 \
  template <class U, __emu::if_bf_peer<U> = 0>                             \
  inline __emu::bf_result<U> operator OP(bfloat a, U b) {                   \
    return __emu::bf_result<U>((float)a OP(float) b);                       \
  }                                                                        \
  template <class U, __emu::if_bf_peer<U> = 0,                             \
            typename std::enable_if<!std::is_same<U, bfloat>::value, int>::type = 0> \
  inline __emu::bf_result<U> operator OP(U a, bfloat b) {                   \
    return __emu::bf_result<U>((float)a OP(float) b);                       \
  }
__EMU_BF_BINOP(+)
__EMU_BF_BINOP(-)
__EMU_BF_BINOP(*)
__EMU_BF_BINOP(/)
#undef __EMU_BF_BINOP

#define __EMU_BF_CMP(OP)                                                   \
  template <class U, __emu::if_bf_peer<U> = 0>                             \
  inline bool operator OP(bfloat a, U b) { return (float)a OP(float) b; }  \
  template <class U, __emu::if_bf_peer<U> = 0,                             \
            typename std::enable_if<!std::is_same<U, bfloat>::value, int>::type = 0> \
  inline bool operator OP(U a, bfloat b) { return (float)a OP(float) b; }
__EMU_BF_CMP(==)
__EMU_BF_CMP(!=)
__EMU_BF_CMP(<)
__EMU_BF_CMP(<=)
__EMU_BF_CMP(>)
__EMU_BF_CMP(>=)
#undef __EMU_BF_CMP

inline bfloat operator-(bfloat a) { return bfloat::from_bits(a.bits ^ 0x8000u); }
inline bfloat operator+(bfloat a) { return a; }
#define __EMU_BF_ASSIGN(OP)                                  \
  template <class U, __emu::if_bf_peer<U> = 0>               \
  inline bfloat& operator OP##=(bfloat& a, U b) {            \
    a = bfloat((float)a OP(float) b);                        \
    return a;                                                \
  }
__EMU_BF_ASSIGN(+)
__EMU_BF_ASSIGN(-)
__EMU_BF_ASSIGN(*)
__EMU_BF_ASSIGN(/)
#undef __EMU_BF_ASSIGN

namespace metal {

// ---------------------------------------------------------------------------
// vec<T, N>: .xyzw / .rgba members, elementwise operators.
// Alignment is the scalar's (Metal aligns to the vector size) so that vector
// accesses work at any element-aligned address of a guarded buffer; the size
// matches Metal's (a 3-vector occupies four elements).
// ---------------------------------------------------------------------------

template <class T, int N>
struct vec;

#define __EMU_VEC_COMMON(N)                                                   \
  vec() = default;                                                            \
  vec(T s) {                                                                  \
    for (int i = 0; i < N; ++i) __e[i] = s;                                   \
  }                                                                           \
  template <class U, typename std::enable_if<__emu::is_scalar<U>::value &&    \
                                                 !std::is_same<U, T>::value,  \
                                             int>::type = 0>                  \
  vec(U s) {                                                                  \
    for (int i = 0; i < N; ++i) __e[i] = T(s);                                \
  }                                                                           \
  template <class U>                                                          \
  explicit vec(const vec<U, N>& o) {                                          \
    for (int i = 0; i < N; ++i) __e[i] = T(o[i]);                             \
  }                                                                           \
  template <class A, class B, class... R>                                     \
  vec(const A& a, const B& b, const R&... r) {                                \
    int i = 0;                                                                \
    __put(i, a);                                                              \
    __put(i, b);                                                              \
    (__put(i, r), ...);                                                       \
  }                                                                           \
  T& operator[](int i) { return __e[i]; }                                     \
  const T& operator[](int i) const { return __e[i]; }                         \
  template <int... I>                                                         \
  vec<T, sizeof...(I)> __swz() const {                                        \
    return vec<T, sizeof...(I)>(__e[I]...);                                   \
  }                                                                           \
                                                                              \
 private:                                                                     \
  template <class U, int M>                                                   \
  void __put(int& i, const vec<U, M>& v) {                                    \
    for (int j = 0; j < M; ++j) __e[i++] = T(v[j]);                           \
  }                                                                           \
  template <class U, typename std::enable_if<__emu::is_scalar<U>::value,      \
                                             int>::type = 0>                  \
  void __put(int& i, const U& s) {                                            \
    __e[i++] = T(s);                                                          \
  }                                                                           \
                                                                              \
 public:

template <class T>
struct vec<T, 2> {
  union {
    struct {
      T x, y;
    };
    struct {
      T r, g;
    };
    T __e[2];
  };
  __EMU_VEC_COMMON(2)
};

template <class T>
struct vec<T, 3> {
  union {
    struct {
      T x, y, z;
    };
    struct {
      T r, g, b;
    };
    T __e[4];
  };
  __EMU_VEC_COMMON(3)
};

template <class T>
struct vec<T, 4> {
  union {
    struct {
      T x, y, z, w;
    };
    struct {
      T r, g, b, a;
    };
    T __e[4];
  };
  __EMU_VEC_COMMON(4)
};
#undef __EMU_VEC_COMMON

template <class T>
struct is_vec : std::false_type {};
template <class T, int N>
struct is_vec<vec<T, N>> : std::true_type {};

#define __EMU_VEC_BINOP(OP, R)                                                 \
  template <class T, int N>                                                    \
  inline vec<R, N> operator OP(const vec<T, N>& a, const vec<T, N>& b) {       \
    vec<R, N> r;                                                               \
    for (int i = 0; i < N; ++i) r[i] = a[i] OP b[i];                           \
    return r;                                                                  \
  }                                                                            \
  template <class T, int N, class U,                                           \
            typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0> \
  inline vec<R, N> operator OP(const vec<T, N>& a, const U& s) {               \
    vec<R, N> r;                                                               \
    T b = T(s);                                                                \
    for (int i = 0; i < N; ++i) r[i] = a[i] OP b;                              \
    return r;                                                                  \
  }                                                                            \
  template <class T, int N, class U,                                           \
            typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0> \
  inline vec<R, N> operator OP(const U& s, const vec<T, N>& b) {               \
    vec<R, N> r;                                                               \
    T a = T(s);                                                                \
    for (int i = 0; i < N; ++i) r[i] = a OP b[i];                              \
    return r;                                                                  \
  }
__EMU_VEC_BINOP(+, T)
__EMU_VEC_BINOP(-, T)
__EMU_VEC_BINOP(*, T)
__EMU_VEC_BINOP(/, T)
__EMU_VEC_BINOP(%, T)
__EMU_VEC_BINOP(&, T)
__EMU_VEC_BINOP(|, T)
__EMU_VEC_BINOP(^, T)
__EMU_VEC_BINOP(<<, T)
__EMU_VEC_BINOP(>>, T)
__EMU_VEC_BINOP(&&, bool)
__EMU_VEC_BINOP(||, bool)
__EMU_VEC_BINOP(==, bool)
__EMU_VEC_BINOP(!=, bool)
__EMU_VEC_BINOP(<, bool)
__EMU_VEC_BINOP(<=, bool)
__EMU_VEC_BINOP(>, bool)
__EMU_VEC_BINOP(>=, bool)
#undef __EMU_VEC_BINOP

#define __EMU_VEC_ASSIGN(OP)                                                   \
  template <class T, int N>                                                    \
  inline vec<T, N>& operator OP##=(vec<T, N>& a, const vec<T, N>& b) {         \
    for (int i = 0; i < N; ++i) a[i] = a[i] OP b[i];                           \
    return a;                                                                  \
  }                                                                            \
  template <class T, int N, class U,                                           \
            typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0> \
  inline vec<T, N>& operator OP##=(vec<T, N>& a, const U& s) {                 \
    T b = T(s);                                                                \
    for (int i = 0; i < N; ++i) a[i] = a[i] OP b;                              \
    return a;                                                                  \
  }
__EMU_VEC_ASSIGN(+)
__EMU_VEC_ASSIGN(-)
__EMU_VEC_ASSIGN(*)
__EMU_VEC_ASSIGN(/)
__EMU_VEC_ASSIGN(%)
__EMU_VEC_ASSIGN(&)
__EMU_VEC_ASSIGN(|)
__EMU_VEC_ASSIGN(^)
__EMU_VEC_ASSIGN(<<)
__EMU_VEC_ASSIGN(>>)
#undef __EMU_VEC_ASSIGN

template <class T, int N>
inline vec<T, N> operator-(const vec<T, N>& a) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = -a[i];
  return r;
}
template <class T, int N>
inline vec<T, N> operator+(const vec<T, N>& a) {
  return a;
}
template <class T, int N>
inline vec<T, N> operator~(const vec<T, N>& a) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = ~a[i];
  return r;
}
template <class T, int N>
inline vec<bool, N> operator!(const vec<T, N>& a) {
  vec<bool, N> r;
  for (int i = 0; i < N; ++i) r[i] = !a[i];
  return r;
}

// packed_T2/packed_T4 have the element's alignment on Metal, as every vec has here.
#define __EMU_VEC_TYPES(T, NAME)    \
  typedef vec<T, 2> NAME##2;        \
  typedef vec<T, 3> NAME##3;        \
  typedef vec<T, 4> NAME##4;        \
  typedef vec<T, 2> packed_##NAME##2; \
  typedef vec<T, 4> packed_##NAME##4;
__EMU_VEC_TYPES(bool, bool)
__EMU_VEC_TYPES(char, char)
__EMU_VEC_TYPES(uchar, uchar)
__EMU_VEC_TYPES(short, short)
__EMU_VEC_TYPES(ushort, ushort)
__EMU_VEC_TYPES(int, int)
__EMU_VEC_TYPES(uint, uint)
__EMU_VEC_TYPES(long, long)
__EMU_VEC_TYPES(ulong, ulong)
__EMU_VEC_TYPES(half, half)
__EMU_VEC_TYPES(float, float)
__EMU_VEC_TYPES(bfloat, bfloat)
#undef __EMU_VEC_TYPES

// ---------------------------------------------------------------------------
// as_type, numeric_limits, type traits
// ---------------------------------------------------------------------------

template <class T, class U>
inline T as_type(const U& u) {
  static_assert(sizeof(T) == sizeof(U), "as_type: sizes differ");
  T t;
  __builtin_memcpy(&t, &u, sizeof(T));
  return t;
}

template <class T>
struct numeric_limits {
  static constexpr bool is_specialized = std::is_integral<T>::value;
  static constexpr bool is_signed = std::is_signed<T>::value;
  static constexpr T max() {
    return is_signed ? T(~0ull >> (65 - sizeof(T) * 8)) : T(~0ull);
  }
  static constexpr T min() { return is_signed ? T(-max() - 1) : T(0); }
  static constexpr T lowest() { return min(); }
};
template <>
struct numeric_limits<bool> {
  static constexpr bool min() { return false; }
  static constexpr bool lowest() { return false; }
  static constexpr bool max() { return true; }
};
template <>
struct numeric_limits<float> {
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr float min() { return __FLT_MIN__; }
  static constexpr float max() { return __FLT_MAX__; }
  static constexpr float lowest() { return -__FLT_MAX__; }
  static constexpr float epsilon() { return __FLT_EPSILON__; }
  static constexpr float infinity() { return __builtin_inff(); }
  static constexpr float quiet_NaN() { return __builtin_nanf(""); }
  static constexpr float denorm_min() { return __FLT_DENORM_MIN__; }
};
template <>
struct numeric_limits<half> {
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr half min() { return half(6.103515625e-05f); }
  static constexpr half max() { return half(65504.0f); }
  static constexpr half lowest() { return half(-65504.0f); }
  static constexpr half epsilon() { return half(0.0009765625f); }
  static constexpr half infinity() { return half(__builtin_inff()); }
  static constexpr half quiet_NaN() { return half(__builtin_nanf("")); }
  static constexpr half denorm_min() { return half(5.9604644775390625e-08f); }
};
template <>
struct numeric_limits<bfloat> {
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static bfloat min() { return bfloat::from_bits(0x0080); }
  static bfloat max() { return bfloat::from_bits(0x7f7f); }
  static bfloat lowest() { return bfloat::from_bits(0xff7f); }
  static bfloat epsilon() { return bfloat::from_bits(0x3c00); }
  static bfloat infinity() { return bfloat::from_bits(0x7f80); }
  static bfloat quiet_NaN() { return bfloat::from_bits(0x7fc0); }
  static bfloat denorm_min() { return bfloat::from_bits(0x0001); }
};

using std::conditional;
using std::conditional_t;
using std::enable_if;
using std::enable_if_t;
using std::is_integral;
using std::is_integral_v;
using std::is_same;
using std::is_same_v;
using std::is_signed;
using std::is_signed_v;
using std::is_unsigned;
using std::is_unsigned_v;
using std::make_signed;
using std::make_signed_t;
using std::make_unsigned;
using std::make_unsigned_t;
using std::remove_cv;
using std::remove_cv_t;
template <class T>
struct is_floating_point : __emu::is_float<T> {};
template <class T>
constexpr bool is_floating_point_v = is_floating_point<T>::value;
template <class T>
struct is_arithmetic : __emu::is_scalar<T> {};
template <class T>
constexpr bool is_arithmetic_v = is_arithmetic<T>::value;

}  // namespace metal

// Metal's program-wide constants.
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define MAXFLOAT __FLT_MAX__
#define HUGE_VALF __builtin_inff()
#define FLT_MAX __FLT_MAX__
#define FLT_MIN __FLT_MIN__
#define FLT_EPSILON __FLT_EPSILON__
#define HALF_MAX ((half)65504.0f)
#define HALF_MIN ((half)6.103515625e-05f)
#define HALF_EPSILON ((half)0.0009765625f)
#define M_E_F 2.71828182845904523536f
#define M_LOG2E_F 1.44269504088896340736f
#define M_LOG10E_F 0.434294481903251827651f
#define M_LN2_F 0.693147180559945309417f
#define M_LN10_F 2.30258509299404568402f
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_PI_4_F 0.785398163397448309616f
#define M_1_PI_F 0.318309886183790671538f
#define M_2_PI_F 0.636619772367581343076f
#define M_2_SQRTPI_F 1.12837916709551257390f
#define M_SQRT2_F 1.41421356237309504880f
#define M_SQRT1_2_F 0.707106781186547524401f
