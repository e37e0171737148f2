#!/usr/bin/env bash
# Issue 12: what makes stage II improve on G1 at CPU scale, when PG²'s published setting (pair D, lambda 10)
# does not? Each lever (none of them PG²'s) trains stage II alone on one G1 — Table 1's G1-poseMaskLoss row
# (benchmarks/table1_cpu.sh, run it first) — for the same 500 iterations as Table 1's G1+G2+D row, which is
# the reference: pair D, lambda 10, PG²'s pose mask. Every run is evaluated on the 12,000 standard pairs.
# Resumable: re-run to continue; finished trainings and evaluations are skipped.
#   OUT=/work/longruns/table1_cpu bash benchmarks/stage2_levers_cpu.sh       (SMOKE=1: 1 iteration, 50 pairs)
set -euo pipefail
OUT=${OUT:-runs/table1_cpu}
CLI=${CLI:-reid-aug}
G2_ITERS=${G2_ITERS:-500}; LIMIT=()
LEVERS=${LEVERS:-d_lr_low d_every4 d_spectral lambda_ramp}
if [ "${SMOKE:-0}" = 1 ]; then G2_ITERS=1; LIMIT=(--limit 50); fi
if [ ! -f "$OUT/g1_posemask/run.json" ]; then echo "run benchmarks/table1_cpu.sh first (needs $OUT/g1_posemask)" >&2; exit 2; fi
COMMON=(--recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair --set loss.lambda_l1=10
        --set train.tensorboard=false --set "train.stages=[g1,g2]" --set train.g2_iters=$G2_ITERS
        --set train.init_from="$OUT/g1_posemask")
lever() {   # lever NAME OVERRIDES...
  local name=stage2_$1; shift
  echo "$(date '+%F %T') $name" | tee -a "$OUT/timeline.txt"
  $CLI train-generator market "${COMMON[@]}" "$@" --out "$OUT/$name" --resume
  $CLI evaluate-generator "$OUT/$name" --dataset market "${LIMIT[@]}"
  echo "$(date '+%F %T') $name done" | tee -a "$OUT/timeline.txt"
}
for l in $LEVERS; do
  case $l in
    d_lr_low)    lever d_lr_low    --set train.d_lr=5e-6 ;;                     # D learns 10x slower than G2
    d_every4)    lever d_every4    --set train.d_every=4 ;;                     # one D update per 4 G2 updates
    d_spectral)  lever d_spectral  --set model.d_norm=spectral ;;               # SN-GAN's D normalisation
    lambda_ramp) lever lambda_ramp --set loss.lambda_start=100 --set loss.lambda_ramp=0.5 ;;  # 100 -> 10
    *) echo "unknown lever $l" >&2; exit 2 ;;
  esac
done
