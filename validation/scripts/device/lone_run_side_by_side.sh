#!/usr/bin/env bash
# On a GPU: the 200-epoch 2-D lone run (the 30 s target) from two trees of the code, alternately, twice each,
# in one session: wall time, time in training steps, time in evaluation, and the rest (setup, checkpoints).
#
#   bash validation/scripts/device/lone_run_side_by_side.sh BEFORE_TREE OUT
set -u
B=$(cd "$1" && pwd)
OUT=$2
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 VAETHEORY_DATA=${VAETHEORY_DATA:-$PWD/.data}
for round in 1 2; do
  for side in before after; do
    tree=$PWD
    [ "$side" = before ] && tree=$B
    r=/tmp/lone_$side
    rm -rf "$r"
    t0=$(date +%s.%N)
    (cd "$tree" && PYTHONPATH=$tree timeout 90 python3 -m vaetheory train --device gpu --out "$r" --no-progress) >/dev/null 2>&1
    t1=$(date +%s.%N)
    python3 - "$r" "$side" "$round" "$t0" "$t1" <<'PY' >> "$OUT/lone_side_by_side.txt"
import csv, json, sys
r, side, rnd, t0, t1 = sys.argv[1:]
info = json.load(open(f"{r}/run.json"))
rows = list(csv.DictReader(open(f"{r}/metrics.csv")))
steps = sum(float(x["seconds"]) for x in rows)
ev = sum(float(x["eval_seconds"]) for x in rows)
w = info["wall_seconds"]
print(f"round {rnd} {side:6s}: command {float(t1) - float(t0):5.1f} s, run.json wall {w:5.1f} s, steps {steps:5.1f} s, "
      f"eval {ev:4.1f} s, rest {w - steps - ev:4.1f} s, last test ELBO {rows[-1]['test_elbo']}")
PY
  done
done
