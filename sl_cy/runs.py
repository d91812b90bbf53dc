"""Reproducible run folders: ``inference/<sim_id>/<run_id>/`` with params.json, metadata.json and
the run HDF5 file (seed 001's layout).

* ``params.json`` -- everything needed to re-run (written before the run starts);
* ``metadata.json`` -- UTC start/end, package version, git commit when available, sim_id,
  hashes/versions of the tables used (rewritten when the run ends);
* ``run.h5`` -- :func:`write_run_hdf5`: metadata, truth and population samples when known, the
  observed table, a reference to (or copy of) the per-lens grids, the chain, log-probability,
  acceptance fractions and any exported summaries.

All files are written atomically; nothing is pickled.

:class:`RunFolder` owns a folder's life cycle: it is created with ``params.json`` and
``metadata.json`` saying ``"status": "running"``, held under an exclusive lock (``flock`` on the folder itself,
released by the kernel even when the process is killed) while a process writes it, and ends
``"complete"`` or ``"interrupted"`` (with the step reached and the reason). A folder that says
``"running"`` but is not locked belongs to a process that was killed (SIGKILL, OOM killer, power
cut): :attr:`RunFolder.state` calls it ``"killed"``; like an interrupted run it can be resumed
(:func:`sl_cy.pipeline.resume`).
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np

from sl_cy._version import __version__
from sl_cy.io import atomic_h5, git_commit, to_jsonable, write_attrs, write_dataframe, write_json_atomic

PARAMS_FILE = "params.json"
METADATA_FILE = "metadata.json"
RUN_FILE = "run.h5"
#: Values of ``metadata.json``'s ``status``.
STATUSES = ("running", "interrupted", "complete")


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


def write_metadata(directory, *, sim_id: str, started_utc: str, finished_utc: str | None = None,
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


# --------------------------------------------------------------------------------------------
# the run folder's life cycle
# --------------------------------------------------------------------------------------------
class RunLockedError(RuntimeError):
    """Another live process is writing this run folder."""


class RunInterrupted(KeyboardInterrupt):
    """A run was interrupted (Ctrl-C, SIGTERM) after its folder was made; the folder is kept.

    A :class:`KeyboardInterrupt`, so code that catches interrupts still does. The message says
    where the folder is and how to continue it.

    Attributes
    ----------
    run_dir : Path
    step, nsteps : int
        Finished steps in the chain and the requested total.
    reason : str
    """

    def __init__(self, message: str, *, run_dir, step, nsteps, reason: str):
        super().__init__(message)
        self.run_dir = Path(run_dir)
        self.step = step
        self.nsteps = nsteps
        self.reason = reason


class RunFolder:
    """The life cycle of one run folder: create, lock, mark running / interrupted / complete.

    Parameters
    ----------
    path : str or Path
        ``inference/<sim_id>/<run_id>``.

    Examples
    --------
    >>> import tempfile
    >>> f = RunFolder.create(Path(tempfile.mkdtemp()) / "run_a", dict(seed=1), sim_id="s", started_utc=utc_now())
    >>> f.status, f.state
    ('running', 'running')
    >>> f.mark_interrupted(step=7, nsteps=40, reason="signal SIGTERM")
    >>> f.unlock()
    >>> f.metadata["status"], f.metadata["step"], f.state
    ('interrupted', 7, 'interrupted')
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    # -- files ------------------------------------------------------------------------------
    @property
    def params_file(self) -> Path:
        return self.path / PARAMS_FILE

    @property
    def metadata_file(self) -> Path:
        return self.path / METADATA_FILE

    @property
    def params(self) -> dict:
        return read_params(self.path)

    @property
    def metadata(self) -> dict:
        """``metadata.json`` ({} when missing or unreadable)."""
        try:
            m = json.loads(self.metadata_file.read_text())
        except (OSError, ValueError):
            return {}
        return m if isinstance(m, dict) else {}

    @property
    def status(self) -> str | None:
        """``metadata.json``'s status (``running``, ``interrupted``, ``complete``) or None."""
        return self.metadata.get("status")

    @property
    def state(self) -> str:
        """The status, with ``running`` told apart: ``running`` (a live process holds the lock)
        or ``killed`` (nobody does: the process died without marking the folder)."""
        st = self.status or "killed"
        if st == "running" and self._lock_fd is None and not self.is_locked():
            return "killed"
        return st

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path, params: dict, *, sim_id: str, started_utc: str, tables: dict | None = None,
               **metadata) -> "RunFolder":
        """Make the folder (refused if it exists), lock it, write params.json and metadata.json
        (``"status": "running"``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            if cls.taken(path):
                raise FileExistsError(f"run folder {path} already exists") from None
        f = cls(path)
        try:
            f.lock()
            write_params(path, params)
            write_metadata(path, sim_id=sim_id, started_utc=started_utc, finished_utc=None, tables=tables, status="running", **metadata)
        except BaseException:             # interrupted or failed while being made: leave nothing
            import shutil

            f.unlock()
            shutil.rmtree(path, ignore_errors=True)
            raise
        return f

    @staticmethod
    def taken(path) -> bool:
        """Whether ``path`` holds a run folder (anything but the empty remains of a creation killed
        before params.json was written, which may be re-used)."""
        path = Path(path)
        if not path.exists():
            return False
        if not path.is_dir():
            return True
        return (path / PARAMS_FILE).exists() or any(not p.name.startswith(".") for p in path.iterdir())

    def write_params(self, params: dict) -> Path:
        return write_params(self.path, params)

    # -- lock -------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's exclusive lock (non-blocking ``flock`` on the directory); RunLockedError
        when a live process holds it. The kernel releases it when the process ends, however it ends."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:             # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            os.close(fd)
            raise RunLockedError(f"{self.path} is being written by another process (it holds the folder's lock); "
                                 "wait for it to finish or stop it first") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)                  # closing releases the flock

    def is_locked(self) -> bool:
        """Whether some process (this one included) holds the lock."""
        if self._lock_fd is not None:
            return True
        try:
            import fcntl
        except ImportError:             # pragma: no cover
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- status -----------------------------------------------------------------------------
    def update_metadata(self, **fields) -> Path:
        """Merge ``fields`` into metadata.json (written atomically; version and git commit refreshed)."""
        m = self.metadata
        m.update(to_jsonable(fields))
        m.update(package_version=__version__, git_commit=git_commit())
        return write_json_atomic(self.metadata_file, m)

    def mark_running(self, **fields) -> None:
        self.update_metadata(status="running", finished_utc=None, reason=None, **fields)

    def mark_interrupted(self, *, step, nsteps, reason: str, **fields) -> None:
        """``"status": "interrupted"`` with the steps in the chain, the requested total and why."""
        self.update_metadata(status="interrupted", step=step, nsteps=nsteps, reason=reason,
                             interrupted_utc=utc_now(), **fields)

    def mark_complete(self, **fields) -> None:
        self.update_metadata(status="complete", finished_utc=utc_now(), reason=None, **fields)
