# Source this on the GPU machine, in the repo root, to use ffcv there without building it.
# That machine has torch, torchvision, numba, numpy, opencv, cupy but no ffcv and no internet.
# Prepared here (see bench/README.md, "Running on the GPU machine"):
#   .whl/   ffcv 1.0.2 built for cp312, pytorch_pfn_extras and submitit wheels, this package's wheel
#   .carry/lib/   the shared libraries ffcv's _libffcv links (OpenCV, libturbojpeg and their needs)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export LD_LIBRARY_PATH=$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/tmp/site/bin:$PATH
export PYTHONUNBUFFERED=1
python3 -c "import ffcv, ffcv_inat, torch; print('ffcv', ffcv.__version__, '| torch', torch.__version__, '|', torch.cuda.get_device_name(0))" || return 1
