  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  int v1;  // tutorial_kernels.py:13
  v1 = (int)(threadgroup_position_in_grid.x);  // tutorial_kernels.py:13
  int v2;  // tutorial_kernels.py:14
  v2 = 1024;  // tutorial_kernels.py:14
  int v3;  // tutorial_kernels.py:14
  v3 = static_cast<int>(v1 * v2);  // tutorial_kernels.py:14
  int v4[8];  // tutorial_kernels.py:15
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:15
    v4[i] = 0 + (int)((((i) / 4 * 128 + tid) * 4 + (i) % 4));  // tutorial_kernels.py:15
  }
  int v5[8];  // tutorial_kernels.py:15
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:15
    v5[i] = static_cast<int>(v3 + v4[i]);  // tutorial_kernels.py:15
  }
  bool v6[8];  // tutorial_kernels.py:16
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:16
    v6[i] = (v5[i] < a3);  // tutorial_kernels.py:16
  }
  int v7[8];  // tutorial_kernels.py:17
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:17
    v7[i] = (0 + v5[i]);  // tutorial_kernels.py:17
  }
  float v8[8];  // tutorial_kernels.py:17
  for (int i = 0; i < 8; i += 4) {  // tutorial_kernels.py:17
    if (v6[i]) {  // tutorial_kernels.py:17
      const packed_float4 t = *((device const packed_float4*)(p0 + v7[i]));  // tutorial_kernels.py:17
      v8[i + 0] = t[0];  // tutorial_kernels.py:17
      v8[i + 1] = t[1];  // tutorial_kernels.py:17
      v8[i + 2] = t[2];  // tutorial_kernels.py:17
      v8[i + 3] = t[3];  // tutorial_kernels.py:17
    } else {
      v8[i + 0] = 0.0f;  // tutorial_kernels.py:17
      v8[i + 1] = 0.0f;  // tutorial_kernels.py:17
      v8[i + 2] = 0.0f;  // tutorial_kernels.py:17
      v8[i + 3] = 0.0f;  // tutorial_kernels.py:17
    }
  }
  int v9[8];  // tutorial_kernels.py:18
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:18
    v9[i] = (0 + v5[i]);  // tutorial_kernels.py:18
  }
  float v10[8];  // tutorial_kernels.py:18
  for (int i = 0; i < 8; i += 4) {  // tutorial_kernels.py:18
    if (v6[i]) {  // tutorial_kernels.py:18
      const packed_float4 t = *((device const packed_float4*)(p1 + v9[i]));  // tutorial_kernels.py:18
      v10[i + 0] = t[0];  // tutorial_kernels.py:18
      v10[i + 1] = t[1];  // tutorial_kernels.py:18
      v10[i + 2] = t[2];  // tutorial_kernels.py:18
      v10[i + 3] = t[3];  // tutorial_kernels.py:18
    } else {
      v10[i + 0] = 0.0f;  // tutorial_kernels.py:18
      v10[i + 1] = 0.0f;  // tutorial_kernels.py:18
      v10[i + 2] = 0.0f;  // tutorial_kernels.py:18
      v10[i + 3] = 0.0f;  // tutorial_kernels.py:18
    }
  }
  float v11[8];  // tutorial_kernels.py:19
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:19
    v11[i] = static_cast<float>(v8[i] + v10[i]);  // tutorial_kernels.py:19
  }
  int v12[8];  // tutorial_kernels.py:20
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:20
    v12[i] = (0 + v5[i]);  // tutorial_kernels.py:20
  }
  for (int i = 0; i < 8; i += 4) {  // tutorial_kernels.py:20
    if (v6[i]) *((device packed_float4*)(p2 + v12[i])) = packed_float4(v11[i + 0], v11[i + 1], v11[i + 2], v11[i + 3]);  // tutorial_kernels.py:20
  }

