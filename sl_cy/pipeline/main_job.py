"""The main job (``sl-cy run``): simulate a mock, tabulate it, then :func:`sl_cy.pipeline.infer`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping

from sl_cy.pipeline.config import DEFAULT_N_GALAXY, check_pos_int
from sl_cy.pipeline.inputs import check_writable, grids_up_to_date
from sl_cy.pipeline.jobs import _config, infer
from sl_cy.pipeline.summaries import RunResult

__all__ = ["run_pipeline"]


def run_pipeline(n_galaxy=DEFAULT_N_GALAXY, *, seed=None, sim_id=None, root=".", config=None, overwrite=False,
                 confirm: Callable[[str], bool] | None = None, run_id=None, mock_kwargs: Mapping | None = None,
                 progress=True, verbose=True, client=None, **settings) -> RunResult:
    """Simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots and run file (``sl-cy run``).

    Parameters
    ----------
    n_galaxy : int
        Galaxies of the mock (default 1e5: ~430 detected lenses).
    seed : int, optional
        Root seed (fresh entropy when None, recorded): the mock uses it, the bank and the
        sampler use derived seeds.
    sim_id : str, optional
        Table folder (default ``sim_<hash8>`` of the mock configuration, as ``sl-cy simulate``).
    root : str or Path
        Working folder: ``data/tables/<sim_id>/``, ``data/banks/``, ``inference/<sim_id>/<run_id>/``.
    config : RunConfig, optional
        The inference settings (:class:`sl_cy.pipeline.RunConfig`); ``**settings`` (any of its
        fields as keywords, e.g. ``nwalkers=32, nsteps=2000, use_selection=False``) apply on top.
        ``config.seed`` is the root seed too when ``seed`` is not given.
    progress, run_id :
        As in :func:`infer`.
    overwrite : bool
        Replace ``mock.h5`` of another configuration under the same sim_id (otherwise refused).
    confirm : callable(question) -> bool, optional
        Asked before re-using existing tables and before overwriting (``--interact``); without
        it existing matching tables are re-used and mismatching ones refused unless ``overwrite``.
    mock_kwargs : mapping, optional
        Passed to :func:`sl_cy.mock.simulate_mock` (eta, detection, nbkg, zl, zs, model, ...).
    verbose : bool
        Print each stage and where each artefact went.
    client : distributed.Client, optional
        Run the mock and the tabulation on this dask cluster, and the likelihood in lens shards
        on its workers (:func:`infer`).

    Returns
    -------
    RunResult

    Performance
    -----------
    Defaults on the idle 2-core machine (README, measured from a clean install, tables cached):
    3 min 49 s wall: mock and grids 9 s (401 lenses, ~1300 points each), MAP start 1.3 s (88
    evaluations), 2000 MCMC steps x 0.10 s (16 walkers, DE moves: tau ~19-24 steps, converged
    at 74.8 tau, bulk ESS 1077-1263, R-hat <= 1.01), summaries, plots and ArviZ export 15 s. A
    first run also builds the A(eta) table once (~1 min).

    Examples
    --------
    >>> import tempfile
    >>> r = run_pipeline(20_000, seed=1, root=tempfile.mkdtemp(), nwalkers=14, nsteps=5, selection="bank",
    ...                  bank_size=3000, n_jobs=1, progress=False, save_plots=False, verbose=False)
    >>> r.run_dir.parent.parent.name
    'inference'
    """
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID
    from sl_cy.mock import mock_config
    from sl_cy.tables import GRIDS_FILE, MOCK_FILE, generate_and_save_mock_tabulate, sim_dir, tabulate_sim

    t0 = time.perf_counter()
    n_galaxy = check_pos_int("n_galaxy", n_galaxy, 1)
    check_writable(root)
    if seed is not None:
        settings["seed"] = seed
    cfg = _config(config, settings)
    seed, n_jobs = cfg.seed, cfg.n_jobs
    mk = dict(mock_kwargs or {})
    _, chash = mock_config(n_galaxy, seed=seed, **mk)
    sim_id = sim_id or f"sim_{chash[:8]}"
    d = sim_dir(sim_id, root)
    mock_path, grids_path = d / MOCK_FILE, d / GRIDS_FILE
    say = print if verbose else (lambda *a, **k: None)
    if _regenerate(mock_path, chash, overwrite, confirm):
        say(f"[1-2/4] simulate {n_galaxy} galaxies (seed {seed}) and tabulate -> {d}", flush=True)
        generate_and_save_mock_tabulate(n_galaxy, seed, sim_id, root=root, n_jobs=n_jobs, executor=client,
                                        show_progress=bool(progress), **mk)
    else:
        say(f"[1/4] re-using mock {mock_path}", flush=True)
        if grids_up_to_date(grids_path, chash, logMh_grid=DEFAULT_LOGMH_GRID, gamma_grid=DEFAULT_GAMMA_GRID):
            say(f"[2/4] re-using grids {grids_path}", flush=True)
        else:
            say(f"[2/4] tabulate -> {grids_path}", flush=True)
            tabulate_sim(sim_id, root, n_jobs=n_jobs, executor=client, show_progress=bool(progress), overwrite=True)
    say(f"mock and grids ready in {time.perf_counter() - t0:.1f} s", flush=True)
    say("[3/4] A(eta) and [4/4] MCMC", flush=True)
    pipe = dict(pipeline=dict(n_galaxy=n_galaxy, mock_seed=seed, mock_config_hash=chash, mock_kwargs=mk))
    res = infer(sim_id, root=root, config=cfg, progress=progress, run_id=run_id, extra_params=pipe, verbose=verbose,
                client=client)
    res.files = {"mock.h5": mock_path, **res.files}
    res.wall_time_s = time.perf_counter() - t0
    if verbose:
        print(f"  {'mock.h5':<14} {mock_path}")
        print(f"total wall time {res.wall_time_s:.1f} s")
    return res


def _regenerate(mock_path: Path, chash: str, overwrite: bool, confirm) -> bool:
    """Whether to (re)simulate: no mock yet, ``overwrite``, or the user declines re-using it; a mock
    of another configuration is refused unless ``overwrite`` or confirmed."""
    import h5py

    from sl_cy.io import read_attrs

    if not mock_path.exists():
        return True
    try:
        with h5py.File(mock_path, "r") as f:
            old = read_attrs(f).get("config_hash")
    except OSError:
        old = None
    if old == chash:
        return bool(overwrite) or (confirm is not None and not confirm(
            f"{mock_path.parent} already holds this mock (config hash {chash[:12]}); re-use it?"))
    if overwrite or (confirm is not None and confirm(f"{mock_path} holds ANOTHER configuration; overwrite it?")):
        return True
    raise FileExistsError(f"{mock_path} exists with another configuration; use --overwrite, --interact or "
                          "another --sim-id")
