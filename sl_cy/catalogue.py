"""Reading a user's own catalogue of two-image lenses (CSV or HDF5) into the observed table.

Columns (case-sensitive; aliases accepted, see :data:`ALIASES`):

====================================  ========================================================
``xA``, ``xB``                         image positions along the line through the lens centre,
                                       on opposite sides, in the unit declared by ``unit``
``logRe``                              log10 effective radius in kpc (``logRe_arcsec`` instead:
                                       log10 of Re in arcsec, converted per lens)
``logM_star_sps_observed``             log10 SPS stellar mass (Msun)
``magnitude_observedA``, ``...B``      image magnitudes
``zl``, ``zs``                         per-lens redshifts (or the ``zl``/``zs`` arguments: required
                                       when a column is missing; there is no default)
====================================  ========================================================

Everything is checked before any work starts: a missing or misnamed column, a non-numeric or
non-finite value, images on the same side, zs <= zl are reported by column name and row
(1-based line of the CSV data / row index of the table).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sl_cy.cosmology import arcsec_to_kpc, get_cosmology
from sl_cy.grids import REQUIRED_COLUMNS, check_observed_table

#: Accepted alternative column names -> canonical name.
ALIASES = {
    "x_A": "xA", "x_B": "xB", "logMsps_obs": "logM_star_sps_observed", "logM_sps_obs": "logM_star_sps_observed",
    "mA": "magnitude_observedA", "mB": "magnitude_observedB", "m_A": "magnitude_observedA",
    "m_B": "magnitude_observedB", "z_l": "zl", "z_s": "zs",
}
UNITS = ("kpc", "arcsec")


def read_catalogue(path_or_table, unit="kpc", *, zl=None, zs=None, cosmo=None, key=None) -> pd.DataFrame:
    """Read and validate a lens catalogue; return the observed table in kpc.

    Parameters
    ----------
    path_or_table : str, Path or DataFrame
        ``.csv`` (or any delimited text pandas reads), ``.h5``/``.hdf5`` (a group written by
        :func:`sl_cy.io.write_dataframe`, name ``key``, default ``observed``), or a DataFrame.
    unit : {"kpc", "arcsec"}
        Unit of ``xA``/``xB``; arcsec are converted with the angular-diameter distance of each
        lens's zl.
    zl, zs : float, optional
        Redshifts for catalogues without ``zl``/``zs`` columns (required then: there is no
        default redshift).
    cosmo : optional
        Cosmology for the arcsec conversion.
    key : str, optional
        HDF5 group name.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`sl_cy.grids.REQUIRED_COLUMNS` + ``zl``, ``zs`` in kpc, images oriented
        x_A > 0 > x_B, index = the catalogue's row numbers.

    Raises
    ------
    ValueError
        Naming the column and row of any problem (see module notes); FileNotFoundError for a
        missing file.

    Examples
    --------
    >>> cat = pd.DataFrame(dict(xA=[1.5], xB=[-0.7], logRe=[0.9], logM_star_sps_observed=[11.5],
    ...                         mA=[24.0], mB=[24.8]))
    >>> df = read_catalogue(cat, unit="arcsec", zl=0.3, zs=2.0)
    >>> round(float(df.xA.iloc[0]), 3)
    6.681
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    df = _load(path_or_table, key)
    df = df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns and v not in df.columns})
    if "logRe" not in df.columns and "logRe_arcsec" in df.columns:
        df = df.copy()
        df["logRe"] = np.nan      # filled after the redshifts are known
        re_arcsec = True
    else:
        re_arcsec = False
    unknown_required = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if unknown_required:
        hint = _closest(unknown_required, df.columns)
        raise ValueError(f"catalogue is missing column(s) {unknown_required}{hint}; required: "
                         f"{list(REQUIRED_COLUMNS)} (optional: zl, zs; aliases: {ALIASES})")
    if re_arcsec:
        if "zl" not in df.columns and zl is None:
            raise ValueError("catalogue has no 'zl' column and no zl was given: logRe_arcsec needs the lens redshift")
        z = pd.to_numeric(df["zl"], errors="coerce").to_numpy(float) if "zl" in df.columns else np.full(len(df), zl)
        v = pd.to_numeric(df["logRe_arcsec"], errors="coerce").to_numpy(float)
        _check_numeric("logRe_arcsec", v, df)
        df["logRe"] = np.log10(arcsec_to_kpc(10.0 ** v, _finite_z(z, df), cosmo=get_cosmology(cosmo)))
    obs = check_observed_table(df, zl, zs)
    rows = obs.pop("row")
    out = pd.DataFrame({k: obs[k] for k in REQUIRED_COLUMNS + ("zl", "zs")}, index=rows)
    if unit == "arcsec":
        out["xA"] = np.asarray(arcsec_to_kpc(out["xA"].to_numpy(), out["zl"].to_numpy(), cosmo=get_cosmology(cosmo)))
        out["xB"] = np.asarray(arcsec_to_kpc(out["xB"].to_numpy(), out["zl"].to_numpy(), cosmo=get_cosmology(cosmo)))
    return out


def _load(src, key) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        return src
    p = Path(src)
    if not p.exists():
        raise FileNotFoundError(f"catalogue {p} does not exist")
    if p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        import h5py

        from sl_cy.io import read_dataframe

        with h5py.File(p, "r") as f:
            name = key or ("observed" if "observed" in f else None)
            if name is None or name not in f:
                raise ValueError(f"{p}: no table group {key or 'observed'!r}; groups: {list(f.keys())}")
            df = read_dataframe(f[name])
    else:
        df = pd.read_csv(p, sep=None, engine="python", comment="#")
        df.index = np.arange(1, len(df) + 1)      # 1-based data rows for messages
    if len(df) == 0:
        raise ValueError(f"catalogue {p} has no rows")
    return df


def _check_numeric(name, v, df):
    bad = ~np.isfinite(v)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"column {name!r} has a non-finite value {df[name].iloc[i]!r} in row {int(df.index[i])!r}")


def _finite_z(z, df):
    bad = ~(np.isfinite(z) & (z > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"column 'zl' has an invalid value {z[i]!r} in row {df.index[i]!r}")
    return z


def _closest(missing, columns) -> str:
    import difflib

    sugg = {m: difflib.get_close_matches(m, [str(c) for c in columns], n=1, cutoff=0.6) for m in missing}
    parts = [f"{m!r} (found {s[0]!r}?)" for m, s in sugg.items() if s]
    return f" — did you mean: {', '.join(parts)}" if parts else ""
