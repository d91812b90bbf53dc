"""ArviZ export (sl_cy.arviz_export): per-lens log-likelihood with the selection term, posterior.nc in
run folders, NetCDF round trip, PSIS-LOO, and the ArviZ columns of `sl-cy report`."""
import json
import warnings

import numpy as np
import pytest

from sl_cy.arviz_export import POSTERIOR_NC, _az, pointwise_log_likelihood, to_arviz, write_posterior_nc
from sl_cy.grids import load_grids_hdf5
from sl_cy.inference import run_mcmc
from sl_cy.likelihood import Posterior
from sl_cy.tables import generate_and_save_mock_tabulate

az = _az()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    sid, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=root, show_progress=False)
    return root, sid, load_grids_hdf5(gp)


def test_pointwise_terms_are_each_lens_log_likelihood_with_its_selection_share(sim):
    _, _, grids = sim
    post = Posterior(grids)
    theta = np.array([[0.0, 12.91, 2.04, 0.37, 1.0, 0.2], [0.05, 13.1, 1.8, 0.3, 0.9, 0.25]])
    pw = pointwise_log_likelihood(post, theta)
    assert pw.shape == (2, len(grids))
    np.testing.assert_allclose(pw.sum(axis=1), post.log_likelihood(theta), rtol=1e-12)
    for i in (0, 7, len(grids) - 1):              # a one-lens posterior: log p(d_i, det | eta) - 1 x log A(eta)
        one = Posterior([grids[i]], A=post.A)
        np.testing.assert_allclose(pw[:, i], one.log_likelihood(theta), rtol=1e-12)
    off = Posterior(grids, use_selection=False)
    np.testing.assert_allclose(pointwise_log_likelihood(off, theta).sum(axis=1), off.log_likelihood(theta), rtol=1e-12)


def test_sampler_export_round_trips_through_netcdf_and_loo_works(sim, tmp_path):
    _, _, grids = sim
    s = run_mcmc(grids, nwalkers=12, nsteps=40, progress=False, seed=1)
    idata = to_arviz(s, truth={"mu_h": 12.91}, max_draws=240)
    ch = s.get_chain()
    assert idata.posterior["mu_h"].shape == (12, 15)           # discard 10; thin 30 x 12 / 240 -> 2
    np.testing.assert_array_equal(idata.posterior["mu_h"].values, ch[10::2, :, 1].T)
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, s.get_log_prob()[10::2].T)
    ll = idata.log_likelihood["lenses"]
    assert ll.dims == ("chain", "draw", "lens") and ll.shape[2] == len(grids)
    np.testing.assert_allclose(ll.values.sum(axis=2), s.posterior.log_likelihood(ch[10::2].reshape(-1, 6)).reshape(-1, 12).T,
                               rtol=1e-12)
    assert idata.attrs["truth_mu_h"] == 12.91
    back = az.from_netcdf(str(write_posterior_nc(tmp_path, idata)))
    for g in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert back[g].equals(idata[g]), g
    np.testing.assert_array_equal(back.observed_data["xA"].values, [g.observed["xA"] for g in grids])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # Pareto-k warnings of a 40-step chain
        loo = az.loo(back, pointwise=True)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == len(grids)
    assert loo.pareto_k.shape == (len(grids),)


def test_run_folder_gets_posterior_nc_and_report_prints_arviz(sim, capsys):
    from sl_cy.pipeline import infer, report

    root, sid, _ = sim
    r = infer(sid, root=root, nwalkers=12, nsteps=30, seed=2, n_jobs=1, progress=False, save_plots=False)
    nc = r.run_dir / POSTERIOR_NC
    assert nc.exists() and r.files[POSTERIOR_NC] == nc
    idata = az.from_netcdf(str(nc))
    import h5py

    with h5py.File(r.run_dir / "chain.h5") as f:
        chain = f["mcmc/chain"][()]
    discard = json.loads((r.run_dir / "params.json").read_text())["discard"]
    assert discard == 30 // 10                        # the default burn-in after a MAP start
    np.testing.assert_array_equal(idata.posterior["beta_h"].values, chain[discard:, :, 2].T)
    assert idata.attrs["truth_beta_h"] == pytest.approx(2.04) and idata.attrs["sim_id"] == sid
    again = to_arviz(r.run_dir, rebuild=True)        # the posterior re-created from params.json and the tables
    np.testing.assert_array_equal(again.log_likelihood["lenses"].values, idata.log_likelihood["lenses"].values)
    rep = report(r.run_dir, save_plots=False, verbose=True)
    out = capsys.readouterr().out
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(rep.summary.columns) and "ess_bulk" in out and "r_hat" in out
    nc.unlink()                                       # a folder of an older sl_cy gets its export from report
    report(r.run_dir, save_plots=False)
    assert az.from_netcdf(str(nc)).log_likelihood["lenses"].equals(idata.log_likelihood["lenses"])


def test_report_without_the_tables_still_gives_the_arviz_columns(tmp_path):
    import shutil

    from sl_cy.pipeline import infer, report

    sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=4, root=tmp_path, show_progress=False)
    r = infer(sid, root=tmp_path, nwalkers=12, nsteps=12, seed=2, eta=False, n_jobs=1, progress=False,
              save_plots=False)
    (r.run_dir / POSTERIOR_NC).unlink()
    shutil.rmtree(tmp_path / "data")
    rep = report(r.run_dir, save_plots=False)
    assert {"ess_bulk", "r_hat"} <= set(rep.summary.columns) and not (r.run_dir / POSTERIOR_NC).exists()


def test_a_fresh_entropy_seed_is_written_to_posterior_nc(tmp_path):
    # `sl-cy run` without --seed records a 128-bit seed from fresh entropy; NetCDF/HDF5 attributes hold
    # no integer that large (the default run used to fail at its very end writing posterior.nc)
    from sl_cy.arviz_export import inference_data

    seed = 2 ** 127 + 12345
    rng = np.random.default_rng(0)
    idata = inference_data(rng.normal(size=(20, 4, 2)), rng.normal(size=(20, 4)), ["mu_h", "beta_h"], discard=5,
                           attrs=dict(seed=seed, run_id="r", small=7))
    back = az.from_netcdf(str(write_posterior_nc(tmp_path, idata)))
    assert back.attrs["seed"] == str(seed) and int(back.attrs["small"]) == 7
