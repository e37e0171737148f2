#!/usr/bin/env bash
# Issue 13: Deformable GAN vs PG² on real Market-1501 at an equal CPU budget, then their images through Re-ID.
# Every step resumes or is skipped when finished, so the script can be killed and started again.
#
#   REID_AUG_MARKET_ROOT=../shared/datasets/market1501 bash benchmarks/defgan_vs_pg2_cpu.sh
#
# Equal budget = equal wall time on one core each, the two trainings side by side: PG²'s CPU recipe
# (2200 + 1000 iterations, batch 8) costs 2200 x 1.00 + 1000 x 1.10 = 3,300 stage-I step units and a Deformable GAN
# step of the CPU recipe costs 2.44 units (benchmarks/results/family_step.md), so Deformable GAN trains
# DEFGAN_STEPS = 1,350 steps (its recipe: 1,600). The records give the measured wall times.
# 1. gen:         train (seed GEN_SEED) -> evaluate on the 12,000 standard test pairs (LIMIT: the first N only)
#                 -> synthesize K per identity (diverse), for each family in $FAMILIES.
# 2. reid:        `reid-aug sweep` over augmented={defgan,pg2} x seeds $SEEDS, OSNet x0.25 CPU recipe
#                 (reid_cpu_market); with MIX=batch (the recorded run: CamStyle's batches, issue 14) both cells share
#                 the baselines. Start the same PARTS=reid command in two shells to use two cores (runs are claimed).
# 2b. views-syn:  (issue 16) the PG² run's images with the `views` and `rotate --angles 45,90,180,270` strategies
#                 (K per identity, as the diverse sets);
#     views-reid: a second sweep over them (`sweep_views`) that takes the baselines over from the first (same recipe,
#                 seeds and iteration plan: batch mixing keeps the real batches).
# 3. judge:       the identity judge (benchmarks/identity_judge.py) on each synthesized set with the seed-0 and
#                 seed-1 baseline models.
# Environment: OUT (default runs/defgan_vs_pg2), PARTS (default "gen reid judge"; "views-syn views-reid" add 2b),
#   FAMILIES (default "defgan pg2"), GEN_SEED (0), DEFGAN_STEPS (1350), K (10), SEEDS (0,1,2), LIMIT (all pairs),
#   MIX (the recipe's train.mix), JUDGE_EXTRA (more sets to judge, e.g. "pg2_views pg2_rotate").
set -euo pipefail
cd "$(dirname "$0")/.."
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
OUT="${OUT:-runs/defgan_vs_pg2}"
PARTS="${PARTS:-gen reid judge}"
FAMILIES="${FAMILIES:-defgan pg2}"
GEN_SEED="${GEN_SEED:-0}"
DEFGAN_STEPS="${DEFGAN_STEPS:-1350}"
K="${K:-10}"
SEEDS="${SEEDS:-0,1,2}"
EVAL=()
[ -n "${LIMIT:-}" ] && EVAL+=(--limit "$LIMIT")
# the recorded protocol pinned (MIX unset: pool, as the recipe was then; hard labels), since the recipe's default
# became batch mixing with the teacher's soft labels
REID=(--set "train.mix=${MIX:-pool}" --set train.labels=same-id --set 'train.teacher=""')
mkdir -p "$OUT"
part() { [[ " $PARTS " == *" $1 "* ]]; }
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }

recipe_of() { [ "$1" = defgan ] && echo defgan_market_cpu || echo pg2_market_cpu; }

if part gen; then
    for fam in $FAMILIES; do
        budget=()
        [ "$fam" = defgan ] && budget=(--set "train.steps=$DEFGAN_STEPS")
        stamp "$fam: train"
        start=$(date +%s)
        reid-aug train-generator market --recipe "$(recipe_of "$fam")" --out "$OUT/$fam" \
            --set train.seed="$GEN_SEED" "${budget[@]}" --resume
        echo "$fam train wall seconds (this call): $(( $(date +%s) - start ))" | tee -a "$OUT/walltimes.txt"
        stamp "$fam: evaluate"
        start=$(date +%s)
        reid-aug evaluate-generator "$OUT/$fam" --dataset market "${EVAL[@]}"
        echo "$fam evaluate wall seconds (this call): $(( $(date +%s) - start ))" | tee -a "$OUT/walltimes.txt"
        stamp "$fam: synthesize"
        reid-aug synthesize --run "$OUT/$fam" --dataset market --poses-per-id "$K" --strategy diverse \
            --out "$OUT/syn_$fam" --device cpu
    done
fi

if part reid; then
    stamp "reid sweep"
    reid-aug sweep --recipe reid_cpu_market --dataset market --grid "augmented=$OUT/syn_defgan,$OUT/syn_pg2" \
        --seeds "$SEEDS" --out "$OUT/sweep" "${REID[@]}"
fi

if part views-syn; then
    stamp "views / rotate synthesis from the PG² run"
    reid-aug synthesize --run "$OUT/pg2" --dataset market --poses-per-id "$K" --strategy views \
        --out "$OUT/syn_pg2_views" --device cpu
    reid-aug synthesize --run "$OUT/pg2" --dataset market --poses-per-id "$K" --strategy rotate \
        --angles 45,90,180,270 --out "$OUT/syn_pg2_rotate" --device cpu
fi

if part views-reid; then
    stamp "views / rotate sweep"
    reid-aug sweep --recipe reid_cpu_market --dataset market \
        --grid "augmented=$OUT/syn_pg2_views,$OUT/syn_pg2_rotate" --seeds "$SEEDS" --out "$OUT/sweep_views" \
        --baseline-from "$OUT/sweep/cells/augmented=syn_pg2" "${REID[@]}"
fi

if part judge; then
    for fam in $FAMILIES ${JUDGE_EXTRA:-}; do
        models=()
        for m in "$OUT"/sweep/cells/augmented=syn_pg2/models/baseline_seed{0,1}.pt; do
            [ -f "$m" ] && models+=(--reid-model "$m")
        done
        stamp "judge $fam (${#models[@]} models)"
        python benchmarks/identity_judge.py "$OUT/syn_$fam" "${models[@]}" --out "$OUT/judge_$fam.json"
    done
fi
stamp "done"
