// metal-emu shim: lets Metal Shading Language kernels, as MLX's
// mx.fast.metal_kernel generates them, compile as C++17 for the CPU.
//
// MLX compiles a custom kernel after its own utils header (bf16 / complex
// types, Limits, elem_to_loc, ...); the part of it that kernel bodies use is
// reproduced at the end of this file.
#pragma once
#include "metal_types.h"
#include "metal_math.h"
#include "metal_simd.h"

using namespace metal;

typedef half float16_t;
typedef bfloat bfloat16_t;

struct complex64_t {
  float real;
  float imag;
  complex64_t() = default;
  constexpr complex64_t(float r, float i = 0.0f) : real(r), imag(i) {}
};
inline complex64_t operator+(complex64_t a, complex64_t b) {
  return {a.real + b.real, a.imag + b.imag};
}
inline complex64_t operator-(complex64_t a, complex64_t b) {
  return {a.real - b.real, a.imag - b.imag};
}
inline complex64_t operator*(complex64_t a, complex64_t b) {
  return {a.real * b.real - a.imag * b.imag, a.real * b.imag + a.imag * b.real};
}
inline bool operator==(complex64_t a, complex64_t b) {
  return a.real == b.real && a.imag == b.imag;
}
inline bool operator!=(complex64_t a, complex64_t b) { return !(a == b); }

inline uint16_t bfloat16_to_uint16(const bfloat16_t x) { return x.bits; }
inline bfloat16_t uint16_to_bfloat16(const uint16_t x) { return bfloat::from_bits(x); }

template <typename U>
struct WorkPerThread {
  static constexpr int n = 8 / sizeof(U);
};

template <typename U>
struct Limits {
  static inline const U max = metal::numeric_limits<U>::max();
  static inline const U min = metal::numeric_limits<U>::min();
  static inline const U finite_max = metal::numeric_limits<U>::max();
  static inline const U finite_min = metal::numeric_limits<U>::min();
};
#define __EMU_FLOAT_LIMITS(T)                                            \
  template <>                                                            \
  struct Limits<T> {                                                     \
    static inline const T max = metal::numeric_limits<T>::infinity();    \
    static inline const T min = -metal::numeric_limits<T>::infinity();   \
    static inline const T finite_max = metal::numeric_limits<T>::max();  \
    static inline const T finite_min = -metal::numeric_limits<T>::max(); \
  };
__EMU_FLOAT_LIMITS(float)
__EMU_FLOAT_LIMITS(half)
__EMU_FLOAT_LIMITS(bfloat)
#undef __EMU_FLOAT_LIMITS

template <typename T, typename U>
inline T ceildiv(T N, U M) {
  return (N + M - 1) / M;
}

template <typename IdxT = int64_t>
inline IdxT elem_to_loc(IdxT elem, constant const int* shape, constant const int64_t* strides,
                        int ndim) {
  IdxT loc = 0;
  for (int i = ndim - 1; i >= 0 && elem > 0; --i) {
    loc += (elem % shape[i]) * IdxT(strides[i]);
    elem /= shape[i];
  }
  return loc;
}

template <typename IdxT = int64_t>
inline IdxT elem_to_loc(uint3 elem, constant const int* shape, constant const int64_t* strides,
                        int ndim) {
  IdxT loc = elem.x * IdxT(strides[ndim - 1]) + elem.y * IdxT(strides[ndim - 2]);
  for (int d = ndim - 3; d >= 0; --d) {
    loc += (elem.z % shape[d]) * IdxT(strides[d]);
    elem.z /= shape[d];
  }
  return loc;
}

inline float log1p(float x) { return __builtin_log1pf(x); }
inline bfloat16_t log1p(bfloat16_t x) { return bfloat16_t(__builtin_log1pf((float)x)); }
