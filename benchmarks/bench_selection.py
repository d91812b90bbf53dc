"""Benchmark the selection normaliser A(eta): bank build rate, time per eta, table vs bank, mock check.

Run:  python benchmarks/bench_selection.py [--n 100000] [--n-jobs 1] [--repeat 5] [--mock 400000]

Prints

* bank build rate (galaxies/s: proposal draw + lens solve + proposal density + K table lookups;
  the K table build, ~0.3 s, is reported separately);
* A(eta) time per eta for the bank (compiled kernel, one eta per call and a batch of 256), against a
  plain NumPy implementation of the same estimator using the ``sl_cy.population`` log-densities,
  measured in the same process (target DESIGN.md §5: <= 5 ms per eta for a 1e5 bank, one core);
* agreement of the shipped default table (``cached_A()``) with the bank at random eta inside its box;
* the deterministic quadrature A(eta) (``build_selection_table``): table build time, time per eta,
  agreement with the bank, and the MC jitter it removes (spread of log A_bank - log A_quad over
  eta near the truth);
* with ``--mock N``: A(eta) against the detected-lens fraction of a mock of N galaxies at a few eta
  (bank and quadrature lens fractions).

``--quad-only``: only the cost of the quadrature A(eta) on the cached default table
(``selection_for()``), value and value + gradient, one thread, best of ``--repeat`` over 64 eta
near the truth, as wall time and as process CPU time (the machine is shared: CPU time is the
steadier number under load). Run with ``OMP_NUM_THREADS=1``.

Recorded (2026-12-01, ``OMP_NUM_THREADS=1 python benchmarks/bench_selection.py --quad-only``,
ms per eta, 2 cores shared with other jobs; the old kernel built from commit 936d191 and run
right after, at the same load):

  ========================================================  =====  ============  ==================
  version                                                   load   value         value + gradient
                                                                   wall / CPU    wall / CPU
  ========================================================  =====  ============  ==================
  before: 64 x 8 x 20 x 16 nodes, 16-term slab, expm1       1.4    7.6 / -       13.9 / -
  before (936d191), measured beside the new one             3.5    8.9 / 5.7     19.6 / 13.0
  now: one axis at a time, one exp per node, 40 x 6 nodes   3.4    3.9 / 2.8     5.3 / 4.8
  ========================================================  =====  ============  ==================

The kernel change alone (f053673, results equal to 1e-15) made the gradient ~1.2x cheaper in
CPU time (10.4 -> 8.8 ms at load 6.3; the value was within the noise); the rule with 40 M and 6
logRe nodes instead of 64 and 8 (6f92e57) the rest. Profile of the old kernel (perf, value
only): the 16-term (logM*, logRe) slab contraction ~22 %, expm1 29 %, exp 10 %, the rest of
the per-node work ~27 %. On the table ``selection_for(n_lenses=1e5)`` builds (32 x 60 x 71 x
41: logRe and gamma_in steps halved) 4.8 / 7.1 ms CPU (value / gradient, load 4.6).
"""
import argparse
import math
import time
import warnings

import numpy as np
from _timing import best_of

from sl_cy.config import SurveyConfig
from sl_cy.population import DEFAULT_ETA, gamma_logpdf, logMh_logpdf, logRe_logpdf, mstar_logpdf
from sl_cy.selection import SelectionWarning, _ktable_for, build_selection_bank, build_selection_table, cached_A



def numpy_A(bank, eta):
    """Plain NumPy importance-sampling estimate with the population log-densities (reference)."""
    d = bank.data
    M = d["logM_star"] - eta[0]
    lt = (mstar_logpdf(M) + logRe_logpdf(d["logRe"], M) + logMh_logpdf(d["logM_halo"], M, d["logRe"], eta=eta)
          + gamma_logpdf(d["gamma_in"], eta[4], eta[5]))
    with np.errstate(divide="ignore"):
        return float(np.sum(np.exp(np.log(d["T"]) - d["log_q"] + lt)) / bank.n)


def quad_cost(repeat=5):
    """ms per eta of the quadrature A(eta) (value; value + gradient), one thread: wall and CPU time."""
    import os

    from sl_cy.selection import selection_for

    sq = selection_for()
    sq.n_threads = 1
    eta = np.array(DEFAULT_ETA, float)
    near = np.tile(eta, (64, 1)) + np.random.default_rng(3).normal(0, 1, (64, 6)) * [0.02, 0.05, 0.1, 0.02, 0.05, 0.02]
    sq(near)
    print(f"{sq!r}, nodes {sq.n_nodes}; load {os.getloadavg()[0]:.2f}")
    for label, f in (("value", lambda: sq(near)), ("value + gradient", lambda: sq.log_lens_fraction_and_grad(near))):
        wall = best_of(f, repeat) / len(near)
        cpu = min(_cpu_time(f) for _ in range(repeat)) / len(near)
        print(f"{label}: {wall * 1e3:.2f} ms per eta (wall), {cpu * 1e3:.2f} ms (CPU)")
    print(f"load {os.getloadavg()[0]:.2f}")


def _cpu_time(f):
    t0 = time.process_time()
    f()
    return time.process_time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="bank galaxies (default 1e5)")
    ap.add_argument("--n-jobs", type=int, default=1, help="worker processes for the bank (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    ap.add_argument("--mock", type=int, default=0, help="galaxies per mock for the consistency table (0: skip)")
    ap.add_argument("--n-beta", type=int, default=1, help="source positions per bank galaxy (default 1)")
    ap.add_argument("--quad-only", action="store_true",
                    help="only the quadrature A(eta) cost per eta on the cached default table (see the docstring)")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore", SelectionWarning)
    if a.quad_only:
        return quad_cost(a.repeat)

    t0 = time.perf_counter()
    kt = _ktable_for(SurveyConfig())
    t_k = time.perf_counter() - t0
    build_selection_bank(2_000, seed=0, ktable=kt)                    # warm-up (gNFW table load)
    holder = {}
    t_bank = best_of(lambda: holder.__setitem__("b", build_selection_bank(a.n, seed=1, ktable=kt,
                                                                          n_jobs=a.n_jobs, n_beta=a.n_beta)), max(1, a.repeat // 2))
    bank = holder["b"]
    eta = np.array(DEFAULT_ETA, float)
    t_one = best_of(lambda: bank(eta), a.repeat * 4)
    batch = np.tile(eta, (256, 1)) + np.random.default_rng(0).normal(0, 0.05, (256, 6)) * [1, 1, 1, 0.2, 1, 0.2]
    t_batch = best_of(lambda: bank(batch), a.repeat) / len(batch)
    t_np = best_of(lambda: numpy_A(bank, eta), a.repeat)
    A, ess, err = bank.evaluate(eta, return_ess=True, return_error=True)

    print(f"bank: {a.n} galaxies, n_beta={a.n_beta}, n_jobs={a.n_jobs}: {t_bank:.2f} s = {a.n / t_bank:,.0f} galaxies/s "
          f"(K table build {t_k:.2f} s, not included)")
    print(f"A(default eta) = {A:.5g} +- {err:.2g} (ESS {ess:.0f}); NumPy reference {numpy_A(bank, eta):.5g}")
    print()
    print("| job | sl_cy | NumPy reference | ratio |")
    print("|---|---|---|---|")
    print(f"| A(eta), 1e5 bank, one eta per call | {t_one * 1e3:.2f} ms | {t_np * 1e3:.1f} ms | {t_np / t_one:.1f}x |")
    print(f"| A(eta), 1e5 bank, batch of 256 | {t_batch * 1e3:.2f} ms/eta | {t_np * 1e3:.1f} ms | "
          f"{t_np / t_batch:.1f}x |")

    try:
        table = cached_A()
    except ValueError as exc:
        print(f"\nno default table: {exc}")
    else:
        rng = np.random.default_rng(2)
        pts = np.tile(np.array(table.fixed, float), (200, 1))
        for name, (lo, hi) in table.bounds().items():
            j = ["alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma", "sigma_gamma"].index(name)
            pts[:, j] = rng.uniform(lo, hi, len(pts))
        Ab, essb = bank.evaluate(pts, return_ess=True)
        At = table(pts)
        good = essb > 1000
        rel = np.abs(At[good] / Ab[good] - 1)
        t_tab = best_of(lambda: table(eta), a.repeat * 4)
        print(f"\ndefault table {table.path.name}: {t_tab * 1e6:.0f} us per call; vs this bank at {good.sum()} random "
              f"eta with bank ESS > 1000: median |rel diff| {np.median(rel):.3f}, 90% {np.quantile(rel, 0.9):.3f} "
              f"(includes both banks' MC error and interpolation)")

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sq = build_selection_table(n_jobs=a.n_jobs, cache_dir=tmp)
        t_build = time.perf_counter() - t0
    t_q1 = best_of(lambda: sq(eta), a.repeat * 2)
    t_qb = best_of(lambda: sq(batch), max(1, a.repeat // 2)) / len(batch)
    near = np.tile(eta, (64, 1)) + np.random.default_rng(3).normal(0, 1, (64, 6)) * [0.02, 0.05, 0.1, 0.02, 0.05, 0.02]
    Aq, Ab = sq(near), bank(near)
    d = np.log(Ab / Aq)
    print(f"\nquadrature A(eta): table {sq.T.shape} built in {t_build:.1f} s (n_jobs={a.n_jobs}); "
          f"{t_q1 * 1e3:.2f} ms per call, {t_qb * 1e3:.2f} ms/eta in a batch of 256 ({sq.n_threads} threads)")
    print(f"A_quad(default) = {sq(eta):.5g} vs bank {bank(eta):.5g}; over 64 eta near the truth log(A_bank/A_quad) "
          f"= {d.mean():+.4f} +- {d.std():.4f} (the bank's MC jitter, absent from the quadrature)")

    if a.mock:
        from sl_cy.mock import simulate_mock

        print(f"\n| eta | A (bank {a.n}) | ESS | bank lens fraction | quadrature lens fraction | mock fraction "
              f"({a.mock}) | lenses | (frac - f)/sigma |")
        print("|---|---|---|---|---|---|---|---|")
        for label, kw in [("default", {}), ("alpha_sps=+0.2", dict(alpha_sps=0.2)),
                          ("alpha_sps=-0.2", dict(alpha_sps=-0.2)), ("mu_h=13.21", dict(mu_h=13.21)),
                          ("mu_h=12.61", dict(mu_h=12.61)), ("mu_gamma=1.3", dict(mu_gamma=1.3)),
                          ("mu_gamma=0.7", dict(mu_gamma=0.7))]:
            e = DEFAULT_ETA._replace(**kw)
            A, ess, err = bank.evaluate(np.array(e), return_ess=True, return_error=True)
            r = simulate_mock(a.mock, seed=77, eta=e, show_progress=False, keep_galaxies=False)
            f = r.lens_fraction
            lf, lf_err = bank.lens_fraction(np.array(e), return_error=True)
            sig = math.hypot(lf_err, math.sqrt(f * (1 - f) / a.mock))
            print(f"| {label} | {A:.5f} +- {err:.5f} | {ess:.0f} | {lf:.5f} | {sq.lens_fraction(np.array(e)):.5f} "
                  f"| {f:.5f} | {r.n_lenses} | {(lf - f) / sig:+.2f} |")


if __name__ == "__main__":
    main()
