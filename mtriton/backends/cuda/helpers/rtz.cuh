// Conversions toward zero (fp_downcast_rounding="rtz"): bfloat16 keeps the top 16 bits of the
// float (a NaN stays one); half takes the nearest value and moves one code toward zero where
// that rounded away from zero (infinity becomes the largest finite value).
__device__ inline __nv_bfloat16 mt_rtz_bf16(float x) {
  unsigned int u = __float_as_uint(x);
  unsigned int top = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) : u;
  return __float2bfloat16(__uint_as_float(top & 0xffff0000u));  // exact
}
__device__ inline __half mt_rtz_f16(float x) {
  __half r = __float2half_rn(x);
  return fabsf(__half2float(r)) > fabsf(x) ? __ushort_as_half((unsigned short)(__half_as_ushort(r) - 1)) : r;
}
