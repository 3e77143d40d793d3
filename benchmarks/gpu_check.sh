#!/usr/bin/env bash
# One prepared GPU check of the kernels, for a machine with a CUDA GPU (see README, "GPU check"):
#   1. build the CPU + CUDA ops in place (FORCE_CUDA=1; CXX=/usr/bin/g++ unless CXX is set),
#   2. run every CUDA test of the kernels and of the modules built on them (pytest -k cuda:
#      CPU/CUDA parity of rasterize, rasterize_db, interpolate(_da), texture, antialias and the
#      rest, CUDA gradcheck/opcheck, the level maps),
#   3. time the kernels on CUDA against their peers (benchmarks/run.py --device cuda --quick).
# Logs and the benchmark JSON go to $OUT (default build/gpu_check). Exits non-zero when the build
# fails, when no CUDA kernels were compiled, or when a CUDA test fails.
#
# Python packages the image lacks can travel as wheels in .whl/ (pip download --no-deps ... -d .whl
# trimesh fast-simplification, for the interpreter there); they are installed into /tmp/site first.
# Budget: ~3 min build (one architecture, 16 cores), ~2 min tests, ~3 min benchmarks.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ls .whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_check: installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1 || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    | tee "$OUT/torch.txt" || { echo "gpu_check: torch sees no CUDA GPU"; exit 1; }

echo "=== build ($(date +%T))"
export CXX=${CXX:-/usr/bin/g++} FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
start=$(date +%s)
"$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -n 60 "$OUT/build.log"; echo "gpu_check: build failed"; exit 1; }
echo "built in $(( $(date +%s) - start )) s (arch $TORCH_CUDA_ARCH_LIST)"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" -c "import pyfaid._ext as e; assert e.WITH_CUDA, 'no CUDA kernels compiled'; print('CUDA kernels loaded')" || exit 1

echo "=== CUDA tests ($(date +%T))"
timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q -ra -k cuda tests/test_rasterize.py tests/test_rasterize_db.py \
    tests/test_texture.py tests/test_antialias.py tests/test_renderer.py tests/test_shading.py tests/test_topology.py \
    tests/test_cheb.py tests/test_models.py tests/test_losses.py \
    2>&1 | tee "$OUT/tests.log"
rc=${PIPESTATUS[0]}

echo "=== CUDA benchmarks ($(date +%T))"
timeout "${BENCH_TIMEOUT:-240}" "$PY" benchmarks/run.py --device cuda --quick \
    --only rasterize,derivatives,texture,antialias,normals,sh_shading,cheb \
    --out "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench.log" || echo "gpu_check: benchmarks did not finish"
echo "=== done ($(date +%T)); tests exit $rc"
exit "$rc"
