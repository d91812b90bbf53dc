"""Posterior on a grid: (mu_h, beta_h) on a 25 x 25 grid, the other parameters fixed (~15 s).

Run:  python examples/grid_inference.py [output folder]

No MCMC: sl_cy.inference.grid_posterior evaluates the selection-corrected posterior at every grid point
(vectorised over points), returns the normalised weights with 1-D and 2-D marginals, and
sl_cy.inference.save_grid_posterior_hdf5 stores them. The figure <out>/grid_marginals.png shows the two 1-D
marginals and the 2-D marginal with the truth.
"""
import sys
from pathlib import Path

import numpy as np

import sl_cy


def main(out="."):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, observed = sl_cy.run_mock_simulation(40_000, seed=7, show_progress=False)
    grids = sl_cy.tabulate_likelihood_grids(observed)
    truth = sl_cy.population.DEFAULT_ETA
    post = sl_cy.Posterior(grids)          # selection term on: A(eta) of the grids' forward model
    axes = {"mu_h": np.linspace(12.6, 13.2, 25), "beta_h": np.linspace(1.2, 2.8, 25)}
    rest = {n: getattr(truth, n) for n in sl_cy.population.ETA_NAMES if n not in axes}
    gp = sl_cy.inference.grid_posterior(post, axes, fixed=rest)
    path = sl_cy.inference.save_grid_posterior_hdf5(out / "grid_posterior.h5", gp)
    print(f"{len(grids)} lenses; posterior mean {gp.mean()}, grid MAP {gp.map()} (truth mu_h={truth.mu_h}, "
          f"beta_h={truth.beta_h}) -> {path}")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    ax = fig.subplots(1, 3)
    for a, n in zip(ax[:2], ("mu_h", "beta_h")):
        a.plot(gp.axes[n], gp.marginals[n], "k-")
        a.axvline(getattr(truth, n), color="C1", ls="--", label="truth")
        a.set_xlabel(n)
        a.set_ylabel("marginal (sum 1)")
        a.legend()
    m2 = gp.marginals_2d[("mu_h", "beta_h")]
    ax[2].contourf(gp.axes["mu_h"], gp.axes["beta_h"], m2.T, levels=20, cmap="Greys")
    ax[2].plot(truth.mu_h, truth.beta_h, "o", color="C1")
    ax[2].set_xlabel("mu_h")
    ax[2].set_ylabel("beta_h")
    fig.tight_layout()
    fig.savefig(out / "grid_marginals.png", dpi=100)
    print(f"marginals plot: {out / 'grid_marginals.png'}")
    return gp


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
