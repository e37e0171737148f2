#!/usr/bin/env bash
# Issue 14, regime "Market-1501 with N real images per identity", leak-free: the generator, the teacher and the
# identity judge are trained on the kept images only (the subset seed is the same everywhere: 0), synthesis reads
# only kept images as sources, and the Re-ID runs keep the same N. N=0 keeps every image: the full-data regime
# (benchmarks/results/market_full/). Every part resumes; run parts in two shells to use both cores (a sweep's runs
# are claimed, so two shells can share one sweep).
#
#   N=2 OUT=runs/market_n2 PARTS="gen syn" bash benchmarks/market_lowdata_cpu.sh            # shell 1
#   N=2 OUT=runs/market_n2 PARTS="val base0 base12" bash benchmarks/market_lowdata_cpu.sh   # shell 2
#   N=2 OUT=runs/market_n2 PARTS="reid teacher sources judge" bash benchmarks/market_lowdata_cpu.sh   # both shells
#
# Parts:
#   gen      the generator on the kept subset's pairs (FAMILY=defgan: `defgan_market_cpu` shortened to
#            DEFGAN_STEPS, the budget of defgan_vs_pg2; FAMILY=pg2: PG² stage I as published, G1_ITERS iterations).
#            GEN_DATA=PATH trains it on another dataset instead (leak-free by construction; N = 1 has no
#            same-identity pairs): `reid-aug annotate` gives it keypoints first, into GEN_ANN (default
#            OUT/gen-ann; an annotated folder there is reused), e.g.
#            N=1 GEN_DATA=../shared/datasets/cuhk03-detected-mini PARTS=gen bash benchmarks/market_lowdata_cpu.sh
#   syn      K images per identity from the kept sources, diverse target poses (the full-data records' strategy)
#   val      the baseline's validation curve (VAL_IDS training identities held out, the test split not read), at
#            VAL_EPOCHS epochs, rank-1/mAP every VAL_EVERY, into OUT/VAL_NAME: choose EPOCHS where it has flattened
#            (two budgets side by side: VAL_EPOCHS=20 VAL_NAME=val_base_e20 and VAL_EPOCHS=40 VAL_NAME=val_base_e40)
#   base0    baseline seed 0 on the test split: the teacher of `teacher` / `sources` (it saw only the kept images)
#   base12   baselines seeds 1, 2 (seed 1: the identity judge, independent of the teacher); BASE12_SEEDS=1 trains
#            seed 1 alone (then SEEDS=1 PARTS=reid in the same shell while the other does seed 0)
#   reid     batch mixing (CamStyle: the baseline's real batches + 12 synthesized), hard labels, SEEDS
#   teacher  the same with the teacher's soft labels on the synthesized images
#   sources  the no-generation control: the teacher on each synthesized image's real source (same stream, labels)
#   sources-hard  the same control with hard labels: every synthesized image replaced by its real source, so the
#            augmented run sees the kept real images more often and nothing generated (the control of `reid`)
#   filter   the `reid` cell on a filtered copy of the synthesized set (syn_<family>_filtered): the images whose own
#            identity the seed-0 baseline of this regime ranks in the top FILTER_K of the identity centroids (10, set
#            before any filtered run: at N = 2 the top-1 rule keeps 4.3 % of the images and 159 of 747 identities,
#            top-10 keeps 20 % and 416)
#   per-image  the `reid` cell on Deformable GAN's protocol: PER_IMAGE images for every kept real image, target poses
#            drawn at random from all training poses (syn_<family>_img<PER_IMAGE>); under batch mixing every
#            augmented run draws the same number of generated images, so only the set differs
#   judge    identity judge on the synthesized set (seed-1 and seed-0 baselines of this regime)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2}; OUT=${OUT:-runs/market_n$N}; SEEDS=${SEEDS:-0,1,2}; K=${K:-10}
EPOCHS=${EPOCHS:-60}; VAL_EPOCHS=${VAL_EPOCHS:-60}; VAL_IDS=${VAL_IDS:-100}; VAL_EVERY=${VAL_EVERY:-5}
VAL_NAME=${VAL_NAME:-val_base}
FAMILY=${FAMILY:-defgan}; DEFGAN_STEPS=${DEFGAN_STEPS:-1350}; G1_ITERS=${G1_ITERS:-1100}
BASE12_SEEDS=${BASE12_SEEDS:-1,2}; GEN_DATA=${GEN_DATA:-market}; FILTER_K=${FILTER_K:-10}; PER_IMAGE=${PER_IMAGE:-2}
PARTS="${PARTS:-gen syn val base0 base12 reid teacher sources sources-hard filter per-image judge}"
export REID_AUG_MARKET_ROOT="${REID_AUG_MARKET_ROOT:-$(cd .. && pwd)/shared/datasets/market1501}"
mkdir -p "$OUT"
part() { [[ " $PARTS " == *" $1 "* ]]; }
annotated() { ls "$1"/*annotation-test.csv >/dev/null 2>&1 && ls "$1"/*annotation-train.csv >/dev/null 2>&1; }
stamp() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$OUT/timeline.txt"; }
timed() {   # timed NAME CMD...: run, append the wall seconds of this call to walltimes.txt
    local name=$1 start; shift; start=$(date +%s)
    "$@"
    echo "$name wall seconds (this call): $(( $(date +%s) - start ))" | tee -a "$OUT/walltimes.txt"
}
GEN="$OUT/$FAMILY"; SYN="$OUT/syn_$FAMILY"   # the names collect_comparison.py reads
TEACHER="$OUT/base0/models/baseline_seed0.pt"; JUDGE="$OUT/base12/models/baseline_seed1.pt"
REGIME=(--set data.train_per_id="$N" --set data.subsample_seed=0)
if [ "$GEN_DATA" = market ]; then
    GEN_ON=(market --set data.train_per_id="$N" --set data.subset_seed=0); CROSS=()
else
    GEN_ANN=${GEN_ANN:-$OUT/gen-ann}; GEN_ON=("$GEN_DATA" --annotations "$GEN_ANN"); CROSS=(--cross-dataset)
fi
# hard labels pinned in every part (the recipe's default is the teacher's); teacher / sources set their own teacher
REID=(--recipe reid_cpu_small --dataset market "${REGIME[@]}" --set train.labels=same-id --set 'train.teacher=""'
      --set train.epochs="$EPOCHS" --set train.budget=epochs
      --set eval.curve_every=0)
CELL=("${REID[@]}" --set train.mix=batch --seeds "$SEEDS" --baseline-from "$OUT/base0" --baseline-from "$OUT/base12")
SWEEP=("${CELL[@]}" --grid "augmented=$SYN")
# the other cells also take the baselines the hard-label cell trained itself (seeds beyond 0-2: SEEDS=3,4 PARTS=reid)
MAIN_CELL="$OUT/sweep/cells/augmented=$(basename "$SYN")"
SIDE=("${CELL[@]}"); if [ -f "$MAIN_CELL/results.json" ]; then SIDE+=(--baseline-from "$MAIN_CELL"); fi
CONTROL=("${SIDE[@]}" --grid "augmented=$SYN")   # teacher, sources, sources-hard: the same set, other labels or images

if part gen; then
    stamp "$FAMILY generator on $([ "$N" = 0 ] && echo every image || echo "$N image(s) per identity")"
    if [ "$FAMILY" = defgan ]; then
        recipe=(--recipe defgan_market_cpu --set train.steps="$DEFGAN_STEPS")
    else
        recipe=(--recipe pg2_market_cpu --set pose.mask_style=pg2 --set loss.d_variant=pair
                --set "train.stages=[g1]" --set train.g1_iters="$G1_ITERS")
    fi
    if [ "$GEN_DATA" != market ] && ! annotated "$GEN_ANN"; then   # a partial annotation file is continued
        timed "annotate" reid-aug annotate "$GEN_DATA" --out "$GEN_ANN" --workers 2
    fi
    timed "$FAMILY train" reid-aug train-generator "${GEN_ON[@]}" "${recipe[@]}" --set train.tensorboard=false \
        --set train.seed=0 --out "$GEN" --resume
fi
if part syn; then
    stamp "synthesize K = $K per identity from the kept sources"
    timed "synthesize" reid-aug synthesize --run "$GEN" --dataset market --train-per-id "$N" --subset-seed 0 \
        --poses-per-id "$K" --strategy diverse --out "$SYN" --device cpu "${CROSS[@]}"
fi
if part val; then
    stamp "validation curve of the baseline ($VAL_IDS identities held out)"
    timed "$VAL_NAME" reid-aug benchmark --baseline-only --recipe reid_cpu_small --dataset market "${REGIME[@]}" \
        --set data.val_ids="$VAL_IDS" --set eval.split=val --set train.epochs="$VAL_EPOCHS" \
        --set eval.curve_every="$VAL_EVERY" --seeds 0 --out "$OUT/$VAL_NAME"
fi
if part base0; then
    stamp "baseline seed 0 (the teacher)"
    timed "base0" reid-aug benchmark --baseline-only "${REID[@]}" --seeds 0 --out "$OUT/base0"
fi
if part base12; then
    stamp "baselines seeds $BASE12_SEEDS (seed 1: the judge)"
    timed "base12" reid-aug benchmark --baseline-only "${REID[@]}" --seeds "$BASE12_SEEDS" --out "$OUT/base12"
fi
if part reid; then
    stamp "batch mixing, hard labels"
    timed "reid" reid-aug sweep "${SWEEP[@]}" --labels same-id --out "$OUT/sweep"
fi
if part teacher; then
    stamp "batch mixing, teacher soft labels"
    timed "teacher" reid-aug sweep "${CONTROL[@]}" --labels teacher --set train.teacher="$TEACHER" \
        --out "$OUT/sweep_teacher"
fi
if part sources; then
    stamp "no-generation control: the teacher on the real sources"
    timed "sources" reid-aug sweep "${CONTROL[@]}" --labels teacher --set train.teacher="$TEACHER" \
        --set train.augmented_images=sources --out "$OUT/sweep_sources"
fi
if part sources-hard; then
    stamp "no-generation control with hard labels: the real sources, the same stream"
    timed "sources-hard" reid-aug sweep "${CONTROL[@]}" --labels same-id --set train.augmented_images=sources \
        --out "$OUT/sweep_sources_hard"
fi
if part filter; then
    stamp "filtered copy of the synthesized set (top-$FILTER_K by the seed-0 baseline), hard labels"
    FILTERED="${SYN}_filtered"   # a copy: `filter` marks the set's manifest, and the `reid` cell reads the whole set
    if [ ! -d "$FILTERED" ]; then rm -rf "$FILTERED.part"; cp -a "$SYN" "$FILTERED.part"; mv "$FILTERED.part" "$FILTERED"; fi
    timed "filter" reid-aug filter "$FILTERED" --reid-model "$TEACHER" --rule top-k --k "$FILTER_K" --device cpu
    timed "filter reid" reid-aug sweep "${SIDE[@]}" --grid "augmented=$FILTERED" --labels same-id \
        --out "$OUT/sweep_filter"
fi
if part per-image; then
    stamp "per image: $PER_IMAGE for every kept image, random target poses, hard labels"
    PER_IMAGE_SET="${SYN}_img$PER_IMAGE"
    timed "synthesize per image" reid-aug synthesize --run "$GEN" --dataset market --train-per-id "$N" \
        --subset-seed 0 --per-image "$PER_IMAGE" --strategy random --out "$PER_IMAGE_SET" --device cpu \
        "${CROSS[@]}"
    timed "per-image reid" reid-aug sweep "${SIDE[@]}" --grid "augmented=$PER_IMAGE_SET" --labels same-id \
        --out "$OUT/sweep_per_image"
fi
if part judge && [ ! -f "$OUT/judge_$FAMILY.json" ]; then
    stamp "identity judge"
    python benchmarks/identity_judge.py "$SYN" --reid-model "$JUDGE" --reid-model "$TEACHER" \
        --out "$OUT/judge_$FAMILY.json"
fi
stamp "done: $PARTS"
