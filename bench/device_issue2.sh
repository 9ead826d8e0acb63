#!/usr/bin/env bash
# Issue 2's GPU check: ffcv carried to the GPU machine imports, a Loader epoch runs on the
# GPU (with GPU-side normalisation), and the loader's images/s with 16 workers on a
# synthetic beton at 512 px (RandomResizedCrop 224 and 160), against torchvision's pipeline.
# Run in the repo root with $OUT set, after preparing .whl and .carry (bench/README.md).
set -u
source bench/gpu_env.sh || exit 1
W=/tmp/issue2; mkdir -p $W
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $OUT/issue2_gpu.txt
python3 - <<'PY'
import time
from ffcv_inat.classes import select_classes
from ffcv_inat.synthetic import make_imagenet
t = time.time()
make_imagenet("/tmp/issue2/data", train_per_class=50, val_per_class=0, size=512,
              wnids=select_classes("R", 100, 0), workers=16)
print(f"made 5000 images of 512x512 in {time.time() - t:.1f} s")
PY
write-beton --data-dir $W/data --subset R --k 100 --max-res 512 --workers 16 --out $W/r100.beton 2>&1 | tail -1
python3 - <<'PY'
import time, torch
from ffcv_inat.loaders import make_loader
bl = make_loader("/tmp/issue2/r100.beton", batch_size=256, res=224, train=True, device=torch.device("cuda"), workers=16)
for epoch in range(3):
    torch.cuda.synchronize(); t = time.time(); n = 0
    for x, y in bl:
        n += len(y)
    torch.cuda.synchronize()
    print(f"GPU loader epoch {epoch}: {n} images, {x.dtype} {tuple(x.shape)} on {x.device}, "
          f"mean {x.float().mean():.3f}, {n / (time.time() - t):.0f} img/s")
PY
ffcv-bench loader --images $W/data/train --beton $W/r100.beton --res 160,224 --workers 16 --batch 256 \
  --epochs 3 --warmup 1 --results $OUT/issue2_loader.csv 2>&1 | grep -v "it/s\]"
