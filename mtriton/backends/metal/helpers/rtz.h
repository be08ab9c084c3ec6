// Conversions toward zero (fp_downcast_rounding="rtz"): bfloat16 keeps the top 16 bits of the
// float (a NaN stays one); half takes the nearest value and moves one code toward zero where
// that rounded away from zero (infinity becomes the largest finite value).
inline bfloat16_t mt_rtz_bf16(float x) {
  uint u = as_type<uint>(x);
  uint top = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) : u;
  return bfloat16_t(as_type<float>(top & 0xffff0000u));  // exact
}
inline half mt_rtz_f16(float x) {
  half r = half(x);
  return fabs(float(r)) > fabs(x) ? as_type<half>(ushort(as_type<ushort>(r) - 1)) : r;
}
