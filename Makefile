# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is installed first and pinned to a release that satisfies the package's range
# (>=2.4,<2.15); override with e.g. `make test TORCH=torch==2.14.1` for a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: test test-cpus test-oldest test-wheel demo results venv clean

$(VENV)/.installed-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base
	$(PIP) install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed-base

test: $(VENV)/.installed-test
	$(PY) -m pytest tests

# The engine and binning tests again with Numba compiled for other x86-64 CPUs than this one
# (Numba compiles for the host, and float32 sums round differently from one CPU to another):
# a generic x86-64 target (SSE2, no fused multiply-add) and the widest-vector level this CPU
# runs (x86-64-v4 with AVX-512, else v3 with AVX2). .ci/run runs it after `make test`.
CPU_TESTS := tests/test_engine_elm.py tests/test_engine_lif.py tests/test_engine_inputs.py \
             tests/test_engine_simd.py tests/test_data_binning.py
CPU_SKIP  := not training_curves and not gradcheck and not parallel_build
test-cpus: $(VENV)/.installed-test
	NUMBA_CPU_NAME=generic $(PY) -m pytest -p no:cacheprovider -k "$(CPU_SKIP)" $(CPU_TESTS)
	NUMBA_CPU_NAME=$$($(PY) -m elm_neuro.networks.engines.numba_threads --widest-cpu) \
	  $(PY) -m pytest -p no:cacheprovider -k "$(CPU_SKIP)" $(CPU_TESTS)

# The whole suite on the oldest supported versions: Python 3.10, torch 2.4.1 (with the triton
# 3.0.0 it requires) and numpy 1.26, in its own venv. PyPI's Linux x86-64 torch 2.4.1 is a CUDA build, and the
# wheel alone does not import (it loads libcublas, libcudnn, ... from the nvidia-* wheels): the
# first run downloads about 2.5 GB. Python 3.10 is python3.10 on PATH or pyenv's 3.10.x; without
# one the target says so and succeeds. .ci/run runs it after test-cpus.
OLDEST_VENV   ?= .venv-oldest
OLDEST_TORCH  ?= torch==2.4.1
# Triton 3.0's and 3.1's interpreters (the kernel tests) write nowhere with numpy 2: numpy 1.26
OLDEST_NUMPY  ?= numpy<2
OLDEST_PYTHON ?= $(shell for p in $(HOME)/.pyenv/versions/3.10*/bin/python3.10 "$$(command -v python3.10)"; do \
                   "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
test-oldest:
ifeq ($(strip $(OLDEST_PYTHON)),)
	@echo "make test-oldest: skipped, no Python 3.10 here (python3.10 on PATH or pyenv's 3.10.x)"
else
	$(MAKE) --no-print-directory $(OLDEST_VENV)/.installed-test VENV=$(OLDEST_VENV) \
	  PYTHON=$(OLDEST_PYTHON) TORCH=$(OLDEST_TORCH)
	$(OLDEST_VENV)/bin/python -m pip install -q "$(OLDEST_NUMPY)"
	$(OLDEST_VENV)/bin/python -c "import sys, torch, triton, numpy, numba; \
	  print('test-oldest: Python', sys.version.split()[0], 'torch', torch.__version__, 'triton', \
	  triton.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest -p no:cacheprovider tests
endif

# The package as a user installs it (tests/test_wheel.py): python -m build makes the sdist and
# the wheel, which is installed in a fresh venv and runs elm-neuro --version, budget, demo (its
# smallest size) and the imports from a folder outside the clone; about 2.5 min on 2 cores.
test-wheel: $(VENV)/.installed-test
	$(PY) -m pytest -p no:cacheprovider -m wheel tests/test_wheel.py

demo: $(VENV)/.installed-base
	$(VENV)/bin/elm-neuro demo --out runs/demo

# the two CPU experiment plans (resumable; each prints its expected CPU-hours first); their
# reports are in runs/results/<plan>/results/README.md, committed copies in analysis/results/
# The committed spoken-digit studies (about 1 h and 40 min on 2 cores); the first makes the
# spoken digits, the second takes them.
results: $(VENV)/.installed-base
	$(VENV)/bin/elm-neuro reproduce budget-tradeoff-spoken --out runs/results/budget-tradeoff-spoken \
	  --workers 2 --threads 1
	$(VENV)/bin/elm-neuro reproduce neuron-comparison-spoken --out runs/results/neuron-comparison-spoken \
	  --data runs/results/budget-tradeoff-spoken/data --workers 2 --threads 1

clean:
	rm -rf runs build *.egg-info
