"""Deterministic A(eta): product quadrature over a tabulated per-galaxy selection rate (default engine)."""
from __future__ import annotations

import math
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

from sl_cy.selection.bank import _ktable_for

# deterministic A(eta): product quadrature over a tabulated selection rate
# --------------------------------------------------------------------------------------------
#: Table version (part of the cache key): 3 = axes from the forward model, halo support, log-rate
#: interpolation, one entry per lens galaxy. The format of a fixed-redshift table is unchanged
#: since, so its cached files stay valid.
SELECTION_TABLE_VERSION = 3
#: Version of a table of a forward model with redshift distributions: the zs-mixed rate per
#: p(zl) node (dataset ``T_zl``) beside the effective rate ``T`` that A(eta) integrates.
SELECTION_TABLE_VERSION_Z = 4

#: Default quadrature nodes of p(zl) and p(zs) (Gauss-Legendre in the quantile,
#: :meth:`sl_cy.redshifts.RedshiftDistribution.nodes`): the node-count convergence test of
#: ``benchmarks/redshift_recovery.py`` (zl ~ U(0.2, 0.6), zs ~ U(1, 3), three eta): going from 2 to
#: 3 nodes changes A(eta) by 2e-3 (zl and zs alike), from 3 to 4 by 1e-4 (zs), nearly uniformly in
#: eta; each node pair costs one fixed-redshift table to build.
REDSHIFT_NODES = dict(zl=3, zs=3)

#: Table steps (dex) of logM*, logRe, logMh and of gamma_in.
TABLE_STEPS = dict(logM_star=0.1, logRe=0.1, logM_halo=0.1, gamma_in=0.1)

#: Quadrature nodes: M (Gauss-Legendre over the skew-normal's [-4, 6] sigma), logRe (Gauss-Hermite),
#: logMh (Gauss-Legendre over +-6 sigma within the halo support), gamma (Gauss-Legendre over +-7 sigma
#: within [0, 2]). M 40 and logRe 6 (were 64 and 8, 2.1x the cost): against the 2x rule the
#: variation N x d log A over one posterior sigma at N = 1e4 is unchanged to 0.002 at three centres
#: (default eta and two shifted ones) and the error at 24 random eta of the box (incl. sigma_h,
#: sigma_gamma = 0.05) stays <= 1.0e-3; fewer logMh (16) or gamma (12) nodes raise it to 0.07-0.08
#: and 1.6e-2 (``benchmarks/bench_selection.py`` docstring).
N_NODES = dict(M=40, logRe=6, logM_halo=20, gamma=16)

#: Gauss-Hermite nodes of logRe whose span the table's logRe axis covers (the rule of earlier
#: versions: a wider span than the 6 nodes of :data:`N_NODES`; fixed, so that the table's axes,
#: its hash and the cached tables do not depend on the rule).
TABLE_RE_NODES = 8

#: Posterior standard deviation of each eta component times sqrt(number of lenses): the Laplace
#: widths of the default mock (1e5 galaxies, seed 1, 428 lenses, MAP with the selection term;
#: ``benchmarks/accuracy_scaling.py``) times sqrt(428). :meth:`SelectionQuadrature.error_report`
#: steps one posterior sigma = these / sqrt(N) when no widths are given.
POSTERIOR_SIGMA_1 = dict(alpha_sps=0.197, mu_h=2.73, beta_h=2.55, sigma_h=0.94, mu_gamma=1.22, sigma_gamma=0.42)

#: Accuracy target of A(eta) at N lenses (issue 16): N x (variation of the log A error over one
#: posterior sigma) <= this, per eta component.
ERROR_TOL = 0.1

#: Order assumed by :meth:`SelectionQuadrature.error_report` for the interpolation error of the
#: rate table (cubic rule: 4; multilinear fallback at the edge of the lensing region: 2); 3 gives
#: a conservative estimate: 0.034 at N = 1e4 on the default table where a table built with
#: twice the nodes along logM* and logRe measured 0.014 (order 4 would report 0.012).
RICHARDSON_ORDER = 3

#: :class:`sl_cy.likelihood.Posterior` runs :meth:`SelectionQuadrature.check_accuracy` (~2 s)
#: from this many lenses on (below it the default table's error is far below :data:`ERROR_TOL`).
ERROR_CHECK_MIN_LENSES = 1000


def _axis(spec):
    lo, hi, st = (float(v) for v in spec)
    n = int(round((hi - lo) / st)) + 1
    return lo + st * np.arange(n)


def _floor(x, step):
    return math.floor(x / step + 1e-9) * step


def _ceil(x, step):
    return math.ceil(x / step - 1e-9) * step


def selection_table_axes(forward_model: ForwardModel | None = None, *, refine: int | dict = 1) -> dict:
    """(start, stop, step) per axis of the selection-rate table of a forward model: logM* covers
    the quadrature nodes of the skew-normal law shifted by any alpha_sps of :data:`ETA_BOX`,
    logRe the Gauss-Hermite nodes of the size-mass relation over that mass range, logMh the halo
    support and gamma_in [0, 2]; steps :data:`TABLE_STEPS` divided by ``refine``: an integer for
    every axis (2: twice the nodes per axis, 16x the build time) or a dict by axis name (e.g.
    ``{"logRe": 2, "gamma_in": 2}``, ~4x; the others 1), for N lenses beyond the default table's
    accuracy (:meth:`SelectionQuadrature.error_report` names the axes, ``selection_for(fm,
    n_lenses=N)`` builds that table).

    Examples
    --------
    >>> selection_table_axes()["logM_halo"]
    (10.0, 17.0, 0.1)
    >>> selection_table_axes(refine={"gamma_in": 2})["gamma_in"]
    (0.0, 2.0, 0.05)
    """
    fm = as_forward_model(forward_model)
    p = fm.params
    a_lo, a_hi = ETA_BOX["alpha_sps"]
    m_lo, m_hi = p["mu_star"] - 4 * p["sigma_star"], p["mu_star"] + 6 * p["sigma_star"]
    t_max = float(np.max(np.polynomial.hermite_e.hermegauss(TABLE_RE_NODES)[0]))
    r_lo = p["mu_R0"] + p["beta_R"] * (m_lo - PIVOT_LOGM) - t_max * p["sigma_R"]
    r_hi = p["mu_R0"] + p["beta_R"] * (m_hi - PIVOT_LOGM) + t_max * p["sigma_R"]
    ref = _refine_factors(refine)
    st = {k: v / ref[k] for k, v in TABLE_STEPS.items()}
    r = lambda v: round(v, 10)
    return dict(logM_star=(r(_floor(m_lo + a_lo, st["logM_star"])), r(_ceil(m_hi + a_hi, st["logM_star"])), st["logM_star"]),
                logRe=(r(_floor(r_lo, st["logRe"])), r(_ceil(r_hi, st["logRe"])), st["logRe"]),
                logM_halo=(fm.halo_support[0], fm.halo_support[1], r(st["logM_halo"])),
                gamma_in=(GAMMA_LO, GAMMA_HI, st["gamma_in"]))


AXIS_NAMES = ("logM_star", "logRe", "logM_halo", "gamma_in")


def _refine_factors(refine) -> dict:
    """``refine`` of :func:`selection_table_axes` (a positive integer, or a dict by axis name) ->
    the factor per axis; ValueError naming a bad value or axis."""
    def ok(v):
        return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer)) and v >= 1

    if isinstance(refine, dict):
        bad = sorted(set(refine) - set(AXIS_NAMES))
        if bad:
            raise ValueError(f"refine: unknown axis {bad[0]!r} (axes: {', '.join(AXIS_NAMES)})")
        for k, v in refine.items():
            if not ok(v):
                raise ValueError(f"refine: {k}={v!r} (need a positive integer)")
        return {k: int(refine.get(k, 1)) for k in AXIS_NAMES}
    if not ok(refine):
        raise ValueError(f"refine must be a positive integer or a dict by axis, got {refine!r}")
    return {k: int(refine) for k in AXIS_NAMES}


@dataclass(frozen=True)
class _TableTask:
    index: int
    logM_star: float
    axes: tuple
    beta_unit: np.ndarray
    zl: float
    zs: float
    c_halo: float
    cosmo: Any


def _table_row(task: _TableTask) -> dict:
    """Worker: critical curves and magnifications of one logM* slice of the table."""
    from sl_cy.lensing import forward_solve

    re_axis, mh_axis, g_axis = task.axes
    mh, g = np.meshgrid(mh_axis, g_axis, indexing="ij")
    bu = task.beta_unit
    shape = (len(re_axis), len(mh_axis), len(g_axis), len(bu))
    yc = np.zeros(shape[:3])
    mu_A, mu_B, ok = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    for i, re in enumerate(re_axis):
        # one compiled call per logRe value (~0.1 s): the interpreter sees a Ctrl-C between them
        out = forward_solve(task.logM_star, mh[..., None], re, gamma_in=g[..., None], c_halo=task.c_halo, zl=task.zl,
                            zs=task.zs, beta_unit=bu, cosmo=task.cosmo)
        ok[i] = out["status"] == 0
        yc[i] = np.broadcast_to(out["y_caustic"], ok[i].shape)[..., 0]
        mu_A[i] = np.where(ok[i], out["mu_A"], 0.0)
        mu_B[i] = np.where(ok[i], out["mu_B"], 0.0)
    return dict(index=task.index, y_caustic=np.where(np.isfinite(yc) & (yc > 0), yc, 0.0), mu_A=mu_A, mu_B=mu_B,
                ok=ok)


class SelectionQuadrature(Selection):
    """Deterministic A(eta) (the lens fraction) by product quadrature over a tabulated per-galaxy
    selection rate.

    The expected number of detected sources behind a galaxy, T(logM*, logRe, logMh, gamma_in) =
    pi y_c^2 n_bkg <K(mu_A(beta), mu_B(beta))>_beta (area average over the caustic by 8-point
    Gauss-Legendre in v, (beta / y_c)^2 = (1 - cos pi v) / 2, which clusters the nodes at the
    Einstein ring and at the caustic where K varies fastest: 8 nodes agree with 32 to 2e-4), does
    not depend on eta; it is tabulated once on :func:`selection_table_axes` of the forward model
    (~1.5e6 nodes, ~45 s on one core; cached on disk, keyed by its configuration). Then

        A(eta) = ∫ dM p_sk(M) ∫ dlogRe p(logRe | M) ∫_{halo support} dlogMh p(logMh | M, logRe, eta)
                 ∫ dgamma p(gamma | eta) [1 - exp(-T(M + alpha_sps, logRe, logMh, gamma))]

    by Gauss-Legendre in M (40 nodes over the skew-normal's [-4, 6] sigma), Gauss-Hermite in logRe
    (6), Gauss-Legendre in logMh (20 nodes over the halo Gaussian's +-6 sigma within the halo
    support: galaxies outside it are not lenses of the model, as in the mock and the grids) and
    over the truncated gamma law (16 nodes on its +-7 sigma within [0, 2]). T is interpolated
    by 4-point (cubic) Lagrange in log T along each axis (where the 4^4-node stencil touches T = 0,
    at the edge of the lensing region, multilinearly as in earlier versions: in log T, or in T in
    cells with a zero corner). Piecewise-linear interpolation put kinks into the integrand that
    the moving quadrature nodes crossed: the error of N log A varied by up to ~1 over one
    posterior sigma at N = 1e4 (now <= 0.015, see Precision), and the kinks distorted
    finite-difference Hessians of the posterior (Laplace widths 2-5x too narrow at 428 lenses).

    **Redshift distributions** (:mod:`sl_cy.redshifts`). With p(zl), p(zs) in the forward model
    the table is built on quadrature nodes zl_a, zs_b (weights w_a, v_b): per zl node the
    zs-mixed rate T_a(g) = sum_b v_b [zs_b > zl_a] T(g; zl_a, zs_b) (``T_zl``, with n_bkg
    converted at zl_a), and since the galaxy properties g do not depend on zl,

        A(eta) = sum_a w_a E_g[1 - exp(-T_a(g))] = E_g[1 - exp(-T_eff(g))],
        T_eff = -log(sum_a w_a exp(-T_a)),

    an eta-independent effective rate: A(eta) costs one quadrature, as with fixed redshifts.
    :meth:`rate` gives the zs-mixed rate at a galaxy's own zl (Lagrange interpolation of log T_a
    across the zl nodes: at fixed galaxy properties the rate -- sources per arcsec^2 times the
    caustic's solid angle -- changes slowly and smoothly with zl).

    Unlike the Monte-Carlo bank (:class:`SelectionBank`), the result is a smooth deterministic
    function of eta: no importance-sampling noise, which for N lenses enters log L as
    N x (relative error of A) and biased 6-D posteriors of ~500 lenses by 3-4 sigma with a 2e5
    bank.

    Parameters
    ----------
    T : ndarray, shape (n_M*, n_Re, n_Mh, n_gamma)
        Selection rate on the axes.
    axes : dict
        (start, stop, step) per axis (:func:`selection_table_axes`).
    config : dict
        What the table was built with (incl. ``forward_model``).
    n_threads : int, optional
        OpenMP threads (default None: all available cores; -1 the same;
        :func:`sl_cy.parallel.resolve_n_threads`).

    Attributes
    ----------
    forward_model : ForwardModel
    path : Path or None
        The cache file it was loaded from or saved to by :func:`build_selection_table`.

    Performance
    -----------
    About 3 ms per eta on one core, 5 ms with the gradient (CPU time; 3.9 / 5.3 ms wall at load
    3.4 on 2 shared cores; 76 800 interpolations of the table: 40 x 6 x 20 x 16 nodes; the
    table contracted one axis at a time, over logM* once per M node, over logRe once per (M, R)
    node, over logMh once per (M, R, H) node; one exp per node for 1 - exp(-T); the previous
    version, 64 x 8 nodes, a 16-term (logM*, logRe) contraction and expm1: 5.7 / 13.0 ms CPU,
    ``benchmarks/bench_selection.py --quad-only``);
    eta batches are spread
    over OpenMP threads (``benchmarks/bench_selection.py``). The same with redshift distributions
    (one quadrature of the effective rate; ``benchmarks/redshift_recovery.py``); building their
    table costs one fixed-redshift table per (zl, zs) node pair (9 with the default 3 x 3 nodes).

    Precision
    ---------
    Equal to the lens fraction of mocks of 5e6 galaxies within their binomial error at the default
    eta and far from it (``tests/test_selection_quadrature.py``); against exact per-galaxy rates
    (1e5 galaxies at the default eta) the interpolated rate errs by +0.01 % on the population
    average (multilinear in log T: -0.23 %; ``benchmarks/selection_interpolation.py``). What matters at N lenses is the
    variation of the error of log A across the posterior, times N: at N = 1e4 (428-lens mock,
    Laplace widths projected) <= 0.009 against 2x the quadrature nodes and <= 0.014 against a
    table with twice the nodes along logM* and logRe (was up to 0.92 and 1.0 with the multilinear
    rule; ``benchmarks/accuracy_scaling.py``). With the default widths at the default eta, against
    finer tables (``accuracy_scaling.py --at-default``): <= 0.012 at N = 1e4 and <= 0.039 at
    N = 1e5; the table ``selection_for(fm, n_lenses=1e5)`` builds (logRe, gamma_in steps halved)
    and the one with logM*, logRe halved differ by <= 0.014 at N = 1e5. :meth:`error_report` estimates it for any N;
    :class:`sl_cy.likelihood.Posterior` warns from :data:`ERROR_CHECK_MIN_LENSES` lenses on
    when N needs a finer table or rule. Quadrature and interpolation errors are smooth in eta.

    Examples
    --------
    >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
    ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
    >>> bool(0.0 < sq(DEFAULT_ETA) < 0.05)
    True
    """

    def __init__(self, T, axes: dict, config: dict, *, T_zl=None, n_threads: int | None = None,
                 n_nodes: dict | None = None):
        self.T = np.ascontiguousarray(T, dtype=float)
        nn = dict(N_NODES)
        for k, v in (n_nodes or {}).items():
            if k not in nn or isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"n_nodes: {k}={v!r} (need positive integers for {sorted(N_NODES)})")
            nn[k] = int(v)
        if nn["gamma"] > 64:
            raise ValueError(f"n_nodes: at most 64 gamma nodes, got {nn['gamma']}")
        self.n_nodes = nn
        self._memo = {}                 # derived engines and error reports (_variant, error_report)
        self.axes = {k: tuple(float(v) for v in axes[k]) for k in AXIS_NAMES}
        self.config = dict(config)
        self.config_hash = config_hash(self.config)
        self.forward_model = ForwardModel.from_dict(self.config["forward_model"])
        self.path = None
        shape = tuple(len(_axis(self.axes[k])) for k in AXIS_NAMES)
        if self.T.shape != shape:
            raise ValueError(f"selection table has shape {self.T.shape}, its axes need {shape}")
        if not np.all(np.isfinite(self.T) & (self.T >= 0)):
            raise ValueError("selection table has negative or non-finite rates")
        self._logT = _log_table(self.T)
        rn = self.config.get("redshift_nodes")
        self.T_zl = None
        if rn is not None:
            if T_zl is None:
                raise ValueError("a selection table with redshift distributions needs its per-zl-node rates T_zl")
            self.T_zl = np.ascontiguousarray(T_zl, dtype=float)
            if self.T_zl.shape != (len(rn["zl"]),) + shape:
                raise ValueError(f"T_zl has shape {self.T_zl.shape}, expected {(len(rn['zl']),) + shape}")
            if not np.all(np.isfinite(self.T_zl) & (self.T_zl >= 0)):
                raise ValueError("selection table T_zl has negative or non-finite rates")
            self._logT_zl = [_log_table(t) for t in self.T_zl]
            self._zl_nodes = np.asarray(rn["zl"], dtype=float)
            self._zl_weights = np.asarray(rn["zl_weights"], dtype=float)
            self._zl_nbkg = np.asarray(rn["nbkg_kpc2"], dtype=float)
        self._mean_table = None
        self._start = np.array([self.axes[k][0] for k in AXIS_NAMES])
        self._step = np.array([self.axes[k][2] for k in AXIS_NAMES])
        fm = self.forward_model
        p = fm.params
        self.kernel = _selection.SelectionKernel(p["mu_star"], p["sigma_star"], 10.0 ** p["log_s_star"], p["mu_R0"],
                                                 p["beta_R"], p["sigma_R"], p["xi_h"], PIVOT_LOGM, GAMMA_LO, GAMMA_HI)
        t, w = np.polynomial.legendre.leggauss(nn["M"])
        lo, hi = p["mu_star"] - 4 * p["sigma_star"], p["mu_star"] + 6 * p["sigma_star"]
        self._M = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
        self._wM = 0.5 * (hi - lo) * w * np.exp(mstar_logpdf(self._M, fm.model))
        self._tR, wR = np.polynomial.hermite_e.hermegauss(nn["logRe"])
        self._wR = wR / math.sqrt(2 * math.pi)
        self._tH, self._wH = np.polynomial.legendre.leggauss(nn["logM_halo"])
        self._tg, self._wg = np.polynomial.legendre.leggauss(nn["gamma"])
        from sl_cy.parallel import resolve_n_threads

        self.n_threads = resolve_n_threads(n_threads)

    def __repr__(self) -> str:
        return f"SelectionQuadrature(table {self.T.shape}, hash {self.config_hash[:10]})"

    def __getstate__(self):
        # the memoised variants (finer rule, coarsened tables) and error reports stay behind
        d = dict(self.__dict__)
        d["_memo"] = {}
        return d

    def _variant(self, key, make):
        """A memoised engine derived from this one (finer rule, coarsened table)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def with_nodes(self, factor: int = 2) -> "SelectionQuadrature":
        """The same table integrated with ``factor`` x the quadrature nodes in every dimension
        (memoised; the reference rule of :meth:`error_report`)."""
        return self._variant(("nodes", factor), lambda: SelectionQuadrature(
            self.T, self.axes, self.config, T_zl=self.T_zl, n_threads=self.n_threads,
            n_nodes={k: factor * v for k, v in self.n_nodes.items()}))

    def coarsened(self, axis: str) -> "SelectionQuadrature | None":
        """The engine on this table with every second node along ``axis`` (one of
        :data:`AXIS_NAMES`): exactly the table a build with twice that step gives, without a
        forward solve. With an odd number of cells the end node of smaller rates is dropped
        (that end of the axis is then clamped). None where fewer than 4 nodes would remain
        (memoised)."""
        d = AXIS_NAMES.index(axis)

        def make():
            n = self.T.shape[d]
            if (n + 1) // 2 < 4:
                return None
            lo, hi, st = self.axes[axis]
            first = 0
            if (n - 1) % 2:      # odd number of cells: drop the end node where the table is smaller
                first = int(np.take(self.T, -1, axis=d).sum() > np.take(self.T, 0, axis=d).sum())
            idx = np.arange(first, n, 2)
            axes = dict(self.axes)
            axes[axis] = (lo + first * st, lo + idx[-1] * st, 2 * st)
            cfg = dict(self.config, axes={k: list(v) for k, v in axes.items()})
            Tz = None if self.T_zl is None else np.take(self.T_zl, idx, axis=d + 1)
            return SelectionQuadrature(np.take(self.T, idx, axis=d), axes, cfg, T_zl=Tz, n_threads=self.n_threads,
                                       n_nodes=self.n_nodes)

        return self._variant(("coarse", axis), make)

    def error_report(self, n_lenses: int, *, eta=None, sigma=None, tol: float = ERROR_TOL) -> dict:
        """How much the error of log A(eta) varies across the posterior of ``n_lenses`` lenses,
        times ``n_lenses``: the error A(eta) puts into log L there (issue 16: <= 0.1).

        The error of log A is estimated at eta0 +- sigma_j e_j per eta component j as
        delta = delta_rule + delta_table: delta_rule = log A - log A(2x quadrature nodes, same
        table) and, per table axis, the Richardson estimate of the interpolation error from the
        table with every second node along it (:meth:`coarsened`: (log A(coarse) - log A) /
        (2^p - 1), p = :data:`RICHARDSON_ORDER`). Reported: D_j = n_lenses (delta(eta0 + sigma_j
        e_j) - delta(eta0 - sigma_j e_j)) / 2, and its two parts. An axis of fewer than 7 nodes
        cannot be coarsened: it is listed in ``unchecked`` and the report is not ok.

        Parameters
        ----------
        n_lenses : int
        eta : array (6,), optional
            Centre (default :data:`sl_cy.population.DEFAULT_ETA`; pass the MAP when known).
        sigma : array (6,), optional
            Posterior widths (default :data:`POSTERIOR_SIGMA_1` / sqrt(n_lenses)).
        tol : float
            Target for max_j |D_j| (default :data:`ERROR_TOL`).

        Returns
        -------
        dict
            ``D``, ``D_rule``, ``D_table`` (dicts by eta name), ``D_axis`` (the table term per
            table axis: dict by axis of dicts by eta name), ``max`` (max_j |D_j|), ``worst``
            (that component), ``unchecked`` (axes too short to coarsen), ``ok`` (max <= tol and
            none unchecked), ``refine`` (when the table term dominates a failed check: the axes to
            halve, ``{axis: 2}``, for :func:`selection_table_axes`; else {}), ``remedy`` (text; ''
            when ok), ``n_lenses``, ``eta``, ``sigma``, ``tol``.

        Performance
        -----------
        12 eta x (1 + 16 (the 2x rule) + 4 (coarsened tables)) quadratures: ~2 s on 2 cores at load ~4.7
        (memoised per argument set).

        Precision
        ---------
        An estimate, made conservative by :data:`RICHARDSON_ORDER`. On the default table around
        the default eta it reports max_j |D_j| = 0.034 at N = 1e4 (mu_h; 0.107 at 1e5, not ok:
        refine logRe and gamma_in; on that refined table 0.034 at 1e5, ok); measured
        against a table built with twice the nodes along logM* and logRe (forward solves) and
        against the 2x rule, the D_j are <= 0.014 at the Laplace widths of a 428-lens mock
        projected to N = 1e4
        (``benchmarks/accuracy_scaling.py``).

        Examples
        --------
        >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
        ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
        >>> r = sq.error_report(100_000)
        >>> sorted(r["D"]) == sorted(ETA_NAMES), r["ok"]
        (True, False)
        """
        n = _check_n(n_lenses, "n_lenses")
        if n < 1:
            raise ValueError(f"n_lenses must be >= 1, got {n_lenses!r}")
        e0 = np.asarray(DEFAULT_ETA.to_array() if eta is None else as_float_array("eta", eta), float)
        sig = (np.array([POSTERIOR_SIGMA_1[k] for k in ETA_NAMES]) / math.sqrt(n) if sigma is None
               else as_float_array("sigma", sigma, lo=0.0, lo_open=True))
        if e0.shape != (6,) or np.shape(sig) != (6,):
            raise ValueError(f"eta and sigma need 6 values, got shapes {e0.shape} and {np.shape(sig)}")
        key = (n, tuple(e0), tuple(np.asarray(sig, float)), float(tol))
        if ("error", key) in self._memo:
            return self._memo["error", key]
        E = np.vstack([e0 + np.diag(sig), e0 - np.diag(sig)])
        la = np.log(self(E))
        d_rule = la - np.log(self.with_nodes(2)(E))
        unchecked = []

        def D(d):
            return n * (d[:6] - d[6:]) / 2

        Dax = {}
        for ax in AXIS_NAMES:
            c = self.coarsened(ax)
            if c is None:
                unchecked.append(ax)
            else:    # cubic interpolation: error ~ step^4 (~ step^2 in cells at the edge of the lensing
                # region, multilinear there): the exponent 3 in between errs on the safe side
                Dax[ax] = D((np.log(c(E)) - la) / (2 ** RICHARDSON_ORDER - 1))
        Dr = D(d_rule)
        Dt = sum(Dax.values(), np.zeros(6))
        Dtot = Dr + Dt
        j = int(np.argmax(np.abs(Dtot)))
        mx = float(np.abs(Dtot[j]))
        ok = bool(mx <= tol) and not unchecked
        # the axes to halve: the largest table terms until the others sum to <= tol / 4 (halving an
        # axis divides its term by ~2^RICHARDSON_ORDER or more)
        big = sorted(Dax, key=lambda a: -np.max(np.abs(Dax[a])))
        refine = {}
        while big and sum(np.max(np.abs(Dax[a])) for a in big) > tol / 4:
            refine[big.pop(0)] = 2
        remedy = ""
        if unchecked:
            remedy = (f"the table has too few nodes along {', '.join(unchecked)} (< 7) to estimate its error: build "
                      "it on the default axes, A = build_selection_table(forward_model=fm), or finer ones, "
                      "axes=selection_table_axes(fm, refine=2), and pass it as A=")
        elif not ok:
            if abs(Dt[j]) >= abs(Dr[j]):
                remedy = (f"rebuild the selection-rate table with finer steps along {', '.join(refine)}: A = "
                          f"selection_for(fm, n_lenses={n}) does it, or A = build_selection_table(forward_model=fm, "
                          f"axes=selection_table_axes(fm, refine={refine!r})) (~{2 ** len(refine)}x the build "
                          "time), and pass it as A=")
            else:
                remedy = ("integrate with more quadrature nodes: A = A.with_nodes(2) (~16x the cost per eta), and "
                          "pass it as A=")
        names = list(ETA_NAMES)
        out = dict(n_lenses=n, eta=e0.tolist(), sigma=np.asarray(sig, float).tolist(), tol=float(tol),
                   D=dict(zip(names, Dtot.tolist())), D_rule=dict(zip(names, Dr.tolist())),
                   D_table=dict(zip(names, Dt.tolist())),
                   D_axis={a: dict(zip(names, v.tolist())) for a, v in Dax.items()}, max=mx, worst=names[j],
                   unchecked=unchecked, ok=ok, refine=refine if not ok and abs(Dt[j]) >= abs(Dr[j]) else {},
                   remedy=remedy)
        self._memo["error", key] = out
        return out

    def check_accuracy(self, n_lenses: int, *, eta=None, sigma=None, tol: float = ERROR_TOL,
                       action: str = "warn") -> dict:
        """:meth:`error_report`, then a :class:`SelectionWarning` (``action="warn"``) or a
        ValueError (``"raise"``) naming the remedy when N lenses need a finer table or rule than
        this one. Returns the report.

        Examples
        --------
        >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
        ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
        >>> sq.check_accuracy(100_000, action="ignore")["ok"]
        False
        """
        if action not in ("warn", "raise", "ignore"):
            raise ValueError(f"action must be 'warn', 'raise' or 'ignore', got {action!r}")
        r = self.error_report(n_lenses, eta=eta, sigma=sigma, tol=tol)
        if not r["ok"] and action != "ignore":
            msg = (f"A(eta) is not accurate enough for {r['n_lenses']} lenses: its error varies by "
                   f"{r['max']:.3g} in N log A over one posterior sigma of {r['worst']} (target <= {r['tol']:g}; "
                   f"{self!r}). Remedy: {r['remedy']}.")
            if action == "raise":
                raise ValueError(msg)
            import warnings

            warnings.warn(msg, SelectionWarning, stacklevel=2)
        return r

    def _gamma_nodes(self, e: np.ndarray, grad: bool = False):
        """Per-eta nodes and weights of the truncated gamma law (Gauss-Legendre on its +-7 sigma within
        the support); with ``grad`` also their derivatives w.r.t. (mu_gamma, sigma_gamma), (n, n_g, 2)."""
        from scipy.special import expit

        mu, sg = e[:, 4:5], e[:, 5:6]
        # the rule spans mu +- 7 sigma within the support [lo, hi]; the ends are clipped to the
        # support *smoothly* (softplus of width sigma / 2, moving an end by at most 0.35 sigma), so
        # that A and its gradient are smooth in eta where an end meets the support (a hard clip
        # made d log A / d sigma_gamma jump by ~0.5 there, x N lenses in the posterior gradient)
        s = 0.5 * sg
        u_lo, u_hi = (mu - 7 * sg - GAMMA_LO) / s, (GAMMA_HI - mu - 7 * sg) / s
        lo = GAMMA_LO + s * np.logaddexp(0.0, u_lo)
        hi = GAMMA_HI - s * np.logaddexp(0.0, u_hi)
        empty = ~(hi > lo)
        lo = np.where(empty, GAMMA_LO, lo)
        hi = np.where(empty, GAMMA_HI, hi)
        g = 0.5 * (hi - lo) * self._tg[None, :] + 0.5 * (hi + lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            lp = gamma_logpdf(g, mu, sg)
        w = 0.5 * (hi - lo) * self._wg[None, :] * np.exp(lp)
        w = np.where(np.isfinite(w), w, 0.0)
        if not grad:
            return np.ascontiguousarray(g), np.ascontiguousarray(w)
        # d(lo, hi) / d(mu, sigma) of the softplus ends (0 in the degenerate "empty" case)
        ok = ~empty
        r_lo, r_hi = expit(u_lo), expit(u_hi)
        c_lo = 0.5 * (np.logaddexp(0.0, u_lo) - u_lo * r_lo)    # d lo / d sigma through s = sigma / 2
        c_hi = 0.5 * (np.logaddexp(0.0, u_hi) - u_hi * r_hi)
        dlo = np.stack([ok * r_lo, ok * (-7.0 * r_lo + c_lo)], axis=-1)      # (n, 1, 2)
        dhi = np.stack([ok * r_hi, ok * (7.0 * r_hi - c_hi)], axis=-1)
        dhalf, dmid = 0.5 * (dhi - dlo), 0.5 * (dhi + dlo)
        dg = dmid + dhalf * self._tg[None, :, None]                          # (n, n_g, 2)
        dnorm = _selection.gamma_log_norm_grad_batch(np.ascontiguousarray(e[:, 4]), np.ascontiguousarray(e[:, 5]),
                                                     GAMMA_LO, GAMMA_HI)[:, None, :]
        z = (g - mu) / sg
        # d log p(g | mu, sigma): partials at fixed g plus (d log p / d g) (d g / d eta)
        dlp = np.stack([z / sg, z * z / sg], axis=-1) + dnorm + (-z / sg)[..., None] * dg
        dw = w[..., None] * (dhalf / (0.5 * (hi - lo))[..., None] + dlp)
        dw = np.where(w[..., None] > 0, dw, 0.0)
        return np.ascontiguousarray(g), np.ascontiguousarray(w), np.ascontiguousarray(dg), np.ascontiguousarray(dw)

    def _quad(self, eta, grad: bool = False, mean: bool = False):
        """(n, 2): E[T] and E[1 - exp(-T)] per eta row; and the "one eta" flag. With ``grad``
        also (n, 6): d E[1 - exp(-T)] / d eta. ``mean``: integrate the zl-averaged rate
        sum_a w_a T_a instead of T_eff (for E[T] with redshift distributions)."""
        e, scalar = eta_batch(eta)
        nodes = self._gamma_nodes(e, grad)
        lo, hi = self.forward_model.halo_support
        T, LT = self.T, self._logT
        if mean and self.T_zl is not None:
            if self._mean_table is None:
                tm = np.ascontiguousarray(np.tensordot(self._zl_weights, self.T_zl, axes=1))
                self._mean_table = (tm, _log_table(tm))
            T, LT = self._mean_table
        res = _selection.quad_selection(self.kernel, T, LT, self._start, self._step, self._M, self._wM,
                                        self._tR, self._wR, self._tH, self._wH, lo, hi, nodes[0], nodes[1], e,
                                        self.n_threads, *nodes[2:])
        out = res[0] if grad else res
        if np.isnan(out).any():                  # a nan table coordinate (inf - inf of a huge eta)
            i = int(np.argmax(np.isnan(out).any(axis=1)))
            raise ValueError(f"A(eta) is undefined at eta = {e[i].tolist()}: the quadrature nodes overflow "
                             "(eta values too large)")
        return (out, res[1], scalar) if grad else (out, scalar)

    def log_lens_fraction_and_grad(self, eta):
        """log A(eta) and its eta-gradient d log A / d eta (exact derivative of the quadrature as
        computed: nodes that move with eta and the interpolation of the rate table).

        Parameters
        ----------
        eta : array (6,) or (n, 6)

        Returns
        -------
        (float, (6,)) for one eta; ((n,), (n, 6)) for a batch.

        Performance
        -----------
        About 1.7x :meth:`lens_fraction` in CPU time (derivatives of the table interpolation;
        `benchmarks/bench_selection.py --quad-only`).

        Precision
        ---------
        Agrees with central finite differences of log A to ~1e-8 relative
        (``tests/test_gradients.py``); the piecewise-cubic interpolation of the rate table is
        continuous, its derivative jumps by O(step^3) where a quadrature node crosses a table
        node (the multilinear rule's O(step) jumps made finite differences of log A disagree by
        ~2e-5 relative; now ~4e-8).

        Examples
        --------
        >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
        ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
        >>> la, g = sq.log_lens_fraction_and_grad(DEFAULT_ETA.to_array())
        >>> g.shape
        (6,)
        """
        out, g, scalar = self._quad(eta, grad=True)
        A = out[:, 1]
        la = np.log(A)
        gl = g / A[:, None]
        return (float(la[0]), gl[0]) if scalar else (la, gl)

    def lens_fraction(self, eta):
        """A(eta) = E[1 - exp(-T)]: the fraction of galaxies catalogued as lenses (float for one
        eta, array for a batch); ValueError for a non-finite eta or a sigma <= 0."""
        out, scalar = self._quad(eta)
        return float(out[0, 1]) if scalar else out[:, 1]

    def expected_sources(self, eta):
        """E[T]: the expected number of detected sources per galaxy (averaged over p(zl), p(zs))."""
        out, scalar = self._quad(eta, mean=True)
        return float(out[0, 0]) if scalar else out[:, 0]

    def rate(self, logM_star, logRe, logM_halo, gamma_in, *, zl=None) -> np.ndarray:
        """The tabulated selection rate T at arbitrary galaxies (same interpolation as A; clamped to
        the table's range in logM*, logRe and gamma_in, 0 outside the halo support).

        With redshift distributions it is the zs-mixed rate at the galaxies' own lens redshift
        ``zl`` (required then): the per-node rates interpolated across the zl nodes (class notes).

        Examples
        --------
        >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
        ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
        >>> sq.rate([11.5], [0.9], [18.0], [1.0])
        array([0.])
        """
        shape = np.broadcast_shapes(*(np.shape(v) for v in (logM_star, logRe, logM_halo, gamma_in)))
        a = [np.ascontiguousarray(np.ravel(np.broadcast_to(v, shape)), dtype=float)
             for v in (logM_star, logRe, logM_halo, gamma_in)]
        if self.T_zl is None:
            out = _selection.interp_rate(self.T, self._logT, self._start, self._step, *a)
        else:
            if zl is None and not isinstance(self.forward_model.zl, float):
                raise ValueError("this selection table integrates over p(zl): rate() needs the lens redshift zl")
            z = as_float_array("zl", self.forward_model.zl if zl is None else zl, lo=0.0, lo_open=True)
            z = np.ravel(np.broadcast_to(z, shape))
            r = np.stack([_selection.interp_rate(t, lt, self._start, self._step, *a)
                          for t, lt in zip(self.T_zl, self._logT_zl)])
            out = self._interp_zl(r, z)
        lo, hi = self.forward_model.halo_support
        out[~((a[2] >= lo) & (a[2] <= hi))] = 0.0
        return out.reshape(shape)

    def _interp_zl(self, r: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Rates r (n_zl, n) at the zl nodes -> rates at lens redshifts z (n,): Lagrange
        interpolation in zl of log r where every node rate is > 0, of r elsewhere (at the edge of
        the lensing region). In angular units (sources per arcsec^2 over the caustic's solid
        angle) the rate of a galaxy changes slowly with zl; see :meth:`rate` for the accuracy."""
        zn = self._zl_nodes
        if len(zn) == 1:
            return r[0].copy()
        L = np.ones((len(zn), len(z)))
        for a in range(len(zn)):
            for b in range(len(zn)):
                if b != a:
                    L[a] *= (z - zn[b]) / (zn[a] - zn[b])
        pos = np.all(r > 0, axis=0)
        with np.errstate(divide="ignore"):
            lr = np.log(np.where(pos[None, :], r, 1.0))
        return np.where(pos, np.exp(np.sum(L * lr, axis=0)), np.maximum(np.sum(L * r, axis=0), 0.0))

    def save(self, path) -> Path:
        with atomic_h5(path) as f:
            f.create_dataset("T", data=self.T, compression="gzip")
            if self.T_zl is not None:
                f.create_dataset("T_zl", data=self.T_zl, compression="gzip")
            write_attrs(f, dict(kind="sl_cy.selection_table", axes=self.axes, config=self.config,
                                config_hash=self.config_hash))
        return Path(path)

    @classmethod
    def load(cls, path, expected_hash: str | None = None) -> "SelectionQuadrature":
        import h5py

        with h5py.File(path, "r") as f:
            a = read_attrs(f)
            if a.get("kind") != "sl_cy.selection_table":
                raise ValueError(f"{path} is not an sl_cy selection table")
            if expected_hash is not None and a.get("config_hash") != expected_hash:
                raise ValueError(f"{path} was built for another configuration")
            return cls(f["T"][()], a["axes"], a["config"], T_zl=f["T_zl"][()] if "T_zl" in f else None)


def _log_table(T: np.ndarray) -> np.ndarray:
    """log T, -inf where T = 0 (C-contiguous, for the compiled interpolation)."""
    with np.errstate(divide="ignore"):
        return np.ascontiguousarray(np.where(T > 0, np.log(np.where(T > 0, T, 1.0)), -np.inf))


def selection_table_config(forward_model: ForwardModel | None = None, *, axes=None, n_beta=8, k_n_mu=601, n_zl: int | None = None, n_zs: int | None = None) -> dict:
    """The configuration (and cache key) of the selection-rate table of a forward model.

    ``n_zl``, ``n_zs``: quadrature nodes of p(zl), p(zs) (default :data:`REDSHIFT_NODES`; one
    node for a fixed redshift). A fixed-redshift forward model gives the configuration of earlier
    versions (same hash, so cached tables stay valid)."""
    fm = as_forward_model(forward_model)
    axes = dict(selection_table_axes(fm) if axes is None else axes)
    if set(axes) != set(AXIS_NAMES):
        raise ValueError(f"axes must give {list(AXIS_NAMES)}, got {list(axes)}")
    for k, (lo, hi, st) in axes.items():
        if not (st > 0 and hi > lo):
            raise ValueError(f"axis {k}: need start < stop and step > 0, got {(lo, hi, st)}")
    ax = {k: [float(v) for v in axes[k]] for k in AXIS_NAMES}
    if fm.fixed_redshifts:
        return dict(schema=SELECTION_TABLE_VERSION, forward_model=fm.to_dict(), nbkg_kpc2=fm.nbkg_kpc2, axes=ax,
                    n_beta=int(n_beta), k_table=dict(n_mu=int(k_n_mu)))
    nodes = {}
    for name, dist, n in (("zl", fm.zl_dist, n_zl), ("zs", fm.zs_dist, n_zs)):
        n = REDSHIFT_NODES[name] if n is None else n
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n_{name} must be a positive integer, got {n!r}")
        z, w = dist.nodes(int(n))
        nodes[name], nodes[f"{name}_weights"] = [float(v) for v in z], [float(v) for v in w]
    nodes["nbkg_kpc2"] = [float(v) for v in np.atleast_1d(fm.nbkg_at(np.array(nodes["zl"])))]
    return dict(schema=SELECTION_TABLE_VERSION_Z, forward_model=fm.to_dict(), axes=ax, n_beta=int(n_beta),
                k_table=dict(n_mu=int(k_n_mu)), redshift_nodes=nodes)


def build_selection_table(survey: SurveyConfig | None = None, *, zl: float | None = None, zs: float | None = None,
                          c_halo: float | None = None, model: str | None = None, axes: dict | None = None,
                          n_beta: int = 8, n_jobs=1, executor=None, cosmo=None, cache: bool = True,
                          cache_dir=None, progress=False, forward_model: ForwardModel | None = None,
                          n_zl: int | None = None, n_zs: int | None = None) -> SelectionQuadrature:
    """Tabulate the selection rate T and return the deterministic A(eta) (:class:`SelectionQuadrature`).

    Parameters
    ----------
    survey, zl, zs, c_halo, model, cosmo :
        Overrides of ``forward_model`` (each None keeps its value).
    forward_model : ForwardModel, optional
        The forward model (default ``ForwardModel()``): the same object the mock, the grids and
        the likelihood use.
    axes : dict, optional
        (start, stop, step) per axis (default :func:`selection_table_axes`).
    n_beta : int
        Gauss-Legendre nodes of the area average over source positions.
    n_zl, n_zs : int, optional
        Quadrature nodes of p(zl), p(zs) of a forward model with redshift distributions
        (default :data:`REDSHIFT_NODES`; the build costs one fixed-redshift table per (zl, zs)
        node pair with zs > zl).
    n_jobs, executor :
        Parallelism over logM* slices (:func:`sl_cy.parallel.map_chunks`).
    cache : bool
        Load/store the table in ``cache_dir`` (default ``$SL_CY_CACHE_DIR`` or ``~/.cache/sl_cy``),
        keyed by the hash of its configuration.
    progress : bool

    Returns
    -------
    SelectionQuadrature

    Performance
    -----------
    ~9 forward solves per node: ~50 s for the default table on one core (``n_jobs`` processes
    divide it), then a cache hit takes ~0.1 s.

    Examples
    --------
    >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
    ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
    >>> sq.forward_model == ForwardModel()
    True
    """
    fm = as_forward_model(forward_model, survey=survey, zl=zl, zs=zs, c_halo=c_halo, model=model, cosmology=cosmo)
    cfg = selection_table_config(fm, axes=axes, n_beta=n_beta, n_zl=n_zl, n_zs=n_zs)
    h = config_hash(cfg)
    from sl_cy.cache import cache_path, load_or_build

    path = cache_path("selection_table", h, folder=cache_dir) if cache else None

    def load(p):
        sq = SelectionQuadrature.load(p, expected_hash=h)
        sq.path = p
        return sq

    def save(sq, p):
        sq.save(p)
        sq.path = p

    return load_or_build(path, load=load, build=lambda: _build_table(cfg, fm, n_beta, n_jobs, executor, progress),
                         save=save, what="selection table")[0]


def _build_table(cfg, fm, n_beta, n_jobs, executor, progress) -> SelectionQuadrature:
    """Tabulate the selection rate T on the table's axes (see :func:`build_selection_table`)."""
    ax = {k: _axis(cfg["axes"][k]) for k in AXIS_NAMES}
    # area average over u = (beta / y_c)^2 in [0, 1): K varies fastest at both ends (mu -> inf on
    # the Einstein ring, u -> 0, and at the radial caustic, u -> 1), so substitute
    # u = (1 - cos(pi v)) / 2, which clusters Gauss-Legendre nodes in v at both ends
    t, wv = np.polynomial.legendre.leggauss(int(n_beta))
    v = 0.5 * (t + 1.0)
    u = 0.5 * (1.0 - np.cos(np.pi * v))
    w = wv * 0.5 * np.pi * np.sin(np.pi * v)     # du = (pi / 2) sin(pi v) dv; (0.5 * w) sums to 1
    bu = np.sqrt(u)
    rn = cfg.get("redshift_nodes")
    if rn is None:         # fixed redshifts: one node pair of weight 1 (the table of earlier versions)
        pairs, nbkg = [(0, fm.zl, fm.zs, 1.0)], [cfg["nbkg_kpc2"]]
    else:                  # (zl node, zs node) pairs with the source behind the lens, weighted by p(zs)
        pairs = [(a, za, zb, wb) for a, za in enumerate(rn["zl"]) for zb, wb in zip(rn["zs"], rn["zs_weights"])
                 if zb > za]
        nbkg = rn["nbkg_kpc2"]
    n_m = len(ax["logM_star"])
    tasks = [_TableTask(p * n_m + i, float(x), (ax["logRe"], ax["logM_halo"], ax["gamma_in"]), bu, zl_, zs_,
                        fm.c_halo, fm.cosmology) for p, (_, zl_, zs_, _) in enumerate(pairs)
             for i, x in enumerate(ax["logM_star"])]
    kt = _ktable_for(fm.survey, cfg["k_table"]["n_mu"])
    T_zl = np.zeros((1 if rn is None else len(rn["zl"]),) + tuple(len(a) for a in ax.values()))
    for r in map_chunks(_table_row, tasks, n_jobs=n_jobs, executor=executor, progress=progress,
                        desc="selection table"):
        K = np.zeros(r["mu_A"].shape)
        ok = r["ok"]
        if ok.any():
            K[ok] = kt(r["mu_A"][ok], r["mu_B"][ok])
        a, _, _, wb = pairs[r["index"] // n_m]
        T_zl[a, r["index"] % n_m] += wb * (math.pi * r["y_caustic"] ** 2 * nbkg[a] * (K @ (0.5 * w)))
    axes_ = {k: cfg["axes"][k] for k in AXIS_NAMES}
    if rn is None:
        return SelectionQuadrature(T_zl[0], axes_, cfg)
    # T_eff = -log(sum_a w_a exp(-T_a)) = -log1p(sum_a w_a expm1(-T_a)) (exact for small T)
    s = np.tensordot(np.asarray(rn["zl_weights"]), np.expm1(-T_zl), axes=1)
    T_eff = -np.log1p(np.maximum(s, -1.0 + 2.0 ** -52))        # <= 36: 1 - exp(-T_eff) = 1 to 1e-16
    return SelectionQuadrature(T_eff, axes_, cfg, T_zl=T_zl)


def selection_for(forward_model=None, *, n_lenses: int | None = None, axes: dict | None = None, n_jobs=-1,
                  progress=None, cache_dir=None, n_zl=None, n_zs=None) -> SelectionQuadrature:
    """The default A(eta) engine of a forward model: its :class:`SelectionQuadrature`, built once
    (~25 s on two cores) and then loaded from the cache (``$SL_CY_CACHE_DIR`` or ``~/.cache/sl_cy``).

    Parameters
    ----------
    forward_model : ForwardModel or its dict, optional (default ``ForwardModel()``)
    n_lenses : int, optional
        The number of lenses A(eta) will normalise. From :data:`ERROR_CHECK_MIN_LENSES` on, the
        default table's :meth:`~SelectionQuadrature.error_report` at this N is consulted; where
        its interpolation error is too large for N lenses, the table refined along the axes the
        report names (``refine``, e.g. logRe and gamma_in at 1e5 lenses: ~4x the build time,
        cached like the default) is built and returned instead. Whether that one suffices is
        then checked by :class:`sl_cy.likelihood.Posterior` (a warning otherwise).
    axes : dict, optional
        (start, stop, step) per axis of the first table (default :func:`selection_table_axes` of
        the forward model), e.g. a coarser one that is cheap to build; a refinement halves its
        steps along the axes the report names (each axis needs >= 7 nodes for the report to
        check it).
    n_jobs : int
        Processes for a first build (-1: all cores).
    n_zl, n_zs : int, optional
        Redshift quadrature nodes (:func:`build_selection_table`).
    progress : bool, optional
        Progress bar of a first build (default: when attached to a terminal).

    Returns
    -------
    SelectionQuadrature

    Performance
    -----------
    The refined table for 1e5 lenses of the default forward model (logRe and gamma_in steps
    halved, 32 x 60 x 71 x 41 nodes, 4x the forward solves): built in 511 s with ``n_jobs=2``
    on 2 cores shared with other jobs (load 5-6), 39 MB on disk, loaded in ~1 s; A(eta) on it
    costs 1.5x that on the default table (4.8 / 7.1 ms CPU per eta, value / gradient).

    Examples
    --------
    >>> selection_for().T.shape
    (32, 31, 71, 21)
    """
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    fm = as_forward_model(forward_model)
    kw = dict(forward_model=fm, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir, n_zl=n_zl, n_zs=n_zs)
    sq = build_selection_table(axes=axes, **kw)
    if n_lenses is None or _check_n(n_lenses, "n_lenses") < ERROR_CHECK_MIN_LENSES:
        return sq
    refine = sq.error_report(int(n_lenses))["refine"]
    if not refine:
        return sq
    if progress:
        print(f"A(eta): {n_lenses} lenses need a finer selection-rate table (steps halved along "
              f"{', '.join(refine)}); building or loading it", file=sys.stderr, flush=True)
    if axes is None:
        fine = selection_table_axes(fm, refine=refine)
    else:
        ref = _refine_factors(refine)
        fine = {k: (lo, hi, st / ref[k]) for k, (lo, hi, st) in sq.axes.items()}
    return build_selection_table(axes=fine, **kw)
