"""Stage 3 of an inference: MCMC into the run folder's crash-safe chain, then the finished folder.

:func:`sample_and_finish` runs :func:`sl_cy.inference.run_mcmc` into a
:class:`sl_cy.chainstore.JournaledHDFBackend`, writes the summaries, plots and ``run.h5`` and marks the
folder ``complete``; on any interruption the chain is made consistent at the last finished step
and the folder marked ``interrupted`` (:func:`sl_cy.pipeline.resume` continues it).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sl_cy._version import __version__
from sl_cy.pipeline.config import LEGACY_SETTINGS
from sl_cy.pipeline.summaries import CHAIN_FILE, RunResult, summarise

__all__ = ["Prepared", "sample_and_finish", "interrupt_reason"]


def interrupt_reason(exc: BaseException) -> str:
    """Why a run stopped, for metadata.json: ``"signal SIGTERM"``, ``"KeyboardInterrupt"``, ``"ValueError: ..."``."""
    if isinstance(exc, KeyboardInterrupt):
        msg = str(exc)
        return f"signal {msg}" if msg.startswith("SIG") else "KeyboardInterrupt"
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}"[:500] if msg else type(exc).__name__


@dataclass(kw_only=True)
class Prepared:
    """Everything an inference needs after validation: the posterior, params.json, the tables."""

    d: Path
    sim_id: str
    run_id: str
    started: str
    params: dict
    tables: dict
    post: object
    grids: list | None                 # None when the grids stay on dask workers (sl_cy.distributed)
    gpath: Path
    const: dict
    selection: dict
    A_call: object
    eta: bool


def _observed(prep: Prepared) -> pd.DataFrame:
    """The lenses' observed table: from the grids in memory, else read alone from ``grids.h5``."""
    if prep.grids is not None:
        return pd.DataFrame([g.observed for g in prep.grids])
    import h5py

    from sl_cy.io import read_dataframe

    with h5py.File(prep.gpath, "r") as f:
        return read_dataframe(f["observed"])


def _record_map_start(folder, params: dict, post, verbose: bool) -> None:
    """Draw the walkers' start around the MAP (:func:`sl_cy.inference.map_start`) and record it in
    ``params.json`` (``initial_state``, and ``map_start``: the MAP, its Laplace widths, the cost)
    before the first step, so that :func:`resume` and :func:`rerun` start from the same positions."""
    from sl_cy.inference import map_start

    ig = params.get("initial_guess")
    p0, info = map_start(post, params["nwalkers"], initial_guess=None if ig is None else np.asarray(ig),
                         seed=params["start_seed"])
    params["initial_state"] = p0.tolist()
    params["map_start"] = info
    folder.write_params(params)
    if verbose:
        sd = info["sd"] or [float("nan")] * len(info["map"])
        print(f"start: MAP in {info['seconds']:.1f} s ({info['nfev']} evaluations, {info['method']}): "
              + ", ".join(f"{n} {x:.4g} +- {s:.2g}" for n, x, s in zip(post.free_names, info["map"], sd)), flush=True)


def sample_and_finish(prep: Prepared, folder, *, resumed_from, t_start, progress, verbose) -> RunResult:
    """MCMC into the run folder's crash-safe chain, then summaries, plots, run.h5 and ``"complete"``.

    On any interruption or error the chain is made consistent at the last finished step and the
    folder marked ``"interrupted"`` (removed instead when an error struck before the first step
    of a new run: nothing was produced).
    """
    from sl_cy.chainstore import JournaledHDFBackend, recover_chain
    from sl_cy.inference import run_mcmc
    from sl_cy.runs import RUN_FILE, RunInterrupted, write_run_hdf5

    d, params, post, selection, A_call = folder.path, prep.params, prep.post, prep.selection, prep.A_call
    nsteps, nwalkers = params["nsteps"], params["nwalkers"]
    backend = None
    try:
        backend = JournaledHDFBackend(d / CHAIN_FILE, name="mcmc")
        if verbose:
            what = f"resuming at step {resumed_from} of {nsteps}" if resumed_from is not None else f"{nsteps} steps"
            print(f"MCMC: {nwalkers} walkers, {what}, over {post.free_names}, {post.n_lenses} lenses, "
                  f"selection {'on' if prep.eta else 'off'} -> {d / CHAIN_FILE}", flush=True)
        t0 = time.perf_counter()
        ig = params.get("initial_guess")
        if not resumed_from and params.get("initial_state") is None and params.get("start") == "map":
            _record_map_start(folder, params, post, verbose)
        st = params.get("initial_state")
        sampler = run_mcmc(post, nwalkers=nwalkers, nsteps=nsteps, initial_guess=None if ig is None else np.asarray(ig),
                           initial_state=None if st is None else np.asarray(st, float),
                           start=params.get("start") or LEGACY_SETTINGS["start"], moves=params.get("moves"),
                           backend=backend, resume=resumed_from is not None, progress=bool(progress),
                           seed=params["mcmc_seed"], nproc=params["n_jobs"])
        backend.close()
        t_mcmc = time.perf_counter() - t0
        t_sum = time.perf_counter()
        if verbose:
            print(f"MCMC (with the start) done in {t_mcmc:.1f} s", flush=True)
        table, conv, files = summarise(d, params, params["save_plots"])
        exports = {c: table[c].to_numpy() for c in table.columns}
        exports.update(names=list(table.index), verdict=conv["verdict"], converged=conv["converged"],
                       tau=np.atleast_1d(conv["tau"]), acceptance_mean=conv["acceptance_mean"],
                       mcmc_wall_time_s=t_mcmc)
        med = post.full_eta(table["median"].to_numpy())
        if prep.eta and selection.get("engine") == "bank":
            a, ess = A_call.evaluate(med, return_ess=True, warn=False)
            exports.update(A_at_median=a, A_ess_at_median=ess)
            selection.update(A_at_median=a, A_ess_at_median=ess)
        elif prep.eta and selection.get("engine") == "quadrature":
            a = float(np.asarray(A_call(med[None, :])).reshape(-1)[0])
            exports.update(A_at_median=a)
            selection.update(A_at_median=a)
        meta = dict(sim_id=prep.sim_id, run_id=prep.run_id, package_version=__version__, tables=prep.tables,
                    started_utc=folder.metadata.get("started_utc", prep.started))
        observed = _observed(prep)
        write_run_hdf5(d / RUN_FILE, metadata=meta, params=params, truth=prep.const["truth"],
                       samples=prep.const["lenses"], observed=observed, grids_path=params["grids"]["relative"],
                       chain=sampler.get_chain(), log_prob=sampler.get_log_prob(),
                       acceptance=sampler.acceptance_fraction, exports=exports)
        from sl_cy.arviz_export import POSTERIOR_NC, add_arviz_columns, run_inference_data, write_posterior_nc

        idata = run_inference_data(d, params, post, observed=observed)                  # chain, per-lens log L, truth: ArviZ
        files[POSTERIOR_NC] = write_posterior_nc(d, idata)
        table = add_arviz_columns(table, idata)
        backend.journal.unlink(missing_ok=True)          # chain.h5 is whole: the journal has served
        if verbose:
            print(f"summaries, plots, run.h5 and posterior.nc in {time.perf_counter() - t_sum:.1f} s", flush=True)
        folder.mark_complete(step=nsteps, nsteps=nsteps, wall_time_s=time.perf_counter() - t_start,
                             mcmc_wall_time_s=t_mcmc, convergence=conv["verdict"], selection=selection)
    except BaseException as exc:
        if backend is not None:
            backend.close()
        try:
            step = recover_chain(d / CHAIN_FILE).steps
        except Exception as err:                  # noqa: BLE001 - report, never mask the interruption
            step, reason_extra = None, f"; the chain could not be checked: {err}"
        else:
            reason_extra = ""
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not interrupted and step == 0 and resumed_from is None:
            folder.unlock()
            shutil.rmtree(d, ignore_errors=True)          # failed before producing anything
            raise
        reason = interrupt_reason(exc)
        try:
            folder.mark_interrupted(step=step, nsteps=nsteps, reason=reason + reason_extra)
        except Exception as err:                  # noqa: BLE001 - e.g. a full disk: it still resumes as "killed"
            reason_extra += f"; metadata.json could not be updated: {err}"
        msg = (f"run interrupted at step {step} of {nsteps} ({reason}{reason_extra}); its folder {d} is kept: "
               f"continue it with `sl-cy resume {d}` (Python: sl_cy.pipeline.resume)")
        if interrupted:
            raise RunInterrupted(msg, run_dir=d, step=step, nsteps=nsteps, reason=reason) from exc
        if hasattr(exc, "add_note"):
            exc.add_note(msg)
        raise
    finally:
        if backend is not None:
            backend.close()
        folder.unlock()
    files = {"params.json": d / "params.json", "metadata.json": d / "metadata.json", "chain.h5": d / CHAIN_FILE,
             "run.h5": d / RUN_FILE, **files, "grids.h5": prep.gpath}
    if selection.get("bank_file"):
        files["A(eta) bank"] = Path(selection["bank_file"])
    if selection.get("table_file"):
        files["A(eta) table"] = Path(selection["table_file"])
    res = RunResult(run_dir=d, sim_id=prep.sim_id, run_id=prep.run_id, summary=table, convergence=conv, files=files,
                    wall_time_s=time.perf_counter() - t_start)
    if verbose:
        res.print()
    return res
