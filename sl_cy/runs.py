"""Reproducible run folders: ``inference/<sim_id>/<run_id>/`` with params.json, metadata.json and
the run HDF5 file (seed 001's layout).

* ``params.json`` -- everything needed to re-run (written before the run starts);
* ``metadata.json`` -- UTC start/end, package version, git commit when available, sim_id,
  hashes/versions of the tables used (rewritten when the run ends);
* ``run.h5`` -- :func:`write_run_hdf5`: metadata, truth and population samples when known, the
  observed table, a reference to (or copy of) the per-lens grids, the chain, log-probability,
  acceptance fractions and any exported summaries.

All files are written atomically; nothing is pickled.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from sl_cy._version import __version__
from sl_cy.io import atomic_h5, git_commit, to_jsonable, write_attrs, write_dataframe, write_json_atomic

PARAMS_FILE = "params.json"
METADATA_FILE = "metadata.json"
RUN_FILE = "run.h5"


def utc_now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A run id from the UTC time, e.g. ``run_20261123T101500Z``."""
    return "run_" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")[:-3]


def run_dir(sim_id: str, run_id: str, root=".") -> Path:
    """``<root>/inference/<sim_id>/<run_id>``."""
    for name, v in (("sim_id", sim_id), ("run_id", run_id)):
        if not v or "/" in str(v) or str(v) in (".", ".."):
            raise ValueError(f"invalid {name} {v!r}")
    return Path(root) / "inference" / str(sim_id) / str(run_id)


def write_params(directory, params: dict) -> Path:
    """Write ``params.json`` (the full configuration of a run)."""
    return write_json_atomic(Path(directory) / PARAMS_FILE, to_jsonable(params))


def read_params(directory) -> dict:
    """Read ``params.json`` of a run folder."""
    p = Path(directory) / PARAMS_FILE
    if not p.exists():
        raise FileNotFoundError(f"{p} not found: not a run folder")
    return json.loads(p.read_text())


def write_metadata(directory, sim_id: str, started_utc: str, finished_utc: str | None = None,
                   tables: dict | None = None, **extra) -> Path:
    """Write ``metadata.json``: timestamps, package version, git commit, sim_id, table versions."""
    meta = dict(sim_id=str(sim_id), started_utc=started_utc, finished_utc=finished_utc, package_version=__version__,
                git_commit=git_commit(), precomputed_table_version=to_jsonable(tables or {}), **to_jsonable(extra))
    return write_json_atomic(Path(directory) / METADATA_FILE, meta)


def write_run_hdf5(path, *, metadata: dict, params: dict | None = None, truth=None, samples=None, observed=None,
                   grids_path=None, grids=None, chain=None, log_prob=None, acceptance=None, exports: dict | None = None):
    """Write the run file of an inference run (seed name), atomically.

    Parameters
    ----------
    path : str or Path
    metadata, params : dict
        Stored as JSON attributes of the root.
    truth : dict or sequence, optional
        True hyper-parameters of a mock (attribute ``truth``).
    samples, observed : DataFrame, optional
        Population samples (truth per lens) and the observed table, one dataset per column.
    grids_path : str or Path, optional
        Reference to the grids file used (stored as an attribute; the grids are not copied).
    grids : list of LensGrid, optional
        Copy the grids into group ``grids`` instead (stacked).
    chain, log_prob, acceptance : ndarray, optional
        The MCMC chain (n_steps, n_walkers, n_dim), log-probability (n_steps, n_walkers) and
        acceptance fractions (n_walkers,).
    exports : dict, optional
        Summaries (median, intervals, covariance, tau...) as arrays or JSON-able values.

    Returns
    -------
    Path
    """
    path = Path(path)
    with atomic_h5(path) as f:
        attrs = dict(kind="sl_cy.run", metadata=metadata, params=params or {})
        if truth is not None:
            attrs["truth"] = np.asarray(truth, dtype=float) if not isinstance(truth, dict) else truth
        if grids_path is not None:
            attrs["grids_path"] = str(grids_path)
        write_attrs(f, attrs)
        if samples is not None:
            write_dataframe(f, "samples", samples.reset_index(drop=True))
        if observed is not None:
            write_dataframe(f, "observed", observed.reset_index(drop=True))
        if grids is not None:
            from sl_cy.grids import stack_grids

            st = stack_grids(grids)
            g = f.create_group("grids")
            for k, v in st.items():
                if k != "observed":
                    g.create_dataset(k, data=v, compression="gzip" if np.ndim(v) == 3 else None)
        mc = f.create_group("mcmc")
        for name, arr in (("chain", chain), ("log_prob", log_prob), ("acceptance_fraction", acceptance)):
            if arr is not None:
                mc.create_dataset(name, data=np.asarray(arr))
        ex = f.create_group("exports")
        for k, v in (exports or {}).items():
            a = np.asarray(v) if not isinstance(v, (dict, str)) else None
            if a is not None and a.dtype.kind in "fiub":
                ex.create_dataset(k, data=a)
            else:
                ex.attrs[k] = json.dumps(to_jsonable(v))
    return path
