"""Stage 1 of an inference: the grids of a simulation or of a user catalogue, validated.

:func:`catalogue_tables` validates a catalogue (every column and value) and re-uses or tabulates its
grids without writing anything; :func:`sim_constants` reads the truth of a mock; the small
file helpers (:func:`file_sha256`, :func:`check_writable`) are used by every stage.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sl_cy._version import __version__

__all__ = ["file_sha256", "check_writable", "grids_attrs", "grids_up_to_date", "catalogue_tables", "sim_constants"]


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt"); _ = open(p, "w").write("abc")
    >>> file_sha256(p)[:12]
    'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_writable(folder) -> Path:
    """Raise OSError naming ``folder`` unless files can be created in it (created if missing);
    called before any work starts, so an unwritable output folder is reported at once.

    Examples
    --------
    >>> import tempfile
    >>> check_writable(tempfile.mkdtemp()).is_dir()
    True
    """
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sl_cy_write_test_"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write in the output folder {folder}: {exc.strerror or exc}") from None
    return folder


def grids_attrs(path) -> dict:
    """The attributes of a ``grids.h5`` plus ``_complete``, ``_pieces`` (the file holds the column piece
    codes, grid layout >= 2), ``_logMh_axis``, ``_gamma_axis``, ``_n_lenses``."""
    import h5py

    from sl_cy.grids import GRID_ARRAYS
    from sl_cy.io import read_attrs

    with h5py.File(path, "r") as f:
        a = read_attrs(f)
        a["_complete"] = all(k in f for k in GRID_ARRAYS + ("valid", "nbkg_kpc2", "observed"))
        a["_pieces"] = "piece" in f
        a["_logMh_axis"] = f["logMh_axis"][()]
        a["_gamma_axis"] = f["gamma_axis"][()]
        a["_n_lenses"] = int(f["valid"].shape[0])
    return a


def _same_tabulation(a: dict, logMh_grid, gamma_grid) -> bool:
    """Complete, tabulated by this version with the adaptive rule on these axes, with the column piece
    codes (older files are tabulated again: the likelihood's eta-adaptive column rule needs them)."""
    cfg = a.get("config", {})
    return bool(a.get("_complete") and a.get("_pieces") and cfg.get("version") == __version__
                and cfg.get("quadrature") == "adaptive"
                and np.array_equal(a.get("_logMh_axis"), logMh_grid) and np.array_equal(a.get("_gamma_axis"), gamma_grid))


def grids_up_to_date(path, mock_hash: str, *, logMh_grid, gamma_grid) -> bool:
    """grids.h5 was tabulated from this mock, on these axes, by this package version."""
    try:
        a = grids_attrs(path)
    except (OSError, KeyError, ValueError):
        return False
    return a.get("mock_config_hash") == mock_hash and _same_tabulation(a, logMh_grid, gamma_grid)


def catalogue_tables(observed, *, unit, zl, zs, root, sim_id, logMh_grid, gamma_grid, n_jobs, progress,
                     forward_model=None):
    """Validate a catalogue and (re)use or tabulate its grids; nothing is written here.

    Returns
    -------
    (sim_id, grids_path, grids or None (re-use the file), catalogue dict for params.json,
    attrs to save with the new grids or None)
    """
    from sl_cy.catalogue import read_catalogue
    from sl_cy.forward import as_forward_model
    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.io import config_hash
    from sl_cy.tables import GRIDS_FILE, sim_dir

    fm = as_forward_model(forward_model)
    # zl, zs (--zl/--zs): the redshifts of every lens of a catalogue without zl/zs columns (no silent
    # default), which are then those of a fixed-redshift model; a catalogue whose redshifts vary needs
    # the model's parent distributions p(zl), p(zs) (checked with the selection term)
    z_over = {k: v for k, v in (("zl", zl), ("zs", zs)) if v is not None and isinstance(getattr(fm, k), float)}
    fm = fm.replace(**z_over) if z_over else fm
    cat_path = Path(observed).resolve()
    table = read_catalogue(cat_path, unit=unit, zl=zl, zs=zs)      # all validation, no file written
    sha = file_sha256(cat_path)
    cat = dict(path=str(cat_path), sha256=sha, unit=unit, zl=zl, zs=zs, n_lenses=len(table),
               forward_model=fm.to_dict())
    sim_id = sim_id or f"obs_{config_hash(dict(sha256=sha, unit=unit, forward_model=fm.hash))[:8]}"
    gpath = sim_dir(sim_id, root) / GRIDS_FILE
    if gpath.exists():
        try:
            a = grids_attrs(gpath)
        except (OSError, KeyError, ValueError):
            a = {}
        if (a.get("catalogue_sha256") == sha and a.get("unit") == unit and a.get("forward_model") == fm.to_dict()
                and _same_tabulation(a, logMh_grid, gamma_grid)):
            return sim_id, gpath, None, cat, None
        if a.get("source") != "catalogue" and a:
            raise FileExistsError(f"{gpath} holds the grids of another simulation; choose another --sim-id")
    grids = tabulate_likelihood_grids(table, logMh_grid, gamma_grid, forward_model=fm, n_jobs=n_jobs,
                                      show_progress=progress, adaptive=True)
    attrs = dict(sim_id=str(sim_id), source="catalogue", catalogue_path=str(cat_path), catalogue_sha256=sha,
                 unit=unit, forward_model=fm.to_dict())
    return sim_id, gpath, grids, cat, attrs


def sim_constants(sim: Path) -> dict:
    """Truth, lens table and mock hash of a simulation folder (all None for a catalogue's tables)."""
    mock_path = Path(sim) / "mock.h5"
    if mock_path.exists():
        from sl_cy.mock import load_mock

        m = load_mock(mock_path)
        return dict(truth={k: float(v) for k, v in m.config["eta"].items()}, lenses=m.lenses,
                    mock_config_hash=m.config_hash, mock_file=mock_path)
    return dict(truth=None, lenses=None, mock_config_hash=None, mock_file=None)
