#!/usr/bin/env bash
# The prepared GPU run of the bench suite: the steps named in $STEPS, in order, within $BUDGET_S.
#   data           synthetic ImageNet-like images (100 classes x 40 of 448 px) and their beton
#                  (python -m ffcv_inat.bench.synthetic_beton); loader, epoch and train read them
#   model          ffcv-bench model: ResNet-50 train step, res 160/192/224, bf16, channels-last
#                  (MODEL_LAYOUTS="--channels-last --no-channels-last" adds the other layout)
#   loader         ffcv-bench loader: ffcv vs torchvision ImageFolder+DataLoader, 16 workers, batch 256
#   epoch          ffcv-bench epoch: ffcv-train pretrain_90ep.yaml end to end with --max-steps, and
#                  its bottleneck verdict
#   model_compile  the model step again with torch.compile (slowest of the defaults, so last)
#   train          ffcv-train pretrain_90ep.yaml on the data step's beton without and with
#                  torch.compile; epoch seconds, images/s and peak GPU memory of each run from its
#                  log.jsonl and summary.json (python -m ffcv_inat.bench.train_throughput)
#   smoke_sweep    ffcv-sweep plan --grid smoke, run a slice of it, status, ffcv-analyze
# The default STEPS is the standing GPU bench (about 8 minutes); train and smoke_sweep are
# extra, e.g. STEPS="data train smoke_sweep" BUDGET_S=400. Rows go to $OUT/results.csv, then
# `ffcv-bench report` (table on stdout and $OUT/report.txt, PNGs in $OUT); everything the
# commands printed goes to $OUT/device_run.log.
#
# Run from anywhere, with $OUT set and ffcv importable (the caller prepares PYTHONPATH and
# LD_LIBRARY_PATH, e.g. `source bench/gpu_env.sh`; see bench/README.md). The code measured
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
MODEL_LAYOUTS=${MODEL_LAYOUTS:-"--channels-last"}
EPOCH_RECIPE=${EPOCH_RECIPE:-pretrain_90ep.yaml}
EPOCH_STEPS=${EPOCH_STEPS:-12}
EPOCH_EPOCHS=${EPOCH_EPOCHS:-2}
TRAIN_RECIPE=${TRAIN_RECIPE:-pretrain_90ep.yaml}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-12}
TRAIN_COMPILE=${TRAIN_COMPILE:-"false true"}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-95}   # per training run
TRAIN_SET=${TRAIN_SET:-}             # more ffcv-train overrides, KEY=VALUE separated by spaces
SWEEP_PLAN=${SWEEP_PLAN:-"--grid smoke --set device=auto"}
SWEEP_ONLY=${SWEEP_ONLY:-"--only finetune_R-8-s0 --only scratch_s0"}
SWEEP_LIMIT_S=${SWEEP_LIMIT_S:-110}  # for `ffcv-sweep run`
KNOWN_STEPS="data model loader epoch model_compile train smoke_sweep"

DEADLINE=$((SECONDS + BUDGET_S))
mkdir -p "$OUT"
RESULTS=$OUT/results.csv
LOG=$OUT/device_run.log
# KEEP_WORK=DIR keeps the data and beton in DIR for a later run (whose data step then keeps them).
if [ -n "${KEEP_WORK:-}" ]; then W=$KEEP_WORK; mkdir -p "$W"; else W=$(mktemp -d "${TMPDIR:-/tmp}/ffcv-bench-device.XXXXXX"); fi
DATA=$W/imagenet             # as python -m ffcv_inat.bench.synthetic_beton "$W" lays it out
BETON=$W/train.beton
FAILED=()
SKIPPED=()

say() { echo "$*" | tee -a "$LOG"; }

# ffcv_inat as this checkout lays it out (bench/, writers/, recipes/ are subpackages).
SHIM=$W/shim/ffcv_inat
rm -rf "$W/shim"
mkdir -p "$SHIM"
for f in "$REPO"/ffcv_inat/*; do ln -s "$f" "$SHIM/$(basename "$f")"; done
for sub in bench writers recipes; do [ -e "$SHIM/$sub" ] || ln -s "$REPO/$sub" "$SHIM/$sub"; done
export PYTHONPATH=$W/shim${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

say "== ffcv-bench device run $(date -u +%FT%TZ), steps: $STEPS; work dir $W, budget ${BUDGET_S}s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  | tee "$OUT/gpu.txt" | tee -a "$LOG"
"$PY" -c "import ffcv, torch, ffcv_inat.bench.cli as c; print('ffcv_inat from', c.__file__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  say "cannot import ffcv / torch / ffcv_inat.bench: prepare PYTHONPATH and LD_LIBRARY_PATH first (bench/README.md)"
  exit 2
fi

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
TRAIN=("$PY" -m ffcv_inat.train.cli)
SWEEP=("$PY" -m ffcv_inat.sweep.cli)
ANALYZE=("$PY" -m ffcv_inat.analyze.cli)

for step in $STEPS; do
  case $step in
    data)
      if [ -n "${KEEP_WORK:-}" ] && [ -e "$BETON" ]; then
        say "[ok] data: kept $BETON and $DATA from an earlier run"
      else
        rm -rf "$DATA"  # images of an earlier data step that died before its beton
        run_step data "$PY" -m ffcv_inat.bench.synthetic_beton "$W" --classes "$CLASSES" --per-class "$PER_CLASS" \
          --size "$SIZE" --workers "$WORKERS"
      fi ;;
    model|model_compile)
      compile=(); [ "$step" = model_compile ] && compile=(--compile)
      for cl in $MODEL_LAYOUTS; do
        run_step "model ${compile[*]:+${compile[*]} }$cl" "${BENCH[@]}" model --res "$MODEL_RES" --batch "$MODEL_BATCH" \
          --precision "$MODEL_PRECISION" $cl ${compile[@]+"${compile[@]}"} --steps "$MODEL_STEPS" --warmup "$MODEL_WARMUP" \
          --results "$RESULTS"
      done ;;
    loader)
      run_step loader "${BENCH[@]}" loader --images "$DATA/train" --beton "$BETON" --res "$LOADER_RES" --workers "$WORKERS" \
        --batch "$BATCH" --epochs "$LOADER_EPOCHS" --warmup 1 --results "$RESULTS" ;;
    epoch)
      run_step epoch "${BENCH[@]}" epoch --recipe "$EPOCH_RECIPE" --train "$BETON" --max-steps "$EPOCH_STEPS" \
        --epochs "$EPOCH_EPOCHS" --warmup 1 --set "data.workers=$WORKERS" --results "$RESULTS" ;;
    train)
      sets=(); for s in $TRAIN_SET; do sets+=(--set "$s"); done
      for c in $TRAIN_COMPILE; do
        rm -rf "$W/train_compile_$c"
        run_step --limit "$TRAIN_LIMIT_S" "train compile=$c" "${TRAIN[@]}" --recipe "$TRAIN_RECIPE" --train "$BETON" \
          --set "schedule.epochs=$TRAIN_EPOCHS" --set "data.workers=$WORKERS" --set "compile=$c" --set log_every=5 \
          ${sets[@]+"${sets[@]}"} --out "$W/train_compile_$c"
        # also after a timed-out run: the epochs it logged still count
        run_step --show "train compile=$c figures" "$PY" -m ffcv_inat.bench.train_throughput "$W/train_compile_$c" \
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
  "${BENCH[@]}" report --results "$RESULTS" --out "$OUT" 2>>"$LOG" | tee "$OUT/report.txt"
else
  say "no results rows were written"
fi
[ -n "${KEEP_WORK:-}" ] || rm -rf "$W"
say "== done in ${SECONDS}s; failed: ${FAILED[*]:-none}; skipped: ${SKIPPED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ] && [ ${#SKIPPED[@]} -eq 0 ]
