"""End-to-end pipeline: `sl-cy run/infer/report/rerun`, run folders, streamed posterior."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from sl_cy.grids import load_grids_hdf5
from sl_cy.io import read_attrs
from sl_cy.likelihood import Gaussian, Posterior, Prior
from sl_cy.pipeline import compute_posterior_from_file, infer, selection_bank_for
from sl_cy.tables import generate_and_save_mock_tabulate

TINY = ("--n-galaxy", 20000, "--nwalkers", 14, "--nsteps", 20, "--selection", "bank", "--bank-size", 5000, "--seed", 1,
        "--n-jobs", 1, "--no-progress")


def _run_folder(root):
    runs = sorted((root / "inference").glob("*/run_*"))
    return runs


def test_cli_run_report_rerun(cli, tmp_path):
    r = cli("run", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (d,) = _run_folder(tmp_path)
    for name in ("params.json", "metadata.json", "chain.h5", "run.h5", "summary.csv", "summary.json", "corner.png",
                 "traces.png", "log_prob.png"):
        assert (d / name).stat().st_size > 0, name
        assert str(d / name) in r.stdout or name in r.stdout
    sim = tmp_path / "data" / "tables" / d.parent.name
    assert (sim / "mock.h5").exists() and (sim / "grids.h5").exists()
    assert len(list((tmp_path / "data" / "banks").glob("bank_*.h5"))) == 1
    params = json.loads((d / "params.json").read_text())
    assert params["nwalkers"] == 14 and params["nsteps"] == 20 and params["seed"] == 1
    assert params["selection"]["bank_size"] == 5000 and params["eta"] is True
    assert params["prior"]["mu_h"] == {"type": "uniform", "lo": 12.0, "hi": 14.0}
    assert len(params["grids"]["logMh_axis"]) > 1 and params["truth"]["mu_h"] == pytest.approx(12.91)
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["status"] == "complete" and meta["finished_utc"] and meta["sim_id"] == d.parent.name
    assert meta["precomputed_table_version"]["grids_sha256"] == params["grids"]["sha256"]
    summ = pd.read_csv(d / "summary.csv", index_col=0)
    assert list(summ.index) == ["alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma", "sigma_gamma"]
    assert {"truth", "median", "lo68", "hi68", "lo95", "hi95", "tau"} <= set(summ.columns)
    sj = json.loads((d / "summary.json").read_text())
    assert "verdict" in sj["convergence"]
    with h5py.File(d / "run.h5", "r") as f:
        a = read_attrs(f)
        assert a["truth"]["mu_h"] == pytest.approx(12.91) and a["grids_path"].endswith("grids.h5")
        assert f["mcmc/chain"].shape == (20, 14, 6) and f["mcmc/log_prob"].shape == (20, 14)
        assert "observed" in f and "samples" in f and "exports/median" in f
    with h5py.File(d / "chain.h5", "r") as f:
        chain = f["mcmc/chain"][()]

    # report: re-creates summaries/plots from the stored chain
    (d / "summary.csv").unlink()
    (d / "corner.png").unlink()
    r = cli("report", d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (d / "summary.csv").exists() and (d / "corner.png").exists()
    pd.testing.assert_frame_equal(pd.read_csv(d / "summary.csv", index_col=0), summ)

    # rerun: the same chain, bank re-used from the cache
    r = cli("rerun", d, "--run-id", "again", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d2 = d.parent / "again"
    with h5py.File(d2 / "chain.h5", "r") as f:
        np.testing.assert_array_equal(f["mcmc/chain"][()], chain)
    assert json.loads((d2 / "metadata.json").read_text())["selection"]["bank_reused"] is True

    # a second `run` re-uses the tables (no re-simulation; 2 steps suffice for that)
    r = cli("run", *TINY, "--no-plots", "--nsteps", 2, "--run-id", "third", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "re-using mock" in r.stdout and "re-using grids" in r.stdout


def _catalogue(n=3):
    return pd.DataFrame(dict(xA=[6.62] * n, xB=[-3.07] * n, logRe=[0.9] * n, logM_star_sps_observed=[11.5] * n,
                             magnitude_observedA=[24.0] * n, magnitude_observedB=[24.8] * n))


@pytest.mark.parametrize("problem", ["missing", "nan", "unit"])
def test_cli_infer_bad_catalogue(cli, tmp_path, problem):
    cat = _catalogue()
    unit = "kpc"
    if problem == "missing":
        cat = cat.drop(columns=["magnitude_observedB"])
        expect = "magnitude_observedB"
    elif problem == "nan":
        cat.loc[1, "logRe"] = np.nan
        expect = "logRe"
    else:
        unit, expect = "parsec", "unit"
    cat.to_csv(tmp_path / "bad.csv", index=False)
    r = cli("infer", "--observed", "bad.csv", "--unit", unit, "--nwalkers", 14, "--nsteps", 5, "--no-progress",
            cwd=tmp_path)
    assert r.returncode != 0
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    if problem == "nan":
        assert "row 2" in r.stderr
    assert not (tmp_path / "inference").exists() and not (tmp_path / "data").exists()


def test_main_help(capsys):
    from sl_cy.main import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--n-galaxy", "--save-plots", "--no-eta", "--interact", "--bank-size"):
        assert opt in out


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    sid, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=root, show_progress=False)
    return root, sid, gp


def test_posterior_from_file_equals_in_memory(small_sim):
    root, _, gp = small_sim
    bank, _, _ = selection_bank_for(5000, 2, root=root)
    prior = Prior({"alpha_sps": Gaussian(0.0, 0.1)})
    eta = np.array([[0.0, 12.91, 2.04, 0.37, 1.0, 0.2], [0.05, 13.1, 1.8, 0.3, 0.9, 0.25],
                    [0.0, 15.0, 2.0, 0.4, 1.0, 0.2]])                  # last: outside the box
    post = Posterior(load_grids_hdf5(gp), A=bank, prior=prior)
    ref = post(eta)
    for block in (1, 7, 10_000):
        got = compute_posterior_from_file(eta, gp, A=bank, prior=prior, block=block)
        assert np.isneginf(got[2]) and np.isneginf(ref[2])
        np.testing.assert_allclose(got[:2], ref[:2], rtol=1e-10, atol=1e-10)
    assert compute_posterior_from_file(eta[0], gp, A=bank, prior=prior) == pytest.approx(ref[0], rel=1e-10)


def test_failed_run_leaves_no_folder(small_sim, monkeypatch):
    import sl_cy.inference

    root, sid, _ = small_sim

    def boom(*a, **k):
        raise RuntimeError("sampler died")

    monkeypatch.setattr(sl_cy.inference, "run_mcmc", boom)
    with pytest.raises(RuntimeError):
        infer(sid, root=root, nwalkers=14, nsteps=5, seed=1, eta=False, n_jobs=1, progress=False, run_id="dead")
    assert not (root / "inference" / sid / "dead").exists()


def test_infer_validation_before_writing(small_sim):
    root, sid, _ = small_sim
    with pytest.raises(ValueError, match="nwalkers"):
        infer(sid, root=root, nwalkers=4, nsteps=5, seed=1, eta=False, n_jobs=1, progress=False, run_id="x")
    with pytest.raises(ValueError, match="unknown eta"):
        infer(sid, root=root, nwalkers=14, nsteps=5, fixed={"bogus": 1.0}, eta=False, n_jobs=1, progress=False,
              run_id="x")
    assert not (root / "inference" / sid / "x").exists()


def test_quadrature_engine_plumbing_and_rerun(small_sim):
    """The default A(eta) engine (the forward model's quadrature table, built once and cached) is
    recorded and re-used by rerun, which gives the identical chain."""
    from sl_cy.forward import ForwardModel
    from sl_cy.pipeline import DEFAULT_SELECTION, rerun
    from sl_cy.selection import selection_for

    root, sid, _ = small_sim
    assert DEFAULT_SELECTION == "quadrature"
    r = infer(sid, root=root, nwalkers=14, nsteps=6, seed=3, n_jobs=1, progress=False, save_plots=False,
              run_id="quad")
    params = json.loads((r.run_dir / "params.json").read_text())
    sq = selection_for(ForwardModel())
    assert params["selection"]["engine"] == "quadrature" and params["selection"]["table_hash"] == sq.config_hash
    assert params["forward_model"] == ForwardModel().to_dict()
    # the default start: walkers drawn around the MAP (analytic gradients with the quadrature engine),
    # recorded in params.json and run.h5 before the first step
    assert params["start"] == "map" and params["moves"] == "de" and params["map_start"]["method"] == "L-BFGS-B"
    assert np.shape(params["initial_state"]) == (14, 6) and all(s_ > 0 for s_ in params["map_start"]["sd"])
    with h5py.File(r.run_dir / "run.h5", "r") as f:
        assert np.array_equal(read_attrs(f)["params"]["initial_state"], params["initial_state"])
    import sl_cy.inference as inf

    real, inf.map_start = inf.map_start, None            # a rerun starts from the recorded positions
    try:
        r2 = rerun(r.run_dir, run_id="quad2", progress=False)
    finally:
        inf.map_start = real
    assert json.loads((r2.run_dir / "params.json").read_text())["initial_state"] == params["initial_state"]
    with h5py.File(r.run_dir / "chain.h5", "r") as a, h5py.File(r2.run_dir / "chain.h5", "r") as b:
        np.testing.assert_array_equal(a["mcmc/chain"][()], b["mcmc/chain"][()])


def test_a_run_folder_recorded_before_start_and_moves_resumes_as_ball_and_stretch(small_sim):
    """A params.json without ``start``/``moves``/``initial_state`` (an older sl_cy) is resumed with
    the ball start and the stretch move it was made with: the identical chain."""
    from sl_cy.pipeline import resume

    root, sid, _ = small_sim
    kw = dict(root=root, nwalkers=14, seed=4, n_jobs=1, progress=False, save_plots=False, start="ball",
              moves="stretch")
    full = infer(sid, nsteps=7, run_id="legacy_full", **kw)
    part = infer(sid, nsteps=4, run_id="legacy_part", **kw)
    pf = part.run_dir / "params.json"
    p = json.loads(pf.read_text())
    for k in ("start", "moves", "initial_state", "start_seed"):
        p.pop(k)
    pf.write_text(json.dumps(p))
    resume(part.run_dir, nsteps=7, progress=False)
    with h5py.File(full.run_dir / "chain.h5", "r") as a, h5py.File(part.run_dir / "chain.h5", "r") as b:
        np.testing.assert_array_equal(a["mcmc/chain"][()], b["mcmc/chain"][()])


#: The one non-default forward model of this file (SerExp, sigma_star 0.2, m_lim 26.0): each forward
#: model needs its own selection-rate table (the likelihood's one-entry-per-galaxy factor), ~1 min to
#: build on first use, so the tests that need "another" forward model share this one.
OTHER_FM = dict(model="SerExp", sigma_star=0.2, m_lim=26.0)


def test_other_model_and_sigma_star_reach_numerator_and_A(tmp_path):
    """A SerExp mock with sigma_star = 0.2 and m_lim = 26: the grids, the likelihood kernel and the
    A(eta) engine all carry that forward model (no silent deVauc / 0.1 / 26.5 anywhere)."""
    from sl_cy.likelihood import LikelihoodKernel
    from sl_cy.selection import load_bank
    from sl_cy.tables import generate_and_save_mock_tabulate

    sid, mp, gp = generate_and_save_mock_tabulate(20_000, seed=5, root=tmp_path, show_progress=False,
                                                  model=OTHER_FM["model"], sigma_star=OTHER_FM["sigma_star"],
                                                  maximum_magnitude=OTHER_FM["m_lim"])
    r = infer(sid, root=tmp_path, nwalkers=14, nsteps=4, seed=3, n_jobs=1, progress=False, save_plots=False,
              selection="bank", bank_size=2000, verbose=False)
    params = json.loads((r.run_dir / "params.json").read_text())
    fm = params["forward_model"]
    assert fm["model"] == "SerExp" and fm["survey"]["sigma_star"] == 0.2 and fm["survey"]["m_lim"] == 26.0
    k = LikelihoodKernel(load_grids_hdf5(gp), selection=False)
    assert k.forward_model.model == "SerExp" and k._model[-2] == 0.2 and k.forward_model.survey.m_lim == 26.0
    bank = load_bank(params["selection"]["bank_file"])
    assert bank.forward_model.to_dict() == fm


def test_cli_run_takes_forward_model_options(tmp_path, cli):
    """`sl-cy run --eta ... --m-lim ... --model ... --sigma-star ...`: a non-default truth, survey and
    population model in one command (the forward model of the test above: its table is shared)."""
    r = cli("run", "--n-galaxy", 20000, "--nwalkers", 14, "--nsteps", 4, "--selection", "bank", "--bank-size", 2000,
            "--seed", 2, "--no-plots", "--no-progress", "--n-jobs", 1, "--eta", "0.1,13.0,2.0,0.3,1.2,0.2",
            "--m-lim", OTHER_FM["m_lim"], "--model", OTHER_FM["model"], "--sigma-star", OTHER_FM["sigma_star"],
            "--run-id", "fm", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    params = json.loads(next((tmp_path / "inference").glob("*/fm/params.json")).read_text())
    assert params["truth"]["mu_h"] == 13.0 and params["forward_model"]["survey"]["m_lim"] == 26.0
    assert params["forward_model"]["model"] == "SerExp" and params["forward_model"]["survey"]["sigma_star"] == 0.2
    bad = cli("run", "--eta", "1,2,3", "--no-progress", cwd=tmp_path)
    assert bad.returncode == 2 and "--eta must be 6" in bad.stderr


def test_unwritable_output_folder_is_reported_before_work(tmp_path, cli):
    """An output folder that cannot be written (here: its path runs through a file) ends at once
    with exit 2 and a message naming it; nothing is simulated."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    r = cli("run", "--n-galaxy", 20000, "--out", blocker / "sub", "--no-progress", cwd=tmp_path)
    assert r.returncode == 2
    assert "cannot write in the output folder" in r.stderr and "not_a_folder" in r.stderr
    assert "Traceback" not in r.stderr
