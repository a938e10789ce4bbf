#!/usr/bin/env bash
# Issue 5's analyses of every trained Fig. 4 model on a lent GPU, on all 10,000 test images:
# IWAE log p(x) (k = 5000) vs ELBO, Eq. (16), Eq. (18), Eq. (22) (constant vs learned, same seed), Eq. (6).
#
# Here, once:  python validation/scripts/device/pack_runs.py && echo /.carry/ >> .git/info/exclude
#              (and the MNIST files in .data/, as for device_checks.sh)
# Then the device tool's run, with carry [".data", ".carry"]:  BUDGET=400 bash validation/scripts/device/analyses.sh
# (timeout_s = BUDGET + 30).  Back come analyses.tgz (analysis.json/md, comparison.json, per-image npz of each
# run) and analyses.txt; unpack under validation/results/analysis/all-seeds/ (analysis.json names the device) and run
# `vaetheory analyze validation/results/analysis/all-seeds --summarize`.
# DEVICE=cpu TEST_LIMIT=20 IWAE_K=50 bash validation/scripts/device/analyses.sh   is a dry run on a CPU.
# FIGS="fig4_100d" SEEDS="seed3 seed4" analyse only those (e.g. what an earlier call did not reach: on 2026-11-26
# one call reached every 2-D model and 100-D seeds 0-2, a later one 100-D seed 4; all in validation/results/analysis/all-seeds/).
set -u
OUT=${OUT:-/tmp/vaetheory-analyses}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export VAETHEORY_DATA=${VAETHEORY_DATA:-$PWD/.data}
PY=$(command -v python3 || command -v python)
limit=()
[ -n "${TEST_LIMIT:-}" ] && limit=(--test-limit "$TEST_LIMIT")
: > "$OUT/analyses.txt"
for fig in ${FIGS:-fig4_2d fig4_100d}; do
  for seed_dir in .carry/runs/$fig/learned/seed*; do
    seed=$(basename "$seed_dir")
    case " ${SEEDS:-$seed} " in *" $seed "*) ;; *) continue;; esac
    for method in learned constant; do
      run=.carry/runs/$fig/$method/$seed
      [ -d "$run" ] || continue
      left=$(( ${BUDGET:-400} - SECONDS - 15 ))
      [ "$left" -gt 10 ] || break 3
      versus=()
      [ "$method" = constant ] && versus=(--versus ".carry/runs/$fig/learned/$seed")
      t0=$SECONDS
      timeout "$left" "$PY" -m vaetheory analyze "$run" --device "${DEVICE:-gpu}" --iwae-k "${IWAE_K:-5000}" \
        --no-plots "${limit[@]}" "${versus[@]}" > "$run/analyze.log" 2>&1
      echo "$run: exit $?, $((SECONDS - t0)) s" >> "$OUT/analyses.txt"
    done
  done
done
"$PY" -m vaetheory analyze .carry/runs --summarize >> "$OUT/analyses.txt" 2>&1
tar czf "$OUT/analyses.tgz" --exclude=checkpoint.npz -C .carry/runs . 2>/dev/null
exit 0
