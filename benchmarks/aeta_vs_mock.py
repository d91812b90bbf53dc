"""A(eta) of the deterministic quadrature against the lens fraction of large mocks (DESIGN section 3).

For each eta: simulate ``--n-galaxy`` galaxies (default 5e6) with the default forward model, count
the fraction that are catalogued lenses (one entry per lens galaxy) with its binomial error, and
compare with ``selection_for(ForwardModel())(eta)`` (E[1 - exp(-T)]) and with E[T] (the
normaliser of the old all-sources counting).

    python benchmarks/aeta_vs_mock.py [--n-galaxy 5000000] [--seed 11]
"""
import argparse
import math
import time

import numpy as np

from sl_cy.mock import simulate_mock
from sl_cy.selection import selection_for

ETAS = {
    "default": (0.0, 12.91, 2.04, 0.37, 1.0, 0.2),
    "steep, massive": (-0.1, 13.2, 2.5, 0.5, 1.4, 0.15),
    "shallow, light": (0.15, 12.5, 1.5, 0.25, 0.6, 0.3),
    "heavy IMF, narrow": (0.3, 13.0, 2.0, 0.1, 1.0, 0.1),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-galaxy", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n-jobs", type=int, default=-1)
    a = ap.parse_args()
    sq = selection_for()
    print(f"| eta | mock lens fraction ({a.n_galaxy:.0e} galaxies) | A(eta) quadrature | (A - mock) / sigma | "
          f"E[T] (old normaliser) |")
    print("|---|---|---|---|---|")
    for i, (name, eta) in enumerate(ETAS.items()):
        t0 = time.perf_counter()
        m = simulate_mock(a.n_galaxy, seed=a.seed + i, eta=eta, n_jobs=a.n_jobs, keep_galaxies=False,
                          show_progress=False)
        f = m.n_lenses / a.n_galaxy
        err = math.sqrt(f * (1 - f) / a.n_galaxy)
        A = sq(np.array(eta))
        ET = sq.expected_sources(np.array(eta))
        print(f"| {name} {eta} | {f:.5f} ± {err:.5f} | {A:.5f} | {(A - f) / err:+.1f} | {ET:.5f} "
              f"({100 * (ET / f - 1):+.1f} %) |  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
