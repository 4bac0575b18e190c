"""The Numba backends compile their serial and parallel kernels under separate names, so that the
on-disk cache (keyed by a function's name, source and argument types, not its options) never hands
one build to a caller of the other."""
from elm_neuro.networks.engines import elm_numba, lif_numba
from elm_neuro.networks.engines.numba_threads import build


def _work(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
    return total


def test_parallel_and_serial_builds_have_separate_cache_entries():
    serial, parallel = build(_work, False), build(_work, True)
    assert serial.py_func.__qualname__ == "_work" and parallel.py_func.__qualname__ == "_work_parallel"
    assert serial.targetoptions.get("parallel") in (False, None) and parallel.targetoptions["parallel"]
    s_index, p_index = serial._cache._cache_file._index_name, parallel._cache._cache_file._index_name
    assert s_index != p_index and "_work_parallel" in p_index


def test_the_engines_build_both_kernels_that_way():
    for module in (elm_numba, lif_numba):
        serial, parallel = module._kernels(False), module._kernels(True)
        for s, p in zip(serial, parallel):
            assert p.py_func.__qualname__ == s.py_func.__qualname__ + "_parallel"
            assert s._cache._cache_file._index_name != p._cache._cache_file._index_name


def test_the_widest_cpu_level_for_the_cpu_target_tests():
    """The Makefile's test-cpus compiles the engines for the x86-64 level with the widest vectors
    the CPU runs: chosen from its feature flags."""
    from elm_neuro.networks.engines.numba_threads import widest_cpu

    avx2 = {"sse4_2", "avx", "avx2", "fma", "bmi2"}
    assert widest_cpu(avx2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}) == "x86-64-v4"
    assert widest_cpu(avx2 | {"avx512f"}) == "x86-64-v3"  # AVX-512 without the v4 set
    assert widest_cpu(avx2) == "x86-64-v3"
    assert widest_cpu({"sse4_2", "avx"}) == "x86-64-v2"
    assert widest_cpu() in ("x86-64-v2", "x86-64-v3", "x86-64-v4")  # this machine's
