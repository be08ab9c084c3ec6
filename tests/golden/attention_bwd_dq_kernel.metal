// mtriton helpers for the kernel body.
#define MT_RELAXED memory_order_relaxed
#define MT_INT_ATOMICS(T, AT) \
  inline T mt_atomic_add(device T* p, T v) { return atomic_fetch_add_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_max(device T* p, T v) { return atomic_fetch_max_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_min(device T* p, T v) { return atomic_fetch_min_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_and(device T* p, T v) { return atomic_fetch_and_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_or(device T* p, T v) { return atomic_fetch_or_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_xor(device T* p, T v) { return atomic_fetch_xor_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_xchg(device T* p, T v) { return atomic_exchange_explicit((device AT*)p, v, MT_RELAXED); } \
  inline T mt_atomic_cas(device T* p, T cmp, T v) { \
    T expected = cmp; \
    while (!atomic_compare_exchange_weak_explicit((device AT*)p, &expected, v, MT_RELAXED, MT_RELAXED)) { \
      if (expected != cmp) return expected; \
    } \
    return cmp; \
  }
MT_INT_ATOMICS(int, atomic_int)
MT_INT_ATOMICS(uint, atomic_uint)
inline float mt_atomic_add(device float* p, float v) { return atomic_fetch_add_explicit((device atomic_float*)p, v, MT_RELAXED); }
inline float mt_atomic_xchg(device float* p, float v) { return atomic_exchange_explicit((device atomic_float*)p, v, MT_RELAXED); }
// float max/min: a compare-and-swap loop on the bits
inline float mt_atomic_fminmax(device float* p, float v, bool is_max) {
  device atomic_uint* a = (device atomic_uint*)p;
  uint old = atomic_load_explicit(a, MT_RELAXED);
  while (true) {
    float f = as_type<float>(old);
    if (is_max ? !(v > f) : !(v < f)) return f;
    if (atomic_compare_exchange_weak_explicit(a, &old, as_type<uint>(v), MT_RELAXED, MT_RELAXED)) return f;
  }
}
inline float mt_atomic_max(device float* p, float v) { return mt_atomic_fminmax(p, v, true); }
inline float mt_atomic_min(device float* p, float v) { return mt_atomic_fminmax(p, v, false); }
// erf: Metal has none. Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7.
inline float mt_erf(float x) {
  float s = x < 0.0f ? -1.0f : 1.0f;
  x = fabs(x);
  float t = 1.0f / (1.0f + 0.3275911f * x);
  float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * exp(-x * x);
  return s * y;
}
[[kernel]] void custom_kernel_mtriton__attention_bwd_dq_kernel_41bfc090957bd8b2_iiiiiicssssssssssss_float16_t_float16_t_float16_t_float16_t_float_float_float16_t_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_floats_int32_ts_floats_int32_ts_int32_t(
  const device float16_t* i0 [[buffer(0)]],
  const device float16_t* i1 [[buffer(1)]],
  const device float16_t* i2 [[buffer(2)]],
  const device float16_t* i3 [[buffer(3)]],
  const device float* i4 [[buffer(4)]],
  const device float* i5 [[buffer(5)]],
  const device float16_t* i6 [[buffer(6)]],
  const constant int32_t& a7 [[buffer(7)]],
  const constant int32_t& a8 [[buffer(8)]],
  const constant int32_t& a9 [[buffer(9)]],
  const constant int32_t& a10 [[buffer(10)]],
  const constant int32_t& a11 [[buffer(11)]],
  const constant int32_t& a12 [[buffer(12)]],
  const constant int32_t& a13 [[buffer(13)]],
  const constant int32_t& a14 [[buffer(14)]],
  const constant float& a15 [[buffer(15)]],
  const constant int32_t& a16 [[buffer(16)]],
  const constant float& a17 [[buffer(17)]],
  const constant int32_t& a18 [[buffer(18)]],
  device int32_t* mt_done [[buffer(19)]],
  uint thread_index_in_threadgroup [[thread_index_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  device half* p0 = (device half*)(i0);
  device half* p1 = (device half*)(i1);
  device half* p2 = (device half*)(i2);
  device half* p3 = (device half*)(i3);
  device float* p4 = (device float*)(i4);
  device float* p5 = (device float*)(i5);
  device half* p6 = (device half*)(i6);
  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  threadgroup float4 mt_smem_v[1024];
  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;
  int v1;  // backward.py:167
  v1 = (int)(threadgroup_position_in_grid.x);  // backward.py:167
  int v2;  // backward.py:168
  v2 = (int)(threadgroup_position_in_grid.y);  // backward.py:168
  int v3;  // backward.py:169
  v3 = static_cast<int>(v2 / a11);  // backward.py:169
  int v4;  // backward.py:170
  v4 = static_cast<int>(v2 % a11);  // backward.py:170
  int v5;  // backward.py:171
  v5 = static_cast<int>(v4 / a12);  // backward.py:171
  int v6;  // forward.py:50
  v6 = static_cast<int>(a11 * a13);  // forward.py:50
  int v7;  // forward.py:50
  v7 = 64;  // forward.py:50
  int v8;  // forward.py:50
  v8 = static_cast<int>(v6 * v7);  // forward.py:50
  int v9;  // forward.py:50
  v9 = 64;  // forward.py:50
  int v10;  // forward.py:50
  v10 = static_cast<int>(a13 * v9);  // forward.py:50
  int v11;  // backward.py:173
  v11 = static_cast<int>(a11 / a12);  // backward.py:173
  int v12;  // forward.py:50
  v12 = static_cast<int>(v11 * a14);  // forward.py:50
  int v13;  // forward.py:50
  v13 = 64;  // forward.py:50
  int v14;  // forward.py:50
  v14 = static_cast<int>(v12 * v13);  // forward.py:50
  int v15;  // forward.py:50
  v15 = 64;  // forward.py:50
  int v16;  // forward.py:50
  v16 = static_cast<int>(a14 * v15);  // forward.py:50
  int v17;  // backward.py:174
  v17 = 32;  // backward.py:174
  int v18;  // backward.py:174
  v18 = static_cast<int>(v1 * v17);  // backward.py:174
  int v19[1];  // backward.py:174
  for (int i = 0; i < 1; ++i) {  // backward.py:174
    v19[i] = 0 + (int)((tid % 32));  // backward.py:174
  }
  int v20[1];  // backward.py:174
  for (int i = 0; i < 1; ++i) {  // backward.py:174
    v20[i] = static_cast<int>(v18 + v19[i]);  // backward.py:174
  }
  int v21[1];  // backward.py:175
  for (int i = 0; i < 1; ++i) {  // backward.py:175
    v21[i] = 0 + (int)((tid % 32));  // backward.py:175
  }
  int v22[1];  // backward.py:176
  for (int i = 0; i < 1; ++i) {  // backward.py:176
    v22[i] = 0 + (int)((tid % 64));  // backward.py:176
  }
  int v23;  // backward.py:177
  v23 = 64;  // backward.py:177
  bool v24[1];  // backward.py:177
  for (int i = 0; i < 1; ++i) {  // backward.py:177
    v24[i] = (v22[i] < v23);  // backward.py:177
  }
  int v25;  // backward.py:178
  v25 = static_cast<int>(a14 - a13);  // backward.py:178
  int v26[1];  // backward.py:178
  for (int i = 0; i < 1; ++i) {  // backward.py:178
    v26[i] = static_cast<int>(v20[i] + v25);  // backward.py:178
  }
  int v27;  // backward.py:180
  v27 = static_cast<int>(v3 * v8);  // backward.py:180
  int v28;  // backward.py:180
  v28 = static_cast<int>(v4 * v10);  // backward.py:180
  int v29;  // backward.py:180
  v29 = static_cast<int>(v27 + v28);  // backward.py:180
  int v30;  // backward.py:180
  v30 = 64;  // backward.py:180
  int v31[1];  // backward.py:180
  for (int i = 0; i < 1; ++i) {  // backward.py:180
    v31[i] = static_cast<int>(v20[i] * v30);  // backward.py:180
  }
  int v32[1];  // backward.py:180
  for (int i = 0; i < 1; ++i) {  // backward.py:180
    v32[i] = static_cast<int>(v29 + v31[i]);  // backward.py:180
  }
  int v33[16];  // backward.py:180
  for (int i = 0; i < 16; ++i) {  // backward.py:180
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:180
    v33[i] = static_cast<int>(v29 + static_cast<int>(static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) * v30));  // backward.py:180
  }
  int v34[16];  // backward.py:180
  for (int i = 0; i < 16; ++i) {  // backward.py:180
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:180
    v34[i] = (0 + (int)(((e) % 64)));  // backward.py:180
  }
  int v35[16];  // backward.py:180
  for (int i = 0; i < 16; ++i) {  // backward.py:180
    v35[i] = static_cast<int>(v33[i] + v34[i]);  // backward.py:180
  }
  bool v36[1];  // backward.py:181
  for (int i = 0; i < 1; ++i) {  // backward.py:181
    v36[i] = (v20[i] < a13);  // backward.py:181
  }
  bool v37[16];  // backward.py:181
  for (int i = 0; i < 16; ++i) {  // backward.py:181
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:181
    v37[i] = (static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) < a13);  // backward.py:181
  }
  bool v38[16];  // backward.py:181
  for (int i = 0; i < 16; ++i) {  // backward.py:181
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:181
    v38[i] = ((0 + (int)(((e) % 64))) < v23);  // backward.py:181
  }
  bool v39[16];  // backward.py:181
  for (int i = 0; i < 16; ++i) {  // backward.py:181
    v39[i] = (v37[i] & v38[i]);  // backward.py:181
  }
  int v40[16];  // backward.py:182
  for (int i = 0; i < 16; ++i) {  // backward.py:182
    v40[i] = (0 + v35[i]);  // backward.py:182
  }
  float v41;  // backward.py:182
  v41 = 0.0f;  // backward.py:182
  half v42;  // backward.py:182
  v42 = static_cast<half>(v41);  // backward.py:182
  half v43[16];  // backward.py:182
  for (int i = 0; i < 16; i += 4) {  // backward.py:182
    if (v39[i]) {  // backward.py:182
      const packed_half4 t = *((device const packed_half4*)(p0 + v40[i]));  // backward.py:182
      v43[i + 0] = t[0];  // backward.py:182
      v43[i + 1] = t[1];  // backward.py:182
      v43[i + 2] = t[2];  // backward.py:182
      v43[i + 3] = t[3];  // backward.py:182
    } else {
      v43[i + 0] = v42;  // backward.py:182
      v43[i + 1] = v42;  // backward.py:182
      v43[i + 2] = v42;  // backward.py:182
      v43[i + 3] = v42;  // backward.py:182
    }
  }
  int v44[16];  // backward.py:183
  for (int i = 0; i < 16; ++i) {  // backward.py:183
    v44[i] = (0 + v35[i]);  // backward.py:183
  }
  float v45;  // backward.py:183
  v45 = 0.0f;  // backward.py:183
  half v46;  // backward.py:183
  v46 = static_cast<half>(v45);  // backward.py:183
  half v47[16];  // backward.py:183
  for (int i = 0; i < 16; i += 4) {  // backward.py:183
    if (v39[i]) {  // backward.py:183
      const packed_half4 t = *((device const packed_half4*)(p3 + v44[i]));  // backward.py:183
      v47[i + 0] = t[0];  // backward.py:183
      v47[i + 1] = t[1];  // backward.py:183
      v47[i + 2] = t[2];  // backward.py:183
      v47[i + 3] = t[3];  // backward.py:183
    } else {
      v47[i + 0] = v46;  // backward.py:183
      v47[i + 1] = v46;  // backward.py:183
      v47[i + 2] = v46;  // backward.py:183
      v47[i + 3] = v46;  // backward.py:183
    }
  }
  int v48;  // backward.py:184
  v48 = static_cast<int>(v2 * a13);  // backward.py:184
  int v49;  // backward.py:42
  v49 = (0 + v48);  // backward.py:42
  int v50[1];  // backward.py:42
  for (int i = 0; i < 1; ++i) {  // backward.py:42
    v50[i] = (v49 + v20[i]);  // backward.py:42
  }
  bool v51[1];  // backward.py:42
  for (int i = 0; i < 1; ++i) {  // backward.py:42
    v51[i] = (v20[i] < a13);  // backward.py:42
  }
  float v52;  // backward.py:42
  v52 = 0.0f;  // backward.py:42
  float v53[1];  // backward.py:42
  for (int i = 0; i < 1; ++i) {  // backward.py:42
    v53[i] = v51[i] ? p4[v50[i]] : v52;  // backward.py:42
  }
  float v54;  // backward.py:43
  v54 = (-INFINITY);  // backward.py:43
  bool v55[1];  // backward.py:43
  for (int i = 0; i < 1; ++i) {  // backward.py:43
    v55[i] = (v53[i] == v54);  // backward.py:43
  }
  float v56;  // backward.py:43
  v56 = 1.4426950408889634f;  // backward.py:43
  float v57[1];  // backward.py:43
  for (int i = 0; i < 1; ++i) {  // backward.py:43
    v57[i] = static_cast<float>(v53[i] * v56);  // backward.py:43
  }
  float v58;  // backward.py:43
  v58 = 0.0f;  // backward.py:43
  float v59[1];  // backward.py:43
  for (int i = 0; i < 1; ++i) {  // backward.py:43
    v59[i] = (v55[i] ? v58 : v57[i]);  // backward.py:43
  }
  int v60;  // backward.py:185
  v60 = static_cast<int>(v2 * a13);  // backward.py:185
  int v61;  // backward.py:185
  v61 = (0 + v60);  // backward.py:185
  int v62[1];  // backward.py:185
  for (int i = 0; i < 1; ++i) {  // backward.py:185
    v62[i] = (v61 + v20[i]);  // backward.py:185
  }
  bool v63[1];  // backward.py:185
  for (int i = 0; i < 1; ++i) {  // backward.py:185
    v63[i] = (v20[i] < a13);  // backward.py:185
  }
  float v64;  // backward.py:185
  v64 = 0.0f;  // backward.py:185
  float v65[1];  // backward.py:185
  for (int i = 0; i < 1; ++i) {  // backward.py:185
    v65[i] = v63[i] ? p5[v62[i]] : v64;  // backward.py:185
  }
  int v66;  // backward.py:186
  v66 = static_cast<int>(v3 * v14);  // backward.py:186
  int v67;  // backward.py:186
  v67 = (0 + v66);  // backward.py:186
  int v68;  // backward.py:186
  v68 = static_cast<int>(v5 * v16);  // backward.py:186
  int v69;  // backward.py:186
  v69 = (v67 + v68);  // backward.py:186
  int v70;  // backward.py:187
  v70 = static_cast<int>(v3 * v14);  // backward.py:187
  int v71;  // backward.py:187
  v71 = (0 + v70);  // backward.py:187
  int v72;  // backward.py:187
  v72 = static_cast<int>(v5 * v16);  // backward.py:187
  int v73;  // backward.py:187
  v73 = (v71 + v72);  // backward.py:187
  float v74;  // backward.py:189
  v74 = 1.4426950408889634f;  // backward.py:189
  float v75;  // backward.py:189
  v75 = static_cast<float>(a15 * v74);  // backward.py:189
  int v76;  // backward.py:193
  v76 = 32;  // backward.py:193
  int v77;  // backward.py:193
  v77 = static_cast<int>(v1 * v76);  // backward.py:193
  int v78;  // backward.py:193
  v78 = static_cast<int>(a14 - a13);  // backward.py:193
  int v79;  // backward.py:193
  v79 = static_cast<int>(v77 + v78);  // backward.py:193
  int v80;  // backward.py:196
  v80 = 32;  // backward.py:196
  int v81;  // backward.py:196
  v81 = static_cast<int>(v79 + v80);  // backward.py:196
  int v82;  // backward.py:196
  v82 = static_cast<int>(min(a14, v81));  // backward.py:196
  int v83;  // backward.py:203
  v83 = 0;  // backward.py:203
  int v84;  // backward.py:203
  v84 = 32;  // backward.py:203
  float v85[16];  // backward.py:203
  for (int i = 0; i < 16; ++i) v85[i] = 0.0f;  // backward.py:203
  for (int iv86 = v83; iv86 < v82; iv86 += v84) {  // backward.py:203
    int v87[1];  // backward.py:204
    for (int i = 0; i < 1; ++i) {  // backward.py:204
      v87[i] = static_cast<int>(iv86 + v21[i]);  // backward.py:204
    }
    bool v88[1];  // backward.py:205
    for (int i = 0; i < 1; ++i) {  // backward.py:205
      v88[i] = (v87[i] < a14);  // backward.py:205
    }
    bool v89[16];  // backward.py:205
    for (int i = 0; i < 16; ++i) {  // backward.py:205
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:205
      v89[i] = (static_cast<int>(iv86 + (0 + (int)((((e) / 64) % 32)))) < a14);  // backward.py:205
    }
    bool v90[16];  // backward.py:205
    for (int i = 0; i < 16; ++i) {  // backward.py:205
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:205
      v90[i] = ((0 + (int)(((e) % 64))) < v23);  // backward.py:205
    }
    bool v91[16];  // backward.py:205
    for (int i = 0; i < 16; ++i) {  // backward.py:205
      v91[i] = (v89[i] & v90[i]);  // backward.py:205
    }
    int v92;  // backward.py:206
    v92 = 64;  // backward.py:206
    int v93[1];  // backward.py:206
    for (int i = 0; i < 1; ++i) {  // backward.py:206
      v93[i] = static_cast<int>(v87[i] * v92);  // backward.py:206
    }
    int v94[1];  // backward.py:206
    for (int i = 0; i < 1; ++i) {  // backward.py:206
      v94[i] = (v69 + v93[i]);  // backward.py:206
    }
    int v95[16];  // backward.py:206
    for (int i = 0; i < 16; ++i) {  // backward.py:206
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:206
      v95[i] = (v69 + static_cast<int>(static_cast<int>(iv86 + (0 + (int)((((e) / 64) % 32)))) * v92));  // backward.py:206
    }
    int v96[16];  // backward.py:206
    for (int i = 0; i < 16; ++i) {  // backward.py:206
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:206
      v96[i] = (0 + (int)(((e) % 64)));  // backward.py:206
    }
    int v97[16];  // backward.py:206
    for (int i = 0; i < 16; ++i) {  // backward.py:206
      v97[i] = (v95[i] + v96[i]);  // backward.py:206
    }
    float v98;  // backward.py:206
    v98 = 0.0f;  // backward.py:206
    half v99;  // backward.py:206
    v99 = static_cast<half>(v98);  // backward.py:206
    half v100[16];  // backward.py:206
    for (int i = 0; i < 16; i += 4) {  // backward.py:206
      if (v91[i]) {  // backward.py:206
        const packed_half4 t = *((device const packed_half4*)(p1 + v97[i]));  // backward.py:206
        v100[i + 0] = t[0];  // backward.py:206
        v100[i + 1] = t[1];  // backward.py:206
        v100[i + 2] = t[2];  // backward.py:206
        v100[i + 3] = t[3];  // backward.py:206
      } else {
        v100[i + 0] = v99;  // backward.py:206
        v100[i + 1] = v99;  // backward.py:206
        v100[i + 2] = v99;  // backward.py:206
        v100[i + 3] = v99;  // backward.py:206
      }
    }
    int v101;  // backward.py:207
    v101 = 64;  // backward.py:207
    int v102[1];  // backward.py:207
    for (int i = 0; i < 1; ++i) {  // backward.py:207
      v102[i] = static_cast<int>(v87[i] * v101);  // backward.py:207
    }
    int v103[1];  // backward.py:207
    for (int i = 0; i < 1; ++i) {  // backward.py:207
      v103[i] = (v73 + v102[i]);  // backward.py:207
    }
    int v104[16];  // backward.py:207
    for (int i = 0; i < 16; ++i) {  // backward.py:207
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:207
      v104[i] = (v73 + static_cast<int>(static_cast<int>(iv86 + (0 + (int)((((e) / 64) % 32)))) * v101));  // backward.py:207
    }
    int v105[16];  // backward.py:207
    for (int i = 0; i < 16; ++i) {  // backward.py:207
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:207
      v105[i] = (0 + (int)(((e) % 64)));  // backward.py:207
    }
    int v106[16];  // backward.py:207
    for (int i = 0; i < 16; ++i) {  // backward.py:207
      v106[i] = (v104[i] + v105[i]);  // backward.py:207
    }
    float v107;  // backward.py:207
    v107 = 0.0f;  // backward.py:207
    half v108;  // backward.py:207
    v108 = static_cast<half>(v107);  // backward.py:207
    half v109[16];  // backward.py:207
    for (int i = 0; i < 16; i += 4) {  // backward.py:207
      if (v91[i]) {  // backward.py:207
        const packed_half4 t = *((device const packed_half4*)(p2 + v106[i]));  // backward.py:207
        v109[i + 0] = t[0];  // backward.py:207
        v109[i + 1] = t[1];  // backward.py:207
        v109[i + 2] = t[2];  // backward.py:207
        v109[i + 3] = t[3];  // backward.py:207
      } else {
        v109[i + 0] = v108;  // backward.py:207
        v109[i + 1] = v108;  // backward.py:207
        v109[i + 2] = v108;  // backward.py:207
        v109[i + 3] = v108;  // backward.py:207
      }
    }
    float v110[8];  // backward.py:208
    {  // backward.py:208
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:208
      for (int i = 0; i < 16; ++i) {  // backward.py:208
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:208
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v43[i]);  // backward.py:208
      }
      for (int i = 0; i < 16; ++i) {  // backward.py:208
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:208
        ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v100[i]);  // backward.py:208
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:208
      simdgroup_float8x8 mt_c[4];  // backward.py:208
      for (int s = 0; s < 4; ++s) {  // backward.py:208
        const int tile = warp + s * 4;  // backward.py:208
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:208
        if (tile < 16) {  // backward.py:208
          const int tm = tile / 4, tn = tile % 4;  // backward.py:208
          for (int kk = 0; kk < 64; kk += 8) {  // backward.py:208
            simdgroup_float8x8 ma, mb;  // backward.py:208
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // backward.py:208
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // backward.py:208
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:208
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:208
      for (int s = 0; s < 4; ++s) {  // backward.py:208
        const int tile = warp + s * 4;  // backward.py:208
        if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // backward.py:208
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:208
      for (int i = 0; i < 8; ++i) {  // backward.py:208
        v110[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // backward.py:208
      }
    }
    float v111[8];  // backward.py:208
    for (int i = 0; i < 8; ++i) {  // backward.py:208
      v111[i] = static_cast<float>(v110[i] * v75);  // backward.py:208
    }
    bool v112[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v112[i] = (v20[i] < a13);  // forward.py:57
    }
    bool v113[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v113[i] = (v87[i] < a14);  // forward.py:57
    }
    bool v114[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v114[i] = (static_cast<int>(v18 + (0 + (int)((((e) / 32) % 32)))) < a13);  // forward.py:57
    }
    bool v115[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v115[i] = (static_cast<int>(iv86 + (0 + (int)(((e) % 32)))) < a14);  // forward.py:57
    }
    bool v116[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v116[i] = (v114[i] & v115[i]);  // forward.py:57
    }
    int v117;  // forward.py:57
    v117 = 0;  // forward.py:57
    bool v118[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v118[i] = (v87[i] >= v117);  // forward.py:57
    }
    bool v119[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v119[i] = (static_cast<int>(iv86 + (0 + (int)(((e) % 32)))) >= v117);  // forward.py:57
    }
    bool v120[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v120[i] = (v116[i] & v119[i]);  // forward.py:57
    }
    int v121[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v121[i] = static_cast<int>(iv86 + (0 + (int)(((e) % 32))));  // forward.py:59
    }
    int v122[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v122[i] = static_cast<int>(static_cast<int>(v18 + (0 + (int)((((e) / 32) % 32)))) + v25);  // forward.py:59
    }
    bool v123[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v123[i] = (v121[i] <= v122[i]);  // forward.py:59
    }
    bool v124[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v124[i] = (v120[i] & v123[i]);  // forward.py:59
    }
    float v125;  // forward.py:75
    v125 = (-INFINITY);  // forward.py:75
    float v126[8];  // forward.py:75
    for (int i = 0; i < 8; ++i) {  // forward.py:75
      v126[i] = (v124[i] ? v111[i] : v125);  // forward.py:75
    }
    float v127[8];  // backward.py:214
    threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:214
    for (int i = 0; i < 1; ++i) {  // backward.py:214
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v59[i];  // backward.py:214
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:214
    for (int i = 0; i < 8; ++i) {  // backward.py:214
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:214
      v127[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // backward.py:214
    }
    float v128[8];  // backward.py:214
    for (int i = 0; i < 8; ++i) {  // backward.py:214
      v128[i] = static_cast<float>(v126[i] - v127[i]);  // backward.py:214
    }
    float v129[8];  // backward.py:214
    for (int i = 0; i < 8; ++i) {  // backward.py:214
      v129[i] = exp2(v128[i]);  // backward.py:214
    }
    float v130[8];  // backward.py:215
    {  // backward.py:215
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:215
      for (int i = 0; i < 16; ++i) {  // backward.py:215
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:215
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v47[i]);  // backward.py:215
      }
      for (int i = 0; i < 16; ++i) {  // backward.py:215
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:215
        ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v109[i]);  // backward.py:215
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:215
      simdgroup_float8x8 mt_c[4];  // backward.py:215
      for (int s = 0; s < 4; ++s) {  // backward.py:215
        const int tile = warp + s * 4;  // backward.py:215
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:215
        if (tile < 16) {  // backward.py:215
          const int tm = tile / 4, tn = tile % 4;  // backward.py:215
          for (int kk = 0; kk < 64; kk += 8) {  // backward.py:215
            simdgroup_float8x8 ma, mb;  // backward.py:215
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // backward.py:215
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // backward.py:215
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:215
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:215
      for (int s = 0; s < 4; ++s) {  // backward.py:215
        const int tile = warp + s * 4;  // backward.py:215
        if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // backward.py:215
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:215
      for (int i = 0; i < 8; ++i) {  // backward.py:215
        v130[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // backward.py:215
      }
    }
    float v131[8];  // backward.py:219
    threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:219
    for (int i = 0; i < 1; ++i) {  // backward.py:219
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v65[i];  // backward.py:219
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:219
    for (int i = 0; i < 8; ++i) {  // backward.py:219
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:219
      v131[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // backward.py:219
    }
    float v132[8];  // backward.py:219
    for (int i = 0; i < 8; ++i) {  // backward.py:219
      v132[i] = static_cast<float>(v130[i] - v131[i]);  // backward.py:219
    }
    float v133[8];  // backward.py:219
    for (int i = 0; i < 8; ++i) {  // backward.py:219
      v133[i] = static_cast<float>(v129[i] * v132[i]);  // backward.py:219
    }
    half v134[8];  // backward.py:220
    for (int i = 0; i < 8; ++i) {  // backward.py:220
      v134[i] = static_cast<half>(v133[i]);  // backward.py:220
    }
    float v135[16];  // backward.py:220
    {  // backward.py:220
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:220
      for (int i = 0; i < 8; ++i) {  // backward.py:220
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:220
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v134[i]);  // backward.py:220
      }
      for (int i = 0; i < 16; ++i) {  // backward.py:220
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:220
        ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v100[i]);  // backward.py:220
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:220
      simdgroup_float8x8 mt_c[8];  // backward.py:220
      for (int s = 0; s < 8; ++s) {  // backward.py:220
        const int tile = warp + s * 4;  // backward.py:220
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:220
        if (tile < 32) {  // backward.py:220
          const int tm = tile / 8, tn = tile % 8;  // backward.py:220
          for (int kk = 0; kk < 32; kk += 8) {  // backward.py:220
            simdgroup_float8x8 ma, mb;  // backward.py:220
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // backward.py:220
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 64 + tn * 8, 64);  // backward.py:220
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:220
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:220
      for (int s = 0; s < 8; ++s) {  // backward.py:220
        const int tile = warp + s * 4;  // backward.py:220
        if (tile < 32) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 8) * 512 + (tile % 8) * 8, 64);  // backward.py:220
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:220
      for (int i = 0; i < 16; ++i) {  // backward.py:220
        v135[i] = static_cast<float>(v85[i] + ((threadgroup float*)(mt_smem + 0))[(((i) / 8 * 128 + tid) * 8 + (i) % 8)]);  // backward.py:220
      }
    }
    for (int i = 0; i < 16; ++i) v85[i] = v135[i];  // backward.py:220
  }
  int v136[16];  // backward.py:222
  for (int i = 0; i < 16; ++i) {  // backward.py:222
    v136[i] = (0 + v35[i]);  // backward.py:222
  }
  float v137[16];  // backward.py:222
  for (int i = 0; i < 16; ++i) {  // backward.py:222
    v137[i] = static_cast<float>(v85[i] * a15);  // backward.py:222
  }
  half v138[16];  // backward.py:222
  for (int i = 0; i < 16; ++i) {  // backward.py:222
    v138[i] = static_cast<half>(v137[i]);  // backward.py:222
  }
  for (int i = 0; i < 16; i += 4) {  // backward.py:222
    if (v39[i]) *((device packed_half4*)(p6 + v136[i])) = packed_half4(v138[i + 0], v138[i + 1], v138[i + 2], v138[i + 3]);  // backward.py:222
  }

}
