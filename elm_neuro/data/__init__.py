"""Data: Spiking Heidelberg Digits (docs/design.md §5), SHD-Adding (docs/design.md §6) and text corpora.

SHD modules (one idea each; import them directly, this package imports nothing eagerly):

* :mod:`elm_neuro.data.shd` - ``read_shd(path, n_classes=20) -> SHDEvents``: a whole file as
  flat arrays (times float64, units, offsets [n+1], labels, speakers, keys), validated.
* :mod:`elm_neuro.data.binning` - ``bin_events(..., out=None, dtype=None)``: flat events ->
  [B, T, C] counts or binary frames, float32 or uint8, optionally into a reused buffer (Numba,
  parallel over samples), with a numpy reference (``bin_events_numpy``) and a torch / CUDA
  version (``bin_events_torch``).
* :mod:`elm_neuro.data.synth` - ``write_synthetic_shd(out_dir, n_train, n_test, seed)``:
  SHD-format synthetic data in the real layout (``elm-neuro data synth``).
* :mod:`elm_neuro.data.speech` - the twenty digit words (SHD's labels and keys) spoken by
  espeak-ng (through ctypes, the library from the ``espeakng-loader`` wheel), speakers drawn
  from a seed and split by SHD's protocol, per-utterance noise and gain.
* :mod:`elm_neuro.data.cochlea` - ``wave_to_spikes(samples, sample_rate, n_channels=700)``: the
  Lauscher cochlea chain that made the SHD (basilar membrane, Meddis hair cells, 40 fibres per
  bushy cell, LIF bushy cells), exact mode spike-for-spike equal to the ``lauscher`` package and
  a fast mode equal in distribution (one random number per fibre spike).
* :mod:`elm_neuro.data.spoken` - ``write_spoken_shd(out_dir, n_train, n_test, seed, workers=2)``:
  the speech module's words through the cochlea into SHD-format files (``elm-neuro data
  spoken``): SHD's speaker protocol, a documented rule for which utterances, deterministic for a
  seed and any worker count, resumable in chunks, marked so that provenance reports ``spoken``.
* :mod:`elm_neuro.data.baseline` - ``linear_baseline(train, test)``: logistic regression on
  binned spike counts, how hard a data set is without a network (``data inspect DIR --baseline``).
* :mod:`elm_neuro.data.shd_adding` - validation split, pairs, ``SHDAdding`` splits (each
  digit binned once into a uint8 cache on the training device, pairs built by indexing),
  torch ``Dataset`` / ``DataLoader``, SHD-format writer (``elm-neuro data shd-adding``).
* :mod:`elm_neuro.data.shd_classification` - ``SHDClassification``: plain SHD (20 classes)
  splits (the same binned-once cache), as the trainer's ``shd`` task uses them.
* :mod:`elm_neuro.data.tonic_adapter` - ``SHDEventDataset`` / ``SHDAddingEventDataset``: SHD
  files and SHD-Adding pairs as tonic-style datasets (items ``(events, target)``, events a
  structured array in tonic's SHD layout: int64 t [us], x, p; sensor size (700, 1, 1)), so
  ``tonic.transforms`` apply. Needs no tonic itself; tonic's transforms come with
  ``pip install elm_neuro[interop]``.
* :mod:`elm_neuro.data.provenance` - ``data_provenance(task, data_dir)``: real SHD / enwik8,
  spoken or synthetic files (marked by ``elm-neuro data spoken`` / ``data synth``), the built-in
  corpus, or unknown; runs
  record it and reports check it before showing published results beside a run.
* :mod:`elm_neuro.data.fetch` - download of the official zips with md5 check
  (``elm-neuro data fetch``).
* :mod:`elm_neuro.data.inspect` - summary, statistics (duration, spikes, active channels, firing
  rates), raster plots and a per-class figure of SHD-format files and folders
  (``elm-neuro data inspect``).

Data code never imports model or training code; defaults come from :mod:`elm_neuro.defaults`.
"""
