#!/usr/bin/env bash
# Issue 12: PG²'s Table 1 at CPU scale on real Market-1501, every row at the same stage-I budget
# (pg2_market_cpu's widths; ITERS stage-I iterations, 1,100 by default = half the CPU recipe's 2,200 so
# that the six rows fit one 2-core session; G1+G2+D adds G2_ITERS stage-II iterations on the
# G1-poseMaskLoss row's G1, as the official code trains stage II from a stage-I checkpoint), PG²'s own pose
# mask and the paper's pair discriminator at the paper's lambda 10. Each row is evaluated on the 12,000
# standard test pairs. Resumable: re-run to continue; finished trainings and evaluations are skipped.
#   OUT=/work/longruns/table1_cpu bash benchmarks/table1_cpu.sh              (SMOKE=1: 2 iterations, 50 pairs)
#   ROWS="g1_posemask g1_g2_d" bash benchmarks/table1_cpu.sh                 (some rows; run two lists in
#                                                                              parallel on 2 cores)
set -euo pipefail
OUT=${OUT:-runs/table1_cpu}
CLI=${CLI:-reid-aug}
ITERS=${ITERS:-1100}; G2_ITERS=${G2_ITERS:-500}; LIMIT=()
ROWS=${ROWS:-g1_l1 g1_posemask g1_d g1_g2_d g1_ce_l1 g1_hme_l1}
if [ "${SMOKE:-0}" = 1 ]; then ITERS=2; G2_ITERS=1; LIMIT=(--limit 50); fi
COMMON=(--recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair --set loss.lambda_l1=10
        --set train.tensorboard=false
        --set train.g1_iters=$ITERS --set train.g1d_iters=$ITERS --set train.g2_iters=$G2_ITERS)
mkdir -p "$OUT"
train() {   # train NAME OVERRIDES...
  local name=$1; shift
  echo "$(date '+%F %T') $name" | tee -a "$OUT/timeline.txt"
  $CLI train-generator market "${COMMON[@]}" "$@" --out "$OUT/$name" --resume
  $CLI evaluate-generator "$OUT/$name" --dataset market "${LIMIT[@]}"
  echo "$(date '+%F %T') $name done" | tee -a "$OUT/timeline.txt"
}
for r in $ROWS; do
  case $r in
    g1_l1)       train g1_l1       --set "train.stages=[g1]" --set loss.g1=l1 ;;
    g1_posemask) train g1_posemask --set "train.stages=[g1]" ;;
    g1_d)        train g1_d        --set "train.stages=[g1+d]" ;;
    g1_g2_d)     train g1_g2_d     --set "train.stages=[g1,g2]" --set train.init_from="$OUT/g1_posemask" ;;
    g1_ce_l1)    train g1_ce_l1    --set "train.stages=[g1]" --set loss.g1=l1 --set model.pose_embedding=ce ;;
    g1_hme_l1)   train g1_hme_l1   --set "train.stages=[g1]" --set loss.g1=l1 --set model.pose_embedding=hme ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done
