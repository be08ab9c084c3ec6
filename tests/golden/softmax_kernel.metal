  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  threadgroup float4 mt_smem_v[2];
  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;
  int v1;  // tutorial_kernels.py:27
  v1 = (int)(threadgroup_position_in_grid.x);  // tutorial_kernels.py:27
  int v2;  // tutorial_kernels.py:28
  v2 = (int)(threadgroups_per_grid.x);  // tutorial_kernels.py:28
  for (int iv3 = v1; iv3 < a4; iv3 += v2) {  // tutorial_kernels.py:29
    int v4;  // tutorial_kernels.py:30
    v4 = static_cast<int>(iv3 * a2);  // tutorial_kernels.py:30
    int v5;  // tutorial_kernels.py:30
    v5 = (0 + v4);  // tutorial_kernels.py:30
    int v6[8];  // tutorial_kernels.py:31
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:31
      v6[i] = 0 + (int)((((i) / 4 * 128 + tid) * 4 + (i) % 4));  // tutorial_kernels.py:31
    }
    int v7[8];  // tutorial_kernels.py:32
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:32
      v7[i] = (v5 + v6[i]);  // tutorial_kernels.py:32
    }
    bool v8[8];  // tutorial_kernels.py:33
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:33
      v8[i] = (v6[i] < a5);  // tutorial_kernels.py:33
    }
    float v9;  // tutorial_kernels.py:34
    v9 = (-INFINITY);  // tutorial_kernels.py:34
    float v10[8];  // tutorial_kernels.py:34
    for (int i = 0; i < 8; i += 4) {  // tutorial_kernels.py:34
      if (v8[i + 0] && v8[i + 1] && v8[i + 2] && v8[i + 3]) {  // tutorial_kernels.py:34
        const packed_float4 t = *((device const packed_float4*)(p1 + v7[i]));  // tutorial_kernels.py:34
        v10[i + 0] = t[0];  // tutorial_kernels.py:34
        v10[i + 1] = t[1];  // tutorial_kernels.py:34
        v10[i + 2] = t[2];  // tutorial_kernels.py:34
        v10[i + 3] = t[3];  // tutorial_kernels.py:34
      } else {
        v10[i + 0] = v8[i + 0] ? p1[v7[i] + 0] : v9;  // tutorial_kernels.py:34
        v10[i + 1] = v8[i + 1] ? p1[v7[i] + 1] : v9;  // tutorial_kernels.py:34
        v10[i + 2] = v8[i + 2] ? p1[v7[i] + 2] : v9;  // tutorial_kernels.py:34
        v10[i + 3] = v8[i + 3] ? p1[v7[i] + 3] : v9;  // tutorial_kernels.py:34
      }
    }
    float v11;  // tutorial_kernels.py:35
    {  // tutorial_kernels.py:35
      float acc12 = v10[0];  // tutorial_kernels.py:35
      for (int i = 1; i < 8; ++i) {  // tutorial_kernels.py:35
        acc12 = max(acc12, v10[i]);  // tutorial_kernels.py:35
      }
      acc12 = simd_max(acc12);  // tutorial_kernels.py:35
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:35
      if (lane == 0) ((threadgroup float*)(mt_smem + 0))[warp] = acc12;  // tutorial_kernels.py:35
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:35
      acc12 = ((threadgroup float*)(mt_smem + 0))[0];  // tutorial_kernels.py:35
      for (int w = 1; w < 4; ++w) {  // tutorial_kernels.py:35
        acc12 = max(acc12, ((threadgroup float*)(mt_smem + 0))[0 + w]);  // tutorial_kernels.py:35
      }
      v11 = static_cast<float>(acc12);  // tutorial_kernels.py:35
    }
    float v13[8];  // tutorial_kernels.py:35
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:35
      v13[i] = static_cast<float>(v10[i] - v11);  // tutorial_kernels.py:35
    }
    float v14[8];  // tutorial_kernels.py:36
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:36
      v14[i] = exp(v13[i]);  // tutorial_kernels.py:36
    }
    float v15;  // tutorial_kernels.py:37
    {  // tutorial_kernels.py:37
      float acc16 = v14[0];  // tutorial_kernels.py:37
      for (int i = 1; i < 8; ++i) {  // tutorial_kernels.py:37
        acc16 = static_cast<float>(acc16 + v14[i]);  // tutorial_kernels.py:37
      }
      acc16 = simd_sum(acc16);  // tutorial_kernels.py:37
      if (lane == 0) ((threadgroup float*)(mt_smem + 16))[warp] = acc16;  // tutorial_kernels.py:37
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:37
      acc16 = ((threadgroup float*)(mt_smem + 16))[0];  // tutorial_kernels.py:37
      for (int w = 1; w < 4; ++w) {  // tutorial_kernels.py:37
        acc16 = static_cast<float>(acc16 + ((threadgroup float*)(mt_smem + 16))[0 + w]);  // tutorial_kernels.py:37
      }
      v15 = static_cast<float>(acc16);  // tutorial_kernels.py:37
    }
    float v17[8];  // tutorial_kernels.py:38
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:38
      v17[i] = static_cast<float>(v14[i] / v15);  // tutorial_kernels.py:38
    }
    int v18;  // tutorial_kernels.py:39
    v18 = static_cast<int>(iv3 * a3);  // tutorial_kernels.py:39
    int v19;  // tutorial_kernels.py:39
    v19 = (0 + v18);  // tutorial_kernels.py:39
    int v20[8];  // tutorial_kernels.py:40
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:40
      v20[i] = (v19 + v6[i]);  // tutorial_kernels.py:40
    }
    for (int i = 0; i < 8; i += 4) {  // tutorial_kernels.py:41
      if (v8[i + 0] && v8[i + 1] && v8[i + 2] && v8[i + 3]) {  // tutorial_kernels.py:41
        *((device packed_float4*)(p0 + v20[i])) = packed_float4(v17[i + 0], v17[i + 1], v17[i + 2], v17[i + 3]);  // tutorial_kernels.py:41
      } else {
        if (v8[i + 0]) p0[v20[i] + 0] = v17[i + 0];  // tutorial_kernels.py:41
        if (v8[i + 1]) p0[v20[i] + 1] = v17[i + 1];  // tutorial_kernels.py:41
        if (v8[i + 2]) p0[v20[i] + 2] = v17[i + 2];  // tutorial_kernels.py:41
        if (v8[i + 3]) p0[v20[i] + 3] = v17[i + 3];  // tutorial_kernels.py:41
      }
    }
  }

