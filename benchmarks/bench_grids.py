"""Benchmark the tabulation of per-lens likelihood grids against plain SciPy, and the compiled
adaptive column rule against the Python rule it replaces.

Run:  python benchmarks/bench_grids.py [--n-lens 200] [--n-ref-points 5] [--n-ref-lenses 20]

1. Uniform grid. sl_cy: ``tabulate_likelihood_grids`` on a 30 x 30 (logMh, gamma_in) grid, one
   core, including inversion, radial caustic, |J| and F_phot. SciPy: per grid point the reference
   inversion (``sl_cy.testing.ref_invert``: adaptive quadrature, brentq, finite-difference
   Jacobian) plus F_phot by ``scipy.integrate.quad`` over the source magnitude; timed on a few
   points and scaled to the 900-point grid.
2. Adaptive column rule on the default grids (``DEFAULT_LOGMH_GRID`` x ``DEFAULT_GAMMA_GRID``, the
   pipeline's): the compiled rule (``sl_cy.grids.adaptive_columns_batch``, ``csrc/tabulate.pyx``;
   one and two OpenMP threads) beside the Python rule it replaces
   (``sl_cy.testing.ref_adaptive_columns``: per-lens loop, a lexsort per bisection round, a
   PchipInterpolator per piece), with their agreement (lenses with bit-identical nodes and
   weights, largest difference), and the whole adaptive tabulation per lens (rule + inversion
   of the used slots + F_phot). Times are best of 3 wall clock on a warm process; CPU time of
   the one-thread call is printed too (it is what the machine's other load does not inflate).

Recorded (2026-11-30, 2-vCPU AMD EPYC shared with other jobs at load 4-5; mock seed 4, 200
lenses, Python rule on 20; default grids: 71-point scan [10, 17] x 21 gamma, ~3500 logM*
evaluations per lens): compiled rule 1.4 ms per lens on one thread (wall 1.37, CPU 1.39), Python
rule 17.3 ms (12.4x); 20/20 lenses bit-identical. Two threads gave no wall-clock gain while both
cores were busy with other jobs (lenses are independent; results do not depend on the thread
count). The whole adaptive tabulation is 4.75 ms per lens, most of it the full inversion
(critical curves for y_c and the status) of the ~1150 used node slots, not the rule. Profiled
again (core14, load 13-17, CPU time, 200 lenses): rule 1.45 ms, inversion of the used slots
3.1 ms (2.7 us per slot, ~95% of it lens_critical), F_phot + Python (task set-up, broadcasting,
LensGrid objects) ~0.4 ms (cProfile: <4% of the wall time outside the two compiled calls; no
cosmology recomputed per lens, no HDF5 write without a cache_dir).
Uniform 30 x 30 grid: 1.95 ms per lens (2.2 us per point).
"""
import argparse
import time
import warnings

import numpy as np
from scipy import integrate, stats

import sl_cy
from _timing import best_of
from sl_cy import testing as ref
from sl_cy.config import SourceLaw
from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, adaptive_columns_batch, tabulate_likelihood_grids


def _uniform(obs, n_ref_points):
    mh, ga = np.linspace(11.5, 14.5, 30), np.linspace(0.05, 1.95, 30)
    kw = dict(adaptive=False, show_progress=False)
    with warnings.catch_warnings():    # the 30 x 30 grid does not span the halo support: fine for timing
        warnings.simplefilter("ignore", RuntimeWarning)
        tabulate_likelihood_grids(obs.iloc[:2], mh, ga, **kw)              # warm-up (tables, photometry)
        t0 = time.perf_counter()
        grids = tabulate_likelihood_grids(obs, mh, ga, **kw)
    t_cy = (time.perf_counter() - t0) / len(obs)

    law = SourceLaw()
    o = obs.iloc[0]
    g = grids[0]
    pts = np.argwhere(g.is_valid)[:: max(1, g.is_valid.sum() // n_ref_points)][:n_ref_points]
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


def _adaptive(obs, n_ref_lenses):
    o = {c: obs[c].to_numpy(float) for c in ("xA", "xB", "logRe", "logM_star_sps_observed", "zl", "zs")}
    s = np.sign(o["xA"])
    xa, xb = o["xA"] * s, o["xB"] * s
    n = len(xa)

    def compiled(n_threads):
        return adaptive_columns_batch(xa, xb, o["logRe"], o["logM_star_sps_observed"], DEFAULT_GAMMA_GRID,
                                      DEFAULT_LOGMH_GRID, zl=o["zl"], zs=o["zs"], n_threads=n_threads, info=True)

    def timed(fn, repeat=3):
        """(best wall, mean CPU) seconds of fn()."""
        c0 = time.process_time()
        wall = best_of(fn, repeat)
        return wall, (time.process_time() - c0) / repeat

    m, w, info = compiled(1)                                            # warm-up
    (t1, cpu1), (t2, _) = timed(lambda: compiled(1)), timed(lambda: compiled(2))
    k = min(n_ref_lenses, n)
    refs = []

    def python_rule():
        refs[:] = [ref.ref_adaptive_columns(xa[i], xb[i], o["logRe"][i], o["logM_star_sps_observed"][i],
                                            DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, zl=o["zl"][i], zs=o["zs"][i])
                   for i in range(k)]

    t_py, cpu_py = timed(python_rule, repeat=1)
    same = sum(np.array_equal(rm, m[i], equal_nan=True) and np.array_equal(rw, w[i])
               for i, (rm, rw) in enumerate(refs))
    dmax = max(max(np.nanmax(np.abs(rm - m[i]), initial=0.0), np.max(np.abs(rw - w[i])))
               for i, (rm, rw) in enumerate(refs))
    t_tab, cpu_tab = timed(lambda: tabulate_likelihood_grids(obs, DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID, adaptive=True,
                                                             show_progress=False), repeat=1)
    # the full inversion (critical curves for y_c and the status) of the used node slots
    use = np.isfinite(m)
    at = lambda a: np.broadcast_to(np.asarray(a)[:, None, None], m.shape)[use]
    t_inv, cpu_inv = timed(lambda: sl_cy.invert_images(at(xa), at(xb), at(o["logRe"]), logM_halo=m[use],
                                                       gamma_in=np.broadcast_to(DEFAULT_GAMMA_GRID, m.shape)[use],
                                                       zl=at(o["zl"]), zs=at(o["zs"])))
    pts = info["n_points"].mean()
    print(f"\nadaptive column rule, default grids ({len(DEFAULT_LOGMH_GRID)} logMh scan x "
          f"{len(DEFAULT_GAMMA_GRID)} gamma; {pts:.0f} logM* evaluations per lens), ms per lens")
    print(f"{'':36s} {'wall':>8s} {'CPU':>8s} {'speed-up (CPU)':>15s}")
    print(f"{'Python rule (reference), one core':36s} {t_py / k * 1e3:8.2f} {cpu_py / k * 1e3:8.2f} {1.0:14.1f}x"
          f"   [{k} lenses]")
    print(f"{'compiled rule, 1 thread':36s} {t1 / n * 1e3:8.2f} {cpu1 / n * 1e3:8.2f} "
          f"{cpu_py / k / (cpu1 / n):14.1f}x   [{n} lenses]")
    print(f"{'compiled rule, 2 threads':36s} {t2 / n * 1e3:8.2f} {'':>8s} {'':>15s}   (wall {t1 / t2:.2f}x of 1 thread)")
    print(f"{'whole adaptive tabulation, one core':36s} {t_tab / n * 1e3:8.2f} {cpu_tab / n * 1e3:8.2f}"
          f"   (rule + inversion of the used slots + F_phot)")
    print(f"{'  of it: inversion of the used slots':36s} {t_inv / n * 1e3:8.2f} {cpu_inv / n * 1e3:8.2f}"
          f"   ({use.sum() / n:.0f} slots per lens, {cpu_inv / use.sum() * 1e6:.1f} us each: critical curves)")
    print(f"agreement with the Python rule: {same}/{k} lenses bit-identical, max |difference| {dmax:.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-lens", type=int, default=200)
    ap.add_argument("--n-ref-points", type=int, default=5)
    ap.add_argument("--n-ref-lenses", type=int, default=20, help="lenses timed with the Python adaptive rule")
    a = ap.parse_args(argv)
    _, obs = sl_cy.run_mock_simulation(60_000, seed=4, show_progress=False)
    obs = obs.iloc[: a.n_lens]
    _uniform(obs, a.n_ref_points)
    _adaptive(obs, a.n_ref_lenses)


if __name__ == "__main__":
    main()
