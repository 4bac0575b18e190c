"""Test-suite settings.

The models step through time with many small tensor operations; on a 2-core machine one
intra-op thread is faster for them than two (thread hand-off costs more than it saves), so the
suite runs torch single-threaded: the test process counts as one worker among several
(:func:`elm_neuro.training.runtime.init_worker`), so training runs started by tests with the
automatic thread setting keep one thread too.
"""
from elm_neuro.training.runtime import init_worker

init_worker(1)
