# `make demo` and `make test` each set everything up on a fresh machine first:
# the apt libraries ffcv compiles against, a .venv, and the package with its dependencies.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := libturbojpeg0-dev libopencv-dev pkg-config
# A real single-node SLURM cluster for tests/test_sweep_slurm.py (`make test` only, not `make demo`).
SLURM_PACKAGES := slurm-wlm munge
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup apt slurm-packages clean

demo: setup
	$(BIN)/python -m ffcv_inat.demo --out demo_out

# ruff (configured in pyproject.toml) first: a formatting or lint slip fails in seconds, not after pytest.
test: setup slurm-packages lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

setup: $(STAMP)

# $(call apt_install,PACKAGES,WHY,NOT_ROOT_MESSAGE,NOT_ROOT_ACTION): install the missing Debian
# packages as root; otherwise print the message and the apt-get line, then run the action.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $$missing ($(2))"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "$(3)"; echo "  sudo apt-get install -y $$missing"; $(4); \
	  fi; \
	fi
endef

# ffcv 1.0.2 builds from source and links libturbojpeg and OpenCV found via pkg-config.
apt:
	$(call apt_install,$(APT_PACKAGES),needed to build ffcv,error: ffcv needs these system packages; install them first:,exit 1)

# Not root: say what to install and go on; the SLURM tests then fail with the same message
# (they are never skipped).
slurm-packages:
	$(call apt_install,$(SLURM_PACKAGES),the SLURM tests start a local cluster,warning: the SLURM tests (tests/test_sweep_slurm.py) need these packages and will fail without them:,true)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package's metadata changes.
$(STAMP): setup.cfg pyproject.toml | $(VENV)/bin/python
	@$(MAKE) --no-print-directory apt
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,dali]'
	$(BIN)/python -c "import ffcv, torch, torchvision; print('ffcv', ffcv.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo_out *.egg-info
