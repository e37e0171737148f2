#!/usr/bin/env bash
# Issue 12: PG²'s Table 1 at CPU scale on real Market-1501, every row at the same stage-I budget
# (pg2_market_cpu's widths and 2,200 iterations; G1+G2+D adds its 1,000 stage-II iterations on the
# G1-poseMaskLoss row's G1, as the official code trains stage II from a stage-I checkpoint), PG²'s own pose
# mask and the paper's pair discriminator. Each row is evaluated on the 12,000 standard test pairs.
# Resumable: re-run to continue; finished trainings and evaluations are skipped.
#   OUT=/work/longruns/table1_cpu bash benchmarks/table1_cpu.sh          (SMOKE=1: 2 iterations, 50 pairs)
set -euo pipefail
OUT=${OUT:-runs/table1_cpu}
CLI=${CLI:-reid-aug}
ITERS=${ITERS:-2200}; G2_ITERS=${G2_ITERS:-1000}; LIMIT=()
if [ "${SMOKE:-0}" = 1 ]; then ITERS=2; G2_ITERS=1; LIMIT=(--limit 50); fi
COMMON=(--recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair --set train.tensorboard=false
        --set train.g1_iters=$ITERS --set train.g1d_iters=$ITERS --set train.g2_iters=$G2_ITERS)
mkdir -p "$OUT"
row() {   # row NAME OVERRIDES...
  local name=$1; shift
  echo "$(date '+%F %T') $name" | tee -a "$OUT/timeline.txt"
  $CLI train-generator market "${COMMON[@]}" "$@" --out "$OUT/$name" --resume
  $CLI evaluate-generator "$OUT/$name" --dataset market "${LIMIT[@]}"
}
row g1_l1          --set "train.stages=[g1]" --set loss.g1=l1
row g1_posemask    --set "train.stages=[g1]"
row g1_d           --set "train.stages=[g1+d]"
row g1_g2_d        --set "train.stages=[g1,g2]" --set train.init_from="$OUT/g1_posemask"
row g1_ce_l1       --set "train.stages=[g1]" --set loss.g1=l1 --set model.pose_embedding=ce
row g1_hme_l1      --set "train.stages=[g1]" --set loss.g1=l1 --set model.pose_embedding=hme
echo "$(date '+%F %T') done" | tee -a "$OUT/timeline.txt"
