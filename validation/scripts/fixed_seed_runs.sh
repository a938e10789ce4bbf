#!/usr/bin/env bash
# Fixed-seed NumPy runs that a behaviour-preserving change must leave bit for bit as they were:
# three training runs (learned Sigma / Bernoulli; BILBO / BAGGINS, n = 5; constant Sigma / Gaussian),
# evaluate and analyze on the first, and a two-seed Fig. 4 stack through `reproduce --stack`.
#
#   bash validation/scripts/fixed_seed_runs.sh TREE OUT     # TREE: a checkout (its code is what runs)
#   python validation/scripts/compare_runs.py OUT_BEFORE OUT_AFTER
#
# Needs MNIST under $VAETHEORY_DATA; about 15 s on one core.
set -euo pipefail
T=$(cd "$1" && pwd)
O=$(mkdir -p "$2" && cd "$2" && pwd)
rm -rf "${O:?}"/*
cd "$T"
export PYTHONPATH=$T OMP_NUM_THREADS=1
export VAETHEORY_DATA=${VAETHEORY_DATA:-$(cd "$T/../shared/data" 2>/dev/null && pwd)}  # beside the checkout, as in CI
V="python3 -m vaetheory"
common=(--device cpu --no-progress)
$V train --out "$O/learned" "${common[@]}" --limit 3000 --test-limit 500 --epochs 2 --seed 3 > "$O/learned.log" 2>&1
$V train --out "$O/baggins" "${common[@]}" --limit 3000 --test-limit 500 --epochs 2 --seed 1 --n 5 \
  --posterior bilbo --likelihood baggins > "$O/baggins.log" 2>&1
$V train --out "$O/const" "${common[@]}" --limit 2000 --test-limit 300 --epochs 3 --seed 2 \
  --posterior constant --likelihood gaussian > "$O/const.log" 2>&1
$V evaluate "$O/learned" --k 5 --iwae-k 50 > "$O/eval.log" 2>&1
$V analyze "$O/learned" --iwae-k 50 --test-limit 100 > "$O/analyze.log" 2>&1
FIG=validation/figures/fig4_2d.toml
[ -f "$FIG" ] || FIG=$(find validation -name fig4_2d.toml | head -1)
$V reproduce "$FIG" --device cpu --seeds 0,1 --epochs 1 --limit 1200 --test-limit 300 --out "$O/repro" --stack \
  --no-progress > "$O/repro.log" 2>&1
echo "wrote $O (learned, baggins, const, repro; logs *.log)"
