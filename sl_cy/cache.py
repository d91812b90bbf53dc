"""One on-disk cache for everything sl_cy builds once and keys by a configuration hash.

The gNFW lensing table, the deterministic selection-rate table and the Monte-Carlo selection
banks are expensive to build and cheap to load. Each is stored under a file name that carries
(part of) the sha256 of its configuration, so a file found at that name is the right object; a
file that fails to load (torn by a crash, written by another version, foreign) is rebuilt and
replaced, and a cache folder that cannot be written (read-only home) only costs the rebuild next
time (a RuntimeWarning says so). :func:`load_or_build` is that rule, written once. Processes that
share the folder (pytest-xdist workers, several jobs of one cluster allocation) build each object
once: the builder holds ``.<file>.lock`` (:mod:`filelock`; left in place, empty), the others wait for it and load its file.

The folder is ``$SL_CY_CACHE_DIR`` if set, else ``~/.cache/sl_cy`` (:func:`cache_dir`); it does
not depend on the working directory or on a source checkout.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x_0123.txt"
>>> build = lambda: "built"
>>> load_or_build(p, load=lambda q: q.read_text(), build=build, save=lambda o, q: q.write_text(o))
('built', False)
>>> load_or_build(p, load=lambda q: q.read_text(), build=build, save=lambda o, q: q.write_text(o))
('built', True)
"""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

__all__ = ["cache_dir", "cache_path", "load_or_build"]

#: What a cache file that cannot be used raises when loaded (it is then rebuilt).
UNUSABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)


def cache_dir() -> Path:
    """The folder of sl_cy's on-disk caches: ``$SL_CY_CACHE_DIR`` if set, else ``~/.cache/sl_cy``."""
    d = os.environ.get("SL_CY_CACHE_DIR")
    return Path(d) if d else Path.home() / ".cache" / "sl_cy"


def cache_path(stem: str, key: str, *, suffix: str = ".h5", folder=None) -> Path:
    """``<folder or cache_dir()>/<stem>_<key[:16]><suffix>``: the file of one cached object."""
    return Path(folder if folder is not None else cache_dir()) / f"{stem}_{key[:16]}{suffix}"


def load_or_build(path, *, load: Callable, build: Callable, save: Callable, what: str = "cache file"):
    """Load the object cached at ``path``, or build it and store it there.

    Parameters
    ----------
    path : str or Path or None
        Cache file (None: build without caching).
    load : callable(path) -> object
        Raises one of :data:`UNUSABLE` for a file that cannot be used (then it is rebuilt).
    build : callable() -> object
    save : callable(object, path)
        Should write atomically (e.g. :func:`sl_cy.io.atomic_h5`); an OSError is turned into a
        RuntimeWarning (the object is still returned).
    what : str
        Name in the warning.

    Returns
    -------
    (object, reused: bool)

    Performance
    -----------
    A process that finds another one building the same file (its ``.<file>.lock`` held) waits for it and
    loads the result instead of building it a second time; where the lock file cannot be created
    (read-only folder) it builds without waiting.
    """
    if path is None:
        return build(), False
    path = Path(path)
    found = _load(path, load)
    if found is not None:
        return found[0], True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(f".{path.name}.lock")))
        lock.acquire()
    except OSError:
        lock = None                          # cannot lock here (read-only): build without waiting
    try:
        found = _load(path, load)            # built by the process that held the lock meanwhile
        if found is not None:
            return found[0], True
        return _build_and_save(path, build, save, what), False
    finally:
        if lock is not None:
            lock.release()


def _load(path: Path, load: Callable):
    """(object,) from a usable file at ``path``, else None (missing, torn, stale or foreign)."""
    if path.exists():
        try:
            return (load(path),)
        except UNUSABLE:
            pass                             # torn, stale or foreign: rebuild and replace it
    return None


def _build_and_save(path: Path, build: Callable, save: Callable, what: str):
    obj = build()
    try:
        save(obj, path)
    except OSError as err:
        warnings.warn(f"could not cache the {what} at {path}: {err}", RuntimeWarning, stacklevel=3)
    return obj
