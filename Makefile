# Two entry points that work on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs; CPU torch is pinned so pip takes the local build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PLUGIN_BUILD ?= plugins/build
CMAKE_ARGS ?=

.PHONY: venv plugins test lint demo bench clean selftest gpu-check gpu-venv gpu-wheelhouse

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# The plugin library: kernels, host build and C API always; the TensorRT part when
# -DTENSORRT_INCLUDE_DIR=... (or TENSORRT_ROOT) is given in CMAKE_ARGS.
plugins:
	cmake -S plugins -B $(PLUGIN_BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(PLUGIN_BUILD) -j 2

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv plugins lint
	$(PY) -m pytest -q -ra

demo: venv
	$(VENV)/bin/saphnet demo -o demo-out --force

bench: venv
	$(PY) benchmarks/bench_backends.py -o benchmarks/results --force

selftest: venv
	$(VENV)/bin/saphnet selftest -o selftest-out --force

# --- make gpu-check: the first minutes of any GPU -------------------------------------
# `saphnet selftest` in full, then the time-boxed GPU training run, everything kept in
# $(GPU_OUT). Uses $(GPU_PYTHON) when saphnet from this checkout is installed there
# (pip install -e '.[test]'); otherwise makes $(GPU_VENV) on top of $(GPU_PYTHON)'s own
# packages (the lent GPU machine's torch) and installs saphnet from the $(GPU_WHEELS)
# wheelhouse, with no network. The exit status is non-zero when either step failed;
# the selftest report is written first and kept whatever the training does.
GPU_OUT ?= gpu-out
TRAIN_BUDGET ?= 4m
GPU_PYTHON ?= python3
GPU_VENV ?= .venv-gpu
GPU_WHEELS ?= gpu-wheels
SELFTEST_ARGS ?=
# saphnet's base dependencies that the lent GPU machine has (torch 2.11+cu130, Python 3.12),
# and the wheels it lacks, fetched here by `make gpu-wheelhouse` (tests/test_gpu_check.py
# checks that the two lists cover pyproject.toml's dependencies).
GPU_IMAGE_HAS := torch numpy onnx onnxscript onnxruntime safetensors pillow tifffile tqdm scikit-image matplotlib
GPU_WHEEL_PKGS ?= polygraphy pypng setuptools wheel packaging

gpu-wheelhouse:
	rm -rf $(GPU_WHEELS)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
	    -d $(GPU_WHEELS) $(GPU_WHEEL_PKGS)
	du -sh $(GPU_WHEELS)

$(GPU_VENV)/.installed: pyproject.toml
	$(GPU_PYTHON) -m venv --without-pip --system-site-packages $(GPU_VENV)
	# A venv made from another venv's python (the GPU machine's python3 is one) sees the
	# base interpreter's packages, not that venv's: add $(GPU_PYTHON)'s site-packages.
	$(GPU_PYTHON) -c 'import site; print("".join("import site; site.addsitedir(%r)\n" % p for p in site.getsitepackages()), end="")' \
	    > "$$($(GPU_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_gpu_python.pth"
	$(GPU_VENV)/bin/python -m pip install -q --no-index --find-links $(GPU_WHEELS) -e .
	touch $@

gpu-venv: $(GPU_VENV)/.installed

gpu-check: SHELL := /bin/bash
gpu-check:
	@mkdir -p $(GPU_OUT)
	@set -o pipefail; py=$(GPU_PYTHON); \
	where=$$($(GPU_PYTHON) -c 'import sys; sys.path.pop(0); import os, saphnet.selftest, polygraphy; print(os.path.dirname(os.path.dirname(saphnet.__file__)))' 2>/dev/null); \
	if [ "$$where" != "$(CURDIR)" ]; then \
	    $(MAKE) --no-print-directory gpu-venv || exit 1; py=$(CURDIR)/$(GPU_VENV)/bin/python; fi; \
	echo "gpu-check: $$py, results in $(GPU_OUT)/"; \
	$$py -m saphnet selftest -o $(GPU_OUT)/selftest --force $(SELFTEST_ARGS) 2>&1 | tee $(GPU_OUT)/selftest.log; st=$$?; \
	$$py -m saphnet train --synthetic --preset gpu-short --time-budget $(TRAIN_BUDGET) --device cuda \
	    --out $(GPU_OUT)/train 2>&1 | tee $(GPU_OUT)/train.log; tr=$$?; \
	echo "gpu-check: selftest exit $$st, train exit $$tr; results in $(GPU_OUT)/" | tee $(GPU_OUT)/status.txt; \
	[ $$st -eq 0 ] && [ $$tr -eq 0 ]

clean:
	rm -rf $(VENV) $(PLUGIN_BUILD) demo-out selftest-out $(GPU_VENV)
