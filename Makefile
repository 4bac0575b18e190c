# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is installed first and pinned to a release that satisfies the package's range
# (>=2.13,<2.15); override with e.g. `make test TORCH=torch==2.14.1` for a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: test demo results venv clean

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

demo: $(VENV)/.installed-base
	$(VENV)/bin/elm-neuro demo --out runs/demo

# the two CPU experiment plans (resumable; each prints its expected CPU-hours first); their
# reports are in runs/results/<plan>/results/README.md, committed copies in analysis/results/
results: $(VENV)/.installed-base
	$(VENV)/bin/elm-neuro reproduce neuron-comparison --out runs/results/neuron-comparison
	$(VENV)/bin/elm-neuro reproduce budget-tradeoff --out runs/results/budget-tradeoff

clean:
	rm -rf runs build *.egg-info
