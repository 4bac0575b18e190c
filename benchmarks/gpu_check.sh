#!/usr/bin/env bash
# One prepared GPU session (device tool): CUDA tests, GPU benchmarks, paper-configuration
# training speed. Prints every figure. Run from the repository root on a CUDA machine whose
# python3 has torch; snntorch may come as a wheel in .whl/ (see the device README).
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
echo "== CUDA tests"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_training.py tests/test_data_binning.py \
  -k "(cuda or resume) and not triton" 2>&1 | tail -6
# the fused engine's Triton kernels, compiled for the GPU (tests/conftest.py turns Triton's CPU
# interpreter on only where CUDA is absent)
echo "== fused engine (Triton) CUDA tests"
timeout 420 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "triton" 2>&1 | tail -8
echo "== ELM engines (fused / per-step) vs LSTM, SHD-Adding (B 8, T 1000)"
timeout 240 python3 benchmarks/bench_elm.py --device cuda --preset shd-adding --batch 8 --steps 1000 --repeats 3
echo "== ELM engines (fused / per-step) vs LSTM, Enwik8 shapes (d_m 30, N 440, B 8, T 100)"
timeout 180 python3 benchmarks/bench_elm.py --device cuda --preset enwik8 --d-m 30 --n 440 --batch 8 --steps 100 \
  --repeats 5
echo "== LIF vs snntorch vs ELM"
timeout 120 python3 benchmarks/bench_lif.py --device cuda --skip-gather --repeats 5
echo "== paper configuration, SHD-Adding on full-size synthetic SHD: one epoch of 50 batches"
python3 -m elm_neuro.cli.main data synth --out /tmp/shd --train 8156 --test 2264 --seed 0 >/dev/null
timeout 150 python3 -m elm_neuro.cli.main train --task shd-adding --paper --data /tmp/shd --out /tmp/paper-run \
  --device cuda --train-set epochs=1 --train-set batches_per_epoch=50 --train-set valid_batches=10 \
  --train-set test_batches=10 --no-progress | grep -E '"(wall_s|steps|p|n|device|test_acc)"'
# the fused LIF engine: its CUDA tests (Triton) in a process of their own, then the LIF
# benchmark without the per-step path (the line above runs it whole), more rounds
echo "== fused LIF engine (Triton) CUDA tests"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_engine_lif.py -k cuda 2>&1 | tail -6
echo "== fused LIF engine vs snntorch RLeaky, SHD-Adding (B 8, T 1000), like for like"
timeout 300 python3 benchmarks/bench_lif.py --device cuda --skip-step --skip-gather --repeats 10
