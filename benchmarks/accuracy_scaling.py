"""How the quadrature errors vary across the posterior, summed over N lenses (issue 16 items 1-2).

What matters at N lenses is not the error of log p_i or log A itself but how it *varies* across
the posterior: for each eta component j,

    D_j = sum_i [eps_i(eta0 + sigma_j e_j) - eps_i(eta0)],   eps_i = log p_i(default rule) - log p_i(4x finer)

(the finer rule: adaptive node spacing / 4 and gamma step / 4, 16x the points), and for A

    D^A_j = N [delta(eta0 + sigma_j e_j) - delta(eta0)],     delta = log A(default) - log A(finer rule)

(finer rule: twice the quadrature nodes in every dimension on the same rate table; the rate
table's own step is not refined here: rebuilding it finer takes ~16x 45 s of forward solves).
Both should stay <= 0.1 in log L. sigma_j is the Laplace posterior width at this N (inverse
Hessian at the MAP, analytic gradients). At N' lenses the width shrinks by sqrt(N / N') and the
sum grows by N' / N, so D_j projects to N' as D_j sqrt(N' / N) (a smooth error: the difference
is linear in the step); the projection to N' = 10^4 is printed.

Run:  python benchmarks/accuracy_scaling.py [--galaxies 50000] [--seed 1] [--skip-kernel]
      [--decompose] [--fine-table PATH]   (A(eta) also against a selection table built finer, e.g. with
      build_selection_table(axes=...) at 0.05 dex along logM* and logRe: ~17 min on 2 loaded cores)
or:   python benchmarks/accuracy_scaling.py --at-default [TABLE.h5 ...]   (A(eta) only, seconds)

Recorded (2026-11-30, 100 000 galaxies, seed 1 -> 428 lenses; default 1137 points/lens, finer
17 234): per-lens |eps| at the MAP median 3.5e-5, max 0.136 (one lens); log A error (vs 2x nodes)
-2.7e-3 at the MAP. D_j (kernel) / projected to N = 10^4; D^A_j / projected:

  alpha_sps +4.7e-3 / +0.023   +0.012 / +0.056
  mu_h      -0.016  / -0.079   +0.173 / +0.83
  beta_h    +1.2e-3 / +0.006   +0.096 / +0.47
  sigma_h   -0.059  / -0.28    +0.129 / +0.62
  mu_gamma  +0.039  / +0.19    -0.010 / -0.049
  sigma_gamma +0.090 / +0.44   +0.059 / +0.28

Neither met <= 0.1 at N = 10^4. The A(eta) part came from the rate table's piecewise-linear
interpolation in log T (kinks that the moving quadrature nodes cross). With cubic Lagrange
interpolation in log T along the four axes (2026-12-01, ``--skip-kernel``, load ~5-7 on 2 cores):
log A error vs 2x nodes -2.1e-5 at the MAP; D^A projected to N = 10^4:

  alpha_sps +0.0007  mu_h -0.0083  beta_h +0.0007  sigma_h +0.0019  mu_gamma -0.0000  sigma_gamma +0.0059

and against a table with twice the nodes along logM* and logRe (0.05 dex, same rule): <= 0.014
for every component (multilinear rule: up to 1.0). The MAP and Laplace widths changed with it:
the multilinear kinks had stalled L-BFGS (gradient norm 0.85 after 129 evaluations; now 1e-7
after 29) and distorted the Hessian (Laplace widths of mu_h 0.024 -> 0.134, sigma_h 0.018 ->
0.046, mu_gamma 0.022 -> 0.060; value finite differences agree with the new widths).

``--at-default [TABLE.h5 ...]`` (2026-12-01, second session; quadrature 40 x 6 x 20 x 16 nodes,
load ~3 on 2 cores): at the default eta, widths POSTERIOR_SIGMA_1 / sqrt(N), against the table with
logM* and logRe steps halved (MR, 63 x 61 x 71 x 21, from an earlier session's cache) and the table
``selection_for(n_lenses=1e5)`` builds (RG: logRe and gamma_in steps halved, 32 x 60 x 71 x 41,
511 s with n_jobs=2 at load 5-6):

  N = 1e4  default vs MR   alpha -0.0042 mu_h +0.0122 beta_h +0.0030 sigma_h +0.0061 mu_g +0.0060 sigma_g +0.0041
           default vs RG   alpha -0.0030 mu_h +0.0094 beta_h +0.0006 sigma_h +0.0016 mu_g +0.0100 sigma_g +0.0043
  N = 1e5  default vs MR   alpha -0.0135 mu_h +0.0385 beta_h +0.0095 sigma_h +0.0196 mu_g +0.0190 sigma_g +0.0130
           default vs RG   alpha -0.0097 mu_h +0.0297 beta_h +0.0016 sigma_h +0.0057 mu_g +0.0317 sigma_g +0.0136
           RG vs MR        alpha -0.0038 mu_h +0.0088 beta_h +0.0079 sigma_h +0.0140 mu_g -0.0127 sigma_g -0.0006

error_report (Richardson from the coarsened table, order 3: conservative): default 0.034 at 1e4,
0.107 at 1e5 (not ok; refine logRe and gamma_in); RG 0.010 at 1e4, 0.034 at 1e5 (ok). With the
earlier 64 x 8 M x logRe nodes the default table's report was 0.034 / 0.105: the rule with fewer
nodes (2.1x faster) changes it by < 0.002.

Kernel part re-measured with those widths (2026-12-01, ``--galaxies 100000 --decompose``,
OMP_NUM_THREADS=1, load ~5.5 on 2 cores; 428 lenses, default 1137 points/lens, 4x finer 17 234;
MAP (-0.0074, 13.0508, 2.014, 0.3106, 0.9867, 0.187), Laplace sigma (0.0097, 0.1337, 0.1236,
0.0459, 0.0598, 0.0204); per-lens |eps| at the MAP median 3.4e-5, max 0.133). D_j projected to
N = 10^4, for the default grids and for grids refined 4x along one direction only, and the
largest single-lens share of it:

  =================  ======  ======  ======  ======  ========  ========
  grids              alpha   mu_h    beta_h  sigma_h mu_gamma  sigma_g
  =================  ======  ======  ======  ======  ========  ========
  default            +0.031  -0.495  +0.004  -0.723  +0.466    +0.493
    one lens (84)    +0.126  -0.457  +0.074  -0.708  +0.247    +0.332
  gamma 4x only      +0.121  -0.523  +0.024  -0.771  +0.335    +0.343
  columns 4x only    +0.003  -0.010  -0.002  -0.014  +0.007    +0.004
  columns 2x, 65     -0.002  +0.006  +0.001  -0.006  -0.003    -0.006
  =================  ======  ======  ======  ======  ========  ========

("columns 2x, 65": adaptive step 0.5 only for the 65 lenses that :func:`unresolved_weight_peak`
flags (> 10), 1318 points per lens on average instead of 1137; all lenses at step 0.5: 2248.)

So the target (|D_j| <= 0.1) is missed through the node spacing *along the columns*, not the
gamma rule, and mostly through one lens of 428 (4 lenses vary by > 0.01 across the six steps).
Lens 84 (x_A = 22.3, x_B = -2.08 kpc: image B near the radial critical curve) has an
eta-independent weight W = beta |J| F_phot that peaks within ~2 nodes (log W = -6.5, -3.1, -10.4
at consecutive nodes of its main column): the magnitudes (sigma_m = 0.1) pin the magnification
ratio, which changes fast there. Step 0.5 along the columns (2248 points per lens) brings every
|D_j| to <= 0.014 (max |eps| 5e-3 at the MAP). Curvature of log W at the column peaks > 1 per
node^2 flags ~25 % of the lenses, > 10 flags 15 %; refining those to step 0.5 meets the target
with +16 % points (the table above): the cheap route, a tabulation change not made yet (at 28
bytes per point it would hold ~37 kB per lens, over the 32 kB budget of issue 16). The kernel changes of that day (vectorised passes) leave these numbers
unchanged (values equal to 3.6e-15).

That refinement is now the tabulation's rule (2026-12-01, third session): ``tabulate_likelihood_grids``
re-tabulates a lens at half the column step, up to twice, while :func:`sl_cy.grids.weight_peak_curvature`
exceeds ``WEIGHT_PEAK_CURVATURE`` = 10 (``peak_halvings=2``; the grids of a call share the largest
number of node slots used, 165 instead of 103 here; the rule is in the grids' config and cache key).
Re-measured (``OMP_NUM_THREADS=1 python benchmarks/accuracy_scaling.py --galaxies 100000``, load
~2.7 on 2 cores, 75 s; reference: the 4x finer rule without refinement, 17 234 points/lens): 65
lenses refined once, none twice; 1318 points per lens (~36.9 kB held per lens at 28 bytes per
point); per-lens |eps| at the MAP median 2.5e-5, max 5.3e-3; D_j projected to N = 10^4:

  alpha_sps -0.0020  mu_h +0.0047  beta_h +0.0006  sigma_h -0.0079  mu_gamma -0.0027  sigma_gamma -0.0053

(the MAP moved by < 0.05 sigma from the one above: (-0.0073, 13.0495, 2.0102, 0.3141, 0.9879, 0.1846)).
``--decompose`` at the same MAP (load ~2-3.5, 130 s), projected to N = 10^4:

  =====================  ======  ======  ======  ======  ========  ========
  grids                  alpha   mu_h    beta_h  sigma_h mu_gamma  sigma_g
  =====================  ======  ======  ======  ======  ========  ========
  default (refined)      -0.002  +0.005  +0.001  -0.008  -0.003    -0.005
  peak_halvings=0        +0.036  -0.503  +0.007  -0.727  +0.496    +0.541
  gamma 4x only (no ref) +0.127  -0.535  +0.026  -0.777  +0.362    +0.384
  columns 4x only        +0.003  -0.010  -0.003  -0.015  +0.007    +0.005
  =====================  ======  ======  ======  ======  ========  ========

The by-hand experiment ("columns 2x, flagged") gives the default's numbers to the digits shown:
the library rule is that experiment. Largest single-lens share now 0.013 (lenses 263, 386).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def at_default(tables, ns=(10**4, 10**5)):
    """``--at-default``: no mock, no MAP: at the default eta with the widths POSTERIOR_SIGMA_1 / sqrt(N)
    (those of the 428-lens mock, projected), N x the variation over +-1 sigma of log A(a) - log A(b)
    for the default table and each table file given (every pair, the default first), and each
    table's own :meth:`error_report`."""
    import math

    from sl_cy.population import DEFAULT_ETA, ETA_NAMES
    from sl_cy.selection import SelectionQuadrature, selection_for
    from sl_cy.selection.quadrature import POSTERIOR_SIGMA_1

    print("load:", os.popen("uptime").read().strip())
    engines = [selection_for()] + [SelectionQuadrature.load(p) for p in tables]
    e0 = np.array(DEFAULT_ETA, float)
    for n in ns:
        sig = np.array([POSTERIOR_SIGMA_1[k] for k in ETA_NAMES]) / math.sqrt(n)
        E = np.vstack([e0 + np.diag(sig), e0 - np.diag(sig)])
        la = [np.log(q(E)) for q in engines]
        for q in engines:
            r = q.error_report(n)
            print(f"N = {n:g}: {q!r} error_report max {r['max']:.4f} ({r['worst']}), ok {r['ok']}, refine {r['refine']}")
        for i in range(len(engines)):
            for j in range(i + 1, len(engines)):
                d = la[i] - la[j]
                D = n * (d[:6] - d[6:]) / 2
                print(f"N = {n:g}: {engines[i].T.shape} vs {engines[j].T.shape}: "
                      + " ".join(f"{nm} {v:+.4f}" for nm, v in zip(ETA_NAMES, D)) + f" | max {np.abs(D).max():.4f}")
    print("load:", os.popen("uptime").read().strip())
def unresolved_weight_peak(grids):
    """Per lens, the curvature of log W at its column peaks (:func:`sl_cy.grids.weight_peak_curvature`,
    the tabulation's own criterion)."""
    from sl_cy.grids import weight_peak_curvature

    return weight_peak_curvature(grids)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--galaxies", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", type=float, default=1e4, help="N to project to")
    ap.add_argument("--fine-table", default=None,
                    help="also compare A(eta) with this selection table (.h5 of a finer build, same forward model)")
    ap.add_argument("--skip-kernel", action="store_true",
                    help="only the A(eta) part (no 4x finer per-lens grids: the expensive half)")
    ap.add_argument("--at-default", nargs="*", metavar="TABLE.h5", default=None,
                    help="only A(eta): the default table against these finer tables at the default eta, N = 1e4 and "
                         "1e5 (no mock, no MAP; see the docstring)")
    ap.add_argument("--decompose", action="store_true",
                    help="also D_j of the grids without the column-step refinement, refined 4x along gamma only, "
                         "along the columns only (both without it), and 2x along the columns of the lenses with "
                         "an unresolved peak of W only (by hand), and the largest single-lens share of D_j")
    a = ap.parse_args(argv)
    if a.at_default is not None:
        return at_default(a.at_default)

    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.inference import find_map
    from sl_cy.likelihood import LikelihoodKernel, Posterior
    from sl_cy.mock import run_mock_simulation
    from sl_cy.samplers import laplace_hessian
    from sl_cy.selection import quadrature as q

    print("load:", os.popen("uptime").read().strip())
    _, obs = run_mock_simulation(a.galaxies, seed=a.seed, show_progress=False)
    t = time.perf_counter()
    grids = tabulate_likelihood_grids(obs, show_progress=False)
    post = Posterior(grids)
    n = post.n_lenses
    if not a.skip_kernel:
        # the reference: 4x finer everywhere, without the column-step refinement (as recorded before it)
        fine = tabulate_likelihood_grids(obs, gamma_grid=np.round(np.arange(0.0, 2.0 + 1e-9, 0.025), 10),
                                         adaptive_step=0.25, peak_halvings=0, show_progress=False)
        kf = LikelihoodKernel(fine)
        print(f"{n} lenses; default {post.kernel.n_points / n:.0f} points/lens "
              f"(~{(post.kernel.n_points * 24 + post.kernel.nodes.nbytes) / n / 1e3:.1f} kB held per lens), "
              f"4x finer {kf.n_points / n:.0f} (grids {time.perf_counter() - t:.0f} s)")
    m = find_map(post, np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2]))
    x0 = m["x"]
    sig = np.sqrt(np.diag(np.linalg.inv(-laplace_hessian(post, x0))))
    E = np.vstack([x0, x0 + np.diag(sig)])
    print(f"MAP {np.round(x0, 4).tolist()}, Laplace sigma {np.round(sig, 4).tolist()}")
    if a.skip_kernel:
        D = np.full(len(x0), np.nan)
    else:
        ref = kf.per_lens(E)
        eps = post.kernel.per_lens(E) - ref
        D = (eps[1:] - eps[0]).sum(axis=1)
        print(f"per-lens |eps| at the MAP: median {np.median(np.abs(eps[0])):.2e}, max {np.abs(eps[0]).max():.2e}")
        s_n = np.sqrt(a.target / n)
        if a.decompose:
            parts = {"default": post.kernel,
                     "no refinement": LikelihoodKernel(tabulate_likelihood_grids(obs, peak_halvings=0,
                                                                                 show_progress=False))}
            # the one-direction refinements without the column-step refinement (as recorded before it)
            parts["gamma 4x only"] = LikelihoodKernel(tabulate_likelihood_grids(
                obs, gamma_grid=np.round(np.arange(0.0, 2.0 + 1e-9, 0.025), 10), peak_halvings=0,
                show_progress=False))
            parts["columns 4x only"] = LikelihoodKernel(tabulate_likelihood_grids(obs, adaptive_step=0.25, peak_halvings=0,
                                                                                  show_progress=False))
            per_lens = {name: k.per_lens(E) for name, k in parts.items()}
            # columns at half the step only for the lenses whose eta-independent weight W peaks
            # within ~2 nodes (curvature of log W at a column's peak > 10 per node^2)
            half = LikelihoodKernel(tabulate_likelihood_grids(obs, adaptive_step=0.5, peak_halvings=0,
                                                              show_progress=False))
            flag = unresolved_weight_peak(tabulate_likelihood_grids(obs, peak_halvings=0, show_progress=False)) > 10.0
            per_lens["columns 2x, flagged"] = np.where(flag, half.per_lens(E), per_lens["no refinement"])
            pts = np.where(flag, np.diff(half.offsets), np.diff(parts["no refinement"].offsets)).mean()
            print(f"flagged lenses: {flag.sum()} of {n}; with them at half the step {pts:.0f} points per lens "
                  f"(all at half the step: {half.n_points / n:.0f})")
            for name, pl in per_lens.items():
                dd = (pl - ref)
                dd = dd[1:] - dd[0]
                top = np.abs(dd).argmax(axis=1)
                print(f"{name:16s} D_j -> N={a.target:g}: " + " ".join(f"{v:+.3f}" for v in dd.sum(axis=1) * s_n)
                      + " | largest one-lens share: " + " ".join(f"{v:+.3f}" for v in dd[np.arange(len(dd)), top] * s_n)
                      + f" (lens {sorted(set(top.tolist()))})")

    # A(eta): twice the nodes in every quadrature dimension, same table
    A = post.A
    Af = A.with_nodes(2)
    delta = np.log(A(E)) - np.log(Af(E))
    DA = n * (delta[1:] - delta[0])
    s = np.sqrt(a.target / n)
    print(f"log A(default) - log A(2x nodes) at the MAP: {delta[0]:.2e}")
    if a.fine_table:
        Ft = q.SelectionQuadrature.load(a.fine_table)
        dt = np.log(A(E)) - np.log(Ft(E))
        print(f"vs the table {Ft!r} (same rule): log A difference at the MAP {dt[0]:.2e}; N x variation "
              f"projected to N = {a.target:g}: " + ", ".join(f"{nm} {v:+.3f}" for nm, v in
                                                          zip(post.free_names, n * (dt[1:] - dt[0]) * s)))
    print(f"{'param':12s} {'sigma':>8s} {'D (kernel)':>11s} {'-> N=%g' % a.target:>10s} {'D^A':>10s} "
          f"{'-> N=%g' % a.target:>10s}")
    for j, name in enumerate(post.free_names):
        print(f"{name:12s} {sig[j]:8.4f} {D[j]:+11.2e} {D[j] * s:+10.2e} {DA[j]:+10.2e} {DA[j] * s:+10.2e}")
    print("load:", os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
