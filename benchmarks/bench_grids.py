"""Benchmark the tabulation of per-lens likelihood grids against plain SciPy.

Run:  python benchmarks/bench_grids.py [--n-lens 200] [--n-ref-points 5]

sl_cy: ``tabulate_likelihood_grids`` on a 30 x 30 (logMh, gamma_in) grid, one core, including
inversion, radial caustic, |J| and F_phot. SciPy: per grid point the reference inversion
(``sl_cy.reference.ref_invert``: adaptive quadrature, brentq, finite-difference Jacobian)
plus F_phot by ``scipy.integrate.quad`` over the source magnitude; timed on a few points and
scaled to the 900-point grid.
"""
import argparse
import time

import numpy as np
from scipy import integrate, stats

import sl_cy
from sl_cy import reference as ref
from sl_cy.config import SourceLaw
from sl_cy.grids import tabulate_likelihood_grids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-lens", type=int, default=200)
    ap.add_argument("--n-ref-points", type=int, default=5)
    a = ap.parse_args(argv)
    _, obs = sl_cy.run_mock_simulation(60_000, seed=4, show_progress=False)
    obs = obs.iloc[: a.n_lens]
    mh, ga = np.linspace(11.5, 14.5, 30), np.linspace(0.05, 1.95, 30)
    tabulate_likelihood_grids(obs.iloc[:2], mh, ga)                # warm-up (tables, photometry model)
    t0 = time.perf_counter()
    grids = tabulate_likelihood_grids(obs, mh, ga)
    t_cy = (time.perf_counter() - t0) / len(obs)

    law = SourceLaw()
    o = obs.iloc[0]
    g = grids[0]
    pts = np.argwhere(g.is_valid)[:: max(1, g.is_valid.sum() // a.n_ref_points)][: a.n_ref_points]
    t0 = time.perf_counter()
    for i, j in pts:
        r = ref.ref_invert(o.xA, o.xB, o.logRe, mh[i], ga[j], 5.0, 0.3, 2.0)
        f = lambda m: law.pdf(m) * stats.norm.pdf(o.magnitude_observedA, m - 2.5 * np.log10(r["muA_abs"]), 0.1) \
            * stats.norm.pdf(o.magnitude_observedB, m - 2.5 * np.log10(r["muB_abs"]), 0.1)
        integrate.quad(f, 20, 30, limit=200)
    t_ref_point = (time.perf_counter() - t0) / len(pts)
    t_ref = t_ref_point * mh.size * ga.size
    print(f"sl_cy {sl_cy.__version__}: tabulation of a 30x30 (logMh, gamma_in) grid, one core")
    print(f"{'':28s} {'sl_cy':>12s} {'plain SciPy':>14s} {'speed-up':>9s}")
    print(f"{'per grid point':28s} {t_cy / 900 * 1e6:10.2f}us {t_ref_point * 1e3:12.2f}ms {t_ref / t_cy:8.0f}x")
    print(f"{'per lens (900 points)':28s} {t_cy * 1e3:10.2f}ms {t_ref:13.1f}s")


if __name__ == "__main__":
    main()
