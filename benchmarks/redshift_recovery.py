"""Redshift distributions end to end (issue 15): node convergence, cost of A(eta), recovery.

Forward model: zl ~ U(0.2, 0.6), zs ~ U(1.0, 3.0), sources 0.008 per arcsec^2 (about the
default 4e-4 per kpc^2 at zl = 0.3), everything else default. Parts (``--parts``):

* ``convergence`` -- A(eta) at three eta against the number of p(zl) and p(zs) quadrature nodes,
  on coarse table axes (the node convergence hardly depends on the table resolution);
* ``cost`` -- A(eta) per eta with the distributions (one thread) beside the fixed-redshift
  engine (the same compiled quadrature: the distributions enter only the eta-independent
  effective rate), and the lens fraction of a mock against A(eta) at three eta;
* ``recovery`` -- a mock of ``--n-galaxy`` galaxies, per-lens grids at each lens's (zl, zs), MAP +
  Laplace (finite-difference Hessian) of the 6-D eta with A(eta) over the distributions, and the
  same with A(eta) at the median redshifts (0.4, 2.0) as the old ``sl-cy infer --observed`` did
  (numerator unchanged): pulls (estimate - truth) / sigma per parameter.

    python benchmarks/redshift_recovery.py [--parts convergence,cost,recovery] [--n-galaxy 200000] [--nsteps 400]

The MAP + Laplace widths were 2-3x too narrow while the selection-rate table was interpolated
multilinearly (its kinks; sigma(mu_h) 0.030 against emcee's 0.082 on the same 730 lenses); with the
cubic rule (issue 16) they are 0.080-0.109. Recorded 2026-12-01 (``--parts recovery``, MAP +
Laplace, 2e5 galaxies per mock, load 0.6-1.9; pulls (MAP - truth) / sigma):

| seed | lenses | A(eta) used | alpha_sps | mu_h | beta_h | sigma_h | mu_gamma | sigma_gamma |
|---|---|---|---|---|---|---|---|---|
| 15 | 730 | over p(zl), p(zs) | -2.2 | +2.8 | -1.4 | -2.0 | -2.4 | +1.3 |
| 15 | 730 | at the median z (0.4, 2) | -1.3 | +1.6 | -1.3 | -1.2 | -1.6 | +1.2 |
| 16 | 715 | over p(zl), p(zs) | -0.2 | -0.5 | +0.1 | +0.5 | +0.4 | +1.1 |
| 16 | 715 | at the median z | +0.6 | -1.4 | +0.2 | +1.2 | +1.0 | +0.7 |
| 17 | 705 | over p(zl), p(zs) | +1.1 | +0.5 | +0.2 | -0.5 | -0.7 | +0.1 |
| 17 | 705 | at the median z | +2.2 | -0.6 | +0.3 | +0.4 | +0.2 | -0.3 |

Every eta within 3 sigma with A over the distributions (seed 15 is the mock whose sources
fluctuated +2.75 sigma, below). At ~700 lenses the median-redshift A is not visibly biased either;
the difference between the two grows like N (the two log A differ by a smooth function of eta).

One 1e6-galaxy mock per eta has a binomial error of ~1.7 % at the default eta: the -2.7 sigma of
seed 15 (0.00366 vs A = 0.00350) is a fluctuation of that mock's sources, not a bias. Its galaxies'
own expected lens probabilities 1 - exp(-T_i) (T_i by direct quadrature at each galaxy's zl, 4 zs x
8 beta nodes, no table) sum to 3502 against 3660 lenses (+2.75 sigma, spread over all zl bins); the
same galaxies with 10x the source density give 33477 lenses for 33438 expected (+0.2 sigma); eight
further seeds (16-23) give 0.003492 (-0.3 %, -0.5 sigma), the steep/massive eta (seeds 30-31)
+0.2 % and the shallow/light eta (seeds 40-43) -0.1 %. tests/test_redshifts.py checks this at 3
sigma of a ~1 % error.
"""
import argparse
import math
import os
import time

import numpy as np
from scipy import optimize

from sl_cy.config import SurveyConfig
from sl_cy.forward import ForwardModel
from sl_cy.population import DEFAULT_ETA, ETA_NAMES
from sl_cy.redshifts import UniformRedshift
from sl_cy.selection import build_selection_table, selection_for

FM = ForwardModel(zl=UniformRedshift(0.2, 0.6), zs=UniformRedshift(1.0, 3.0),
                  survey=SurveyConfig(nbkg_per_arcsec2=0.008))
ETAS = {
    "default": (0.0, 12.91, 2.04, 0.37, 1.0, 0.2),
    "steep, massive": (-0.1, 13.2, 2.5, 0.5, 1.4, 0.15),
    "shallow, light": (0.15, 12.5, 1.5, 0.25, 0.6, 0.3),
}
#: table axes of the cost/recovery parts: the default steps (0.1) over the range the populations of
#: ETAS occupy (half the nodes of the default axes, which need ~80 s per node pair on one core).
#: Coarser steps are not good enough for a recovery: with 0.2 in logRe and logMh, A(eta) errs by
#: -1.1 %, +0.1 %, -1.6 % at the three ETAS (fixed redshifts, against the default axes), which for
#: 730 lenses moves log L by ~10 across eta and biased mu_h by 8 sigma.
BENCH_AXES = dict(logM_star=(10.2, 12.8, 0.1), logRe=(-0.3, 1.9, 0.1), logM_halo=(10.5, 16.5, 0.1),
                  gamma_in=(0.0, 2.0, 0.1))
COARSE = dict(logM_star=(9.9, 13.0, 0.3), logRe=(-0.7, 2.3, 0.3), logM_halo=(10.0, 17.0, 0.3),
              gamma_in=(0.0, 2.0, 0.25))


def load():
    return os.getloadavg()[0]


def convergence(n_jobs):
    eta = np.array(list(ETAS.values()))
    print("\n## Node convergence of A(eta) (coarse table axes; relative change to the previous row)\n")
    for which, fixed_other in (("zs", dict(n_zl=3)), ("zl", dict(n_zs=4))):
        print(f"| n_{which} ({', '.join(f'{k}={v}' for k, v in fixed_other.items())}) | "
              + " | ".join(ETAS) + " | max rel. change |")
        print("|---|" + "---|" * (len(ETAS) + 1))
        prev = None
        for n in (1, 2, 3, 4, 5, 6):
            sq = build_selection_table(forward_model=FM, axes=COARSE, cache=False, n_jobs=n_jobs,
                                       **{f"n_{which}": n}, **fixed_other)
            A = sq(eta)
            ch = "" if prev is None else f"{np.max(np.abs(A / prev - 1)):.1e}"
            print(f"| {n} | " + " | ".join(f"{a:.6f}" for a in A) + f" | {ch} |", flush=True)
            prev = A


def cost(n_jobs, n_mock, seed):
    from _timing import best_of
    from sl_cy.mock import simulate_mock

    t0 = time.perf_counter()
    sq = bench_table(n_jobs)
    rn = sq.config["redshift_nodes"]
    print(f"\n## Cost of A(eta) (table {sq.T.shape}, nodes zl {np.round(rn['zl'], 3).tolist()}, "
          f"zs {np.round(rn['zs'], 3).tolist()}; built/loaded in {time.perf_counter() - t0:.0f} s; "
          f"load {load():.1f})\n")
    sq0 = selection_for(ForwardModel())
    e = np.tile(np.asarray(DEFAULT_ETA), (64, 1))
    e[:, 1] += np.linspace(-0.3, 0.3, 64)
    for name, s in (("zl ~ U(0.2, 0.6), zs ~ U(1, 3), BENCH_AXES", sq), ("fixed zl = 0.3, zs = 2.0, default axes", sq0)):
        s.n_threads = 1
        t = best_of(lambda: s(e), 3) / len(e)
        t1 = best_of(lambda: s(e[0]), 5)
        print(f"| {name} | {1e3 * t:.2f} ms per eta (batch of 64) | {1e3 * t1:.2f} ms (one eta) | 1 thread |")
    print(f"\n## Mock lens fraction vs A(eta) with distributions ({n_mock:.0e} galaxies per eta; load {load():.1f})\n")
    print("| eta | mock lens fraction | A(eta) | (A - mock) / sigma |")
    print("|---|---|---|---|")
    for i, (name, eta) in enumerate(ETAS.items()):
        m = simulate_mock(n_mock, seed=seed + i, eta=eta, forward_model=FM, n_jobs=n_jobs, keep_galaxies=False,
                          show_progress=False)
        f = m.n_lenses / n_mock
        err = math.sqrt(f * (1 - f) / n_mock)
        A = sq(np.array(eta))
        print(f"| {name} | {f:.5f} ± {err:.5f} | {A:.5f} | {(A - f) / err:+.1f} |", flush=True)


def bench_table(n_jobs, forward_model=FM):
    from sl_cy.cache import cache_dir

    return build_selection_table(forward_model=forward_model, axes=BENCH_AXES, n_jobs=n_jobs, cache_dir=cache_dir())


def _map_laplace(logpost, x0, step=3e-3):
    from sl_cy.likelihood import DEFAULT_BOX

    f = lambda x: -logpost(x)
    r = optimize.minimize(f, x0, method="L-BFGS-B", bounds=[DEFAULT_BOX[k] for k in ETA_NAMES],
                          options=dict(maxiter=500, ftol=1e-12, gtol=1e-6))
    x = r.x
    n = len(x)
    H = np.zeros((n, n))
    h = np.full(n, step)
    f0 = f(x)
    for i in range(n):
        for j in range(i, n):
            ei, ej = np.eye(n)[i] * h[i], np.eye(n)[j] * h[j]
            if i == j:
                H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
            else:
                H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    cov = np.linalg.inv(H)
    return x, np.sqrt(np.diag(cov))


def _emcee(logpost, truth, nsteps, nwalkers=24):
    import emcee

    lp = lambda X: np.array([logpost(x) for x in np.atleast_2d(X)])
    p0 = truth + 0.01 * np.random.default_rng(1).standard_normal((nwalkers, len(truth)))
    s = emcee.EnsembleSampler(nwalkers, len(truth), lp, vectorize=True)
    s.run_mcmc(p0, nsteps, progress=False)
    ch = s.get_chain(discard=nsteps // 2, flat=True)
    return np.median(ch, axis=0), ch.std(axis=0)


def recovery(n_jobs, n_galaxy, seed, nsteps=0):
    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.likelihood import Posterior
    from sl_cy.mock import simulate_mock

    truth = np.asarray(DEFAULT_ETA)
    t0 = time.perf_counter()
    m = simulate_mock(n_galaxy, seed=seed, forward_model=FM, n_jobs=n_jobs, keep_galaxies=False, show_progress=False)
    obs = m.observed
    grids = tabulate_likelihood_grids(obs, forward_model=FM, n_jobs=n_jobs)
    post = Posterior(grids, A=bench_table(n_jobs))         # A(eta) over the distributions
    zl_med, zs_med = FM.median_redshifts
    A_med = bench_table(n_jobs, ForwardModel(zl=zl_med, zs=zs_med, survey=FM.survey))
    n = post.n_lenses
    print(f"\n## Recovery: {n} lenses from {n_galaxy:.0e} galaxies (zl {obs.zl.min():.2f}-{obs.zl.max():.2f}, "
          f"zs {obs.zs.min():.2f}-{obs.zs.max():.2f}); setup {time.perf_counter() - t0:.0f} s, load {load():.1f}\n")

    def lp_med(x):
        e = np.atleast_2d(x)
        if not post.in_support(e)[0]:
            return -np.inf
        return float(post.prior.logpdf(e[0]) + post.kernel(e)[0] - n * math.log(A_med(e[0])))

    rows = {}
    for label, lp in (("A(eta) over p(zl), p(zs)", lambda x: post(x)),
                      (f"A(eta) at the median redshifts ({zl_med:g}, {zs_med:g})", lp_med)):
        t1 = time.perf_counter()
        x, sd = _emcee(lp, truth, nsteps) if nsteps else _map_laplace(lp, truth.copy())
        rows[label] = (x, sd)
        how = f"emcee 24 x {nsteps}, median and std of the second half" if nsteps else "MAP + Laplace"
        print(f"### {label} ({how}, {time.perf_counter() - t1:.0f} s)\n")
        print("| parameter | truth | " + ("median | std" if nsteps else "MAP | sigma (Laplace)") + " | pull |")
        print("|---|---|---|---|---|")
        for k, name in enumerate(ETA_NAMES):
            print(f"| {name} | {truth[k]:g} | {x[k]:.3f} | {sd[k]:.3f} | {(x[k] - truth[k]) / sd[k]:+.1f} |")
        pulls = (x - truth) / sd
        print(f"\nmax |pull| = {np.max(np.abs(pulls)):.1f}; all within 3 sigma: {bool(np.all(np.abs(pulls) < 3))}\n",
              flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="convergence,cost,recovery")
    ap.add_argument("--n-galaxy", type=int, default=200_000)
    ap.add_argument("--n-mock", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--nsteps", type=int, default=0, help="emcee steps (24 walkers) instead of MAP + Laplace")
    a = ap.parse_args()
    parts = a.parts.split(",")
    print(f"# Redshift distributions: {FM.zl_dist.spec}, {FM.zs_dist.spec} (load at start {load():.1f})")
    if "convergence" in parts:
        convergence(a.n_jobs)
    if "cost" in parts:
        cost(a.n_jobs, a.n_mock, a.seed)
    if "recovery" in parts:
        recovery(a.n_jobs, a.n_galaxy, a.seed, a.nsteps)


if __name__ == "__main__":
    main()
