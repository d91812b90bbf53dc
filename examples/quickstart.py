"""Quickstart: a small end-to-end run (mock -> grids -> A(eta) -> MCMC -> summaries), ~30 s.

Run:  python examples/quickstart.py [output folder]

It simulates 4e4 galaxies (about 160 detected lenses) at the default hyper-parameters, tabulates
each lens's likelihood grid with the library defaults (adaptive quadrature over the whole halo
support; the selection term, A(eta) by the deterministic quadrature of the same forward model, is
on by default), samples eta = (alpha_sps, mu_h, beta_h, sigma_h) with emcee (the gamma_in law
fixed at its true value to keep it quick), prints the posterior summary next to the truth and
saves a corner plot. A real analysis uses more galaxies, walkers and steps (see the README).
"""
import sys
from pathlib import Path

import numpy as np

import sl_cy


def main(out="."):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lenses, observed = sl_cy.run_mock_simulation(40_000, seed=7, show_progress=False)
    print(f"mock: {len(observed)} detected lenses out of 40000 galaxies")

    grids = sl_cy.tabulate_likelihood_grids(observed)
    truth = np.array(sl_cy.population.DEFAULT_ETA)
    fixed = dict(mu_gamma=truth[4], sigma_gamma=truth[5])
    sampler = sl_cy.run_mcmc(grids, nwalkers=12, nsteps=120, initial_guess=truth, fixed=fixed, seed=3,
                             progress=False, backend_file=out / "quickstart_chain.h5")
    chain = sampler.get_chain(discard=40, flat=True)
    names = list(sampler.param_names)
    table = sl_cy.credible_intervals(chain, names=names, levels=(0.68,))
    table.insert(0, "truth", [truth[list(sl_cy.population.ETA_NAMES).index(n)] for n in names])
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"mean acceptance fraction: {sampler.acceptance_fraction.mean():.2f}")
    sl_cy.plot_corner(chain, truths=table["truth"].to_numpy(), names=names, path=out / "quickstart_corner.png")
    print(f"corner plot: {out / 'quickstart_corner.png'}; chain: {out / 'quickstart_chain.h5'}")
    return table


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
