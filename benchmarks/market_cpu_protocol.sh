#!/usr/bin/env bash
# The CPU protocol on real Market-1501 (issue: recorded results). Every step resumes, so this
# script can be killed and started again at any time; finished steps are skipped or continued.
#
#   REID_AUG_MARKET_ROOT=../shared/datasets/market1501 bash benchmarks/market_cpu_protocol.sh
#
# Steps: PG² CPU recipe -> evaluate on the 12,000 standard test pairs (defgan + pg2 SSIM,
# mask-SSIM; IS null without Inception weights) -> synthesize K = ${K:-10} poses per identity
# (diverse) -> torchreid CPU recipe, baseline vs augmented, seeds ${SEEDS:-0,1,2}.
# Environment: OUT (run folder, default runs/market_cpu), K, SEEDS, BASELINE_FROM.
set -euo pipefail
cd "$(dirname "$0")/.."
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
OUT="${OUT:-runs/market_cpu}"
SEEDS="${SEEDS:-0,1,2}"
K="${K:-10}"
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }

stamp "generator"
# --resume continues a run folder (or starts one where there is none yet)
reid-aug train-generator market --recipe pg2_market_cpu --out "$OUT/generator" --resume

stamp "evaluate-generator"
reid-aug evaluate-generator "$OUT/generator" --dataset market --protocol defgan

stamp "synthesize"
reid-aug synthesize --run "$OUT/generator" --dataset market --poses-per-id "$K" --strategy diverse \
    --out "$OUT/synthesized" --device cpu

stamp "benchmark seeds $SEEDS"
# BASELINE_FROM=runs/OTHER/benchmark: take over that folder's comparable baselines instead of training them again
baseline=(); [ -n "${BASELINE_FROM:-}" ] && baseline=(--baseline-from "$BASELINE_FROM")
# the recorded protocol (pool mixing, hard labels), pinned since the recipe's default became batch + teacher
reid-aug benchmark --recipe reid_cpu_market --dataset market --augmented "$OUT/synthesized" --seeds "$SEEDS" \
    --set train.mix=pool --set train.labels=same-id --set 'train.teacher=""' \
    --generator-eval "$OUT/generator/eval/metrics.json" --out "$OUT/benchmark" "${baseline[@]}"
stamp "done"
