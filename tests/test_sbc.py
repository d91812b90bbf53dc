"""Simulation-based calibration (sl_cy.sbc, `sl-cy validate`): the rank/coverage statistics on a
toy problem with a known posterior, a small real validation, and resuming after an interruption."""
import csv
import json

import numpy as np
import pytest

from sl_cy.sbc import prior_draws, rank_of_truth, sbc_prior, sbc_summary, validate


def _toy_replicates(n_rep, L, rng, *, shift=0.0, scale=1.0, n_obs=5):
    """Conjugate Gaussian: theta ~ N(0, 1), y_i ~ N(theta, 1); the exact posterior is
    N(sum(y) / (n + 1), 1 / (n + 1)). ``shift`` (in posterior sd) and ``scale`` distort it."""
    from scipy.stats import norm

    theta = rng.standard_normal(n_rep)
    y = theta[:, None] + rng.standard_normal((n_rep, n_obs))
    mu, sd = y.sum(axis=1) / (n_obs + 1), np.sqrt(1.0 / (n_obs + 1))
    m, s = mu + shift * sd, sd * scale
    draws = m[:, None] + s * rng.standard_normal((n_rep, L))
    ranks = np.array([rank_of_truth(draws[i][:, None], [theta[i]])[0] for i in range(n_rep)])[:, None]
    pit = norm.cdf(theta, m, s)[:, None]
    pulls = ((m - theta) / s)[:, None]
    return ranks, pit, pulls


def test_rank_statistic_is_uniform_for_the_exact_posterior():
    ranks, pit, pulls = _toy_replicates(2000, 19, np.random.default_rng(0))
    s = sbc_summary(ranks, 19, pit=pit, pulls=pulls, names=["theta"])
    st = s["parameters"]["theta"]
    assert s["calibrated"], s["verdict"]
    assert st["p_value"] > 0.01
    assert abs(st["coverage"]["0.68"] - 0.68) < 0.035 and abs(st["coverage"]["0.95"] - 0.95) < 0.015
    assert abs(st["pull_mean"]) < 0.06 and abs(st["pull_sd"] - 1) < 0.05
    assert sum(st["hist"]) == 2000 and s["band"][0] < 2000 / s["n_bins"] < s["band"][1]


@pytest.mark.parametrize("shift, scale, what", [(0.5, 1.0, "biased"), (0.0, 0.6, "overconfident"),
                                                (0.0, 1.6, "underconfident")])
def test_a_miscalibrated_posterior_is_detected(shift, scale, what):
    ranks, pit, pulls = _toy_replicates(1000, 19, np.random.default_rng(1), shift=shift, scale=scale)
    s = sbc_summary(ranks, 19, pit=pit, pulls=pulls, names=["theta"])
    assert not s["calibrated"] and s["verdict"].startswith("NOT calibrated"), what
    st = s["parameters"]["theta"]
    if what == "biased":
        assert st["pull_mean"] > 0.4
    elif what == "overconfident":
        assert st["coverage"]["0.68"] < 0.6 and st["pull_sd"] > 1.4
    else:
        assert st["coverage"]["0.68"] > 0.76 and st["pull_sd"] < 0.75


def test_rank_core_validates_its_input():
    assert rank_of_truth([[0.1, 5.0], [0.3, 1.0], [0.2, 3.0]], [0.25, 0.0]).tolist() == [2, 0]
    with pytest.raises(ValueError, match="ranks must lie in 0..19"):
        sbc_summary(np.array([[20]]), 19)
    with pytest.raises(ValueError, match=r"draws must be \(L, k\)"):
        rank_of_truth([1.0, 2.0], [1.0])


def test_prior_draws_follow_the_prior():
    from sl_cy.likelihood import Gaussian, Prior

    pr = Prior({"mu_h": Gaussian(13.0, 0.1, lo=12.9, hi=14.0), "beta_h": lambda x: -0.5 * ((x - 2) / 0.2) ** 2},
               fixed={"sigma_gamma": 0.2})
    e = prior_draws(pr, 20000, np.random.default_rng(2))
    assert (e[:, 1] >= 12.9).all() and (e[:, 5] == 0.2).all()
    # truncated normal mean: mu + sigma * phi(a) / (1 - Phi(a)) with a = -1
    from scipy.stats import norm

    assert abs(e[:, 1].mean() - (13.0 + 0.1 * norm.pdf(-1) / norm.sf(-1))) < 0.003
    assert abs(e[:, 2].mean() - 2.0) < 0.01 and abs(e[:, 2].std() - 0.2) < 0.01
    box = sbc_prior()
    e = prior_draws(box, 5000, np.random.default_rng(3))
    assert np.isfinite(box.logpdf(e)).all()


TINY = dict(n_galaxy=10_000, nwalkers=12, nsteps=16, discard=6, n_draws=4, seed=5, save_plots=True, progress=False)


def _rows(folder):
    with open(folder / "replicates.csv") as f:
        rows = [{k: v for k, v in r.items() if k not in ("wall_s", "cpu_s")} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: int(r["index"]))


def test_validate_runs_and_resumes_to_the_same_result(tmp_path):
    ref = validate(5, out=tmp_path / "ref", n_jobs=1, **TINY)
    s = ref.summary
    assert s["n_replicates"] + s["n_failed"] == 5 and s["n_replicates"] >= 4
    assert {p.name for p in ref.out.iterdir()} >= {"params.json", "metadata.json", "replicates.csv", "summary.json",
                                                   "ranks.png", "coverage.png"}
    assert json.loads((ref.out / "metadata.json").read_text())["status"] == "complete"
    assert list(ref.table.columns) == ["cov68", "cov95", "chi2_p", "pull_mean", "pull_sd"]
    for n, st in s["parameters"].items():
        assert sum(st["hist"]) == s["n_replicates"]

    # the first 3 replicates on a process pool, then a kill tears the last line mid-write ...
    part = tmp_path / "part"
    validate(3, out=part, n_jobs=2, **TINY)
    text = (part / "replicates.csv").read_text()
    (part / "replicates.csv").write_text(text[: len(text) - 25])
    # ... and the same command continues: the torn replicate and the 2 missing ones run again
    again = validate(5, out=part, n_jobs=1, **{k: v for k, v in TINY.items() if k != "seed"})
    assert _rows(part) == _rows(ref.out)
    summ = lambda d: {k: v for k, v in json.loads((d / "summary.json").read_text()).items()
                      if not k.startswith("replicate_")}
    assert summ(part) == summ(ref.out) and again.summary["verdict"] == s["verdict"]


def test_validate_refuses_another_configuration(tmp_path):
    validate(1, out=tmp_path / "v", n_jobs=1, **dict(TINY, save_plots=False))
    with pytest.raises(ValueError, match="nsteps"):
        validate(1, out=tmp_path / "v", n_jobs=1, **dict(TINY, save_plots=False, nsteps=30))
    with pytest.raises(ValueError, match="eta"):
        validate(1, out=tmp_path / "w", mock_kwargs=dict(eta=[0, 13, 2, 0.4, 1, 0.2]), n_jobs=1, **TINY)


def test_cli_validate_runs_and_continues(cli, tmp_path):
    args = ["validate", "--replicates", 2, "--n-galaxy", 10_000, "--nwalkers", 12, "--nsteps", 20, "--discard", 8,
            "--n-draws", 4, "--seed", 3, "--n-jobs", 1, "--no-progress", "--out", tmp_path / "v"]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "verdict:" in r.stdout and "cov68" in r.stdout
    r = cli(*args, "--m-lim", 26.0, cwd=tmp_path)
    assert r.returncode == 2 and "another validation configuration (forward_model" in r.stderr
    r = cli(*args[:-1], tmp_path / "v", cwd=tmp_path)
    assert r.returncode == 0 and "2 of 2 replicates already" in r.stdout


def test_cli_validate_sigterm_between_replicates_then_the_same_command_continues(tmp_path):
    import os
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    import sl_cy

    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(sl_cy.__file__).resolve().parents[1]))
    args = [sys.executable, "-m", "sl_cy", "validate", "--replicates", 4, "--n-galaxy", 10_000, "--nwalkers", 12,
            "--nsteps", 20, "--discard", 8, "--n-draws", 4, "--seed", 4, "--n-jobs", 1, "--no-progress", "--no-plots",
            "--out", tmp_path / "v"]
    args = [str(a) for a in args]
    p = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    csv_path = tmp_path / "v" / "replicates.csv"
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None:
        if csv_path.exists() and csv_path.read_text().count("\n") >= 2:      # header + one replicate
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "the same command continues" in err and "Traceback" not in err
    meta = json.loads((tmp_path / "v" / "metadata.json").read_text())
    n_done = csv_path.read_text().count("\n") - 1
    assert meta["status"] == "interrupted" and 1 <= n_done < 4
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n_done} of 4 replicates already" in r.stdout
    assert sorted(int(row["index"]) for row in _rows(tmp_path / "v")) == list(range(4))
    assert json.loads((tmp_path / "v" / "metadata.json").read_text())["status"] == "complete"


def test_validate_on_a_dask_cluster_gives_the_serial_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(TINY, save_plots=False)
    serial = validate(1, out=tmp_path / "serial", n_jobs=1, **kw)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        validate(1, out=tmp_path / "dask", executor=client, **kw)
    assert _rows(tmp_path / "dask") == _rows(serial.out)
