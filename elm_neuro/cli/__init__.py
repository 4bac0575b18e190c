"""Command-line interface: ``elm-neuro <command> ...``. One module per command group.

Thin by design: each module parses arguments, calls one function of
:mod:`elm_neuro.experiments`, :mod:`elm_neuro.training` or :mod:`elm_neuro.data` and prints the
result; default values come from :mod:`elm_neuro.defaults`. Nothing outside this package imports
it (the console script enters at :func:`elm_neuro.cli.main.main`). Command implementations that
load the data code (numba, h5py), scipy or matplotlib are imported when their command runs, so
that start-up (``elm-neuro --help``, every other command) does not pay for them (about 1 s).
"""
