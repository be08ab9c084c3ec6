  const int tid = (int)(thread_index_in_threadgroup);
  const int lane = tid % 32;
  const int warp = tid / 32;
  threadgroup float4 mt_smem_v[512];
  threadgroup uchar* mt_smem = (threadgroup uchar*)mt_smem_v;
  int v1;  // tutorial_kernels.py:90
  v1 = (int)(threadgroup_position_in_grid.x);  // tutorial_kernels.py:90
  int v2;  // tutorial_kernels.py:91
  v2 = 32;  // tutorial_kernels.py:91
  int v3;  // tutorial_kernels.py:91
  v3 = static_cast<int>(a3 + v2);  // tutorial_kernels.py:91
  int v4;  // tutorial_kernels.py:91
  v4 = 1;  // tutorial_kernels.py:91
  int v5;  // tutorial_kernels.py:91
  v5 = static_cast<int>(v3 - v4);  // tutorial_kernels.py:91
  int v6;  // tutorial_kernels.py:91
  v6 = 32;  // tutorial_kernels.py:91
  int v7;  // tutorial_kernels.py:91
  v7 = static_cast<int>(v5 / v6);  // tutorial_kernels.py:91
  int v8;  // tutorial_kernels.py:92
  v8 = 32;  // tutorial_kernels.py:92
  int v9;  // tutorial_kernels.py:92
  v9 = static_cast<int>(a4 + v8);  // tutorial_kernels.py:92
  int v10;  // tutorial_kernels.py:92
  v10 = 1;  // tutorial_kernels.py:92
  int v11;  // tutorial_kernels.py:92
  v11 = static_cast<int>(v9 - v10);  // tutorial_kernels.py:92
  int v12;  // tutorial_kernels.py:92
  v12 = 32;  // tutorial_kernels.py:92
  int v13;  // tutorial_kernels.py:92
  v13 = static_cast<int>(v11 / v12);  // tutorial_kernels.py:92
  int v14;  // tutorial_kernels.py:93
  v14 = 8;  // tutorial_kernels.py:93
  int v15;  // tutorial_kernels.py:93
  v15 = static_cast<int>(v14 * v13);  // tutorial_kernels.py:93
  int v16;  // tutorial_kernels.py:94
  v16 = static_cast<int>(v1 / v15);  // tutorial_kernels.py:94
  int v17;  // tutorial_kernels.py:95
  v17 = 8;  // tutorial_kernels.py:95
  int v18;  // tutorial_kernels.py:95
  v18 = static_cast<int>(v16 * v17);  // tutorial_kernels.py:95
  int v19;  // tutorial_kernels.py:96
  v19 = static_cast<int>(v7 - v18);  // tutorial_kernels.py:96
  int v20;  // tutorial_kernels.py:96
  v20 = 8;  // tutorial_kernels.py:96
  int v21;  // tutorial_kernels.py:96
  v21 = static_cast<int>(min(v19, v20));  // tutorial_kernels.py:96
  int v22;  // tutorial_kernels.py:97
  v22 = static_cast<int>(v1 % v15);  // tutorial_kernels.py:97
  int v23;  // tutorial_kernels.py:97
  v23 = static_cast<int>(v22 % v21);  // tutorial_kernels.py:97
  int v24;  // tutorial_kernels.py:97
  v24 = static_cast<int>(v18 + v23);  // tutorial_kernels.py:97
  int v25;  // tutorial_kernels.py:98
  v25 = static_cast<int>(v1 % v15);  // tutorial_kernels.py:98
  int v26;  // tutorial_kernels.py:98
  v26 = static_cast<int>(v25 / v21);  // tutorial_kernels.py:98
  int v27;  // tutorial_kernels.py:100
  v27 = 32;  // tutorial_kernels.py:100
  int v28;  // tutorial_kernels.py:100
  v28 = static_cast<int>(v24 * v27);  // tutorial_kernels.py:100
  int v29[1];  // tutorial_kernels.py:100
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:100
    v29[i] = 0 + (int)((tid % 32));  // tutorial_kernels.py:100
  }
  int v30[1];  // tutorial_kernels.py:100
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:100
    v30[i] = static_cast<int>(v28 + v29[i]);  // tutorial_kernels.py:100
  }
  int v31[1];  // tutorial_kernels.py:100
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:100
    v31[i] = static_cast<int>(v30[i] % a3);  // tutorial_kernels.py:100
  }
  int v32;  // tutorial_kernels.py:101
  v32 = 32;  // tutorial_kernels.py:101
  int v33;  // tutorial_kernels.py:101
  v33 = static_cast<int>(v26 * v32);  // tutorial_kernels.py:101
  int v34[1];  // tutorial_kernels.py:101
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:101
    v34[i] = 0 + (int)((tid % 32));  // tutorial_kernels.py:101
  }
  int v35[1];  // tutorial_kernels.py:101
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:101
    v35[i] = static_cast<int>(v33 + v34[i]);  // tutorial_kernels.py:101
  }
  int v36[1];  // tutorial_kernels.py:101
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:101
    v36[i] = static_cast<int>(v35[i] % a4);  // tutorial_kernels.py:101
  }
  int v37[1];  // tutorial_kernels.py:102
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:102
    v37[i] = 0 + (int)((tid % 32));  // tutorial_kernels.py:102
  }
  int v38[1];  // tutorial_kernels.py:103
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:103
    v38[i] = static_cast<int>(v31[i] * a6);  // tutorial_kernels.py:103
  }
  int v39[1];  // tutorial_kernels.py:103
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:103
    v39[i] = static_cast<int>(v37[i] * a7);  // tutorial_kernels.py:103
  }
  int v40[8];  // tutorial_kernels.py:103
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:103
    const int e = (tid * 8 + i);  // tutorial_kernels.py:103
    v40[i] = static_cast<int>(static_cast<int>(static_cast<int>(v28 + (0 + (int)((((e) / 32) % 32)))) % a3) * a6);  // tutorial_kernels.py:103
  }
  int v41[8];  // tutorial_kernels.py:103
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:103
    const int e = (tid * 8 + i);  // tutorial_kernels.py:103
    v41[i] = static_cast<int>((0 + (int)(((e) % 32))) * a7);  // tutorial_kernels.py:103
  }
  int v42[8];  // tutorial_kernels.py:103
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:103
    v42[i] = static_cast<int>(v40[i] + v41[i]);  // tutorial_kernels.py:103
  }
  int v43[8];  // tutorial_kernels.py:103
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:103
    v43[i] = (0 + v42[i]);  // tutorial_kernels.py:103
  }
  int v44[1];  // tutorial_kernels.py:104
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:104
    v44[i] = static_cast<int>(v37[i] * a8);  // tutorial_kernels.py:104
  }
  int v45[1];  // tutorial_kernels.py:104
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:104
    v45[i] = static_cast<int>(v36[i] * a9);  // tutorial_kernels.py:104
  }
  int v46[8];  // tutorial_kernels.py:104
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:104
    const int e = (tid * 8 + i);  // tutorial_kernels.py:104
    v46[i] = static_cast<int>((0 + (int)((((e) / 32) % 32))) * a8);  // tutorial_kernels.py:104
  }
  int v47[8];  // tutorial_kernels.py:104
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:104
    const int e = (tid * 8 + i);  // tutorial_kernels.py:104
    v47[i] = static_cast<int>(static_cast<int>(static_cast<int>(v33 + (0 + (int)(((e) % 32)))) % a4) * a9);  // tutorial_kernels.py:104
  }
  int v48[8];  // tutorial_kernels.py:104
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:104
    v48[i] = static_cast<int>(v46[i] + v47[i]);  // tutorial_kernels.py:104
  }
  int v49[8];  // tutorial_kernels.py:104
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:104
    v49[i] = (0 + v48[i]);  // tutorial_kernels.py:104
  }
  int v50;  // tutorial_kernels.py:107
  v50 = 32;  // tutorial_kernels.py:107
  int v51;  // tutorial_kernels.py:107
  v51 = static_cast<int>(a5 + v50);  // tutorial_kernels.py:107
  int v52;  // tutorial_kernels.py:107
  v52 = 1;  // tutorial_kernels.py:107
  int v53;  // tutorial_kernels.py:107
  v53 = static_cast<int>(v51 - v52);  // tutorial_kernels.py:107
  int v54;  // tutorial_kernels.py:107
  v54 = 32;  // tutorial_kernels.py:107
  int v55;  // tutorial_kernels.py:107
  v55 = static_cast<int>(v53 / v54);  // tutorial_kernels.py:107
  int v56;  // tutorial_kernels.py:107
  v56 = 0;  // tutorial_kernels.py:107
  int v57;  // tutorial_kernels.py:107
  v57 = 1;  // tutorial_kernels.py:107
  float v58[8];  // tutorial_kernels.py:107
  int v59[8];  // tutorial_kernels.py:107
  int v60[8];  // tutorial_kernels.py:107
  for (int i = 0; i < 8; ++i) v58[i] = 0.0f;  // tutorial_kernels.py:107
  for (int i = 0; i < 8; ++i) v59[i] = v43[i];  // tutorial_kernels.py:107
  for (int i = 0; i < 8; ++i) v60[i] = v49[i];  // tutorial_kernels.py:107
  for (int iv61 = v56; iv61 < v55; iv61 += v57) {  // tutorial_kernels.py:107
    int v62;  // tutorial_kernels.py:108
    v62 = 32;  // tutorial_kernels.py:108
    int v63;  // tutorial_kernels.py:108
    v63 = static_cast<int>(iv61 * v62);  // tutorial_kernels.py:108
    int v64;  // tutorial_kernels.py:108
    v64 = static_cast<int>(a5 - v63);  // tutorial_kernels.py:108
    bool v65[1];  // tutorial_kernels.py:108
    for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:108
      v65[i] = (v37[i] < v64);  // tutorial_kernels.py:108
    }
    bool v66[8];  // tutorial_kernels.py:108
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:108
      const int e = (tid * 8 + i);  // tutorial_kernels.py:108
      v66[i] = ((0 + (int)(((e) % 32))) < v64);  // tutorial_kernels.py:108
    }
    float v67;  // tutorial_kernels.py:108
    v67 = 0.0f;  // tutorial_kernels.py:108
    half v68;  // tutorial_kernels.py:108
    v68 = static_cast<half>(v67);  // tutorial_kernels.py:108
    half v69[8];  // tutorial_kernels.py:108
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:108
      v69[i] = v66[i] ? p0[v59[i]] : v68;  // tutorial_kernels.py:108
    }
    int v70;  // tutorial_kernels.py:109
    v70 = 32;  // tutorial_kernels.py:109
    int v71;  // tutorial_kernels.py:109
    v71 = static_cast<int>(iv61 * v70);  // tutorial_kernels.py:109
    int v72;  // tutorial_kernels.py:109
    v72 = static_cast<int>(a5 - v71);  // tutorial_kernels.py:109
    bool v73[1];  // tutorial_kernels.py:109
    for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:109
      v73[i] = (v37[i] < v72);  // tutorial_kernels.py:109
    }
    bool v74[8];  // tutorial_kernels.py:109
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:109
      const int e = (tid * 8 + i);  // tutorial_kernels.py:109
      v74[i] = ((0 + (int)((((e) / 32) % 32))) < v72);  // tutorial_kernels.py:109
    }
    float v75;  // tutorial_kernels.py:109
    v75 = 0.0f;  // tutorial_kernels.py:109
    half v76;  // tutorial_kernels.py:109
    v76 = static_cast<half>(v75);  // tutorial_kernels.py:109
    half v77[8];  // tutorial_kernels.py:109
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:109
      v77[i] = v74[i] ? p1[v60[i]] : v76;  // tutorial_kernels.py:109
    }
    float v78[8];  // tutorial_kernels.py:110
    {  // tutorial_kernels.py:110
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:110
      for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:110
        const int e = (tid * 8 + i);  // tutorial_kernels.py:110
        ((threadgroup float*)(mt_smem + 0))[e] = static_cast<float>(v69[i]);  // tutorial_kernels.py:110
      }
      for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:110
        const int e = (tid * 8 + i);  // tutorial_kernels.py:110
        ((threadgroup float*)(mt_smem + 4096))[e] = static_cast<float>(v77[i]);  // tutorial_kernels.py:110
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:110
      simdgroup_float8x8 mt_c[4];  // tutorial_kernels.py:110
      for (int s = 0; s < 4; ++s) {  // tutorial_kernels.py:110
        const int tile = warp + s * 4;  // tutorial_kernels.py:110
        mt_c[s] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);  // tutorial_kernels.py:110
        if (tile < 16) {  // tutorial_kernels.py:110
          const int tm = tile / 4, tn = tile % 4;  // tutorial_kernels.py:110
          for (int kk = 0; kk < 32; kk += 8) {  // tutorial_kernels.py:110
            simdgroup_float8x8 ma, mb;  // tutorial_kernels.py:110
            simdgroup_load(ma, ((threadgroup float*)(mt_smem + 0)) + tm * 256 + kk, 32);  // tutorial_kernels.py:110
            simdgroup_load(mb, ((threadgroup float*)(mt_smem + 4096)) + kk * 32 + tn * 8, 32);  // tutorial_kernels.py:110
            simdgroup_multiply_accumulate(mt_c[s], ma, mb, mt_c[s]);  // tutorial_kernels.py:110
          }
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:110
      for (int s = 0; s < 4; ++s) {  // tutorial_kernels.py:110
        const int tile = warp + s * 4;  // tutorial_kernels.py:110
        if (tile < 16) simdgroup_store(mt_c[s], ((threadgroup float*)(mt_smem + 0)) + (tile / 4) * 256 + (tile % 4) * 8, 32);  // tutorial_kernels.py:110
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // tutorial_kernels.py:110
      for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:110
        v78[i] = static_cast<float>(v58[i] + ((threadgroup float*)(mt_smem + 0))[(tid * 8 + i)]);  // tutorial_kernels.py:110
      }
    }
    int v79;  // tutorial_kernels.py:111
    v79 = 32;  // tutorial_kernels.py:111
    int v80;  // tutorial_kernels.py:111
    v80 = static_cast<int>(v79 * a7);  // tutorial_kernels.py:111
    int v81[8];  // tutorial_kernels.py:111
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:111
      v81[i] = (v59[i] + v80);  // tutorial_kernels.py:111
    }
    int v82;  // tutorial_kernels.py:112
    v82 = 32;  // tutorial_kernels.py:112
    int v83;  // tutorial_kernels.py:112
    v83 = static_cast<int>(v82 * a8);  // tutorial_kernels.py:112
    int v84[8];  // tutorial_kernels.py:112
    for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:112
      v84[i] = (v60[i] + v83);  // tutorial_kernels.py:112
    }
    for (int i = 0; i < 8; ++i) v58[i] = v78[i];  // tutorial_kernels.py:112
    for (int i = 0; i < 8; ++i) v59[i] = v81[i];  // tutorial_kernels.py:112
    for (int i = 0; i < 8; ++i) v60[i] = v84[i];  // tutorial_kernels.py:112
  }
  half v85[8];  // tutorial_kernels.py:113
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:113
    v85[i] = static_cast<half>(v58[i]);  // tutorial_kernels.py:113
  }
  int v86;  // tutorial_kernels.py:115
  v86 = 32;  // tutorial_kernels.py:115
  int v87;  // tutorial_kernels.py:115
  v87 = static_cast<int>(v24 * v86);  // tutorial_kernels.py:115
  int v88[1];  // tutorial_kernels.py:115
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:115
    v88[i] = 0 + (int)((tid % 32));  // tutorial_kernels.py:115
  }
  int v89[1];  // tutorial_kernels.py:115
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:115
    v89[i] = static_cast<int>(v87 + v88[i]);  // tutorial_kernels.py:115
  }
  int v90;  // tutorial_kernels.py:116
  v90 = 32;  // tutorial_kernels.py:116
  int v91;  // tutorial_kernels.py:116
  v91 = static_cast<int>(v26 * v90);  // tutorial_kernels.py:116
  int v92[1];  // tutorial_kernels.py:116
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:116
    v92[i] = 0 + (int)((tid % 32));  // tutorial_kernels.py:116
  }
  int v93[1];  // tutorial_kernels.py:116
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:116
    v93[i] = static_cast<int>(v91 + v92[i]);  // tutorial_kernels.py:116
  }
  int v94[1];  // tutorial_kernels.py:117
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:117
    v94[i] = static_cast<int>(a10 * v89[i]);  // tutorial_kernels.py:117
  }
  int v95[1];  // tutorial_kernels.py:117
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:117
    v95[i] = (0 + v94[i]);  // tutorial_kernels.py:117
  }
  int v96[1];  // tutorial_kernels.py:117
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:117
    v96[i] = static_cast<int>(a11 * v93[i]);  // tutorial_kernels.py:117
  }
  int v97[8];  // tutorial_kernels.py:117
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:117
    const int e = (tid * 8 + i);  // tutorial_kernels.py:117
    v97[i] = (0 + static_cast<int>(a10 * static_cast<int>(v87 + (0 + (int)((((e) / 32) % 32))))));  // tutorial_kernels.py:117
  }
  int v98[8];  // tutorial_kernels.py:117
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:117
    const int e = (tid * 8 + i);  // tutorial_kernels.py:117
    v98[i] = static_cast<int>(a11 * static_cast<int>(v91 + (0 + (int)(((e) % 32)))));  // tutorial_kernels.py:117
  }
  int v99[8];  // tutorial_kernels.py:117
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:117
    v99[i] = (v97[i] + v98[i]);  // tutorial_kernels.py:117
  }
  bool v100[1];  // tutorial_kernels.py:118
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:118
    v100[i] = (v89[i] < a3);  // tutorial_kernels.py:118
  }
  bool v101[1];  // tutorial_kernels.py:118
  for (int i = 0; i < 1; ++i) {  // tutorial_kernels.py:118
    v101[i] = (v93[i] < a4);  // tutorial_kernels.py:118
  }
  bool v102[8];  // tutorial_kernels.py:118
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:118
    const int e = (tid * 8 + i);  // tutorial_kernels.py:118
    v102[i] = (static_cast<int>(v87 + (0 + (int)((((e) / 32) % 32)))) < a3);  // tutorial_kernels.py:118
  }
  bool v103[8];  // tutorial_kernels.py:118
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:118
    const int e = (tid * 8 + i);  // tutorial_kernels.py:118
    v103[i] = (static_cast<int>(v91 + (0 + (int)(((e) % 32)))) < a4);  // tutorial_kernels.py:118
  }
  bool v104[8];  // tutorial_kernels.py:118
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:118
    v104[i] = (v102[i] & v103[i]);  // tutorial_kernels.py:118
  }
  for (int i = 0; i < 8; ++i) {  // tutorial_kernels.py:119
    if (v104[i]) p2[v99[i]] = v85[i];  // tutorial_kernels.py:119
  }

