#!/usr/bin/env bash
# Builds and runs scripts/wgmma_check.cu (the wgmma helpers on the GPU, no MLX): PASS/FAIL per
# case and the instruction's throughput. nvcc 13's -arch=sm_90a also embeds compute_90 PTX, which
# cannot hold wgmma: name the sm_90a target alone.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc -gencode arch=compute_90a,code=sm_90a -O3 -o "${TMPDIR:-/tmp}/wgmma_check" scripts/wgmma_check.cu
"${TMPDIR:-/tmp}/wgmma_check"
