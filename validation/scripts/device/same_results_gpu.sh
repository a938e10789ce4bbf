#!/usr/bin/env bash
# On a GPU: the same fixed-seed runs from two trees of the code, compared bit for bit.
#
#   bash validation/scripts/device/same_results_gpu.sh BEFORE_TREE OUT
#
# BEFORE_TREE holds the code of the commit before a behaviour-preserving change (e.g. made here by
# `git archive <commit> gpu mlpvae vaetheory validation/figures | tar -x -C .before`, carried to the
# device); the working tree is the after.  Each tree trains a 2-D learned-Sigma model alone (CUDA
# graph, fused kernels) and two seeds of Fig. 4 as one stack (`reproduce --stack`); then
# validation/scripts/compare_runs.py compares parameters, Adam state, metrics and summaries.
# Needs MNIST under $VAETHEORY_DATA (default ./.data).  A dry run on a CPU:
#   DEVICE=cpu EXTRA="--epochs 1 --limit 1200" bash validation/scripts/device/same_results_gpu.sh BEFORE OUT
set -u
B=$(cd "$1" && pwd)
OUT=$2
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg VAETHEORY_DATA=${VAETHEORY_DATA:-$PWD/.data}
for side in before after; do
  tree=$PWD
  [ "$side" = before ] && tree=$B
  r=/tmp/same_results/$side
  rm -rf "$r" && mkdir -p "$r"
  (cd "$tree" && PYTHONPATH=$tree timeout 120 python3 -m vaetheory train --device "${DEVICE:-gpu}" --out "$r/learned" --n 2 \
    --posterior learned --epochs 20 --seed 7 --no-progress ${EXTRA:-} && \
   PYTHONPATH=$tree timeout 120 python3 -m vaetheory reproduce validation/figures/fig4_2d.toml --device "${DEVICE:-gpu}" \
    --stack --seeds 0,1 --epochs 3 --limit 6000 --test-limit 2000 ${EXTRA:-} --out "$r/repro" --no-progress) \
    > "$OUT/same_results_$side.txt" 2>&1
  echo "$side: exit $?" >> "$OUT/same_results.txt"
done
python3 validation/scripts/compare_runs.py /tmp/same_results/before /tmp/same_results/after >> "$OUT/same_results.txt" 2>&1
echo "compare_runs: exit $?" >> "$OUT/same_results.txt"
