"""Benchmark: how hard are spoken digits? A linear baseline on a spoken and a synthetic set of one size.

For a spoken set (``elm-neuro data spoken``) and a synthetic set (``elm-neuro data synth``) of
the same sizes, trains the package's linear baseline (:mod:`elm_neuro.data.baseline`: multinomial
logistic regression on log spike counts in 20 bins of 50 ms x 700 channels pooled by 7) on
``shd_train.h5`` and prints its test accuracy on ``shd_test.h5``, with the chance level. The
spoken set should stay clearly below 100 % (a linear read-out of coarse counts must not solve it)
and well above chance (it must stay learnable), and below what an ELM network reaches on it.

Folders that do not hold both files yet are generated first (``--train`` / ``--test`` /
``--seed``; the spoken set with ``--workers`` processes): the spoken generation's wall time, CPU
seconds per digit and the projected time of an SHD-sized set (8,156 + 2,264 digits) on
``--workers`` cores are printed too (the projection: CPU seconds per digit x digits / workers,
which assumes the cores are free; the wall time says what the machine gave).

Measured (2-core machine; sets of 2,000 train / 600 test digits, seed 0; the ELM rows are
``elm-neuro train --task shd --model elm --params 20000 --data DIR`` with the small recipe, 10 ms
bins, 700 channels pooled by 7, batches of 8, one thread, one seed):

=====================================  ==========  =========
                                       spoken      synthetic
=====================================  ==========  =========
linear baseline, test accuracy         0.630       0.842
  test utterances of training speakers 0.967       0.854
  test utterances of test-only ones    0.546       0.831
ELM, 3 epochs x 100 batches            0.112       0.300
ELM, 15 epochs x 250 batches           0.620       0.842
ELM, 40 epochs x 250 batches           0.757       0.888
=====================================  ==========  =========

The spoken set is harder than the synthetic one for every model; the linear baseline stays well
above chance (0.05) and, once the ELM has trained (10,000 steps), 12.7 points below it (4.6 on
the synthetic set). Generation of the spoken set: 201 s wall on 2 free cores (0.077 s per digit,
0.15 CPU-s per digit): ~13.5 min for an SHD-sized set.

Usage: ``python benchmarks/bench_spoken_baseline.py --spoken /tmp/spoken --synth /tmp/synth
[--train 2000] [--test 600] [--seed 0] [--workers 2]``. Generate under /tmp, not in the repository.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from elm_neuro.data.baseline import format_baseline, linear_baseline
from elm_neuro.data.inspect import read_any_shd

SHD_DIGITS = 8156 + 2264


def _ready(folder: Path) -> bool:
    return (folder / "shd_train.h5").is_file() and (folder / "shd_test.h5").is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spoken", required=True, type=Path, help="spoken set (generated when missing)")
    ap.add_argument("--synth", required=True, type=Path, help="synthetic set (generated when missing)")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    if not _ready(args.spoken):
        from elm_neuro.data.spoken import write_spoken_shd

        r = write_spoken_shd(args.spoken, args.train, args.test, args.seed, workers=args.workers, log=print)
        n = args.train + args.test
        print(f"spoken set: {n} digits in {r.wall_s / 60:.1f} min wall ({r.wall_s / n:.3f} s per digit), "
              f"{r.cpu_s_per_digit:.3f} CPU-s per digit; an SHD-sized set ({SHD_DIGITS} digits) on {args.workers} "
              f"free cores: ~{r.cpu_s_per_digit * SHD_DIGITS / args.workers / 60:.1f} min; at this run's wall rate: "
              f"~{r.wall_s / n * SHD_DIGITS / 60:.1f} min; silent utterances replaced: {len(r.silent)}")
    if not _ready(args.synth):
        from elm_neuro.data.synth import write_synthetic_shd

        write_synthetic_shd(args.synth, args.train, args.test, args.seed)
    for name, folder in (("spoken", args.spoken), ("synthetic", args.synth)):
        t0 = time.perf_counter()
        tr, te = read_any_shd(folder / "shd_train.h5"), read_any_shd(folder / "shd_test.h5")
        result = linear_baseline(tr, te)
        print(f"{name:<10} {folder}: {format_baseline(result).split(':', 1)[1].strip()} "
              f"[read + fit {time.perf_counter() - t0:.1f} s]")


if __name__ == "__main__":
    main()
