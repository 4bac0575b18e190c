"""Test-suite settings.

Threads. The models step through time with many small tensor operations; on a 2-core machine one
intra-op thread is faster for them than two (thread hand-off costs more than it saves), so the
suite runs torch single-threaded: the test process counts as one worker among several
(:func:`elm_neuro.training.runtime.init_worker`), so training runs started by tests with the
automatic thread setting keep one thread too.

Triton. Without CUDA the Triton kernels run under Triton's interpreter, on the CPU, at small sizes
(tests/test_engine_elm_triton.py, tests/test_engine_lif_triton.py). Triton decides between
compiled and interpreted functions when they are decorated, its own library's included, so
``TRITON_INTERPRET=1`` is set here, before anything imports triton, for every test process without
CUDA. A process with CUDA runs the compiled kernels instead (tests/test_cuda.py; the interpreter
tests then skip): :func:`interpreted_triton_backend`.
"""
import importlib
import os

import pytest
import torch

from elm_neuro.training.runtime import init_worker

init_worker(1)

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def interpreted_triton_backend(name: str):
    """The Triton backend module ``elm_neuro.networks.engines.<name>`` with its kernels under the
    interpreter; skips the calling test module where triton is missing or compiles for a GPU."""
    pytest.importorskip("triton", reason="triton is not installed (it installs on Linux x86_64 only)")
    import triton.language as tl

    module = importlib.import_module(f"elm_neuro.networks.engines.{name}")
    if os.environ.get("TRITON_INTERPRET") != "1" or type(tl.sum).__name__ != "InterpretedFunction":
        pytest.skip("Triton compiles for the GPU in this process (CUDA is present): the interpreter tests skip; "
                    "tests/test_cuda.py runs the compiled kernels", allow_module_level=True)
    return module
