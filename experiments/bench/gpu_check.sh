#!/usr/bin/env bash
# The GPU check of the time loops, for a machine with an NVIDIA GPU (about 8 minutes):
# the tests that touch the loops, then the loops' benchmark (fused, scan, parallel,
# cudnn and Flax), its rows written to ${OUT:-.}/gpu_check.json, then three short training runs.
#   pip install -U "jax[cuda12]" && pip install -e '.[test]' && bash experiments/bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-.}"
python -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())"
timeout 240 python -m pytest -q -p no:xdist -o addopts="" tests/test_parallel.py tests/test_layer.py \
    tests/test_stack.py tests/test_cells.py 2>&1 | tail -5
timeout 300 python -m experiments.bench.parallel_benchmark --times=1000,4000,16000,65536 \
    --hidden=64,256 --reps=5 --dense_newton_up_to=4000 --json="$out/gpu_check.json"
# The whole pipeline (data, training, Orbax checkpoints, eval) on the GPU: the README's first
# run with the GRU, the LSTM by the fused loop and the LSTM by cuDNN (test accuracy and time).
for run in "gru fused" "lstm fused" "lstm cudnn"; do
  set -- $run
  echo "== digits, $1, impl=$2"
  timeout 120 python -m experiments.main --config=experiments/configs/digits.py \
      --workdir="$(mktemp -d)" --config.model.cell="$1" --config.model.impl="$2" 2>&1 | tail -3
done
