"""Benchmark the mock generator: galaxies per second of run_mock_simulation.

Run:  python benchmarks/bench_mock.py [--n 200000] [--n-jobs 1] [--repeat 3] [--n-ref 20]

Prints one table row: galaxies/s and microseconds per galaxy of ``run_mock_simulation`` (default
survey and eta, best of ``--repeat``), against a plain SciPy lower bound measured in the same
process: the per-galaxy critical-curve + image solve of ``sl_cy.testing.ref_forward_solve`` with
a pre-built halo spline (every galaxy of a mock needs at least that; a straightforward mock also
rebuilds the spline per galaxy and draws per galaxy, ~1.5 ms/galaxy per DESIGN.md §5).
Target (DESIGN.md §5): >= 50 000 galaxies/s on one core.
"""
import argparse

import numpy as np
from _timing import best_of

import sl_cy
from sl_cy import testing as ref
from sl_cy.mock import run_mock_simulation



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="galaxies per mock (default 2e5)")
    ap.add_argument("--n-jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--n-ref", type=int, default=20, help="galaxies for the SciPy lower bound")
    a = ap.parse_args(argv)

    run_mock_simulation(1_000, seed=0, show_progress=False)        # tables loaded outside the timing
    holder = {}

    def run():
        holder["out"] = run_mock_simulation(a.n, seed=1, n_jobs=a.n_jobs, show_progress=False)

    t = best_of(run, a.repeat)
    lenses, _ = holder["out"]
    per_gal = t / a.n

    rng = np.random.default_rng(0)
    spline = ref.RefHaloSpline(1.0)
    ms = rng.normal(11.4, 0.2, a.n_ref)
    args = [(ms[i], 12.91 + 2.04 * (ms[i] - 11.4), 0.774 + 0.977 * (ms[i] - 11.4), 1.0, 5.0, 0.3, 2.0,
             rng.uniform()) for i in range(a.n_ref)]
    t_ref = best_of(lambda: [ref.ref_forward_solve(*x, halo_spline=spline) for x in args], 1) / a.n_ref

    print(f"sl_cy {sl_cy.__version__} mock benchmark ({a.n} galaxies, n_jobs={a.n_jobs}, best of {a.repeat}; "
          f"{len(lenses)} lenses, fraction {100 * len(lenses) / a.n:.3f} %)")
    print(f"| {'job':38s} | {'galaxies/s':>11s} | {'us/galaxy':>9s} | {'SciPy lower bound':>17s} | {'speed-up':>8s} |")
    print(f"| {'mock: run_mock_simulation':38s} | {1 / per_gal:11,.0f} | {per_gal * 1e6:9.2f} | "
          f"{t_ref * 1e3:14.3f} ms | {t_ref / per_gal:7.0f}x |")


if __name__ == "__main__":
    main()
