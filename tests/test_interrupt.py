"""Interrupted work is never lost (issue 12, items 1-4): real processes, real HDF5 files.

* SIGTERM / SIGINT at a random MCMC step keep the run folder ("interrupted", one line on stderr,
  no traceback); ``sl-cy resume`` then gives the uninterrupted chain bit for bit;
* SIGKILL at a random step and in the middle of writing a step (a torn journal record, a torn
  and unreadable chain.h5) resume to the identical chain too;
* Ctrl-C (SIGINT to the process group) during the selection-table build (process pool) and during
  tabulation ends the process within 2 s, leaving no partial cache file;
* the recovery, lock and cache-hardening pieces in-process.

The processes share one small simulation (20 000 galaxies, 14 walkers, a 3 000-galaxy bank).
"""
import json
import os
import pathlib
import random
import shutil
import signal
import sys
import time

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import kill_resume as kr  # noqa: E402

NSTEPS = 40
SEED = 7


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A root with the tables and the reference (uninterrupted) run."""
    root = tmp_path_factory.mktemp("interrupt")
    env = kr.env_for()
    r = kr.run(["run", *kr.RUN_ARGS, "--seed", SEED, "--nsteps", NSTEPS, "--run-id", "reference"], root, env)
    assert r.returncode == 0, r.stderr
    ref_dir = kr.run_folder(root, "reference")
    return dict(root=root, env=env, ref=kr.chain_arrays(ref_dir), ref_dir=ref_dir)


def _start_run(shared, run_id, nsteps=NSTEPS):
    args = ["run", *kr.RUN_ARGS, "--seed", SEED, "--nsteps", nsteps, "--run-id", run_id]
    return kr.start(args, shared["root"], shared["env"])


def _resume(shared, d, *extra):
    r = kr.run(["resume", d, "--no-progress", *extra], shared["root"], shared["env"])
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_at_random_step_then_resume_gives_the_identical_chain(shared, sig):
    k = random.Random(sig).randint(3, 20)
    p = _start_run(shared, f"sig_{sig}")
    seen = kr.wait_for_step(p, shared["root"], f"sig_{sig}", k)
    assert p.poll() is None, "the run ended before it could be interrupted"
    os.killpg(p.pid, getattr(signal, sig))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + getattr(signal, sig)
    d = kr.run_folder(shared["root"], f"sig_{sig}")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err          # one line, no traceback
    assert f"interrupted by {sig}" in lines[0] and f"sl-cy resume {d.relative_to(shared['root'])}" in lines[0]
    meta = kr.metadata(d)
    assert meta["status"] == "interrupted" and meta["reason"] == f"signal {sig}" and meta["nsteps"] == NSTEPS
    assert seen <= meta["step"] < NSTEPS
    with h5py.File(d / "chain.h5", "r") as f:                       # the chain holds every finished step
        assert int(f["mcmc"].attrs["iteration"]) == meta["step"]
        np.testing.assert_array_equal(f["mcmc/chain"][:meta["step"]], shared["ref"]["chain"][:meta["step"]])
    assert not (d / "run.h5").exists()
    _resume(shared, d)
    assert kr.identical(kr.chain_arrays(d), shared["ref"])
    meta = kr.metadata(d)
    assert meta["status"] == "complete" and meta["resumes"][0]["from_step"] >= seen
    assert {"summary.csv", "summary.json", "run.h5"} <= {q.name for q in d.iterdir()}
    assert not (d / "chain.journal").exists()
    r = _resume(shared, d)                                            # nothing left to do
    assert "already complete" in r.stdout


@pytest.mark.parametrize("mode", ["random", "h5-unreadable"])
def test_sigkill_then_resume_gives_the_identical_chain(shared, mode):
    rng = random.Random(mode)
    run_id = f"kill_{mode}"
    if mode == "random":                           # SIGKILL to the process group at a random step
        p = _start_run(shared, run_id)
        kr.wait_for_step(p, shared["root"], run_id, rng.randint(3, 25))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    else:                                          # killed in the middle of writing a step, chain.h5 then unreadable
        p = kr.start(["run", *kr.RUN_ARGS, "--seed", SEED, "--nsteps", NSTEPS, "--run-id", run_id], shared["root"],
                     shared["env"], hook=f"h5-torn:{rng.randint(3, 25)}")
        p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    d = kr.run_folder(shared["root"], run_id)
    assert kr.metadata(d)["status"] == "running"          # killed: nobody could mark it
    if mode != "random":
        with open(d / "chain.h5", "r+b") as f:
            f.write(os.urandom(1024))
        with pytest.raises(OSError):
            h5py.File(d / "chain.h5", "r")
    r = _resume(shared, d)
    assert "killed" in r.stdout
    assert kr.identical(kr.chain_arrays(d), shared["ref"])
    assert kr.metadata(d)["status"] == "complete"


def test_resume_extends_the_total_and_refuses_a_changed_run(shared, tmp_path):
    root, env = shared["root"], shared["env"]
    d = shared["ref_dir"]
    ext = root / "inference" / d.parent.name / "extended"
    shutil.copytree(d, ext)
    params = json.loads((ext / "params.json").read_text())
    params["run_id"] = "extended"
    (ext / "params.json").write_text(json.dumps(params))
    _resume(shared, ext, "--nsteps", NSTEPS + 10)
    r = kr.run(["run", *kr.RUN_ARGS, "--seed", SEED, "--nsteps", NSTEPS + 10, "--run-id", "ref_long"], root, env)
    assert r.returncode == 0, r.stderr
    assert kr.identical(kr.chain_arrays(ext), kr.chain_arrays(kr.run_folder(root, "ref_long")))
    assert json.loads((ext / "params.json").read_text())["discard"] == (NSTEPS + 10) // 10   # MAP start
    # a changed seed cannot continue this chain: refused, nothing touched
    params = json.loads((ext / "params.json").read_text())
    params["seed"] += 1
    (ext / "params.json").write_text(json.dumps(params))
    r = kr.run(["resume", ext, "--nsteps", NSTEPS + 20, "--no-progress"], root, env)
    assert r.returncode == 2 and "mcmc_seed" in r.stderr and "Traceback" not in r.stderr
    assert kr.metadata(ext)["status"] == "complete"


# --------------------------------------------------------------------------------------------
# Ctrl-C in the long compiled stages
# --------------------------------------------------------------------------------------------
def _ctrl_c(p, ready, *, timeout=120, after=0.7):
    """Wait until ``ready(stderr so far)`` says the stage has begun, wait ``after`` s more, then SIGINT
    the process group; returns (seconds from the signal to the exit, stderr)."""
    import threading

    buf = []
    reader = threading.Thread(target=lambda: buf.extend(iter(lambda: p.stderr.read(1), "")), daemon=True)
    reader.start()
    t0 = time.monotonic()
    while not ready("".join(buf)):
        if p.poll() is not None:
            raise AssertionError(f"the command ended before the stage began: {''.join(buf)}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("the stage did not begin")
        time.sleep(0.02)
    time.sleep(after)
    assert p.poll() is None, "the stage ended before it could be interrupted"
    t1 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    dt = time.monotonic() - t1
    reader.join(timeout=5)
    p.stdout.close()
    return dt, "".join(buf)


def _fresh_cache(tmp_path):
    """An empty SL_CY_CACHE_DIR with the gNFW table copied in (so only the table under test is built)."""
    from sl_cy import _profiles

    cache = tmp_path / "cache"
    cache.mkdir()
    src = pathlib.Path(_profiles.table_cache_path())
    if src.exists():
        shutil.copy(src, cache / src.name)
    return cache


def test_ctrl_c_during_the_selection_table_build_with_a_pool(tmp_path):
    cache = _fresh_cache(tmp_path)
    env = kr.env_for(cache)
    p = kr.start(["aeta", "--axes", "alpha_sps:-0.1:0.1:0.2", "--out", tmp_path / "A.h5", "--n-jobs", "2"], tmp_path,
                 env)
    dt, err = _ctrl_c(p, lambda err: "selection table" in err)
    print(f"\nCtrl-C answered in {dt:.2f} s")
    assert p.returncode == 130 and dt < 2.0, (p.returncode, dt, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("sl-cy aeta: interrupted by SIGINT")
    assert not list(cache.glob("selection_table_*")) and not list(cache.glob(".*tmp"))   # no partial table


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_ctrl_c_during_tabulation(shared, tmp_path, n_jobs):
    sim = next((shared["root"] / "data" / "tables").iterdir())
    dst = tmp_path / "data" / "tables" / sim.name
    dst.mkdir(parents=True)
    shutil.copy(sim / "mock.h5", dst / "mock.h5")
    # ten times the default work per lens, so that the stage lasts long enough to be interrupted
    p = kr.start(["tabulate", "--sim-id", sim.name, "--out", tmp_path, "--gamma", "0:2:0.02", "--adaptive-step", "0.5",
                  "--cache-every", "8", "--n-jobs", n_jobs, "--no-progress"], tmp_path, shared["env"])
    dt, err = _ctrl_c(p, lambda err: (dst / "grid_cache" / "grid_cache.json").exists())
    print(f"\nCtrl-C answered in {dt:.2f} s")
    assert p.returncode == 130 and dt < 2.0, (p.returncode, dt, err)
    assert "Traceback" not in err and err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert not (dst / "grids.h5").exists() and not list((dst / "grid_cache").glob(".*tmp"))


# --------------------------------------------------------------------------------------------
# the pieces, in-process
# --------------------------------------------------------------------------------------------
def _sampled(path, nsteps, nwalkers=6, ndim=2, seed=3):
    import emcee

    from sl_cy.chainstore import JournaledHDFBackend

    b = JournaledHDFBackend(path)
    s = emcee.EnsembleSampler(nwalkers, ndim, lambda x: -0.5 * np.sum(x ** 2, axis=-1), vectorize=True, backend=b)
    if b.initialized and b.iteration:
        s.run_mcmc(None, nsteps - b.iteration, skip_initial_state_check=True)
    else:
        rs = np.random.RandomState(seed).get_state()
        s.run_mcmc(emcee.State(np.random.default_rng(seed).normal(size=(nwalkers, ndim)), random_state=rs), nsteps)
    b.close()
    with h5py.File(path, "r") as f:
        return f["mcmc/chain"][()], f["mcmc/accepted"][()]


def test_recover_chain_torn_and_damaged_files(tmp_path):
    from sl_cy.chainstore import ChainUnreadableError, journal_path, read_journal, recover_chain

    ref = _sampled(tmp_path / "ref.h5", 20)
    p = tmp_path / "chain.h5"
    _sampled(p, 9)
    j = journal_path(p)
    size = read_journal(j).records.dtype.itemsize
    data = j.read_bytes()
    j.write_bytes(data[:-size // 3])                          # torn last record
    with open(p, "r+b") as f:                                  # and an unreadable chain.h5
        f.write(b"\0" * 512)
    r = recover_chain(p)
    assert r.steps == 8 and any("torn" in a for a in r.actions) and any("rebuilt" in a for a in r.actions)
    assert recover_chain(p).actions == []                      # now consistent
    out = _sampled(p, 20)
    assert all(np.array_equal(a, b) for a, b in zip(out, ref))
    # a damaged record in the middle: the valid prefix is kept
    data = bytearray(j.read_bytes())
    data[24 + 5 * size + 100] ^= 0xFF
    j.write_bytes(bytes(data))
    assert recover_chain(p, dry_run=True).steps == 5
    # no journal: rebuilt from chain.h5; neither readable: a clear error
    j.unlink()
    assert recover_chain(p).steps == 20 and j.exists()
    j.write_bytes(b"garbage")
    p.write_bytes(b"garbage")
    with pytest.raises(ChainUnreadableError, match="cannot be read"):
        recover_chain(p)


def test_run_mcmc_resume_refuses_an_unreadable_backend(tmp_path):
    from sl_cy.inference import _stored_steps

    import emcee

    p = tmp_path / "chain.h5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot be read"):
        _stored_steps(emcee.backends.HDFBackend(str(p)))
    assert p.read_bytes() == b"not hdf5"


def test_run_folder_lock_and_states(tmp_path):
    from sl_cy.runs import RunFolder, RunLockedError, utc_now

    f = RunFolder.create(tmp_path / "run_x", dict(seed=1), sim_id="s", started_utc=utc_now())
    other = RunFolder(tmp_path / "run_x")
    with pytest.raises(RunLockedError):
        other.lock()
    assert other.state == "running"
    f.unlock()
    assert other.state == "killed"                 # says running, nobody holds the lock
    with pytest.raises(FileExistsError):
        RunFolder.create(tmp_path / "run_x", {}, sim_id="s", started_utc=utc_now())
    (tmp_path / "run_y").mkdir()                   # the empty remains of a killed creation are re-used
    RunFolder.create(tmp_path / "run_y", dict(seed=2), sim_id="s", started_utc=utc_now()).unlock()


def test_tabulation_cache_survives_torn_chunks_and_manifest(tmp_path):
    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.mock import simulate_mock

    obs = simulate_mock(8000, seed=1, show_progress=False).observed.iloc[:6]
    cache = tmp_path / "gc"
    a = tabulate_likelihood_grids(obs, cache_every=2, cache_dir=cache)
    (cache / "chunk_000001.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)   # torn chunk
    (cache / "grid_cache.json").write_text('{"key": "ab')                          # torn manifest
    b = tabulate_likelihood_grids(obs, cache_every=2, cache_dir=cache)
    assert all(x.equals(y) for x, y in zip(a, b))


def test_selection_table_cache_ignores_a_torn_file(tmp_path):
    from sl_cy.selection import build_selection_table

    axes = dict(logM_star=(10.5, 12.5, 0.5), logRe=(0.0, 1.6, 0.8), logM_halo=(11.0, 15.0, 1.0),
                gamma_in=(0.0, 2.0, 1.0))
    a = build_selection_table(axes=axes, cache_dir=tmp_path)
    path = a.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])            # torn
    b = build_selection_table(axes=axes, cache_dir=tmp_path)
    assert np.array_equal(a.T, b.T) and b.path == path
    with h5py.File(path, "r") as f:                                               # replaced by a whole file
        assert f["T"].shape == a.T.shape


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_error_or_interrupt_after_sampling_started_keeps_the_folder(shared, monkeypatch, exc):
    """In-process: an exception at step 6 keeps the folder ("interrupted", the reason recorded, a note
    on the exception; a KeyboardInterrupt becomes RunInterrupted); resume gives the identical chain."""
    from sl_cy import chainstore
    from sl_cy.pipeline import infer, resume
    from sl_cy.runs import RunInterrupted

    real = chainstore.JournaledHDFBackend.save_step
    calls = []

    def save_step(self, state, accepted):
        calls.append(1)
        if len(calls) == 7:
            raise exc("boom")
        return real(self, state, accepted)

    monkeypatch.setattr(chainstore.JournaledHDFBackend, "save_step", save_step)
    sid = shared["ref_dir"].parent.name
    kw = dict(root=shared["root"], nwalkers=14, nsteps=NSTEPS, seed=SEED, selection="bank", bank_size=3000, n_jobs=1,
              progress=False, save_plots=False, run_id=f"exc_{exc.__name__}")
    with pytest.raises(RunInterrupted if exc is KeyboardInterrupt else exc) as info:
        infer(sid, **kw)
    d = shared["root"] / "inference" / sid / kw["run_id"]
    meta = kr.metadata(d)
    assert meta["status"] == "interrupted" and meta["step"] == 6 and meta["nsteps"] == NSTEPS
    if exc is KeyboardInterrupt:
        assert info.value.step == 6 and info.value.run_dir == d and meta["reason"] == "KeyboardInterrupt"
    else:
        assert meta["reason"] == "RuntimeError: boom" and any("sl-cy resume" in n for n in info.value.__notes__)
    monkeypatch.undo()
    resume(d, progress=False, nsteps=NSTEPS)
    a, b = kr.chain_arrays(d), shared["ref"]
    assert all(np.array_equal(a[k], b[k]) for k in ("chain", "log_prob", "accepted"))
    assert kr.metadata(d)["status"] == "complete"
