"""Recovery of eta with the library's defaults (the README's "Inference from Python" call).

    python benchmarks/recovery_library_defaults.py --seed 31                       # default truth
    python benchmarks/recovery_library_defaults.py --seed 32 --n-galaxy 30000 \\
        --eta=-0.1,13.2,2.5,0.5,1.4,0.15                                          # steep, massive

Simulates the mock, tabulates with the defaults (adaptive quadrature over the halo support; the
README call passes its own axes, which only set the scan resolution), runs emcee with the default
selection term (one entry per lens galaxy, A(eta) = lens fraction by the deterministic quadrature)
and prints median, 68 % interval, std and pull = (median - truth) / std per parameter, plus the
convergence verdict.
"""
import argparse
import time

import numpy as np

import sl_cy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--n-galaxy", type=int, default=100_000)
    ap.add_argument("--eta", default=None, help="truth, 6 comma-separated values (default: the default truth)")
    ap.add_argument("--nwalkers", type=int, default=32)
    ap.add_argument("--nsteps", type=int, default=1500)
    a = ap.parse_args()
    truth = np.array(sl_cy.population.DEFAULT_ETA if a.eta is None else [float(v) for v in a.eta.split(",")])
    t0 = time.perf_counter()
    _, obs = sl_cy.run_mock_simulation(a.n_galaxy, seed=a.seed, eta=truth, show_progress=False)
    grids = sl_cy.tabulate_likelihood_grids(obs, np.linspace(11, 15, 30), gamma_grid=np.linspace(0, 2, 30))
    t1 = time.perf_counter()
    s = sl_cy.run_mcmc(grids, nwalkers=a.nwalkers, nsteps=a.nsteps, initial_guess=truth, seed=a.seed + 1000,
                       progress=False)
    t2 = time.perf_counter()
    discard = a.nsteps // 3
    ci = sl_cy.credible_intervals(s.get_chain(discard=discard, flat=True), names=list(s.param_names))
    ci.insert(0, "truth", truth)
    ci["pull"] = (ci["median"] - ci["truth"]) / ci["std"]
    print(f"{len(obs)} lenses from {a.n_galaxy} galaxies (seed {a.seed}); mock + grids {t1 - t0:.0f} s, "
          f"MCMC {a.nwalkers} x {a.nsteps} in {t2 - t1:.0f} s, {discard} discarded")
    print(ci[["truth", "median", "lo68", "hi68", "std", "pull"]].round(3).to_string())
    print(sl_cy.convergence_report(s, discard=discard)["verdict"])


if __name__ == "__main__":
    main()
