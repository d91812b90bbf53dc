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
:func:`sl_cy.testing.log_likelihood_numpy` is the plain NumPy evaluation of the same sum from
the :mod:`sl_cy.population` log-densities (the reference of the tests and benchmark).

Priors are objects: :class:`Prior` holds one 1-D prior per parameter (:class:`Uniform`,
:class:`Gaussian` or any callable returning a log-density) and ``fixed`` values;
:func:`BoxPrior` is the default top-hat box :data:`DEFAULT_BOX`.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

from sl_cy import _likelihood
from sl_cy.grids import trapezoid_weights
from sl_cy.forward import ForwardModel, ForwardModelMismatch
from sl_cy.population import DEFAULT_ETA, ETA_BOX, ETA_NAMES, GAMMA_HI, GAMMA_LO, PIVOT_LOGM

__all__ = [
    "DEFAULT_BOX", "DEFAULT_PRIOR", "Uniform", "Gaussian", "Prior", "BoxPrior", "log_prior", "trapezoid_weights",
    "LikelihoodKernel", "log_likelihood", "log_posterior", "Posterior",
]

#: Default prior box (top-hat per parameter): :data:`sl_cy.population.ETA_BOX`, the one
#: definition the selection engines share.
DEFAULT_BOX = ETA_BOX


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

    def grad_logpdf(self, x):
        """d log-density / dx: 0 (inside the support; the support is the optimiser's bounds)."""
        return np.zeros_like(np.asarray(x, dtype=float))

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

    def __init__(self, mu: float, sigma: float, *, lo: float = -np.inf, hi: float = np.inf):
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

    def bounds(self):
        """(lo, hi): where the density is > 0 (infinite ends allowed)."""
        return self.lo, self.hi

    def grad_logpdf(self, x):
        """d log-density / dx = -(x - mu) / sigma^2."""
        return -(np.asarray(x, dtype=float) - self.mu) / self.sigma ** 2

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


def log_prior(eta, prior: Prior | None = None):
    """Log prior of eta (seed name); default: the top-hat :data:`DEFAULT_BOX` (0 inside, -inf out
    up to the constant -log volume).

    Parameters
    ----------
    eta : array (6,) or (n, 6)
        The full eta vector(s) (``theta`` is the free vector of a :class:`Posterior`).
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
    return (prior or DEFAULT_PRIOR).logpdf(eta)


# --------------------------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------------------------
def _stacked(grids) -> dict:
    if isinstance(grids, dict):
        return grids
    from sl_cy.grids import stack_grids

    return stack_grids(grids)


def _model_tuple(fm: ForwardModel):
    p = fm.params
    return (p["mu_star"], p["sigma_star"], 10.0 ** p["log_s_star"], p["mu_R0"], p["beta_R"], p["sigma_R"],
            p["xi_h"], float(fm.sigma_star), PIVOT_LOGM)


def grids_forward_model(grids) -> ForwardModel:
    """The forward model the grids were tabulated with (ValueError for grids of an older sl_cy)."""
    st = _stacked(grids)
    d = st.get("forward_model")
    if d is None:
        raise ValueError("these grids carry no forward model (tabulated by an older sl_cy): tabulate them again "
                         "with sl_cy.tabulate_likelihood_grids")
    return ForwardModel.from_dict(d)


class LikelihoodKernel:
    """Compiled per-lens likelihood sum over stacked grids (shared axes).

    Parameters
    ----------
    grids : list of LensGrid, or the dict of :func:`sl_cy.grids.stack_grids`
        Grids carrying their forward model (population model, sigma_star, survey, ...), which
        the kernel uses.
    selection : bool
        True (default): the likelihood of a catalogue with one entry per lens galaxy (DESIGN
        section 3), each point weighted by (1 - exp(-T)) / T with T the galaxy's expected number
        of detected sources, from the forward model's selection table
        (:func:`sl_cy.selection.selection_for`); pair it with A(eta) = the lens fraction.
        False: no such factor (the seed's ``--no-eta``, selection ignored altogether).
    forward_model : ForwardModel, optional
        Checked against the grids' (:class:`sl_cy.forward.ForwardModelMismatch` if different).
    n_threads : int, optional
        OpenMP threads (default None: all available cores; -1 the same; see
        :func:`sl_cy.parallel.resolve_n_threads`).
    rate_engine : SelectionQuadrature, optional
        The selection table whose rate T gives the (1 - exp(-T)) / T factor (default the forward
        model's table for this many lenses, ``selection_for(fm, n_lenses=N)``: the one the
        default A(eta) uses; kept as ``rate_engine``); :class:`Posterior` passes its ``A``, a lens
        shard the table of the whole sample.

    Attributes
    ----------
    forward_model : ForwardModel
    n_lenses, n_points : int
        Lenses and valid points kept.
    L, logMh, logw0 : ndarray (n_points,)
        The valid points (lensing logM*, logMh, log of the eta-independent weight), ordered by
        lens, then gamma node (each gamma column contiguous); ``offsets`` (n_lenses + 1,) per lens,
        ``nodes`` (n_lenses, n_gamma + 1) int32 the start of each gamma node's points within its lens
        (24 bytes per point and 4 (n_gamma + 1) per lens: ~31 kB per lens of the default grids).
    runs, run_off, dmax : ndarray
        The column pieces of the compacted points for the eta-adaptive column rule
        (:func:`_column_runs`: one int32 per run of adjacent nodes of one piece, ~21 per lens; the
        longest segment per lens; ~100 bytes per lens). A lens whose grid carries no piece codes
        (regular grids, grids files written before they were recorded) has no runs.
    column_rule : bool
        The eta-adaptive sub-sampling of the columns (default True; :data:`COLUMN_RULE`): where
        eta makes the halo factor a ridge narrower than the node spacing (small sigma_h, large
        beta_h), each segment between adjacent nodes of a column piece is cut in k sub-intervals,
        logM*, logMh and the log weight (without its trapezoid factor) interpolated there (cubic
        in the node index), rules k and k + 1 mixed with a weight continuous in eta (value and
        gradient continuous). k = 1, the plain rule bit for bit, in and around the posterior of
        realistic populations (down to sigma_h ~ 0.16 at beta_h = 2); :meth:`column_rule_of`
        gives k, the mixing weight and the points evaluated per (eta, lens). False: the plain rule.
    use_gamma : bool
        False for a one-node gamma axis (no gamma integral, p(gamma | eta) not applied).

    Raises
    ------
    ValueError
        When a lens has no valid grid point (its likelihood would be 0 for every eta): the message
        names the lens (index and catalogue row) and why its points are invalid.

    Performance
    -----------
    About 4.4-5.1 us per lens per eta on one core for batches of eta (CPU time at load 1.4-2.8 on 2
    cores, 2057 and 10^4 lenses of the default adaptive grids, ~1310 valid points per lens, batches
    of 8; one eta per call ~6.4 us: the grids are then read from memory once per eta); parallel
    (OpenMP) over (lens, eta) pairs, results independent of the thread count
    (``benchmarks/bench_likelihood.py --grids``). With the eta-gradient (:meth:`per_lens_and_grad`)
    ~2x that.

    Precision
    ---------
    Equal to :func:`sl_cy.testing.log_likelihood_numpy` (same points, same weights) to ~1e-15 relative
    (exp and erfc from glibc's vector library where available, within 4 ulp of libm) where the
    column rule is 1 (the numpy reference is the plain rule). The *quadrature* error of the grid
    itself is a separate matter: the adaptive grids of :func:`sl_cy.grids.tabulate_likelihood_grids`
    (the default) agree with a 4x finer rule to ~1e-3 at the default truth, where a uniform 41 x 21
    grid errs by up to 100 %; with the column rule, sigma_h scans down to the box edge 0.05 at
    beta_h = 2.04 and 4 stay within 2.3e-3 of an 8x finer rule (0.175 and more with the plain rule;
    ``tests/test_likelihood_accuracy.py``, ``benchmarks/accuracy_box.py`` Table 6). Cost there:
    k times the points (~5x at sigma_h = 0.05, beta_h = 2; 6-7 ns per evaluated point, the
    expansion included, against ~3.6 for the plain rule's points).

    Examples
    --------
    >>> import numpy as np
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> grids = tabulate_likelihood_grids(obs)
    >>> k = LikelihoodKernel(grids, selection=False)
    >>> k([0.0, 12.91, 2.04, 0.37, 1.0, 0.2]).shape
    (1,)
    """

    def __init__(self, grids, selection: bool = True, forward_model: ForwardModel | None = None, *,
                 n_threads: int | None = None, rate_engine=None):
        st = _stacked(grids)
        self.forward_model = grids_forward_model(st)
        if forward_model is not None:
            self.forward_model.check_same(forward_model, "the grids", "the given forward model")
        if rate_engine is not None:
            self.forward_model.check_same(rate_engine.forward_model, "the grids", "the selection table")
        fm = self.forward_model
        self.selection = bool(selection)
        self.logMh_axis = np.asarray(st["logMh_axis"], dtype=float)
        self.gamma_axis = np.asarray(st["gamma_axis"], dtype=float)
        self.use_gamma = len(self.gamma_axis) > 1
        obs = st["observed"]
        self.n_lenses = len(st["valid"])
        self.logRe = np.ascontiguousarray(obs["logRe"], dtype=float)
        self.m_obs = np.ascontiguousarray(obs["logM_star_sps_observed"], dtype=float)
        self.observed = obs
        nb = np.asarray(st["nbkg_kpc2"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            w = (2 * np.pi * nb[:, None, None] * st["beta"] * st["detJ"] * st["F_phot"]) * st["wq"]
            ok = (st["valid"] == 0) & np.isfinite(w) & (w > 0) & np.isfinite(st["logM_star"]) & np.isfinite(st["logMh"])
            logw0 = np.where(ok, np.log(np.where(ok, w, 1.0)), -np.inf)
        counts = ok.reshape(self.n_lenses, -1).sum(axis=1)
        if np.any(counts == 0):
            raise ValueError(_no_valid_point_message(st, np.flatnonzero(counts == 0)))
        n_mh, n_g = ok.shape[1], len(self.gamma_axis)
        # points ordered by lens, then gamma node (the columns contiguous); per lens, the start of
        # each node's points instead of a per-point node index (4 bytes per point less)
        okt = ok.transpose(0, 2, 1)
        per_node = okt.sum(axis=2)
        self.nodes = np.zeros((self.n_lenses, n_g + 1), dtype=np.int32)
        np.cumsum(per_node, axis=1, out=self.nodes[:, 1:])
        self.L = np.ascontiguousarray(st["logM_star"].transpose(0, 2, 1)[okt], dtype=float)
        self.logMh = np.ascontiguousarray(st["logMh"].transpose(0, 2, 1)[okt], dtype=float)
        lw = logw0.transpose(0, 2, 1)[okt]
        if self.selection:
            lens_of_point = np.repeat(np.arange(self.n_lenses), counts)
            zl = np.asarray(obs["zl"], dtype=float)[lens_of_point] if "zl" in obs else None
            gamma_of_point = np.repeat(np.tile(self.gamma_axis, self.n_lenses), per_node.ravel())
            if rate_engine is None:              # the table the default A(eta) of these N lenses uses
                rate_engine = _default_selection(fm, self.n_lenses)
            lw = lw + _log_first_source_factor(fm, self.L, self.logRe[lens_of_point], self.logMh, gamma_of_point,
                                               zl, rate_engine)
        self.rate_engine = rate_engine
        self.logw0 = np.ascontiguousarray(lw, dtype=float)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        piece = st.get("piece")
        if piece is None:
            piece = np.zeros(ok.shape, np.int8)
        self.runs, self.run_off, self.dmax = _column_runs(okt, piece.transpose(0, 2, 1)[okt], self.L, self.logMh,
                                                          self.offsets)
        self.n_points = int(self.offsets[-1])
        self.grid_shape = (n_mh, n_g)
        #: eta-adaptive sub-sampling of the columns (:data:`COLUMN_RULE`); False: the plain rule
        self.column_rule = True
        self._model = _model_tuple(fm)
        from sl_cy.parallel import resolve_n_threads

        self.n_threads = resolve_n_threads(n_threads)

    def per_lens(self, eta) -> np.ndarray:
        """log p(d_i | eta) per lens: eta (6,) -> (n_lens,), (n, 6) -> (n, n_lens)."""
        e = np.asarray(eta, dtype=float)
        one = e.ndim == 1
        e = np.ascontiguousarray(np.atleast_2d(e), dtype=float)
        if e.shape[1] != 6:
            raise ValueError(f"eta needs 6 values {ETA_NAMES}, got shape {np.shape(eta)}")
        out = _likelihood.loglike_lenses(e, self.L, self.logMh, self.nodes, self.logw0, self.offsets, self.logRe,
                                         self.m_obs, self.gamma_axis, self.use_gamma, self._model, GAMMA_LO,
                                         GAMMA_HI, self.n_threads, False, **self._rule_args())
        return out[0] if one else out

    def per_lens_and_grad(self, eta):
        """log p(d_i | eta) per lens and its eta-gradient, from one pass of the compiled kernel.

        Parameters
        ----------
        eta : array (6,) or (n, 6)

        Returns
        -------
        (logp, grad) : (n_lens,), (n_lens, 6) for one eta; (n, n_lens), (n, n_lens, 6) for a batch
            grad[..., j] = d log p_i / d eta_j in :data:`ETA_NAMES` order (exact derivative of the
            computed quadrature sum; 0 for mu_gamma, sigma_gamma on a one-node gamma grid; NaN
            where log p_i = -inf).

        Performance
        -----------
        About 1.3-1.6x the cost of :meth:`per_lens` (the skew-normal term's inverse Mills ratio and
        six sums per point; ``benchmarks/bench_likelihood.py --grids``).

        Precision
        ---------
        Agrees with central finite differences of :meth:`per_lens` to ~1e-9 relative
        (``tests/test_gradients.py``).

        Examples
        --------
        >>> from sl_cy.mock import run_mock_simulation
        >>> from sl_cy.grids import tabulate_likelihood_grids
        >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
        >>> k = LikelihoodKernel(tabulate_likelihood_grids(obs), selection=False)
        >>> lp, g = k.per_lens_and_grad([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
        >>> g.shape == (k.n_lenses, 6)
        True
        """
        e = np.asarray(eta, dtype=float)
        one = e.ndim == 1
        e = np.ascontiguousarray(np.atleast_2d(e), dtype=float)
        if e.shape[1] != 6:
            raise ValueError(f"eta needs 6 values {ETA_NAMES}, got shape {np.shape(eta)}")
        out, grad = _likelihood.loglike_lenses(e, self.L, self.logMh, self.nodes, self.logw0, self.offsets, self.logRe,
                                               self.m_obs, self.gamma_axis, self.use_gamma, self._model, GAMMA_LO,
                                               GAMMA_HI, self.n_threads, True, **self._rule_args())
        return (out[0], grad[0]) if one else (out, grad)

    def value_and_grad(self, eta):
        """sum_i log p(d_i | eta) and its gradient: eta (6,) -> (float, (6,)); (n, 6) -> ((n,), (n, 6)).
        See :meth:`per_lens_and_grad`; the sums are over lenses in order (thread-count independent).

        Examples
        --------
        >>> from sl_cy.mock import run_mock_simulation
        >>> from sl_cy.grids import tabulate_likelihood_grids
        >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
        >>> k = LikelihoodKernel(tabulate_likelihood_grids(obs), selection=False)
        >>> v, g = k.value_and_grad([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
        >>> bool(np.isclose(v, k([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])[0], rtol=0, atol=0))
        True
        """
        e = np.asarray(eta, dtype=float)
        lp, g = self.per_lens_and_grad(np.atleast_2d(e))
        with np.errstate(invalid="ignore"):
            v, gs = lp.sum(axis=1), g.sum(axis=1)
        return (float(v[0]), gs[0]) if e.ndim == 1 else (v, gs)

    def __call__(self, eta) -> np.ndarray:
        """Sum over lenses of log p(d_i | eta): eta (6,) or (n, 6) -> (n,) (always 1-D)."""
        pl = self.per_lens(np.atleast_2d(np.asarray(eta, dtype=float)))
        with np.errstate(invalid="ignore"):
            return pl.sum(axis=1)

    def _rule_args(self) -> dict:
        if not self.column_rule:
            return {}
        return dict(runs=self.runs, run_off=self.run_off, dmax=self.dmax, **COLUMN_RULE)

    def column_rule_of(self, eta):
        """The eta-adaptive column rule per (eta, lens): rule k (segments cut in k), mixing weight
        lambda towards rule k + 1, and the points evaluated (n_eta, n_lens) (all 1, 0 and the plain
        point counts where the rule is off or the lens's grid has no piece codes)."""
        e = np.ascontiguousarray(np.atleast_2d(np.asarray(eta, dtype=float)))
        p = self._model
        k, lam = _likelihood.column_rule(e, self.dmax, p[6], p[4], COLUMN_RULE["zmax"], COLUMN_RULE["tau"],
                                         COLUMN_RULE["rmax"])
        has = np.diff(self.run_off) > 0
        if not self.column_rule:
            has[:] = False
        k = np.where(has, k, 1)
        lam = np.where(has, lam, 0.0)
        n = np.diff(self.offsets)
        # points of rule r: n + (r - 1) * (segments) with segments = n - runs
        seg = n - np.diff(self.run_off)
        pts = np.where(k > 1, n + (k - 1) * seg, n) + np.where(lam > 0, n + k * seg, 0)
        return k, lam, pts

    # pickling (process pools): arrays only
    def __getstate__(self):
        return self.__dict__.copy()


#: The eta-adaptive column rule of the kernel (``csrc/likelihood.pyx``, comment above
#: ``_lens_logp_sub``): largest step of the halo residual z_h between adjacent points (zmax), width
#: of the mixing zones between rules k and k + 1 (tau, in rho = D / (sigma_h zmax)), finest rule
#: (rmax) and order of the interpolation of logM*, logMh and log W along a run (order).
COLUMN_RULE = dict(zmax=1.5, tau=0.25, rmax=16, order=3)


def _column_runs(okt, piece, L, logMh, offsets):
    """Runs of the compacted points (adjacent nodes of one piece of an adaptive column, in
    consecutive slots, both kept), encoded per lens for the kernel as (start << 2) | first_half |
    last_half << 1 (start relative to the lens; the flags: the run's first / last point is a piece
    end of half trapezoid weight), their offsets per lens (no runs: a lens with a point without
    piece code, which keeps the plain rule), and per lens the longest segment of its runs in
    (logMh, logM*) (dex; 0 without runs)."""
    from sl_cy.grids import PIECE_CODES

    first, last, node = PIECE_CODES["first"], PIECE_CODES["last"], PIECE_CODES["node"]
    nl = len(offsets) - 1
    li, gi, si = np.nonzero(okt)                       # lens, gamma node, slot of each compacted point
    pc = np.asarray(piece, dtype=np.int16)
    n = len(li)
    link = np.zeros(n, bool)                           # point p and p + 1 are adjacent nodes of one piece
    if n > 1:
        link[:-1] = ((li[1:] == li[:-1]) & (gi[1:] == gi[:-1]) & (si[1:] == si[:-1] + 1)
                     & ((pc[:-1] & node) != 0) & ((pc[1:] & node) != 0) & ((pc[:-1] & last) == 0))
    start = np.ones(n, bool)
    start[1:] = ~link[:-1]
    lens_info = np.ones(nl, bool)                      # every point of the lens has a piece code
    np.logical_and.at(lens_info, li, (pc & node) != 0)
    idx = np.flatnonzero(start & lens_info[li])
    end = np.append(idx[1:] - 1, n - 1) if len(idx) else idx
    # a run ends at the point before the next run's start, or at the last point of its lens
    lens_end = offsets[1:][li[idx]] - 1 if len(idx) else idx
    end = np.minimum(end, lens_end)
    half = (pc & (first | last)) != 0
    rel = idx - offsets[li[idx]] if len(idx) else idx
    runs = ((rel.astype(np.int64) << 2) | half[idx].astype(np.int64) | (half[end].astype(np.int64) << 1)).astype(np.int32)
    counts = np.bincount(li[idx], minlength=nl) if len(idx) else np.zeros(nl, np.int64)
    run_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    dmax = np.zeros(nl)
    seg = np.flatnonzero(link & lens_info[li])
    if len(seg):
        np.maximum.at(dmax, li[seg], np.hypot(logMh[seg + 1] - logMh[seg], L[seg + 1] - L[seg]))
    return runs, run_off, dmax


def _no_valid_point_message(st: dict, bad) -> str:
    from sl_cy.lensing import Status

    obs = st["observed"]
    parts = []
    for i in bad[:5]:
        codes, n = np.unique(st["valid"][i], return_counts=True)
        why = ", ".join(f"{Status(c).name if c in Status._value2member_map_ else c}: {k}" for c, k in zip(codes, n)
                        if c != 100)
        row = obs["row"].iloc[i] if "row" in obs else i
        parts.append(f"lens {i} (row {row}; {why or 'no solved point'})")
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (f"{len(bad)} lens(es) have no valid grid point, so their likelihood is 0 for every eta: "
            + "; ".join(parts) + more + ". Their images cannot be made by any (logMh, gamma) of the grid: check "
            "the catalogue values, or widen the grid (logMh_grid, gamma_grid)")


def _log_first_source_factor(fm: ForwardModel, logM_star, logRe, logM_halo, gamma_in, zl, engine) -> np.ndarray:
    """log[(1 - exp(-T)) / T] per grid point, T from the forward model's selection table ``engine``:
    the probability that the recorded source is the one the catalogue keeps (one entry per galaxy).
    With redshift distributions T is the zs-mixed rate at the lens's own ``zl`` (per point)."""
    T = engine.rate(logM_star, logRe, logM_halo, gamma_in, zl=None if fm.fixed_redshifts else zl)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(T > 1e-12, -np.expm1(-T) / np.where(T > 1e-12, T, 1.0), 1.0 - 0.5 * T)
    return np.log(f)


# --------------------------------------------------------------------------------------------
# likelihood / posterior
# --------------------------------------------------------------------------------------------
def _default_selection(fm: ForwardModel, n_lenses: int | None = None):
    from sl_cy.selection import selection_for

    return selection_for(fm, n_lenses=n_lenses)


def _eta2d(eta):
    e = np.asarray(eta, dtype=float)
    if e.shape[-1:] != (6,) or e.ndim > 2:
        raise ValueError(f"eta must have shape (6,) or (n, 6) in the order {ETA_NAMES}, got shape {e.shape}")
    return e.ndim == 1, np.atleast_2d(e)


def use_selection_flag(use_selection=None, **alias) -> bool:
    """The one switch of the selection term: ``use_selection`` (default True), or the seed's name
    for it in this function (``eta=`` of ``run_mcmc``, ``selection=`` of ``log_likelihood``), not both.

    Examples
    --------
    >>> use_selection_flag(None, eta=False), use_selection_flag(True)
    (False, True)
    """
    given = {k: v for k, v in alias.items() if v is not None}
    if given and use_selection is not None:
        raise TypeError(f"give use_selection or its alias {next(iter(given))}=, not both")
    if len(given) > 1:
        raise TypeError(f"give one of {sorted(given)}")
    flag = next(iter(given.values())) if given else use_selection
    return True if flag is None else bool(flag)


def log_likelihood(eta, grids, A=None, *, model=None, use_selection: bool | None = None, selection: bool | None = None):
    """log L(eta) = sum_i log p(d_i, det | eta) - N log A(eta) (seed name).

    Parameters
    ----------
    eta : array (6,) or (n, 6)
        (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma).
    grids : list of LensGrid, stacked dict, LikelihoodKernel or Posterior
        For repeated calls build a :class:`Posterior` once and call it (a list is compacted, and
        the selection table loaded, on every call).
    A : Selection, optional
        The normaliser (default: the deterministic quadrature of the grids' forward model,
        :func:`sl_cy.selection.selection_for`).
    model : str, optional
        Ignored unless given: must equal the grids' population model (seed signature).
    use_selection : bool
        False switches the selection term off (the seed's ``--no-eta``); ``selection=`` is accepted
        as its alias (the seed's name here).

    Returns
    -------
    float for one eta, (n,) array for a batch. Outside A's bounds (or the prior box) the
    likelihood is undefined: use :func:`log_posterior`, which returns -inf there.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> grids = tabulate_likelihood_grids(obs)
    >>> bool(np.isfinite(log_likelihood([0.0, 12.91, 2.04, 0.37, 1.0, 0.2], grids)))
    True
    """
    use = use_selection_flag(use_selection, selection=selection)
    post = grids if isinstance(grids, Posterior) else Posterior(grids, A=A, use_selection=use, model=model)
    one, e = _eta2d(eta)
    out = post.log_likelihood_full(e)
    return float(out[0]) if one else out


def log_posterior(eta, grids, prior: Prior | None = None, *, A=None, model=None, use_selection: bool | None = None,
                  selection: bool | None = None):
    """log prior + log L (seed name); -inf outside the prior box and A's bounds, where the
    likelihood is not evaluated. Arguments as :func:`log_likelihood`.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> log_posterior([0, 20.0, 2, 0.4, 1, 0.2], tabulate_likelihood_grids(obs))
    -inf
    """
    use = use_selection_flag(use_selection, selection=selection)
    post = grids if isinstance(grids, Posterior) else Posterior(grids, A=A, prior=prior, use_selection=use,
                                                                 model=model)
    one, e = _eta2d(eta)
    out = post.log_posterior_full(e)
    return float(out[0]) if one else out


class Posterior:
    """Log posterior on the FREE parameters, for emcee (scalar or vectorised walkers).

    Parameters
    ----------
    grids : list of LensGrid, stacked dict, or LikelihoodKernel
        The lenses' grids; they carry the forward model everything else is checked against.
    A : Selection, optional
        Selection normaliser (A(eta) = lens fraction, :mod:`sl_cy.selection`): default the
        deterministic quadrature of the grids' forward model (built once, cached on disk; on a
        table refined where the number of lenses needs it, ``selection_for(fm, n_lenses=N)``). A
        given engine must have been built from the same forward model
        (:class:`sl_cy.forward.ForwardModelMismatch` names the differing field).
        From :data:`sl_cy.selection.quadrature.ERROR_CHECK_MIN_LENSES` lenses on, a quadrature
        engine checks that its error is small enough for this many lenses
        (:meth:`sl_cy.selection.SelectionQuadrature.check_accuracy`, ~2 s, memoised) and
        otherwise warns (:class:`sl_cy.selection.SelectionWarning`), naming the remedy.
    prior : Prior, optional
        Default :func:`BoxPrior`.
    fixed : mapping name -> value, optional
        Fixed parameters (added to the prior's). For a one-node gamma grid, ``mu_gamma`` and
        ``sigma_gamma`` are fixed at the default truth (1.0, 0.2) unless given.
    use_selection : bool
        False switches the selection term off (the seed's ``--no-eta``): no -N log A and no
        one-entry-per-galaxy factor; the estimate is then biased.
    model : str, optional
        Ignored unless given: must equal the grids' population model (seed signature).
    n_threads : int, optional
        OpenMP threads of the kernel.

    Call
    ----
    ``post(theta)``: theta (n_free,) -> float, or (n_walkers, n_free) -> (n_walkers,) (for
    ``emcee.EnsembleSampler(vectorize=True)``). -inf outside the prior and outside A's bounds
    (explicit support checks); any other failure raises (an error is never turned into -inf).

    Performance
    -----------
    One kernel call per batch plus one A call (~3 ms per eta): ~n_lens x 15 us per walker on one
    core with the default adaptive grids.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> post = Posterior(tabulate_likelihood_grids(obs))
    >>> post.free_names
    ('alpha_sps', 'mu_h', 'beta_h', 'sigma_h', 'mu_gamma', 'sigma_gamma')
    >>> float(post(np.array([[0, 12.9, 2, 0.4, 1, 0.2], [np.nan, 12.9, 2, 0.4, 1, 0.2]]))[1])
    -inf
    """

    def __init__(self, grids, A=None, prior: Prior | None = None, *, fixed: Mapping | None = None,
                 use_selection: bool = True, model=None, n_threads: int | None = None):
        use_selection = bool(use_selection)
        if isinstance(grids, LikelihoodKernel):
            self.kernel = grids
            if self.kernel.selection != use_selection:
                raise ValueError(f"the LikelihoodKernel was built with selection={self.kernel.selection}, "
                                 f"the Posterior asks for use_selection={use_selection}")
        else:
            from sl_cy.selection import SelectionQuadrature

            self.kernel = LikelihoodKernel(grids, selection=use_selection, n_threads=n_threads,
                                           rate_engine=A if isinstance(A, SelectionQuadrature) else None)
        fm = self.kernel.forward_model
        if model is not None and model != fm.model:
            raise ForwardModelMismatch(f"model={model!r} but the grids were tabulated with the {fm.model!r} "
                                       "population model")
        self.use_selection = use_selection
        if use_selection:
            if not self.kernel.use_gamma:
                raise ValueError(f"a one-node gamma grid fixes gamma_in = {self.kernel.gamma_axis[0]:g} for every lens, "
                                 "but A(eta) integrates the population's gamma law: tabulate the default gamma grid and "
                                 "fix mu_gamma / sigma_gamma instead (fixed={...}), or use_selection=False")
            _check_redshifts(self.kernel)
            # by default the table the kernel's rate factor was built with: selection_for(fm, n_lenses=N)
            self.A = self.kernel.rate_engine if A is None else A
            if getattr(self.A, "forward_model", None) is not None:
                fm.check_same(self.A.forward_model, "the grids", "the selection normaliser A")
            from sl_cy.selection import quadrature as _q

            if isinstance(self.A, _q.SelectionQuadrature) and self.n_lenses >= _q.ERROR_CHECK_MIN_LENSES:
                # A(eta)'s error enters log L times N: warn (naming the remedy) when N needs a finer table
                self.A.check_accuracy(self.n_lenses, action="warn")
        else:
            self.A = None
        fx = dict(fixed or {})
        pr = prior or DEFAULT_PRIOR
        if not self.kernel.use_gamma:
            for n in ("mu_gamma", "sigma_gamma"):
                if n not in fx and n not in pr.fixed:
                    fx[n] = float(getattr(DEFAULT_ETA, n))
        self.prior = pr.with_fixed(fx)
        self.free_names = self.prior.free_names
        self.ndim = len(self.free_names)
        self._free_idx = np.array([ETA_NAMES.index(n) for n in self.free_names], dtype=int)
        self._base = np.array([self.prior.fixed.get(n, np.nan) for n in ETA_NAMES], dtype=float)

    @property
    def forward_model(self) -> ForwardModel:
        return self.kernel.forward_model

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

    def in_support(self, e: np.ndarray) -> np.ndarray:
        """Per row of full eta (n, 6): finite prior and inside A's bounds (the explicit support)."""
        ok = np.isfinite(np.atleast_1d(self.prior.logpdf(e)))
        if self.use_selection and hasattr(self.A, "in_bounds"):
            ok &= self.A.in_bounds(e)
        return ok

    def explain(self, theta) -> str:
        """Why the log posterior at theta (free vector) is -inf, in words ('' when it is finite)."""
        e = self.full_eta(np.asarray(theta, dtype=float))
        if not np.all(np.isfinite(e)):
            return f"eta {e.tolist()} is not finite"
        for i, n in enumerate(ETA_NAMES):
            if n in self.prior.fixed:
                continue
            if not np.isfinite(np.asarray(self.prior.params[n].logpdf(e[i]))):
                return f"{n} = {e[i]:g} is outside its prior {self.prior.params[n]!r}"
        if self.use_selection and hasattr(self.A, "in_bounds") and not self.A.in_bounds(e)[0]:
            return f"eta {e.tolist()} is outside the bounds of the selection normaliser A: {self.A.bounds}"
        pl = self.kernel.per_lens(e)
        bad = np.flatnonzero(~np.isfinite(pl))
        if bad.size:
            return (f"lens(es) {bad[:5].tolist()} have likelihood 0 at eta {e.tolist()} (their grid points are all "
                    "in the far tails of the population at this eta)")
        return ""

    def _log_A(self, e: np.ndarray) -> np.ndarray:
        a = np.asarray(self.A(e), dtype=float).reshape(-1)
        if a.shape != (len(e),):
            raise ValueError(f"A(eta) returned shape {a.shape} for {len(e)} eta")
        bad = ~(np.isfinite(a) & (a > 0))
        if bad.any():
            raise ValueError(f"A(eta) = {float(a[bad][0])!r} at eta = {e[bad][0].tolist()}, inside the normaliser's bounds")
        return np.log(a)

    def log_likelihood_full(self, e: np.ndarray) -> np.ndarray:
        """log L of full eta rows (n, 6) (no support check)."""
        ll = self.kernel(e)
        if self.use_selection:
            ll = ll - self.kernel.n_lenses * self._log_A(e)
        if np.any(np.isnan(ll)):
            raise FloatingPointError(f"log L is NaN at eta = {e[np.isnan(ll)][0].tolist()}")
        return ll

    def log_posterior_full(self, e: np.ndarray) -> np.ndarray:
        """log prior + log L of full eta rows (n, 6); -inf outside the support."""
        out = np.full(len(e), -np.inf)
        ok = self.in_support(e)
        if ok.any():
            out[ok] = np.atleast_1d(self.prior.logpdf(e[ok])) + self.log_likelihood_full(e[ok])
        return out

    @property
    def has_grad(self) -> bool:
        """True when :meth:`log_prob_and_grad` is available: every free parameter's prior has an
        analytic gradient (:class:`Uniform`, :class:`Gaussian`) and the selection normaliser A
        has one (:meth:`sl_cy.selection.SelectionQuadrature.log_lens_fraction_and_grad`), and the
        kernel gives summed gradients (:meth:`LikelihoodKernel.value_and_grad`; the sharded kernel of
        :mod:`sl_cy.distributed` sums them on its workers)."""
        if not hasattr(self.kernel, "value_and_grad"):
            return False
        if not all(hasattr(self.prior.params[n], "grad_logpdf") for n in self.free_names):
            return False
        return not self.use_selection or hasattr(self.A, "log_lens_fraction_and_grad")

    def bounds(self) -> list:
        """(lo, hi) per free parameter where the posterior can be finite: the prior's support
        (:class:`Gaussian`: its truncation, None for an infinite end) intersected with A's bounds;
        for the optimiser (L-BFGS-B) and the samplers.

        Examples
        --------
        >>> from sl_cy.mock import run_mock_simulation
        >>> from sl_cy.grids import tabulate_likelihood_grids
        >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
        >>> Posterior(tabulate_likelihood_grids(obs)).bounds()[0]
        (-0.5, 0.5)
        """
        out = []
        abnd = getattr(self.A, "bounds", {}) if self.use_selection else {}
        for n in self.free_names:
            p = self.prior.params[n]
            lo, hi = p.bounds() if hasattr(p, "bounds") else (p.support() or (-np.inf, np.inf))
            if n in abnd:
                lo, hi = max(lo, abnd[n][0]), min(hi, abnd[n][1])
            if n in ("sigma_h", "sigma_gamma"):
                lo = max(lo, 1e-6)
            out.append((float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None))
        return out

    def log_prob_and_grad(self, theta):
        """Log posterior and its gradient on the free parameters, from one pass of the compiled
        kernel (:meth:`LikelihoodKernel.value_and_grad`; a sharded kernel sums on its workers) plus
        -N d log A / d eta
        (:meth:`sl_cy.selection.SelectionQuadrature.log_lens_fraction_and_grad`) and the prior's
        gradient.

        Parameters
        ----------
        theta : array (n_free,) or (n, n_free)

        Returns
        -------
        (float, (n_free,)) or ((n,), (n, n_free))
            -inf and a NaN gradient outside the support (prior, A's bounds).

        Raises
        ------
        NotImplementedError
            when a prior or the selection engine has no analytic gradient (:attr:`has_grad`).

        Performance
        -----------
        ~1.7x one posterior evaluation (``benchmarks/bench_samplers.py``).

        Precision
        ---------
        Exact derivative of the computed log posterior: agrees with central finite differences
        to ~1e-8 relative (``tests/test_gradients.py``).

        Examples
        --------
        >>> from sl_cy.mock import run_mock_simulation
        >>> from sl_cy.grids import tabulate_likelihood_grids
        >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
        >>> post = Posterior(tabulate_likelihood_grids(obs))
        >>> v, g = post.log_prob_and_grad(np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2]))
        >>> g.shape
        (6,)
        """
        if not self.has_grad:
            bad = [n for n in self.free_names if not hasattr(self.prior.params[n], "grad_logpdf")]
            what = (f"the prior(s) of {bad} have no analytic gradient (use Uniform or Gaussian)" if bad else
                    f"the kernel {type(self.kernel).__name__} gives no gradient"
                    if not hasattr(self.kernel, "value_and_grad") else
                    f"the selection normaliser {self.A!r} has no analytic gradient (use SelectionQuadrature)")
            raise NotImplementedError(f"log_prob_and_grad: {what}")
        t = np.asarray(theta, dtype=float)
        e = np.atleast_2d(self.full_eta(t))
        val = np.full(len(e), -np.inf)
        grad = np.full((len(e), self.ndim), np.nan)
        ok = self.in_support(e)
        if ok.any():
            eo = e[ok]
            v, ge = self.kernel.value_and_grad(eo)      # summed where the lenses are (a shard's worker)
            if self.use_selection:
                la, gA = self.A.log_lens_fraction_and_grad(eo)
                v = v - self.n_lenses * np.atleast_1d(la)
                ge = ge - self.n_lenses * np.atleast_2d(gA)
            if np.any(np.isnan(v)):
                raise FloatingPointError(f"log L is NaN at eta = {eo[np.isnan(v)][0].tolist()}")
            gp = np.stack([self.prior.params[n].grad_logpdf(eo[:, ETA_NAMES.index(n)]) for n in self.free_names],
                          axis=1)
            val[ok] = v + np.atleast_1d(self.prior.logpdf(eo))
            grad[ok] = ge[:, self._free_idx] + gp
            grad[ok & ~np.isfinite(val)] = np.nan
        return (float(val[0]), grad[0]) if t.ndim == 1 else (val, grad)

    def log_likelihood(self, theta):
        """log L on free parameters (with the selection term if enabled)."""
        t = np.asarray(theta, dtype=float)
        out = self.log_likelihood_full(np.atleast_2d(self.full_eta(t)))
        return float(out[0]) if t.ndim == 1 else out

    def __call__(self, theta):
        t = np.asarray(theta, dtype=float)
        out = self.log_posterior_full(np.atleast_2d(self.full_eta(t)))
        return float(out[0]) if t.ndim == 1 else out


def _check_redshifts(kernel: LikelihoodKernel) -> None:
    """The selection term of a fixed-redshift forward model needs every lens at those redshifts;
    with distributions every lens's redshifts must lie in their supports."""
    fm = kernel.forward_model
    obs = kernel.observed
    for col, val in (("zl", fm.zl), ("zs", fm.zs)):
        if not isinstance(val, float):
            if col not in obs:
                raise ValueError(f"the forward model has a distribution p({col}) but the grids carry no per-lens {col}")
            z = np.asarray(obs[col], dtype=float)
            lo, hi = val.support
            bad = ~((z >= lo - 1e-9) & (z <= hi + 1e-9))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"lens {i} has {col} = {z[i]:g} outside the support [{lo:g}, {hi:g}] of the forward "
                                 f"model's p({col}) ({val.spec}): it cannot belong to that population")
            continue
        if col in obs:
            z = np.asarray(obs[col], dtype=float)
            if np.any(np.abs(z - val) > 1e-9 * max(1.0, val)):
                raise ValueError(f"the lenses' {col} range over [{z.min():g}, {z.max():g}] but the forward model "
                                 f"has one {col} = {val:g}: A(eta) would be computed for the wrong redshifts. "
                                 "Give the redshifts "
                                 "of the sample (--zl/--zs, ForwardModel(zl=..., zs=...)) or their parent distributions "
                                 "(--zl-dist/--zs-dist, ForwardModel(zl=UniformRedshift(...), ...)), or switch the "
                                 "selection term off (--no-eta, use_selection=False; biased)")
