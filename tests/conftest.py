"""Test-suite settings.

The models step through time with many small tensor operations; on a 2-core machine one
intra-op thread is faster for them than two (thread hand-off costs more than it saves), so the
suite runs torch single-threaded.
"""
import torch

torch.set_num_threads(1)
