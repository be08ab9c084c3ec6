// expm1: Metal has none. (u - 1) * x / log(u) with u = exp(x) (Kahan), exact near 0.
inline float mt_expm1(float x) {
  float u = exp(x);
  if (u == 1.0f) return x;
  float um1 = u - 1.0f;
  return um1 == -1.0f ? -1.0f : um1 * x / log(u);
}
