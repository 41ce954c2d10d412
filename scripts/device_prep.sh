#!/usr/bin/env bash
# What scripts/device_gpures.sh carries to a lent GPU machine, made here in the venv from the repo root: .gpu/ (the
# data shrunk to travel, the boxes, ImageNet weights, model folders to start or distil from) and .whl/ (what the
# machine lacks), then whether it fits the 64 MiB a call takes with assets/models moved aside. Step 28 lost minutes
# of a session to a copy at the shrink's default quality that did not fit; this says so before the machine starts.
#   scripts/device_prep.sh [MODEL_DIR ...]   # each folder's model.safetensors and config.json into .gpu/init/NAME; rm -rf .gpu/init to start over
# FA_SIZE, MR_SIZE, QUALITY: the copies (512, 320, 80: steps 14-15; step 28 carried three models at 256, 256, 75).
# PRETRAINED=0 leaves out the ImageNet weights (runs that start from a model folder do not read them).
set -euo pipefail
mkdir -p .gpu/init .whl
shrink() { [ -f ".gpu/$1.tar" ] || python -m train.shrink --data-dir "data/$2" --out ".gpu/$1.tar" --size "$3" \
             --quality "${QUALITY:-80}" --format webp --prefix "$2"; }
shrink fa fracatlas "${FA_SIZE:-512}"
shrink mr bone-fracture "${MR_SIZE:-320}"
[ "${PRETRAINED:-1}" = 0 ] || [ -d .gpu/pretrained ] || python -m train.shrink --weights ../shared/pretrained --out .gpu/pretrained
cp ../shared/data/fracatlas/annotations.json .gpu/
for m in "$@"; do mkdir -p ".gpu/init/$(basename "$m")" && cp "$m"/{model.safetensors,config.json} ".gpu/init/$(basename "$m")/"; done
ls .whl/timm-1.0.31-* .whl/ttach-* >/dev/null 2>&1 || python -m pip download -q --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.12 -d .whl timm==1.0.31 ttach
ls .whl/grad_cam-1.5.7-* >/dev/null 2>&1 || python -m pip wheel -q --no-deps -w .whl grad-cam==1.5.7
tree=$(git ls-files -z | grep -zv '^assets/models/' | du -cb --files0-from=- | tail -n 1 | cut -f1)
total=$(( $(du -sb .gpu .whl | awk '{s += $1} END {print s}') + tree ))
echo "travels: $(( total / 1048576 )) MiB of 64 (.gpu, .whl and the tree without assets/models)"
[ "$total" -le $(( 64 * 1048576 )) ] || { echo "too large: shrink smaller (FA_SIZE, MR_SIZE, QUALITY) or carry fewer models" >&2; exit 1; }
