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
[[kernel]] void custom_kernel_mtriton__attention_fwd_kernel_9e57a1dc24e71331_iiiccssssssssssss_float16_t_float16_t_float16_t_float16_t_float_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_int32_ts_floats_int32_ts_floats_int32_ts_int32_t(
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
  int v1;  // forward.py:102
  v1 = (int)(threadgroup_position_in_grid.x);  // forward.py:102
  int v2;  // forward.py:103
  v2 = (int)(threadgroup_position_in_grid.y);  // forward.py:103
  int v3;  // forward.py:104
  v3 = static_cast<int>(v2 / a9);  // forward.py:104
  int v4;  // forward.py:105
  v4 = static_cast<int>(v2 % a9);  // forward.py:105
  int v5;  // forward.py:106
  v5 = static_cast<int>(v4 / a10);  // forward.py:106
  int v6;  // forward.py:50
  v6 = static_cast<int>(a9 * a11);  // forward.py:50
  int v7;  // forward.py:50
  v7 = 64;  // forward.py:50
  int v8;  // forward.py:50
  v8 = static_cast<int>(v6 * v7);  // forward.py:50
  int v9;  // forward.py:50
  v9 = 64;  // forward.py:50
  int v10;  // forward.py:50
  v10 = static_cast<int>(a11 * v9);  // forward.py:50
  int v11;  // forward.py:108
  v11 = static_cast<int>(a9 / a10);  // forward.py:108
  int v12;  // forward.py:50
  v12 = static_cast<int>(v11 * a12);  // forward.py:50
  int v13;  // forward.py:50
  v13 = 64;  // forward.py:50
  int v14;  // forward.py:50
  v14 = static_cast<int>(v12 * v13);  // forward.py:50
  int v15;  // forward.py:50
  v15 = 64;  // forward.py:50
  int v16;  // forward.py:50
  v16 = static_cast<int>(a12 * v15);  // forward.py:50
  int v17;  // forward.py:109
  v17 = 32;  // forward.py:109
  int v18;  // forward.py:109
  v18 = static_cast<int>(v1 * v17);  // forward.py:109
  int v19[1];  // forward.py:109
  for (int i = 0; i < 1; ++i) {  // forward.py:109
    v19[i] = 0 + (int)((tid % 32));  // forward.py:109
  }
  int v20[1];  // forward.py:109
  for (int i = 0; i < 1; ++i) {  // forward.py:109
    v20[i] = static_cast<int>(v18 + v19[i]);  // forward.py:109
  }
  int v21[1];  // forward.py:110
  for (int i = 0; i < 1; ++i) {  // forward.py:110
    v21[i] = 0 + (int)((tid % 32));  // forward.py:110
  }
  int v22[1];  // forward.py:111
  for (int i = 0; i < 1; ++i) {  // forward.py:111
    v22[i] = 0 + (int)((tid % 64));  // forward.py:111
  }
  int v23;  // forward.py:112
  v23 = 64;  // forward.py:112
  bool v24[1];  // forward.py:112
  for (int i = 0; i < 1; ++i) {  // forward.py:112
    v24[i] = (v22[i] < v23);  // forward.py:112
  }
  int v25;  // forward.py:113
  v25 = static_cast<int>(a12 - a11);  // forward.py:113
  int v26[1];  // forward.py:113
  for (int i = 0; i < 1; ++i) {  // forward.py:113
    v26[i] = static_cast<int>(v20[i] + v25);  // forward.py:113
  }
  int v27;  // forward.py:116
  v27 = static_cast<int>(v3 * v8);  // forward.py:116
  int v28;  // forward.py:116
  v28 = (0 + v27);  // forward.py:116
  int v29;  // forward.py:116
  v29 = static_cast<int>(v4 * v10);  // forward.py:116
  int v30;  // forward.py:116
  v30 = (v28 + v29);  // forward.py:116
  int v31;  // forward.py:116
  v31 = 64;  // forward.py:116
  int v32[1];  // forward.py:116
  for (int i = 0; i < 1; ++i) {  // forward.py:116
    v32[i] = static_cast<int>(v20[i] * v31);  // forward.py:116
  }
  int v33[1];  // forward.py:116
  for (int i = 0; i < 1; ++i) {  // forward.py:116
    v33[i] = (v30 + v32[i]);  // forward.py:116
  }
  int v34[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:116
    v34[i] = (v30 + static_cast<int>(static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) * v31));  // forward.py:116
  }
  int v35[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:116
    v35[i] = (0 + (int)(((e) % 64)));  // forward.py:116
  }
  int v36[16];  // forward.py:116
  for (int i = 0; i < 16; ++i) {  // forward.py:116
    v36[i] = (v34[i] + v35[i]);  // forward.py:116
  }
  bool v37[1];  // forward.py:117
  for (int i = 0; i < 1; ++i) {  // forward.py:117
    v37[i] = (v20[i] < a11);  // forward.py:117
  }
  bool v38[16];  // forward.py:117
  for (int i = 0; i < 16; ++i) {  // forward.py:117
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:117
    v38[i] = (static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) < a11);  // forward.py:117
  }
  bool v39[16];  // forward.py:117
  for (int i = 0; i < 16; ++i) {  // forward.py:117
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:117
    v39[i] = ((0 + (int)(((e) % 64))) < v23);  // forward.py:117
  }
  bool v40[16];  // forward.py:117
  for (int i = 0; i < 16; ++i) {  // forward.py:117
    v40[i] = (v38[i] & v39[i]);  // forward.py:117
  }
  float v41;  // forward.py:115
  v41 = 0.0f;  // forward.py:115
  half v42;  // forward.py:115
  v42 = static_cast<half>(v41);  // forward.py:115
  half v43[16];  // forward.py:115
  for (int i = 0; i < 16; i += 4) {  // forward.py:115
    if (v40[i]) {  // forward.py:115
      const packed_half4 t = *((device const packed_half4*)(p0 + v36[i]));  // forward.py:115
      v43[i + 0] = t[0];  // forward.py:115
      v43[i + 1] = t[1];  // forward.py:115
      v43[i + 2] = t[2];  // forward.py:115
      v43[i + 3] = t[3];  // forward.py:115
    } else {
      v43[i + 0] = v42;  // forward.py:115
      v43[i + 1] = v42;  // forward.py:115
      v43[i + 2] = v42;  // forward.py:115
      v43[i + 3] = v42;  // forward.py:115
    }
  }
  int v44;  // forward.py:120
  v44 = static_cast<int>(v3 * v14);  // forward.py:120
  int v45;  // forward.py:120
  v45 = (0 + v44);  // forward.py:120
  int v46;  // forward.py:120
  v46 = static_cast<int>(v5 * v16);  // forward.py:120
  int v47;  // forward.py:120
  v47 = (v45 + v46);  // forward.py:120
  int v48;  // forward.py:121
  v48 = static_cast<int>(v3 * v14);  // forward.py:121
  int v49;  // forward.py:121
  v49 = (0 + v48);  // forward.py:121
  int v50;  // forward.py:121
  v50 = static_cast<int>(v5 * v16);  // forward.py:121
  int v51;  // forward.py:121
  v51 = (v49 + v50);  // forward.py:121
  float v52;  // forward.py:123
  v52 = 1.4426950408889634f;  // forward.py:123
  float v53;  // forward.py:123
  v53 = static_cast<float>(a13 * v52);  // forward.py:123
  float v54;  // forward.py:129
  v54 = INFINITY;  // forward.py:129
  float v55;  // forward.py:129
  v55 = static_cast<float>(0.0f - v54);  // forward.py:129
  int v56;  // forward.py:134
  v56 = 32;  // forward.py:134
  int v57;  // forward.py:134
  v57 = static_cast<int>(v1 * v56);  // forward.py:134
  int v58;  // forward.py:134
  v58 = static_cast<int>(a12 - a11);  // forward.py:134
  int v59;  // forward.py:134
  v59 = static_cast<int>(v57 + v58);  // forward.py:134
  int v60;  // forward.py:137
  v60 = 32;  // forward.py:137
  int v61;  // forward.py:137
  v61 = static_cast<int>(v59 + v60);  // forward.py:137
  int v62;  // forward.py:137
  v62 = static_cast<int>(min(a12, v61));  // forward.py:137
  int v63;  // forward.py:148
  v63 = 0;  // forward.py:148
  int v64;  // forward.py:148
  v64 = 32;  // forward.py:148
  float v65[1];  // forward.py:148
  float v66[1];  // forward.py:148
  float v67[16];  // forward.py:148
  for (int i = 0; i < 1; ++i) v65[i] = v55;  // forward.py:148
  for (int i = 0; i < 1; ++i) v66[i] = 0.0f;  // forward.py:148
  for (int i = 0; i < 16; ++i) v67[i] = 0.0f;  // forward.py:148
  for (int iv68 = v63; iv68 < v62; iv68 += v64) {  // forward.py:148
    int v69[1];  // forward.py:149
    for (int i = 0; i < 1; ++i) {  // forward.py:149
      v69[i] = static_cast<int>(iv68 + v21[i]);  // forward.py:149
    }
    bool v70[1];  // forward.py:150
    for (int i = 0; i < 1; ++i) {  // forward.py:150
      v70[i] = (v69[i] < a12);  // forward.py:150
    }
    bool v71[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:150
      v71[i] = (static_cast<int>(iv68 + (0 + (int)((((e) / 64) % 32)))) < a12);  // forward.py:150
    }
    bool v72[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:150
      v72[i] = ((0 + (int)(((e) % 64))) < v23);  // forward.py:150
    }
    bool v73[16];  // forward.py:150
    for (int i = 0; i < 16; ++i) {  // forward.py:150
      v73[i] = (v71[i] & v72[i]);  // forward.py:150
    }
    int v74;  // forward.py:151
    v74 = 64;  // forward.py:151
    int v75[1];  // forward.py:151
    for (int i = 0; i < 1; ++i) {  // forward.py:151
      v75[i] = static_cast<int>(v69[i] * v74);  // forward.py:151
    }
    int v76[1];  // forward.py:151
    for (int i = 0; i < 1; ++i) {  // forward.py:151
      v76[i] = (v47 + v75[i]);  // forward.py:151
    }
    int v77[16];  // forward.py:151
    for (int i = 0; i < 16; ++i) {  // forward.py:151
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:151
      v77[i] = (v47 + static_cast<int>(static_cast<int>(iv68 + (0 + (int)((((e) / 64) % 32)))) * v74));  // forward.py:151
    }
    int v78[16];  // forward.py:151
    for (int i = 0; i < 16; ++i) {  // forward.py:151
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:151
      v78[i] = (0 + (int)(((e) % 64)));  // forward.py:151
    }
    int v79[16];  // forward.py:151
    for (int i = 0; i < 16; ++i) {  // forward.py:151
      v79[i] = (v77[i] + v78[i]);  // forward.py:151
    }
    float v80;  // forward.py:151
    v80 = 0.0f;  // forward.py:151
    half v81;  // forward.py:151
    v81 = static_cast<half>(v80);  // forward.py:151
    half v82[16];  // forward.py:151
    for (int i = 0; i < 16; i += 4) {  // forward.py:151
      if (v73[i]) {  // forward.py:151
        const packed_half4 t = *((device const packed_half4*)(p1 + v79[i]));  // forward.py:151
        v82[i + 0] = t[0];  // forward.py:151
        v82[i + 1] = t[1];  // forward.py:151
        v82[i + 2] = t[2];  // forward.py:151
        v82[i + 3] = t[3];  // forward.py:151
      } else {
        v82[i + 0] = v81;  // forward.py:151
        v82[i + 1] = v81;  // forward.py:151
        v82[i + 2] = v81;  // forward.py:151
        v82[i + 3] = v81;  // forward.py:151
      }
    }
    float v83[8];  // forward.py:152
    {  // forward.py:152
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:152
      for (int i = 0; i < 16; ++i) {  // forward.py:152
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:152
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v43[i]);  // forward.py:152
      }
      for (int i = 0; i < 16; ++i) {  // forward.py:152
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:152
        ((threadgroup float*)(mt_smem + 8192))[(e % 64) * 32 + e / 64] = static_cast<float>(v82[i]);  // forward.py:152
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:152
      simdgroup_float8x8 mt_c[4];  // forward.py:152
      for (int s = 0; s < 4; ++s) {  // forward.py:152
        const int tile = warp + s * 4;  // forward.py:152
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // forward.py:152
        if (tile < 16) {  // forward.py:152
          const int tm = tile / 4, tn = tile % 4;  // forward.py:152
          for (int kk = 0; kk < 64; kk += 8) {  // forward.py:152
            simdgroup_float8x8 ma, mb;  // forward.py:152
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 512 + kk, 64);  // forward.py:152
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 8192)) + kk * 32 + tn * 8, 32);  // forward.py:152
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // forward.py:152
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:152
      for (int s = 0; s < 4; ++s) {  // forward.py:152
        const int tile = warp + s * 4;  // forward.py:152
        if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // forward.py:152
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:152
      for (int i = 0; i < 8; ++i) {  // forward.py:152
        v83[i] = static_cast<float>(0.0f + ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)]);  // forward.py:152
      }
    }
    float v84[8];  // forward.py:152
    for (int i = 0; i < 8; ++i) {  // forward.py:152
      v84[i] = static_cast<float>(v83[i] * v53);  // forward.py:152
    }
    bool v85[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v85[i] = (v20[i] < a11);  // forward.py:57
    }
    bool v86[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v86[i] = (v69[i] < a12);  // forward.py:57
    }
    bool v87[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v87[i] = (static_cast<int>(v18 + (0 + (int)((((e) / 32) % 32)))) < a11);  // forward.py:57
    }
    bool v88[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v88[i] = (static_cast<int>(iv68 + (0 + (int)(((e) % 32)))) < a12);  // forward.py:57
    }
    bool v89[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v89[i] = (v87[i] & v88[i]);  // forward.py:57
    }
    int v90;  // forward.py:57
    v90 = 0;  // forward.py:57
    bool v91[1];  // forward.py:57
    for (int i = 0; i < 1; ++i) {  // forward.py:57
      v91[i] = (v69[i] >= v90);  // forward.py:57
    }
    bool v92[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:57
      v92[i] = (static_cast<int>(iv68 + (0 + (int)(((e) % 32)))) >= v90);  // forward.py:57
    }
    bool v93[8];  // forward.py:57
    for (int i = 0; i < 8; ++i) {  // forward.py:57
      v93[i] = (v89[i] & v92[i]);  // forward.py:57
    }
    int v94[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v94[i] = static_cast<int>(iv68 + (0 + (int)(((e) % 32))));  // forward.py:59
    }
    int v95[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:59
      v95[i] = static_cast<int>(static_cast<int>(v18 + (0 + (int)((((e) / 32) % 32)))) + v25);  // forward.py:59
    }
    bool v96[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v96[i] = (v94[i] <= v95[i]);  // forward.py:59
    }
    bool v97[8];  // forward.py:59
    for (int i = 0; i < 8; ++i) {  // forward.py:59
      v97[i] = (v93[i] & v96[i]);  // forward.py:59
    }
    float v98;  // forward.py:75
    v98 = (-INFINITY);  // forward.py:75
    float v99[8];  // forward.py:75
    for (int i = 0; i < 8; ++i) {  // forward.py:75
      v99[i] = (v97[i] ? v84[i] : v98);  // forward.py:75
    }
    float v100[1];  // forward.py:82
    {  // forward.py:82
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      for (int i = 0; i < 8; ++i) {  // forward.py:82
        ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)] = v99[i];  // forward.py:82
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      const int g = min(tid / 4, 31);  // forward.py:82
      const int p = tid % 4;  // forward.py:82
      float acc101 = ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (p))];  // forward.py:82
      for (int l = p + 4; l < 32; l += 4) {  // forward.py:82
        acc101 = max(acc101, ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (l))]);  // forward.py:82
      }
      float o102 = simd_shuffle_xor(acc101, 2);  // forward.py:82
      acc101 = max(acc101, o102);  // forward.py:82
      float o103 = simd_shuffle_xor(acc101, 1);  // forward.py:82
      acc101 = max(acc101, o103);  // forward.py:82
      if (p == 0 && tid < 128) {  // forward.py:82
        ((threadgroup float*)(mt_smem + 4096))[g] = static_cast<float>(acc101);  // forward.py:82
      }  // forward.py:82
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:82
      for (int i = 0; i < 1; ++i) {  // forward.py:82
        v100[i] = ((threadgroup float*)(mt_smem + 4096))[(tid % 32)];  // forward.py:82
      }
    }
    float v104[1];  // forward.py:82
    for (int i = 0; i < 1; ++i) {  // forward.py:82
      v104[i] = max(v65[i], v100[i]);  // forward.py:82
    }
    float v105;  // forward.py:84
    v105 = (-INFINITY);  // forward.py:84
    bool v106[1];  // forward.py:84
    for (int i = 0; i < 1; ++i) {  // forward.py:84
      v106[i] = (v104[i] == v105);  // forward.py:84
    }
    float v107;  // forward.py:84
    v107 = 0.0f;  // forward.py:84
    float v108[1];  // forward.py:84
    for (int i = 0; i < 1; ++i) {  // forward.py:84
      v108[i] = (v106[i] ? v107 : v104[i]);  // forward.py:84
    }
    float v109[8];  // forward.py:85
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:85
    for (int i = 0; i < 1; ++i) {  // forward.py:85
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v108[i];  // forward.py:85
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:85
      v109[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 32) % 32)];  // forward.py:85
    }
    float v110[8];  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      v110[i] = static_cast<float>(v99[i] - v109[i]);  // forward.py:85
    }
    float v111[8];  // forward.py:85
    for (int i = 0; i < 8; ++i) {  // forward.py:85
      v111[i] = exp2(v110[i]);  // forward.py:85
    }
    float v112[1];  // forward.py:86
    for (int i = 0; i < 1; ++i) {  // forward.py:86
      v112[i] = static_cast<float>(v65[i] - v108[i]);  // forward.py:86
    }
    float v113[1];  // forward.py:86
    for (int i = 0; i < 1; ++i) {  // forward.py:86
      v113[i] = exp2(v112[i]);  // forward.py:86
    }
    float v114[1];  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      v114[i] = static_cast<float>(v66[i] * v113[i]);  // forward.py:87
    }
    float v115[1];  // forward.py:87
    {  // forward.py:87
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      for (int i = 0; i < 8; ++i) {  // forward.py:87
        ((threadgroup float*)(mt_smem + 0))[(((i) / 4 * 128 + tid) * 4 + (i) % 4)] = v111[i];  // forward.py:87
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      const int g = min(tid / 4, 31);  // forward.py:87
      const int p = tid % 4;  // forward.py:87
      float acc116 = ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (p))];  // forward.py:87
      for (int l = p + 4; l < 32; l += 4) {  // forward.py:87
        acc116 = static_cast<float>(acc116 + ((threadgroup float*)(mt_smem + 0))[((g) * 32 + (l))]);  // forward.py:87
      }
      float o117 = simd_shuffle_xor(acc116, 2);  // forward.py:87
      acc116 = static_cast<float>(acc116 + o117);  // forward.py:87
      float o118 = simd_shuffle_xor(acc116, 1);  // forward.py:87
      acc116 = static_cast<float>(acc116 + o118);  // forward.py:87
      if (p == 0 && tid < 128) {  // forward.py:87
        ((threadgroup float*)(mt_smem + 4096))[g] = static_cast<float>(acc116);  // forward.py:87
      }  // forward.py:87
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
      for (int i = 0; i < 1; ++i) {  // forward.py:87
        v115[i] = ((threadgroup float*)(mt_smem + 4096))[(tid % 32)];  // forward.py:87
      }
    }
    float v119[1];  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      v119[i] = static_cast<float>(v114[i] + v115[i]);  // forward.py:87
    }
    float v120[16];  // forward.py:87
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
    for (int i = 0; i < 1; ++i) {  // forward.py:87
      ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v113[i];  // forward.py:87
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:87
    for (int i = 0; i < 16; ++i) {  // forward.py:87
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:87
      v120[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 64) % 32)];  // forward.py:87
    }
    float v121[16];  // forward.py:87
    for (int i = 0; i < 16; ++i) {  // forward.py:87
      v121[i] = static_cast<float>(v67[i] * v120[i]);  // forward.py:87
    }
    int v122;  // forward.py:162
    v122 = 64;  // forward.py:162
    int v123[1];  // forward.py:162
    for (int i = 0; i < 1; ++i) {  // forward.py:162
      v123[i] = static_cast<int>(v69[i] * v122);  // forward.py:162
    }
    int v124[1];  // forward.py:162
    for (int i = 0; i < 1; ++i) {  // forward.py:162
      v124[i] = (v51 + v123[i]);  // forward.py:162
    }
    int v125[16];  // forward.py:162
    for (int i = 0; i < 16; ++i) {  // forward.py:162
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:162
      v125[i] = (v51 + static_cast<int>(static_cast<int>(iv68 + (0 + (int)((((e) / 64) % 32)))) * v122));  // forward.py:162
    }
    int v126[16];  // forward.py:162
    for (int i = 0; i < 16; ++i) {  // forward.py:162
      const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:162
      v126[i] = (0 + (int)(((e) % 64)));  // forward.py:162
    }
    int v127[16];  // forward.py:162
    for (int i = 0; i < 16; ++i) {  // forward.py:162
      v127[i] = (v125[i] + v126[i]);  // forward.py:162
    }
    float v128;  // forward.py:162
    v128 = 0.0f;  // forward.py:162
    half v129;  // forward.py:162
    v129 = static_cast<half>(v128);  // forward.py:162
    half v130[16];  // forward.py:162
    for (int i = 0; i < 16; i += 4) {  // forward.py:162
      if (v73[i]) {  // forward.py:162
        const packed_half4 t = *((device const packed_half4*)(p2 + v127[i]));  // forward.py:162
        v130[i + 0] = t[0];  // forward.py:162
        v130[i + 1] = t[1];  // forward.py:162
        v130[i + 2] = t[2];  // forward.py:162
        v130[i + 3] = t[3];  // forward.py:162
      } else {
        v130[i + 0] = v129;  // forward.py:162
        v130[i + 1] = v129;  // forward.py:162
        v130[i + 2] = v129;  // forward.py:162
        v130[i + 3] = v129;  // forward.py:162
      }
    }
    half v131[8];  // forward.py:163
    for (int i = 0; i < 8; ++i) {  // forward.py:163
      v131[i] = static_cast<half>(v111[i]);  // forward.py:163
    }
    float v132[16];  // forward.py:163
    {  // forward.py:163
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:163
      for (int i = 0; i < 8; ++i) {  // forward.py:163
        const int e = (((i) / 4 * 128 + tid) * 4 + (i) % 4);  // forward.py:163
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v131[i]);  // forward.py:163
      }
      for (int i = 0; i < 16; ++i) {  // forward.py:163
        const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:163
        ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v130[i]);  // forward.py:163
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:163
      simdgroup_float8x8 mt_c[8];  // forward.py:163
      for (int s = 0; s < 8; ++s) {  // forward.py:163
        const int tile = warp + s * 4;  // forward.py:163
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // forward.py:163
        if (tile < 32) {  // forward.py:163
          const int tm = tile / 8, tn = tile % 8;  // forward.py:163
          for (int kk = 0; kk < 32; kk += 8) {  // forward.py:163
            simdgroup_float8x8 ma, mb;  // forward.py:163
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // forward.py:163
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 64 + tn * 8, 64);  // forward.py:163
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // forward.py:163
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:163
      for (int s = 0; s < 8; ++s) {  // forward.py:163
        const int tile = warp + s * 4;  // forward.py:163
        if (tile < 32) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 8) * 512 + (tile % 8) * 8, 64);  // forward.py:163
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:163
      for (int i = 0; i < 16; ++i) {  // forward.py:163
        v132[i] = static_cast<float>(v121[i] + ((threadgroup float*)(mt_smem + 0))[(((i) / 8 * 128 + tid) * 8 + (i) % 8)]);  // forward.py:163
      }
    }
    for (int i = 0; i < 1; ++i) v65[i] = v104[i];  // forward.py:163
    for (int i = 0; i < 1; ++i) v66[i] = v119[i];  // forward.py:163
    for (int i = 0; i < 16; ++i) v67[i] = v132[i];  // forward.py:163
  }
  float v133;  // forward.py:165
  v133 = 0.0f;  // forward.py:165
  bool v134[1];  // forward.py:165
  for (int i = 0; i < 1; ++i) {  // forward.py:165
    v134[i] = (v66[i] == v133);  // forward.py:165
  }
  float v135;  // forward.py:165
  v135 = 1.0f;  // forward.py:165
  float v136[1];  // forward.py:165
  for (int i = 0; i < 1; ++i) {  // forward.py:165
    v136[i] = (v134[i] ? v135 : v66[i]);  // forward.py:165
  }
  float v137[16];  // forward.py:166
  threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:166
  for (int i = 0; i < 1; ++i) {  // forward.py:166
    ((threadgroup float*)(mt_smem + 0))[(tid % 32)] = v136[i];  // forward.py:166
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);  // forward.py:166
  for (int i = 0; i < 16; ++i) {  // forward.py:166
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:166
    v137[i] = ((threadgroup float*)(mt_smem + 0))[(((e) / 64) % 32)];  // forward.py:166
  }
  float v138[16];  // forward.py:166
  for (int i = 0; i < 16; ++i) {  // forward.py:166
    v138[i] = static_cast<float>(v67[i] / v137[i]);  // forward.py:166
  }
  int v139;  // forward.py:168
  v139 = static_cast<int>(v3 * v8);  // forward.py:168
  int v140;  // forward.py:168
  v140 = (0 + v139);  // forward.py:168
  int v141;  // forward.py:168
  v141 = static_cast<int>(v4 * v10);  // forward.py:168
  int v142;  // forward.py:168
  v142 = (v140 + v141);  // forward.py:168
  int v143;  // forward.py:168
  v143 = 64;  // forward.py:168
  int v144[1];  // forward.py:168
  for (int i = 0; i < 1; ++i) {  // forward.py:168
    v144[i] = static_cast<int>(v20[i] * v143);  // forward.py:168
  }
  int v145[1];  // forward.py:168
  for (int i = 0; i < 1; ++i) {  // forward.py:168
    v145[i] = (v142 + v144[i]);  // forward.py:168
  }
  int v146[16];  // forward.py:168
  for (int i = 0; i < 16; ++i) {  // forward.py:168
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:168
    v146[i] = (v142 + static_cast<int>(static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) * v143));  // forward.py:168
  }
  int v147[16];  // forward.py:168
  for (int i = 0; i < 16; ++i) {  // forward.py:168
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:168
    v147[i] = (0 + (int)(((e) % 64)));  // forward.py:168
  }
  int v148[16];  // forward.py:168
  for (int i = 0; i < 16; ++i) {  // forward.py:168
    v148[i] = (v146[i] + v147[i]);  // forward.py:168
  }
  half v149[16];  // forward.py:169
  for (int i = 0; i < 16; ++i) {  // forward.py:169
    v149[i] = static_cast<half>(v138[i]);  // forward.py:169
  }
  bool v150[1];  // forward.py:170
  for (int i = 0; i < 1; ++i) {  // forward.py:170
    v150[i] = (v20[i] < a11);  // forward.py:170
  }
  bool v151[16];  // forward.py:170
  for (int i = 0; i < 16; ++i) {  // forward.py:170
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:170
    v151[i] = (static_cast<int>(v18 + (0 + (int)((((e) / 64) % 32)))) < a11);  // forward.py:170
  }
  bool v152[16];  // forward.py:170
  for (int i = 0; i < 16; ++i) {  // forward.py:170
    const int e = (((i) / 8 * 128 + tid) * 8 + (i) % 8);  // forward.py:170
    v152[i] = ((0 + (int)(((e) % 64))) < v23);  // forward.py:170
  }
  bool v153[16];  // forward.py:170
  for (int i = 0; i < 16; ++i) {  // forward.py:170
    v153[i] = (v151[i] & v152[i]);  // forward.py:170
  }
  for (int i = 0; i < 16; i += 4) {  // forward.py:167
    if (v153[i]) *((device packed_half4*)(p3 + v148[i])) = packed_half4(v149[i + 0], v149[i + 1], v149[i + 2], v149[i + 3]);  // forward.py:167
  }
  float v154;  // forward.py:172
  v154 = 0.0f;  // forward.py:172
  bool v155[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v155[i] = (v66[i] == v154);  // forward.py:172
  }
  float v156[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v156[i] = log2(v136[i]);  // forward.py:172
  }
  float v157[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v157[i] = static_cast<float>(v65[i] + v156[i]);  // forward.py:172
  }
  float v158;  // forward.py:172
  v158 = 0.6931471805599453f;  // forward.py:172
  float v159[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v159[i] = static_cast<float>(v157[i] * v158);  // forward.py:172
  }
  float v160;  // forward.py:172
  v160 = (-INFINITY);  // forward.py:172
  float v161[1];  // forward.py:172
  for (int i = 0; i < 1; ++i) {  // forward.py:172
    v161[i] = (v155[i] ? v160 : v159[i]);  // forward.py:172
  }
  int v162;  // forward.py:173
  v162 = static_cast<int>(v2 * a11);  // forward.py:173
  int v163;  // forward.py:173
  v163 = (0 + v162);  // forward.py:173
  int v164[1];  // forward.py:173
  for (int i = 0; i < 1; ++i) {  // forward.py:173
    v164[i] = (v163 + v20[i]);  // forward.py:173
  }
  bool v165[1];  // forward.py:173
  for (int i = 0; i < 1; ++i) {  // forward.py:173
    v165[i] = (v20[i] < a11);  // forward.py:173
  }
  for (int i = 0; i < 1; ++i) {  // forward.py:173
    if ((tid < 32) && v165[i]) p4[v164[i]] = v161[i];  // forward.py:173
  }

}
