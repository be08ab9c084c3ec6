// float8e5 (e5m2: bias 15, 2 mantissa bits, infinities) held as its bits in an unsigned char; the same
// conversions as mtriton/float8.py. From float8: exact, bit by bit.
__device__ inline float mt_f8e5_to_float(unsigned char v) {
  unsigned int sign = ((unsigned int)(v) & 0x80u) << 24, e = ((unsigned int)(v) >> 2) & 0x1fu, m = (unsigned int)(v) & 0x3u;
  unsigned int bits = e == 0x1fu ? (m == 0u ? 0x7f800000u : 0x7fc00000u)       // inf, NaN
              : e == 0u ? __float_as_uint((float)(m) * 1.52587890625e-05f)  // m * 2**-16
                        : ((e + 112u) << 23) | (m << 21);
  return __uint_as_float(sign | bits);
}
// To float8: round to nearest even (rtz: toward zero); past the largest finite value (57344) and
// infinities saturate to it, as cvt.rn.satfinite does, but an rtz conversion keeps infinities.
__device__ inline unsigned char mt_float_to_f8e5_mode(float x, bool rtz) {
  unsigned int u = __float_as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu, code;
  if (a > 0x7f800000u) return (unsigned char)(0x7fu);  // NaN
  if (a == 0x7f800000u) return (unsigned char)(sign | (rtz ? 0x7cu : 0x7bu));
  if (a >= 0x38800000u) {  // normal: 2**-14 and up; the rounding may carry into the exponent
    unsigned int r = rtz ? a : a + 0xfffffu + ((a >> 21) & 1u);
    code = (r >> 21) - (112u << 2);
  } else {  // subnormal: a multiple of 2**-16 (4 of them are the smallest normal, code 4)
    float q = __uint_as_float(a) * 65536.0f;
    code = (unsigned int)(rtz ? truncf(q) : rintf(q));
  }
  return (unsigned char)(sign | (code > 0x7bu ? 0x7bu : code));
}
__device__ inline unsigned char mt_float_to_f8e5(float x) { return mt_float_to_f8e5_mode(x, false); }
__device__ inline unsigned char mt_float_to_f8e5_rtz(float x) { return mt_float_to_f8e5_mode(x, true); }
