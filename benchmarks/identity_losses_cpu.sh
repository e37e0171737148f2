#!/usr/bin/env bash
# Issue 20: PG² with and without the identity-preserving losses on real Market-1501 at an equal CPU budget, the
# independent identity judge, and their images through Re-ID with hard and teacher soft labels.
# Every step resumes or is skipped when finished, so a lane can be killed and started again.
#
#   OUT=runs/idloss PARTS="base0 gen-id eval-id" bash benchmarks/identity_losses_cpu.sh      # lane 1
#   OUT=runs/idloss PARTS="gen-plain base12 eval-plain" bash benchmarks/identity_losses_cpu.sh  # lane 2
#   OUT=runs/idloss PARTS="reid teacher" bash benchmarks/identity_losses_cpu.sh   # x2 (sweep runs are claimed)
#   OUT=runs/idloss PARTS=judge bash benchmarks/identity_losses_cpu.sh
#   OUT=runs/idloss PARTS=sources bash benchmarks/identity_losses_cpu.sh   # x2 after syn_id exists
#   OUT=runs/idloss FAMILY=defgan PARTS="gen-id eval-id" bash ...        # Deformable GAN (names defgan_*)
#
# Parts:
#   base0:      the identity network: a `benchmark --baseline-only` OSNet x0.25 (reid_cpu_market, batch mixing plan,
#               seed 0) on the real training images; also the Re-ID sweep's seed-0 baseline and the teacher.
#   base12:     the same for seeds 1 and 2; seed 1 is the INDEPENDENT judge (it never trained a generator).
#   gen-plain:  PG² stage I as published (pose-mask L1, PG²'s mask), G1_ITERS iterations, seed GEN_SEED;
#   gen-id:     the same plus loss.identity (feature / id / perceptual, weights FW / IW / PW) from base0's model.
#               Equal budget = equal iterations and batches (the identity network's cost is reported as wall time).
#               Each then synthesizes K per identity (diverse).
#   eval-*:     the 12,000 standard test pairs with the judge's identity retrieval (--reid-model, seed 1).
#   reid:       `reid-aug sweep` over augmented={syn_plain,syn_id}, batch mixing, seeds $SEEDS, hard labels,
#               baselines taken over from base0 / base12.
#   teacher:    a second sweep on syn_id with teacher soft labels (DG-Net), the teacher = base0's model.
#   teacher-plain: the control: the same teacher on the plain generator's images (is a gain the images' or the
#               distillation's?).
#   sources:    the no-generation control: the teacher sweep on syn_id with every image replaced by its own source
#               image (train.augmented_images=sources): what the distillation gives without a generated pixel.
#   sources-hard: the same sources with hard labels (is it the teacher, or only more real exposure?).
#   judge:      benchmarks/identity_judge.py on both synthesized sets with the seed-1 (independent) and seed-0 models,
#               and benchmarks/source_similarity.py (how close each set stays to its source images).
#
# SETS: the sets the reid and judge parts take (default both; a finished judge record is kept).
# FAMILY=defgan: the same parts for Deformable GAN (`defgan_market_cpu`, DEFGAN_STEPS steps, the budget of
# benchmarks/defgan_vs_pg2_cpu.sh), every run and set named defgan_<name> (defgan_plain, syn_defgan_id, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
OUT="${OUT:-runs/idloss}"
PARTS="${PARTS:-base0 gen-plain gen-id base12 eval-plain eval-id reid teacher teacher-plain judge}"
FAMILY="${FAMILY:-pg2}"; DEFGAN_STEPS="${DEFGAN_STEPS:-1350}"
P=""; [ "$FAMILY" = defgan ] && P="defgan_"   # run and set names: plain / id (PG²), defgan_plain / defgan_id
SETS="${SETS:-${P}plain ${P}id}"   # the generators' sets that `reid` and `judge` take
GEN_SEED="${GEN_SEED:-0}"; G1_ITERS="${G1_ITERS:-1100}"; K="${K:-10}"; SEEDS="${SEEDS:-0,1,2}"
FW="${FW:-1.0}"; IW="${IW:-0.1}"; PW="${PW:-1.0}"
EVAL=(); [ -n "${LIMIT:-}" ] && EVAL+=(--limit "$LIMIT")
# hard labels pinned (the recorded cells; the recipe's default became the teacher's): the teacher parts set their own
REID=(--recipe reid_cpu_market --dataset market --set train.mix=batch --set train.labels=same-id --set 'train.teacher=""')
ID_MODEL="$OUT/base0/models/baseline_seed0.pt"
JUDGE_MODEL="$OUT/base12/models/baseline_seed1.pt"
mkdir -p "$OUT"
# Baselines trained once and taken over by every sweep (seeds 3, 4: trained by the first 5-seed sweep).
BASELINES=(--baseline-from "$OUT/base0" --baseline-from "$OUT/base12")
[ -d "$OUT/sweep_teacher/cells/augmented=syn_id" ] && BASELINES+=(--baseline-from "$OUT/sweep_teacher/cells/augmented=syn_id")
part() { [[ " $PARTS " == *" $1 "* ]]; }
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }
timed() {   # timed NAME CMD...: run, append the wall seconds of this call to walltimes.txt
    local name=$1 start; shift; start=$(date +%s)
    "$@"
    echo "$name wall seconds (this call): $(( $(date +%s) - start ))" | tee -a "$OUT/walltimes.txt"
}
generator() {   # generator NAME [--set ...]: train (PG²: G1 only), then synthesize from it
    local name=$1 recipe; shift
    if [ "$FAMILY" = defgan ]; then
        recipe=(--recipe defgan_market_cpu --set train.steps="$DEFGAN_STEPS")
    else
        recipe=(--recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair
                --set "train.stages=[g1]" --set train.g1_iters="$G1_ITERS")
    fi
    stamp "$name: train"
    timed "$name train" reid-aug train-generator market "${recipe[@]}" --out "$OUT/$name" \
        --set train.tensorboard=false --set train.seed="$GEN_SEED" "$@" --resume
    stamp "$name: synthesize"
    timed "$name synthesize" reid-aug synthesize --run "$OUT/$name" --dataset market --poses-per-id "$K" \
        --strategy diverse --out "$OUT/syn_$name" --device cpu
}
evaluate() {
    stamp "$1: evaluate (judge $JUDGE_MODEL)"
    timed "$1 evaluate" reid-aug evaluate-generator "$OUT/$1" --dataset market --reid-model "$JUDGE_MODEL" "${EVAL[@]}"
}

if part base0; then
    stamp "identity network (baseline seed 0)"
    timed "base0" reid-aug benchmark --baseline-only "${REID[@]}" --seeds 0 --out "$OUT/base0"
fi
part gen-plain && generator "${P}plain"
if part gen-id; then
    [ -f "$ID_MODEL" ] || { echo "no identity network at $ID_MODEL: run PARTS=base0 first" >&2; exit 2; }
    generator "${P}id" --set loss.identity.model="$ID_MODEL" --set loss.identity.feature_weight="$FW" \
        --set loss.identity.id_weight="$IW" --set loss.identity.perceptual_weight="$PW"
fi
if part base12; then
    stamp "baselines seeds 1, 2 (seed 1: the independent judge)"
    timed "base12" reid-aug benchmark --baseline-only "${REID[@]}" --seeds 1,2 --out "$OUT/base12"
fi
part eval-plain && evaluate "${P}plain"
part eval-id && evaluate "${P}id"
if part reid; then
    stamp "reid sweep (hard labels)"
    grid=""; for name in $SETS; do grid+="${grid:+,}$OUT/syn_$name"; done
    reid-aug sweep "${REID[@]}" --grid "augmented=$grid" --seeds "$SEEDS" \
        --out "$OUT/${P}sweep" "${BASELINES[@]}"
fi
teacher_sweep() {   # teacher_sweep SET OUT_NAME [--set ...]
    local set=$1 name=$2; shift 2
    stamp "reid sweep (teacher soft labels) on $set $*"
    reid-aug sweep "${REID[@]}" --grid "augmented=$OUT/$set" --seeds "$SEEDS" --labels teacher "$@" \
        --set train.teacher="$ID_MODEL" --out "$OUT/$name" "${BASELINES[@]}"
}
part teacher && teacher_sweep "syn_${P}id" "${P}sweep_teacher"
part teacher-plain && teacher_sweep "syn_${P}plain" "${P}sweep_teacher_plain"
part sources && teacher_sweep "syn_${P}id" "${P}sweep_teacher_sources" --set train.augmented_images=sources
if part sources-hard; then   # the sources with their hard labels: more real exposure, no teacher
    stamp "reid sweep (hard labels) on the sources of syn_${P}id"
    reid-aug sweep "${REID[@]}" --grid "augmented=$OUT/syn_${P}id" --seeds "$SEEDS" \
        --set train.augmented_images=sources --out "$OUT/${P}sweep_sources" "${BASELINES[@]}"
fi
if part judge; then
    for name in $SETS; do
        [ -f "$OUT/judge_$name.json" ] && continue
        stamp "judge syn_$name"
        python benchmarks/identity_judge.py "$OUT/syn_$name" --reid-model "$JUDGE_MODEL" --reid-model "$ID_MODEL" \
            --out "$OUT/judge_$name.json"
    done
    python benchmarks/source_similarity.py "$OUT/syn_${P}plain" "$OUT/syn_${P}id" --out "$OUT/${P}source_similarity.json"
fi
stamp "done"
