"""Timing helper shared by the benchmark scripts."""
import time

import numpy as np


def best_of(fn, repeat=3):
    """Best wall time (s) of ``repeat`` calls of ``fn()``."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
