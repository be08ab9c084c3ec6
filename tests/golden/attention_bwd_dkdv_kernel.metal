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
[[kernel]] void custom_kernel_mtriton__attention_bwd_dkdv_kernel_fc13abbc9ab9673f_iiiiiiccssssssssssss_float16_t_float16_t_float16_t_float16_t_float_float_float16_t_float16_t_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_floats_int32_ts_floats_int32_ts_int32_t(
  const device float16_t* i0 [[buffer(0)]],
  const device float16_t* i1 [[buffer(1)]],
  const device float16_t* i2 [[buffer(2)]],
  const device float16_t* i3 [[buffer(3)]],
  const device float* i4 [[buffer(4)]],
  const device float* i5 [[buffer(5)]],
  const device float16_t* i6 [[buffer(6)]],
  const device float16_t* i7 [[buffer(7)]],
  const constant int32_t& a8 [[buffer(8)]],
  const constant int32_t& a9 [[buffer(9)]],
  const constant int32_t& a10 [[buffer(10)]],
  const constant int32_t& a11 [[buffer(11)]],
  const constant int32_t& a12 [[buffer(12)]],
  const constant int32_t& a13 [[buffer(13)]],
  const constant int32_t& a14 [[buffer(14)]],
  const constant int32_t& a15 [[buffer(15)]],
  const constant float& a16 [[buffer(16)]],
  const constant int32_t& a17 [[buffer(17)]],
  const constant float& a18 [[buffer(18)]],
  const constant int32_t& a19 [[buffer(19)]],
  device int32_t* mt_done [[buffer(20)]],
  uint thread_index_in_threadgroup [[thread_index_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  device half* p0 = (device half*)(i0);
  device half* p1 = (device half*)(i1);
  device half* p2 = (device half*)(i2);
  device half* p3 = (device half*)(i3);
  device float* p4 = (device float*)(i4);
  device float* p5 = (device float*)(i5);
  device half* p6 = (device half*)(i6);
  device half* p7 = (device half*)(i7);
  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  threadgroup float4 mt_smem_v[1024];
  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;
  int v1;  // backward.py:93
  v1 = (int)(threadgroup_position_in_grid.x);  // backward.py:93
  int v2;  // backward.py:94
  v2 = (int)(threadgroup_position_in_grid.y);  // backward.py:94
  int v3;  // backward.py:95
  v3 = static_cast<int>(a12 / a13);  // backward.py:95
  int v4;  // backward.py:96
  v4 = static_cast<int>(v2 / v3);  // backward.py:96
  int v5;  // backward.py:97
  v5 = static_cast<int>(v2 % v3);  // backward.py:97
  int v6;  // forward.py:50
  v6 = static_cast<int>(a12 * a14);  // forward.py:50
  int v7;  // forward.py:50
  v7 = 64;  // forward.py:50
  int v8;  // forward.py:50
  v8 = static_cast<int>(v6 * v7);  // forward.py:50
  int v9;  // forward.py:50
  v9 = 64;  // forward.py:50
  int v10;  // forward.py:50
  v10 = static_cast<int>(a14 * v9);  // forward.py:50
  int v11;  // forward.py:50
  v11 = static_cast<int>(v3 * a15);  // forward.py:50
  int v12;  // forward.py:50
  v12 = 64;  // forward.py:50
  int v13;  // forward.py:50
  v13 = static_cast<int>(v11 * v12);  // forward.py:50
  int v14;  // forward.py:50
  v14 = 64;  // forward.py:50
  int v15;  // forward.py:50
  v15 = static_cast<int>(a15 * v14);  // forward.py:50
  int v16;  // backward.py:100
  v16 = 32;  // backward.py:100
  int v17;  // backward.py:100
  v17 = static_cast<int>(v1 * v16);  // backward.py:100
  int v18[1];  // backward.py:100
  for (int i = 0; i < 1; ++i) {  // backward.py:100
    v18[i] = 0 + (int)((tid % 32));  // backward.py:100
  }
  int v19[1];  // backward.py:100
  for (int i = 0; i < 1; ++i) {  // backward.py:100
    v19[i] = static_cast<int>(v17 + v18[i]);  // backward.py:100
  }
  int v20[1];  // backward.py:101
  for (int i = 0; i < 1; ++i) {  // backward.py:101
    v20[i] = 0 + (int)((tid % 32));  // backward.py:101
  }
  int v21[1];  // backward.py:102
  for (int i = 0; i < 1; ++i) {  // backward.py:102
    v21[i] = 0 + (int)((tid % 64));  // backward.py:102
  }
  int v22;  // backward.py:103
  v22 = 64;  // backward.py:103
  bool v23[1];  // backward.py:103
  for (int i = 0; i < 1; ++i) {  // backward.py:103
    v23[i] = (v21[i] < v22);  // backward.py:103
  }
  int v24;  // backward.py:105
  v24 = static_cast<int>(v4 * v13);  // backward.py:105
  int v25;  // backward.py:105
  v25 = static_cast<int>(v5 * v15);  // backward.py:105
  int v26;  // backward.py:105
  v26 = static_cast<int>(v24 + v25);  // backward.py:105
  int v27;  // backward.py:105
  v27 = 64;  // backward.py:105
  int v28[1];  // backward.py:105
  for (int i = 0; i < 1; ++i) {  // backward.py:105
    v28[i] = static_cast<int>(v19[i] * v27);  // backward.py:105
  }
  int v29[1];  // backward.py:105
  for (int i = 0; i < 1; ++i) {  // backward.py:105
    v29[i] = static_cast<int>(v26 + v28[i]);  // backward.py:105
  }
  int v30[16];  // backward.py:105
  for (int i = 0; i < 16; ++i) {  // backward.py:105
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:105
    v30[i] = static_cast<int>(v26 + static_cast<int>(static_cast<int>(v17 + (0 + (int)((((e) / 64) % 32)))) * v27));  // backward.py:105
  }
  int v31[16];  // backward.py:105
  for (int i = 0; i < 16; ++i) {  // backward.py:105
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:105
    v31[i] = (0 + (int)(((e) % 64)));  // backward.py:105
  }
  int v32[16];  // backward.py:105
  for (int i = 0; i < 16; ++i) {  // backward.py:105
    v32[i] = static_cast<int>(v30[i] + v31[i]);  // backward.py:105
  }
  bool v33[1];  // backward.py:106
  for (int i = 0; i < 1; ++i) {  // backward.py:106
    v33[i] = (v19[i] < a15);  // backward.py:106
  }
  bool v34[16];  // backward.py:106
  for (int i = 0; i < 16; ++i) {  // backward.py:106
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:106
    v34[i] = (static_cast<int>(v17 + (0 + (int)((((e) / 64) % 32)))) < a15);  // backward.py:106
  }
  bool v35[16];  // backward.py:106
  for (int i = 0; i < 16; ++i) {  // backward.py:106
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:106
    v35[i] = ((0 + (int)(((e) % 64))) < v22);  // backward.py:106
  }
  bool v36[16];  // backward.py:106
  for (int i = 0; i < 16; ++i) {  // backward.py:106
    v36[i] = (v34[i] & v35[i]);  // backward.py:106
  }
  int v37[16];  // backward.py:107
  for (int i = 0; i < 16; ++i) {  // backward.py:107
    v37[i] = (0 + v32[i]);  // backward.py:107
  }
  float v38;  // backward.py:107
  v38 = 0.0f;  // backward.py:107
  half v39;  // backward.py:107
  v39 = static_cast<half>(v38);  // backward.py:107
  half v40[16];  // backward.py:107
  for (int i = 0; i < 16; i += 4) {  // backward.py:107
    if (v36[i]) {  // backward.py:107
      const packed_half4 t = *((device const packed_half4*)(p1 + v37[i]));  // backward.py:107
      v40[i + 0] = t[0];  // backward.py:107
      v40[i + 1] = t[1];  // backward.py:107
      v40[i + 2] = t[2];  // backward.py:107
      v40[i + 3] = t[3];  // backward.py:107
    } else {
      v40[i + 0] = v39;  // backward.py:107
      v40[i + 1] = v39;  // backward.py:107
      v40[i + 2] = v39;  // backward.py:107
      v40[i + 3] = v39;  // backward.py:107
    }
  }
  int v41[16];  // backward.py:108
  for (int i = 0; i < 16; ++i) {  // backward.py:108
    v41[i] = (0 + v32[i]);  // backward.py:108
  }
  float v42;  // backward.py:108
  v42 = 0.0f;  // backward.py:108
  half v43;  // backward.py:108
  v43 = static_cast<half>(v42);  // backward.py:108
  half v44[16];  // backward.py:108
  for (int i = 0; i < 16; i += 4) {  // backward.py:108
    if (v36[i]) {  // backward.py:108
      const packed_half4 t = *((device const packed_half4*)(p2 + v41[i]));  // backward.py:108
      v44[i + 0] = t[0];  // backward.py:108
      v44[i + 1] = t[1];  // backward.py:108
      v44[i + 2] = t[2];  // backward.py:108
      v44[i + 3] = t[3];  // backward.py:108
    } else {
      v44[i + 0] = v43;  // backward.py:108
      v44[i + 1] = v43;  // backward.py:108
      v44[i + 2] = v43;  // backward.py:108
      v44[i + 3] = v43;  // backward.py:108
    }
  }
  float v45;  // backward.py:111
  v45 = 1.4426950408889634f;  // backward.py:111
  float v46;  // backward.py:111
  v46 = static_cast<float>(a16 * v45);  // backward.py:111
  int v47;  // backward.py:114
  v47 = 32;  // backward.py:114
  int v48;  // backward.py:114
  v48 = static_cast<int>(v1 * v47);  // backward.py:114
  int v49;  // backward.py:114
  v49 = static_cast<int>(a15 - a14);  // backward.py:114
  int v50;  // backward.py:114
  v50 = static_cast<int>(v48 - v49);  // backward.py:114
  int v51;  // backward.py:117
  v51 = 0;  // backward.py:117
  int v52;  // backward.py:117
  v52 = static_cast<int>(max(v51, v50));  // backward.py:117
  int v53;  // backward.py:117
  v53 = 32;  // backward.py:117
  int v54;  // backward.py:117
  v54 = static_cast<int>(v52 / v53);  // backward.py:117
  int v55;  // backward.py:117
  v55 = 32;  // backward.py:117
  int v56;  // backward.py:117
  v56 = static_cast<int>(v54 * v55);  // backward.py:117
  int v57;  // backward.py:124
  v57 = static_cast<int>(v5 * a13);  // backward.py:124
  int v58;  // backward.py:124
  v58 = static_cast<int>(v5 * a13);  // backward.py:124
  int v59;  // backward.py:124
  v59 = static_cast<int>(v58 + a13);  // backward.py:124
  int v60;  // backward.py:124
  v60 = 1;  // backward.py:124
  float v61[16];  // backward.py:124
  float v62[16];  // backward.py:124
  for (int i = 0; i < 16; ++i) v61[i] = 0.0f;  // backward.py:124
  for (int i = 0; i < 16; ++i) v62[i] = 0.0f;  // backward.py:124
  for (int iv63 = v57; iv63 < v59; iv63 += v60) {  // backward.py:124
    int v64;  // backward.py:125
    v64 = static_cast<int>(v4 * v8);  // backward.py:125
    int v65;  // backward.py:125
    v65 = (0 + v64);  // backward.py:125
    int v66;  // backward.py:125
    v66 = static_cast<int>(iv63 * v10);  // backward.py:125
    int v67;  // backward.py:125
    v67 = (v65 + v66);  // backward.py:125
    int v68;  // backward.py:126
    v68 = static_cast<int>(v4 * v8);  // backward.py:126
    int v69;  // backward.py:126
    v69 = (0 + v68);  // backward.py:126
    int v70;  // backward.py:126
    v70 = static_cast<int>(iv63 * v10);  // backward.py:126
    int v71;  // backward.py:126
    v71 = (v69 + v70);  // backward.py:126
    int v72;  // backward.py:127
    v72 = static_cast<int>(v4 * a12);  // backward.py:127
    int v73;  // backward.py:127
    v73 = static_cast<int>(v72 + iv63);  // backward.py:127
    int v74;  // backward.py:129
    v74 = 32;  // backward.py:129
    float v75[16];  // backward.py:129
    float v76[16];  // backward.py:129
    for (int i = 0; i < 16; ++i) v75[i] = v61[i];  // backward.py:129
    for (int i = 0; i < 16; ++i) v76[i] = v62[i];  // backward.py:129
    for (int iv77 = v56; iv77 < a14; iv77 += v74) {  // backward.py:129
      int v78[1];  // backward.py:130
      for (int i = 0; i < 1; ++i) {  // backward.py:130
        v78[i] = static_cast<int>(iv77 + v20[i]);  // backward.py:130
      }
      bool v79[1];  // backward.py:131
      for (int i = 0; i < 1; ++i) {  // backward.py:131
        v79[i] = (v78[i] < a14);  // backward.py:131
      }
      bool v80[16];  // backward.py:131
      for (int i = 0; i < 16; ++i) {  // backward.py:131
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:131
        v80[i] = (static_cast<int>(iv77 + (0 + (int)((((e) / 64) % 32)))) < a14);  // backward.py:131
      }
      bool v81[16];  // backward.py:131
      for (int i = 0; i < 16; ++i) {  // backward.py:131
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:131
        v81[i] = ((0 + (int)(((e) % 64))) < v22);  // backward.py:131
      }
      bool v82[16];  // backward.py:131
      for (int i = 0; i < 16; ++i) {  // backward.py:131
        v82[i] = (v80[i] & v81[i]);  // backward.py:131
      }
      int v83;  // backward.py:132
      v83 = 64;  // backward.py:132
      int v84[1];  // backward.py:132
      for (int i = 0; i < 1; ++i) {  // backward.py:132
        v84[i] = static_cast<int>(v78[i] * v83);  // backward.py:132
      }
      int v85[16];  // backward.py:132
      for (int i = 0; i < 16; ++i) {  // backward.py:132
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:132
        v85[i] = static_cast<int>(static_cast<int>(iv77 + (0 + (int)((((e) / 64) % 32)))) * v83);  // backward.py:132
      }
      int v86[16];  // backward.py:132
      for (int i = 0; i < 16; ++i) {  // backward.py:132
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:132
        v86[i] = (0 + (int)(((e) % 64)));  // backward.py:132
      }
      int v87[16];  // backward.py:132
      for (int i = 0; i < 16; ++i) {  // backward.py:132
        v87[i] = static_cast<int>(v85[i] + v86[i]);  // backward.py:132
      }
      int v88[16];  // backward.py:133
      for (int i = 0; i < 16; ++i) {  // backward.py:133
        v88[i] = (v67 + v87[i]);  // backward.py:133
      }
      float v89;  // backward.py:133
      v89 = 0.0f;  // backward.py:133
      half v90;  // backward.py:133
      v90 = static_cast<half>(v89);  // backward.py:133
      half v91[16];  // backward.py:133
      for (int i = 0; i < 16; i += 4) {  // backward.py:133
        if (v82[i]) {  // backward.py:133
          const packed_half4 t = *((device const packed_half4*)(p0 + v88[i]));  // backward.py:133
          v91[i + 0] = t[0];  // backward.py:133
          v91[i + 1] = t[1];  // backward.py:133
          v91[i + 2] = t[2];  // backward.py:133
          v91[i + 3] = t[3];  // backward.py:133
        } else {
          v91[i + 0] = v90;  // backward.py:133
          v91[i + 1] = v90;  // backward.py:133
          v91[i + 2] = v90;  // backward.py:133
          v91[i + 3] = v90;  // backward.py:133
        }
      }
      int v92[16];  // backward.py:134
      for (int i = 0; i < 16; ++i) {  // backward.py:134
        v92[i] = (v71 + v87[i]);  // backward.py:134
      }
      float v93;  // backward.py:134
      v93 = 0.0f;  // backward.py:134
      half v94;  // backward.py:134
      v94 = static_cast<half>(v93);  // backward.py:134
      half v95[16];  // backward.py:134
      for (int i = 0; i < 16; i += 4) {  // backward.py:134
        if (v82[i]) {  // backward.py:134
          const packed_half4 t = *((device const packed_half4*)(p3 + v92[i]));  // backward.py:134
          v95[i + 0] = t[0];  // backward.py:134
          v95[i + 1] = t[1];  // backward.py:134
          v95[i + 2] = t[2];  // backward.py:134
          v95[i + 3] = t[3];  // backward.py:134
        } else {
          v95[i + 0] = v94;  // backward.py:134
          v95[i + 1] = v94;  // backward.py:134
          v95[i + 2] = v94;  // backward.py:134
          v95[i + 3] = v94;  // backward.py:134
        }
      }
      int v96;  // backward.py:135
      v96 = static_cast<int>(v73 * a14);  // backward.py:135
      int v97;  // backward.py:42
      v97 = (0 + v96);  // backward.py:42
      int v98[1];  // backward.py:42
      for (int i = 0; i < 1; ++i) {  // backward.py:42
        v98[i] = (v97 + v78[i]);  // backward.py:42
      }
      bool v99[1];  // backward.py:42
      for (int i = 0; i < 1; ++i) {  // backward.py:42
        v99[i] = (v78[i] < a14);  // backward.py:42
      }
      float v100;  // backward.py:42
      v100 = 0.0f;  // backward.py:42
      float v101[1];  // backward.py:42
      for (int i = 0; i < 1; ++i) {  // backward.py:42
        v101[i] = v99[i] ? p4[v98[i]] : v100;  // backward.py:42
      }
      float v102;  // backward.py:43
      v102 = (-INFINITY);  // backward.py:43
      bool v103[1];  // backward.py:43
      for (int i = 0; i < 1; ++i) {  // backward.py:43
        v103[i] = (v101[i] == v102);  // backward.py:43
      }
      float v104;  // backward.py:43
      v104 = 1.4426950408889634f;  // backward.py:43
      float v105[1];  // backward.py:43
      for (int i = 0; i < 1; ++i) {  // backward.py:43
        v105[i] = static_cast<float>(v101[i] * v104);  // backward.py:43
      }
      float v106;  // backward.py:43
      v106 = 0.0f;  // backward.py:43
      float v107[1];  // backward.py:43
      for (int i = 0; i < 1; ++i) {  // backward.py:43
        v107[i] = (v103[i] ? v106 : v105[i]);  // backward.py:43
      }
      int v108;  // backward.py:136
      v108 = static_cast<int>(v73 * a14);  // backward.py:136
      int v109;  // backward.py:136
      v109 = (0 + v108);  // backward.py:136
      int v110[1];  // backward.py:136
      for (int i = 0; i < 1; ++i) {  // backward.py:136
        v110[i] = (v109 + v78[i]);  // backward.py:136
      }
      bool v111[1];  // backward.py:136
      for (int i = 0; i < 1; ++i) {  // backward.py:136
        v111[i] = (v78[i] < a14);  // backward.py:136
      }
      float v112;  // backward.py:136
      v112 = 0.0f;  // backward.py:136
      float v113[1];  // backward.py:136
      for (int i = 0; i < 1; ++i) {  // backward.py:136
        v113[i] = v111[i] ? p5[v110[i]] : v112;  // backward.py:136
      }
      float v114[8];  // backward.py:138
      {  // backward.py:138
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:138
        for (int i = 0; i < 16; ++i) {  // backward.py:138
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:138
          ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v91[i]);  // backward.py:138
        }
        for (int i = 0; i < 16; ++i) {  // backward.py:138
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:138
          ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v40[i]);  // backward.py:138
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:138
        simdgroup_float8x8 mt_c[4];  // backward.py:138
        for (int s = 0; s < 4; ++s) {  // backward.py:138
          const int tile = warp + s * 4;  // backward.py:138
          mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:138
          if (tile < 16) {  // backward.py:138
            const int tm = tile / 4, tn = tile % 4;  // backward.py:138
            for (int kk = 0; kk < 64; kk += 8) {  // backward.py:138
              simdgroup_float8x8 ma, mb;  // backward.py:138
              simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // backward.py:138
              simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // backward.py:138
              simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:138
            }
          }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:138
        for (int s = 0; s < 4; ++s) {  // backward.py:138
          const int tile = warp + s * 4;  // backward.py:138
          if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // backward.py:138
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:138
        for (int i = 0; i < 8; ++i) {  // backward.py:138
          v114[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // backward.py:138
        }
      }
      float v115[8];  // backward.py:138
      for (int i = 0; i < 8; ++i) {  // backward.py:138
        v115[i] = static_cast<float>(v114[i] * v46);  // backward.py:138
      }
      int v116;  // backward.py:139
      v116 = static_cast<int>(a15 - a14);  // backward.py:139
      int v117[1];  // backward.py:139
      for (int i = 0; i < 1; ++i) {  // backward.py:139
        v117[i] = static_cast<int>(v78[i] + v116);  // backward.py:139
      }
      bool v118[1];  // forward.py:57
      for (int i = 0; i < 1; ++i) {  // forward.py:57
        v118[i] = (v78[i] < a14);  // forward.py:57
      }
      bool v119[1];  // forward.py:57
      for (int i = 0; i < 1; ++i) {  // forward.py:57
        v119[i] = (v19[i] < a15);  // forward.py:57
      }
      bool v120[8];  // forward.py:57
      for (int i = 0; i < 8; ++i) {  // forward.py:57
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
        v120[i] = (static_cast<int>(iv77 + (0 + (int)((((e) / 32) % 32)))) < a14);  // forward.py:57
      }
      bool v121[8];  // forward.py:57
      for (int i = 0; i < 8; ++i) {  // forward.py:57
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
        v121[i] = (static_cast<int>(v17 + (0 + (int)(((e) % 32)))) < a15);  // forward.py:57
      }
      bool v122[8];  // forward.py:57
      for (int i = 0; i < 8; ++i) {  // forward.py:57
        v122[i] = (v120[i] & v121[i]);  // forward.py:57
      }
      int v123;  // forward.py:57
      v123 = 0;  // forward.py:57
      bool v124[1];  // forward.py:57
      for (int i = 0; i < 1; ++i) {  // forward.py:57
        v124[i] = (v19[i] >= v123);  // forward.py:57
      }
      bool v125[8];  // forward.py:57
      for (int i = 0; i < 8; ++i) {  // forward.py:57
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
        v125[i] = (static_cast<int>(v17 + (0 + (int)(((e) % 32)))) >= v123);  // forward.py:57
      }
      bool v126[8];  // forward.py:57
      for (int i = 0; i < 8; ++i) {  // forward.py:57
        v126[i] = (v122[i] & v125[i]);  // forward.py:57
      }
      int v127[8];  // forward.py:59
      for (int i = 0; i < 8; ++i) {  // forward.py:59
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
        v127[i] = static_cast<int>(v17 + (0 + (int)(((e) % 32))));  // forward.py:59
      }
      int v128[8];  // forward.py:59
      for (int i = 0; i < 8; ++i) {  // forward.py:59
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
        v128[i] = static_cast<int>(static_cast<int>(iv77 + (0 + (int)((((e) / 32) % 32)))) + v116);  // forward.py:59
      }
      bool v129[8];  // forward.py:59
      for (int i = 0; i < 8; ++i) {  // forward.py:59
        v129[i] = (v127[i] <= v128[i]);  // forward.py:59
      }
      bool v130[8];  // forward.py:59
      for (int i = 0; i < 8; ++i) {  // forward.py:59
        v130[i] = (v126[i] & v129[i]);  // forward.py:59
      }
      float v131;  // forward.py:75
      v131 = (-INFINITY);  // forward.py:75
      float v132[8];  // forward.py:75
      for (int i = 0; i < 8; ++i) {  // forward.py:75
        v132[i] = (v130[i] ? v115[i] : v131);  // forward.py:75
      }
      float v133[8];  // backward.py:144
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:144
      for (int i = 0; i < 1; ++i) {  // backward.py:144
        ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v107[i];  // backward.py:144
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:144
      for (int i = 0; i < 8; ++i) {  // backward.py:144
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:144
        v133[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // backward.py:144
      }
      float v134[8];  // backward.py:144
      for (int i = 0; i < 8; ++i) {  // backward.py:144
        v134[i] = static_cast<float>(v132[i] - v133[i]);  // backward.py:144
      }
      float v135[8];  // backward.py:144
      for (int i = 0; i < 8; ++i) {  // backward.py:144
        v135[i] = exp2(v134[i]);  // backward.py:144
      }
      float v136[8];  // backward.py:145
      {  // backward.py:145
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:145
        for (int i = 0; i < 16; ++i) {  // backward.py:145
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:145
          ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v95[i]);  // backward.py:145
        }
        for (int i = 0; i < 16; ++i) {  // backward.py:145
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:145
          ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v44[i]);  // backward.py:145
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:145
        simdgroup_float8x8 mt_c[4];  // backward.py:145
        for (int s = 0; s < 4; ++s) {  // backward.py:145
          const int tile = warp + s * 4;  // backward.py:145
          mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:145
          if (tile < 16) {  // backward.py:145
            const int tm = tile / 4, tn = tile % 4;  // backward.py:145
            for (int kk = 0; kk < 64; kk += 8) {  // backward.py:145
              simdgroup_float8x8 ma, mb;  // backward.py:145
              simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // backward.py:145
              simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // backward.py:145
              simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:145
            }
          }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:145
        for (int s = 0; s < 4; ++s) {  // backward.py:145
          const int tile = warp + s * 4;  // backward.py:145
          if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // backward.py:145
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:145
        for (int i = 0; i < 8; ++i) {  // backward.py:145
          v136[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // backward.py:145
        }
      }
      half v137[8];  // backward.py:152
      for (int i = 0; i < 8; ++i) {  // backward.py:152
        v137[i] = static_cast<half>(v135[i]);  // backward.py:152
      }
      float v138[16];  // backward.py:152
      {  // backward.py:152
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:152
        for (int i = 0; i < 8; ++i) {  // backward.py:152
          const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:152
          ((threadgroup float*)(mt_smem + 0))[(e % 32) * 32 + e / 32] = static_cast<float>(v137[i]);  // backward.py:152
        }
        for (int i = 0; i < 16; ++i) {  // backward.py:152
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:152
          ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v95[i]);  // backward.py:152
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:152
        simdgroup_float8x8 mt_c[8];  // backward.py:152
        for (int s = 0; s < 8; ++s) {  // backward.py:152
          const int tile = warp + s * 4;  // backward.py:152
          mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:152
          if (tile < 32) {  // backward.py:152
            const int tm = tile / 8, tn = tile % 8;  // backward.py:152
            for (int kk = 0; kk < 32; kk += 8) {  // backward.py:152
              simdgroup_float8x8 ma, mb;  // backward.py:152
              simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // backward.py:152
              simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 64 + tn * 8, 64);  // backward.py:152
              simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:152
            }
          }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:152
        for (int s = 0; s < 8; ++s) {  // backward.py:152
          const int tile = warp + s * 4;  // backward.py:152
          if (tile < 32) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 8) * 512 + (tile % 8) * 8, 64);  // backward.py:152
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:152
        for (int i = 0; i < 16; ++i) {  // backward.py:152
          v138[i] = static_cast<float>(v75[i] + ((threadgroup float*)(mt_smem + 0))[(((i) / 8 * 128 + tid) * 8 + (i) % 8)]);  // backward.py:152
        }
      }
      float v139[8];  // backward.py:153
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:153
      for (int i = 0; i < 1; ++i) {  // backward.py:153
        ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v113[i];  // backward.py:153
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:153
      for (int i = 0; i < 8; ++i) {  // backward.py:153
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:153
        v139[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // backward.py:153
      }
      float v140[8];  // backward.py:153
      for (int i = 0; i < 8; ++i) {  // backward.py:153
        v140[i] = static_cast<float>(v136[i] - v139[i]);  // backward.py:153
      }
      float v141[8];  // backward.py:153
      for (int i = 0; i < 8; ++i) {  // backward.py:153
        v141[i] = static_cast<float>(v135[i] * v140[i]);  // backward.py:153
      }
      half v142[8];  // backward.py:154
      for (int i = 0; i < 8; ++i) {  // backward.py:154
        v142[i] = static_cast<half>(v141[i]);  // backward.py:154
      }
      float v143[16];  // backward.py:154
      {  // backward.py:154
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:154
        for (int i = 0; i < 8; ++i) {  // backward.py:154
          const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // backward.py:154
          ((threadgroup float*)(mt_smem + 0))[(e % 32) * 32 + e / 32] = static_cast<float>(v142[i]);  // backward.py:154
        }
        for (int i = 0; i < 16; ++i) {  // backward.py:154
          const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // backward.py:154
          ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v91[i]);  // backward.py:154
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:154
        simdgroup_float8x8 mt_c[8];  // backward.py:154
        for (int s = 0; s < 8; ++s) {  // backward.py:154
          const int tile = warp + s * 4;  // backward.py:154
          mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // backward.py:154
          if (tile < 32) {  // backward.py:154
            const int tm = tile / 8, tn = tile % 8;  // backward.py:154
            for (int kk = 0; kk < 32; kk += 8) {  // backward.py:154
              simdgroup_float8x8 ma, mb;  // backward.py:154
              simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // backward.py:154
              simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 64 + tn * 8, 64);  // backward.py:154
              simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // backward.py:154
            }
          }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:154
        for (int s = 0; s < 8; ++s) {  // backward.py:154
          const int tile = warp + s * 4;  // backward.py:154
          if (tile < 32) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 8) * 512 + (tile % 8) * 8, 64);  // backward.py:154
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);  // backward.py:154
        for (int i = 0; i < 16; ++i) {  // backward.py:154
          v143[i] = static_cast<float>(v76[i] + ((threadgroup float*)(mt_smem + 0))[(((i) / 8 * 128 + tid) * 8 + (i) % 8)]);  // backward.py:154
        }
      }
      for (int i = 0; i < 16; ++i) v75[i] = v138[i];  // backward.py:154
      for (int i = 0; i < 16; ++i) v76[i] = v143[i];  // backward.py:154
    }
    for (int i = 0; i < 16; ++i) v61[i] = v75[i];  // backward.py:154
    for (int i = 0; i < 16; ++i) v62[i] = v76[i];  // backward.py:154
  }
  int v144[16];  // backward.py:156
  for (int i = 0; i < 16; ++i) {  // backward.py:156
    v144[i] = (0 + v32[i]);  // backward.py:156
  }
  float v145[16];  // backward.py:156
  for (int i = 0; i < 16; ++i) {  // backward.py:156
    v145[i] = static_cast<float>(v62[i] * a16);  // backward.py:156
  }
  half v146[16];  // backward.py:156
  for (int i = 0; i < 16; ++i) {  // backward.py:156
    v146[i] = static_cast<half>(v145[i]);  // backward.py:156
  }
  for (int i = 0; i < 16; i += 4) {  // backward.py:156
    if (v36[i]) *((device packed_half4*)(p6 + v144[i])) = packed_half4(v146[i + 0], v146[i + 1], v146[i + 2], v146[i + 3]);  // backward.py:156
  }
  int v147[16];  // backward.py:157
  for (int i = 0; i < 16; ++i) {  // backward.py:157
    v147[i] = (0 + v32[i]);  // backward.py:157
  }
  half v148[16];  // backward.py:157
  for (int i = 0; i < 16; ++i) {  // backward.py:157
    v148[i] = static_cast<half>(v61[i]);  // backward.py:157
  }
  for (int i = 0; i < 16; i += 4) {  // backward.py:157
    if (v36[i]) *((device packed_half4*)(p7 + v147[i])) = packed_half4(v148[i + 0], v148[i + 1], v148[i + 2], v148[i + 3]);  // backward.py:157
  }

}
