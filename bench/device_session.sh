#!/usr/bin/env bash
# The prepared GPU session for the trainer, bench and sweep checks (issues 3, 4, 5), ~9 min:
#   1. bench/device_run.sh, time-boxed: model / loader / epoch / compiled-model rows
#   2. ffcv-train pretrain_90ep.yaml on that synthetic beton (bf16 + channels-last), then the
#      same with torch.compile: images/s per epoch, epoch seconds, peak GPU memory
#   3. the smoke grid of ffcv-sweep (plan + run + analyze) on the GPU: wall time, GPU-hours
# Run in the repo root with $OUT set, after preparing .whl/ and .carry/ (bench/README.md).
set -u
: "${OUT:?set OUT}"
# GPU_ENV=/dev/null runs it here on the CPU (tiny sizes via the variables below) to check it.
source ${GPU_ENV:-bench/gpu_env.sh} || exit 1
W=/tmp/session; mkdir -p $W

echo "== 1. ffcv-bench device run"
KEEP_WORK=$W/bench BUDGET_S=${BENCH_BUDGET_S:-230} MODEL_STEPS=20 MODEL_WARMUP=5 LOADER_EPOCHS=2 \
  bash bench/device_run.sh
tail -n 30 $OUT/device_run.log | grep -E "^\[|==" || true

echo "== 2. ffcv-train pretrain_90ep.yaml, bf16 + channels-last, without and with torch.compile"
for c in false true; do
  timeout ${TRAIN_LIMIT_S:-95} ffcv-train --recipe pretrain_90ep.yaml --train $W/bench/train.beton \
    --set schedule.epochs=${TRAIN_EPOCHS:-12} --set data.workers=16 --set compile=$c --set log_every=5 ${TRAIN_SET:-} \
    --out $W/train_compile_$c > $OUT/train_compile_$c.log 2>&1
  echo "compile=$c exit $?"
  python3 - $W/train_compile_$c $c <<'PY'
import json, sys
from pathlib import Path
run, compiled = Path(sys.argv[1]), sys.argv[2]
log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()] if (run / "log.jsonl").exists() else []
s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
steady = [e["train_images_per_second"] for e in log[1:]]  # epoch 1 pays numba/cudnn/compile warm-up
print(f"compile={compiled}: {len(log)} epochs; epoch seconds {[round(e['epoch_seconds'], 2) for e in log]}")
if steady:
    steady.sort()
    print(f"  images/s after epoch 1: median {steady[len(steady) // 2]:.0f} (min {steady[0]:.0f}, max {steady[-1]:.0f})")
print(f"  peak GPU memory {s.get('peak_gpu_memory_mb')} MiB; device {s.get('device')}; precision {s.get('precision')}")
row = {"compile": compiled, "epochs": len(log), "epoch_seconds": [e["epoch_seconds"] for e in log],
       "images_per_second": [e["train_images_per_second"] for e in log], "summary": s}
with open("/tmp/session/train_rows.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
PY
done
cp $W/train_rows.jsonl $OUT/ 2>/dev/null

echo "== 3. ffcv-sweep smoke grid on the GPU (the slice finetune_R-8-s0 + scratch_s0 and their inputs)"
S=$SECONDS
# timeout signals its whole process group, so the sweep's ffcv-train children stop too.
timeout ${SWEEP_LIMIT_S:-110} bash -c "ffcv-sweep plan --grid smoke --out $W/sweep/plan.csv && \
  ffcv-sweep run $W/sweep/plan.csv ${SWEEP_ONLY:---only finetune_R-8-s0 --only scratch_s0} && ffcv-sweep status $W/sweep/plan.csv && \
  ffcv-analyze $W/sweep/runs --out $W/sweep/figures" > $OUT/sweep.log 2>&1
echo "sweep exit $? after $((SECONDS - S)) s"
tail -n 25 $OUT/sweep.log
ls $W/sweep/figures 2>/dev/null
cp $W/sweep/figures/results.csv $OUT/sweep_results.csv 2>/dev/null
echo "== session done in ${SECONDS} s"
