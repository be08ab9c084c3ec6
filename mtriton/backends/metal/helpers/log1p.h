// log1p: Metal has none. log(u) * x / (u - 1) with u = 1 + x cancels the rounding of u
// (Goldberg, "What every computer scientist should know about floating-point arithmetic").
inline float mt_log1p(float x) {
  float u = 1.0f + x;
  return u == 1.0f ? x : log(u) * (x / (u - 1.0f));
}
