#!/usr/bin/env bash
# Runs the test suite with the cuda backend, then the benchmarks, on a machine whose Python has
# MLX's CUDA build (on the lent GPU machine: `source .mlxcuda2/activate.sh` first; DEVELOPERS
# notes in README.md), and packs everything they wrote into ONE archive,
# $OUT/gpu-check-<date>-<time>.tar.gz: tests.log, bench.log, the benchmark JSON and PNG plots,
# machine.txt (MLX, GPU, driver) and status.txt (each step's exit status). The lent GPU machine
# returns at most 8 files from $OUT, so nothing else is written there.
#   OUT=gpu-results                      where the archive goes (default gpu-results/)
#   STAGE=DIR                            where the files are written before packing (default: a new
#                                        temporary folder, removed after packing)
#   TESTS="tests/test_tutorials.py ..."  which test files (default: all of tests/)
#   SUITES="tutorials norms"             which benchmark suites (default: all)
#   BENCH_MODE=--quick|--smoke|""        benchmark sizes (default --quick: under 4 minutes on an H200)
#   SERVING="--size 1b --cache kv paged" also run `python -m benchmarks.serving` with these arguments
#                                        after the benchmarks (serving.json, serving.log; needs mlx-lm)
#   SERVING_TIMEOUT=200                  seconds before that run is stopped
#   BENCH=0, RUN_TESTS=0                 skip the benchmarks, or the tests; with both 0 the script
#                                        packs what STAGE already holds (tests/test_benchmarks.py)
#   PYTEST_WORKERS=14                    parallel test processes when pytest-xdist is importable:
#                                        NVRTC compiling each kernel specialization dominates the run
#                                        (the H200 machine has 16 cores: 1,219 tests in 190 s with 14).
#   SUITE_TIMEOUT=330, BENCH_TIMEOUT=300 seconds before the tests, or the benchmarks, are stopped
#   DEADLINE=570                         seconds for the whole script: the benchmarks get at most what
#                                        is left of it, so that packing happens inside one 600 s device
#                                        call (a stopped benchmark run still leaves its JSON)
# The exit status is 0 when every step that ran passed, else 1 (after packing either way).
# The GPU machine has no package registry: carry wheels in .whl/ (git-ignored), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl pytest-xdist execnet
set -uo pipefail
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
if [ -n "${STAGE:-}" ]; then
  mkdir -p "$STAGE"
else
  STAGE="$(mktemp -d)" && trap 'rm -rf "$STAGE"' EXIT
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
# mlx_primitives is the primitives/ folder (pyproject maps it): expose it without installing
mkdir -p /tmp/mtriton-pkgs && ln -sfn "$PWD/primitives" /tmp/mtriton-pkgs/mlx_primitives
export PYTHONPATH="$PWD:/tmp/mtriton-pkgs${PYTHONPATH:+:$PYTHONPATH}" MTRITON_BACKEND=cuda PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # test dependencies carried as wheels (the GPU machine has no registry)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
  date -u
  python3 -c "import mlx.core as mx; print('mlx', mx.__version__, mx.default_device(), 'cuda:', mx.cuda.is_available())"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
} >>"$STAGE/machine.txt" 2>&1
cat "$STAGE/machine.txt"
STATUS=0
WORKERS=""
if python3 -c "import xdist" 2>/dev/null; then WORKERS="-n ${PYTEST_WORKERS:-14}"; fi
if [ "${RUN_TESTS:-1}" != 0 ]; then
  # shellcheck disable=SC2086
  timeout "${SUITE_TIMEOUT:-330}" python3 -m pytest ${TESTS:-tests} -q -p no:cacheprovider $WORKERS 2>&1 | tee "$STAGE/tests.log" | tail -40
  rc=$?; echo "tests $rc" >>"$STAGE/status.txt"; [ "$rc" = 0 ] || STATUS=1
fi
if [ "${BENCH:-1}" != 0 ]; then
  LEFT=$(( ${DEADLINE:-570} - SECONDS ))
  BENCH_LIMIT=$(( LEFT < ${BENCH_TIMEOUT:-300} ? LEFT : ${BENCH_TIMEOUT:-300} ))
  [ "$BENCH_LIMIT" -gt 0 ] || BENCH_LIMIT=1
  echo "benchmarks: at most $BENCH_LIMIT s" >>"$STAGE/status.txt"
  # shellcheck disable=SC2086
  timeout "$BENCH_LIMIT" python3 -m benchmarks.runner --backend cuda ${BENCH_MODE---quick} --out "$STAGE" ${SUITES:+--suite $SUITES} 2>&1 | tee "$STAGE/bench.log" | tail -60
  rc=$?; echo "bench $rc" >>"$STAGE/status.txt"; [ "$rc" = 0 ] || STATUS=1
fi
if [ -n "${SERVING:-}" ]; then
  # shellcheck disable=SC2086
  timeout "${SERVING_TIMEOUT:-200}" python3 -m benchmarks.serving $SERVING --json "$STAGE/serving.json" 2>&1 | tee "$STAGE/serving.log" | tail -30
  rc=$?; echo "serving $rc" >>"$STAGE/status.txt"; [ "$rc" = 0 ] || STATUS=1
fi
ARCHIVE="$OUT/gpu-check-$STAMP.tar.gz"
tar -czf "$ARCHIVE" -C "$STAGE" --transform "s,^\.,gpu-check-$STAMP," . && echo "packed: $ARCHIVE ($(tar -tzf "$ARCHIVE" | grep -vc '/$') files)"
exit "$STATUS"
