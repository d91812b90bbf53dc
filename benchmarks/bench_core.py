"""Benchmark the compiled lensing core against the plain SciPy implementation (sl_cy.testing).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_core.py [--n 20000] [--n-scalar 2000] [--n-ref 10]

All implementations run in this process on the same random lenses (one core: sl_cy's batch
loops are serial). Printed: time per lens and the speed-up. Two SciPy baselines are shown for
the forward solve: the halo spline rebuilt for every lens (what a straightforward script does)
and a spline built once and reused (the conservative comparison).

The second table times the seed's scalar API, one lens per Python call with Python floats, the
way the original package and its users' notebooks loop over lenses: each call alone (on fresh
models where the call has to solve the critical curves), then the seed's forward loop
(``LensModel(...)`` + ``solve_single_lens`` + two ``mu_from_rt``) and its inversion
(``solve_lens_parameters_from_obs`` + ``compute_detJ``) beside the batch API and plain SciPy.
"""
import argparse
import time

import numpy as np
from _timing import best_of

import sl_cy
from sl_cy import testing as ref


def lenses(n, seed=0):
    rng = np.random.default_rng(seed)
    ms = rng.normal(11.3, 0.2, n)
    return dict(logM_star=ms, logM_halo=12.9 + 2.0 * (ms - 11.4) + rng.normal(0, 0.3, n),
                logRe=0.77 + 0.98 * (ms - 11.4) + rng.normal(0, 0.1, n), gamma_in=np.full(n, 1.2),
                c_halo=np.full(n, 5.0), zl=np.full(n, 0.3), zs=np.full(n, 2.0), beta_unit=rng.uniform(0, 1, n))



def per_object(make, fn, repeat=5):
    """Best time per call of ``fn(obj)`` over the objects of ``make()``, made fresh for every
    repeat (so a model's first call, which solves its critical curves, is what gets timed)."""
    best = np.inf
    for _ in range(repeat):
        objs = make()
        t0 = time.perf_counter()
        for o in objs:
            fn(o)
        best = min(best, (time.perf_counter() - t0) / len(objs))
    return best


def scalar_rows(L, out, n, t_fwd_batch, t_inv_batch, t_ref_fwd, t_ref_inv):
    """Time the seed's scalar API on the first ``n`` lenses of ``L`` (Python floats)."""
    keys = ("logM_star", "logM_halo", "logRe", "zl", "zs", "gamma_in", "c_halo")
    ok = np.flatnonzero(out["status"] == 0)[:n]
    P = [tuple(float(L[k][i]) for k in keys) for i in ok]
    bu = [float(L["beta_unit"][i]) for i in ok]
    xa = [float(out["x_A"][i]) for i in ok]
    xb = [float(out["x_B"][i]) for i in ok]
    n = len(P)
    idx = range(n)
    LensModel = sl_cy.LensModel
    models = lambda: [LensModel(*p[:3], zl=p[3], zs=p[4], gamma_in=p[5], c_halo=p[6]) for p in P]  # noqa: E731
    solved = lambda: [(m, m.solve_ycaustic())[0] for m in models()]          # noqa: E731

    def each(fn):
        return best_of(lambda: [fn(i) for i in idx], 5) / n

    rows = [
        ("LensModel(...)", each(lambda i: LensModel(*P[i][:3], zl=P[i][3], zs=P[i][4], gamma_in=P[i][5], c_halo=P[i][6]))),
        ("einstein_radius()   [fresh model]", per_object(models, lambda m: m.einstein_radius())),
        ("solve_xradcrit()    [fresh model]", per_object(models, lambda m: m.solve_xradcrit())),
        ("solve_ycaustic()    [fresh model]", per_object(models, lambda m: m.solve_ycaustic())),
        ("solve_ycaustic()    [curves known]", per_object(solved, lambda m: m.solve_ycaustic())),
        ("solve_single_lens   [fresh model]",
         per_object(lambda: list(zip(models(), bu)), lambda a: sl_cy.solve_single_lens(*a))),
        ("lens_properties     [fresh model]",
         per_object(lambda: list(zip(models(), bu)), lambda a: sl_cy.lens_properties(*a))),
        ("alpha(x)", per_object(lambda: list(zip(solved(), xa)), lambda a: a[0].alpha(a[1]))),
        ("kappa(x)", per_object(lambda: list(zip(solved(), xa)), lambda a: a[0].kappa(a[1]))),
        ("mu_from_rt(x)", per_object(lambda: list(zip(solved(), xa)), lambda a: a[0].mu_from_rt(a[1]))),
        ("solve_lens_parameters_from_obs",
         each(lambda i: sl_cy.solve_lens_parameters_from_obs(xa[i], xb[i], P[i][2], P[i][1], zl=P[i][3], zs=P[i][4],
                                                             gamma_in=P[i][5], c_halo=P[i][6]))),
        ("compute_detJ",
         each(lambda i: sl_cy.compute_detJ(xa[i], xb[i], P[i][2], P[i][1], zl=P[i][3], zs=P[i][4], gamma_in=P[i][5], c_halo=P[i][6]))),
    ]

    def seed_forward(i):
        m = LensModel(*P[i][:3], zl=P[i][3], zs=P[i][4], gamma_in=P[i][5], c_halo=P[i][6])
        a, b = sl_cy.solve_single_lens(m, bu[i])
        return m.mu_from_rt(a), m.mu_from_rt(b)

    def seed_inverse(i):
        p = P[i]
        return (sl_cy.solve_lens_parameters_from_obs(xa[i], xb[i], p[2], p[1], zl=p[3], zs=p[4], gamma_in=p[5], c_halo=p[6]),
                sl_cy.compute_detJ(xa[i], xb[i], p[2], p[1], zl=p[3], zs=p[4], gamma_in=p[5], c_halo=p[6]))

    loops = [("forward: LensModel + solve_single_lens + 2 mu_from_rt", each(seed_forward), t_fwd_batch, t_ref_fwd),
             ("inversion: solve_lens_parameters_from_obs + compute_detJ", each(seed_inverse), t_inv_batch, t_ref_inv)]
    return n, rows, loops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="lenses for sl_cy")
    ap.add_argument("--n-scalar", type=int, default=2000, help="lenses for the scalar API (one call each)")
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
    t_dj = best_of(lambda: sl_cy.compute_detJ(xa, xb, inv_args["logRe"], inv_args["logM_halo"], zl=0.3, zs=2.0, gamma_in=1.2)) / ok.sum()
    rl = [ref.RefLens(11.3, inv_args["logM_halo"][i], inv_args["logRe"][i], 1.2, 5.0, 0.3, 2.0) for i in range(3)]
    t_ref_dj = best_of(lambda: [ref.detJ_finite_difference(rl[i], xa[i], xb[i]) for i in range(3)], 1) / 3
    rows.append(("|J| (analytic vs finite differences)", t_dj, t_ref_dj, "SciPy quad, FD"))

    print(f"sl_cy {sl_cy.__version__}: {a.n} lenses (sl_cy), {m} (SciPy), one core")
    print(f"{'job':44s} {'sl_cy/lens':>12s} {'SciPy/lens':>12s} {'speed-up':>10s}  baseline")
    for name, tc, tr, base in rows:
        print(f"{name:44s} {tc * 1e6:10.2f}us {tr * 1e3:10.3f}ms {tr / tc:9.0f}x  {base}")
    print(f"30x30 grid (900 inversions) per lens: {t_inv * 900 * 1e3:.2f} ms")

    # the seed's scalar API, one lens per call, measured in this same run
    ns, srows, loops = scalar_rows(L, out, a.n_scalar, t_cy, t_inv, t_ref_spline, t_ref_inv)
    print()
    print(f"seed scalar API, one lens per call, Python floats ({ns} lenses; target <= 20 us per call)")
    print(f"{'call':44s} {'us/call':>12s}")
    for name, t in srows:
        print(f"{name:44s} {t * 1e6:10.2f}us")
    print()
    print(f"{'seed loop (per lens)':58s} {'scalar':>10s} {'batch':>10s} {'SciPy':>10s} {'SciPy/scalar':>13s}")
    for name, ts, tb, tr in loops:
        print(f"{name:58s} {ts * 1e6:8.2f}us {tb * 1e6:8.2f}us {tr * 1e3:8.3f}ms {tr / ts:12.0f}x")
    print("(batch = forward_solve / invert_images per lens; SciPy = forward solve with the halo spline "
          "reused / inversion by quad with FD Jacobian)")


if __name__ == "__main__":
    main()
