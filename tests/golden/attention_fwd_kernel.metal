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
[[kernel]] void custom_kernel_mtriton__attention_fwd_kernel_11686402625022c3_iiiccssssssssssss_float16_t_float16_t_float16_t_float16_t_float_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_floats_int32_ts_floats_int32_ts_int32_t(
  const device float16_t* i0 [[buffer(0)]],
  const device float16_t* i1 [[buffer(1)]],
  const device float16_t* i2 [[buffer(2)]],
  const device float16_t* i3 [[buffer(3)]],
  const device float* i4 [[buffer(4)]],
  const constant int32_t& a5 [[buffer(5)]],
  const constant int32_t& a6 [[buffer(6)]],
  const constant int32_t& a7 [[buffer(7)]],
  const constant int32_t& a8 [[buffer(8)]],
  const constant int32_t& a9 [[buffer(9)]],
  const constant int32_t& a10 [[buffer(10)]],
  const constant int32_t& a11 [[buffer(11)]],
  const constant int32_t& a12 [[buffer(12)]],
  const constant float& a13 [[buffer(13)]],
  const constant int32_t& a14 [[buffer(14)]],
  const constant float& a15 [[buffer(15)]],
  const constant int32_t& a16 [[buffer(16)]],
  device int32_t* mt_done [[buffer(17)]],
  uint thread_index_in_threadgroup [[thread_index_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  device half* p0 = (device half*)(i0);
  device half* p1 = (device half*)(i1);
  device half* p2 = (device half*)(i2);
  device half* p3 = (device half*)(i3);
  device float* p4 = (device float*)(i4);
  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  threadgroup float4 mt_smem_v[1024];
  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;
  int v1;  // forward.py:101
  v1 = (int)(threadgroup_position_in_grid.x);  // forward.py:101
  int v2;  // forward.py:102
  v2 = (int)(threadgroup_position_in_grid.y);  // forward.py:102
  int v3;  // forward.py:103
  v3 = static_cast<int>(v2 / a9);  // forward.py:103
  int v4;  // forward.py:104
  v4 = static_cast<int>(v2 % a9);  // forward.py:104
  int v5;  // forward.py:105
  v5 = 1;  // forward.py:105
  int v6;  // forward.py:105
  v6 = static_cast<int>(v4 / v5);  // forward.py:105
  int v7;  // forward.py:50
  v7 = static_cast<int>(a9 * a11);  // forward.py:50
  int v8;  // forward.py:50
  v8 = 64;  // forward.py:50
  int v9;  // forward.py:50
  v9 = static_cast<int>(v7 * v8);  // forward.py:50
  int v10;  // forward.py:50
  v10 = 64;  // forward.py:50
  int v11;  // forward.py:50
  v11 = static_cast<int>(a11 * v10);  // forward.py:50
  int v12;  // forward.py:107
  v12 = 1;  // forward.py:107
  int v13;  // forward.py:107
  v13 = static_cast<int>(a9 / v12);  // forward.py:107
  int v14;  // forward.py:50
  v14 = static_cast<int>(v13 * a12);  // forward.py:50
  int v15;  // forward.py:50
  v15 = 64;  // forward.py:50
  int v16;  // forward.py:50
  v16 = static_cast<int>(v14 * v15);  // forward.py:50
  int v17;  // forward.py:50
  v17 = 64;  // forward.py:50
  int v18;  // forward.py:50
  v18 = static_cast<int>(a12 * v17);  // forward.py:50
  int v19;  // forward.py:108
  v19 = 32;  // forward.py:108
  int v20;  // forward.py:108
  v20 = static_cast<int>(v1 * v19);  // forward.py:108
  int v21[1];  // forward.py:108
  for (int i = 0; i < 1; ++i) {  // forward.py:108
    v21[i] = 0 + (int)((tid % 32));  // forward.py:108
  }
  int v22[1];  // forward.py:108
  for (int i = 0; i < 1; ++i) {  // forward.py:108
    v22[i] = static_cast<int>(v20 + v21[i]);  // forward.py:108
  }
  int v23[1];  // forward.py:109
  for (int i = 0; i < 1; ++i) {  // forward.py:109
    v23[i] = 0 + (int)((tid % 32));  // forward.py:109
  }
  int v24[1];  // forward.py:110
  for (int i = 0; i < 1; ++i) {  // forward.py:110
    v24[i] = 0 + (int)((tid % 64));  // forward.py:110
  }
  int v25;  // forward.py:111
  v25 = 64;  // forward.py:111
  bool v26[1];  // forward.py:111
  for (int i = 0; i < 1; ++i) {  // forward.py:111
    v26[i] = (v24[i] < v25);  // forward.py:111
  }
  int v27;  // forward.py:112
  v27 = static_cast<int>(a12 - a11);  // forward.py:112
  int v28[1];  // forward.py:112
  for (int i = 0; i < 1; ++i) {  // forward.py:112
    v28[i] = static_cast<int>(v22[i] + v27);  // forward.py:112
  }
  int v29;  // forward.py:115
  v29 = static_cast<int>(v3 * v9);  // forward.py:115
  int v30;  // forward.py:115
  v30 = (0 + v29);  // forward.py:115
  int v31;  // forward.py:115
  v31 = static_cast<int>(v4 * v11);  // forward.py:115
  int v32;  // forward.py:115
  v32 = (v30 + v31);  // forward.py:115
  int v33;  // forward.py:115
  v33 = 64;  // forward.py:115
  int v34[1];  // forward.py:115
  for (int i = 0; i < 1; ++i) {  // forward.py:115
    v34[i] = static_cast<int>(v22[i] * v33);  // forward.py:115
  }
  int v35[1];  // forward.py:115
  for (int i = 0; i < 1; ++i) {  // forward.py:115
    v35[i] = (v32 + v34[i]);  // forward.py:115
  }
  int v36[16];  // forward.py:115
  for (int i = 0; i < 16; ++i) {  // forward.py:115
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:115
    v36[i] = (v32 + static_cast<int>(static_cast<int>(v20 + (0 + (int)((((e) / 64) % 32)))) * v33));  // forward.py:115
  }
  int v37[16];  // forward.py:115
  for (int i = 0; i < 16; ++i) {  // forward.py:115
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:115
    v37[i] = (0 + (int)(((e) % 64)));  // forward.py:115
  }
  int v38[16];  // forward.py:115
  for (int i = 0; i < 16; ++i) {  // forward.py:115
    v38[i] = (v36[i] + v37[i]);  // forward.py:115
  }
  bool v39[1];  // forward.py:116
  for (int i = 0; i < 1; ++i) {  // forward.py:116
    v39[i] = (v22[i] < a11);  // forward.py:116
  }
  bool v40[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:116
    v40[i] = (static_cast<int>(v20 + (0 + (int)((((e) / 64) % 32)))) < a11);  // forward.py:116
  }
  bool v41[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:116
    v41[i] = ((0 + (int)(((e) % 64))) < v25);  // forward.py:116
  }
  bool v42[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    v42[i] = (v40[i] & v41[i]);  // forward.py:116
  }
  float v43;  // forward.py:114
  v43 = 0.0f;  // forward.py:114
  half v44;  // forward.py:114
  v44 = static_cast<half>(v43);  // forward.py:114
  half v45[16];  // forward.py:114
  for (int i = 0; i < 16; i += 4) {  // forward.py:114
    if (v42[i]) {  // forward.py:114
      const packed_half4 t = *((device const packed_half4*)(p0 + v38[i]));  // forward.py:114
      v45[i + 0] = t[0];  // forward.py:114
      v45[i + 1] = t[1];  // forward.py:114
      v45[i + 2] = t[2];  // forward.py:114
      v45[i + 3] = t[3];  // forward.py:114
    } else {
      v45[i + 0] = v44;  // forward.py:114
      v45[i + 1] = v44;  // forward.py:114
      v45[i + 2] = v44;  // forward.py:114
      v45[i + 3] = v44;  // forward.py:114
    }
  }
  int v46;  // forward.py:119
  v46 = static_cast<int>(v3 * v16);  // forward.py:119
  int v47;  // forward.py:119
  v47 = (0 + v46);  // forward.py:119
  int v48;  // forward.py:119
  v48 = static_cast<int>(v6 * v18);  // forward.py:119
  int v49;  // forward.py:119
  v49 = (v47 + v48);  // forward.py:119
  int v50;  // forward.py:120
  v50 = static_cast<int>(v3 * v16);  // forward.py:120
  int v51;  // forward.py:120
  v51 = (0 + v50);  // forward.py:120
  int v52;  // forward.py:120
  v52 = static_cast<int>(v6 * v18);  // forward.py:120
  int v53;  // forward.py:120
  v53 = (v51 + v52);  // forward.py:120
  float v54;  // forward.py:122
  v54 = 1.4426950408889634f;  // forward.py:122
  float v55;  // forward.py:122
  v55 = static_cast<float>(a13 * v54);  // forward.py:122
  float v56;  // forward.py:128
  v56 = INFINITY;  // forward.py:128
  float v57;  // forward.py:128
  v57 = static_cast<float>(0.0f - v56);  // forward.py:128
  int v58;  // forward.py:133
  v58 = 32;  // forward.py:133
  int v59;  // forward.py:133
  v59 = static_cast<int>(v1 * v58);  // forward.py:133
  int v60;  // forward.py:133
  v60 = static_cast<int>(a12 - a11);  // forward.py:133
  int v61;  // forward.py:133
  v61 = static_cast<int>(v59 + v60);  // forward.py:133
  int v62;  // forward.py:136
  v62 = 32;  // forward.py:136
  int v63;  // forward.py:136
  v63 = static_cast<int>(v61 + v62);  // forward.py:136
  int v64;  // forward.py:136
  v64 = static_cast<int>(min(a12, v63));  // forward.py:136
  int v65;  // forward.py:147
  v65 = 0;  // forward.py:147
  int v66;  // forward.py:147
  v66 = 32;  // forward.py:147
  float v67[1];  // forward.py:147
  float v68[1];  // forward.py:147
  float v69[16];  // forward.py:147
  for (int i = 0; i < 1; ++i) v67[i] = v57;  // forward.py:147
  for (int i = 0; i < 1; ++i) v68[i] = 0.0f;  // forward.py:147
  for (int i = 0; i < 16; ++i) v69[i] = 0.0f;  // forward.py:147
  for (int iv70 = v65; iv70 < v64; iv70 += v66) {  // forward.py:147
    int v71[1];  // forward.py:148
    for (int i = 0; i < 1; ++i) {  // forward.py:148
      v71[i] = static_cast<int>(iv70 + v23[i]);  // forward.py:148
    }
    bool v72[1];  // forward.py:149
    for (int i = 0; i < 1; ++i) {  // forward.py:149
      v72[i] = (v71[i] < a12);  // forward.py:149
    }
    bool v73[16];  // forward.py:149
    for (int i = 0; i < 16; ++i) {  // forward.py:149
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:149
      v73[i] = (static_cast<int>(iv70 + (0 + (int)((((e) / 64) % 32)))) < a12);  // forward.py:149
    }
    bool v74[16];  // forward.py:149
    for (int i = 0; i < 16; ++i) {  // forward.py:149
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:149
      v74[i] = ((0 + (int)(((e) % 64))) < v25);  // forward.py:149
    }
    bool v75[16];  // forward.py:149
    for (int i = 0; i < 16; ++i) {  // forward.py:149
      v75[i] = (v73[i] & v74[i]);  // forward.py:149
    }
    int v76;  // forward.py:150
    v76 = 64;  // forward.py:150
    int v77[1];  // forward.py:150
    for (int i = 0; i < 1; ++i) {  // forward.py:150
      v77[i] = static_cast<int>(v71[i] * v76);  // forward.py:150
    }
    int v78[1];  // forward.py:150
    for (int i = 0; i < 1; ++i) {  // forward.py:150
      v78[i] = (v49 + v77[i]);  // forward.py:150
    }
    int v79[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:150
      v79[i] = (v49 + static_cast<int>(static_cast<int>(iv70 + (0 + (int)((((e) / 64) % 32)))) * v76));  // forward.py:150
    }
    int v80[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:150
      v80[i] = (0 + (int)(((e) % 64)));  // forward.py:150
    }
    int v81[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      v81[i] = (v79[i] + v80[i]);  // forward.py:150
    }
    float v82;  // forward.py:150
    v82 = 0.0f;  // forward.py:150
    half v83;  // forward.py:150
    v83 = static_cast<half>(v82);  // forward.py:150
    half v84[16];  // forward.py:150
    for (int i = 0; i < 16; i += 4) {  // forward.py:150
      if (v75[i]) {  // forward.py:150
        const packed_half4 t = *((device const packed_half4*)(p1 + v81[i]));  // forward.py:150
        v84[i + 0] = t[0];  // forward.py:150
        v84[i + 1] = t[1];  // forward.py:150
        v84[i + 2] = t[2];  // forward.py:150
        v84[i + 3] = t[3];  // forward.py:150
      } else {
        v84[i + 0] = v83;  // forward.py:150
        v84[i + 1] = v83;  // forward.py:150
        v84[i + 2] = v83;  // forward.py:150
        v84[i + 3] = v83;  // forward.py:150
      }
    }
    float v85[8];  // forward.py:151
    {  // forward.py:151
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:151
      for (int i = 0; i < 16; ++i) {  // forward.py:151
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:151
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v45[i]);  // forward.py:151
      }
      for (int i = 0; i < 16; ++i) {  // forward.py:151
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:151
        ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v84[i]);  // forward.py:151
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:151
      simdgroup_float8x8 mt_c[4];  // forward.py:151
      for (int s = 0; s < 4; ++s) {  // forward.py:151
        const int tile = warp + s * 4;  // forward.py:151
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // forward.py:151
        if (tile < 16) {  // forward.py:151
          const int tm = tile / 4, tn = tile % 4;  // forward.py:151
          for (int kk = 0; kk < 64; kk += 8) {  // forward.py:151
            simdgroup_float8x8 ma, mb;  // forward.py:151
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // forward.py:151
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // forward.py:151
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // forward.py:151
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:151
      for (int s = 0; s < 4; ++s) {  // forward.py:151
        const int tile = warp + s * 4;  // forward.py:151
        if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // forward.py:151
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:151
      for (int i = 0; i < 8; ++i) {  // forward.py:151
        v85[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // forward.py:151
      }
    }
    float v86[8];  // forward.py:151
    for (int i = 0; i < 8; ++i) {  // forward.py:151
      v86[i] = static_cast<float>(v85[i] * v55);  // forward.py:151
    }
    bool v87[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v87[i] = (v22[i] < a11);  // forward.py:57
    }
    bool v88[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v88[i] = (v71[i] < a12);  // forward.py:57
    }
    bool v89[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v89[i] = (static_cast<int>(v20 + (0 + (int)((((e) / 32) % 32)))) < a11);  // forward.py:57
    }
    bool v90[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v90[i] = (static_cast<int>(iv70 + (0 + (int)(((e) % 32)))) < a12);  // forward.py:57
    }
    bool v91[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v91[i] = (v89[i] & v90[i]);  // forward.py:57
    }
    int v92;  // forward.py:57
    v92 = 0;  // forward.py:57
    bool v93[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v93[i] = (v71[i] >= v92);  // forward.py:57
    }
    bool v94[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v94[i] = (static_cast<int>(iv70 + (0 + (int)(((e) % 32)))) >= v92);  // forward.py:57
    }
    bool v95[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v95[i] = (v91[i] & v94[i]);  // forward.py:57
    }
    int v96[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v96[i] = static_cast<int>(iv70 + (0 + (int)(((e) % 32))));  // forward.py:59
    }
    int v97[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v97[i] = static_cast<int>(static_cast<int>(v20 + (0 + (int)((((e) / 32) % 32)))) + v27);  // forward.py:59
    }
    bool v98[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v98[i] = (v96[i] <= v97[i]);  // forward.py:59
    }
    bool v99[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v99[i] = (v95[i] & v98[i]);  // forward.py:59
    }
    float v100;  // forward.py:75
    v100 = (-INFINITY);  // forward.py:75
    float v101[8];  // forward.py:75
    for (int i = 0; i < 8; ++i) {  // forward.py:75
      v101[i] = (v99[i] ? v86[i] : v100);  // forward.py:75
    }
    float v102[1];  // forward.py:82
    {  // forward.py:82
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      for (int i = 0; i < 8; ++i) {  // forward.py:82
        ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)] = v101[i];  // forward.py:82
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      const int g = min(tid / 4, 31);  // forward.py:82
      const int p = tid % 4;  // forward.py:82
      float acc103 = ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (p))];  // forward.py:82
      for (int l = p + 4; l < 32; l += 4) {  // forward.py:82
        acc103 = max(acc103, ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (l))]);  // forward.py:82
      }
      float o104 = simd_shuffle_xor(acc103, 2);  // forward.py:82
      acc103 = max(acc103, o104);  // forward.py:82
      float o105 = simd_shuffle_xor(acc103, 1);  // forward.py:82
      acc103 = max(acc103, o105);  // forward.py:82
      if (p == 0 && tid < 128) {  // forward.py:82
        ((threadgroup float*)(mt_smem + 4096))[g] = static_cast<float>(acc103);  // forward.py:82
      }  // forward.py:82
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      for (int i = 0; i < 1; ++i) {  // forward.py:82
        v102[i] = ((threadgroup float*)(mt_smem + 4096))[(tid % 32)];  // forward.py:82
      }
    }
    float v106[1];  // forward.py:82
    for (int i = 0; i < 1; ++i) {  // forward.py:82
      v106[i] = max(v67[i], v102[i]);  // forward.py:82
    }
    float v107;  // forward.py:84
    v107 = (-INFINITY);  // forward.py:84
    bool v108[1];  // forward.py:84
    for (int i = 0; i < 1; ++i) {  // forward.py:84
      v108[i] = (v106[i] == v107);  // forward.py:84
    }
    float v109;  // forward.py:84
    v109 = 0.0f;  // forward.py:84
    float v110[1];  // forward.py:84
    for (int i = 0; i < 1; ++i) {  // forward.py:84
      v110[i] = (v108[i] ? v109 : v106[i]);  // forward.py:84
    }
    float v111[8];  // forward.py:85
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:85
    for (int i = 0; i < 1; ++i) {  // forward.py:85
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v110[i];  // forward.py:85
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:85
      v111[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // forward.py:85
    }
    float v112[8];  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      v112[i] = static_cast<float>(v101[i] - v111[i]);  // forward.py:85
    }
    float v113[8];  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      v113[i] = exp2(v112[i]);  // forward.py:85
    }
    float v114[1];  // forward.py:86
    for (int i = 0; i < 1; ++i) {  // forward.py:86
      v114[i] = static_cast<float>(v67[i] - v110[i]);  // forward.py:86
    }
    float v115[1];  // forward.py:86
    for (int i = 0; i < 1; ++i) {  // forward.py:86
      v115[i] = exp2(v114[i]);  // forward.py:86
    }
    float v116[1];  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      v116[i] = static_cast<float>(v68[i] * v115[i]);  // forward.py:87
    }
    float v117[1];  // forward.py:87
    {  // forward.py:87
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      for (int i = 0; i < 8; ++i) {  // forward.py:87
        ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)] = v113[i];  // forward.py:87
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      const int g = min(tid / 4, 31);  // forward.py:87
      const int p = tid % 4;  // forward.py:87
      float acc118 = ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (p))];  // forward.py:87
      for (int l = p + 4; l < 32; l += 4) {  // forward.py:87
        acc118 = static_cast<float>(acc118 + ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (l))]);  // forward.py:87
      }
      float o119 = simd_shuffle_xor(acc118, 2);  // forward.py:87
      acc118 = static_cast<float>(acc118 + o119);  // forward.py:87
      float o120 = simd_shuffle_xor(acc118, 1);  // forward.py:87
      acc118 = static_cast<float>(acc118 + o120);  // forward.py:87
      if (p == 0 && tid < 128) {  // forward.py:87
        ((threadgroup float*)(mt_smem + 4096))[g] = static_cast<float>(acc118);  // forward.py:87
      }  // forward.py:87
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      for (int i = 0; i < 1; ++i) {  // forward.py:87
        v117[i] = ((threadgroup float*)(mt_smem + 4096))[(tid % 32)];  // forward.py:87
      }
    }
    float v121[1];  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      v121[i] = static_cast<float>(v116[i] + v117[i]);  // forward.py:87
    }
    float v122[16];  // forward.py:87
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v115[i];  // forward.py:87
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
    for (int i = 0; i < 16; ++i) {  // forward.py:87
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:87
      v122[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 64) % 32)];  // forward.py:87
    }
    float v123[16];  // forward.py:87
    for (int i = 0; i < 16; ++i) {  // forward.py:87
      v123[i] = static_cast<float>(v69[i] * v122[i]);  // forward.py:87
    }
    int v124;  // forward.py:161
    v124 = 64;  // forward.py:161
    int v125[1];  // forward.py:161
    for (int i = 0; i < 1; ++i) {  // forward.py:161
      v125[i] = static_cast<int>(v71[i] * v124);  // forward.py:161
    }
    int v126[1];  // forward.py:161
    for (int i = 0; i < 1; ++i) {  // forward.py:161
      v126[i] = (v53 + v125[i]);  // forward.py:161
    }
    int v127[16];  // forward.py:161
    for (int i = 0; i < 16; ++i) {  // forward.py:161
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:161
      v127[i] = (v53 + static_cast<int>(static_cast<int>(iv70 + (0 + (int)((((e) / 64) % 32)))) * v124));  // forward.py:161
    }
    int v128[16];  // forward.py:161
    for (int i = 0; i < 16; ++i) {  // forward.py:161
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:161
      v128[i] = (0 + (int)(((e) % 64)));  // forward.py:161
    }
    int v129[16];  // forward.py:161
    for (int i = 0; i < 16; ++i) {  // forward.py:161
      v129[i] = (v127[i] + v128[i]);  // forward.py:161
    }
    float v130;  // forward.py:161
    v130 = 0.0f;  // forward.py:161
    half v131;  // forward.py:161
    v131 = static_cast<half>(v130);  // forward.py:161
    half v132[16];  // forward.py:161
    for (int i = 0; i < 16; i += 4) {  // forward.py:161
      if (v75[i]) {  // forward.py:161
        const packed_half4 t = *((device const packed_half4*)(p2 + v129[i]));  // forward.py:161
        v132[i + 0] = t[0];  // forward.py:161
        v132[i + 1] = t[1];  // forward.py:161
        v132[i + 2] = t[2];  // forward.py:161
        v132[i + 3] = t[3];  // forward.py:161
      } else {
        v132[i + 0] = v131;  // forward.py:161
        v132[i + 1] = v131;  // forward.py:161
        v132[i + 2] = v131;  // forward.py:161
        v132[i + 3] = v131;  // forward.py:161
      }
    }
    half v133[8];  // forward.py:162
    for (int i = 0; i < 8; ++i) {  // forward.py:162
      v133[i] = static_cast<half>(v113[i]);  // forward.py:162
    }
    float v134[16];  // forward.py:162
    {  // forward.py:162
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:162
      for (int i = 0; i < 8; ++i) {  // forward.py:162
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:162
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v133[i]);  // forward.py:162
      }
      for (int i = 0; i < 16; ++i) {  // forward.py:162
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:162
        ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v132[i]);  // forward.py:162
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:162
      simdgroup_float8x8 mt_c[8];  // forward.py:162
      for (int s = 0; s < 8; ++s) {  // forward.py:162
        const int tile = warp + s * 4;  // forward.py:162
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // forward.py:162
        if (tile < 32) {  // forward.py:162
          const int tm = tile / 8, tn = tile % 8;  // forward.py:162
          for (int kk = 0; kk < 32; kk += 8) {  // forward.py:162
            simdgroup_float8x8 ma, mb;  // forward.py:162
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // forward.py:162
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 64 + tn * 8, 64);  // forward.py:162
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // forward.py:162
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:162
      for (int s = 0; s < 8; ++s) {  // forward.py:162
        const int tile = warp + s * 4;  // forward.py:162
        if (tile < 32) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 8) * 512 + (tile % 8) * 8, 64);  // forward.py:162
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:162
      for (int i = 0; i < 16; ++i) {  // forward.py:162
        v134[i] = static_cast<float>(v123[i] + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // forward.py:162
      }
    }
    for (int i = 0; i < 1; ++i) v67[i] = v106[i];  // forward.py:162
    for (int i = 0; i < 1; ++i) v68[i] = v121[i];  // forward.py:162
    for (int i = 0; i < 16; ++i) v69[i] = v134[i];  // forward.py:162
  }
  float v135;  // forward.py:164
  v135 = 0.0f;  // forward.py:164
  bool v136[1];  // forward.py:164
  for (int i = 0; i < 1; ++i) {  // forward.py:164
    v136[i] = (v68[i] == v135);  // forward.py:164
  }
  float v137;  // forward.py:164
  v137 = 1.0f;  // forward.py:164
  float v138[1];  // forward.py:164
  for (int i = 0; i < 1; ++i) {  // forward.py:164
    v138[i] = (v136[i] ? v137 : v68[i]);  // forward.py:164
  }
  float v139[16];  // forward.py:165
  threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:165
  for (int i = 0; i < 1; ++i) {  // forward.py:165
    ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v138[i];  // forward.py:165
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:165
  for (int i = 0; i < 16; ++i) {  // forward.py:165
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:165
    v139[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 64) % 32)];  // forward.py:165
  }
  float v140[16];  // forward.py:165
  for (int i = 0; i < 16; ++i) {  // forward.py:165
    v140[i] = static_cast<float>(v69[i] / v139[i]);  // forward.py:165
  }
  int v141;  // forward.py:167
  v141 = static_cast<int>(v3 * v9);  // forward.py:167
  int v142;  // forward.py:167
  v142 = (0 + v141);  // forward.py:167
  int v143;  // forward.py:167
  v143 = static_cast<int>(v4 * v11);  // forward.py:167
  int v144;  // forward.py:167
  v144 = (v142 + v143);  // forward.py:167
  int v145;  // forward.py:167
  v145 = 64;  // forward.py:167
  int v146[1];  // forward.py:167
  for (int i = 0; i < 1; ++i) {  // forward.py:167
    v146[i] = static_cast<int>(v22[i] * v145);  // forward.py:167
  }
  int v147[1];  // forward.py:167
  for (int i = 0; i < 1; ++i) {  // forward.py:167
    v147[i] = (v144 + v146[i]);  // forward.py:167
  }
  int v148[16];  // forward.py:167
  for (int i = 0; i < 16; ++i) {  // forward.py:167
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:167
    v148[i] = (v144 + static_cast<int>(static_cast<int>(v20 + (0 + (int)((((e) / 64) % 32)))) * v145));  // forward.py:167
  }
  int v149[16];  // forward.py:167
  for (int i = 0; i < 16; ++i) {  // forward.py:167
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:167
    v149[i] = (0 + (int)(((e) % 64)));  // forward.py:167
  }
  int v150[16];  // forward.py:167
  for (int i = 0; i < 16; ++i) {  // forward.py:167
    v150[i] = (v148[i] + v149[i]);  // forward.py:167
  }
  half v151[16];  // forward.py:168
  for (int i = 0; i < 16; ++i) {  // forward.py:168
    v151[i] = static_cast<half>(v140[i]);  // forward.py:168
  }
  bool v152[1];  // forward.py:169
  for (int i = 0; i < 1; ++i) {  // forward.py:169
    v152[i] = (v22[i] < a11);  // forward.py:169
  }
  bool v153[16];  // forward.py:169
  for (int i = 0; i < 16; ++i) {  // forward.py:169
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:169
    v153[i] = (static_cast<int>(v20 + (0 + (int)((((e) / 64) % 32)))) < a11);  // forward.py:169
  }
  bool v154[16];  // forward.py:169
  for (int i = 0; i < 16; ++i) {  // forward.py:169
    const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:169
    v154[i] = ((0 + (int)(((e) % 64))) < v25);  // forward.py:169
  }
  bool v155[16];  // forward.py:169
  for (int i = 0; i < 16; ++i) {  // forward.py:169
    v155[i] = (v153[i] & v154[i]);  // forward.py:169
  }
  for (int i = 0; i < 16; i += 4) {  // forward.py:166
    if (v155[i]) *((device packed_half4*)(p3 + v150[i])) = packed_half4(v151[i + 0], v151[i + 1], v151[i + 2], v151[i + 3]);  // forward.py:166
  }
  float v156;  // forward.py:171
  v156 = 0.0f;  // forward.py:171
  bool v157[1];  // forward.py:171
  for (int i = 0; i < 1; ++i) {  // forward.py:171
    v157[i] = (v68[i] == v156);  // forward.py:171
  }
  float v158[1];  // forward.py:171
  for (int i = 0; i < 1; ++i) {  // forward.py:171
    v158[i] = log2(v138[i]);  // forward.py:171
  }
  float v159[1];  // forward.py:171
  for (int i = 0; i < 1; ++i) {  // forward.py:171
    v159[i] = static_cast<float>(v67[i] + v158[i]);  // forward.py:171
  }
  float v160;  // forward.py:171
  v160 = 0.6931471805599453f;  // forward.py:171
  float v161[1];  // forward.py:171
  for (int i = 0; i < 1; ++i) {  // forward.py:171
    v161[i] = static_cast<float>(v159[i] * v160);  // forward.py:171
  }
  float v162;  // forward.py:171
  v162 = (-INFINITY);  // forward.py:171
  float v163[1];  // forward.py:171
  for (int i = 0; i < 1; ++i) {  // forward.py:171
    v163[i] = (v157[i] ? v162 : v161[i]);  // forward.py:171
  }
  int v164;  // forward.py:172
  v164 = static_cast<int>(v2 * a11);  // forward.py:172
  int v165;  // forward.py:172
  v165 = (0 + v164);  // forward.py:172
  int v166[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v166[i] = (v165 + v22[i]);  // forward.py:172
  }
  bool v167[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v167[i] = (v22[i] < a11);  // forward.py:172
  }
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    if ((tid < 32) && v167[i]) p4[v166[i]] = v163[i];  // forward.py:172
  }

}
