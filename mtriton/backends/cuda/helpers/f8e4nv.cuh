// float8e4nv (e4m3fn: bias 7, 3 mantissa bits, no infinities, S.1111.111 is NaN) held as its bits
// in an unsigned char; the same conversions as mtriton/float8.py. From float8: exact, bit by bit.
__device__ inline float mt_f8e4nv_to_float(unsigned char v) {
  unsigned int sign = ((unsigned int)(v) & 0x80u) << 24, e = ((unsigned int)(v) >> 3) & 0xfu, m = (unsigned int)(v) & 0x7u;
  unsigned int bits = ((unsigned int)(v) & 0x7fu) == 0x7fu ? 0x7fc00000u                   // NaN
              : e == 0u ? __float_as_uint((float)(m) * 0.001953125f)       // m * 2**-9
                        : ((e + 120u) << 23) | (m << 20);
  return __uint_as_float(sign | bits);
}
// To float8: round to nearest even (rtz: toward zero); past the largest finite value (448) and
// infinities saturate to it, as cvt.rn.satfinite does.
__device__ inline unsigned char mt_float_to_f8e4nv_mode(float x, bool rtz) {
  unsigned int u = __float_as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu, code;
  if (a > 0x7f800000u) return (unsigned char)(0x7fu);  // NaN
  if (a >= 0x3c800000u) {  // normal: 2**-6 and up (infinity too); the rounding may carry
    unsigned int r = rtz ? a : a + 0x7ffffu + ((a >> 20) & 1u);
    code = (r >> 20) - (120u << 3);
  } else {  // subnormal: a multiple of 2**-9 (8 of them are the smallest normal, code 8)
    float q = __uint_as_float(a) * 512.0f;
    code = (unsigned int)(rtz ? truncf(q) : rintf(q));
  }
  return (unsigned char)(sign | (code > 0x7eu ? 0x7eu : code));
}
__device__ inline unsigned char mt_float_to_f8e4nv(float x) { return mt_float_to_f8e4nv_mode(x, false); }
__device__ inline unsigned char mt_float_to_f8e4nv_rtz(float x) { return mt_float_to_f8e4nv_mode(x, true); }
