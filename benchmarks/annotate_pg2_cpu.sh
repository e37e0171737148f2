#!/usr/bin/env bash
# Issue 15: what pose-estimation noise costs PG², and the chain on a dataset without keypoints.
# Every step resumes or is skipped when finished, so the script can be killed and started again.
#
#   REID_AUG_MARKET_ROOT=../shared/datasets/market1501 REID_AUG_CACHE=runs/cache bash benchmarks/annotate_pg2_cpu.sh
#
# 1. `reid-aug annotate` on Market-1501 (train, gallery, query) into $OUT/market-ann and on cuhk03-detected-mini
#    into $OUT/cuhk-ann (a pointer in $REID_AUG_CACHE leads every command there: the dataset stays read-only).
# 2. Market-1501: the PG² CPU recipe on the provided (OpenPose) keypoints and on annotate's, seeds $SEEDS.
# 3. Evaluate on the 12,000 standard test pairs, G1 and G2:
#    - both generators with the provided test keypoints (target poses and masks): only the training keypoints
#      differ, so the SSIM / mask-SSIM difference is what the noisy training keypoints cost;
#    - the annotate-trained generator with annotate's test keypoints too (RUN/eval*): the user's chain end to end
#      (mask-SSIM then uses annotate's masks, so compare its SSIM, not its mask-SSIM, with the others).
# 4. cuhk03-detected-mini: prepare -> train-generator (CPU recipe) -> evaluate-generator -> synthesize K = $K.
# Environment: OUT (default runs/annotate_pg2), SEEDS (default "0 1 2"), K (default 10), WORKERS (annotate, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
CUHK="${CUHK:-$(cd .. && pwd)/shared/datasets/cuhk03-detected-mini}"
OUT="${OUT:-runs/annotate_pg2}"
SEEDS="${SEEDS:-0 1 2}"
K="${K:-10}"
WORKERS="${WORKERS:-2}"
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }
annotated() { ls "$1"/*annotation-test.csv >/dev/null 2>&1 && ls "$1"/*annotation-train.csv >/dev/null 2>&1; }

stamp "annotate"   # a partial file is continued; finished files are left alone (no --overwrite)
annotated "$OUT/cuhk-ann" || reid-aug annotate "$CUHK" --out "$OUT/cuhk-ann" --workers "$WORKERS"
annotated "$OUT/market-ann" || reid-aug annotate market --out "$OUT/market-ann" --workers "$WORKERS"

for seed in $SEEDS; do
    stamp "Market PG² CPU recipe, seed $seed: provided keypoints, then annotate's"
    reid-aug train-generator market --recipe pg2_market_cpu --out "$OUT/provided_s$seed" \
        --set train.seed="$seed" --resume
    reid-aug train-generator market --recipe pg2_market_cpu --out "$OUT/annotate_s$seed" \
        --annotations "$OUT/market-ann" --set train.seed="$seed" --resume
    for stage in g1 g2; do   # finished evaluations are reused
        reid-aug evaluate-generator "$OUT/provided_s$seed" --stage "$stage"
        reid-aug evaluate-generator "$OUT/annotate_s$seed" --stage "$stage" --annotations dataset
        reid-aug evaluate-generator "$OUT/annotate_s$seed" --stage "$stage"
    done
done

stamp "cuhk03-detected-mini chain"
reid-aug prepare "$CUHK" --work "$OUT/cuhk-work"
reid-aug train-generator "$CUHK" --recipe pg2_market_cpu --out "$OUT/cuhk_generator" --resume
reid-aug evaluate-generator "$OUT/cuhk_generator" --stage g1
reid-aug evaluate-generator "$OUT/cuhk_generator"
reid-aug synthesize --run "$OUT/cuhk_generator" --poses-per-id "$K" --out "$OUT/cuhk_synthesized" --device cpu
stamp "done: python benchmarks/collect_annotate_pg2.py --runs $OUT"
