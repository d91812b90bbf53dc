"""Kill a running ``sl-cy run`` at random moments (SIGKILL, also in the middle of writing a step),
then ``sl-cy resume`` it, and check that the final chain is bit for bit the chain of an
uninterrupted run with the same seed.

Usage::

    python benchmarks/kill_resume.py [--trials 10] [--nsteps 60] [--seed 11] [--keep DIR]

Each trial starts the same tiny run (20 000 galaxies, 14 walkers, a 3 000-galaxy selection bank;
the tables are made once by the reference run and re-used) in its own session and kills its whole
process group:

* ``random``: SIGKILL at a uniformly random time within the wall time of a run that re-uses the
  tables (start-up, table loading, sampling, summaries, run.h5);
* ``last-step``: SIGKILL as soon as the journal holds the last step (summaries, plots, run.h5);
* ``journal-torn``: SIGKILL after half of a step's journal record was written;
* ``h5-torn``: SIGKILL after the journal record and the chain row of a step were written but
  before emcee's backend wrote the log-probabilities, acceptance and random state;
* ``h5-unreadable``: as ``h5-torn``, then the first kilobyte of ``chain.h5`` is overwritten (what
  a torn HDF5 metadata write can leave: a file h5py cannot open).

The mid-write kills are injected by a start-up hook of the child process (``-c`` with a patched
:class:`sl_cy.chainstore.JournaledHDFBackend`); nothing in the package is test-only. A trial
whose kill came before the run folder existed re-runs the same command instead of resuming.
The table printed at the end has the moment of the kill, the steps kept, and whether the
resumed chain is identical.

The helpers are also used by ``tests/test_interrupt.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

RUN_ARGS = ["--n-galaxy", "20000", "--nwalkers", "14", "--selection", "bank", "--bank-size", "3000",
            "--no-progress", "--no-plots", "--n-jobs", "1"]

#: Child start-up hook: SL_CY_KILLHOOK="<mode>:<step>" kills the process (SIGKILL) in the middle of
#: writing step <step> of this process.
HOOK = r'''
import os, signal, sys
# Ctrl-C as from a terminal: a parent that ignores SIGINT (a pytest-xdist worker, a background job of a
# non-interactive shell) hands its SIG_IGN down to its children, and Python then raises no KeyboardInterrupt
signal.signal(signal.SIGINT, signal.default_int_handler)
spec = os.environ.get("SL_CY_KILLHOOK")
if spec:
    import h5py
    from sl_cy import chainstore
    mode, at = spec.split(":"); at = int(at)
    count = [0]
    real = chainstore.JournaledHDFBackend.save_step

    def save_step(self, state, accepted):
        count[0] += 1
        if count[0] != at:
            return real(self, state, accepted)
        if mode == "journal-torn":
            self._open_journal()
            rec = chainstore._make_record(self._dtype, self._count + 1, state.coords, state.log_prob,
                                          self._acc + accepted, state.random_state)
            os.write(self._fd, rec[: len(rec) // 2])
        else:                                   # h5-torn, h5-unreadable
            self._journal_step(state, accepted)
            f = h5py.File(self.filename, "a")
            g = f[self.name]
            g["chain"][int(g.attrs["iteration"]), :, :] = state.coords
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    chainstore.JournaledHDFBackend.save_step = save_step
from sl_cy.cli import main
sys.exit(main(sys.argv[1:]))
'''


def env_for(cache_dir=None) -> dict:
    """Environment of a child: this sl_cy importable, a shared cache dir."""
    import sl_cy

    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(sl_cy.__file__).resolve().parents[1]))
    if cache_dir is not None:
        env["SL_CY_CACHE_DIR"] = str(cache_dir)
    return env


def start(args, cwd, env, hook: str | None = None) -> subprocess.Popen:
    """Start ``sl-cy ARGS`` in its own session (so SIGINT reaches it and its whole group can be killed)."""
    env = dict(env)
    if hook:
        env["SL_CY_KILLHOOK"] = hook
    else:
        env.pop("SL_CY_KILLHOOK", None)
    return subprocess.Popen([sys.executable, "-c", HOOK, *map(str, args)], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    p = start(args, cwd, env)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def run_folder(root, run_id) -> pathlib.Path | None:
    hits = sorted(pathlib.Path(root).glob(f"inference/*/{run_id}"))
    return hits[0] if hits else None


def steps_in_journal(run_dir) -> int:
    """Finished steps of a running run (its journal's valid records; 0 when there is none yet)."""
    from sl_cy.chainstore import read_journal

    if run_dir is None:
        return 0
    j = pathlib.Path(run_dir) / "chain.journal"
    try:
        return read_journal(j).steps
    except (OSError, ValueError):
        return 0


def wait_for_step(proc, root, run_id, k: int, timeout=300, poll=0.002) -> int:
    """Wait until the run's journal holds >= k steps (or the process ended); returns the steps seen."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        n = steps_in_journal(run_folder(root, run_id))
        if n >= k or proc.poll() is not None:
            return n
        time.sleep(poll)
    raise TimeoutError(f"the run did not reach step {k} in {timeout} s")


def chain_arrays(run_dir) -> dict:
    """chain, log_prob, accepted of chain.h5 (up to its iteration) and the chain copy in run.h5."""
    import h5py

    run_dir = pathlib.Path(run_dir)
    with h5py.File(run_dir / "chain.h5", "r") as f:
        g = f["mcmc"]
        it = int(g.attrs["iteration"])
        out = dict(chain=g["chain"][:it], log_prob=g["log_prob"][:it], accepted=g["accepted"][()])
    with h5py.File(run_dir / "run.h5", "r") as f:
        out["run.h5 chain"] = f["mcmc/chain"][()]
    return out


def identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def metadata(run_dir) -> dict:
    try:
        return json.loads((pathlib.Path(run_dir) / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}


def kill_trial(root, env, seed, nsteps, run_id, mode="random", at=None, delay=None) -> dict:
    """One trial: start, SIGKILL (by ``mode``), resume (or re-run), compare later. Returns a row."""
    args = ["run", *RUN_ARGS, "--seed", seed, "--nsteps", nsteps, "--run-id", run_id]
    t0 = time.monotonic()
    if mode == "random":
        p = start(args, root, env)
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        moment = f"random, t = {delay:.2f} s"
    elif mode == "last-step":                 # as soon as the last step is in: summaries, plots, run.h5
        p = start(args, root, env)
        wait_for_step(p, root, run_id, nsteps)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        moment = "right after the last step"
    else:
        p = start(args, root, env, hook=f"{mode}:{at}")
        p.communicate()
        moment = f"{mode} at step {at}"
    killed = p.returncode == -signal.SIGKILL
    d = run_folder(root, run_id)
    before = steps_in_journal(d) if d is not None else None
    if mode == "h5-unreadable" and d is not None:
        with open(d / "chain.h5", "r+b") as f:
            f.write(os.urandom(1024))
    if not killed:
        where = "too late: the run had finished"
    elif d is None:
        where = "start-up (no run folder yet)"
    elif not before:
        where = "run folder made, no step finished"
    elif before < nsteps:
        where = "sampling"
    else:
        where = "after sampling (summaries, run.h5)"
    if d is not None:
        r = run(["resume", d, "--no-progress"], root, env)
        how = "resume"
    else:
        r = run(args, root, env)
        how = "re-run"
        d = run_folder(root, run_id)
    return dict(moment=moment, where=where, kept=before, how=how, rc=r.returncode, stderr=r.stderr, run_dir=d,
                seconds=time.monotonic() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--nsteps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--rng", type=int, default=2026, help="seed of the kill moments")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    a = ap.parse_args(argv)
    root = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="kill_resume_"))
    root.mkdir(parents=True, exist_ok=True)
    env = env_for()
    rng = random.Random(a.rng)
    t0 = time.monotonic()
    r = run(["run", *RUN_ARGS, "--seed", a.seed, "--nsteps", a.nsteps, "--run-id", "reference"], root, env)
    if r.returncode:
        print(r.stderr)
        return 1
    t_ref = time.monotonic() - t0
    t1 = time.monotonic()
    r = run(["run", *RUN_ARGS, "--seed", a.seed, "--nsteps", a.nsteps, "--run-id", "reference-again"], root, env)
    t_warm = time.monotonic() - t1
    ref = chain_arrays(run_folder(root, "reference"))
    same = r.returncode == 0 and identical(chain_arrays(run_folder(root, "reference-again")), ref)
    print(f"reference: {a.nsteps} steps, {t_ref:.1f} s with making the tables, {t_warm:.1f} s re-using them "
          f"(identical again: {same}); root {root}")
    modes = ["journal-torn", "h5-torn", "h5-unreadable", "last-step"]
    rows = []
    for i in range(a.trials):
        mode = modes[i] if i < len(modes) and a.trials >= 2 * len(modes) else "random"
        at = rng.randint(2, a.nsteps - 2)
        delay = rng.uniform(0.2, t_warm)
        row = kill_trial(root, env, a.seed, a.nsteps, f"trial{i:02d}", mode=mode, at=at, delay=delay)
        row["identical"] = (row["rc"] == 0 and row["run_dir"] is not None
                            and identical(chain_arrays(row["run_dir"]), ref))
        rows.append(row)
        print(f"  trial {i}: {row['moment']}: {row['where']}, kept {row['kept']}, {row['how']} rc={row['rc']}, "
              f"identical={row['identical']}", flush=True)
        if row["rc"]:
            print(row["stderr"])
    print()
    print("| # | moment of the kill | stage hit | steps kept | then | identical to the uninterrupted chain |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(rows):
        kept = "-" if row["kept"] is None else f"{row['kept']} / {a.nsteps}"
        print(f"| {i + 1} | {row['moment']} | {row['where']} | {kept} | {row['how']} | "
              f"{'yes' if row['identical'] else 'NO'} |")
    print(f"\n{sum(r['identical'] for r in rows)} of {len(rows)} identical; total {time.monotonic() - t0:.0f} s")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
