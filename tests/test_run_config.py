"""RunConfig (the run's settings) and the one on-disk cache helper."""
import json

import numpy as np
import pytest

from sl_cy.cache import cache_path, load_or_build
from sl_cy.pipeline import RunConfig, derived_seed
from sl_cy.pipeline.config import prior_to_dict


def test_defaults_and_derived_seeds():
    c = RunConfig(seed=5)
    assert c.start == "map" and c.moves == "de"
    assert c.discard == c.nsteps // 10 and c.discard_auto                 # a MAP start needs little burn-in
    assert RunConfig(seed=5, start="ball").discard == c.nsteps // 4
    assert c.mcmc_seed == derived_seed(5, 2) and c.bank_seed == derived_seed(5, 1)
    assert c.start_seed == derived_seed(5, 3)
    assert isinstance(RunConfig().seed, int)            # fresh entropy, recorded


@pytest.mark.parametrize("kw, word", [(dict(nsteps=0), "nsteps"), (dict(nwalkers=1), "nwalkers"),
                                      (dict(nsteps=10, discard=10), "discard"), (dict(selection="mc"), "selection"),
                                      (dict(seed=-1), "seed"), (dict(bank_size=True), "bank_size"),
                                      (dict(initial_guess=[0.0, np.nan]), "initial_guess"), (dict(n_jobs=0), "n_jobs"),
                                      (dict(start="truth"), "start"), (dict(moves="hmc"), "moves"),
                                      (dict(nwalkers=4, initial_state=np.zeros((3, 6))), "initial_state")])
def test_bad_settings_name_the_field(kw, word):
    with pytest.raises(ValueError, match=word):
        RunConfig(**kw)


def test_start_moves_and_initial_state_round_trip_and_old_runs_read_as_ball_stretch():
    st = np.arange(24.0).reshape(4, 6) / 7
    c = RunConfig(seed=2, nwalkers=4, nsteps=50, start="ball", moves="stretch", initial_state=st)
    p = json.loads(json.dumps(c.to_params()))
    assert p["start"] == "ball" and p["moves"] == "stretch" and np.array_equal(p["initial_state"], st)
    back = RunConfig.from_params(p)
    assert back == c and back.moves == "stretch" and np.array_equal(back.initial_state, st)
    d = RunConfig(seed=2).to_params()
    assert (d["start"], d["moves"], d["initial_state"]) == ("map", "de", None)
    # a params.json written before these settings existed: its chain was a ball start with the stretch move
    for k in ("start", "moves", "initial_state", "start_seed"):
        d.pop(k)
    old = RunConfig.from_params(d)
    assert (old.start, old.moves, old.initial_state) == ("ball", "stretch", None)
    # extending a MAP-start run moves its default burn-in with nsteps // 10
    assert RunConfig(seed=2, nsteps=100).replace(nsteps=400).discard == 40


def test_params_round_trip_through_json():
    from sl_cy.likelihood import Gaussian, Uniform

    c = RunConfig(nwalkers=20, nsteps=400, seed=3, discard=50, use_selection=False, selection="bank", bank_size=5000,
                  prior={"alpha_sps": Gaussian(0.0, 0.1, lo=-0.5, hi=0.5), "mu_h": Uniform(12.5, 13.5)},
                  fixed={"beta_h": 2.0}, initial_guess=[0.0, 13.0], n_jobs=1, save_plots=False)
    p = json.loads(json.dumps(c.to_params()))
    back = RunConfig.from_params(p)
    assert back == c and back.discard == 50 and not back.discard_auto
    assert prior_to_dict(back.prior) == prior_to_dict(c.prior)
    assert back.fixed == {"beta_h": 2.0} and back.initial_guess == (0.0, 13.0)


def test_replace_moves_a_default_burn_in_only():
    auto = RunConfig(nsteps=400, seed=1, start="ball").replace(nsteps=800)
    assert auto.discard == 200
    explicit = RunConfig(nsteps=400, discard=30, seed=1).replace(nsteps=800)
    assert explicit.discard == 30
    with pytest.raises(ValueError, match="discard"):
        RunConfig(nsteps=400, discard=300, seed=1).replace(nsteps=200)


def test_user_normaliser_is_not_recreated():
    p = RunConfig(seed=1).to_params()
    p["selection"]["engine"] = "user"
    with pytest.raises(ValueError, match="user-supplied"):
        RunConfig.from_params(p)


def test_infer_refuses_unknown_setting(tmp_path):
    from sl_cy.pipeline import infer

    with pytest.raises(TypeError, match="nwalker"):
        infer("x", root=tmp_path, nwalker=10)
    with pytest.raises(TypeError, match="not both"):
        infer("x", root=tmp_path, eta=False, use_selection=False)


def test_run_folder_params_recreate_the_config(tmp_path):
    from sl_cy.pipeline import infer
    from sl_cy.runs import read_params
    from sl_cy.tables import generate_and_save_mock_tabulate

    sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=tmp_path, show_progress=False)
    cfg = RunConfig(nwalkers=14, nsteps=6, seed=1, selection="bank", bank_size=3000, n_jobs=1, save_plots=False)
    r = infer(sid, root=tmp_path, config=cfg, progress=False)
    p = read_params(r.run_dir)
    # the MAP start drew the walkers' positions and recorded them (rerun and resume start from them)
    assert np.shape(p["initial_state"]) == (14, 6) and len(p["map_start"]["map"]) == 6
    assert RunConfig.from_params(p) == cfg.replace(initial_state=p["initial_state"])


# --- the cache helper ----------------------------------------------------------------------------
def _rw(tmp):
    calls = []

    def build():
        calls.append(1)
        return "payload"

    return calls, dict(load=lambda p: p.read_text() if p.read_text() == "payload" else (_ for _ in ()).throw(
        ValueError("foreign")), build=build, save=lambda o, p: p.write_text(o))


def test_cache_rebuilds_a_torn_file(tmp_path):
    p = cache_path("thing", "0123456789abcdef0123", folder=tmp_path)
    assert p.name == "thing_0123456789abcdef.h5"
    calls, fns = _rw(tmp_path)
    assert load_or_build(p, **fns) == ("payload", False)
    assert load_or_build(p, **fns) == ("payload", True) and len(calls) == 1
    p.write_text("torn")
    assert load_or_build(p, **fns) == ("payload", False) and len(calls) == 2
    assert p.read_text() == "payload"


def test_cache_in_unwritable_folder_warns_and_still_builds(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")                       # the cache "folder" is a file: nothing can be written
    calls, fns = _rw(tmp_path)
    with pytest.warns(RuntimeWarning, match="could not cache"):
        assert load_or_build(blocker / "x.h5", **fns) == ("payload", False)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from sl_cy import _profiles
    from sl_cy.cache import cache_dir

    monkeypatch.setenv("SL_CY_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path and _profiles.cache_dir() == str(tmp_path)


def test_cache_is_built_once_by_concurrent_processes(tmp_path):
    """Two processes asking for the same missing file at once (pytest-xdist workers, jobs of one
    cluster allocation): one builds it, the other waits on its lock and loads it."""
    import subprocess
    import sys

    script = ("import sys, time; from pathlib import Path; from sl_cy.cache import load_or_build\n"
              "log = Path(sys.argv[2])\n"
              "def build():\n"
              "    with open(log, 'a') as f: f.write('built\\n')\n"
              "    time.sleep(1.5)\n"
              "    return 'payload'\n"
              "print(load_or_build(Path(sys.argv[1]), load=lambda p: p.read_text(), build=build,\n"
              "                    save=lambda o, p: p.write_text(o)))\n")
    target, log = tmp_path / "thing_0123.txt", tmp_path / "builds.log"
    # cwd: the installed sl_cy, not a source tree's (python -c puts the working folder first on sys.path)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), str(log)], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["('payload', False)", "('payload', True)"], outs
    assert log.read_text() == "built\n" and target.read_text() == "payload"
