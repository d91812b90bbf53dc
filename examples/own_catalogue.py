"""Inference from your own catalogue: a CSV in arcsec -> grids -> A(eta) -> MCMC (~30 s).

Run:  python examples/own_catalogue.py [output folder]

To have something to analyse, a small mock's observed table is written to
<out>/my_lenses.csv with the image positions converted to arcsec (columns xA, xB in arcsec,
logRe, logM_star_sps_observed, mA, mB -- "mA"/"mB" are accepted aliases of
magnitude_observedA/B). Then sl_cy.pipeline.infer(observed=..., unit="arcsec") validates the
file (a missing column or a non-finite value is reported by column and row before anything is
written), converts to kpc, tabulates the grids into <out>/data/tables/obs_<hash>/grids.h5 and runs
the MCMC into <out>/inference/obs_<hash>/<run_id>/. The command-line equivalent is
`sl-cy infer --observed my_lenses.csv --unit arcsec`.
"""
import sys
from pathlib import Path

import sl_cy
from sl_cy.pipeline import infer


def main(out="."):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, observed = sl_cy.run_mock_simulation(30_000, seed=21, show_progress=False)
    cat = observed.rename(columns={"magnitude_observedA": "mA", "magnitude_observedB": "mB"}).drop(columns=["zl", "zs"])
    cat["xA"] = sl_cy.cosmology.kpc_to_arcsec(observed["xA"].to_numpy(), 0.3)
    cat["xB"] = sl_cy.cosmology.kpc_to_arcsec(observed["xB"].to_numpy(), 0.3)
    csv = out / "my_lenses.csv"
    cat.to_csv(csv, index=False, float_format="%.8g")
    print(f"catalogue: {len(cat)} lenses -> {csv}")

    res = infer(observed=csv, unit="arcsec", zl=0.3, zs=2.0, root=out, nwalkers=12, nsteps=60, seed=2,
                fixed={"mu_gamma": 1.0, "sigma_gamma": 0.2}, progress=False, save_plots=False)
    print(res.summary[["median", "lo68", "hi68"]].to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"convergence: {res.convergence['verdict']}")
    print(f"grids: {res.files['grids.h5']}; run folder: {res.run_dir}")
    return res


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
