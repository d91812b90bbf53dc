"""Priors, likelihood and posterior of the population hyper-parameters eta (DESIGN section 3).

eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma), always in that order
(:data:`sl_cy.population.ETA_NAMES`). Per lens i, on its grid (logMh_j, gamma_k) with
M = logM*(grid) - alpha_sps::

    p(d_i, det | eta) = sum_jk w_j w_k  p(logMh_j | M, Re_i, eta) p(gamma_k | eta)
                        p_sk(M) p(logRe_i | M) N(M_obs,i; M, sigma_star)
                        2 pi n_bkg beta |J| F_phot

    log L(eta) = sum_i log p(d_i, det | eta) - N log A(eta)

Integration rule: each grid point carries its quadrature weight ``wq`` in d(logMh) d(gamma) (the
trapezoid rule on each axis of a regular grid, :func:`trapezoid_weights`; the per-column
arc-length rule of an adaptive grid, :func:`sl_cy.grids.adaptive_columns`); invalid grid points
have weight 0. A grid with a single gamma node means gamma_in is
fixed: there is no gamma integral and p(gamma | eta) is **not** applied (then mu_gamma and
sigma_gamma do not enter the likelihood; :class:`Posterior` fixes them by default).

The per-lens sums are done by the compiled kernel :mod:`sl_cy._likelihood` (:class:`LikelihoodKernel`);
:func:`log_likelihood_numpy` is the plain NumPy evaluation of the same sum from the
:mod:`sl_cy.population` log-densities (the reference of the tests and benchmark).

Priors are objects: :class:`Prior` holds one 1-D prior per parameter (:class:`Uniform`,
:class:`Gaussian` or any callable returning a log-density) and ``fixed`` values;
:func:`BoxPrior` is the default top-hat box :data:`DEFAULT_BOX`.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping

import numpy as np

from sl_cy import _likelihood
from sl_cy.config import SCATTER
from sl_cy.grids import trapezoid_weights
from sl_cy.population import (DEFAULT_ETA, ETA_NAMES, GAMMA_HI, GAMMA_LO, PIVOT_LOGM, gamma_logpdf, logMh_logpdf,
                              logRe_logpdf, model_params, mstar_logpdf)

__all__ = [
    "DEFAULT_BOX", "DEFAULT_PRIOR", "Uniform", "Gaussian", "Prior", "BoxPrior", "log_prior", "trapezoid_weights",
    "LikelihoodKernel", "log_likelihood_numpy", "log_likelihood", "log_posterior", "Posterior",
]

#: Default prior box (top-hat per parameter), in ETA_NAMES order.
DEFAULT_BOX = {
    "alpha_sps": (-0.5, 0.5),
    "mu_h": (12.0, 14.0),
    "beta_h": (0.0, 4.0),
    "sigma_h": (0.05, 1.0),
    "mu_gamma": (0.2, 1.8),
    "sigma_gamma": (0.05, 1.0),
}


# --------------------------------------------------------------------------------------------
# priors
# --------------------------------------------------------------------------------------------
class Uniform:
    """Top-hat prior on [lo, hi]: log-density -log(hi - lo) inside (bounds included), -inf outside.

    Examples
    --------
    >>> Uniform(0, 2).logpdf(np.array([-1.0, 1.0]))
    array([       -inf, -0.69314718])
    """

    def __init__(self, lo: float, hi: float):
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"Uniform prior needs finite lo < hi, got [{lo}, {hi}]")
        self.lo, self.hi = lo, hi

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where((x >= self.lo) & (x <= self.hi), -math.log(self.hi - self.lo), -np.inf)

    def support(self):
        """(lo, hi)."""
        return self.lo, self.hi

    def __repr__(self):
        return f"Uniform({self.lo!r}, {self.hi!r})"


class Gaussian:
    """Normal prior N(mu, sigma), optionally truncated to [lo, hi] (not renormalised: a constant
    does not matter for the posterior).

    Examples
    --------
    >>> float(Gaussian(0.0, 1.0).logpdf(0.0))
    -0.9189385332046727
    """

    def __init__(self, mu: float, sigma: float, lo: float = -np.inf, hi: float = np.inf):
        self.mu, self.sigma, self.lo, self.hi = float(mu), float(sigma), float(lo), float(hi)
        if not (math.isfinite(self.mu) and self.sigma > 0 and math.isfinite(self.sigma) and self.hi > self.lo):
            raise ValueError(f"Gaussian prior needs finite mu, sigma > 0 and lo < hi, got {self!r}")

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        z = (x - self.mu) / self.sigma
        out = -0.5 * z * z - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)
        return np.where((x >= self.lo) & (x <= self.hi), out, -np.inf)

    def support(self):
        """(lo, hi) clipped to mu +- 5 sigma (for starting points)."""
        return max(self.lo, self.mu - 5 * self.sigma), min(self.hi, self.mu + 5 * self.sigma)

    def __repr__(self):
        return f"Gaussian({self.mu!r}, {self.sigma!r}, lo={self.lo!r}, hi={self.hi!r})"


class _CallablePrior:
    """Wrap a user function f(x) -> log-density (vectorised or scalar)."""

    def __init__(self, func: Callable, support=None):
        self.func = func
        self._support = support

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        try:
            out = np.asarray(self.func(x), dtype=float)
            if out.shape != x.shape:
                raise ValueError
        except Exception:
            out = np.array([float(self.func(float(v))) for v in x.ravel()]).reshape(x.shape)
        return out

    def support(self):
        return self._support

    def __repr__(self):
        return f"Callable({getattr(self.func, '__name__', self.func)!r})"


def _as_1d_prior(p, name):
    if hasattr(p, "logpdf"):
        return p
    if isinstance(p, tuple) and len(p) == 2:
        return Uniform(*p)
    if callable(p):
        return _CallablePrior(p, DEFAULT_BOX.get(name))
    raise TypeError(f"prior for {name!r} must be a Uniform/Gaussian, a (lo, hi) tuple or a callable, got {p!r}")


class Prior:
    """Prior on eta: one independent 1-D prior per parameter, plus fixed values.

    Parameters
    ----------
    params : mapping name -> prior, optional
        Per-parameter priors overriding the default box: a :class:`Uniform`, a :class:`Gaussian`,
        a ``(lo, hi)`` tuple (uniform) or a callable ``f(x) -> log-density`` (vectorised or not).
        Parameters not given keep their :data:`DEFAULT_BOX` top-hat.
    fixed : mapping name -> value, optional
        Parameters held fixed (not sampled; their prior is not applied).

    Notes
    -----
    A sigma (``sigma_h``, ``sigma_gamma``) <= 0 always has log-prior -inf, whatever its prior.

    Examples
    --------
    >>> pr = Prior({"alpha_sps": Gaussian(0.0, 0.1)}, fixed={"mu_gamma": 1.0, "sigma_gamma": 0.2})
    >>> pr.free_names
    ('alpha_sps', 'mu_h', 'beta_h', 'sigma_h')
    >>> bool(np.isfinite(pr.logpdf([0.0, 12.9, 2.0, 0.4, 1.0, 0.2])))
    True
    >>> float(pr.logpdf([0.0, 15.0, 2.0, 0.4, 1.0, 0.2]))
    -inf
    """

    def __init__(self, params: Mapping | None = None, fixed: Mapping | None = None):
        params = dict(params or {})
        unknown = (set(params) | set(fixed or {})) - set(ETA_NAMES)
        if unknown:
            raise ValueError(f"unknown eta parameter(s) {sorted(unknown)}; names are {ETA_NAMES}")
        self.params = {n: _as_1d_prior(params.get(n, DEFAULT_BOX[n]), n) for n in ETA_NAMES}
        self.fixed = {k: float(v) for k, v in (fixed or {}).items()}

    @property
    def free_names(self) -> tuple:
        """Names of the sampled parameters, in ETA_NAMES order."""
        return tuple(n for n in ETA_NAMES if n not in self.fixed)

    def with_fixed(self, fixed: Mapping | None) -> "Prior":
        """A copy with more fixed parameters."""
        p = Prior.__new__(Prior)
        p.params = dict(self.params)
        p.fixed = {**self.fixed, **{k: float(v) for k, v in (fixed or {}).items()}}
        unknown = set(p.fixed) - set(ETA_NAMES)
        if unknown:
            raise ValueError(f"unknown eta parameter(s) {sorted(unknown)}; names are {ETA_NAMES}")
        return p

    def logpdf(self, eta):
        """log prior of full eta vector(s) (6,) -> float or (n, 6) -> (n,); fixed parameters are
        not scored. NaN anywhere -> -inf."""
        e = np.asarray(eta, dtype=float)
        one = e.ndim == 1
        e = np.atleast_2d(e)
        if e.shape[-1] != len(ETA_NAMES):
            raise ValueError(f"eta needs {len(ETA_NAMES)} values {ETA_NAMES}, got shape {e.shape}")
        out = np.zeros(len(e))
        with np.errstate(invalid="ignore"):
            for i, n in enumerate(ETA_NAMES):
                if n in self.fixed:
                    continue
                out = out + np.asarray(self.params[n].logpdf(e[:, i]), dtype=float)
            out = np.where(np.all(np.isfinite(e), axis=1) & (e[:, 3] > 0) & (e[:, 5] > 0), out, -np.inf)
        out = np.where(np.isnan(out), -np.inf, out)
        return float(out[0]) if one else out

    def support(self, name: str):
        """(lo, hi) of a parameter's prior (for starting points); None if unknown."""
        return self.params[name].support()

    def __repr__(self):
        return f"Prior({self.params!r}, fixed={self.fixed!r})"


def BoxPrior(box: Mapping | None = None, fixed: Mapping | None = None) -> Prior:
    """The default top-hat prior: :class:`Uniform` on :data:`DEFAULT_BOX` per parameter,
    alpha_sps in [-0.5, 0.5], mu_h in [12, 14], beta_h in [0, 4], sigma_h in [0.05, 1],
    mu_gamma in [0.2, 1.8], sigma_gamma in [0.05, 1]; ``box`` overrides some (lo, hi).

    Examples
    --------
    >>> BoxPrior({"mu_h": (12.5, 13.5)}).support("mu_h")
    (12.5, 13.5)
    """
    return Prior({n: Uniform(*(box or {}).get(n, DEFAULT_BOX[n])) for n in ETA_NAMES}, fixed=fixed)


#: The default prior (top-hat box).
DEFAULT_PRIOR = BoxPrior()


def log_prior(theta, prior: Prior | None = None):
    """Log prior of eta (seed name); default: the top-hat :data:`DEFAULT_BOX` (0 inside, -inf out
    up to the constant -log volume).

    Parameters
    ----------
    theta : array (6,) or (n, 6)
    prior : Prior, optional

    Returns
    -------
    float or (n,) array

    Examples
    --------
    >>> bool(np.isfinite(log_prior([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])))
    True
    >>> log_prior([0.0, 12.91, 2.04, 0.01, 1.0, 0.2])
    -inf
    """
    return (prior or DEFAULT_PRIOR).logpdf(theta)


# --------------------------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------------------------
def _stacked(grids) -> dict:
    if isinstance(grids, dict):
        return grids
    from sl_cy.grids import stack_grids

    return stack_grids(grids)


def _model_tuple(model: str, sigma_star: float):
    p = model_params(model)
    return (p["mu_star"], p["sigma_star"], 10.0 ** p["log_s_star"], p["mu_R0"], p["beta_R"], p["sigma_R"],
            p["xi_h"], float(sigma_star), PIVOT_LOGM)


class LikelihoodKernel:
    """Compiled per-lens likelihood sum over stacked grids (shared axes).

    Parameters
    ----------
    grids : list of LensGrid, or the dict of :func:`sl_cy.grids.stack_grids`
    model : str
        Population model (fixed parameters of :mod:`sl_cy.population`).
    sigma_star : float, optional
        Scatter of the observed SPS mass (default ``SCATTER.star`` = 0.1).
    n_threads : int, optional
        OpenMP threads (default: all available cores).

    Attributes
    ----------
    n_lenses, n_points : int
        Lenses and valid points kept.
    n_empty : int
        Lenses without a single valid point (their log p is -inf, so is log L).
    use_gamma : bool
        False for a one-node gamma axis (no gamma integral, p(gamma | eta) not applied).

    Performance
    -----------
    About 13 microseconds per lens per eta on a 30 x 30 grid (~665 valid points, ~19 ns per
    valid point) on one core, 7 us on two; the plain NumPy evaluation takes ~0.6 ms (~50x).
    Parallel (OpenMP) over (eta, lens) pairs; results do not depend on the thread count
    (``benchmarks/bench_likelihood.py``).

    Precision
    ---------
    Equal to :func:`log_likelihood_numpy` (same points, same weights) to ~1e-15 relative
    (pruned points contribute < 4e-18 each relative to the largest term). The *quadrature* error
    of the grid itself is a separate matter: the integrand is a narrow ridge along the curve
    logM*(logMh) of each gamma column, which a uniform grid resolves only with ~0.02 dex steps;
    the adaptive grids of :func:`sl_cy.grids.tabulate_likelihood_grids` (``adaptive=True``, the
    pipeline's default) follow it with ~1100 points per lens and agree with a 4x finer rule to
    ~1e-3 at the default truth (``benchmarks/bench_likelihood.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> grids = tabulate_likelihood_grids(obs, np.arange(11.0, 15.01, 0.1), np.linspace(0, 2, 11))
    >>> k = LikelihoodKernel(grids)
    >>> k([0.0, 12.91, 2.04, 0.37, 1.0, 0.2]).shape
    (1,)
    """

    def __init__(self, grids, model: str = "deVauc", sigma_star: float | None = None, n_threads: int | None = None):
        st = _stacked(grids)
        self.model = model
        self.sigma_star = float(SCATTER.star if sigma_star is None else sigma_star)
        self.logMh_axis = np.asarray(st["logMh_axis"], dtype=float)
        self.gamma_axis = np.asarray(st["gamma_axis"], dtype=float)
        self.use_gamma = len(self.gamma_axis) > 1
        obs = st["observed"]
        self.n_lenses = len(st["valid"])
        self.logRe = np.ascontiguousarray(obs["logRe"], dtype=float)
        self.m_obs = np.ascontiguousarray(obs["logM_star_sps_observed"], dtype=float)
        nb = np.asarray(st["nbkg_kpc2"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            w = (2 * np.pi * nb[:, None, None] * st["beta"] * st["detJ"] * st["F_phot"]) * st["wq"]
            ok = (st["valid"] == 0) & np.isfinite(w) & (w > 0) & np.isfinite(st["logM_star"]) & np.isfinite(st["logMh"])
            logw0 = np.where(ok, np.log(np.where(ok, w, 1.0)), -np.inf)
        self.logw0_grid = logw0                   # (n_lens, n_Mh, n_gamma), -inf where invalid
        n_mh, n_g = ok.shape[1], len(self.gamma_axis)
        mh = st["logMh"]
        kk = np.broadcast_to(np.arange(n_g, dtype=np.int32)[None, None, :], ok.shape)
        self.L = np.ascontiguousarray(st["logM_star"][ok], dtype=float)
        self.logMh = np.ascontiguousarray(mh[ok], dtype=float)
        self.kg = np.ascontiguousarray(kk[ok], dtype=np.int32)
        self.logw0 = np.ascontiguousarray(logw0[ok], dtype=float)
        counts = ok.reshape(self.n_lenses, -1).sum(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.n_points = int(self.offsets[-1])
        self.n_empty = int(np.count_nonzero(counts == 0))
        self.grid_shape = (n_mh, n_g)
        self._model = _model_tuple(model, self.sigma_star)
        from sl_cy.parallel import available_cores

        self.n_threads = int(n_threads or available_cores())
        if self.n_empty:
            warnings.warn(f"{self.n_empty} lens(es) have no valid grid point: log L = -inf for every eta "
                          "(widen the grid)", RuntimeWarning, stacklevel=2)

    def per_lens(self, eta) -> np.ndarray:
        """log p(d_i | eta) per lens: eta (6,) -> (n_lens,), (n, 6) -> (n, n_lens)."""
        e = np.asarray(eta, dtype=float)
        one = e.ndim == 1
        e = np.ascontiguousarray(np.atleast_2d(e), dtype=float)
        out = _likelihood.loglike_lenses(e, self.L, self.logMh, self.kg, self.logw0, self.offsets, self.logRe,
                                         self.m_obs, self.gamma_axis, self.use_gamma, self._model, GAMMA_LO,
                                         GAMMA_HI, self.n_threads)
        return out[0] if one else out

    def __call__(self, eta) -> np.ndarray:
        """Sum over lenses of log p(d_i | eta): eta (6,) or (n, 6) -> (n,) (always 1-D)."""
        pl = self.per_lens(np.atleast_2d(np.asarray(eta, dtype=float)))
        with np.errstate(invalid="ignore"):
            return pl.sum(axis=1)

    # pickling (process pools): arrays only
    def __getstate__(self):
        return self.__dict__.copy()


def log_likelihood_numpy(eta, grids, model: str = "deVauc", sigma_star: float | None = None,
                         per_lens: bool = False):
    """Plain NumPy evaluation of sum_i log p(d_i | eta) from the :mod:`sl_cy.population`
    log-densities (the reference for :class:`LikelihoodKernel`; one eta, slow).

    Examples
    --------
    >>> from sl_cy.grids import LensGrid
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]), observed=dict(logRe=1.0,
    ...                    logM_star_sps_observed=11.5))
    >>> float(log_likelihood_numpy([0, 12.9, 2, 0.4, 1, 0.2], [g]))
    -inf
    """
    from scipy.special import logsumexp
    from scipy.stats import norm

    st = _stacked(grids)
    e = np.asarray(eta, dtype=float)
    sig = float(SCATTER.star if sigma_star is None else sigma_star)
    g_ax = np.asarray(st["gamma_axis"], float)
    obs = st["observed"]
    out = np.empty(len(st["valid"]))
    for i in range(len(out)):
        ok = (st["valid"][i] == 0) & np.isfinite(st["logMh"][i])
        mh = st["logMh"][i]
        g = np.broadcast_to(g_ax[None, :], mh.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            lw = np.log(2 * np.pi * st["nbkg_kpc2"][i] * st["beta"][i] * st["detJ"][i] * st["F_phot"][i] * st["wq"][i])
        ok &= np.isfinite(lw)
        if not ok.any():
            out[i] = -np.inf
            continue
        M = st["logM_star"][i][ok] - e[0]
        re = float(obs["logRe"].iloc[i])
        lp = (lw[ok] + logMh_logpdf(mh[ok], M, re, tuple(e), model) + mstar_logpdf(M, model)
              + logRe_logpdf(re, M, model) + norm.logpdf(float(obs["logM_star_sps_observed"].iloc[i]), M, sig))
        if len(g_ax) > 1:
            lp = lp + gamma_logpdf(g[ok], e[4], e[5])
        out[i] = logsumexp(lp)
    return out if per_lens else float(out.sum())


# --------------------------------------------------------------------------------------------
# likelihood / posterior
# --------------------------------------------------------------------------------------------
_KERNEL_CACHE: dict = {}


def _kernel_for(grids, model="deVauc") -> LikelihoodKernel:
    if isinstance(grids, LikelihoodKernel):
        return grids
    if isinstance(grids, Posterior):
        return grids.kernel
    key = (id(grids), model)
    hit = _KERNEL_CACHE.get(key)
    if hit is not None and hit[0] is grids:
        return hit[1]
    k = LikelihoodKernel(grids, model=model)
    _KERNEL_CACHE.clear()
    _KERNEL_CACHE[key] = (grids, k)
    return k


def _log_A(A, eta2d: np.ndarray) -> np.ndarray:
    """log A(eta) per row; -inf where A fails, is not finite or <= 0."""
    n = len(eta2d)
    try:
        a = np.asarray(A(eta2d), dtype=float).reshape(-1)
        if a.shape != (n,):
            raise ValueError
    except Exception:
        a = np.empty(n)
        for r in range(n):
            try:
                a[r] = float(np.asarray(A(eta2d[r]), dtype=float).reshape(-1)[0])
            except Exception:
                a[r] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(np.isfinite(a) & (a > 0), np.log(np.where(a > 0, a, 1.0)), -np.inf)
    return la


def log_likelihood(eta, grids, A=None, model: str = "deVauc"):
    """log L(eta) = sum_i log p(d_i, det | eta) - N log A(eta) (seed name).

    Parameters
    ----------
    eta : array (6,) or (n, 6)
        (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma).
    grids : list of LensGrid, stacked dict, or LikelihoodKernel
        (a list is compacted once and cached for repeated calls with the same object).
    A : callable, optional
        Selection normaliser A(eta_batch) -> array; None switches the -N log A term off.
        A <= 0 or non-finite (or an exception) gives -inf.
    model : str

    Returns
    -------
    float for one eta, (n,) array for a batch; -inf where undefined (never NaN).

    Examples
    --------
    >>> from sl_cy.grids import LensGrid
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]), observed=dict(logRe=1.0,
    ...                    logM_star_sps_observed=11.5))
    >>> import warnings; warnings.simplefilter("ignore")
    >>> log_likelihood([0, 12.9, 2, 0.4, 1, 0.2], [g])
    -inf
    """
    k = _kernel_for(grids, model)
    e = np.asarray(eta, dtype=float)
    one = e.ndim == 1
    e2 = np.atleast_2d(e)
    ll = k(e2)
    if A is not None:
        la = _log_A(A, e2)
        ll = np.where(np.isfinite(la), ll - k.n_lenses * la, -np.inf)
    ll = np.where(np.isnan(ll), -np.inf, ll)
    return float(ll[0]) if one else ll


def log_posterior(eta, grids, prior: Prior | None = None, A=None, model: str = "deVauc"):
    """log prior + log L (seed name); the likelihood is not evaluated outside the prior support.

    Examples
    --------
    >>> from sl_cy.grids import LensGrid
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]), observed=dict(logRe=1.0,
    ...                    logM_star_sps_observed=11.5))
    >>> log_posterior([0, 20.0, 2, 0.4, 1, 0.2], [g])
    -inf
    """
    e = np.asarray(eta, dtype=float)
    one = e.ndim == 1
    e2 = np.atleast_2d(e)
    lp = np.atleast_1d(log_prior(e2, prior))
    out = np.full(len(e2), -np.inf)
    ok = np.isfinite(lp)
    if ok.any():
        out[ok] = lp[ok] + np.atleast_1d(log_likelihood(e2[ok], grids, A=A, model=model))
    out = np.where(np.isnan(out), -np.inf, out)
    return float(out[0]) if one else out


class Posterior:
    """Log posterior on the FREE parameters, for emcee (scalar or vectorised walkers).

    Parameters
    ----------
    grids : list of LensGrid, stacked dict, or LikelihoodKernel
    A : callable, optional
        Selection normaliser A(eta_batch (n, 6)) -> (n,) (scalar calls are tried if the batch
        call fails); None = no selection term.
    prior : Prior, optional
        Default :func:`BoxPrior`.
    fixed : mapping name -> value, optional
        Fixed parameters (added to the prior's). For a one-node gamma grid, ``mu_gamma`` and
        ``sigma_gamma`` are fixed at the default truth (1.0, 0.2) unless given (the likelihood does
        not depend on them; A(eta) may).
    use_selection : bool
        False switches the -N log A term off (the seed's ``--no-eta``).
    model : str
    n_threads : int, optional
        OpenMP threads of the kernel.

    Call
    ----
    ``post(theta)``: theta (n_free,) -> float, or (n_walkers, n_free) -> (n_walkers,) (for
    ``emcee.EnsembleSampler(vectorize=True)``). A walker with NaN, outside the prior, or whose
    evaluation raises gets -inf; the others are unaffected.

    Performance
    -----------
    One kernel call per batch (plus one A call): ~n_lens * 8 us per walker on one core (30 x 30).

    Examples
    --------
    >>> from sl_cy.grids import LensGrid
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]), observed=dict(logRe=1.0,
    ...                    logM_star_sps_observed=11.5))
    >>> import warnings; warnings.simplefilter("ignore")
    >>> post = Posterior([g])
    >>> post.free_names
    ('alpha_sps', 'mu_h', 'beta_h', 'sigma_h')
    >>> post(np.array([[0, 12.9, 2, 0.4], [np.nan, 12.9, 2, 0.4]]))
    array([-inf, -inf])
    """

    def __init__(self, grids, A=None, prior: Prior | None = None, fixed: Mapping | None = None,
                 use_selection: bool = True, model: str = "deVauc", n_threads: int | None = None):
        if isinstance(grids, LikelihoodKernel):
            self.kernel = grids
        else:
            self.kernel = LikelihoodKernel(grids, model=model, n_threads=n_threads)
        fx = dict(fixed or {})
        pr = prior or DEFAULT_PRIOR
        if not self.kernel.use_gamma:
            for n in ("mu_gamma", "sigma_gamma"):
                if n not in fx and n not in pr.fixed:
                    fx[n] = float(getattr(DEFAULT_ETA, n))
        self.prior = pr.with_fixed(fx)
        self.A = A
        self.use_selection = bool(use_selection) and A is not None
        self.free_names = self.prior.free_names
        self.ndim = len(self.free_names)
        self._free_idx = np.array([ETA_NAMES.index(n) for n in self.free_names], dtype=int)
        self._base = np.array([self.prior.fixed.get(n, np.nan) for n in ETA_NAMES], dtype=float)

    @property
    def n_lenses(self) -> int:
        return self.kernel.n_lenses

    def full_eta(self, theta) -> np.ndarray:
        """Free vector(s) -> full eta (…, 6) with the fixed values filled in."""
        t = np.asarray(theta, dtype=float)
        if t.shape[-1] != self.ndim:
            raise ValueError(f"theta needs {self.ndim} values {self.free_names}, got shape {t.shape}")
        e = np.broadcast_to(self._base, t.shape[:-1] + (6,)).copy()
        e[..., self._free_idx] = t
        return e

    def free_theta(self, eta) -> np.ndarray:
        """Full eta (…, 6) -> free vector(s)."""
        return np.asarray(eta, dtype=float)[..., self._free_idx]

    def log_prior(self, theta):
        return self.prior.logpdf(self.full_eta(theta))

    def log_likelihood(self, theta):
        """log L on free parameters (with the selection term if enabled); -inf where undefined."""
        t = np.asarray(theta, dtype=float)
        one = t.ndim == 1
        e = np.atleast_2d(self.full_eta(t))
        out = self._loglike_full(e)
        return float(out[0]) if one else out

    def _loglike_full(self, e: np.ndarray) -> np.ndarray:
        n = len(e)
        try:
            ll = self.kernel(e)
        except Exception:
            ll = np.empty(n)
            for r in range(n):
                try:
                    ll[r] = float(self.kernel(e[r:r + 1])[0])
                except Exception:
                    ll[r] = -np.inf
        if self.use_selection:
            la = _log_A(self.A, e)
            ll = np.where(np.isfinite(la), ll - self.kernel.n_lenses * la, -np.inf)
        return np.where(np.isnan(ll), -np.inf, ll)

    def __call__(self, theta):
        t = np.asarray(theta, dtype=float)
        one = t.ndim == 1
        t2 = np.atleast_2d(t)
        out = np.full(len(t2), -np.inf)
        try:
            e = self.full_eta(t2)
            lp = np.atleast_1d(self.prior.logpdf(e))
        except Exception:
            return -np.inf if one else out
        ok = np.isfinite(lp)
        if ok.any():
            out[ok] = lp[ok] + self._loglike_full(e[ok])
        out = np.where(np.isnan(out), -np.inf, out)
        return float(out[0]) if one else out
