  const int tid = (int)(threadIdx.x);
  const int lane = tid % 32;
  const int warp = tid / 32;
  extern __shared__ float4 mt_smem_v[];
  unsigned char* mt_smem = (unsigned char*)mt_smem_v;
  int v1;  // tutorial_kernels.py:27
  v1 = (int)(blockIdx.x);  // tutorial_kernels.py:27
  int v2;  // tutorial_kernels.py:28
  v2 = (int)(gridDim.x);  // tutorial_kernels.py:28
  for (int iv3 = v1; iv3 < a4[0]; iv3 += v2) {  // tutorial_kernels.py:29
    int v4;  // tutorial_kernels.py:30
    v4 = static_cast<int>(iv3 * a2[0]);  // tutorial_kernels.py:30
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
      v8[i] = (v6[i] < a5[0]);  // tutorial_kernels.py:33
    }
    float v9;  // tutorial_kernels.py:34
    v9 = (-__int_as_float(0x7f800000));  // tutorial_kernels.py:34
    float v10[8];  // tutorial_kernels.py:34
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:34
      v10[i] = v8[i] ? p1[v7[i]] : v9;  // tutorial_kernels.py:34
    }
    float v11;  // tutorial_kernels.py:35
    {  // tutorial_kernels.py:35
      float acc12 = v10[0];  // tutorial_kernels.py:35
      for (int i = 1; i < 8; ++i) {  // tutorial_kernels.py:35
        acc12 = fmaxf(acc12, v10[i]);  // tutorial_kernels.py:35
      }
      float o13 = __shfl_xor_sync(0xffffffffu, acc12, 16);  // tutorial_kernels.py:35
      acc12 = fmaxf(acc12, o13);  // tutorial_kernels.py:35
      float o14 = __shfl_xor_sync(0xffffffffu, acc12, 8);  // tutorial_kernels.py:35
      acc12 = fmaxf(acc12, o14);  // tutorial_kernels.py:35
      float o15 = __shfl_xor_sync(0xffffffffu, acc12, 4);  // tutorial_kernels.py:35
      acc12 = fmaxf(acc12, o15);  // tutorial_kernels.py:35
      float o16 = __shfl_xor_sync(0xffffffffu, acc12, 2);  // tutorial_kernels.py:35
      acc12 = fmaxf(acc12, o16);  // tutorial_kernels.py:35
      float o17 = __shfl_xor_sync(0xffffffffu, acc12, 1);  // tutorial_kernels.py:35
      acc12 = fmaxf(acc12, o17);  // tutorial_kernels.py:35
      __syncthreads();  // tutorial_kernels.py:35
      if (lane == 0) ((float*)(mt_smem + 0))[warp] = acc12;  // tutorial_kernels.py:35
      __syncthreads();  // tutorial_kernels.py:35
      acc12 = ((float*)(mt_smem + 0))[0];  // tutorial_kernels.py:35
      for (int w = 1; w < 4; ++w) {  // tutorial_kernels.py:35
        acc12 = fmaxf(acc12, ((float*)(mt_smem + 0))[0 + w]);  // tutorial_kernels.py:35
      }
      v11 = static_cast<float>(acc12);  // tutorial_kernels.py:35
    }
    float v18[8];  // tutorial_kernels.py:35
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:35
      v18[i] = static_cast<float>(v10[i] - v11);  // tutorial_kernels.py:35
    }
    float v19[8];  // tutorial_kernels.py:36
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:36
      v19[i] = mt_exp_approx(v18[i]);  // tutorial_kernels.py:36
    }
    float v20;  // tutorial_kernels.py:37
    {  // tutorial_kernels.py:37
      float acc21 = v19[0];  // tutorial_kernels.py:37
      for (int i = 1; i < 8; ++i) {  // tutorial_kernels.py:37
        acc21 = static_cast<float>(acc21 + v19[i]);  // tutorial_kernels.py:37
      }
      float o22 = __shfl_xor_sync(0xffffffffu, acc21, 16);  // tutorial_kernels.py:37
      acc21 = static_cast<float>(acc21 + o22);  // tutorial_kernels.py:37
      float o23 = __shfl_xor_sync(0xffffffffu, acc21, 8);  // tutorial_kernels.py:37
      acc21 = static_cast<float>(acc21 + o23);  // tutorial_kernels.py:37
      float o24 = __shfl_xor_sync(0xffffffffu, acc21, 4);  // tutorial_kernels.py:37
      acc21 = static_cast<float>(acc21 + o24);  // tutorial_kernels.py:37
      float o25 = __shfl_xor_sync(0xffffffffu, acc21, 2);  // tutorial_kernels.py:37
      acc21 = static_cast<float>(acc21 + o25);  // tutorial_kernels.py:37
      float o26 = __shfl_xor_sync(0xffffffffu, acc21, 1);  // tutorial_kernels.py:37
      acc21 = static_cast<float>(acc21 + o26);  // tutorial_kernels.py:37
      if (lane == 0) ((float*)(mt_smem + 16))[warp] = acc21;  // tutorial_kernels.py:37
      __syncthreads();  // tutorial_kernels.py:37
      acc21 = ((float*)(mt_smem + 16))[0];  // tutorial_kernels.py:37
      for (int w = 1; w < 4; ++w) {  // tutorial_kernels.py:37
        acc21 = static_cast<float>(acc21 + ((float*)(mt_smem + 16))[0 + w]);  // tutorial_kernels.py:37
      }
      v20 = static_cast<float>(acc21);  // tutorial_kernels.py:37
    }
    float v27[8];  // tutorial_kernels.py:38
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:38
      v27[i] = mt_div_full(v19[i], v20);  // tutorial_kernels.py:38
    }
    int v28;  // tutorial_kernels.py:39
    v28 = static_cast<int>(iv3 * a3[0]);  // tutorial_kernels.py:39
    int v29;  // tutorial_kernels.py:39
    v29 = (0 + v28);  // tutorial_kernels.py:39
    int v30[8];  // tutorial_kernels.py:40
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:40
      v30[i] = (v29 + v6[i]);  // tutorial_kernels.py:40
    }
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:41
      if (v8[i]) p0[v30[i]] = v27[i];  // tutorial_kernels.py:41
    }
  }

