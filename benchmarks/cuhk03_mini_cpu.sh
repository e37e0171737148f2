#!/usr/bin/env bash
# Issue 14, regime "CUHK03-mini with a Market-1501 generator" (leak-free by construction: the generator never saw
# a CUHK03 identity). Every step resumes; kill and start again at any time.
#
#   GEN=runs/table1_cpu/g1_posemask OUT=runs/cuhk03_mini bash benchmarks/cuhk03_mini_cpu.sh
#
# 1. synthesize for CUHK03-mini's 200 training identities with Market-1501's pose bank (PG² never reads the
#    source pose): K = 10 per identity (2,000 images) and K = 2 per image (Deformable GAN's protocol, 3,870);
# 2. validation stage (choose the epoch budget; the test split is not read): 50 of the 200 training identities
#    held out (data.val_ids=50, eval.split=val), baseline + batch-mixed augmented run, 30 and 60 epochs, the
#    curve every 5 epochs (recorded: the 60-epoch baseline's curve flattens after its decay -> EPOCHS=60);
# 3. test stage, 3 seeds, paired 95 % intervals: batch mixing (CamStyle: each batch = the baseline's 32 real
#    images + 12 generated) with K per identity, then K per image; two processes share the sweep (run claims);
# 4. how much identity the generated images carry (benchmarks/identity_judge.py, two baseline models as judges);
# 5. teacher soft labels (DG-Net) on the same images, the seed-0 baseline as the teacher;
# 6. records: python benchmarks/collect_sweep.py OUT/<sweep> benchmarks/results/cuhk03_mini/<sweep>.
# Environment: GEN (a Market-1501 generator run), OUT, CUHK (the dataset), SEEDS, EPOCHS (the chosen budget).
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${CLI:-reid-aug}
GEN=${GEN:?a Market-1501 generator run folder, e.g. runs/table1_cpu/g1_posemask}
OUT=${OUT:-runs/cuhk03_mini}
CUHK=${CUHK:-$(cd .. && pwd)/shared/datasets/cuhk03-detected-mini}
SEEDS=${SEEDS:-0,1,2}
EPOCHS=${EPOCHS:-30}
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$OUT/timeline.txt"; }

stamp "synthesize"
common=(--run "$GEN" --dataset "$CUHK" --pose-bank market --strategy random --cross-dataset --device cpu)
$CLI synthesize "${common[@]}" --poses-per-id 10 --out "$OUT/syn_k10"
$CLI synthesize "${common[@]}" --per-image 2 --out "$OUT/syn_img2"

stamp "validation stage"
for e in 30 60; do
  $CLI sweep --recipe reid_cpu_small --dataset "$CUHK" --augmented "$OUT/syn_k10" --grid train.epochs=$e \
      --set train.mix=batch --set train.labels=same-id --set 'train.teacher=""' --set data.val_ids=50 --set eval.split=val --seeds 0 --out "$OUT/val_e$e"
done

stamp "test stage, epochs $EPOCHS, seeds $SEEDS"
# hard labels pinned (the recorded protocol; the recipe's default became the teacher's soft labels)
test=(--recipe reid_cpu_small --dataset "$CUHK" --set train.mix=batch --set train.labels=same-id --set 'train.teacher=""'
      --set train.epochs="$EPOCHS"
      --set train.budget=epochs --set eval.curve_every=0 --seeds "$SEEDS")
$CLI sweep "${test[@]}" --grid "augmented=$OUT/syn_k10,$OUT/syn_img2" --out "$OUT/test_batch" &
sleep 60   # a second process on the same sweep trains the runs the first has not claimed
$CLI sweep "${test[@]}" --grid "augmented=$OUT/syn_k10,$OUT/syn_img2" --out "$OUT/test_batch"
wait

stamp "identity judge"
models="$OUT/test_batch/cells/augmented=syn_k10/models"
python benchmarks/identity_judge.py "$OUT/syn_k10" --reid-model "$models/baseline_seed0.pt" \
    --reid-model "$models/baseline_seed1.pt" --out "$OUT/identity_judge.json"

stamp "teacher soft labels"
$CLI sweep "${test[@]}" --grid "augmented=$OUT/syn_k10" --labels teacher --set train.teacher="$models/baseline_seed0.pt" \
    --baseline-from "$OUT/test_batch/cells/augmented=syn_k10" --out "$OUT/test_teacher"
stamp "done"
