#!/usr/bin/env bash
# Issue 14, regime "Market-1501 with N real images per identity", leak-free: the generator is trained on the kept
# images only (same subset seed as the benchmark's data.subsample_seed), synthesis reads only kept images as
# sources, and the Re-ID benchmark keeps the same N. Every step resumes.
#
#   N=2 OUT=runs/market_n2 bash benchmarks/market_lowdata_cpu.sh
#
# 1. PG² stage I as published (pose-mask L1, PG²'s mask), 1,100 iterations on the kept subset's pairs;
# 2. synthesize K = 10 per identity from the kept sources;
# 3. validation stage: baseline curve on 100 held-out training identities (choose train.epochs);
# 4. test stage: batch mixing, 3 seeds (two processes share the sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:-reid-aug}
N=${N:-2}; OUT=${OUT:-runs/market_n$N}; SEEDS=${SEEDS:-0,1,2}; EPOCHS=${EPOCHS:-60}
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$OUT/timeline.txt"; }

stamp "generator on $N image(s) per identity"
$CLI train-generator market --recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair \
    --set train.tensorboard=false --set "train.stages=[g1]" --set train.g1_iters=1100 \
    --set data.train_per_id="$N" --set data.subset_seed=0 --out "$OUT/gen" --resume

stamp "synthesize"
$CLI synthesize --run "$OUT/gen" --dataset market --train-per-id "$N" --subset-seed 0 --poses-per-id 10 \
    --strategy random --out "$OUT/syn_k10" --device cpu

stamp "validation stage"
$CLI sweep --recipe reid_cpu_small --dataset market --augmented "$OUT/syn_k10" --grid train.epochs="$EPOCHS" \
    --set data.train_per_id="$N" --set train.mix=batch --set data.val_ids=100 --set eval.split=val --seeds 0 \
    --out "$OUT/val"

stamp "test stage"
test=(--recipe reid_cpu_small --dataset market --grid "augmented=$OUT/syn_k10" --set data.train_per_id="$N"
      --set train.mix=batch --set train.epochs="$EPOCHS" --set train.budget=epochs --set eval.curve_every=0
      --seeds "$SEEDS" --out "$OUT/test_batch")
$CLI sweep "${test[@]}" & sleep 60; $CLI sweep "${test[@]}"; wait
stamp "done"
