# Two entry points that work on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs; CPU torch is pinned so pip takes the local build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PLUGIN_BUILD ?= plugins/build
CMAKE_ARGS ?=

.PHONY: venv plugins test lint demo bench clean

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

clean:
	rm -rf $(VENV) $(PLUGIN_BUILD) demo-out
