"""Benchmark the compiled lensing core against the plain SciPy implementation (sl_cy.reference).

Run:  python benchmarks/bench_core.py [--n 20000] [--n-ref 10]

Both implementations run in this process on the same random lenses (one core: sl_cy's batch
loops are serial). Printed: time per lens and the speed-up. Two SciPy baselines are shown for
the forward solve: the halo spline rebuilt for every lens (what a straightforward script does)
and a spline built once and reused (the conservative comparison).
"""
import argparse

import numpy as np
from _timing import best_of

import sl_cy
from sl_cy import reference as ref


def lenses(n, seed=0):
    rng = np.random.default_rng(seed)
    ms = rng.normal(11.3, 0.2, n)
    return dict(logM_star=ms, logM_halo=12.9 + 2.0 * (ms - 11.4) + rng.normal(0, 0.3, n),
                logRe=0.77 + 0.98 * (ms - 11.4) + rng.normal(0, 0.1, n), gamma_in=np.full(n, 1.2),
                c_halo=np.full(n, 5.0), zl=np.full(n, 0.3), zs=np.full(n, 2.0), beta_unit=rng.uniform(0, 1, n))



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="lenses for sl_cy")
    ap.add_argument("--n-ref", type=int, default=10, help="lenses for the SciPy reference")
    a = ap.parse_args(argv)

    sl_cy.forward_solve(11.3, 13.0, 0.8, beta_unit=0.5)          # table load outside the timing
    L = lenses(a.n)
    keys = ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs")
    rows = []

    # forward solve: critical curves + both images + magnifications
    t_cy = best_of(lambda: sl_cy.forward_solve(**L)) / a.n
    out = sl_cy.forward_solve(**L)
    spline = ref.RefHaloSpline(1.2)
    m = a.n_ref
    t_ref_spline = best_of(lambda: [ref.ref_forward_solve(*(L[k][i] for k in keys), L["beta_unit"][i],
                                                          halo_spline=spline) for i in range(m)], 1) / m
    t_ref_rebuild = best_of(lambda: [ref.ref_forward_solve(*(L[k][i] for k in keys), L["beta_unit"][i])
                                     for i in range(min(m, 5))], 1) / min(m, 5)
    rows.append(("forward solve (y_c, theta_E, images, mu)", t_cy, t_ref_spline, "SciPy, spline reused"))
    rows.append(("forward solve", t_cy, t_ref_rebuild, "SciPy, spline per lens"))

    # inversion + analytic |J| at one (logMh, gamma) point
    ok = out["status"] == 0
    xa, xb = out["x_A"][ok], out["x_B"][ok]
    inv_args = dict(logRe=L["logRe"][ok], logM_halo=L["logM_halo"][ok], gamma_in=1.2, c_halo=5.0, zl=0.3, zs=2.0)
    t_inv = best_of(lambda: sl_cy.invert_images(xa, xb, **inv_args)) / ok.sum()
    t_ref_inv = best_of(lambda: [ref.ref_invert(xa[i], xb[i], inv_args["logRe"][i], inv_args["logM_halo"][i],
                                                1.2, 5.0, 0.3, 2.0) for i in range(min(m, 5))], 1) / min(m, 5)
    rows.append(("inversion + y_c + |J| per grid point", t_inv, t_ref_inv, "SciPy quad, FD Jacobian"))

    # |J| alone through the public scalar API vs finite differences of the SciPy inversion
    t_dj = best_of(lambda: sl_cy.compute_detJ(xa, xb, inv_args["logRe"], inv_args["logM_halo"], 0.3, 2.0, 1.2)) / ok.sum()
    rl = [ref.RefLens(11.3, inv_args["logM_halo"][i], inv_args["logRe"][i], 1.2, 5.0, 0.3, 2.0) for i in range(3)]
    t_ref_dj = best_of(lambda: [ref.detJ_finite_difference(rl[i], xa[i], xb[i]) for i in range(3)], 1) / 3
    rows.append(("|J| (analytic vs finite differences)", t_dj, t_ref_dj, "SciPy quad, FD"))

    print(f"sl_cy {sl_cy.__version__}: {a.n} lenses (sl_cy), {m} (SciPy), one core")
    print(f"{'job':44s} {'sl_cy/lens':>12s} {'SciPy/lens':>12s} {'speed-up':>10s}  baseline")
    for name, tc, tr, base in rows:
        print(f"{name:44s} {tc * 1e6:10.2f}us {tr * 1e3:10.3f}ms {tr / tc:9.0f}x  {base}")
    print(f"30x30 grid (900 inversions) per lens: {t_inv * 900 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
