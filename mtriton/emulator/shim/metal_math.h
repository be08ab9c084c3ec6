// metal-emu shim: the metal:: math library.
//
// Each function has the overloads Metal has (float, half, bfloat and their
// vectors), so that a call Metal finds ambiguous is ambiguous here too.
// half and bfloat results are computed in float and rounded once. Results
// come from the C library (correctly rounded or close to it), which is at
// least as accurate as Metal's documented ULP bounds: code that needs more
// than Metal promises passes here and may fail on a GPU.
#pragma once
#include "metal_types.h"

namespace metal {

#define __EMU_VEC_MAP1(NAME)                       \
  template <class T, int N>                        \
  inline vec<T, N> NAME(const vec<T, N>& a) {      \
    vec<T, N> r;                                   \
    for (int i = 0; i < N; ++i) r[i] = NAME(a[i]); \
    return r;                                      \
  }

// Unary float function; EXPR computes the result from `float v`.
#define __EMU_F1(NAME, EXPR)                                       \
  inline float NAME(float v) { return EXPR; }                      \
  inline half NAME(half x) {                                       \
    float v = x;                                                   \
    return half(EXPR);                                             \
  }                                                                \
  inline bfloat NAME(bfloat x) {                                   \
    float v = x;                                                   \
    return bfloat(EXPR);                                           \
  }                                                                \
  __EMU_VEC_MAP1(NAME)

__EMU_F1(exp, __builtin_expf(v))
__EMU_F1(exp2, __builtin_exp2f(v))
__EMU_F1(exp10, __builtin_powf(10.0f, v))
__EMU_F1(log, __builtin_logf(v))
__EMU_F1(log2, __builtin_log2f(v))
__EMU_F1(log10, __builtin_log10f(v))
__EMU_F1(sqrt, __builtin_sqrtf(v))
__EMU_F1(rsqrt, 1.0f / __builtin_sqrtf(v))
__EMU_F1(sin, __builtin_sinf(v))
__EMU_F1(cos, __builtin_cosf(v))
__EMU_F1(tan, __builtin_tanf(v))
__EMU_F1(sinpi, __builtin_sinf(v * M_PI_F))
__EMU_F1(cospi, __builtin_cosf(v * M_PI_F))
__EMU_F1(tanpi, __builtin_tanf(v * M_PI_F))
__EMU_F1(asin, __builtin_asinf(v))
__EMU_F1(acos, __builtin_acosf(v))
__EMU_F1(atan, __builtin_atanf(v))
__EMU_F1(sinh, __builtin_sinhf(v))
__EMU_F1(cosh, __builtin_coshf(v))
__EMU_F1(tanh, __builtin_tanhf(v))
__EMU_F1(asinh, __builtin_asinhf(v))
__EMU_F1(acosh, __builtin_acoshf(v))
__EMU_F1(atanh, __builtin_atanhf(v))
__EMU_F1(floor, __builtin_floorf(v))
__EMU_F1(ceil, __builtin_ceilf(v))
__EMU_F1(round, __builtin_roundf(v))
__EMU_F1(rint, __builtin_rintf(v))
__EMU_F1(trunc, __builtin_truncf(v))
__EMU_F1(fabs, __builtin_fabsf(v))
__EMU_F1(fract, __builtin_fminf(v - __builtin_floorf(v), 0x1.fffffep-1f))
__EMU_F1(saturate, __builtin_fminf(__builtin_fmaxf(v, 0.0f), 1.0f))
__EMU_F1(sign, v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : (v == v ? v : 0.0f)))
#undef __EMU_F1

// Binary float function; EXPR computes the result from `float u, v`.
#define __EMU_F2(NAME, EXPR)                                                   \
  inline float NAME(float u, float v) { return EXPR; }                         \
  inline half NAME(half a, half b) {                                           \
    float u = a, v = b;                                                        \
    return half(EXPR);                                                         \
  }                                                                            \
  inline bfloat NAME(bfloat a, bfloat b) {                                     \
    float u = a, v = b;                                                        \
    return bfloat(EXPR);                                                       \
  }                                                                            \
  template <class T, int N>                                                    \
  inline vec<T, N> NAME(const vec<T, N>& a, const vec<T, N>& b) {              \
    vec<T, N> r;                                                               \
    for (int i = 0; i < N; ++i) r[i] = NAME(a[i], b[i]);                       \
    return r;                                                                  \
  }                                                                            \
  template <class T, int N, class U,                                           \
            typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0> \
  inline vec<T, N> NAME(const vec<T, N>& a, U b) {                             \
    vec<T, N> r;                                                               \
    for (int i = 0; i < N; ++i) r[i] = NAME(a[i], T(b));                       \
    return r;                                                                  \
  }

__EMU_F2(pow, __builtin_powf(u, v))
__EMU_F2(powr, __builtin_powf(u, v))
__EMU_F2(atan2, __builtin_atan2f(u, v))
__EMU_F2(fmod, __builtin_fmodf(u, v))
__EMU_F2(fmin, __builtin_fminf(u, v))
__EMU_F2(fmax, __builtin_fmaxf(u, v))
__EMU_F2(fdim, __builtin_fdimf(u, v))
__EMU_F2(copysign, __builtin_copysignf(u, v))
__EMU_F2(step, v < u ? 0.0f : 1.0f)
__EMU_F2(divide, u / v)
#undef __EMU_F2

// Ternary float functions.
#define __EMU_F3(NAME, EXPR)                                                 \
  inline float NAME(float u, float v, float w) { return EXPR; }              \
  inline half NAME(half a, half b, half c) {                                 \
    float u = a, v = b, w = c;                                               \
    return half(EXPR);                                                       \
  }                                                                          \
  inline bfloat NAME(bfloat a, bfloat b, bfloat c) {                         \
    float u = a, v = b, w = c;                                               \
    return bfloat(EXPR);                                                     \
  }                                                                          \
  template <class T, int N>                                                  \
  inline vec<T, N> NAME(const vec<T, N>& a, const vec<T, N>& b,              \
                        const vec<T, N>& c) {                                \
    vec<T, N> r;                                                             \
    for (int i = 0; i < N; ++i) r[i] = NAME(a[i], b[i], c[i]);               \
    return r;                                                                \
  }

__EMU_F3(fma, __builtin_fmaf(u, v, w))
__EMU_F3(mix, u + (v - u) * w)
__EMU_F3(smoothstep, ([](float t) { return t * t * (3.0f - 2.0f * t); })(
                         __builtin_fminf(__builtin_fmaxf((w - u) / (v - u), 0.0f), 1.0f)))
#undef __EMU_F3

template <class T, int N, class U,
          typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0>
inline vec<T, N> mix(const vec<T, N>& a, const vec<T, N>& b, U t) {
  return mix(a, b, vec<T, N>(T(t)));
}

inline float ldexp(float x, int e) { return __builtin_ldexpf(x, e); }
inline half ldexp(half x, int e) { return half(__builtin_ldexpf((float)x, e)); }
inline float sincos(float x, thread float& c) {
  c = __builtin_cosf(x);
  return __builtin_sinf(x);
}

// min / max / clamp / abs: floats follow fmin/fmax (a NaN operand yields the
// other operand); integers compare.
#define __EMU_MINMAX_INT(T)                                                 \
  inline T min(T a, T b) { return b < a ? b : a; }                          \
  inline T max(T a, T b) { return a < b ? b : a; }                          \
  inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
__EMU_MINMAX_INT(char)
__EMU_MINMAX_INT(uchar)
__EMU_MINMAX_INT(short)
__EMU_MINMAX_INT(ushort)
__EMU_MINMAX_INT(int)
__EMU_MINMAX_INT(uint)
__EMU_MINMAX_INT(long)
__EMU_MINMAX_INT(ulong)
// int64_t is long long on macOS, long on Linux: both need overloads.
__EMU_MINMAX_INT(__emu::llong)
__EMU_MINMAX_INT(__emu::ullong)
#undef __EMU_MINMAX_INT
#define __EMU_ABS_INT(T) \
  inline T abs(T a) { return a < 0 ? T(-a) : a; }
__EMU_ABS_INT(char)
__EMU_ABS_INT(short)
__EMU_ABS_INT(int)
__EMU_ABS_INT(long)
__EMU_ABS_INT(__emu::llong)
#undef __EMU_ABS_INT
inline uchar abs(uchar a) { return a; }
inline ushort abs(ushort a) { return a; }
inline uint abs(uint a) { return a; }
inline ulong abs(ulong a) { return a; }
inline __emu::ullong abs(__emu::ullong a) { return a; }

#define __EMU_MINMAX_FLOAT(T)                                                 \
  inline T min(T a, T b) { return T(__builtin_fminf((float)a, (float)b)); }   \
  inline T max(T a, T b) { return T(__builtin_fmaxf((float)a, (float)b)); }   \
  inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }             \
  inline T abs(T a) { return T(__builtin_fabsf((float)a)); }
__EMU_MINMAX_FLOAT(float)
__EMU_MINMAX_FLOAT(half)
__EMU_MINMAX_FLOAT(bfloat)
#undef __EMU_MINMAX_FLOAT

__EMU_VEC_MAP1(abs)
#undef __EMU_VEC_MAP1

template <class T, int N>
inline vec<T, N> min(const vec<T, N>& a, const vec<T, N>& b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = min(a[i], b[i]);
  return r;
}
template <class T, int N>
inline vec<T, N> max(const vec<T, N>& a, const vec<T, N>& b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = max(a[i], b[i]);
  return r;
}
template <class T, int N, class U,
          typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0>
inline vec<T, N> min(const vec<T, N>& a, U b) {
  return min(a, vec<T, N>(T(b)));
}
template <class T, int N, class U,
          typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0>
inline vec<T, N> max(const vec<T, N>& a, U b) {
  return max(a, vec<T, N>(T(b)));
}
template <class T, int N>
inline vec<T, N> clamp(const vec<T, N>& x, const vec<T, N>& lo, const vec<T, N>& hi) {
  return min(max(x, lo), hi);
}
template <class T, int N, class U,
          typename std::enable_if<__emu::is_scalar<U>::value, int>::type = 0>
inline vec<T, N> clamp(const vec<T, N>& x, U lo, U hi) {
  return min(max(x, vec<T, N>(T(lo))), vec<T, N>(T(hi)));
}

// select(a, b, c): b where c holds, else a.
template <class T, typename std::enable_if<__emu::is_scalar<T>::value, int>::type = 0>
inline T select(T a, T b, bool c) {
  return c ? b : a;
}
template <class T, int N>
inline vec<T, N> select(const vec<T, N>& a, const vec<T, N>& b, const vec<bool, N>& c) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = c[i] ? b[i] : a[i];
  return r;
}
template <class T, int N>
inline vec<T, N> select(const vec<T, N>& a, const vec<T, N>& b, bool c) {
  return c ? b : a;
}

// Classification.
#define __EMU_CLASSIFY(NAME, EXPR)                           \
  inline bool NAME(float v) { return EXPR; }                 \
  inline bool NAME(half x) {                                 \
    float v = x;                                             \
    return EXPR;                                             \
  }                                                          \
  inline bool NAME(bfloat x) {                               \
    float v = x;                                             \
    return EXPR;                                             \
  }                                                          \
  template <class T, int N>                                  \
  inline vec<bool, N> NAME(const vec<T, N>& a) {             \
    vec<bool, N> r;                                          \
    for (int i = 0; i < N; ++i) r[i] = NAME(a[i]);           \
    return r;                                                \
  }
__EMU_CLASSIFY(isnan, v != v)
__EMU_CLASSIFY(isinf, __builtin_isinf(v))
__EMU_CLASSIFY(isfinite, __builtin_isfinite(v))
__EMU_CLASSIFY(isnormal, __builtin_isnormal(v))
__EMU_CLASSIFY(signbit, __builtin_signbit(v))
#undef __EMU_CLASSIFY

inline bool all(bool b) { return b; }
inline bool any(bool b) { return b; }
template <int N>
inline bool all(const vec<bool, N>& v) {
  for (int i = 0; i < N; ++i)
    if (!v[i]) return false;
  return true;
}
template <int N>
inline bool any(const vec<bool, N>& v) {
  for (int i = 0; i < N; ++i)
    if (v[i]) return true;
  return false;
}

// Geometric functions.
template <class T, int N>
inline T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T s = a[0] * b[0];
  for (int i = 1; i < N; ++i) s += a[i] * b[i];
  return s;
}
template <class T, int N>
inline T length(const vec<T, N>& a) {
  return sqrt(dot(a, a));
}
template <class T, int N>
inline T distance(const vec<T, N>& a, const vec<T, N>& b) {
  return length(a - b);
}
template <class T, int N>
inline vec<T, N> normalize(const vec<T, N>& a) {
  return a * rsqrt(dot(a, a));
}
template <class T>
inline vec<T, 3> cross(const vec<T, 3>& a, const vec<T, 3>& b) {
  return vec<T, 3>(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}

// Integer functions.
inline uint popcount(uint x) { return (uint)__builtin_popcount(x); }
inline int popcount(int x) { return __builtin_popcount((uint)x); }
inline ulong popcount(ulong x) { return (ulong)__builtin_popcountl(x); }
inline uint clz(uint x) { return x ? (uint)__builtin_clz(x) : 32u; }
inline int clz(int x) { return x ? __builtin_clz((uint)x) : 32; }
inline uint ctz(uint x) { return x ? (uint)__builtin_ctz(x) : 32u; }
inline int ctz(int x) { return x ? __builtin_ctz((uint)x) : 32; }
inline uint mulhi(uint a, uint b) { return (uint)(((ulong)a * b) >> 32); }
inline int mulhi(int a, int b) { return (int)(((long)a * b) >> 32); }
inline uint absdiff(int a, int b) { return a > b ? (uint)a - (uint)b : (uint)b - (uint)a; }
inline uint absdiff(uint a, uint b) { return a > b ? a - b : b - a; }
inline uint rotate(uint v, uint n) {
  n &= 31u;
  return n ? (v << n) | (v >> (32u - n)) : v;
}

// Metal keeps fast:: and precise:: variants of the math functions; here
// both are the functions above.
#define __EMU_MATH_NAMES(X)                                                  \
  X(exp) X(exp2) X(exp10) X(log) X(log2) X(log10) X(sqrt) X(rsqrt) X(sin)    \
  X(cos) X(tan) X(sinpi) X(cospi) X(tanpi) X(asin) X(acos) X(atan) X(sinh)   \
  X(cosh) X(tanh) X(asinh) X(acosh) X(atanh) X(floor) X(ceil) X(round)       \
  X(rint) X(trunc) X(fabs) X(fract) X(saturate) X(sign) X(pow) X(powr)       \
  X(atan2) X(fmod) X(fmin) X(fmax) X(fdim) X(copysign) X(step) X(divide)     \
  X(fma) X(mix) X(smoothstep) X(min) X(max) X(clamp) X(abs) X(ldexp)        \
  X(sincos) X(isnan) X(isinf) X(isfinite) X(signbit) X(dot) X(length)        \
  X(distance) X(normalize) X(cross)
#define __EMU_USING(NAME) using metal::NAME;
namespace fast {
__EMU_MATH_NAMES(__EMU_USING)
}
namespace precise {
__EMU_MATH_NAMES(__EMU_USING)
}
#undef __EMU_USING
#undef __EMU_MATH_NAMES

}  // namespace metal
