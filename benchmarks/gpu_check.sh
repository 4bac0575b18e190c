#!/usr/bin/env bash
# One prepared GPU check: every GPU figure of the package (versions, the engine and backend each layer
# really ran, the CUDA tests, ELM SHD-Adding at B 8/32/256 and Enwik8 ms per training batch with a
# forward kernel / backward kernel / GEMM / copy split and peak memory, LIF vs snntorch, a run with
# Triton's import blocked, registers and spills) in one run of at most 8 minutes on a bare CUDA
# machine with torch and triton and no network. The work is done by benchmarks/gpu_check.py
# (sections, time limits and sizes: its docstring); this wrapper installs the wheels carried in
# .whl/ (snntorch, for the LIF comparison) and runs it under a time limit.
#
# Time: every step has a limit, together 8 minutes: the wheels' install WHEELS_S (15 s), then
# gpu_check.py under `timeout -k 5 460` (its sections add up to 435 s, and it stops itself at 450 s).
#
# Through the device tool (the tool sets OUT; gpu_check.log and gpu_check.json come back from it):
#     run(command="bash benchmarks/gpu_check.sh", timeout_s=540)
# What the GPU image lacks: snntorch (pure Python; without it the LIF section says so and measures
# ours alone). To compare with it, here, once: `echo /.whl/ >> .git/info/exclude` (.gitignore
# already ignores /.whl/) and
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl snntorch==1.0.0
# then run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540). Never commit .whl/.
# The package's other dependencies (numpy, numba, h5py, scipy, matplotlib, tqdm, safetensors) are on
# the image; it runs from this tree (PYTHONPATH), not installed, so pyproject's torch pin plays no part.
# Some sections only: bash benchmarks/gpu_check.sh --only shd-adding,lif
# Anywhere, without a GPU (the same Python parts on the CPU at tiny sizes; tests/test_gpu_check.py):
#     bash benchmarks/gpu_check.sh --dry-run        # OUT=/some/dir to get the log and JSON too
# PYTHON names the interpreter (default python3, the one holding torch on the GPU image).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS_S=15
TOTAL_S=460
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case " $* " in *" --dry-run "*) dry=1 ;; *) dry=0 ;; esac
if [ "$dry" = 0 ]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    site="${TMPDIR:-/tmp}/elm_neuro_gpu_check_site"
    if timeout -k 2 "$WHEELS_S" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl; then
      export PYTHONPATH="$PYTHONPATH:$site"
      echo "# installed the carried wheels: $(cd .whl && ls *.whl | tr '\n' ' ')"
    else
      echo "# the wheels in .whl/ did not install within ${WHEELS_S} s: going on without them"
    fi
  else
    echo "# no wheels carried in .whl/: without snntorch the LIF section measures ours alone (how to carry it: this file's head)"
  fi
  exec timeout -k 5 "$TOTAL_S" "$PY" benchmarks/gpu_check.py "$@"
fi
# --dry-run: gpu_check.py limits each section itself (DRY_SECTION_S)
exec "$PY" benchmarks/gpu_check.py "$@"
