#!/usr/bin/env bash
# Runs the test suite with the cuda backend, then the benchmarks, on a machine whose Python has
# MLX's CUDA build (on the lent GPU machine: `source .mlxcuda2/activate.sh` first; DEVELOPERS
# notes in README.md). Results go to $OUT (default gpu-results/).
#   TESTS="tests/test_tutorials.py ..."  which test files (default: all of tests/)
#   SUITES="tutorials norms"             which benchmark suites (default: all)
#   BENCH_MODE=--quick|--smoke|""        benchmark sizes (default --quick)
#   BENCH=0, RUN_TESTS=0                 skip the benchmarks, or the tests
#   PYTEST_WORKERS=8                     parallel test processes when pytest-xdist is importable:
#                                        NVRTC compiling each kernel specialization dominates the run.
# The GPU machine has no package registry: carry wheels in .whl/ (git-ignored), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl pytest-xdist execnet
set -uo pipefail
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
# mlx_primitives is the primitives/ folder (pyproject maps it): expose it without installing
mkdir -p /tmp/mtriton-pkgs && ln -sfn "$PWD/primitives" /tmp/mtriton-pkgs/mlx_primitives
export PYTHONPATH="$PWD:/tmp/mtriton-pkgs${PYTHONPATH:+:$PYTHONPATH}" MTRITON_BACKEND=cuda PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # test dependencies carried as wheels (the GPU machine has no registry)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 -c "import mlx.core as mx; print('mlx', mx.__version__, mx.default_device(), 'cuda:', mx.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
WORKERS=""
if python3 -c "import xdist" 2>/dev/null; then WORKERS="-n ${PYTEST_WORKERS:-8}"; fi
# shellcheck disable=SC2086
[ "${RUN_TESTS:-1}" = 0 ] || timeout "${SUITE_TIMEOUT:-420}" python3 -m pytest ${TESTS:-tests} -q -p no:cacheprovider $WORKERS 2>&1 | tee "$OUT/tests.log" | tail -40
# shellcheck disable=SC2086
[ "${BENCH:-1}" = 0 ] || timeout "${BENCH_TIMEOUT:-300}" python3 -m benchmarks.runner --backend cuda ${BENCH_MODE---quick} --out "$OUT" ${SUITES:+--suite $SUITES} 2>&1 | tee "$OUT/bench.log" | tail -60
