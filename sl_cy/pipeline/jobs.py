"""The jobs on a run folder: :func:`infer` (a new run), :func:`resume`, :func:`rerun`, :func:`report`.

:func:`infer` composes the stages -- the grids (:mod:`sl_cy.pipeline.inputs`), the normaliser
(:mod:`sl_cy.pipeline.normaliser`), sampling (:mod:`sl_cy.pipeline.sampling`) and the summaries
(:mod:`sl_cy.pipeline.summaries`) -- around one validated :class:`sl_cy.pipeline.RunConfig`;
:func:`resume` and :func:`rerun` re-create that configuration from ``params.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sl_cy._version import __version__
from sl_cy.pipeline.config import LEGACY_SETTINGS, RUN_KIND, RunConfig, check_pos_int, prior_to_dict
from sl_cy.pipeline.inputs import catalogue_tables, check_writable, file_sha256, grids_attrs, sim_constants
from sl_cy.pipeline.normaliser import normaliser_for
from sl_cy.pipeline.sampling import Prepared, sample_and_finish
from sl_cy.pipeline.summaries import CHAIN_FILE, RunResult, summarise

__all__ = ["infer", "report", "rerun", "resume", "run_posterior"]

#: Keywords of :func:`infer` that are :class:`RunConfig` settings (``eta`` is the seed's name of
#: ``use_selection``, accepted as an alias).
_SETTINGS = frozenset(RunConfig.__dataclass_fields__) - {"discard_auto"}


def _config(config, settings: dict) -> RunConfig:
    """``config`` (or the defaults) with the keyword ``settings`` applied; TypeError for unknown ones."""
    settings = dict(settings)
    if "eta" in settings or "use_selection" in settings:
        from sl_cy.likelihood import use_selection_flag

        settings["use_selection"] = use_selection_flag(settings.pop("use_selection", None), eta=settings.pop("eta", None))
    bad = sorted(set(settings) - _SETTINGS)
    if bad:
        raise TypeError(f"infer() got unexpected keyword argument(s) {', '.join(map(repr, bad))}; the run settings "
                        f"are {', '.join(sorted(_SETTINGS))}")
    if config is None:
        return RunConfig(**settings)
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a sl_cy.pipeline.RunConfig, got {type(config).__name__}")
    return config.replace(**settings) if settings else config


def infer(sim_id=None, *, observed=None, unit="kpc", root=".", out=None, config=None, A=None, forward_model=None,
          zl=None, zs=None, logMh_grid=None, gamma_grid=None, run_id=None, progress=True, verbose=False, expect=None,
          extra_params=None, client=None, **settings) -> RunResult:
    """Infer eta from the grids of a simulation (or a user catalogue) into a reproducible run folder.

    Parameters
    ----------
    sim_id : str, optional
        Simulation folder ``<root>/data/tables/<sim_id>`` holding ``grids.h5`` (and ``mock.h5`` for a
        mock: then the truth is known). With ``observed`` it names the folder of the catalogue's
        grids (default ``obs_<hash8>`` of the catalogue's sha256, unit and redshifts).
    observed : str or Path, optional
        A CSV/HDF5 lens catalogue (:func:`sl_cy.catalogue.read_catalogue`): validated, then its
        grids are tabulated (or reused when the same file was tabulated before) FIRST; any bad
        column or value raises ValueError naming column and row, before anything is written.
    unit : {"kpc", "arcsec"}
        Unit of the catalogue's image positions.
    root : str or Path
        Working folder of the tables (``data/``) and, unless ``out`` is given, of the run.
    out : str or Path, optional
        Root folder of the run folder (default ``root``).
    config : RunConfig, optional
        The run's settings (walkers, steps, seed, burn-in, selection engine, prior, fixed,
        start, workers, plots; see :class:`sl_cy.pipeline.RunConfig`). Default ``RunConfig()``.
    **settings
        Any :class:`RunConfig` field as a keyword (``nwalkers=32, nsteps=2000, seed=1,
        use_selection=False, selection="bank", prior=..., fixed=...``), applied on top of
        ``config``; ``eta=`` is accepted for ``use_selection`` (the seed's ``--no-eta``). An unknown
        keyword raises TypeError naming it.
    A : callable, optional
        Your own A(eta_batch) (recorded as engine ``"user"``); default the engine of
        ``config.selection``: the deterministic quadrature table of
        :func:`sl_cy.selection.build_selection_table` (built once, ~20 s, cached in
        ``$SL_CY_CACHE_DIR`` or ``~/.cache/sl_cy`` by its configuration hash; no Monte-Carlo noise
        for the sampler to chase), or a :class:`sl_cy.selection.SelectionBank` of ``bank_size``
        galaxies cached under ``<root>/data/banks/`` (its noise pulls a 6-D chain, see the README).
    forward_model : ForwardModel, optional
        Of a catalogue (a simulation's grids carry theirs).
    progress : bool
    run_id : str, optional
        Default :func:`sl_cy.runs.new_run_id` (UTC time); an existing folder is refused.
    zl, zs : float
        Redshifts of a catalogue without zl/zs columns.
    logMh_grid, gamma_grid : array, optional
        Grid axes for a catalogue (default :data:`sl_cy.grids.DEFAULT_LOGMH_GRID`,
        :data:`sl_cy.grids.DEFAULT_GAMMA_GRID`).
    expect : dict, optional
        ``{"grids_key": ..., "catalogue_sha256": ...}``: refuse to run when the tables differ
        (used by :func:`rerun`).
    extra_params : dict, optional
        Stored in ``params.json`` (e.g. the pipeline's mock settings).
    verbose : bool
        Print progress messages and where the artefacts went.
    client : distributed.Client, optional
        Evaluate the likelihood in lens shards on this dask cluster (:mod:`sl_cy.distributed`;
        each worker reads its shard of ``grids.h5`` itself); the shards are released at the end.

    Returns
    -------
    RunResult

    Raises
    ------
    sl_cy.runs.RunInterrupted
        On Ctrl-C or SIGTERM (turned into KeyboardInterrupt by the caller, e.g. the CLI) once the
        run folder exists: the folder is kept, ``metadata.json`` says ``"status": "interrupted"``
        with the step reached, and :func:`resume` continues it to the identical chain. An
        exception after sampling has started keeps the folder the same way (the exception
        propagates with a note saying so); a failure before (validation, tables) leaves no folder.

    Performance
    -----------
    Per MCMC step ~ nwalkers x (n_lens x ~10 us + bank size x ~10 ns) on two idle cores
    (430 lenses, 16 walkers, 1e5 bank: ~0.08 s/step; ~0.12 s when another job holds a core).

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> sorted(p.name for p in r.run_dir.iterdir())
    ['chain.h5', 'metadata.json', 'params.json', 'posterior.nc', 'run.h5', 'summary.csv', 'summary.json']
    """
    from sl_cy.runs import RunFolder

    t_start = time.perf_counter()
    cfg = _config(config, settings)
    prep = prepare(sim_id, cfg, observed=observed, unit=unit, root=root, out=out, A=A, forward_model=forward_model,
                   zl=zl, zs=zs, logMh_grid=logMh_grid, gamma_grid=gamma_grid, run_id=run_id, progress=progress,
                   verbose=verbose, expect=expect, extra_params=extra_params, client=client)
    if verbose:
        print(f"grids and A(eta) ready in {time.perf_counter() - t_start:.1f} s", flush=True)
    try:
        folder = RunFolder.create(prep.d, prep.params, sim_id=prep.sim_id, started_utc=prep.started,
                                  tables=prep.tables, run_id=prep.run_id, step=0, nsteps=cfg.nsteps)
        return sample_and_finish(prep, folder, resumed_from=None, t_start=t_start, progress=progress, verbose=verbose)
    finally:
        if client is not None:
            prep.post.kernel.close()              # free the workers' shards


def _locate_grids(sim_id, *, observed, unit, zl, zs, root, mh_axis, g_axis, n_jobs, progress, forward_model):
    """The grids of a simulation (must exist) or of a catalogue (validated, tabulated in memory)."""
    from sl_cy.tables import GRIDS_FILE, sim_dir

    if observed is not None:
        return catalogue_tables(observed, unit=unit, zl=zl, zs=zs, root=root, sim_id=sim_id, logMh_grid=mh_axis,
                                gamma_grid=g_axis, n_jobs=n_jobs, progress=progress, forward_model=forward_model)
    if not sim_id:
        raise ValueError("give a sim_id (tables under data/tables/<sim_id>/) or an observed catalogue")
    gpath = sim_dir(sim_id, root) / GRIDS_FILE
    if not gpath.exists():
        raise FileNotFoundError(f"no grids at {gpath}; run `sl-cy simulate` and `sl-cy tabulate --sim-id "
                                f"{sim_id}` (or `sl-cy run`) first")
    return sim_id, gpath, None, None, None


def _check_walkers(cfg: RunConfig, kernel) -> None:
    """nwalkers >= 2 x free parameters (mu_gamma, sigma_gamma are fixed for a one-node gamma grid)."""
    fixed = dict(cfg.fixed) if kernel.use_gamma else {"mu_gamma": 1.0, "sigma_gamma": 0.2, **cfg.fixed}
    n_free = len(cfg.prior.with_fixed(fixed).free_names)
    if cfg.nwalkers < 2 * n_free:
        raise ValueError(f"nwalkers must be >= 2 x free parameters = {2 * n_free}, got {cfg.nwalkers}")


def prepare(sim_id, cfg: RunConfig, *, observed=None, unit="kpc", root=".", out=None, A=None, forward_model=None,
            zl=None, zs=None, logMh_grid=None, gamma_grid=None, run_id=None, progress=True, verbose=False,
            expect=None, extra_params=None, resume_dir=None, client=None) -> Prepared:
    """Validate the inputs, load or build the tables and A(eta), and compose params.json (nothing of
    the run folder is written; a catalogue's grids are, after every check). See :func:`infer`; with a
    dask ``client`` the grids stay on the workers (:class:`sl_cy.distributed.ShardedKernel`)."""
    from sl_cy.distributed import LensShard, ShardedKernel
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, save_grids_hdf5
    from sl_cy.likelihood import LikelihoodKernel, Posterior, _check_redshifts
    from sl_cy.runs import RunFolder, new_run_id, run_dir, utc_now

    started = utc_now()
    if unit not in ("kpc", "arcsec"):
        raise ValueError(f"unit must be 'kpc' or 'arcsec', got {unit!r}")
    mh_axis = np.asarray(DEFAULT_LOGMH_GRID if logMh_grid is None else logMh_grid, float)
    g_axis = np.asarray(DEFAULT_GAMMA_GRID if gamma_grid is None else gamma_grid, float)
    root = Path(root)
    out_root = Path(out) if out is not None else root
    check_writable(root)
    check_writable(out_root)
    run_id = run_id or new_run_id()
    sim_id, gpath, new_grids, catalogue, new_attrs = _locate_grids(
        sim_id, observed=observed, unit=unit, zl=zl, zs=zs, root=root, mh_axis=mh_axis, g_axis=g_axis,
        n_jobs=cfg.n_jobs, progress=bool(progress), forward_model=forward_model)
    d = run_dir(sim_id, run_id, out_root)
    if resume_dir is None and RunFolder.taken(d):
        raise FileExistsError(f"run folder {d} already exists")
    if resume_dir is not None and d.resolve() != Path(resume_dir).resolve():
        raise ValueError(f"the recorded sim_id/run_id give {d}, not the folder {resume_dir} being resumed")
    if expect and catalogue and expect.get("catalogue_sha256") not in (None, catalogue["sha256"]):
        raise ValueError(f"catalogue {catalogue['path']} changed since the run (sha256 differs)")
    grids = new_grids                             # a catalogue's, in memory; a simulation's stay in grids.h5:
    if grids is not None:
        kernel = LikelihoodKernel(grids, selection=cfg.use_selection, n_threads=cfg.n_jobs)   # validates the lenses
    elif client is not None:                      # each dask worker reads its shard (the client loads no grid)
        kernel = ShardedKernel(gpath, client, selection=cfg.use_selection)
    else:                                         # read and compacted block by block (~32 kB per lens held)
        kernel = LensShard(gpath, selection=cfg.use_selection, n_threads=cfg.n_jobs)
    if cfg.use_selection:
        _check_redshifts(kernel)                  # before any file is written
    _check_walkers(cfg, kernel)
    # ---- tables (a catalogue's grids are written only now, after all checks) ----------------
    if new_grids is not None:
        gpath.parent.mkdir(parents=True, exist_ok=True)
        save_grids_hdf5(gpath, new_grids, attrs=new_attrs)
        if client is not None:
            kernel = ShardedKernel(gpath, client, selection=cfg.use_selection)
    gattrs = grids_attrs(gpath)
    if expect and expect.get("grids_key") not in (None, gattrs.get("config", {}).get("key")):
        raise ValueError(f"{gpath} was re-tabulated since the run (grids key differs); cannot reproduce it")
    const = sim_constants(gpath.parent)
    fm = kernel.forward_model
    A_call, selection = normaliser_for(fm, cfg, A=A, root=root, progress=progress, verbose=verbose,
                                       n_lenses=kernel.n_lenses)
    post = Posterior(kernel, A=A_call, prior=cfg.prior, fixed=cfg.fixed, use_selection=cfg.use_selection)
    grids_sha = file_sha256(gpath)
    gcfg = gattrs.get("config", {})
    params = dict(
        kind=RUN_KIND, command="infer", sim_id=str(sim_id), run_id=str(run_id), root=str(root.resolve()),
        out=str(out_root.resolve()), source="catalogue" if catalogue else ("mock" if const["truth"] else "tables"),
        catalogue=catalogue, **cfg.to_params())
    params.update(
        selection=selection, prior=prior_to_dict(post.prior), fixed=dict(post.prior.fixed),
        free_names=list(post.free_names), model=fm.model, forward_model=fm.to_dict(),
        grids=dict(file=str(gpath.resolve()), relative=str(Path("data", "tables", sim_id, gpath.name)),
                   sha256=grids_sha, key=gcfg.get("key"), n_lenses=kernel.n_lenses, logMh_axis=gattrs["_logMh_axis"],
                   gamma_axis=gattrs["_gamma_axis"], quadrature=gcfg.get("quadrature"),
                   adaptive_step=gcfg.get("adaptive_step")),
        truth=const["truth"], package_version=__version__, **dict(extra_params or {}))
    tables = dict(grids_file=str(gpath.resolve()), grids_sha256=grids_sha, grids_key=gcfg.get("key"),
                  mock_config_hash=const["mock_config_hash"], bank_hash=selection.get("bank_hash"),
                  selection_table_hash=selection.get("table_hash"),
                  catalogue_sha256=catalogue["sha256"] if catalogue else None)
    return Prepared(d=d, sim_id=str(sim_id), run_id=str(run_id), started=started, params=params, tables=tables,
                    post=post, grids=grids, gpath=gpath, const=const, selection=selection, A_call=A_call,
                    eta=cfg.use_selection)


def _read_run(run_path):
    from sl_cy.runs import read_params

    d = Path(run_path)
    params = read_params(d)
    if params.get("kind") != RUN_KIND:
        raise ValueError(f"{d}/params.json is not an sl_cy run (kind {params.get('kind')!r})")
    return d, params


def report(run_path, save_plots: bool = True, verbose: bool = False) -> RunResult:
    """Re-create summary.csv, summary.json and the plots of a run folder from its stored chain.

    Parameters
    ----------
    run_path : str or Path
        ``inference/<sim_id>/<run_id>``.
    save_plots : bool
        Also redraw corner.png, traces.png and log_prob.png.
    verbose : bool
        Print the summary and the files.

    Returns
    -------
    RunResult
        Its ``summary`` has ArviZ's ``ess_bulk``, ``ess_tail`` and ``r_hat`` beside the package's columns.

    Performance
    -----------
    Seconds (reading the chain, autocorrelation times, plots); nothing is re-sampled. A folder
    without ``posterior.nc`` (an older sl_cy) gets it, which computes the per-lens log-likelihood
    of up to 2000 draws (n_lens x 2000 x ~20 us).

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, eta=False, n_jobs=1, progress=False,
    ...           save_plots=False)
    >>> report(r.run_dir, save_plots=False).summary.shape[0]
    6
    """
    from sl_cy.arviz_export import POSTERIOR_NC, add_arviz_columns, run_inference_data, to_arviz, write_posterior_nc

    t0 = time.perf_counter()
    d, params = _read_run(run_path)
    table, conv, files = summarise(d, params, save_plots)
    if (d / POSTERIOR_NC).exists():
        idata = to_arviz(d)
        files[POSTERIOR_NC] = d / POSTERIOR_NC
    else:                                        # a folder of an older sl_cy (or an unfinished run): export it now
        try:
            post = run_posterior(d)
        except (FileNotFoundError, ValueError) as exc:      # tables gone or changed: the chain alone
            post = None
            if verbose:
                print(f"posterior.nc not written (the per-lens log-likelihood needs the run's posterior: "
                      f"{' '.join(str(exc).split())})")
        idata = run_inference_data(d, params, post)
        if post is not None:
            files[POSTERIOR_NC] = write_posterior_nc(d, idata)
    table = add_arviz_columns(table, idata)
    res = RunResult(run_dir=d, sim_id=params["sim_id"], run_id=params["run_id"], summary=table, convergence=conv,
                    files=files, wall_time_s=time.perf_counter() - t0)
    if verbose:
        res.print()
    return res


def run_posterior(run_path):
    """The :class:`sl_cy.likelihood.Posterior` a run folder sampled, re-created from its ``params.json``
    and its tables (checked against the recorded hashes, as :func:`resume` does).

    Parameters
    ----------
    run_path : str or Path
        ``<root>/inference/<sim_id>/<run_id>``.

    Returns
    -------
    Posterior

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, eta=False, n_jobs=1, progress=False, save_plots=False)
    >>> run_posterior(r.run_dir).free_names == tuple(r.summary.index)
    True
    """
    d, p = _read_run(run_path)
    d = d.resolve()
    prep = prepare(p["sim_id"], RunConfig.from_params(p), out=d.parents[2], run_id=d.name, progress=False,
                   resume_dir=d, **_tables_kwargs(p, _tables_root(d, p)))
    why = _chain_mismatch(p, prep.params)
    if why is not None:
        raise ValueError(f"the tables or settings of {d} changed since the run ({why}): its posterior cannot be re-created")
    return prep.post


def rerun(run_path, *, out=None, run_id=None, progress: bool = True, n_jobs=None, verbose: bool = False,
          client=None) -> RunResult:
    """Run an inference again from its ``params.json``; the same seed gives the identical chain.

    Parameters
    ----------
    run_path : str or Path
        ``<root>/inference/<sim_id>/<run_id>`` of the run to reproduce; the tables are read from
        ``<root>/data/`` (the grids key and catalogue sha256 must match the recorded ones).
    out : str or Path, optional
        Root folder of the new run folder (default the same ``<root>``; the new run gets a new
        run_id, ``inference/<sim_id>/<new run_id>``).
    run_id : str, optional
    progress : bool
    n_jobs : int, optional
        Override the recorded worker count (results do not depend on it).
    verbose : bool
    client : distributed.Client, optional
        As in :func:`infer`.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=5, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> r2 = rerun(r.run_dir, progress=False)
    >>> import h5py
    >>> with h5py.File(r.run_dir / "chain.h5") as a, h5py.File(r2.run_dir / "chain.h5") as b:
    ...     bool((a["mcmc/chain"][()] == b["mcmc/chain"][()]).all())
    True
    """
    d, p = _read_run(run_path)
    cfg = RunConfig.from_params(p)
    if n_jobs is not None:
        cfg = cfg.replace(n_jobs=n_jobs)
    kw = _tables_kwargs(p, _tables_root(d, p))
    kw["extra_params"]["rerun_of"] = str(d.resolve())
    return infer(p["sim_id"], config=cfg, out=out if out is not None else d.resolve().parents[2], run_id=run_id,
                 progress=progress, verbose=verbose, client=client, **kw)


def _tables_root(d: Path, p: dict) -> Path:
    """The root holding a run's tables: the run folder's own root (``<root>/inference/<sim>/<run>``)
    when its grids are there (a moved working folder), else the recorded one."""
    here = d.resolve().parents[2]
    if (here / "data" / "tables" / p["sim_id"]).is_dir() or not Path(p.get("root", here)).is_dir():
        return here
    return Path(p["root"])


def _tables_kwargs(p: dict, root: Path) -> dict:
    """The table keywords of :func:`infer` that re-create a run's inputs from its params.json (tables
    under ``root``); the settings come from :meth:`RunConfig.from_params`."""
    cat = p.get("catalogue")
    return dict(observed=cat["path"] if cat else None, unit=cat["unit"] if cat else "kpc", root=root,
                zl=cat["zl"] if cat else None, zs=cat["zs"] if cat else None,
                forward_model=cat.get("forward_model") if cat else None,
                logMh_grid=p["grids"]["logMh_axis"], gamma_grid=p["grids"]["gamma_axis"],
                expect=dict(grids_key=p["grids"].get("key"), catalogue_sha256=cat["sha256"] if cat else None),
                extra_params={k: v for k, v in p.items() if k in ("pipeline", "map_start")})


#: params.json entries that define the chain: a resumed run must find them unchanged.
_CHAIN_DEFINING = ("seed", "mcmc_seed", "nwalkers", "eta", "free_names", "prior", "fixed", "initial_guess",
                   "forward_model", "start", "moves", "initial_state")



def _chain_mismatch(old: dict, new: dict) -> str | None:
    """The first chain-defining difference between a recorded and a re-created params.json."""
    from sl_cy.io import canonical_json

    same = lambda a, b: canonical_json(a) == canonical_json(b)
    for k in _CHAIN_DEFINING:
        if not same(old.get(k, LEGACY_SETTINGS.get(k)), new.get(k)):
            return f"{k} (recorded {canonical_json(old.get(k))[:120]}, now {canonical_json(new.get(k))[:120]})"
    for k in ("engine", "enabled", "bank_hash", "table_hash", "forward_model_hash"):
        if not same(old["selection"].get(k), new["selection"].get(k)):
            return f"the selection normaliser's {k}"
    if old["grids"].get("sha256") != new["grids"].get("sha256"):
        return "the grids file (sha256 differs)"
    return None


def resume(run_path, nsteps=None, *, n_jobs=None, progress: bool = True, verbose: bool = False,
           client=None) -> RunResult:
    """Continue an interrupted or killed run to its requested total of steps and finish it.

    The chain is continued from its last finished step with the sampler's recorded random state,
    so the final chain is identical, bit for bit, to an uninterrupted run with the same seed,
    however many times the run was interrupted. A step torn by a SIGKILL (or a power cut) is
    dropped first (:func:`sl_cy.chainstore.recover_chain`). The tables are re-used after checking
    their hashes against ``params.json``; then summaries, plots and ``run.h5`` are written and
    ``metadata.json`` says ``"complete"``, exactly as for an uninterrupted run.

    Parameters
    ----------
    run_path : str or Path
        ``<root>/inference/<sim_id>/<run_id>`` (tables under ``<root>/data/``).
    nsteps : int, optional
        New total number of steps (default the recorded one). Larger extends the run (also a
        complete one); the default burn-in (``nsteps // 10`` after a MAP start, ``nsteps // 4``
        after a ball start, unless ``discard`` was given) follows.
    n_jobs : int, optional
        Override the recorded worker count (results do not depend on it).
    progress, verbose : bool
    client : distributed.Client, optional
        As in :func:`infer` (the chain continues identically: the sums only change order).

    Returns
    -------
    RunResult

    Raises
    ------
    sl_cy.runs.RunLockedError
        A live process is still writing the folder.
    ValueError
        The tables or settings that define the chain changed since the run, ``nsteps`` is below the
        steps already made, or the chain cannot be read at all.

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> r2 = resume(r.run_dir, nsteps=9, progress=False)          # extend a finished run
    >>> import json; json.loads((r2.run_dir / "metadata.json").read_text())["status"]
    'complete'
    """
    from sl_cy.chainstore import ChainUnreadableError, recover_chain
    from sl_cy.runs import RunFolder, utc_now

    t_start = time.perf_counter()
    d, p = _read_run(run_path)
    d = d.resolve()
    cfg = RunConfig.from_params(p)                 # refuses a user-supplied A(eta)
    folder = RunFolder(d)
    before = folder.state
    folder.lock()
    try:
        total = p["nsteps"] if nsteps is None else check_pos_int("nsteps", nsteps, 1)
        try:
            rec = recover_chain(d / CHAIN_FILE, dry_run=True)        # nothing is changed before all checks
        except ChainUnreadableError as err:
            raise ValueError(str(err)) from None
        if rec.steps > total:
            raise ValueError(f"nsteps={total} is below the {rec.steps} steps already in {d / CHAIN_FILE}")
        if before == "complete" and total == p["nsteps"] and rec.steps == total:
            folder.unlock()
            if verbose:
                print(f"{d} is already complete ({total} steps); nothing to resume")
            return report(d, save_plots=False, verbose=verbose)
        cfg = cfg.replace(nsteps=total, **({} if n_jobs is None else dict(n_jobs=n_jobs)))
        if verbose:
            fix = [a for a in rec.actions if a != "nothing stored"]
            print(f"resuming {d} ({before}, {rec.steps} of {total} steps in the chain"
                  + (f"; to repair: {'; '.join(fix)}" if fix else "") + ")", flush=True)
        prep = prepare(p["sim_id"], cfg, out=d.parents[2], run_id=d.name, progress=progress, verbose=verbose,
                       resume_dir=d, client=client, **_tables_kwargs(p, _tables_root(d, p)))
        why = _chain_mismatch(p, prep.params)
        if why is not None:
            raise ValueError(f"cannot resume {d}: {why} changed since the run, so the continued chain would not be "
                             "this run's chain; start a new run instead (`sl-cy rerun` re-creates it in one go)")
        rec = recover_chain(d / CHAIN_FILE)
        params = dict(p, nsteps=total, discard=cfg.discard, discard_auto=cfg.discard_auto, n_jobs=cfg.n_jobs)
        prep.params = params
        folder.write_params(params)
        resumes = list(folder.metadata.get("resumes") or []) + [
            dict(utc=utc_now(), from_step=rec.steps, state_before=before, repairs=rec.actions)]
        folder.mark_running(step=rec.steps, nsteps=total, resumes=resumes)
    except BaseException:
        folder.unlock()
        raise
    try:
        return sample_and_finish(prep, folder, resumed_from=rec.steps, t_start=t_start, progress=progress,
                                 verbose=verbose)
    finally:
        if client is not None:
            prep.post.kernel.close()              # free the workers' shards


