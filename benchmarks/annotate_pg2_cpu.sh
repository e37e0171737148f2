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
# Environment: OUT (default runs/annotate_pg2), SEEDS (default "0 1 2"), K (default 10), WORKERS (annotate, 2);
#   PARTS (default "annotate market cuhk") and ARMS (default "provided annotate") split the work into lanes that
#   can run side by side (e.g. PARTS="market cuhk" ARMS=provided next to PARTS="annotate market" ARMS=annotate);
#   G1_ITERS / G2_ITERS shorten the recipe (default: the recipe's 2200 / 1000), LIMIT evaluates the first N test
#   pairs only (default: all). Name any shortening in the records: the recorded run used them.
set -euo pipefail
cd "$(dirname "$0")/.."
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
CUHK="${CUHK:-$(cd .. && pwd)/shared/datasets/cuhk03-detected-mini}"
OUT="${OUT:-runs/annotate_pg2}"
SEEDS="${SEEDS:-0 1 2}"
K="${K:-10}"
WORKERS="${WORKERS:-2}"
PARTS="${PARTS:-annotate market cuhk}"
ARMS="${ARMS:-provided annotate}"
BUDGET=()
[ -n "${G1_ITERS:-}" ] && BUDGET+=(--set "train.g1_iters=$G1_ITERS")
[ -n "${G2_ITERS:-}" ] && BUDGET+=(--set "train.g2_iters=$G2_ITERS")
EVAL=()
[ -n "${LIMIT:-}" ] && EVAL+=(--set "limit=$LIMIT")
mkdir -p "$OUT"
part() { [[ " $PARTS " == *" $1 "* ]]; }
arm() { [[ " $ARMS " == *" $1 "* ]]; }
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }
annotated() { ls "$1"/*annotation-test.csv >/dev/null 2>&1 && ls "$1"/*annotation-train.csv >/dev/null 2>&1; }

if part annotate; then
    stamp "annotate"   # a partial file is continued; finished files are left alone (no --overwrite)
    annotated "$OUT/cuhk-ann" || reid-aug annotate "$CUHK" --out "$OUT/cuhk-ann" --workers "$WORKERS"
    annotated "$OUT/market-ann" || reid-aug annotate market --out "$OUT/market-ann" --workers "$WORKERS"
fi

train() {   # train ARM SEED
    local extra=()
    [ "$1" = annotate ] && extra=(--annotations "$OUT/market-ann")
    reid-aug train-generator market --recipe pg2_market_cpu --out "$OUT/$1_s$2" "${extra[@]}" \
        --set train.seed="$2" "${BUDGET[@]}" --resume
}

if part market; then
    for seed in $SEEDS; do
        for a in $ARMS; do
            stamp "Market PG² CPU recipe, seed $seed: $a keypoints"
            train "$a" "$seed"
            for stage in g1 g2; do   # finished evaluations are reused
                if [ "$a" = provided ]; then
                    reid-aug evaluate-generator "$OUT/provided_s$seed" --stage "$stage" "${EVAL[@]}"
                else
                    reid-aug evaluate-generator "$OUT/annotate_s$seed" --stage "$stage" --annotations dataset "${EVAL[@]}"
                    reid-aug evaluate-generator "$OUT/annotate_s$seed" --stage "$stage" "${EVAL[@]}"
                fi
            done
        done
    done
fi

if part cuhk; then
    stamp "cuhk03-detected-mini chain"
    reid-aug prepare "$CUHK" --work "$OUT/cuhk-work"
    reid-aug train-generator "$CUHK" --recipe pg2_market_cpu --out "$OUT/cuhk_generator" "${BUDGET[@]}" --resume
    reid-aug evaluate-generator "$OUT/cuhk_generator" --stage g1 "${EVAL[@]}"
    reid-aug evaluate-generator "$OUT/cuhk_generator" "${EVAL[@]}"
    reid-aug synthesize --run "$OUT/cuhk_generator" --poses-per-id "$K" --out "$OUT/cuhk_synthesized" --device cpu
fi
stamp "done: python benchmarks/collect_annotate_pg2.py --runs $OUT"
