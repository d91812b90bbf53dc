"""Generic persistence helpers: atomic HDF5/JSON writes, DataFrames in HDF5, config hashing.

Every persisted file of sl_cy is HDF5 or JSON, never pickle:

* :func:`atomic_h5` / :func:`write_json_atomic` write to a temporary file in the destination
  directory and ``os.replace`` it onto the final name, so a crash leaves either the old file or
  the complete new one, never a truncated file;
* :func:`write_dataframe` stores a DataFrame as one HDF5 group with one dataset per column (in
  column order, attribute ``columns``) plus optional attributes; :func:`append_dataframe` grows
  such a group block by block (bounded memory); :func:`read_dataframe` reads it back;
* :func:`config_hash` is the sha256 of the sorted, compact JSON of a configuration (numpy
  values converted), the key of every cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

_DF_KIND = "sl_cy.dataframe"


# --------------------------------------------------------------------------------------------
# JSON and hashing
# --------------------------------------------------------------------------------------------
def to_jsonable(obj):
    """Convert numpy scalars/arrays, tuples, Paths and NamedTuples into plain JSON types.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON).
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "_asdict"):                       # NamedTuple (e.g. Eta)
        return {k: to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if math.isfinite(f):
            return f
        return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def canonical_json(obj) -> str:
    """Sorted-keys compact JSON of ``obj`` (after :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config, length: int | None = None) -> str:
    """sha256 hex digest of the canonical JSON of ``config`` (optionally truncated).

    Examples
    --------
    >>> config_hash({"b": 1, "a": [1.0, 2]}) == config_hash({"a": [1.0, 2], "b": 1})
    True
    >>> len(config_hash({"a": 1}, length=8))
    8
    """
    h = hashlib.sha256(canonical_json(config).encode()).hexdigest()
    return h[:length] if length else h


def array_digest(a) -> str:
    """sha256 of an array's dtype, shape and bytes (to key a cache on array inputs)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``
    (a reader sees the old file or the new one, never a torn one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file + ``os.replace``)."""
    return write_bytes_atomic(path, (json.dumps(to_jsonable(obj), indent=indent, sort_keys=True) + "\n").encode())


# --------------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_h5(path, mode: str = "w"):
    """Open a new HDF5 file for writing that appears at ``path`` only when complete.

    Yields an ``h5py.File`` on a temporary file in the same directory; on normal exit the file
    is closed, fsynced and renamed onto ``path`` (``os.replace``, atomic on POSIX); on an
    exception it is deleted and ``path`` is untouched.

    Examples
    --------
    >>> import tempfile, h5py
    >>> p = Path(tempfile.mkdtemp()) / "x.h5"
    >>> with atomic_h5(p) as f:
    ...     f["a"] = [1, 2]
    >>> with h5py.File(p) as f:
    ...     f["a"][:].tolist()
    [1, 2]
    """
    import h5py

    if mode not in ("w",):
        raise ValueError("atomic_h5 only creates new files (mode 'w')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_attrs(obj, attrs: dict) -> None:
    """Store a mapping as HDF5 attributes: numbers, strings and numeric arrays as themselves,
    anything else (dicts, lists of mixed types, None) as a JSON string with the key suffix
    ``"__json"``."""
    for k, v in attrs.items():
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) \
                and not (-2 ** 63 <= int(v) < 2 ** 63):
            obj.attrs[f"{k}__json"] = canonical_json(v)      # e.g. 128-bit seed entropy
        elif isinstance(v, (str, bool, np.bool_, int, np.integer, float, np.floating)):
            obj.attrs[k] = v
        elif isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            obj.attrs[k] = v
        else:
            obj.attrs[f"{k}__json"] = canonical_json(v)


def read_attrs(obj) -> dict:
    """Inverse of :func:`write_attrs` (JSON attributes decoded, numpy scalars made Python)."""
    out = {}
    for k, v in obj.attrs.items():
        if k.endswith("__json"):
            out[k[:-6]] = json.loads(v)
        elif isinstance(v, bytes):
            out[k] = v.decode()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _column_array(df: pd.DataFrame, col) -> np.ndarray:
    s = df[col]
    if s.dtype.kind in "biuf":
        return s.to_numpy()
    if s.dtype.kind == "O" or pd.api.types.is_string_dtype(s.dtype):
        import h5py

        return s.astype(str).to_numpy().astype(h5py.string_dtype())
    raise ValueError(f"column {col!r} has dtype {s.dtype}, which cannot be stored (numbers, bools, strings)")


def write_dataframe(parent, name: str, df: pd.DataFrame, *, attrs: dict | None = None,
                    compression: str | None = "gzip", resizable: bool = False):
    """Write ``df`` to ``parent[name]`` as a group with one dataset per column.

    Parameters
    ----------
    parent : h5py.File or h5py.Group
    name : str
        Group name (replaced if present).
    df : pandas.DataFrame
        Numeric, boolean or string columns; the index is not stored (reset it first if needed).
    attrs : dict, optional
        Extra attributes of the group (see :func:`write_attrs`).
    compression : str or None
        h5py compression filter (gzip level 4 + shuffle by default).
    resizable : bool
        Create growable datasets (``maxshape=(None,)``), for :func:`append_dataframe`.

    Returns
    -------
    h5py.Group
    """
    if name in parent:
        del parent[name]
    g = parent.create_group(name)
    g.attrs["kind"] = _DF_KIND
    g.attrs["columns"] = json.dumps([str(c) for c in df.columns])
    g.attrs["n_rows"] = len(df)
    for col in df.columns:
        a = _column_array(df, col)
        kw = {}
        if compression and len(a) > 0:
            kw = dict(compression=compression, shuffle=True)
            if compression == "gzip":
                kw["compression_opts"] = 4
        if resizable:
            kw.update(maxshape=(None,), chunks=(max(1, min(len(a), 65536)) if len(a) else 4096,))
        g.create_dataset(str(col), data=a, **kw)
    if attrs:
        write_attrs(g, attrs)
    return g


def append_dataframe(parent, name: str, df: pd.DataFrame, *, compression: str | None = "gzip"):
    """Append the rows of ``df`` to a group made by :func:`write_dataframe` (created, resizable,
    on first use). Columns must match the group's columns."""
    if name not in parent:
        return write_dataframe(parent, name, df, compression=compression, resizable=True)
    g = parent[name]
    cols = json.loads(g.attrs["columns"])
    if [str(c) for c in df.columns] != cols:
        raise ValueError(f"cannot append to {name!r}: columns {list(df.columns)} differ from {cols}")
    n0 = int(g.attrs["n_rows"])
    n1 = n0 + len(df)
    for col in cols:
        d = g[col]
        d.resize((n1,))
        d[n0:n1] = _column_array(df, col)
    g.attrs["n_rows"] = n1
    return g


def read_dataframe(group, columns=None) -> pd.DataFrame:
    """Read a group written by :func:`write_dataframe` back into a DataFrame (column order kept).

    Parameters
    ----------
    group : h5py.Group
    columns : list of str, optional
        Subset of columns to read.
    """
    if group.attrs.get("kind") != _DF_KIND:
        raise ValueError(f"HDF5 group {group.name!r} is not a DataFrame written by sl_cy.io")
    cols = json.loads(group.attrs["columns"])
    if columns is not None:
        missing = [c for c in columns if c not in cols]
        if missing:
            raise ValueError(f"columns {missing} not in {group.name!r} (has {cols})")
        cols = list(columns)
    data = {}
    for c in cols:
        a = group[c][()]
        if a.dtype.kind in "OS":
            a = np.array([x.decode() if isinstance(x, bytes) else x for x in a], dtype=object)
        data[c] = a
    return pd.DataFrame(data, columns=cols)


def git_commit(path=None) -> str | None:
    """The git commit of the repository containing ``path`` (default: this package), or None."""
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
