#!/usr/bin/env bash
# The exact commands behind every bundled model in assets/models/.
#   scripts/train_zoo.sh cpu   DATA OUT   # RegNet and MobileNetV3 from ImageNet (minutes each on 2 CPU cores)
#   scripts/train_zoo.sh gpu   DATA OUT   # EfficientNet-Lite0, then the from-scratch families (custom CNN, VGG19, WRN, ViT, Swin)
#   scripts/train_zoo.sh transformers DATA OUT   # ViT and Swin only (TEACHER_DIR: the teacher model folder)
#   scripts/train_zoo.sh official DATA OUT       # every family's twin on the official split, for the published comparison
#   scripts/train_zoo.sh balance DATA OUT        # the radiograph-balanced sampling experiment (not bundled)
#   scripts/train_zoo.sh guard DATA OUT          # the default model's radiograph guard (FRACATLAS: its folder)
#   scripts/train_zoo.sh sampling DATA OUT       # EfficientNet-Lite0 on both sources: source-balanced vs plain sampling, and FracAtlas alone
#   scripts/train_zoo.sh both DATA OUT           # the other families on both sources (the app's models)
#   scripts/train_zoo.sh resolution DATA OUT     # EfficientNet-Lite0 at 320 px (SIZE), fine-tuned from its 224 px run (INIT)
#   scripts/train_zoo.sh longer DATA OUT         # the default trained on for BUDGET (40) more minutes
#   scripts/train_zoo.sh lowlr DATA OUT          # step 3's recipe at lr 1e-4 instead of 5e-4
#   scripts/train_zoo.sh lpft DATA OUT           # step 3's recipe from a head fitted on frozen features (LP-FT)
#   scripts/train_zoo.sh lpftld DATA OUT         # LP-FT with a calibrated head and layer-wise lr decay 0.85
#   scripts/train_zoo.sh ema DATA OUT            # step 3's recipe, validating a moving average of the weights
#   scripts/train_zoo.sh guide DATA OUT          # the default fine-tuned on with and without its map pulled into drawn boxes
#   scripts/train_zoo.sh gpures DATA OUT         # one GPU: the both-sources recipe run to its epochs at 320 and 512 px
#   scripts/train_zoo.sh fuse DATA OUT           # the default (INIT) fused with a frozen ImageNet EfficientNet-Lite0's probe
#   scripts/train_zoo.sh seeds DATA OUT          # one recipe (MobileNetV3, fixed epochs) over SEEDS: what a seed alone moves
#   scripts/train_zoo.sh crossval DATA OUT       # the same recipe over FOLDS of FracAtlas's groups (train.crossval)
#   scripts/train_zoo.sh hybrid DATA OUT         # ViT and Swin as the ViT paper's hybrids: their tokens from ImageNet CNN stages
#   scripts/train_zoo.sh distil DATA OUT         # bundled CNNs (FAMILIES) trained on, distilled from the default (TEACHER_DIR)
#   scripts/train_zoo.sh vgg19 DATA OUT          # VGG19 from VGG16's ImageNet trunk (vgg19_imagenet), distilled from the default
#   scripts/train_zoo.sh vgg19lp DATA OUT        # that VGG19 frozen, its head fitted on its features (issue 38's LP rung; vgg19cpu starts from it)
#   scripts/train_zoo.sh vgg19cpu DATA OUT       # vgg19lp's run fine-tuned on 2 CPU cores, blocks 1-4 frozen, in pieces (RESUME=1); again from blocks 4-5: the bundled vgg19
#   scripts/train_zoo.sh bundle DATA OUT         # copy the chosen runs into assets/models (then: train.calibrate, guard, report)
# DATA: Kaggle-layout folder with grouped_split.csv (python -m train.audit); OUT: parent of model folders.
# ViT and Swin distil from OUT/$TEACHER (default efficientnet_lite0), as DeiT did; train it first.
set -uo pipefail
stage=$1 data=$2 out=$3
split=(--split-mode grouped --split-file "${SPLIT_FILE:-$data/grouped_split.csv}" --half --seed 0 --bootstrap ${BOOTSTRAP:-1000})
teacher=${TEACHER:-efficientnet_lite0}
run() {  # run MODEL [args]; FOLDER names the output folder (default MODEL). A failed model is reported, the next still trains
  python -m train --data-dir "$data" --output-dir "$out/${FOLDER:-$1}" --model "$1" "${split[@]}" "${@:2}" || echo "FAILED: ${FOLDER:-$1}" >&2
}
transformers() {  # from scratch: low lr and a real warm-up (at 1e-3 with none they collapse to a constant)
  for m in vit swin; do
    run $m --epochs 40 --warmup-epochs 4 --batch-size 128 --lr 2e-4 --patience 40 --teacher "${TEACHER_DIR:-$out/$teacher}" \
      --time-budget ${GPU_BUDGET_T:-2.0}; ${ON_DONE:-true} $m
  done
}
sources=(--data "bone-fracture=$data:${SPLIT_FILE:-$data/grouped_split.csv}"
         --data "fracatlas=${FRACATLAS:-data/fracatlas}:${FRACATLAS_SPLIT:-assets/splits/fracatlas_split.csv}")
recipe() {  # recipe MODEL [MINUTES]: sets recipe_args, the both-sources recipe's arguments (threshold at >= 90% validation sensitivity)
  recipe_args=(--model "$1" --epochs ${EPOCHS:-8} --batch-size 32 --lr ${LR:-5e-4} --warmup-epochs 0.3 --patience 8 ${2:+--time-budget $2}
     --min-sensitivity 0.9 --half --seed 0 --bootstrap ${BOOTSTRAP:-1000})
}
both() {  # both MODEL FOLDER MINUTES [args]: both sources, the recipe
  recipe "$1" "$3"
  python -m train "${sources[@]}" --output-dir "$out/$2" "${recipe_args[@]}" "${@:4}" || echo "FAILED: $2" >&2
  ${ON_DONE:-true} $2
}
side() {  # side LOG CMD...: with PARALLEL=1 in the background, logging to LOG (runs side by side on one GPU; the
  # stage waits for them), else in the foreground
  local log=$1; shift
  if [ -n "${PARALLEL:-}" ]; then mkdir -p "$(dirname "$log")" && "$@" > "$log" 2>&1 & else "$@"; fi
}
case $stage in
  cpu)  # ImageNet-started CNNs that train at 50-180 img/s on 2 CPU cores (bf16, channels-last)
    for m in regnet mobilenetv3; do
      run $m --pretrained local --epochs ${CPU_EPOCHS:-5} --batch-size 32 --lr 5e-4 --patience 3 --time-budget ${CPU_BUDGET:-7}
    done ;;
  gpu)  # one GPU: the teacher first, then the from-scratch families; $ON_DONE runs after each model
    run efficientnet_lite0 --pretrained local --epochs 30 --batch-size 128 --lr 1e-3 --time-budget ${GPU_BUDGET_P:-0.5}; ${ON_DONE:-true} efficientnet_lite0
    for m in custom_cnn vgg19 wide_resnet; do
      run $m --epochs 60 --batch-size 128 --lr 1e-3 --patience 10 --time-budget ${GPU_BUDGET:-0.9}; ${ON_DONE:-true} $m
    done
    transformers ;;
  transformers) transformers ;;
  official)  # as the published numbers were made: the official split (whose test split leaks), the study's flips only.
    # Each family continues from its grouped-split model in OUT (INIT_DIR to change), on 2 CPU cores; MobileNetV3
    # and RegNet start from ImageNet as their grouped twins did. Epochs sized so each fits its minutes.
    official() {  # official MODEL FOLDER MINUTES EPOCHS LR [more args]
      python -m train --data-dir "$data" --output-dir "$out/$2" --model "$1" --split-mode official --half \
        --seed 0 --bootstrap ${BOOTSTRAP:-1000} --augment flip --batch-size 32 --warmup-epochs 0.1 --patience 10 \
        --time-budget $3 --epochs $4 --lr $5 "${@:6}" || echo "FAILED: $2" >&2
      ${ON_DONE:-true} $2
    }
    official mobilenetv3 mobilenetv3_official 5 3 5e-4 --pretrained local
    official regnet regnet_official 5 3 5e-4 --pretrained local
    for m in wide_resnet:8:4:5e-4 vgg19:14:2:3e-4; do
      IFS=: read -r name minutes epochs lr <<< "$m"
      official $name ${name}_official $minutes $epochs $lr --init-from "${INIT_DIR:-$out}/$name"
    done
    # the custom CNN trains at 14 img/s (11 min an epoch): one epoch, then two more at a lower peak
    official custom_cnn custom_cnn_official_warm 12 1 3e-4 --init-from "${INIT_DIR:-$out}/custom_cnn"
    official custom_cnn custom_cnn_official 24 2 2e-4 --init-from "$out/custom_cnn_official_warm"
    # ViT and Swin: 3 epochs from their grouped models, then distilled from the RegNet twin (DeiT-style):
    # Swin 3 epochs; ViT, its validation loss still falling, 3 + 5 + 3 + 5 (the last folder is the bundled one)
    distil=(--teacher "$out/regnet_official")
    official swin swin_official_warm 12 3 1e-4 --init-from "${INIT_DIR:-$out}/swin"
    official swin swin_official 12 3 1e-4 --init-from "$out/swin_official_warm" "${distil[@]}"
    official vit vit_official_warm 12 3 1e-4 --init-from "${INIT_DIR:-$out}/vit"
    official vit vit_official_distil1 12 3 1e-4 --init-from "$out/vit_official_warm" "${distil[@]}"
    official vit vit_official_distil2 20 5 2e-4 --init-from "$out/vit_official_distil1" "${distil[@]}" --warmup-epochs 0.2
    official vit vit_official_distil3 12 3 1e-4 --init-from "$out/vit_official_distil2" "${distil[@]}"
    official vit vit_official 20 5 1e-4 --init-from "$out/vit_official_distil3" "${distil[@]}" ;;
  balance)  # README "Reading the table honestly": EfficientNet-Lite0 on 2 CPU cores, with and without
    # radiograph-balanced sampling (not bundled: neither beats the bundled GPU model on grouped test)
    for b in radiograph none; do
      FOLDER=efficientnet_lite0_balance_$b run efficientnet_lite0 --pretrained local --epochs 8 --batch-size 32 --lr 5e-4 \
        --warmup-epochs 0.5 --patience 8 --time-budget 12 --balance $b
    done ;;
  guard)  # the app's "does not look like a radiograph": fitted on train radiographs of both sources, thresholded on val;
    # at the layer bench/ood.py --layers chose (GUARD_LAYER), on GUARD_MODEL's features (the bundled guard: the default's
    # frozen ImageNet branch, OUT=assets/models)
    python -m train.guard --model "$out/${GUARD_MODEL:-efficientnet_lite0_fusion}" --layer "${GUARD_LAYER:-floor.blocks.5}" --data "$data:${SPLIT_FILE:-$data/grouped_split.csv}" \
      --data "${FRACATLAS:-data/fracatlas}:${FRACATLAS_SPLIT:-assets/splits/fracatlas_split.csv}" ;;
  sampling)  # issue 11: does source-balanced sampling keep ~7,300 Multi-Region files (~525 radiographs) from drowning
    # FracAtlas's ~2,350? Same recipe, same minutes, plain vs balanced; then FracAtlas alone (the matrix's middle row)
    for b in source none; do
      both efficientnet_lite0 efficientnet_lite0_both_$b ${BUDGET:-12} --pretrained local --balance $b
    done
    [ -f "$out/efficientnet_lite0_fracatlas/metrics.json" ] || python -m train --data "${sources[3]}" --output-dir "$out/efficientnet_lite0_fracatlas" --model efficientnet_lite0 \
      --pretrained local --epochs 10 --batch-size 32 --lr 5e-4 --warmup-epochs 0.5 --patience 10 --time-budget 10 \
      --min-sensitivity 0.9 --half --seed 0 --bootstrap 200 || echo "FAILED: efficientnet_lite0_fracatlas" >&2 ;;
  both)  # the other families on both sources (BALANCE: the sampling stage's winner on validation data).
    # ImageNet-started families from ImageNet; the from-scratch ones continue from their Multi-Region model (INIT_DIR)
    # and distil from TEACHER_DIR (DeiT-style), as their Multi-Region twins did
    for m in regnet mobilenetv3; do both $m $m ${BUDGET:-8} --pretrained local --balance ${BALANCE:-source}; done
    for m in ${FAMILIES:-custom_cnn wide_resnet vgg19 vit swin}; do
      both $m $m ${SCRATCH_BUDGET:-5} --balance ${BALANCE:-source} --init-from "${INIT_DIR:-assets/models}/$m" \
        --teacher "${TEACHER_DIR:-$out/efficientnet_lite0_both_${BALANCE:-source}}"
    done ;;
  resolution)  # FracAtlas fractures are small: EfficientNet-Lite0 fine-tuned on at 320 px from its 224 px model
    # (FixRes-style: a conv net's weights fit any size); kept only if validation data prefer it
    # (SIZE=384 INIT=assets/models/efficientnet_lite0 as bundled at commit 9f6f58b: the next size up from the default then)
    both efficientnet_lite0 efficientnet_lite0_both_${SIZE:-320} ${BUDGET:-10} --image-size ${SIZE:-320} --lr 2e-4 \
      --warmup-epochs 0.1 --balance ${BALANCE:-source} --init-from "${INIT:-$out/efficientnet_lite0_both_${BALANCE:-source}}" ;;
  longer)  # issue 11's next rung: the default (320 px, one epoch so far) trained on for BUDGET more minutes from its
    # bundled weights (a new cosine cycle; INIT: assets/models/efficientnet_lite0 as bundled at commit 9f6f58b)
    both efficientnet_lite0 efficientnet_lite0_both_320_long ${BUDGET:-40} --image-size 320 --lr 2e-4 --warmup-epochs 0.1 \
      --balance ${BALANCE:-source} --init-from "${INIT:?a fine-tuned efficientnet_lite0 folder}" ;;
  lowlr)  # issue 11's rung "keep more of ImageNet": step 3's recipe (224 px, 12 min, source-balanced) at a fifth of the rate
    LR=1e-4 both efficientnet_lite0 efficientnet_lite0_both_lowlr ${BUDGET:-12} --pretrained local --balance source ;;
  lpft)  # issue 11's rung LP-FT: step 3's recipe (224 px, source-balanced, 3 epochs) from a head fitted on frozen features
    EPOCHS=3 both efficientnet_lite0 efficientnet_lite0_both_lpft ${BUDGET:-40} --pretrained local --balance source --head-init probe ;;
  lpftld)  # LP-FT as Kumar et al. meant it: the fitted head calibrated (train.head_init), early layers barely moving
    # (--layer-decay 0.85: the stem at 0.06x the head's rate); otherwise step 3's recipe, as lpft
    EPOCHS=3 both efficientnet_lite0 efficientnet_lite0_both_lpftld ${BUDGET:-40} --pretrained local --balance source \
      --head-init probe --layer-decay ${LAYER_DECAY:-0.85} ;;
  ema)  # step 3's recipe (224 px, 12 min, source-balanced, lr 5e-4) validating and keeping a moving average of the
    # weights (--ema 0.99: about the last 100 steps, a third of an epoch) instead of the last weights
    both efficientnet_lite0 efficientnet_lite0_both_ema ${BUDGET:-12} --pretrained local --balance source --ema ${EMA:-0.99} ;;
  guide)  # issue 11's rung "teach the map where the fracture is": the default fine-tuned on at 320 px for BUDGET (15)
    # minutes with its class-activation map pulled into FracAtlas's drawn training boxes (--box-weight, train.guidance),
    # and the same minutes without (the control, box0); kept only if FracAtlas validation prefers it
    # MODEL=regnet BOX_WEIGHTS=1: the same for another bundled family (the guided run alone); INIT: the folder to start
    # from (default the bundled model); PARALLEL=1 runs them side by side (one GPU), else one after the other
    m=${MODEL:-efficientnet_lite0}
    for w in ${BOX_WEIGHTS:-0 1}; do
      r=${m}_both_320_box$w${SEED:+_seed$SEED}  # SEED: another seed of the same run (step 19's second)
      [ -f "$out/$r/metrics.json" ] && continue
      args=($m $r ${BUDGET:-15} --image-size 320 --lr 2e-4 --warmup-epochs 0.1 --balance source
            --init-from "${INIT:-assets/models/$m}" --box-weight $w --boxes "${ANNOTATIONS:-../shared/data/fracatlas/annotations.json}"
            ${SEED:+--seed $SEED})
      side "$out/$r.log" both "${args[@]}"
    done
    wait ;;
  gpures)  # issue 11's rung "a GPU for resolutions": step 3's recipe (both sources, source-balanced, from ImageNet), but
    # run to its EPOCHS (12) instead of stopping after 2-3 for CPU minutes; EfficientNet-Lite0 at 320 (the control) and at
    # 512 px, the same with box guidance (_box1, train.guidance), RegNet and MobileNetV3 at 512, all at once on one GPU,
    # GPU_BUDGET minutes each. RUNS: other folder names of the form MODEL_gpu_SIZE[_box1][_seed1].
    # Data shrunk to travel: python -m train.shrink --size 512 --format webp
    EPOCHS=${EPOCHS:-12}
    for r in ${RUNS:-efficientnet_lite0_gpu_320 efficientnet_lite0_gpu_512 efficientnet_lite0_gpu_512_box1 regnet_gpu_512 mobilenetv3_gpu_512}; do
      base=${r%_seed1}; base=${base%_box1}; size=${base##*_}; model=${base%_gpu_*}; extra=()
      [[ $r == *_box1* ]] && extra+=(--box-weight 1 --boxes "${ANNOTATIONS:-../shared/data/fracatlas/annotations.json}")
      [[ $r == *_seed1 ]] && extra+=(--seed 1)
      PARALLEL=1 side "$out/$r.log" both $model $r ${GPU_BUDGET:-5} --pretrained local --balance source --image-size $size "${extra[@]}"
    done
    wait ;;
  seeds)  # issue 11's rung "seeds": how far one recipe moves with its seed alone (`git show 3a09676:bench/seed_spread.py` read the runs).
    # MobileNetV3's both-sources recipe (the both stage's: from ImageNet, source-balanced) at a fixed EPOCHS (7, where
    # its 8-minute budget ended) under a budget it never reaches, so every seed gets the same schedule: only --seed
    # (sampling order, augmentations) differs
    m=${MODEL:-mobilenetv3}
    for s in ${SEEDS:-0 1 2}; do
      [ -f "$out/${m}_seed$s/metrics.json" ] || EPOCHS=${EPOCHS:-7} both $m ${m}_seed$s ${BUDGET:-40} --pretrained local --balance source --seed $s
    done ;;
  crossval)  # issue 11's rung 1: the seeds stage's recipe (MobileNetV3, 7 epochs) once per fold, FracAtlas's train and
    # validation groups dealt into FOLDS (5); Multi-Region keeps its split (its rotated copies sit in a few groups).
    # Out-of-fold ROC AUC, operating points placed on it, the folds' mean on test: OUT/<model>_cv/crossval.json.
    # Rerun to resume. The default's recipe (step 14's, on a GPU): MODEL=efficientnet_lite0 EPOCHS=12 CV_ARGS="--image-size 320"
    m=${MODEL:-mobilenetv3}
    EPOCHS=${EPOCHS:-7} recipe $m ${BUDGET:-40}
    python -m train.crossval "${sources[@]}" --folds ${FOLDS:-5} --out "$out/${m}_cv" -- "${recipe_args[@]}" --pretrained local \
      --balance source ${CV_ARGS:-} 2>&1 | tee "$out/${m}_cv.log"
    ${ON_DONE:-true} ${m}_cv ;;
  fuse)  # issue 11's step 17: step 15's model beside a frozen ImageNet EfficientNet-Lite0 whose probe is fitted on
    # FracAtlas train, mixed at the w FracAtlas validation chose; recalibrated on both sources' validation files. INIT:
    # step 15's calibrated folder (assets/models/efficientnet_lite0 at commit 10d34ea: git worktree add /tmp/s15 10d34ea).
    # Then its own guard on the frozen branch (the guard stage). The probe fits on both sources (FracAtlas alone: 16b's).
    python -m train.fuse --model "${INIT:?the step-15 model folder}" --out "$out/efficientnet_lite0_fusion" \
      "${sources[@]}" --probe-sources fracatlas,bone-fracture --choose-on fracatlas --min-sensitivity 0.9
    # step 18: MobileNetV3 (the both stage's run) beside its own frozen ImageNet MobileNetV3-small, the same way
    python -m train.fuse --model "$out/mobilenetv3" --floor mobilenetv3 --out "$out/mobilenetv3_fusion" \
      "${sources[@]}" --probe-sources fracatlas,bone-fracture --choose-on fracatlas --min-sensitivity 0.9 ;;
  hybrid)  # issue 11's rung for the transformer families: their blocks over ImageNet CNN features (the ViT paper's
    # hybrid; registry vit_hybrid, swin_hybrid): both sources, the both stage's recipe from ImageNet (the stem; the
    # transformer from timm's init), 224 px, BUDGET minutes each; each kept over its from-scratch model only if
    # FracAtlas validation prefers it (python -m train.choose). STEM: a file from python -m train.backbone (the
    # stem from a model already fine-tuned on radiographs, not ImageNet), its runs in folders ending _tunedstem
    for m in ${MODELS:-vit_hybrid swin_hybrid}; do
      EPOCHS=${EPOCHS:-12} both $m $m${STEM:+_tunedstem} ${BUDGET:-40} --pretrained "${STEM:-local}" --balance source; done ;;
  distil)  # issue 11's rung for the families below the default, first the from-scratch ones (no ImageNet weights
    # exist offline for them): each bundled both-sources model (INIT_DIR) trained on for BUDGET minutes,
    # distilled (DeiT-style) from TEACHER_DIR, the app's default; runs in folders ending _distil. SIZE: train at
    # another resolution than the recipe's 224 px (for a model bundled at 320, as RegNet); FAMILY@SIZE sets it for
    # one family. PARALLEL=1 runs the families side by side (one GPU), each logging to OUT/FAMILY_distil.log.
    # STEM: start from a weights file instead (train.backbone: a fusion's tuned branch, as MobileNetV3's, step 30)
    for f in ${FAMILIES:-custom_cnn wide_resnet vgg19}; do
      m=${f%@*}; size=${SIZE:-}; [[ $f == *@* ]] && size=${f#*@}
      start=(--init-from "${INIT_DIR:-assets/models}/$m"); [ -n "${STEM:-}" ] && start=(--pretrained "$STEM")
      args=($m ${m}_distil ${BUDGET:-40} --balance source "${start[@]}"
            --teacher "${TEACHER_DIR:-assets/models/efficientnet_lite0_fusion}" ${size:+--image-size $size})
      side "$out/${m}_distil.log" both "${args[@]}"
    done
    wait ;;
  vgg19)  # issue 38: the study's VGG19 from ImageNet. Here VGG16's trunk with each extra convolution an identity
    # (vgg19_imagenet, --pretrained local; the Hub's vgg19.tv_in1k elsewhere), both sources at 224 px, source-balanced,
    # distilled from the default at lr 1e-4 for EPOCHS (8): the GPU rung (its forward pass alone runs at about 5 img/s here).
    LR=${LR:-1e-4} recipe vgg19_imagenet ${BUDGET:-60}
    python -m train "${sources[@]}" --output-dir "$out/vgg19_imagenet" "${recipe_args[@]}" --pretrained local --balance source \
      --teacher "${TEACHER_DIR:-assets/models/efficientnet_lite0_fusion}" ${RESUME:+--resume} || echo "FAILED: vgg19_imagenet" >&2 ;;
  vgg19lp)  # issue 38's LP rung (step 37): VGG19 from VGG16's ImageNet trunk, frozen; only its head is fitted (train.head_init:
    # the probe on both sources' train files, divided by its validation temperature), then calibrated and scored as every
    # run is. Rate 0 for one step: the trunk stays ImageNet's as it came (the fine-tuned rung above, vgg19, wants a GPU)
    LR=0 EPOCHS=1 recipe vgg19_imagenet 0.01
    python -m train "${sources[@]}" --output-dir "$out/vgg19_imagenet_lp" "${recipe_args[@]}" --pretrained local --balance source \
      --head-init probe --warmup-epochs 0 || echo "FAILED: vgg19_imagenet_lp" >&2 ;;
  vgg19cpu)  # issue 38's CPU rungs (steps 38 and 39, the bundled vgg19): the LP VGG19 (INIT: vgg19lp's run; step 38 started from
    # it as bundled at 0316d6d) fine-tuned with blocks 1-4 frozen (TRAIN_FROM 0.28: block 5 and the head learn, and only
    # they are differentiated), distilled from the default at lr 1e-4 for EPOCHS (3) at 224 px, without a time budget;
    # pauses after the epoch crossing LIMIT minutes (45): run it again with RESUME=1 until it finishes.
    # Step 39 (bundled): INIT=OUT/vgg19_imagenet_ft5 TRAIN_FROM=0.19 (blocks 4-5) LR=5e-5 EPOCHS=2 FOLDER=vgg19_imagenet_ft45
    LR=${LR:-1e-4} EPOCHS=${EPOCHS:-3} recipe vgg19_imagenet
    folder=${FOLDER:-vgg19_imagenet_ft5}
    python -m train "${sources[@]}" --output-dir "$out/$folder" "${recipe_args[@]}" --init-from "${INIT:-$out/vgg19_imagenet_lp}" \
      --train-from ${TRAIN_FROM:-0.28} --balance source --teacher "${TEACHER_DIR:-assets/models/efficientnet_lite0_fusion}" \
      --time-limit ${LIMIT:-45} ${RESUME:+--resume} || echo "FAILED: $folder" >&2 ;;
  bundle)  # the app's models: each run's folder (weights, config, card, plots; never .train_state) into assets/models.
    # DEFAULT_RUN: the EfficientNet-Lite0 run validation data chose (sampling, resolution); its Multi-Region-only
    # predecessor stays as efficientnet_lite0_multiregion, the FracAtlas-only one as efficientnet_lite0_fracatlas
    copy() { rm -rf "assets/models/$2" && mkdir -p "assets/models/$2" &&
             cp "$out/$1"/{model.safetensors,config.json,README.md,metrics.json} "$out/$1"/*.png "assets/models/$2/"; }
    copy "${DEFAULT_RUN:-efficientnet_lite0_fusion}" "${DEFAULT_RUN:-efficientnet_lite0_fusion}"
    copy efficientnet_lite0_fracatlas efficientnet_lite0_fracatlas
    # step 29: the both stage's RegNet fine-tuned on at 320 px (step 19: guide with MODEL=regnet BOX_WEIGHTS=0 INIT=$out/regnet),
    # then distilled from the default at 320 px (distil with INIT_DIR=assets/models FAMILIES=regnet@320, OUT/distil3, LR=2e-4)
    copy distil3/regnet_distil regnet
    copy mobilenetv3_fusion mobilenetv3_fusion
    # step 28: step 27's from-scratch CNNs distilled at full epochs on a lent GPU (distil with PARALLEL=1 through
    # scripts/device_gpures.sh, INIT_DIR: their bundled models; each call's run tars unpacked into OUT/gpu28/e<EPOCHS>/),
    # then train.calibrate on the original validation files (the runs calibrated on the shrunk copy's); step 33: that
    # custom CNN distilled again on these CPUs at a lower rate (distil with INIT_DIR=assets/models LR=1e-4
    # FAMILIES=custom_cnn EPOCHS=2, OUT/distil10)
    copy distil10/custom_cnn_distil custom_cnn
    # step 32: step 28's Wide ResNet distilled again on these CPUs at a lower rate (distil with INIT_DIR=assets/models
    # LR=1e-4, FAMILIES=wide_resnet EPOCHS=5, OUT/distil6); step 33: a second round the same way (EPOCHS=6, OUT/distil9)
    copy distil9/wide_resnet_distil wide_resnet
    # step 39: VGG19 from VGG16's ImageNet trunk, its head fitted on both sources with the trunk frozen (vgg19lp, step 37b),
    # then block 5 and the head fine-tuned, distilled from the default (vgg19cpu, 3 epochs: step 38), then blocks 4-5
    # (vgg19cpu with INIT=OUT/vgg19_imagenet_ft5 TRAIN_FROM=0.19 LR=5e-5 EPOCHS=2 FOLDER=vgg19_imagenet_ft45); it replaced
    # the half-width from-scratch VGG19 (step 32: distil with FAMILIES=vgg19 EPOCHS=2, OUT/distil8; git show 16afd90:assets/models/vgg19)
    copy vgg19_imagenet_ft45 vgg19
    # the hybrids (step 25): their stems from the default's tuned branch (hybrid with STEM=), then the flip mean
    # (train.calibrate --views 4); step 31: then distilled from the default (distil with INIT_DIR=assets/models
    # FAMILIES=vit_hybrid EPOCHS=2, then FAMILIES=swin_hybrid EPOCHS=1, LR=2e-4, OUT/distil5; the flip mean on a copy, _views4)
    for m in vit_hybrid swin_hybrid; do copy distil5/${m}_distil_views4 $m; done ;;
  *) echo "usage: $0 cpu|gpu|transformers|official|balance|guard|sampling|both|resolution|longer|lowlr|lpft|lpftld|ema|guide|gpures|fuse|hybrid|distil|vgg19|vgg19lp|vgg19cpu|bundle DATA OUT" >&2; exit 2 ;;
esac
