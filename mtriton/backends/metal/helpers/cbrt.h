// cbrt: Metal has none. pow on |x| with the sign put back, then one Newton step.
inline float mt_cbrt(float x) {
  if (x == 0.0f || isinf(x) || isnan(x)) return x;
  float y = copysign(pow(fabs(x), 1.0f / 3.0f), x);
  return y - (y * y * y - x) / (3.0f * y * y);
}
