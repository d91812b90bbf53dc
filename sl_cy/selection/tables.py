"""A(eta) tabulated over some eta components (files ``Aeta_<axes>_<sizes>.h5``), from any selection engine."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sl_cy import _selection
from sl_cy._validate import as_float_array
from sl_cy._version import __version__
from sl_cy.config import DEFAULT_C_HALO, DEFAULT_ZL, DEFAULT_ZS, SurveyConfig
from sl_cy.cosmology import get_cosmology
from sl_cy.forward import ForwardModel, as_forward_model
from sl_cy.io import atomic_h5, config_hash, read_attrs, to_jsonable, write_attrs
from sl_cy.parallel import map_chunks
from sl_cy.population import (DEFAULT_ETA, ETA_BOX, ETA_NAMES, GAMMA_HI, GAMMA_LO, PIVOT_LOGM, Eta, _check_n,
                              _log_ndtr_diff, logRe_given_logM, logRe_logpdf, model_params, mstar_gene,
                              mstar_logpdf, gamma_logpdf)
from sl_cy.selection.base import ESS_WARN_THRESHOLD, Selection, SelectionWarning, eta_batch

from sl_cy.selection.bank import SelectionBank

TABLE_KIND = "sl_cy.A_eta_table"
TABLE_SCHEMA = "sl_cy.A_eta_table/2"


def parse_axes(spec: str) -> dict:
    """Parse ``"name:start:stop:step,..."`` eta axes (stop included, the one axis-spec format of
    sl_cy) into {name: grid}.

    Examples
    --------
    >>> {k: v.tolist() for k, v in parse_axes("mu_h:12:14:1").items()}
    {'mu_h': [12.0, 13.0, 14.0]}
    """
    from sl_cy._validate import parse_axis_specs

    axes = parse_axis_specs(spec, ETA_NAMES)
    for name, grid in axes.items():
        if len(grid) < 2:
            raise ValueError(f"axis {name!r} has a single point {grid.tolist()}: the format is name:start:stop:step "
                             f"(e.g. {name}:{grid[0]:g}:{grid[0] + 1:g}:0.1 for 11 points); fix a value with --fixed")
    return axes


def _check_axes(axes: dict) -> dict:
    if not isinstance(axes, dict) or not axes:
        raise ValueError("axes must be a non-empty dict {eta name: grid}")
    out = {}
    for name, grid in axes.items():
        if name not in ETA_NAMES:
            raise ValueError(f"unknown eta axis {name!r}; names are {ETA_NAMES}")
        g = as_float_array(f"axes[{name!r}]", grid)
        if g.ndim != 1 or g.size < 1 or np.any(np.diff(g) <= 0):
            raise ValueError(f"axes[{name!r}] must be a 1-D strictly increasing grid")
        if name.startswith("sigma") and g[0] <= 0:
            raise ValueError(f"axes[{name!r}] must be > 0")
        out[name] = g
    # keep eta order, so the file name and the interpolator are canonical
    return {k: out[k] for k in ETA_NAMES if k in out}


def _fixed_eta(fixed) -> Eta:
    if fixed is None:
        return DEFAULT_ETA
    if isinstance(fixed, dict):
        unknown = set(fixed) - set(ETA_NAMES)
        if unknown:
            raise ValueError(f"unknown eta field(s) {sorted(unknown)}; fields are {ETA_NAMES}")
        return DEFAULT_ETA._replace(**{k: float(v) for k, v in fixed.items()}).validate()
    return Eta.from_array(np.asarray(fixed.to_array() if isinstance(fixed, Eta) else fixed, float))


@dataclass(eq=False)
class AEtaTable(Selection):
    """A(eta) tabulated on a grid of some eta components, the others fixed; callable on the full eta.

    Attributes
    ----------
    axes : list of str
        Tabulated components, in eta order.
    grids : list of ndarray
    values : ndarray
        A on the grid, shape ``[len(g) for g in grids]``.
    ess : ndarray
        Effective sample size of each entry.
    fixed : Eta
        Values of every component (those on an axis are ignored).
    source_hash, source_config : str, dict
        Hash and configuration of the engine the table was computed from.
    forward_model : ForwardModel
        The forward model of that engine.
    method : {"cubic", "linear"}
        Interpolation of log A in the table axes (default cubic; linear is used when an axis has
        fewer than 4 points). For the 11x11x9x7 (alpha_sps, mu_h, beta_h, sigma_h) bank table of
        earlier versions the interpolation error against the bank was 0.2 % median, 1 % at the 90th
        percentile with cubic (linear: 3 % and 8 %).
    """

    axes: list
    grids: list
    values: np.ndarray
    ess: np.ndarray
    fixed: Eta
    source_hash: str = ""
    source_config: dict = field(default_factory=dict)
    forward_model: ForwardModel = None
    method: str = "cubic"
    path: Path | None = None
    fixed_rtol: float = 1e-9

    def __post_init__(self):
        self.values = np.asarray(self.values, float)
        self.ess = np.asarray(self.ess, float)
        self.grids = [np.asarray(g, float) for g in self.grids]
        if self.values.shape != tuple(len(g) for g in self.grids):
            raise ValueError(f"values shape {self.values.shape} does not match the grids "
                             f"{tuple(len(g) for g in self.grids)}")
        if self.method not in ("linear", "cubic"):
            raise ValueError(f"method must be 'linear' or 'cubic', got {self.method!r}")
        self._interp = None
        self.forward_model = as_forward_model(self.forward_model)

    @property
    def name(self) -> str:
        return table_filename(dict(zip(self.axes, self.grids)))

    def _build(self):
        from scipy.interpolate import RegularGridInterpolator

        live = [i for i, g in enumerate(self.grids) if len(g) > 1]
        if not live:
            self._interp = ("const", float(self.values.ravel()[0]))
            return
        with np.errstate(divide="ignore"):
            lv = np.log(np.squeeze(self.values, axis=tuple(i for i in range(len(self.grids)) if i not in live)))
        lv = np.where(np.isfinite(lv), lv, -745.0)
        method = self.method
        if method == "cubic" and any(len(self.grids[i]) < 4 for i in live):
            method = "linear"            # cubic needs >= 4 points on every table axis
        self._interp = ("rgi", live, RegularGridInterpolator([self.grids[i] for i in live], lv, method=method,
                                                             bounds_error=False, fill_value=None))

    def lens_fraction(self, eta):
        """A at eta (6,) -> float or (n, 6) -> array; 0.0 outside the table (but the posterior
        never asks there: :attr:`bounds` limits the prior).

        Performance
        -----------
        ~20 us per call + ~1 us per eta (scipy RegularGridInterpolator on log A).

        Precision
        ---------
        Interpolation error of log A on the grid spacing (cubic O(h^4), linear O(h^2)); the
        table values carry the bank's MC error ~ 1/sqrt(ESS). Linear reproduces the nodes
        exactly; scipy's cubic spline fit is solved iteratively and reproduces them to ~1e-5.
        """
        e, scalar = eta_batch(eta)
        if self._interp is None:
            self._build()
        idx = {n: ETA_NAMES.index(n) for n in self.axes}
        ok = np.ones(len(e), dtype=bool)
        for n, g in zip(self.axes, self.grids):
            v = e[:, idx[n]]
            tol = 1e-12 * max(1.0, abs(g[-1]))
            ok &= (v >= g[0] - tol) & (v <= g[-1] + tol)
        fx = self.fixed.to_array()
        for j, name in enumerate(ETA_NAMES):
            if name not in self.axes:
                ok &= np.abs(e[:, j] - fx[j]) <= self.fixed_rtol * max(1.0, abs(fx[j]))
        out = np.zeros(len(e))
        if ok.any():
            if self._interp[0] == "const":
                out[ok] = self._interp[1]
            else:
                _, live, rgi = self._interp
                pts = np.stack([np.clip(e[ok, idx[self.axes[i]]], self.grids[i][0], self.grids[i][-1])
                                for i in live], axis=-1)
                out[ok] = np.exp(rgi(pts))
        out = np.where(out > 1e-320, out, 0.0)
        return float(out[0]) if scalar else out

    @property
    def bounds(self) -> dict:
        """{name: (lo, hi)}: the table axes, and each fixed component pinned to its value (the
        support of A, hence of the prior)."""
        b = {n: (float(g[0]), float(g[-1])) for n, g in zip(self.axes, self.grids)}
        for name, v in self.fixed.to_dict().items():
            if name not in b:
                tol = self.fixed_rtol * max(1.0, abs(v))
                b[name] = (v - tol, v + tol)
        return b


def table_filename(axes: dict) -> str:
    """``Aeta_<axes>_<sizes>.h5``, e.g. ``Aeta_alpha_sps-mu_h_11x11.h5``."""
    names = "-".join(axes)
    sizes = "x".join(str(len(g)) for g in axes.values())
    return f"Aeta_{names}_{sizes}.h5"


def compute_Aeta_grid(engine, axes: dict, fixed=None, *, n_threads: int = 1, block: int = 4096) -> AEtaTable:
    """Tabulate A(eta) over a named subset of eta from any selection engine (seed name).

    Parameters
    ----------
    engine : Selection
        :class:`~sl_cy.selection.SelectionQuadrature` (recommended: deterministic) or
        :class:`~sl_cy.selection.SelectionBank`.
    axes : dict {name: 1-D increasing grid}
        Any subset of :data:`ETA_NAMES` (stored in eta order).
    fixed : Eta, dict or (6,), optional
        Values of the other components (default :data:`DEFAULT_ETA`; a dict updates it).
    n_threads : int or None
        OpenMP threads of a bank engine (-1 or None: all cores; values identical for any number).
    block : int
        Grid points per engine call.

    Returns
    -------
    AEtaTable
        Callable on the full eta; write it with :func:`write_A_eta_hdf5`.

    Performance
    -----------
    ~3 ms per grid point for either engine (1e5 bank) on one core.

    Examples
    --------
    >>> from sl_cy.selection import build_selection_bank
    >>> bank = build_selection_bank(20_000, seed=1)
    >>> t = compute_Aeta_grid(bank, {"mu_h": np.linspace(12.5, 13.5, 5)})
    >>> t.values.shape
    (5,)
    """
    if not isinstance(engine, Selection):
        raise ValueError(f"engine must be a selection engine (SelectionQuadrature or SelectionBank), "
                         f"got {type(engine).__name__}")
    axes = _check_axes(axes)
    fx = _fixed_eta(fixed)
    names = list(axes)
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    pts = np.tile(fx.to_array(), (mesh[0].size, 1))
    for n, m in zip(names, mesh):
        pts[:, ETA_NAMES.index(n)] = m.ravel()
    A = np.empty(len(pts))
    ess = np.full(len(pts), np.inf)
    for i in range(0, len(pts), block):
        if isinstance(engine, SelectionBank):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SelectionWarning)
                A[i:i + block], ess[i:i + block] = engine.evaluate(pts[i:i + block], return_ess=True, warn=False,
                                                                   n_threads=n_threads)
        else:
            A[i:i + block] = engine(pts[i:i + block])
    if isinstance(engine, SelectionBank):
        low = int((ess < engine.ess_threshold).sum())
        if low:
            warnings.warn(f"{low} of {len(pts)} table entries have ESS < {engine.ess_threshold:g} "
                          f"(min {ess.min():.1f}); widen the proposal or enlarge the bank", SelectionWarning,
                          stacklevel=2)
    shape = tuple(len(g) for g in axes.values())
    return AEtaTable(names, list(axes.values()), A.reshape(shape), ess.reshape(shape), fx, engine.config_hash,
                     dict(engine.config), engine.forward_model)


def write_A_eta_hdf5(path, table: AEtaTable, *, extra_attrs: dict | None = None) -> Path:
    """Write an :class:`AEtaTable` to HDF5 atomically (seed name).

    ``path`` may be a folder: the file is then ``<folder>/Aeta_<axes>_<sizes>.h5``
    (:func:`table_filename`). Layout: datasets ``A`` and ``ess`` (grid shape), ``grids/<name>``;
    attributes ``kind``, ``axes``, ``fixed`` (all six values), ``bank_hash``, ``bank_config``,
    ``survey``, ``model``, ``sl_cy_version``.

    Returns
    -------
    Path
    """
    if not isinstance(table, AEtaTable):
        raise ValueError(f"table must be an AEtaTable, got {type(table).__name__}")
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / table.name
    with atomic_h5(path) as f:
        f.attrs["kind"] = TABLE_KIND
        f.attrs["schema"] = TABLE_SCHEMA
        write_attrs(f, dict(axes=list(table.axes), fixed=table.fixed.to_dict(), source_hash=table.source_hash,
                            source_config=table.source_config, forward_model=table.forward_model.to_dict(),
                            forward_model_hash=table.forward_model.hash, quantity="lens_fraction",
                            sl_cy_version=__version__, eta_names=list(ETA_NAMES), **(extra_attrs or {})))
        f.create_dataset("A", data=table.values)
        f.create_dataset("ess", data=table.ess)
        g = f.create_group("grids")
        for n, grid in zip(table.axes, table.grids):
            g.create_dataset(n, data=grid)
    table.path = path
    return path


def write_A_eta_hdf5_1d(path, axis: str, grid, *, values, fixed=None, ess=None, bank: SelectionBank | None = None,
                        extra_attrs: dict | None = None) -> Path:
    """Write a 1-D A(eta) table (seed name): A on ``grid`` of component ``axis``, the rest ``fixed``.

    Parameters
    ----------
    path : str or Path (file or folder)
    axis : str
        One of :data:`ETA_NAMES`.
    grid, values : 1-D arrays of equal length
    fixed : Eta, dict or (6,), optional (default :data:`DEFAULT_ETA`)
    ess : 1-D array, optional
    bank : SelectionBank, optional
        Records its hash and configuration.
    """
    axes = _check_axes({axis: grid})
    g = axes[axis]
    v = as_float_array("values", values, lo=0.0)
    if v.shape != g.shape:
        raise ValueError(f"values must have the shape of grid {g.shape}, got {v.shape}")
    e = np.full(g.shape, np.inf) if ess is None else as_float_array("ess", ess)
    t = AEtaTable([axis], [g], v, e, _fixed_eta(fixed), bank.config_hash if bank else "",
                  dict(bank.config) if bank else {}, bank.forward_model if bank else None)
    return write_A_eta_hdf5(path, t, extra_attrs=extra_attrs)


def load_A_eta_table(path, method: str = "cubic") -> AEtaTable:
    """Read a table written by :func:`write_A_eta_hdf5`; callable A(eta) on the full eta."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no A(eta) table at {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != TABLE_KIND:
            raise ValueError(f"{path} is not an A(eta) table (kind={f.attrs.get('kind')!r})")
        a = read_attrs(f)
        axes = list(a["axes"])
        grids = [f["grids"][n][()] for n in axes]
        values = f["A"][()]
        ess = f["ess"][()] if "ess" in f else np.full(values.shape, np.inf)
    if a.get("quantity") != "lens_fraction" or "forward_model" not in a:
        raise ValueError(f"{path} is an A(eta) table of an older sl_cy (expected detected sources per galaxy, "
                         "not the lens fraction); rebuild it with `sl-cy aeta`")
    return AEtaTable(axes, grids, values, ess, Eta(**a["fixed"]), a.get("source_hash", ""),
                     a.get("source_config", {}), ForwardModel.from_dict(a["forward_model"]), method=method, path=path)


def cached_A(path=None, method: str = "cubic", forward_model=None):
    """The A(eta) of the seed's API: a table file (``path``), or the default engine of a forward
    model (seed name).

    The shipped bank-based table of earlier versions is retired: it tabulated E[T] with Monte-Carlo
    noise for one survey. Without ``path`` this returns :func:`sl_cy.selection.selection_for`
    of ``forward_model`` (default ``ForwardModel()``): the deterministic quadrature, built once and
    cached.

    Parameters
    ----------
    path : str or Path, optional
        A table written by :func:`write_A_eta_hdf5`.
    method : {"cubic", "linear"}
        Interpolation of a table file.
    forward_model : ForwardModel, optional

    Returns
    -------
    Selection
        ``A(eta)`` for eta (6,) -> float or (n, 6) -> array.

    Examples
    --------
    >>> A = cached_A()
    >>> bool(0.003 < A(DEFAULT_ETA) < 0.005)
    True
    """
    if path is not None:
        return load_A_eta_table(path, method)
    from sl_cy.selection.quadrature import selection_for

    return selection_for(forward_model)
