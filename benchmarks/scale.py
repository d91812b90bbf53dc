"""Survey scale end to end (issue 16): a 10^4-lens mock simulated, tabulated and inferred (6-D,
with the selection term) on this machine, in process or on a dask LocalCluster.

Stages, each timed, with the peak resident memory of this process and of its pool workers:

1. mock: ``--galaxies`` galaxies at the default truth (2.5e6 -> ~10^4 lenses), saved as
   ``data/tables/<sim_id>/mock.h5`` (:func:`sl_cy.mock.simulate_mock`);
2. grids: the default adaptive likelihood grids, ``grids.h5`` (:func:`sl_cy.tables.tabulate_sim`);
3. posterior: the lenses read from ``grids.h5`` in blocks (:class:`sl_cy.distributed.LensShard`,
   ~32 kB per lens held) or in shards on the workers of a ``LocalCluster`` (``--dask-workers``,
   :class:`sl_cy.distributed.DistributedPosterior`); the default deterministic A(eta);
4. kernel cost: us per lens per eta (value; value + gradient), ms per eta of A(eta);
5. MAP by L-BFGS-B with the exact gradient, robust to saddles (:func:`sl_cy.inference.map_search`);
6. Laplace + PSIS (:func:`sl_cy.samplers.laplace_importance_sampling`): medians, sd, pulls,
   k-hat, ESS and ESS per second;
7. emcee for comparison: a short chain started at the MAP (``--emcee-steps``; tau from
   ``get_autocorr_time(tol=0)`` of a short chain is underestimated, which flatters emcee);
8. the projection to 10^5 lenses on N cores (the kernel cost scales with lenses / cores).

Run:  python benchmarks/scale.py [--galaxies 2500000] [--seed 11] [--n-jobs 2] [--dask-workers 2]
          [--draws 2000] [--emcee-steps 100] [--root scale_run]

Recorded 2026-12-01 on the idle 2-core machine (load 1.1-1.7), in process, ``--galaxies 2500000
--seed 11 --n-jobs 2 --draws 1000 --emcee-steps 20``: 10 394 lenses; mock 6.4 s, grids 91.5 s
(peak 3.43 GB), posterior 24.6 s (31.8 kB per lens held), MAP 10.7 s (32 L-BFGS evaluations),
Laplace + PSIS 174 s (k-hat 0.36, ESS 878, 992 evaluations), total 6 min 7 s (with the 60 s of
emcee); kernel 15.4 us per lens per eta wall on 2 threads (30.7 core-us; 47 with the gradient),
A(eta) 2.9 ms per eta; pulls +0.03, +0.72, -1.30, -0.55, -0.99, +0.95: every eta within 1.3 sigma.
The emcee ESS from 20 steps (tau "2.0") is meaningless; the comparison of samplers is in
``bench_samplers.py`` (10x more ESS per evaluation at 536 lenses).

"Largest worker" is the peak of the process-pool workers this process waited for (mock and
tabulation); the memory of dask workers is the shards' ``kB per lens held`` (printed), not counted
there. The work folder (``--root``) keeps mock.h5 and grids.h5: a second run with the same settings
re-uses them (the stage times are then those of reading).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from pathlib import Path

import numpy as np


def _rss_gb():
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6       # kB -> GB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    return me, kids


class Stages:
    def __init__(self):
        self.rows = []

    def __call__(self, name, t0, extra=""):
        dt = time.perf_counter() - t0
        me, kids = _rss_gb()
        self.rows.append((name, dt, me, kids, extra))
        print(f"[{name}] {dt:.1f} s, peak RSS {me:.2f} GB (largest worker {kids:.2f} GB) {extra}", flush=True)
        return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--galaxies", type=int, default=2_500_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--dask-workers", type=int, default=0, help="0: in process; k: a k-worker LocalCluster")
    ap.add_argument("--draws", type=int, default=2000, help="Laplace + PSIS draws per round")
    ap.add_argument("--emcee-steps", type=int, default=100)
    ap.add_argument("--emcee-walkers", type=int, default=32)
    ap.add_argument("--emcee-moves", default="de", help="de (the pipeline's default) or stretch")
    ap.add_argument("--root", default="scale_run")
    ap.add_argument("--threads", type=int, default=None, help="kernel threads in process (default: all cores)")
    a = ap.parse_args(argv)

    import emcee

    from sl_cy.distributed import DistributedPosterior, LensShard, dask_client
    from sl_cy.inference import emcee_moves, map_search
    from sl_cy.likelihood import Posterior
    from sl_cy.mock import mock_config, simulate_mock
    from sl_cy.population import DEFAULT_ETA
    from sl_cy.samplers import laplace_importance_sampling
    from sl_cy.tables import MOCK_FILE, sim_dir, tabulate_sim

    print("load:", os.popen("uptime").read().strip(), "| cores:", os.cpu_count(), flush=True)
    st = Stages()
    root = Path(a.root)
    _, chash = mock_config(a.galaxies, seed=a.seed)
    sim_id = f"sim_{chash[:8]}"
    d = sim_dir(sim_id, root)
    d.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if not (d / MOCK_FILE).exists():
        res = simulate_mock(a.galaxies, seed=a.seed, n_jobs=a.n_jobs, show_progress=False, keep_galaxies=False)
        res.save(d / MOCK_FILE, extra_attrs=dict(sim_id=sim_id))
        del res
    st("mock", t0, f"{a.galaxies} galaxies")

    t0 = time.perf_counter()
    grids_path = d / "grids.h5"
    if not grids_path.exists():
        grids_path = tabulate_sim(sim_id, root, n_jobs=a.n_jobs, show_progress=False)
    st("grids", t0)

    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(n_workers=a.dask_workers)) if a.dask_workers else None
        t0 = time.perf_counter()
        if client is not None:
            post = stack.enter_context(DistributedPosterior(grids_path, client))
            where = f"{a.dask_workers}-worker LocalCluster"
        else:
            post = Posterior(LensShard(grids_path, n_threads=a.threads))
            where = "in process"
        n = post.n_lenses
        st("posterior", t0, f"{n} lenses, {where}, {post.kernel.nbytes / n / 1e3:.1f} kB per lens held")

        truth = np.asarray(DEFAULT_ETA, float)
        E = truth + 0.01 * np.random.default_rng(0).standard_normal((16, 6))
        t0 = time.perf_counter()
        post.kernel(E)
        tv = (time.perf_counter() - t0) / (len(E) * n) * 1e6
        t0 = time.perf_counter()
        post.kernel.value_and_grad(E)
        tg = (time.perf_counter() - t0) / (len(E) * n) * 1e6
        t0 = time.perf_counter()
        post.A(E)
        ta = (time.perf_counter() - t0) / len(E) * 1e3
        cores = a.threads or os.cpu_count()
        print(f"kernel: {tv:.1f} us/lens/eta value, {tg:.1f} with gradient (wall, {cores} cores; "
              f"{tv * cores:.1f} / {tg * cores:.1f} core-us); A(eta) {ta:.2f} ms per eta", flush=True)

        lo, hi = (np.array(b, float) for b in zip(*post.bounds()))
        t0 = time.perf_counter()
        m = map_search(post, initial_guess=0.5 * (lo + hi))
        st("MAP", t0, f"{m['nfev']} evaluations, {'converged' if m['success'] else 'NOT converged: ' + m['message']}")

        t0 = time.perf_counter()
        s = laplace_importance_sampling(post, n_draws=a.draws, seed=a.seed, map_result=m)
        t_is = st("Laplace+PSIS", t0, f"k-hat {s.khat:.2f}, ESS {s.ess:.0f}")
        draws = s.get_chain(flat=True)
        med, sd = np.median(draws, axis=0), draws.std(axis=0, ddof=1)
        pull = (med - truth[post._free_idx]) / sd

        ess_emcee = np.nan
        t_em = np.nan
        em_q = None
        if a.emcee_steps > 0:
            rng = np.random.default_rng(a.seed)
            p0 = draws[rng.choice(len(draws), a.emcee_walkers, replace=False)]
            sampler = emcee.EnsembleSampler(a.emcee_walkers, post.ndim, post, vectorize=True,
                                            moves=emcee_moves(a.emcee_moves))
            t0 = time.perf_counter()
            sampler.run_mcmc(p0, a.emcee_steps, progress=False)
            taus = sampler.get_autocorr_time(tol=0)
            tau = float(np.max(taus))
            ess_emcee = a.emcee_walkers * a.emcee_steps / tau
            t_em = st("emcee", t0, f"{a.emcee_walkers} walkers x {a.emcee_steps} steps ({a.emcee_moves} moves, "
                                   f"started from the Laplace+PSIS draws), tau {np.round(taus, 1).tolist()}, "
                                   f"chain = {a.emcee_steps / tau:.1f} tau_max")
            em_q = np.quantile(sampler.get_chain(flat=True), [0.16, 0.5, 0.84], axis=0)

    print(f"\n{n} lenses ({a.galaxies} galaxies, seed {a.seed}), {where}\n")
    print("| stage | wall (s) | peak RSS (GB) | largest worker (GB) | |")
    print("|---|---|---|---|---|")
    for name, dt, me, kids, extra in st.rows:
        print(f"| {name} | {dt:.1f} | {me:.2f} | {kids:.2f} | {extra} |")
    print(f"| total | {sum(r[1] for r in st.rows):.1f} | | | |")
    print("\n| parameter | truth | median | sd | pull |")
    print("|---|---|---|---|---|")
    for name, t, md, sdv, p in zip(post.free_names, truth[post._free_idx], med, sd, pull):
        print(f"| {name} | {t:.3f} | {md:.4f} | {sdv:.4f} | {p:+.2f} |")
    ok = np.all(np.abs(pull) < 3)
    print(f"\nevery eta within 3 sigma: {'yes' if ok else 'NO'}")
    is_q = s.quantiles([0.16, 0.5, 0.84])
    if em_q is not None:
        print("\n| parameter | Laplace+PSIS median [16 %, 84 %] | emcee median [16 %, 84 %] | "
              "median difference / sd |")
        print("|---|---|---|---|")
        for j, name in enumerate(post.free_names):
            print(f"| {name} | {is_q[1, j]:.4f} [{is_q[0, j]:.4f}, {is_q[2, j]:.4f}] | {em_q[1, j]:.4f} "
                  f"[{em_q[0, j]:.4f}, {em_q[2, j]:.4f}] | {(em_q[1, j] - is_q[1, j]) / sd[j]:+.2f} |")
    # ESS per second and per posterior evaluation (the same kernel for both; an L-BFGS evaluation
    # with the gradient counts as one); emcee's burn-in is not counted (it starts from the draws)
    n_is_all = s.n_evals
    n_em = a.emcee_walkers * a.emcee_steps
    ess_s_is = s.ess / t_is
    ess_s_em = ess_emcee / t_em if np.isfinite(t_em) else np.nan
    print(f"ESS per second: Laplace+PSIS {ess_s_is:.2f} (ESS {s.ess:.0f} in {t_is:.0f} s), emcee {ess_s_em:.3f} "
          f"(ESS {ess_emcee:.0f} in {t_em:.0f} s, no burn-in counted) -> ratio {ess_s_is / ess_s_em:.1f}x")
    print(f"ESS per posterior evaluation: Laplace+PSIS {s.ess / n_is_all:.3f} ({n_is_all} evaluations incl. "
          f"the MAP), emcee {ess_emcee / max(n_em, 1):.4f} ({n_em}) -> ratio "
          f"{(s.ess / n_is_all) / (ess_emcee / max(n_em, 1)):.1f}x")
    core_g, core_v = tg * cores * 1e-6 * 1e5, tv * cores * 1e-6 * 1e5
    n_is = s.n_evals - m["nfev"]
    print(f"projection to 10^5 lenses: one eta {core_v:.1f} core-s ({core_g:.1f} with gradient); MAP "
          f"({m['nfev']} gradient evaluations) + Laplace+PSIS ({n_is} evaluations) = "
          + ", ".join(f"{(m['nfev'] * core_g + n_is * core_v) / c / 60:.1f} min on {c} cores" for c in (2, 16, 64, 256))
          + " (kernel only; A(eta) and the round trips add little)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
