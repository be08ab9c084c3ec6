// float8e5 (e5m2: bias 15, 2 mantissa bits, infinities) held as its bits in a uchar; the same
// conversions as mtriton/float8.py. From float8: exact, bit by bit (fast math cannot touch it).
inline float mt_f8e5_to_float(uchar v) {
  uint sign = (uint(v) & 0x80u) << 24, e = (uint(v) >> 2) & 0x1fu, m = uint(v) & 0x3u;
  uint bits = e == 0x1fu ? (m == 0u ? 0x7f800000u : 0x7fc00000u)       // inf, NaN
              : e == 0u ? as_type<uint>(float(m) * 1.52587890625e-05f)  // m * 2**-16
                        : ((e + 112u) << 23) | (m << 21);
  return as_type<float>(sign | bits);
}
// To float8: round to nearest even (rtz: toward zero); past the largest finite value (57344) and
// infinities saturate to it, as cvt.rn.satfinite does, but an rtz conversion keeps infinities.
inline uchar mt_float_to_f8e5_mode(float x, bool rtz) {
  uint u = as_type<uint>(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu, code;
  if (a > 0x7f800000u) return uchar(0x7fu);  // NaN
  if (a == 0x7f800000u) return uchar(sign | (rtz ? 0x7cu : 0x7bu));
  if (a >= 0x38800000u) {  // normal: 2**-14 and up; the rounding may carry into the exponent
    uint r = rtz ? a : a + 0xfffffu + ((a >> 21) & 1u);
    code = (r >> 21) - (112u << 2);
  } else {  // subnormal: a multiple of 2**-16 (4 of them are the smallest normal, code 4)
    float q = as_type<float>(a) * 65536.0f;
    code = uint(rtz ? trunc(q) : rint(q));
  }
  return uchar(sign | (code > 0x7bu ? 0x7bu : code));
}
inline uchar mt_float_to_f8e5(float x) { return mt_float_to_f8e5_mode(x, false); }
inline uchar mt_float_to_f8e5_rtz(float x) { return mt_float_to_f8e5_mode(x, true); }
