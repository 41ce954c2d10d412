#!/usr/bin/env bash
# scripts/train_zoo.sh gpures on a lent GPU machine (the workplace's device tool), run from the repo root with
# .gpu/ and .whl/ carried, both made here first by scripts/device_prep.sh (which says whether they fit), and
# assets/models moved aside for the call: the tree that travels is at most 64 MiB.
#   SMOKE=1 scripts/device_gpures.sh    # a one-minute check first: wheels, interpreter, GPU
#   scripts/device_gpures.sh SECONDS    # the runs, stopped after SECONDS; each run lands in $OUT/RUN.tar as it ends
#   STAGE=guide INIT=.gpu/init/RUN PARALLEL=1 BUDGET=MIN scripts/device_gpures.sh SECONDS   # another train_zoo stage
#   STAGE=distil PARALLEL=1 INIT_DIR=.gpu/init TEACHER_DIR=.gpu/init/efficientnet_lite0_fusion EPOCHS=10 LR=3e-4 BUDGET=5 \
#     scripts/device_gpures.sh SECONDS   # the from-scratch families distilled at full epochs (step 28): their bundled
#     models (model.safetensors, config.json) copied into .gpu/init, data shrunk to 256 px at quality 75 to fit
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# train_zoo.sh calls `python`; a symlink to a venv's python3 loses the venv (the first try's error), a wrapper does not
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/bin/python && chmod +x /tmp/bin/python
export PATH=/tmp/bin:$PATH
python -c "import os, torch, timm, pytorch_grad_cam, train.__main__, train.loop  # every import a run needs, checked in seconds
print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())
assert torch.cuda.is_available() or os.environ.get('ALLOW_CPU'), 'no GPU: not training here'" || exit 4
[ -n "${SMOKE:-}" ] && exit 0
mkdir -p data && tar -xf .gpu/fa.tar -C data && tar -xf .gpu/mr.tar -C data || exit 5
pack() { tar -C "$GPU_RUNS" --exclude=.train_state -cf "$OUT/$1.tar" "$1" "$1.log"; }  # called by train_zoo as each run ends
export -f pack
export GPU_RUNS=${GPU_RUNS:-/tmp/gpu_runs} FRACTURE_PRETRAINED_DIR=.gpu/pretrained ANNOTATIONS=.gpu/annotations.json BOOTSTRAP=${BOOTSTRAP:-200} ON_DONE=pack
SPLIT_FILE=assets/splits/grouped_split.csv timeout --kill-after 10 "${1:-420}" scripts/train_zoo.sh "${STAGE:-gpures}" data/bone-fracture "$GPU_RUNS"
echo "train_zoo ${STAGE:-gpures}: exit $?"
for d in "$GPU_RUNS"/*/; do  # a run the timeout stopped: its best epoch so far travels too (evaluate it with train.evaluate)
  r=$(basename "$d"); [ -f "$OUT/$r.tar" ] || [ ! -f "$d/model.safetensors" ] || pack "$r"
done
tar -C "$GPU_RUNS" -cf "$OUT/logs.tar" $(cd "$GPU_RUNS" && ls *.log)
for f in "$GPU_RUNS"/*.log; do echo "== $f"; grep -E "decoded|^epoch|budget|fracatlas val|test:|Error|FAILED" "$f" | tail -n 14; done
