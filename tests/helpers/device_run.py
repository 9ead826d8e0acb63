"""bench/gpu/device_run.sh as the tests run it on CPU: tiny sizes, and the run with failing steps
that tests/conftest.py starts in the background (tests/bench/gpu/test_device_run.py checks it)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu" / "device_run.sh"
TINY = {
    "CLASSES": "2",
    "PER_CLASS": "4",
    "SIZE": "48",
    "WORKERS": "1",
    "BATCH": "4",
    "LOADER_RES": "32",
    "SYNTH_LOADER_RES": "32",
    "LOADER_MIN_SECONDS": "0",
    "LOADER_EPOCHS": "1",
    "MODEL_RES": "64",
    "MODEL_BATCH": "2",
    "MODEL_STEPS": "1",
    "MODEL_WARMUP": "1",
    "MODEL_PRECISION": "fp32",
    "CHECK_RES": "32",
    "CHECK_TRAIN_STEPS": "1",
    "CHECK_TRAIN_BATCH": "4",
    "CHECK_RECIPE": "smoke_cpu.yaml",
}
# A step that does not exist, a training run whose recipe does not exist and a sweep run id
# that is not in its plan, among steps that work.
FAILING_STEPS = {
    "STEPS": "data bogus train decode_check loader smoke_sweep",
    "TRAIN_RECIPE": "no_such_recipe.yaml",
    "TRAIN_COMPILE": "false",
    "SWEEP_ONLY": "--only no_such_run",
}


def real_photos_beton(folder: Path) -> Path:
    """A beton of 8 small photos named as ajschumacher/imagen names them, by bench/data/real_photos.py."""
    from PIL import Image

    from ffcv_inat.bench.data import real_photos

    src = folder / "imagen" / "imagen"
    src.mkdir(parents=True)
    for i in range(8):
        wnid = ("n01440764", "n01443537")[i % 2]
        Image.new("RGB", (40 + i, 36), (30 * i, 90, 200 - 20 * i)).save(src / f"{wnid}_{i}_fish.jpg", quality=90)
    real_photos.write_real_photos(folder / "imagen", folder / "real", max_images=8, echo=lambda m: None)
    return folder / "real" / real_photos.BETON_NAME
