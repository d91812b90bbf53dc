"""Simulation tables on disk: mock + likelihood grids under ``data/tables/<sim_id>/``.

The seed's ``mock_tabulate_manager`` helpers, over one layout::

    <root>/data/tables/<sim_id>/mock.h5     truth, lens table, observed table, configuration
    <root>/data/tables/<sim_id>/grids.h5    per-lens likelihood grids (stacked), their key
    <root>/data/tables/<sim_id>/grid_cache/ resumable tabulation chunks (removed when complete)

* :func:`generate_and_save_mock_tabulate` -- simulate, save the mock, tabulate the grids;
* :func:`tabulate_sim` -- tabulate the grids of an existing mock (``sl-cy tabulate``);
* :func:`load_mock_and_grids` -- load all or a subset (by lens index) of a simulation;
* :func:`save_subset` -- write a subset of lenses as a new simulation folder.

The grids are tabulated with the survey, redshifts, concentration and cosmology recorded in
the mock, so the likelihood uses the constants the mock was drawn with.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sl_cy.config import SurveyConfig
from sl_cy.cosmology import Cosmology
from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, load_grids_hdf5, save_grids_hdf5, tabulate_likelihood_grids
from sl_cy.io import read_attrs

MOCK_FILE = "mock.h5"


def mock_forward_model(config: dict):
    """The forward model of a mock configuration. A mock with per-galaxy redshifts has none: the
    grids then get the fixed-redshift model of the same survey (each lens is still tabulated at its
    own redshifts), and the selection term refuses them (see :class:`sl_cy.likelihood.Posterior`)."""
    from sl_cy.forward import HALO_SUPPORT, ForwardModel

    if config.get("forward_model"):
        return ForwardModel.from_dict(config["forward_model"])
    c = config["c_halo"]
    return ForwardModel(model=config["model"], survey=SurveyConfig.from_dict(config["survey"]),
                        c_halo=c if np.ndim(c) == 0 else 5.0, cosmology=Cosmology(**config["cosmology"]),
                        halo_support=tuple(config.get("halo_support", HALO_SUPPORT)))
GRIDS_FILE = "grids.h5"


def sim_dir(sim_id: str, root=".") -> Path:
    """``<root>/data/tables/<sim_id>``."""
    if not sim_id or "/" in str(sim_id) or str(sim_id) in (".", ".."):
        raise ValueError(f"invalid sim_id {sim_id!r}")
    return Path(root) / "data" / "tables" / str(sim_id)


def tabulate_sim(sim_id: str, root=".", *, logMh_grid=None, gamma_grid=None, n_jobs=1, executor=None,
                 cache_every=256, show_progress=None, overwrite=False, adaptive=True, adaptive_step=1.0) -> Path:
    """Tabulate the likelihood grids of the mock in ``data/tables/<sim_id>/mock.h5``.

    Parameters
    ----------
    sim_id, root : str
        Simulation folder ``<root>/data/tables/<sim_id>``.
    logMh_grid, gamma_grid : array, optional
        Grid axes (defaults :data:`sl_cy.grids.DEFAULT_LOGMH_GRID`, ``DEFAULT_GAMMA_GRID``).
    adaptive, adaptive_step :
        Adaptive per-column halo-mass nodes (default; see
        :func:`sl_cy.grids.adaptive_columns`) or, with ``adaptive=False``, the regular grid.
    n_jobs, executor, cache_every, show_progress :
        As in :func:`sl_cy.grids.tabulate_likelihood_grids`; the chunks are cached in
        ``grid_cache/`` so an interrupted run resumes, and the cache is removed when done.
    overwrite : bool
        Recompute when ``grids.h5`` exists (otherwise it is kept if its key matches).

    Returns
    -------
    Path of ``grids.h5``.
    """
    import h5py

    from sl_cy.mock import load_mock

    d = sim_dir(sim_id, root)
    mock_path = d / MOCK_FILE
    if not mock_path.exists():
        raise FileNotFoundError(f"no mock at {mock_path}; run `sl-cy simulate --sim-id {sim_id}` first")
    mock = load_mock(mock_path)
    cfg = mock.config
    out = d / GRIDS_FILE
    mh = np.asarray(DEFAULT_LOGMH_GRID if logMh_grid is None else logMh_grid, dtype=float)
    ga = np.asarray(DEFAULT_GAMMA_GRID if gamma_grid is None else gamma_grid, dtype=float)
    if len(mock.observed) == 0:
        raise ValueError(f"the mock {mock_path} has no detected lenses to tabulate")
    kw = dict(forward_model=mock_forward_model(cfg))
    cache = d / "grid_cache"
    grids = tabulate_likelihood_grids(mock.observed, mh, ga, n_jobs=n_jobs, executor=executor, cache_every=cache_every,
                                      cache_dir=cache, show_progress=show_progress, adaptive=adaptive,
                                      adaptive_step=adaptive_step, **kw)
    key = grids[0].config["key"]
    if out.exists() and not overwrite:
        with h5py.File(out, "r") as f:
            if read_attrs(f).get("config", {}).get("key") == key:
                shutil.rmtree(cache, ignore_errors=True)
                return out
    save_grids_hdf5(out, grids, attrs=dict(sim_id=str(sim_id), mock_config_hash=mock.config_hash))
    shutil.rmtree(cache, ignore_errors=True)
    return out


def generate_and_save_mock_tabulate(n_galaxy, seed, sim_id=None, *, root=".", logMh_grid=None, gamma_grid=None,
                                    n_jobs=1, executor=None, cache_every=None, show_progress=None, **mock_kwargs):
    """Simulate a mock, save it under ``data/tables/<sim_id>/`` and tabulate its grids.

    Parameters
    ----------
    n_galaxy, seed : int
        Galaxies and root seed of the mock.
    sim_id : str, optional
        Folder name (default ``sim_<hash8>`` of the mock configuration).
    root : str or Path
    logMh_grid, gamma_grid, n_jobs, executor, show_progress :
        As in :func:`tabulate_sim` / :func:`sl_cy.mock.simulate_mock`.
    cache_every : int, optional
        Galaxies per resumable mock cache block (``mock_cache/``, removed when done).
    **mock_kwargs :
        Passed to :func:`sl_cy.mock.simulate_mock` (eta, detection, nbkg, zl, zs, ...).

    Returns
    -------
    (sim_id, mock_path, grids_path)
    """
    from sl_cy.mock import mock_config, simulate_mock

    _, chash = mock_config(n_galaxy, seed=seed, **mock_kwargs)
    sim_id = sim_id or f"sim_{chash[:8]}"
    d = sim_dir(sim_id, root)
    d.mkdir(parents=True, exist_ok=True)
    cache = d / "mock_cache" if cache_every else None
    res = simulate_mock(n_galaxy, seed=seed, n_jobs=n_jobs, executor=executor, cache_every=cache_every,
                        cache_dir=cache, show_progress=show_progress, keep_galaxies=cache is None, **mock_kwargs)
    mock_path = res.save(d / MOCK_FILE, extra_attrs=dict(sim_id=sim_id))
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
    grids_path = tabulate_sim(sim_id, root, logMh_grid=logMh_grid, gamma_grid=gamma_grid, n_jobs=n_jobs, executor=executor,
                              show_progress=show_progress, overwrite=True)
    return sim_id, mock_path, grids_path


def load_mock_and_grids(sim_id, root=".", indices=None):
    """Load the lens table, observed table and grids of a simulation (optionally a subset).

    Parameters
    ----------
    sim_id, root : str
    indices : array of int, optional
        Lens indices (rows of the lens table, 0-based) to load; all by default.

    Returns
    -------
    lenses : DataFrame
    observed : DataFrame
    grids : list of LensGrid
    """
    import h5py

    from sl_cy.io import read_dataframe

    d = sim_dir(sim_id, root)
    with h5py.File(d / MOCK_FILE, "r") as f:
        lenses = read_dataframe(f["lenses"])
        observed = read_dataframe(f["observed"])
    if not (d / GRIDS_FILE).exists():
        raise FileNotFoundError(f"no grids at {d / GRIDS_FILE}; run `sl-cy tabulate --sim-id {sim_id}`")
    if indices is not None:
        idx = np.asarray(indices, dtype=int)
        if idx.size and (idx.min() < 0 or idx.max() >= len(lenses)):
            raise ValueError(f"lens indices must be in [0, {len(lenses)}), got {idx.min()}..{idx.max()}")
        lenses = lenses.iloc[idx].reset_index(drop=True)
        observed = observed.iloc[idx].reset_index(drop=True)
        grids = load_grids_hdf5(d / GRIDS_FILE, lenses=idx)
    else:
        grids = load_grids_hdf5(d / GRIDS_FILE)
    if len(grids) != len(observed):
        raise ValueError(f"{d}: grids.h5 has {len(grids)} lenses but the mock has {len(observed)}; re-tabulate")
    return lenses, observed, grids


def save_subset(sim_id, indices, new_sim_id, *, root=".") -> Path:
    """Write lenses ``indices`` of a simulation (mock tables and grids) as ``new_sim_id``.

    The per-galaxy table is not copied (a subset of lenses has no galaxy population); the
    configuration and provenance (parent sim_id, indices) are recorded in the attributes.
    """
    import h5py
    import pandas as pd

    from sl_cy.io import atomic_h5, write_attrs, write_dataframe

    lenses, observed, grids = load_mock_and_grids(sim_id, root, indices)
    src = sim_dir(sim_id, root)
    dst = sim_dir(new_sim_id, root)
    if dst.exists():
        raise FileExistsError(f"{dst} exists")
    dst.mkdir(parents=True)
    with h5py.File(src / MOCK_FILE, "r") as f:
        attrs = read_attrs(f)
    attrs.update(sim_id=str(new_sim_id), parent_sim_id=str(sim_id), subset_indices=np.asarray(indices, dtype=np.int64))
    with atomic_h5(dst / MOCK_FILE) as f:
        write_dataframe(f, "galaxies", pd.DataFrame({c: np.empty(0) for c in ("galaxy_id",)}))
        write_dataframe(f, "lenses", lenses, compression=None)
        write_dataframe(f, "observed", observed, compression=None)
        write_attrs(f, attrs)
    save_grids_hdf5(dst / GRIDS_FILE, grids, attrs=dict(sim_id=str(new_sim_id), parent_sim_id=str(sim_id)))
    return dst
