#!/usr/bin/env bash
# Issue 12: does PG²'s published (pair) discriminator make stage II improve on G1 at CPU scale?
# One stage I (pg2_market_cpu, the recorded CPU recipe's G1), then stage II with the paper's `pair` D at
# lambda 100 and at the paper's lambda 10 (train.init_from), each evaluated on the 12,000 standard pairs
# beside G1. Every step resumes (--resume; finished evaluations are reused), so the script can be re-run
# after an interruption, or in a later session, and only does what is missing.
#   OUT=/work/longruns/stage2_cpu bash benchmarks/stage2_cpu.sh
set -euo pipefail
OUT=${OUT:-runs/stage2_cpu}
CLI=${CLI:-reid-aug}
mkdir -p "$OUT"
log() { echo "$(date '+%F %T') $*" | tee -a "$OUT/timeline.txt"; }

log "stage I"
$CLI train-generator market --recipe pg2_market_cpu --set "train.stages=[g1]" --set train.tensorboard=false \
    --out "$OUT/g1" --resume
$CLI evaluate-generator "$OUT/g1" --dataset market
for LAM in 100 10; do
  log "stage II, pair D, lambda $LAM"
  $CLI train-generator market --recipe pg2_market_cpu --set loss.d_variant=pair --set loss.lambda_l1=$LAM \
      --set train.init_from="$OUT/g1" --set train.tensorboard=false --out "$OUT/g2_pair_l$LAM" --resume
  $CLI evaluate-generator "$OUT/g2_pair_l$LAM" --dataset market
done
log "done"
