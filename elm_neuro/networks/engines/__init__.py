"""Sequence engines: the whole time loop of a layer in one autograd Function, with compiled
backends (Numba on the CPU, Triton on CUDA) and a plain PyTorch reference of each kernel."""
