#!/usr/bin/env bash
# Issue 4's GPU run of ffcv-bench, within about 8 minutes, rows to $OUT/results.csv:
#   data           a synthetic ImageNet-like set (100 classes x 40 images of 448 px) and its beton
#   model          ResNet-50 train step, res 160/192/224, bf16, channels-last on and off
#   loader         ffcv vs torchvision ImageFolder+DataLoader, 16 workers, batch 256, res 160/192/224
#   epoch          ffcv-train pretrain_90ep.yaml end to end with --max-steps, and its bottleneck verdict
#   model_compile  the model bench again with torch.compile (slowest, so last)
# then `ffcv-bench report` (table on stdout, PNGs in $OUT) and the log in $OUT/device_run.log.
#
# Run from anywhere, with $OUT set and ffcv importable (the caller prepares PYTHONPATH and
# LD_LIBRARY_PATH, e.g. `source bench/gpu_env.sh`; see bench/README.md). The code measured
# is this checkout's: a shim package of symlinks into the repo goes first on PYTHONPATH, so
# an older installed copy of ffcv_inat cannot stand in for it.
#
# A failing or timed-out step is logged and the next one runs; each step gets at most the
# time left before BUDGET_S, and a step with under 20 s left is skipped. Exit status 0 only
# if every selected step succeeded. Every size below can be overridden from the environment
# (the CPU tests run the script with tiny ones).
set -u

: "${OUT:?set OUT to the folder for the results}"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-470}          # 8 minutes less a margin for start-up and the report
STEPS=${STEPS:-"data model loader epoch model_compile"}
CLASSES=${CLASSES:-100}
PER_CLASS=${PER_CLASS:-40}         # 4,000 images: 15 steps of 256 per epoch
SIZE=${SIZE:-448}                  # ImageNet's typical side is 400-500 px
WORKERS=${WORKERS:-16}
BATCH=${BATCH:-256}
LOADER_RES=${LOADER_RES:-160,192,224}
LOADER_EPOCHS=${LOADER_EPOCHS:-2}
MODEL_RES=${MODEL_RES:-160,192,224}
MODEL_BATCH=${MODEL_BATCH:-256}
MODEL_STEPS=${MODEL_STEPS:-30}
MODEL_WARMUP=${MODEL_WARMUP:-10}
MODEL_PRECISION=${MODEL_PRECISION:-bf16}
EPOCH_RECIPE=${EPOCH_RECIPE:-pretrain_90ep.yaml}
EPOCH_STEPS=${EPOCH_STEPS:-12}
EPOCH_EPOCHS=${EPOCH_EPOCHS:-2}

DEADLINE=$((SECONDS + BUDGET_S))
mkdir -p "$OUT"
RESULTS=$OUT/results.csv
LOG=$OUT/device_run.log
# KEEP_WORK=DIR keeps the data and beton in DIR for a caller's later steps.
if [ -n "${KEEP_WORK:-}" ]; then W=$KEEP_WORK; mkdir -p "$W"; else W=$(mktemp -d "${TMPDIR:-/tmp}/ffcv-bench-device.XXXXXX"); fi
DATA=$W/imagenet
BETON=$W/train.beton
FAILED=()
SKIPPED=()

say() { echo "$*" | tee -a "$LOG"; }

# ffcv_inat as this checkout lays it out (bench/, writers/, recipes/ are subpackages).
SHIM=$W/shim/ffcv_inat
mkdir -p "$SHIM"
for f in "$REPO"/ffcv_inat/*; do ln -s "$f" "$SHIM/$(basename "$f")"; done
for sub in bench writers recipes; do [ -e "$SHIM/$sub" ] || ln -s "$REPO/$sub" "$SHIM/$sub"; done
export PYTHONPATH=$W/shim${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

say "== ffcv-bench device run $(date -u +%FT%TZ), work dir $W, budget ${BUDGET_S}s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  | tee "$OUT/gpu.txt" | tee -a "$LOG"
if ! "$PY" -c "import ffcv, torch, ffcv_inat.bench.cli as c; print('ffcv_inat from', c.__file__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"; then
  say "cannot import ffcv / torch / ffcv_inat.bench: prepare PYTHONPATH and LD_LIBRARY_PATH first (bench/README.md)"
  exit 2
fi

# run_step NAME CMD...: run CMD with the time that is left; log, never abort the script.
run_step() {
  local name=$1; shift
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then
    say "[skipped] $name: ${left}s of the budget left"
    SKIPPED+=("$name")
    return 0
  fi
  echo "[start] $name (limit ${left}s): $*" >>"$LOG"
  local t0=$SECONDS rc=0
  timeout --kill-after=15 "$left" "$@" >>"$LOG" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    say "[ok] $name in $((SECONDS - t0)) s"
  else
    [ "$rc" -eq 124 ] && say "[timed out] $name after $((SECONDS - t0)) s" || say "[failed rc=$rc] $name after $((SECONDS - t0)) s"
    FAILED+=("$name")
  fi
}

BENCH=("$PY" -m ffcv_inat.bench.cli)

cat >"$W/make_data.py" <<'PY'
"""Synthetic ImageNet-like images (real wnids of a seeded random subset) and their beton."""
import sys, time
from pathlib import Path
from ffcv_inat.classes import select_classes
from ffcv_inat.synthetic import make_imagenet
from ffcv_inat.bench.loader_bench import list_image_folder, write_source_beton

data, beton, classes, per_class, size, workers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
t = time.time()
make_imagenet(data, train_per_class=per_class, val_per_class=0, size=size,
              wnids=select_classes("R", classes, 0), workers=workers)
print(f"made {classes * per_class} images of {size}x{size} px in {time.time() - t:.1f} s", flush=True)
t = time.time()
m = write_source_beton(list_image_folder(Path(data) / "train"), Path(beton), workers=workers)
print(f"wrote {beton}: {m.num_images} images, {m.num_classes} classes in {time.time() - t:.1f} s", flush=True)
PY

for step in $STEPS; do
  case $step in
    data)
      run_step data "$PY" "$W/make_data.py" "$DATA" "$BETON" "$CLASSES" "$PER_CLASS" "$SIZE" "$WORKERS" ;;
    model)
      for cl in --channels-last --no-channels-last; do
        run_step "model $cl" "${BENCH[@]}" model --res "$MODEL_RES" --batch "$MODEL_BATCH" --precision "$MODEL_PRECISION" $cl \
          --steps "$MODEL_STEPS" --warmup "$MODEL_WARMUP" --results "$RESULTS"
      done ;;
    model_compile)
      for cl in --channels-last --no-channels-last; do
        run_step "model --compile $cl" "${BENCH[@]}" model --res "$MODEL_RES" --batch "$MODEL_BATCH" --precision "$MODEL_PRECISION" $cl \
          --compile --steps "$MODEL_STEPS" --warmup "$MODEL_WARMUP" --results "$RESULTS"
      done ;;
    loader)
      run_step loader "${BENCH[@]}" loader --images "$DATA/train" --beton "$BETON" --res "$LOADER_RES" --workers "$WORKERS" \
        --batch "$BATCH" --epochs "$LOADER_EPOCHS" --warmup 1 --results "$RESULTS" ;;
    epoch)
      run_step epoch "${BENCH[@]}" epoch --recipe "$EPOCH_RECIPE" --train "$BETON" --max-steps "$EPOCH_STEPS" \
        --epochs "$EPOCH_EPOCHS" --warmup 1 --set "data.workers=$WORKERS" --results "$RESULTS" ;;
    *)
      say "[failed] unknown step $step (known: data model loader epoch model_compile)"
      FAILED+=("$step") ;;
  esac
done

if [ -s "$RESULTS" ]; then
  "${BENCH[@]}" report --results "$RESULTS" --out "$OUT" 2>>"$LOG" | tee "$OUT/report.txt"
else
  say "no results rows were written"
fi
[ -n "${KEEP_WORK:-}" ] || rm -rf "$W"
say "== done in ${SECONDS}s; failed: ${FAILED[*]:-none}; skipped: ${SKIPPED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ] && [ ${#SKIPPED[@]} -eq 0 ]
