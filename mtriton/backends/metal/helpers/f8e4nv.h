// float8e4nv (e4m3fn: bias 7, 3 mantissa bits, no infinities, S.1111.111 is NaN) held as its bits
// in a uchar; the same conversions as mtriton/float8.py. From float8: exact, bit by bit.
inline float mt_f8e4nv_to_float(uchar v) {
  uint sign = (uint(v) & 0x80u) << 24, e = (uint(v) >> 3) & 0xfu, m = uint(v) & 0x7u;
  uint bits = (uint(v) & 0x7fu) == 0x7fu ? 0x7fc00000u                   // NaN
              : e == 0u ? as_type<uint>(float(m) * 0.001953125f)       // m * 2**-9
                        : ((e + 120u) << 23) | (m << 20);
  return as_type<float>(sign | bits);
}
// To float8: round to nearest even (rtz: toward zero); past the largest finite value (448) and
// infinities saturate to it, as cvt.rn.satfinite does.
inline uchar mt_float_to_f8e4nv_mode(float x, bool rtz) {
  uint u = as_type<uint>(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu, code;
  if (a > 0x7f800000u) return uchar(0x7fu);  // NaN
  if (a >= 0x3c800000u) {  // normal: 2**-6 and up (infinity too); the rounding may carry
    uint r = rtz ? a : a + 0x7ffffu + ((a >> 20) & 1u);
    code = (r >> 20) - (120u << 3);
  } else {  // subnormal: a multiple of 2**-9 (8 of them are the smallest normal, code 8)
    float q = as_type<float>(a) * 512.0f;
    code = uint(rtz ? trunc(q) : rint(q));
  }
  return uchar(sign | (code > 0x7eu ? 0x7eu : code));
}
inline uchar mt_float_to_f8e4nv(float x) { return mt_float_to_f8e4nv_mode(x, false); }
inline uchar mt_float_to_f8e4nv_rtz(float x) { return mt_float_to_f8e4nv_mode(x, true); }
