#!/usr/bin/env bash
# The prepared GPU run of the bench suite: the steps named in $STEPS, in order, within $BUDGET_S.
#   data           checks the real photos' beton ($REAL_BETON, written before the run by
#                  ffcv-bench prepare real-photos and carried; one line when absent), then
#                  synthetic ImageNet-like images (100 classes x 40 of 512 px) and their beton
#                  (ffcv-bench prepare synthetic); the steps after it read them
#   decode_check   ffcv-bench decode-check on the first 1,000 images of the real
#                  photos (the synthetic beton without them): the GPU path's pixels vs the CPU's, its
#                  stream safety, its training loss vs the CPU path's. First: the GPU-path timings
#                  below mean nothing if it fails. Its report is written before its slow part (d)
#   model          ffcv-bench model: ResNet-50 train step, res 160/192/224, bf16, channels-last
#                  (MODEL_LAYOUTS="--channels-last --no-channels-last" adds the other layout)
#   epoch          ffcv-bench epoch: ffcv-train pretrain_90ep.yaml end to end, once per decode path
#                  in $DECODES, each with its bottleneck verdict, and which path to use here
#   loader         ffcv-bench loader on the real photos first (ffcv per decode path, the machine's
#                  CPU ceiling and the device's nvJPEG decode rate on the same bytes), then on the
#                  synthetic images as a second, labelled row with torchvision ImageFolder+DataLoader
#                  beside it; 16 workers, batch 256, rounds of at least LOADER_MIN_SECONDS
#   model_compile  the model step with torch.compile, at MODEL_COMPILE_RES (slowest, so last)
#   train          ffcv-train pretrain_90ep.yaml on the data step's beton without and with
#                  torch.compile; epoch seconds, images/s and peak GPU memory of each run from its
#                  log.jsonl and summary.json (ffcv-bench train-run)
#   smoke_sweep    ffcv-sweep plan --grid smoke, run a slice of it, status, ffcv-analyze
# The default STEPS is the standing GPU bench (about 7 minutes, see the budget below); train and
# smoke_sweep are extra, e.g. STEPS="data train smoke_sweep" BUDGET_S=400. DECODES is "cpu,gpu"
# where CUDA is present, else "cpu". Rows go to $OUT/results.csv, then `ffcv-bench report` (table
# on stdout and in the report file, PNGs in $OUT). Text files are named as bench/results/ names
# them, <machine>_<date>_<what> (h100_2026-11-28_report.txt), so they can be kept as they are:
# _device_run.log (everything the commands printed), _report.txt, _decode_check.txt.
#
# Budget of the default STEPS on a 16-core H100 or H200 (BUDGET_S=470: the 8 minutes less start-up
# and the report). Only the marked figures were measured; the rest are estimates to be replaced by
# the first run's "[ok] STEP in N s" lines:
#   data           ~25 s   measured on the H100: 5,000 512-px JPEGs made in 17 s and written in 14 s
#                          (bench/results/h100_2026-11-26_loader.txt); these are 4,000 of the same size
#   model          ~30 s   3 res x 40 steps of batch 256, cudnn autotuning, start-up
#   epoch          ~100 s  per decode path a trainer run of 3 whole epochs (15 steps each): measured,
#                          a short trainer run took 29-41 s on the H200, mostly numba compilation and
#                          CUDA start-up (h200_2026-11-26_smoke_sweep.txt); then its loader alone
#                          (~10 s) and once the model alone (~10 s)
#   decode_check   ~70 s   reading + (a) + (b) ~15 s (the CPU side decodes a 448-px JPEG in ~2.5 ms, a 512-px one ~30% more, as
#                          measured on the 2-core dev VM), (c) 50 rounds of 200 ms ~15 s, (d) two
#                          30-step runs of batch 64 with their loaders' compilation ~40 s
#   loader         ~120 s  real photos: ceiling ~20 s (CPU rates at 2 res + nvJPEG, 3 rounds of 1.5 s each),
#                          2 res x 2 decode paths x ~5 rounds of 2 s; synthetic: 1 res x 3 pipelines x
#                          ~5 rounds of 2 s, its ceiling ~10 s; torchvision's workers start (~10 s)
#   model_compile  ~80 s   torch.compile of the train step at res 224 only: each new resolution
#                          compiles again, which all three would not fit
# Sum ~425 s, 45 s to spare. The correctness check comes right after the data, before the timings
# that depend on it; then the training figures (ResNet-50 img/s and peak memory from model, epoch
# time from epoch); a step that runs past what is left is stopped and logged, and the steps after
# it are skipped.
#
# Run from anywhere, with $OUT set and ffcv importable (the caller prepares PYTHONPATH and
# LD_LIBRARY_PATH, e.g. `source bench/gpu/gpu_env.sh`; see bench/README.md). The code measured
# is this checkout's: a shim package of symlinks into the repo goes first on PYTHONPATH, so
# an older installed copy of ffcv_inat cannot stand in for it, and every command runs as
# `$PYTHON -m ffcv_inat...`.
#
# A failing or timed-out step is logged and the next one runs; each step gets at most the
# time left before BUDGET_S (train and sweep runs also their own limit), and a step with
# under 20 s left is skipped. Exit status 0 only if every selected step succeeded. Every size
# below can be overridden from the environment (the CPU tests run the script with tiny ones).
set -u

: "${OUT:?set OUT to the folder for the results}"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-470}          # 8 minutes less a margin for start-up and the report
STEPS=${STEPS:-"data decode_check model epoch loader model_compile"}
CLASSES=${CLASSES:-100}
PER_CLASS=${PER_CLASS:-40}         # 4,000 images: 15 steps of 256 per epoch
SIZE=${SIZE:-512}                  # the GPU-path targets' beton (512-px JPEGs), as the H100 loader record
WORKERS=${WORKERS:-16}
BATCH=${BATCH:-256}
# Real photos first (bench/data/real_photos.py writes this beton here; carry bench/real_photos to the
# GPU machine): the loader (ffcv per decode path, with the machine's ceiling) and the decode check
# run on them; synthetic images follow as a second, labelled loader row with torchvision beside it.
REAL_BETON=${REAL_BETON:-$REPO/bench/real_photos/real.beton}
LOADER_RES=${LOADER_RES:-160,224}          # real photos
SYNTH_LOADER_RES=${SYNTH_LOADER_RES:-224}  # the synthetic row
LOADER_EPOCHS=${LOADER_EPOCHS:-2}
LOADER_MIN_SECONDS=${LOADER_MIN_SECONDS:-2}  # shortest measured round (whole epochs)
MODEL_RES=${MODEL_RES:-160,192,224}
MODEL_BATCH=${MODEL_BATCH:-256}
MODEL_STEPS=${MODEL_STEPS:-30}
MODEL_WARMUP=${MODEL_WARMUP:-10}
MODEL_PRECISION=${MODEL_PRECISION:-bf16}
MODEL_LAYOUTS=${MODEL_LAYOUTS:-"--channels-last"}
MODEL_COMPILE_RES=${MODEL_COMPILE_RES:-224}
EPOCH_RECIPE=${EPOCH_RECIPE:-pretrain_90ep.yaml}
# Whole epochs by default (15 steps of 256 of the data step's 4,000 images): epoch seconds
# measured, not extrapolated.
EPOCH_STEPS=${EPOCH_STEPS:-}
EPOCH_EPOCHS=${EPOCH_EPOCHS:-2}
# Limits of the steps that run the GPU data path, never yet run on a GPU: a hang there must not
# eat the whole budget (about twice each step's estimate below).
EPOCH_LIMIT_S=${EPOCH_LIMIT_S:-200}
CHECK_LIMIT_S=${CHECK_LIMIT_S:-150}
LOADER_LIMIT_S=${LOADER_LIMIT_S:-180}
CHECK_IMAGES=${CHECK_IMAGES:-1000}
CHECK_RES=${CHECK_RES:-224}
CHECK_RECIPE=${CHECK_RECIPE:-pretrain_90ep.yaml}
CHECK_TRAIN_STEPS=${CHECK_TRAIN_STEPS:-30}
CHECK_TRAIN_BATCH=${CHECK_TRAIN_BATCH:-64}
TRAIN_RECIPE=${TRAIN_RECIPE:-pretrain_90ep.yaml}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-12}
TRAIN_COMPILE=${TRAIN_COMPILE:-"false true"}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-95}   # per training run
TRAIN_SET=${TRAIN_SET:-}             # more ffcv-train overrides, KEY=VALUE separated by spaces
SWEEP_PLAN=${SWEEP_PLAN:-"--grid smoke --set device=auto"}
SWEEP_ONLY=${SWEEP_ONLY:-"--only finetune_R-8-s0 --only scratch_s0"}
SWEEP_LIMIT_S=${SWEEP_LIMIT_S:-110}  # for `ffcv-sweep run`
KNOWN_STEPS="data model epoch decode_check loader model_compile train smoke_sweep"

DEADLINE=$((SECONDS + BUDGET_S))
mkdir -p "$OUT"
RESULTS=$OUT/results.csv
# KEEP_WORK=DIR keeps the data and beton in DIR for a later run (whose data step then keeps them).
if [ -n "${KEEP_WORK:-}" ]; then W=$KEEP_WORK; mkdir -p "$W"; else W=$(mktemp -d "${TMPDIR:-/tmp}/ffcv-bench-device.XXXXXX"); fi
DATA=$W/imagenet             # as ffcv-bench prepare synthetic "$W" lays it out
BETON=$W/train.beton
FAILED=()
SKIPPED=()

# ffcv_inat as this checkout lays it out (bench/, writers/, recipes/ are subpackages).
SHIM=$W/shim/ffcv_inat
rm -rf "$W/shim"
mkdir -p "$SHIM"
for f in "$REPO"/ffcv_inat/*; do ln -s "$f" "$SHIM/$(basename "$f")"; done
for sub in bench writers recipes; do [ -e "$SHIM/$sub" ] || ln -s "$REPO/$sub" "$SHIM/$sub"; done
export PYTHONPATH=$W/shim${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

# Can ffcv, torch and this package be imported; the machine's name in file names; is CUDA here.
PROBE='import os, ffcv, torch, ffcv_inat.bench.cli as c
from ffcv_inat.bench.machine import machine_label
cuda = torch.cuda.is_available()
print(machine_label({"gpu": torch.cuda.get_device_name(0) if cuda else "none", "cpu_count": os.cpu_count()}), int(cuda))
print("ffcv_inat from", c.__file__, "| torch", torch.__version__, "| cuda", cuda)'
if ! PROBED=$("$PY" -c "$PROBE" 2>"$W/probe.err"); then
  tee -a "$OUT/device_run.log" <"$W/probe.err"
  echo "cannot import ffcv / torch / ffcv_inat.bench: prepare PYTHONPATH and LD_LIBRARY_PATH first (bench/README.md)" \
    | tee -a "$OUT/device_run.log"
  exit 2
fi
read -r MACHINE HAS_CUDA <<<"$(echo "$PROBED" | head -n 1)"
PREFIX=$OUT/${MACHINE}_$(date -u +%F)
LOG=${PREFIX}_device_run.log
if [ "$HAS_CUDA" = 1 ]; then CHECK_DEVICE=${CHECK_DEVICE:-cuda}; DECODES=${DECODES:-cpu,gpu}
else CHECK_DEVICE=${CHECK_DEVICE:-cpu}; DECODES=${DECODES:-cpu}; fi

say() { echo "$*" | tee -a "$LOG"; }

say "== ffcv-bench device run $(date -u +%FT%TZ), steps: $STEPS; decode paths: $DECODES; work dir $W, budget ${BUDGET_S}s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  | tee "$OUT/gpu.txt" | tee -a "$LOG"
echo "$PROBED" | tail -n +2 | tee -a "$LOG"

# run_step [--limit S] [--show] NAME CMD...: run CMD with the time that is left (and at most S
# seconds); its output goes to the log (--show: to stdout too). Logs, never aborts the script.
run_step() {
  local limit="" show=0
  while :; do
    case $1 in
      --limit) limit=$2; shift 2 ;;
      --show) show=1; shift ;;
      *) break ;;
    esac
  done
  local name=$1; shift
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then
    say "[skipped] $name: ${left}s of the budget left"
    SKIPPED+=("$name")
    return 0
  fi
  [ -n "$limit" ] && [ "$limit" -lt "$left" ] && left=$limit
  echo "[start] $name (limit ${left}s): $*" >>"$LOG"
  local t0=$SECONDS rc=0
  # timeout signals the command's whole process group: a sweep's ffcv-train children stop too.
  if [ "$show" -eq 1 ]; then
    timeout --kill-after=15 "$left" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
  else
    timeout --kill-after=15 "$left" "$@" >>"$LOG" 2>&1 || rc=$?
  fi
  if [ "$rc" -eq 0 ]; then
    say "[ok] $name in $((SECONDS - t0)) s"
  else
    [ "$rc" -eq 124 ] && say "[timed out] $name after $((SECONDS - t0)) s" || say "[failed rc=$rc] $name after $((SECONDS - t0)) s"
    FAILED+=("$name")
  fi
}

BENCH=("$PY" -m ffcv_inat.bench.cli)
TRAIN=("$PY" -m ffcv_inat.training.cli)
SWEEP=("$PY" -m ffcv_inat.sweep.cli)
ANALYZE=("$PY" -m ffcv_inat.analyze.cli)

for step in $STEPS; do
  case $step in
    data)
      if [ ! -e "$REAL_BETON" ]; then
        say "[failed] data: no real-photo beton at $REAL_BETON: write it before the GPU run (ffcv-bench prepare real-photos IMAGEN_CLONE bench/real_photos, see bench/README.md) and carry bench/real_photos"
        FAILED+=("data (real photos)")
      fi
      if [ -n "${KEEP_WORK:-}" ] && [ -e "$BETON" ]; then
        say "[ok] data: kept $BETON and $DATA from an earlier run"
      else
        rm -rf "$DATA"  # images of an earlier data step that died before its beton
        run_step data "${BENCH[@]}" prepare synthetic "$W" --classes "$CLASSES" --per-class "$PER_CLASS" \
          --size "$SIZE" --workers "$WORKERS"
      fi ;;
    model|model_compile)
      compile=(); res=$MODEL_RES
      [ "$step" = model_compile ] && compile=(--compile) && res=$MODEL_COMPILE_RES
      for cl in $MODEL_LAYOUTS; do
        run_step "model ${compile[*]:+${compile[*]} }$cl" "${BENCH[@]}" model --res "$res" --batch "$MODEL_BATCH" \
          --precision "$MODEL_PRECISION" $cl ${compile[@]+"${compile[@]}"} --steps "$MODEL_STEPS" --warmup "$MODEL_WARMUP" \
          --results "$RESULTS"
      done ;;
    loader)
      common=(--workers "$WORKERS" --batch "$BATCH" --epochs "$LOADER_EPOCHS" --warmup 1 --min-seconds "$LOADER_MIN_SECONDS"
              --decode "$DECODES" --results "$RESULTS")
      if [ -e "$REAL_BETON" ]; then  # the photos stay here: the ffcv pipeline alone reads the beton
        run_step --limit "$LOADER_LIMIT_S" "loader real photos" "${BENCH[@]}" loader --beton "$REAL_BETON" --pipeline ffcv \
          --res "$LOADER_RES" --label "real photos (ajschumacher/imagen)" "${common[@]}"
      else
        say "[skipped] loader real photos: no $REAL_BETON"
      fi
      # DALI is not carried to the GPU machine: ffcv and torchvision only, as budgeted
      run_step --limit "$LOADER_LIMIT_S" "loader synthetic" "${BENCH[@]}" loader --images "$DATA/train" --beton "$BETON" \
        --pipeline ffcv --pipeline pytorch --res "$SYNTH_LOADER_RES" --label "synthetic (stripes + noise, ${SIZE} px)" "${common[@]}" ;;
    epoch)
      steps=(); [ -n "$EPOCH_STEPS" ] && steps=(--max-steps "$EPOCH_STEPS")
      run_step --limit "$EPOCH_LIMIT_S" epoch "${BENCH[@]}" epoch --recipe "$EPOCH_RECIPE" --train "$BETON" ${steps[@]+"${steps[@]}"} \
        --epochs "$EPOCH_EPOCHS" --warmup 1 --set "data.workers=$WORKERS" --decode "$DECODES" --results "$RESULTS" ;;
    decode_check)
      # --show: its report goes to stdout too; the file is kept as bench/results/ names it.
      check_beton=$BETON; [ -e "$REAL_BETON" ] && check_beton=$REAL_BETON  # real photos when carried
      run_step --limit "$CHECK_LIMIT_S" --show decode_check "${BENCH[@]}" decode-check "$check_beton" --out "${PREFIX}_decode_check.txt" \
        --images "$CHECK_IMAGES" --batch "$BATCH" --res "$CHECK_RES" --workers "$WORKERS" --device "$CHECK_DEVICE" \
        --train-steps "$CHECK_TRAIN_STEPS" --train-batch "$CHECK_TRAIN_BATCH" --recipe "$CHECK_RECIPE" ;;
    train)
      sets=(); for s in $TRAIN_SET; do sets+=(--set "$s"); done
      for c in $TRAIN_COMPILE; do
        rm -rf "$W/train_compile_$c"
        run_step --limit "$TRAIN_LIMIT_S" "train compile=$c" "${TRAIN[@]}" --recipe "$TRAIN_RECIPE" --train "$BETON" \
          --set "schedule.epochs=$TRAIN_EPOCHS" --set "data.workers=$WORKERS" --set "compile=$c" --set log_every=5 \
          ${sets[@]+"${sets[@]}"} --out "$W/train_compile_$c"
        # also after a timed-out run: the epochs it logged still count
        run_step --show "train compile=$c figures" "${BENCH[@]}" train-run "$W/train_compile_$c" \
          --label "compile=$c" --rows "$OUT/train_runs.jsonl"
      done ;;
    smoke_sweep)
      rm -rf "$W/sweep"; mkdir -p "$W/sweep"
      run_step "smoke_sweep plan" "${SWEEP[@]}" plan $SWEEP_PLAN --out "$W/sweep/plan.csv"
      run_step --limit "$SWEEP_LIMIT_S" "smoke_sweep run" "${SWEEP[@]}" run "$W/sweep/plan.csv" $SWEEP_ONLY
      run_step --show "smoke_sweep status" "${SWEEP[@]}" status "$W/sweep/plan.csv"
      run_step --show "smoke_sweep analyze" "${ANALYZE[@]}" "$W/sweep/runs" --out "$OUT/sweep" ;;
    *)
      say "[failed] unknown step $step (known: $KNOWN_STEPS)"
      FAILED+=("$step") ;;
  esac
done

if [ -s "$RESULTS" ]; then
  "${BENCH[@]}" report --results "$RESULTS" --out "$OUT" 2>>"$LOG" | tee "${PREFIX}_report.txt"
else
  say "no results rows were written"
fi
[ -n "${KEEP_WORK:-}" ] || rm -rf "$W"
say "== done in ${SECONDS}s; failed: ${FAILED[*]:-none}; skipped: ${SKIPPED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ] && [ ${#SKIPPED[@]} -eq 0 ]
