"""Per-lens likelihood grids: the eta-independent part of each lens's likelihood.

For every observed lens and every point (logMh_j, gamma_k) of a grid, the inversion of the two
image positions gives the stellar mass logM* and the source position beta that reproduce the
images with that halo; with them come the magnifications, the analytic Jacobian |J| and the
photometric factor F_phot. None of this depends on the hyper-parameters eta, so it is computed
once per lens and stored (:class:`LensGrid`); the likelihood then only re-weights the grid.

A point that is not a valid two-image lens (M* <= 0, beta outside [0, y_c), no radial caustic,
x_B inside the radial critical curve) keeps its ``valid`` status code (non-zero, see
:class:`sl_cy.lensing.Status`) and contributes zero weight.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sl_cy import _tabulate
from sl_cy._validate import as_float_array
from sl_cy._version import __version__
from sl_cy.config import DEFAULT_C_HALO, DEFAULT_ZL, DEFAULT_ZS, SurveyConfig
from sl_cy.cosmology import get_cosmology
from sl_cy.forward import HALO_SUPPORT, ForwardModel, as_forward_model
from sl_cy.io import array_digest, atomic_h5, config_hash, read_attrs, write_attrs, write_json_atomic
from sl_cy.lensing import Status, _check_lens, invert_images
from sl_cy.parallel import iter_chunks

#: Default grid axes (log10 M200 and gamma_in): the halo support of the default forward model
#: (:data:`sl_cy.forward.HALO_SUPPORT`) at 0.1 dex and the gamma_in support at 0.1.
DEFAULT_LOGMH_GRID = np.round(np.arange(HALO_SUPPORT[0], HALO_SUPPORT[1] + 1e-9, 0.1), 10)
DEFAULT_GAMMA_GRID = np.round(np.arange(0.0, 2.0 + 1e-9, 0.1), 10)

#: Arrays of the lensing solution at each grid point.
SOLUTION_ARRAYS = ("logM_star", "beta", "ycaustic", "muA", "muB", "detJ", "F_phot")
#: All per-point arrays of a grid: the solution plus the point's halo mass and quadrature weight.
GRID_ARRAYS = SOLUTION_ARRAYS + ("logMh", "wq")

#: Per-slot piece codes of an adaptive grid (``LensGrid.piece``): ``node`` on every node of an
#: adaptive piece, plus ``first`` / ``last`` on its end nodes (half trapezoid weight); 0 = no
#: piece information (regular grid, padding, or grids tabulated before it was recorded).
PIECE_CODES = dict(_tabulate.PIECE_CODES)
#: Layout version of the tabulated grid arrays (part of the tabulation cache key): 2 adds ``piece``.
GRID_LAYOUT = 2
#: Status code of padding slots of an adaptive grid (a column with fewer nodes than the array).
PADDING = 100

#: Adaptive quadrature (:func:`adaptive_columns`): node spacing scales of logMh and logM* (dex).
ADAPTIVE_SCALES = (0.1, 0.1)
#: Default window of the lensing stellar mass kept by the adaptive rule, relative to the observed
#: SPS mass: covers alpha_sps in the default prior box [-0.5, 0.5] plus 10 sigma of the SPS-mass
#: measurement (0.1), beyond which the integrand is < e^-50 of its Gaussian peak.
ADAPTIVE_MSTAR_WINDOW = (-1.5, 1.5)
#: Column-step refinement of the adaptive rule: a lens whose eta-independent weight
#: W = beta |J| F_phot has a column peak sharper than this (|second difference of log W| per
#: node^2, :func:`weight_peak_curvature`) is tabulated again at half the column step.
WEIGHT_PEAK_CURVATURE = 10.0
#: Most halvings of the column step per lens (the default of ``peak_halvings``).
WEIGHT_PEAK_HALVINGS = 2
OBSERVED_FIELDS = ("xA", "xB", "logRe", "logM_star_sps_observed", "magnitude_observedA",
                   "magnitude_observedB", "zl", "zs")


def trapezoid_weights(axis) -> np.ndarray:
    """Trapezoid-rule weights of a (possibly non-uniform) increasing axis; a single node has weight 1.

    Examples
    --------
    >>> trapezoid_weights([0.0, 1.0, 2.0, 4.0])
    array([0.5, 1. , 1.5, 1. ])
    >>> trapezoid_weights([1.0])
    array([1.])
    """
    x = np.asarray(axis, dtype=float).ravel()
    if len(x) == 1:
        return np.ones(1)
    d = np.diff(x)
    w = np.zeros(len(x))
    w[:-1] += 0.5 * d
    w[1:] += 0.5 * d
    return w



@dataclass
class LensGrid:
    """Eta-independent likelihood grid of one lens.

    Attributes
    ----------
    logMh_axis : ndarray, shape (n_Mh,)
        Halo-mass grid log10 M200 (Msun).
    gamma_axis : ndarray, shape (n_gamma,)
        Inner-slope grid; a single value means gamma_in is fixed (1-D logMh grid).
    logM_star, beta, ycaustic, muA, muB, detJ, F_phot : ndarray, shape (n_Mh, n_gamma)
        Inverted stellar mass (log10 Msun, the lensing mass M* = M*_sps 10^alpha_sps), source
        position and radial caustic (kpc), absolute magnifications, Jacobian
        |d(logM*, beta)/d(x_A, x_B)| (1/kpc) and photometric factor (1/mag^2 for "observed").
    logMh : ndarray, shape (n_Mh, n_gamma)
        Halo mass of each point: the axis value for a regular grid; the node of its gamma column
        for an adaptive grid (:func:`adaptive_columns`).
    wq : ndarray, shape (n_Mh, n_gamma)
        Quadrature weight of each point in d(logMh) d(gamma): the trapezoid weights of the axes
        for a regular grid, the arc-length rule of :func:`adaptive_columns` otherwise.
    valid : ndarray of int8, shape (n_Mh, n_gamma)
        0 where the point is a valid two-image lens, otherwise the :class:`sl_cy.lensing.Status` code
        (or :data:`PADDING` for an unused slot of an adaptive column).
    piece : ndarray of int8, shape (n_Mh, n_gamma)
        Piece codes of an adaptive grid (:data:`PIECE_CODES`: which slots are nodes of one piece
        of a column, uniform in arc length, and which are its ends); all 0 (no information) for a
        regular grid or adaptive grids saved before it was recorded (the likelihood then uses
        the plain rule, without eta-adaptive sub-sampling of the columns).
    observed : dict
        The lens's observed inputs (``OBSERVED_FIELDS``).
    config : dict
        What the grid was computed with (c_halo, sigma_m, m_lim, detection, cosmology, ...).

    Examples
    --------
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]))
    >>> g.shape
    (3, 1)
    """

    logMh_axis: np.ndarray
    gamma_axis: np.ndarray
    _: KW_ONLY
    logM_star: np.ndarray
    beta: np.ndarray
    ycaustic: np.ndarray
    muA: np.ndarray
    muB: np.ndarray
    detJ: np.ndarray
    F_phot: np.ndarray
    valid: np.ndarray
    observed: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    logMh: np.ndarray | None = None
    wq: np.ndarray | None = None
    piece: np.ndarray | None = None

    def __post_init__(self):
        shape = np.shape(self.logM_star)
        if self.piece is None:
            self.piece = np.zeros(shape, np.int8)
        if self.logMh is None:
            self.logMh = np.broadcast_to(np.asarray(self.logMh_axis, float)[:, None], shape).copy()
        if self.wq is None:
            self.wq = trapezoid_weights(self.logMh_axis)[:, None] * trapezoid_weights(self.gamma_axis)[None, :]
            self.wq = np.broadcast_to(self.wq, shape).copy()

    @classmethod
    def empty(cls, logMh_axis, gamma_axis, observed=None, config=None):
        """A grid of the given axes with NaN arrays and status BAD_INPUT everywhere."""
        shape = (len(logMh_axis), len(gamma_axis))
        arrays = {k: np.full(shape, np.nan) for k in SOLUTION_ARRAYS}
        return cls(np.asarray(logMh_axis, float), np.asarray(gamma_axis, float), valid=np.full(shape, int(Status.BAD_INPUT), np.int8),
                   observed=dict(observed or {}), config=dict(config or {}), **arrays)

    @property
    def shape(self):
        return self.logM_star.shape

    @property
    def adaptive(self) -> bool:
        """True for an adaptive grid (per-column halo-mass nodes)."""
        return bool(self.config.get("quadrature") == "adaptive")

    @property
    def is_valid(self) -> np.ndarray:
        """Boolean mask of the valid grid points."""
        return self.valid == 0

    @property
    def n_invalid(self) -> int:
        """Number of grid points without a physical solution (they contribute zero; padding
        slots of an adaptive grid are not counted)."""
        return int(np.count_nonzero((self.valid != 0) & (self.valid != PADDING)))

    def weight(self) -> np.ndarray:
        """beta |J| F_phot on valid points and 0 elsewhere (the eta-independent factor of the
        integrand, up to the constant 2 pi n_bkg; the quadrature weight ``wq`` is separate)."""
        w = self.beta * self.detJ * self.F_phot
        return np.where(self.is_valid & np.isfinite(w), w, 0.0)

    def invalid_reasons(self) -> dict:
        """Counts of invalid points by reason."""
        codes, counts = np.unique(self.valid[(self.valid != 0) & (self.valid != PADDING)], return_counts=True)
        return {Status(int(c)).name: int(n) for c, n in zip(codes, counts)}

    # --- HDF5 ----------------------------------------------------------------------------
    def to_hdf5(self, group) -> None:
        """Write into an (open, empty) h5py group: datasets for axes and arrays, attributes for
        the observed inputs and the configuration."""
        group.create_dataset("logMh_axis", data=self.logMh_axis)
        group.create_dataset("gamma_axis", data=self.gamma_axis)
        for k in GRID_ARRAYS:
            group.create_dataset(k, data=getattr(self, k))
        group.create_dataset("valid", data=self.valid.astype(np.int8))
        group.create_dataset("piece", data=self.piece.astype(np.int8))
        obs = group.create_group("observed")
        for k, v in self.observed.items():
            obs.attrs[k] = v
        cfg = group.create_group("config")
        for k, v in self.config.items():
            cfg.attrs[k] = json.dumps(v) if isinstance(v, dict) else v

    @classmethod
    def from_hdf5(cls, group) -> "LensGrid":
        """Read a grid written by :meth:`to_hdf5`."""
        arrays = {k: group[k][()] for k in GRID_ARRAYS}
        arrays["piece"] = group["piece"][()].astype(np.int8) if "piece" in group else None    # older files: none
        observed = {k: _py(v) for k, v in group["observed"].attrs.items()}
        config = {k: _py(v) for k, v in group["config"].attrs.items()}
        config = {k: json.loads(v) if isinstance(v, str) and v.startswith("{") else v for k, v in config.items()}
        return cls(group["logMh_axis"][()], group["gamma_axis"][()], valid=group["valid"][()].astype(np.int8),
                   observed=observed, config=config, **arrays)

    def equals(self, other: "LensGrid") -> bool:
        """Bit-for-bit equality of axes, arrays (NaN == NaN), status, inputs and configuration."""
        same = all(np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                   for k in ("logMh_axis", "gamma_axis", "valid", "piece") + GRID_ARRAYS)
        return same and self.observed == other.observed and self.config == other.config


def _py(v):
    """HDF5 attribute value -> plain Python scalar / string."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


# --------------------------------------------------------------------------------------------
# observed table
# --------------------------------------------------------------------------------------------
REQUIRED_COLUMNS = ("xA", "xB", "logRe", "logM_star_sps_observed", "magnitude_observedA", "magnitude_observedB")


def _plain(v):
    """numpy scalar -> Python scalar, for readable messages."""
    return v.item() if isinstance(v, np.generic) else v


def check_observed_table(table, zl=None, zs=None) -> dict:
    """Validate an observed-lens table and return its columns as float arrays.

    Parameters
    ----------
    table : pandas.DataFrame or mapping of column -> array
        Must hold ``REQUIRED_COLUMNS`` (x in kpc) and per-lens ``zl``, ``zs`` columns unless the
        redshifts are given.
    zl, zs : float, optional
        Redshifts used when the table has no such column (no silent default: a table without a
        column and without its value is an error).

    Returns
    -------
    dict
        The required columns plus ``zl``, ``zs`` (float arrays, images oriented x_A > 0 > x_B)
        and ``row`` (the table's index labels, for messages).

    Raises
    ------
    ValueError
        naming the missing column, or the column and row of a non-finite value, or the row whose
        images lie on the same side of the lens, or zs <= zl.
    """
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"observed table is missing column(s) {missing}; required: {list(REQUIRED_COLUMNS)} "
                         f"(optional: zl, zs); it has {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("observed table has no rows")
    out = {}
    for c in REQUIRED_COLUMNS + ("zl", "zs"):
        if c in df.columns:
            a = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        else:
            z = zl if c == "zl" else zs
            if z is None:
                raise ValueError(f"observed table has no {c!r} column and no {c} was given: give the lens and source "
                                 f"redshifts per lens (columns zl, zs) or one value for all ({c}=..., --{c})")
            a = np.full(len(df), float(as_float_array(c, z)))
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"column {c!r} has a non-finite value {_plain(df[c].iloc[i])!r} in row {_plain(df.index[i])!r} "
                             f"({int(bad.sum())} bad row(s))")
        out[c] = a
    same = out["xA"] * out["xB"] >= 0
    if same.any():
        i = int(np.argmax(same))
        raise ValueError(f"row {_plain(df.index[i])!r}: xA={float(out['xA'][i])!r} and xB={float(out['xB'][i])!r} must lie on opposite "
                         "sides of the lens centre")
    bad_z = ~((out["zl"] > 0) & (out["zs"] > out["zl"]))
    if bad_z.any():
        i = int(np.argmax(bad_z))
        raise ValueError(f"row {_plain(df.index[i])!r}: need 0 < zl < zs, got zl={float(out['zl'][i])!r}, "
                         f"zs={float(out['zs'][i])!r}")
    sign = np.sign(out["xA"])
    out["xA"], out["xB"] = out["xA"] * sign, out["xB"] * sign
    out["row"] = np.asarray(df.index)
    return out


# --------------------------------------------------------------------------------------------
# tabulation
# --------------------------------------------------------------------------------------------
def photometry_for(survey: SurveyConfig):
    """The :class:`sl_cy.photometry.PhotometryModel` of a survey configuration (shared, cached)."""
    from sl_cy.photometry import get_photometry_model

    s = survey.source
    return get_photometry_model(survey.detection, m_lim=survey.m_lim, sigma_m=survey.sigma_m, m_star=s.m_star,
                                alpha_s=s.alpha_s, m_min=s.m_min, m_max=s.m_max)


def adaptive_n_nodes(logMh_range, step=1.0, *, scales=ADAPTIVE_SCALES, window=ADAPTIVE_MSTAR_WINDOW) -> int:
    """Node slots per gamma column of an adaptive grid: the arc length of a monotone column
    through the whole (logMh, logM*) window divided by the step, plus 3."""
    lo, hi = float(np.min(logMh_range)), float(np.max(logMh_range))
    return int(np.ceil(((hi - lo) / scales[0] + (window[1] - window[0]) / scales[1]) / step)) + 3


def adaptive_columns_batch(xA, xB, logRe, *, m_obs, gamma_axis, logMh_axis, c_halo=DEFAULT_C_HALO, zl=DEFAULT_ZL,
                           zs=DEFAULT_ZS, cosmo=None, step=1.0, scales=ADAPTIVE_SCALES, window=ADAPTIVE_MSTAR_WINDOW,
                           n_nodes=None, max_rounds=30, n_threads=1, info=False):
    """:func:`adaptive_columns` for many lenses in one compiled call (``prange`` over lenses).

    Parameters
    ----------
    xA, xB, logRe, m_obs, zl, zs : float or array, broadcast to (n_lens,)
        Per-lens images (kpc, x_A > 0 > x_B), log size, observed SPS mass and redshifts.
    gamma_axis, logMh_axis, c_halo, cosmo, step, scales, window, n_nodes, max_rounds :
        As in :func:`adaptive_columns` (shared by all lenses).
    n_threads : int or None
        OpenMP threads over lenses (-1 or None: all cores); results do not depend on it.
    info : bool
        Also return a dict with ``n_points`` (logM* evaluations per lens), ``n_pieces``
        (contiguous valid pieces per lens and column, shape (n_lens, n_gamma)) and ``piece`` (the
        piece code of each slot, :data:`PIECE_CODES`, shape of ``logMh``).

    Returns
    -------
    logMh, wq : ndarray, shape (n_lens, n_nodes, n_gamma)
        Nodes (NaN in unused slots) and weights in d(logMh) d(gamma) (0 in unused slots).

    Raises
    ------
    ValueError
        for invalid inputs (as :func:`sl_cy.lensing.invert_images`), a scan axis that is not
        strictly increasing, or ``n_nodes`` too small to give each valid piece of a column two
        slots.

    Performance
    -----------
    About 1.4 ms per lens on the default grids (``DEFAULT_LOGMH_GRID`` x ``DEFAULT_GAMMA_GRID``,
    ~3500 logM* evaluations at ~0.4 us) on one core, against ~17 ms for the Python rule it
    replaced; lenses are spread over ``n_threads`` (``benchmarks/bench_grids.py``).

    Precision
    ---------
    As :func:`adaptive_columns`.

    Examples
    --------
    >>> mh, w = adaptive_columns_batch([6.62, 5.0], [-3.07, -2.5], 0.9, m_obs=[11.5, 11.3],
    ...                                gamma_axis=np.array([0.8, 1.0]), logMh_axis=np.arange(11.0, 15.0, 0.05))
    >>> mh.shape[0], mh.shape[2], bool((w.sum(axis=(1, 2)) > 0).all())
    (2, 2, True)
    """
    xa = as_float_array("xA", xA, lo=0.0, lo_open=True)
    xb = as_float_array("xB", xB, hi=0.0, hi_open=True)
    mo = as_float_array("m_obs", m_obs)
    _, m0, re, gam, c, zlv, zsv = _check_lens(logMh_axis, logRe, gamma_axis, c_halo, zl, zs)
    m0, gam = m0.ravel(), gam.ravel()
    if np.ndim(c) != 0:
        raise ValueError("c_halo must be a scalar")
    if len(m0) == 0 or np.any(np.diff(m0) <= 0):
        raise ValueError("logMh_axis must be non-empty and strictly increasing")
    step = float(as_float_array("step", step, lo=0.0, lo_open=True))
    a, b = (float(v) for v in as_float_array("scales", scales, lo=0.0, lo_open=True))
    w_lo, w_hi = (float(v) for v in as_float_array("window", window))
    if not w_lo < w_hi:
        raise ValueError(f"window must be (lo, hi) with lo < hi, got {window!r}")
    n_nodes = int(n_nodes or adaptive_n_nodes(m0, step, scales=scales, window=window))
    per_lens = [np.ascontiguousarray(v, dtype=float).ravel() for v in np.broadcast_arrays(xa, xb, re, mo, zlv, zsv)]
    nodes, wq, flags, n_points, n_pieces, piece = _tabulate.adaptive_columns_batch(
        *per_lens, np.ascontiguousarray(gam), trapezoid_weights(gam), np.ascontiguousarray(m0), float(c),
        *get_cosmology(cosmo).params, step, a, b, w_lo, w_hi, n_nodes, int(max_rounds), n_threads)
    if flags.any():
        i = int(np.argmax(flags != 0))
        raise ValueError(f"adaptive_columns: lens {i}: {_tabulate.FLAGS.get(int(flags[i]), flags[i])} "
                         f"(n_nodes={n_nodes})")
    if info:
        return nodes, wq, dict(n_points=n_points, n_pieces=n_pieces, piece=piece)
    return nodes, wq


def adaptive_columns(xA, xB, logRe, *, m_obs, gamma_axis, logMh_axis, c_halo=DEFAULT_C_HALO, zl=DEFAULT_ZL,
                     zs=DEFAULT_ZS, cosmo=None, step=1.0, scales=ADAPTIVE_SCALES, window=ADAPTIVE_MSTAR_WINDOW,
                     n_nodes=None, max_rounds=30):
    """Halo-mass nodes and quadrature weights of one lens, column by column in gamma.

    At fixed gamma_in the images fix logM* as a function of logMh: a curve that is flat where
    the stars dominate the lensing mass and nearly vertical where the halo does (logM* -> -inf
    where the halo alone makes the images). The integrand of the likelihood is a narrow ridge
    along this curve (N(M_obs; logM* - alpha_sps, 0.1) times the halo-mass law), so a uniform
    logMh axis either misses it or wastes points. Here each column is resolved by arc length
    s, ds^2 = (dlogMh / a)^2 + (dlogM* / b)^2 with (a, b) = ``scales``:

    1. the curve is scanned on ``logMh_axis`` and refined by bisection until every valid interval
       changes logM* by < b step / 4, and validity boundaries are located to 1e-4 dex;
    2. only the part with logM* in ``m_obs + window`` is kept (outside it the SPS-mass term is
       < e^-50 for any alpha_sps of the prior box);
    3. nodes are placed uniformly in s (spacing <= ``step``) on each contiguous valid piece,
       through a monotone cubic (PCHIP, Fritsch-Carlson) map s -> logMh, and each gets the
       trapezoid weight in s times dlogMh/ds of that map and the trapezoid weight of its gamma
       node.

    The rule runs compiled (``csrc/tabulate.pyx``, module ``sl_cy._tabulate``; many lenses at
    once: :func:`adaptive_columns_batch`). Its former Python implementation is kept as
    :func:`sl_cy.testing.ref_adaptive_columns`; both give the same nodes and weights.

    Parameters
    ----------
    xA, xB, logRe, m_obs : float
        Images (kpc, x_A > 0 > x_B), log size and observed SPS mass of the lens.
    gamma_axis : array
        Gamma nodes (columns).
    logMh_axis : array
        Scan axis, strictly increasing; its range is the integration range in logMh.
    c_halo, zl, zs, cosmo :
        As in :func:`sl_cy.lensing.invert_images`.
    step : float
        Node spacing in units of the scales (1 = 0.1 dex in logMh and in logM*).
    scales : (float, float)
        Arc-length scales (a, b) of logMh and logM* (dex).
    window : (float, float)
        logM* window relative to ``m_obs``.
    n_nodes : int, optional
        Slots per column (default :func:`adaptive_n_nodes`); a column needing more nodes gets
        a proportionally larger spacing.
    max_rounds : int
        Bisection depth limit.

    Returns
    -------
    logMh, wq : ndarray, shape (n_nodes, n_gamma)
        Nodes (NaN in unused slots) and weights in d(logMh) d(gamma) (0 in unused slots).

    Raises
    ------
    ValueError
        for invalid inputs, a scan axis that is not strictly increasing, or ``n_nodes`` too
        small to give each valid piece of a column two slots.

    Performance
    -----------
    About 1.4 ms per lens on the default grids on one core (~3500 logM* evaluations; the Python
    rule it replaces took ~17 ms), ``benchmarks/bench_grids.py``.

    Precision
    ---------
    Nodes and weights equal those of the Python rule (:func:`sl_cy.testing.ref_adaptive_columns`),
    bit for bit on all tested mock lenses (``tests/test_tabulate.py``). The validity of traced
    points is decided without critical curves where that is conclusive (``csrc/tabulate.pyx``),
    with the same result as the full inversion. Per-lens integral at the default truth within ~1e-3
    of a 4x finer rule with ~1100 valid points per lens (``step=1``, 21 gamma nodes) where a
    uniform 41 x 21 grid errs by up to 100 % (``benchmarks/bench_likelihood.py``).
    :func:`tabulate_likelihood_grids` adds a per-lens refinement: a lens whose weight
    W = beta |J| F_phot peaks within ~2 nodes of a column (:func:`weight_peak_curvature`) is
    tabulated again at half the step (~1320 points per lens on average; the variation of the
    quadrature error across the posterior summed over 10^4 lenses then stays <= 0.01 in log L,
    ``benchmarks/accuracy_scaling.py``).

    Examples
    --------
    >>> mh, w = adaptive_columns(6.62, -3.07, 0.9, m_obs=11.5, gamma_axis=np.array([1.0]),
    ...                          logMh_axis=np.arange(11.0, 15.0, 0.05))
    >>> mh.shape[1], bool(np.nansum(w) > 0)
    (1, True)
    """
    for name, v in (("xA", xA), ("xB", xB), ("logRe", logRe), ("m_obs", m_obs), ("zl", zl), ("zs", zs)):
        if np.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar (one lens; see adaptive_columns_batch)")
    nodes, wq = adaptive_columns_batch(xA, xB, logRe, m_obs=m_obs, gamma_axis=gamma_axis, logMh_axis=logMh_axis, c_halo=c_halo, zl=zl, zs=zs,
                                       cosmo=cosmo, step=step, scales=scales, window=window, n_nodes=n_nodes,
                                       max_rounds=max_rounds)
    return nodes[0], wq[0]


def support_scan_axis(axis, support) -> np.ndarray:
    """The adaptive rule's scan axis: ``axis`` within the halo support, extended to both ends of
    the support at 0.1 dex where it stops short (the integration range is always the support).

    Examples
    --------
    >>> support_scan_axis([11.0, 12.0, 13.0], (10.5, 13.5)).tolist()
    [10.5, 10.6, 10.7, 10.8, 10.9, 11.0, 12.0, 13.0, 13.1, 13.2, 13.3, 13.4, 13.5]
    """
    lo, hi = (float(v) for v in support)
    a = np.asarray(axis, dtype=float)
    a = a[(a > lo) & (a < hi)]
    base = np.round(np.arange(lo, hi + 1e-9, 0.1), 10)
    if len(a):
        base = base[(base < a[0] - 1e-9) | (base > a[-1] + 1e-9)]
    return np.unique(np.concatenate([[lo, hi], a, base]))


def _weight_peak_curvature(beta, detJ, F_phot, valid) -> np.ndarray:
    """:func:`weight_peak_curvature` on stacked arrays of shape (n_lens, n_slots, n_gamma)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lw = np.log(beta * detJ * F_phot)
    lw = np.where((valid == 0) & np.isfinite(lw), lw, -np.inf)
    if lw.shape[1] < 3:
        return np.zeros(lw.shape[0])
    j = np.argmax(lw, axis=1)
    jj = np.clip(j, 1, lw.shape[1] - 2)
    at = lambda k: np.take_along_axis(lw, k[:, None, :], axis=1)[:, 0, :]
    c0, cm, cp = at(jj), at(jj - 1), at(jj + 1)
    interior = (j == jj) & np.isfinite(cm) & np.isfinite(cp) & np.isfinite(c0)
    with np.errstate(invalid="ignore"):
        curv = np.where(interior, np.abs(cm - 2 * c0 + cp), 0.0)
        top = c0.max(axis=1, keepdims=True)
        return np.max(np.where(c0 >= top - 30, curv, 0.0), axis=1)


def weight_peak_curvature(grids) -> np.ndarray:
    """How sharply each lens's eta-independent weight peaks along its columns, in nodes.

    Per lens, the largest |second difference| of log W (W = beta |J| F_phot) at the peak node of
    a gamma column, over the columns whose peak is within e^30 of the lens's highest: about
    1 / width^2 of the peak in node spacings. The adaptive rule resolves peaks a few nodes wide;
    :func:`tabulate_likelihood_grids` halves the column step of a lens above
    :data:`WEIGHT_PEAK_CURVATURE` (image B near the radial critical curve, where the observed
    magnitudes pin a fast-changing magnification ratio).

    Parameters
    ----------
    grids : list of LensGrid, or the dict of :func:`stack_grids`
        Grids sharing axes.

    Returns
    -------
    ndarray, shape (n_lens,)
        Curvature per node^2 (0 for a lens without an interior column peak).

    Performance
    -----------
    A few array passes over the stacked grids (~1 ms per 100 lenses of the default grid).

    Precision
    ---------
    Exact for the tabulated nodes (a diagnostic, not an estimate of the quadrature error).

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame(dict(xA=[6.62], xB=[-3.07], logRe=[0.9], logM_star_sps_observed=[11.5],
    ...                         magnitude_observedA=[24.0], magnitude_observedB=[24.8], zl=[0.3], zs=[2.0]))
    >>> c = weight_peak_curvature(tabulate_likelihood_grids(obs, gamma_grid=[1.0]))
    >>> c.shape, bool(c[0] >= 0)
    ((1,), True)
    """
    st = grids if isinstance(grids, dict) else stack_grids(grids)
    return _weight_peak_curvature(st["beta"], st["detJ"], st["F_phot"], st["valid"])


#: Value of each per-point array in a padding slot of an adaptive grid.
_PAD_FILL = dict(valid=PADDING, F_phot=0.0, wq=0.0, piece=0)
#: Every per-slot array of a tabulation result / stacked grids.
_SLOT_ARRAYS = GRID_ARRAYS + ("valid", "piece")


def _fit_slots(res: dict, width: int) -> dict:
    """Chunk result ``res`` with ``width`` node slots per column: padding slots appended, or
    unused trailing slots dropped (the adaptive rule fills each column from slot 0)."""
    out = dict(res)
    for k in _SLOT_ARRAYS:
        a = res[k]
        if a.shape[1] > width:
            out[k] = a[:, :width]
        elif a.shape[1] < width:
            pad = np.full((a.shape[0], width - a.shape[1]) + a.shape[2:], _PAD_FILL.get(k, np.nan), dtype=a.dtype)
            out[k] = np.concatenate([a, pad], axis=1)
    return out


def _concat_results(parts: list, index) -> dict:
    """Chunk results joined along the lenses, padded to a common number of slots."""
    width = max(p["valid"].shape[1] for p in parts)
    parts = [_fit_slots(p, width) for p in parts]
    return dict(index=index, **{k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "index"})


def _tabulate_task(task: dict) -> dict:
    """Worker: grids of a chunk of lenses, stacked as arrays of shape (n, n_slots, n_gamma); with
    the adaptive rule, lenses with an unresolved peak of W are tabulated again at half the column
    step (up to ``peak_halvings`` times), the chunk's slots widened to the nodes they use."""
    res = _tabulate_once(task)
    ad = task.get("adaptive")
    halvings = int(ad.get("peak_halvings", 0)) if ad else 0
    idx = np.arange(len(res["valid"]))
    step = ad["step"] if ad else 1.0
    for _ in range(halvings):
        curv = _weight_peak_curvature(*(res[k][idx] for k in ("beta", "detJ", "F_phot", "valid")))
        idx = idx[curv > ad["peak_curvature"]]
        if not len(idx):
            break
        step /= 2
        sub = _tabulate_once(dict(task, obs={k: v[idx] for k, v in task["obs"].items()},
                                  adaptive=dict(ad, step=step, n_nodes=adaptive_n_nodes(
                                      task["logMh"], step, scales=ad["scales"], window=ad["window"]))))
        width = max(res["valid"].shape[1], int(np.isfinite(sub["logMh"]).sum(axis=1).max()))
        res, sub = _fit_slots(res, width), _fit_slots(sub, width)
        for k in _SLOT_ARRAYS:
            res[k] = res[k].copy()
            res[k][idx] = sub[k]
    return res


def _tabulate_once(task: dict) -> dict:
    """:func:`_tabulate_task` without the column-step refinement."""
    o = task["obs"]
    g = task["gamma"][None, None, :]
    col = {k: v[:, None, None] for k, v in o.items()}
    ad = task.get("adaptive")
    if ad:   # the whole chunk in one compiled call
        nodes_mh, wq, inf = adaptive_columns_batch(o["xA"], o["xB"], o["logRe"], m_obs=o["logM_star_sps_observed"],
                                                   gamma_axis=task["gamma"], logMh_axis=task["logMh"],
                                                   c_halo=task["c_halo"], zl=o["zl"], zs=o["zs"], cosmo=task["cosmo"],
                                                   step=ad["step"], scales=ad["scales"], window=ad["window"],
                                                   n_nodes=ad["n_nodes"], info=True)
        piece = inf["piece"]
        pad = ~np.isfinite(nodes_mh)
        mh = np.where(pad, task["logMh"][0], nodes_mh)
    else:
        mh = np.broadcast_to(task["logMh"][None, :, None], (len(o["xA"]), len(task["logMh"]), len(task["gamma"])))
        wq = np.broadcast_to((trapezoid_weights(task["logMh"])[:, None] * trapezoid_weights(task["gamma"])[None, :])[None],
                             mh.shape)
        pad = np.zeros(mh.shape, bool)
        piece = np.zeros(mh.shape, np.int8)
    if pad.any():   # solve only the used slots of an adaptive grid
        use = ~pad
        full = lambda a: np.broadcast_to(a, mh.shape)[use]
        sol = invert_images(full(col["xA"]), full(col["xB"]), full(col["logRe"]), logM_halo=mh[use], gamma_in=full(g), c_halo=task["c_halo"],
                            zl=full(col["zl"]), zs=full(col["zs"]), cosmo=task["cosmo"])
        r = {}
        for k, v in sol.items():
            a = np.full(mh.shape, PADDING if k == "status" else np.nan, dtype=v.dtype)
            a[use] = v
            r[k] = a
    else:
        r = invert_images(col["xA"], col["xB"], col["logRe"], logM_halo=mh, gamma_in=g, c_halo=task["c_halo"], zl=col["zl"], zs=col["zs"],
                          cosmo=task["cosmo"])
    status = np.where(pad, PADDING, r["status"]).astype(np.int8)
    survey = SurveyConfig.from_dict(task["survey"])
    phot = photometry_for(survey)
    shape = r["logM_star"].shape
    fph = np.zeros(shape)
    finite = np.isfinite(r["mu_A"]) & np.isfinite(r["mu_B"])
    if finite.any():
        mA = np.broadcast_to(col["magnitude_observedA"], shape)[finite]
        mB = np.broadcast_to(col["magnitude_observedB"], shape)[finite]
        fph[finite] = phot.fphot(mA, mB, mu_A=r["mu_A"][finite], mu_B=r["mu_B"][finite])
    return dict(index=task["index"], logM_star=r["logM_star"], beta=r["beta"], ycaustic=r["y_caustic"],
                muA=r["mu_A"], muB=r["mu_B"], detJ=r["detJ"], F_phot=fph, valid=status, piece=piece,
                logMh=np.where(pad, np.nan, mh), wq=np.where(pad, 0.0, wq),
                nbkg_kpc2=np.asarray(survey.nbkg_kpc2(o["zl"], task["cosmo"]), dtype=float) * np.ones(len(o["zl"])))


#: Grid points per compiled call inside a tabulation task (16 lenses of the default adaptive grid):
#: small enough (~0.1 s) that the interpreter sees a Ctrl-C between calls; results do not depend on it.
_SUBCHUNK_POINTS = 16 * 103 * 21


def _tabulate_task_split(task: dict) -> dict:
    """Worker: :func:`_tabulate_task` on a few lenses at a time (about :data:`_SUBCHUNK_POINTS`
    grid points per call; identical results)."""
    n = len(task["obs"]["xA"])
    ad = task.get("adaptive")
    per_lens = (ad["n_nodes"] if ad else len(task["logMh"])) * len(task["gamma"])
    step = max(1, _SUBCHUNK_POINTS // max(1, per_lens))
    if n <= step:
        return _tabulate_task(task)
    parts = [_tabulate_task(dict(task, obs={k: v[s:s + step] for k, v in task["obs"].items()}))
             for s in range(0, n, step)]
    return _concat_results(parts, task["index"])


def _chunk_path(root: Path, i: int) -> Path:
    return root / f"chunk_{i:06d}.h5"


def _write_chunk(path: Path, key: str, res: dict) -> None:
    with atomic_h5(path) as f:
        f.attrs["key"] = key
        for k, v in res.items():
            if k != "index":
                f.create_dataset(k, data=v)


def _read_chunk(path: Path, key: str, index: int):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("key") != key:
                return None
            res = {k: f[k][()] for k in _SLOT_ARRAYS + ("nbkg_kpc2",)}
    except (OSError, KeyError):
        return None
    res["index"] = index
    return res


def tabulate_likelihood_grids(mock_observed_data, logMh_grid=None, gamma_grid=None, *, zl=None, zs=None,
                              forward_model: ForwardModel | None = None, c_halo=None,
                              survey: SurveyConfig | None = None, sigma_m=None, m_lim=None, detection=None,
                              cosmo=None, n_jobs=1, executor=None, cache_every=None, cache_dir=None,
                              show_progress=None, adaptive=True, adaptive_step=1.0,
                              mstar_window=ADAPTIVE_MSTAR_WINDOW, peak_halvings=WEIGHT_PEAK_HALVINGS):
    """Tabulate the eta-independent likelihood grid of every observed lens.

    Parameters
    ----------
    mock_observed_data : pandas.DataFrame
        Observed lenses: xA, xB (kpc, opposite sides), logRe, logM_star_sps_observed,
        magnitude_observedA, magnitude_observedB; optional per-lens zl, zs columns.
    logMh_grid : array, optional
        Halo-mass axis (log10 M200), strictly increasing. With ``adaptive`` (the default) it is
        the scan axis: the integration range is always the forward model's halo support
        (default [10, 17]; the scan is extended to it at 0.1 dex where the axis stops short), so
        numerator and A(eta) integrate the same range. Default :data:`DEFAULT_LOGMH_GRID`.
        With ``adaptive=False`` the axis is used as given (a warning names a range that does
        not cover the support).
    gamma_grid : array, optional
        Inner-slope axis in [0, 2.4]; default :data:`DEFAULT_GAMMA_GRID` ([0, 2] by 0.1). A
        one-node axis (e.g. ``[1.0]``) fixes gamma_in (a 1-D logMh grid).
    zl, zs : float, optional
        Redshifts of a table without zl/zs columns (overrides of a fixed-redshift forward model's).
        Without them such a table is tabulated at the fixed redshifts of an explicitly given
        ``forward_model``, and is an error otherwise (no silent default). Every lens is tabulated
        at its own (zl, zs).
    forward_model : ForwardModel, optional
        Population, survey, redshifts, halo concentration, cosmology and halo support (default
        ``ForwardModel()``); the grids carry it, and the likelihood and A(eta) are built from it.
        ``c_halo``, ``survey``, ``sigma_m``, ``m_lim``, ``detection`` and ``cosmo`` override its
        fields (the seed's keyword names).
    cosmo : optional
    n_jobs, executor :
        Parallelism, as in :func:`sl_cy.parallel.iter_chunks` (results do not depend on it).
    cache_every : int, optional
        Lenses per chunk (default 256); with ``cache_dir`` each chunk is written to HDF5 as soon as
        it is done.
    cache_dir : str or Path, optional
        Resumable cache: chunks keyed by a hash of (inputs, grid, configuration, package version);
        a rerun recomputes only missing chunks. A directory holding a cache for different inputs
        is refused with ``ValueError``.
    show_progress : bool, optional
        tqdm bar (default: when stderr is a terminal).
    adaptive : bool, default True
        Per-column halo-mass nodes following the likelihood ridge (:func:`adaptive_columns`);
        False gives the regular (logMh_grid x gamma_grid) grid, which errs by up to 100 % per
        lens on 0.1-dex axes (the ridge is narrower than that).
    adaptive_step : float
        Node spacing of the adaptive rule (1 = 0.1 dex in logMh and logM*).
    mstar_window : (float, float)
        logM* window of the adaptive rule relative to the observed SPS mass (must cover the
        alpha_sps prior range plus ~1 dex).
    peak_halvings : int, default :data:`WEIGHT_PEAK_HALVINGS`
        Column-step refinement of the adaptive rule: a lens whose weight W = beta |J| F_phot
        peaks more sharply than :data:`WEIGHT_PEAK_CURVATURE` per node^2 along a column
        (:func:`weight_peak_curvature`) is tabulated again at half the step, up to this many
        times (0: off). Each grid keeps the node slots it uses (a refined lens has more);
        :func:`stack_grids` pads them to the widest.

    Returns
    -------
    list of LensGrid
        One per row of the table, in order.

    Performance
    -----------
    About 3 ms per lens on a 30 x 30 grid on one core (inversion + |J| ~3 us and F_phot ~0.1 us
    per point). The column-step refinement re-tabulates ~15 % of the mock lenses at half the step:
    ~1320 valid points per lens on average instead of ~1140 (~31.5 kB per lens held by the
    likelihood at 24 bytes per point, plus ~100 bytes of column runs for its eta-adaptive column
    rule, from the piece codes of the grids).

    Precision
    ---------
    That of the lensing core (~1e-8 relative) and of F_phot (~1e-8 relative). The adaptive
    quadrature with the column-step refinement: per-lens log-likelihood within 5e-3 of a 4x finer
    rule at the MAP of a 428-lens mock (median 2.5e-5), and its variation one posterior sigma
    apart, summed over lenses and projected to 10^4 lenses, <= 0.008 for every eta component
    (0.72 without the refinement; ``benchmarks/accuracy_scaling.py``).

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame(dict(xA=[6.62], xB=[-3.07], logRe=[0.9], logM_star_sps_observed=[11.5],
    ...                         magnitude_observedA=[24.0], magnitude_observedB=[24.8], zl=[0.3], zs=[2.0]))
    >>> g = tabulate_likelihood_grids(obs, gamma_grid=np.linspace(0.8, 1.2, 5))[0]      # adaptive (default)
    >>> g.config["quadrature"], g.shape[1], bool(g.is_valid.any())
    ('adaptive', 5, True)
    >>> float(g.logMh[g.is_valid].min()) >= 10.0 and float(g.logMh[g.is_valid].max()) <= 17.0
    True
    >>> r = tabulate_likelihood_grids(obs, DEFAULT_LOGMH_GRID, [1.0], adaptive=False)[0]   # regular grid
    >>> r.shape, bool(r.is_valid.any())
    ((71, 1), True)
    """
    explicit = forward_model is not None
    forward_model = as_forward_model(forward_model)          # a ForwardModel, its dict or None
    survey = survey or forward_model.survey
    over = {k: v for k, v in dict(sigma_m=sigma_m, m_lim=m_lim, detection=detection).items() if v is not None}
    if over:
        survey = SurveyConfig.from_dict({**survey.to_dict(), **over})
    # a value given for a fixed-redshift model replaces it; for a distribution it only fills a column
    z_over = {k: v for k, v in (("zl", zl), ("zs", zs)) if isinstance(getattr(forward_model, k), float)}
    fm = as_forward_model(forward_model, survey=survey, c_halo=c_halo, cosmology=cosmo, **z_over)
    survey, c_halo, cos = fm.survey, fm.c_halo, fm.cosmology
    fill = [zl if zl is not None else (getattr(fm, k) if explicit and isinstance(getattr(fm, k), float) else None)
            for k, zl in (("zl", zl), ("zs", zs))]
    obs = check_observed_table(mock_observed_data, *fill)
    rows = obs.pop("row")
    mh = as_float_array("logMh_grid", DEFAULT_LOGMH_GRID if logMh_grid is None else logMh_grid).ravel()
    gam = as_float_array("gamma_grid", DEFAULT_GAMMA_GRID if gamma_grid is None else gamma_grid, lo=0.0,
                         hi=2.4).ravel()
    for name, axis in (("logMh_grid", mh), ("gamma_grid", gam)):
        if len(axis) == 0 or np.any(np.diff(axis) <= 0):
            raise ValueError(f"{name} must be non-empty and strictly increasing")
    h_lo, h_hi = fm.halo_support
    if adaptive:
        mh = support_scan_axis(mh, fm.halo_support)
    elif mh[0] > h_lo + 1e-9 or mh[-1] < h_hi - 1e-9 or mh[0] < h_lo - 1e-9 or mh[-1] > h_hi + 1e-9:
        warnings.warn(f"the regular logMh grid spans [{mh[0]:g}, {mh[-1]:g}] but the forward model's halo support "
                      f"is [{h_lo:g}, {h_hi:g}]: the likelihood integrates a different range than A(eta)",
                      RuntimeWarning, stacklevel=2)
    n = len(obs["xA"])
    chunk = int(cache_every or 256)
    if chunk < 1:
        raise ValueError(f"cache_every must be >= 1, got {cache_every!r}")
    config = dict(c_halo=c_halo, survey=survey.to_dict(), cosmology=dict(zip(("H0", "Om", "Ode"), cos.params)),
                  version=__version__, forward_model=fm.to_dict())
    ad = None
    if adaptive:
        step = float(as_float_array("adaptive_step", adaptive_step, lo=0.0, lo_open=True))
        win = tuple(float(v) for v in mstar_window)
        if not (len(win) == 2 and win[0] < win[1]):
            raise ValueError(f"mstar_window must be (lo, hi) with lo < hi, got {mstar_window!r}")
        halvings = int(peak_halvings)
        if halvings < 0 or halvings != peak_halvings:
            raise ValueError(f"peak_halvings must be an integer >= 0, got {peak_halvings!r}")
        ad = dict(step=step, scales=ADAPTIVE_SCALES, window=win, n_nodes=adaptive_n_nodes(mh, step, scales=ADAPTIVE_SCALES, window=win),
                  peak_curvature=WEIGHT_PEAK_CURVATURE if halvings else 0.0, peak_halvings=halvings)
        config["adaptive"] = dict(ad, scales=list(ADAPTIVE_SCALES), window=list(win))
    key = config_hash(dict(inputs={k: array_digest(v) for k, v in obs.items()}, logMh=mh, gamma=gam,
                           chunk=chunk, layout=GRID_LAYOUT, **config))
    tasks = [dict(index=i, obs={k: v[s:s + chunk] for k, v in obs.items()}, logMh=mh, gamma=gam, c_halo=c_halo,
                  survey=survey.to_dict(), cosmo=cos, adaptive=ad) for i, s in enumerate(range(0, n, chunk))]

    results: list = [None] * len(tasks)
    root = None
    if cache_dir is not None:
        root = Path(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        manifest = root / "grid_cache.json"
        old = None
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError):
                old = None                 # unreadable: rewritten below (every chunk carries the key anyway)
            if isinstance(old, dict) and old.get("key") != key:
                raise ValueError(f"cache_dir {str(root)!r} holds likelihood grids for different inputs or settings "
                                 f"(key {str(old.get('key', '?'))[:12]} != {key[:12]}); use another directory or "
                                 "delete it")
        if not isinstance(old, dict):
            write_json_atomic(manifest, dict(key=key, n_lenses=n, n_chunks=len(tasks), chunk=chunk,
                                             created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **config))
        for i in range(len(tasks)):
            p = _chunk_path(root, i)
            if p.exists():
                cached = _read_chunk(p, key, i)            # None: torn or foreign, recomputed
                results[i] = None if cached is None else _per_lens(cached)
    todo = [t for t in tasks if results[t["index"]] is None]
    for _, res in iter_chunks(_tabulate_task_split, todo, n_jobs=n_jobs, executor=executor, progress=show_progress,
                              desc="tabulate"):
        if root is not None:
            _write_chunk(_chunk_path(root, res["index"]), key, res)
        results[res["index"]] = _per_lens(res)            # the chunk's arrays are freed at once

    grids = []
    base_cfg = dict(c_halo=c_halo, detection=survey.detection, m_lim=survey.m_lim, sigma_m=survey.sigma_m,
                    H0=cos.H0, Om=cos.Om, Ode=cos.Ode, version=__version__, key=key,
                    quadrature="adaptive" if ad else "uniform", forward_model=fm.to_dict())
    if ad:
        base_cfg.update(adaptive_step=ad["step"], mstar_window_lo=ad["window"][0], mstar_window_hi=ad["window"][1],
                        peak_curvature=ad["peak_curvature"], peak_halvings=ad["peak_halvings"])
    for i, (t, lenses) in enumerate(zip(tasks, results)):
        for j, arrays in enumerate(lenses):
            observed = {k: float(v[j]) for k, v in t["obs"].items()}
            observed["row"] = str(rows[t["index"] * chunk + j])
            nbkg = float(arrays.pop("nbkg_kpc2"))
            grids.append(LensGrid(mh.copy(), gam.copy(), observed=observed, config=dict(base_cfg, nbkg_kpc2=nbkg),
                                  **arrays))
        results[i] = None
    return grids


def _per_lens(res: dict) -> list:
    """A chunk result as one dict of arrays per lens, each keeping only the node slots it uses (a
    lens refined at half the column step has ~2x the slots of the others, and its chunk was
    widened to them; :func:`stack_grids` pads to the widest when grids are stacked)."""
    out = []
    for j in range(len(res["nbkg_kpc2"])):
        w = _used_slots(res["valid"][j])
        out.append(dict(valid=res["valid"][j][:w].copy(), nbkg_kpc2=res["nbkg_kpc2"][j],
                        **{k: res[k][j][:w].copy() for k in GRID_ARRAYS + ("piece",)}))
    return out


def _used_slots(valid: np.ndarray) -> int:
    """Node slots of one grid up to its last slot that is not padding in every gamma column."""
    used = np.flatnonzero(~np.all(valid == PADDING, axis=1))
    return int(used[-1]) + 1 if len(used) else 1


# --------------------------------------------------------------------------------------------
# many grids: stacking and one HDF5 file
# --------------------------------------------------------------------------------------------
def stack_grids(grids, *, width: int | None = None) -> dict:
    """Stack grids sharing axes into arrays of shape (n_lens, n_slots, n_gamma) (+ axes, nbkg).

    Adaptive grids may have different numbers of node slots (a lens whose weight peak was refined
    has more): each is padded to the widest (or to ``width``) with padding slots (status
    :data:`PADDING`, zero weight)."""
    grids = list(grids)
    if not grids:
        raise ValueError("no grids to stack")
    g0 = grids[0]
    for i, g in enumerate(grids):
        if not (np.array_equal(g.logMh_axis, g0.logMh_axis) and np.array_equal(g.gamma_axis, g0.gamma_axis)):
            raise ValueError(f"grid {i} has different axes from grid 0; stacking needs shared axes")
    w = max(g.valid.shape[0] for g in grids) if width is None else int(width)
    out = {}
    for k in _SLOT_ARRAYS:
        a0 = getattr(g0, k)
        out[k] = np.full((len(grids), w) + a0.shape[1:], _PAD_FILL.get(k, np.nan), dtype=a0.dtype)
        for i, g in enumerate(grids):
            a = getattr(g, k)
            out[k][i, :a.shape[0]] = a
    out["logMh_axis"] = g0.logMh_axis
    out["gamma_axis"] = g0.gamma_axis
    out["nbkg_kpc2"] = np.array([g.config.get("nbkg_kpc2", np.nan) for g in grids])
    out["observed"] = pd.DataFrame([g.observed for g in grids])
    fm0 = g0.config.get("forward_model")
    for i, g in enumerate(grids):
        if g.config.get("forward_model") != fm0:
            a = ForwardModel.from_dict(fm0) if fm0 else None
            b = ForwardModel.from_dict(g.config["forward_model"]) if g.config.get("forward_model") else None
            why = "; ".join(a.diff(b)) if a and b else "one of them carries none"
            raise ValueError(f"grid {i} was tabulated with another forward model than grid 0: {why}")
    out["forward_model"] = fm0
    return out


def save_grids_hdf5(path, grids, attrs: dict | None = None) -> Path:
    """Write many grids (shared axes) to one HDF5 file, atomically: stacked datasets (padded to the
    widest grid's node slots, :func:`stack_grids`; written in blocks of lenses, so no stacked copy
    of all grids is held), the observed table and the configuration of the first grid as attributes."""
    from sl_cy.io import write_dataframe

    grids = list(grids)
    if not grids:
        raise ValueError("no grids to save")
    width = max(g.valid.shape[0] for g in grids)
    st = stack_grids(grids[:1], width=width)
    n, block = len(grids), 1024
    with atomic_h5(path) as f:
        for k in ("logMh_axis", "gamma_axis"):
            f.create_dataset(k, data=st[k])
        f.create_dataset("nbkg_kpc2", data=np.array([g.config.get("nbkg_kpc2", np.nan) for g in grids]))
        # written in blocks of lenses: no stacked copy of all grids is held
        for k in _SLOT_ARRAYS:
            f.create_dataset(k, shape=(n,) + st[k].shape[1:], dtype=st[k].dtype, compression="gzip")
        for a in range(0, n, block):
            sb = stack_grids(grids[a:a + block], width=width)
            for k in _SLOT_ARRAYS:
                f[k][a:a + len(sb[k])] = sb[k]
        obs = pd.DataFrame([g.observed for g in grids])
        obs["row"] = obs["row"].astype(str)
        write_dataframe(f, "observed", obs)
        cfg = {k: v for k, v in grids[0].config.items() if k != "nbkg_kpc2"}
        write_attrs(f, dict(kind="sl_cy.grids", n_lenses=len(grids), config=cfg, **(attrs or {})))
    return Path(path)


def load_grids_hdf5(path, lenses=None) -> list:
    """Read grids written by :func:`save_grids_hdf5` (optionally only the indices ``lenses``)."""
    import h5py

    from sl_cy.io import read_dataframe

    with h5py.File(path, "r") as f:
        a = read_attrs(f)
        if a.get("kind") != "sl_cy.grids":
            raise ValueError(f"{path} is not an sl_cy grids file")
        names = ("nbkg_kpc2",) + _SLOT_ARRAYS if "piece" in f else ("nbkg_kpc2", "valid") + GRID_ARRAYS
        if lenses is None:
            data = {k: f[k][()] for k in names}
        else:   # h5py wants increasing unique indices: read those, then reorder
            uniq, inv = np.unique(np.asarray(lenses, dtype=int), return_inverse=True)
            data = {k: f[k][uniq][inv] for k in names}
        mh, gam = f["logMh_axis"][()], f["gamma_axis"][()]
        obs = read_dataframe(f["observed"])
    if lenses is not None:
        obs = obs.iloc[np.asarray(lenses)].reset_index(drop=True)
    cfg = a["config"]
    if "piece" not in data and cfg.get("quadrature") == "adaptive":
        warnings.warn(f"{path}: adaptive grids saved before their column pieces were recorded (grid layout < "
                      f"{GRID_LAYOUT}): the likelihood keeps the plain column rule for them (no eta-adaptive "
                      "sub-sampling: per-lens errors up to ~0.2 at sigma_h = 0.05); tabulate them again to get it",
                      RuntimeWarning, stacklevel=2)
    out = []
    for j in range(len(data["valid"])):
        observed = {k: (str(v) if k == "row" else float(v)) for k, v in obs.iloc[j].items()}
        w = _used_slots(data["valid"][j])                  # the file's padding slots are dropped
        # a file without piece codes (saved before they were recorded): none (the plain column rule)
        piece = data["piece"][j][:w].astype(np.int8) if "piece" in data else None
        out.append(LensGrid(mh.copy(), gam.copy(), valid=data["valid"][j][:w].astype(np.int8), observed=observed,
                            config=dict(cfg, nbkg_kpc2=float(data["nbkg_kpc2"][j])), piece=piece,
                            **{k: data[k][j][:w].copy() for k in GRID_ARRAYS}))
    return out
