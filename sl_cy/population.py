"""Galaxy population: stellar mass, size, halo mass and inner slope, with their log-densities.

One definition of every population law, used by the mock (samplers) and by the likelihood and
the selection normaliser (``*_logpdf``)::

    logM*_sps        ~ skew-normal(a = 10**log_s_star, loc = mu_star, scale = sigma_star)
    logRe | M        ~ N(mu_R0 + beta_R (M - 11.4), sigma_R)
    logMh | M, Re    ~ N(mu_h + beta_h (M - 11.4) + xi_h (logRe - mu_R(M)), sigma_h)
    gamma_in         ~ N(mu_gamma, sigma_gamma) truncated to [GAMMA_LO, GAMMA_HI] = [0, 2]
    logM*            = logM*_sps + alpha_sps

with M = logM*_sps. The fixed parameters of each stellar-profile model are in
:data:`MODEL_PARAMS` (Sonnenfeld et al. 2019, as in the original package); the
hyper-parameters eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma) are an
:class:`Eta`. ``xi_h`` is a model constant (0 for ``deVauc``), not part of eta.

Random draws take ``rng``: None, an int seed, a :class:`numpy.random.SeedSequence` or a
:class:`numpy.random.Generator` (passed to :func:`numpy.random.default_rng`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from sl_cy._validate import as_float_array
from sl_cy.config import DEFAULT_C_HALO, DEFAULT_ZL, DEFAULT_ZS

#: Pivot stellar mass (log10 Msun) of the size-mass and halo-mass relations.
PIVOT_LOGM = 11.4

#: Support of the truncated inner-slope law (the same in mock and likelihood).
GAMMA_LO = 0.0
GAMMA_HI = 2.0

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: Fixed population parameters per stellar-profile model (Sonnenfeld et al. 2019, A&A 630, A113;
#: the values of the original package's ``mass_sampler.MODEL_PARAMS``):
#: ``mu_star``, ``sigma_star``, ``log_s_star`` (skew-normal loc, scale, log10 of the shape a) of
#: logM*_sps; ``mu_R0``, ``beta_R``, ``sigma_R`` of the size-mass relation; ``mu_h0``, ``beta_h``,
#: ``xi_h``, ``sigma_h`` of the halo-mass relation (the halo values are the default eta of a mock
#: drawn with that model; ``xi_h`` is always taken from here).
MODEL_PARAMS = {
    "deVauc": dict(mu_star=11.252, sigma_star=0.202, log_s_star=0.17,
                   mu_R0=0.774, beta_R=0.977, sigma_R=0.112,
                   mu_h0=12.91, beta_h=2.04, xi_h=0.0, sigma_h=0.37),
    "SerExp": dict(mu_star=11.274, sigma_star=0.254, log_s_star=0.31,
                   mu_R0=0.854, beta_R=1.218, sigma_R=0.129,
                   mu_h0=12.83, beta_h=1.73, xi_h=-0.03, sigma_h=0.32),
    "Sersic": dict(mu_star=11.249, sigma_star=0.285, log_s_star=0.44,
                   mu_R0=0.855, beta_R=1.366, sigma_R=0.147,
                   mu_h0=12.79, beta_h=1.70, xi_h=-0.14, sigma_h=0.35),
}


def model_params(model: str = "deVauc") -> dict:
    """The fixed parameters of ``model`` (a copy); ValueError naming the choices if unknown."""
    if not isinstance(model, str) or model not in MODEL_PARAMS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_PARAMS)}")
    return dict(MODEL_PARAMS[model])


class Eta(NamedTuple):
    """Population hyper-parameters eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma).

    A NamedTuple: ``tuple(eta)``, ``np.asarray(eta)`` and ``eta._replace(mu_h=13.0)`` work.
    Fields may hold arrays of a common shape (a batch of eta, e.g. MCMC walkers), which the
    ``*_logpdf`` functions broadcast.

    Examples
    --------
    >>> Eta.default()
    Eta(alpha_sps=0.0, mu_h=12.91, beta_h=2.04, sigma_h=0.37, mu_gamma=1.0, sigma_gamma=0.2)
    >>> Eta.from_array([0.1, 13.0, 2.0, 0.3, 1.2, 0.1]).mu_gamma
    1.2
    >>> Eta.from_array(np.zeros((4, 6)) + DEFAULT_ETA).to_array().shape
    (4, 6)
    """

    alpha_sps: float = 0.0
    mu_h: float = 12.91
    beta_h: float = 2.04
    sigma_h: float = 0.37
    mu_gamma: float = 1.0
    sigma_gamma: float = 0.2

    @classmethod
    def default(cls) -> "Eta":
        """The truth of the default mock, (0, 12.91, 2.04, 0.37, 1.0, 0.2)."""
        return cls()

    @classmethod
    def from_model(cls, model: str = "deVauc") -> "Eta":
        """Default eta of a population model: its halo relation, alpha_sps = 0, gamma ~ N(1, 0.2)."""
        p = model_params(model)
        return cls(0.0, p["mu_h0"], p["beta_h"], p["sigma_h"], 1.0, 0.2)

    @classmethod
    def from_array(cls, values) -> "Eta":
        """Build from a sequence of 6 numbers, or an array of shape (..., 6) (a batch)."""
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 0 or arr.shape[-1] != len(cls._fields):
            raise ValueError(f"eta needs {len(cls._fields)} values {cls._fields}, got shape {arr.shape}")
        if arr.ndim == 1:
            return cls(*(float(v) for v in arr)).validate()
        return cls(*np.moveaxis(arr, -1, 0)).validate()

    def to_array(self) -> np.ndarray:
        """Values as a float array of shape (6,) (or (..., 6) for a batch)."""
        return np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in self)), axis=-1)

    def to_dict(self) -> dict:
        """Field name -> float (scalar eta only)."""
        return {k: float(v) for k, v in self._asdict().items()}

    def validate(self) -> "Eta":
        """Return self after checking every value is finite and both sigmas are > 0."""
        for name, v in self._asdict().items():
            positive = name.startswith("sigma")
            as_float_array(f"eta.{name}", v, lo=0.0 if positive else None, lo_open=positive)
        return self


#: Truth of the default mock.
DEFAULT_ETA = Eta.default()
ETA_NAMES = Eta._fields

#: The eta box: the default top-hat prior and the support of every A(eta) engine (one definition,
#: used by the prior, the selection engines and the grids' stellar-mass window).
ETA_BOX = {
    "alpha_sps": (-0.5, 0.5),
    "mu_h": (12.0, 14.0),
    "beta_h": (0.0, 4.0),
    "sigma_h": (0.05, 1.0),
    "mu_gamma": (0.2, 1.8),
    "sigma_gamma": (0.05, 1.0),
}


def as_eta(eta=None, model: str = "deVauc") -> Eta:
    """Normalise ``eta`` (None -> :meth:`Eta.from_model`, Eta, dict or 6 numbers) and validate it."""
    if eta is None:
        return Eta.from_model(model)
    if isinstance(eta, Eta):
        return eta.validate()
    if isinstance(eta, dict):
        unknown = set(eta) - set(Eta._fields)
        if unknown:
            raise ValueError(f"unknown eta field(s) {sorted(unknown)}; fields are {Eta._fields}")
        return Eta(**{k: float(v) if np.ndim(v) == 0 else np.asarray(v, float) for k, v in eta.items()}).validate()
    return Eta.from_array(eta)


def _check_n(n, name: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer, float, np.floating)) \
            or not math.isfinite(n) or not float(n).is_integer() or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def _rng(rng) -> np.random.Generator:
    return np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# logM*_sps: skew-normal
# --------------------------------------------------------------------------------------------
def mstar_gene(n, model: str = "deVauc", rng=None) -> np.ndarray:
    """Draw logM*_sps from the skew-normal law of ``model``.

    Uses the representation X = delta |U0| + sqrt(1 - delta^2) U1 (U0, U1 standard normal,
    delta = a / sqrt(1 + a^2)), which is exactly skew-normal with shape a.

    Parameters
    ----------
    n : int
        Number of galaxies.
    model : {"deVauc", "SerExp", "Sersic"}
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    ndarray, shape (n,)

    Performance
    -----------
    About 40 ns per draw.

    Examples
    --------
    >>> mstar_gene(3, rng=0).shape
    (3,)
    """
    n = _check_n(n)
    p = model_params(model)
    a = 10.0 ** p["log_s_star"]
    delta = a / math.sqrt(1.0 + a * a)
    u = _rng(rng).standard_normal((2, n))
    return p["mu_star"] + p["sigma_star"] * (delta * np.abs(u[0]) + math.sqrt(1.0 - delta * delta) * u[1])


def mstar_logpdf(logM_star_sps, model: str = "deVauc"):
    """log density of the skew-normal logM*_sps law: log(2/scale) + log phi(z) + log Phi(a z).

    Examples
    --------
    >>> from scipy.stats import skewnorm
    >>> p = MODEL_PARAMS["deVauc"]
    >>> bool(np.isclose(mstar_logpdf(11.3), skewnorm.logpdf(11.3, 10**0.17, 11.252, 0.202)))
    True
    """
    p = model_params(model)
    z = (np.asarray(logM_star_sps, dtype=float) - p["mu_star"]) / p["sigma_star"]
    a = 10.0 ** p["log_s_star"]
    out = math.log(2.0 / p["sigma_star"]) - _LOG_SQRT_2PI - 0.5 * z * z + special.log_ndtr(a * z)
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------
# logRe | M
# --------------------------------------------------------------------------------------------
def logRe_mean(logM_star_sps, model: str = "deVauc"):
    """Mean size-mass relation mu_R(M) = mu_R0 + beta_R (M - 11.4)."""
    p = model_params(model)
    return p["mu_R0"] + p["beta_R"] * (np.asarray(logM_star_sps, dtype=float) - PIVOT_LOGM)


def logRe_given_logM(logM_star_sps, model: str = "deVauc", rng=None) -> np.ndarray:
    """Draw logRe (kpc) given logM*_sps: N(mu_R0 + beta_R (M - 11.4), sigma_R).

    Examples
    --------
    >>> logRe_given_logM(np.array([11.0, 11.5]), rng=0).shape
    (2,)
    """
    m = as_float_array("logM_star_sps", logM_star_sps)
    p = model_params(model)
    return logRe_mean(m, model) + p["sigma_R"] * _rng(rng).standard_normal(m.shape)


def logRe_logpdf(logRe, logM_star_sps, model: str = "deVauc"):
    """log N(logRe; mu_R(M), sigma_R)."""
    p = model_params(model)
    z = (np.asarray(logRe, dtype=float) - logRe_mean(logM_star_sps, model)) / p["sigma_R"]
    out = -0.5 * z * z - math.log(p["sigma_R"]) - _LOG_SQRT_2PI
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------
# logMh | M, Re
# --------------------------------------------------------------------------------------------
def logMh_mean(logM_star_sps, logRe=None, eta=None, *, model: str = "deVauc", xi_h=None):
    """mu_h + beta_h (M - 11.4) + xi_h (logRe - mu_R(M)); ``logRe`` may be None when xi_h = 0."""
    e = as_eta(eta, model)
    xi = model_params(model)["xi_h"] if xi_h is None else float(xi_h)
    m = np.asarray(logM_star_sps, dtype=float)
    mu = np.asarray(e.mu_h) + np.asarray(e.beta_h) * (m - PIVOT_LOGM)
    if xi != 0.0:
        if logRe is None:
            raise ValueError(f"logRe is needed when xi_h != 0 (model {model!r} has xi_h = {xi})")
        mu = mu + xi * (np.asarray(logRe, dtype=float) - logRe_mean(m, model))
    return mu


def logMh_given_logM_logRe(logM_star_sps, logRe, model: str = "deVauc", *, rng=None, eta=None,
                           xi_h=None) -> np.ndarray:
    """Draw log10 M200 of the halo given logM*_sps and logRe.

    Parameters
    ----------
    logM_star_sps, logRe : array
    model : str
        Supplies xi_h (unless given) and the size-mass relation mu_R(M).
    rng : None, int, SeedSequence or Generator
    eta : Eta, optional
        Supplies mu_h, beta_h, sigma_h (default :meth:`Eta.from_model`).
    xi_h : float, optional
        Override of the model's xi_h.

    Returns
    -------
    ndarray
        logMh ~ N(mu_h + beta_h (M - 11.4) + xi_h (logRe - mu_R(M)), sigma_h).

    Examples
    --------
    >>> logMh_given_logM_logRe([11.4], [0.8], rng=0, eta=DEFAULT_ETA._replace(sigma_h=1e-9)).round(6)
    array([12.91])
    """
    m = as_float_array("logM_star_sps", logM_star_sps)
    re = as_float_array("logRe", logRe)
    e = as_eta(eta, model)
    mu = logMh_mean(m, re, e, model=model, xi_h=xi_h)
    return mu + np.asarray(e.sigma_h) * _rng(rng).standard_normal(np.shape(mu))


def logMh_logpdf(logM_halo, logM_star_sps, logRe=None, *, eta=None, model: str = "deVauc", xi_h=None):
    """log N(logMh; mu_h + beta_h (M - 11.4) + xi_h (logRe - mu_R(M)), sigma_h).

    ``eta`` may be a batch (fields of a common shape); everything broadcasts.
    """
    e = as_eta(eta, model)
    sig = np.asarray(e.sigma_h, dtype=float)
    z = (np.asarray(logM_halo, dtype=float) - logMh_mean(logM_star_sps, logRe, e, model=model, xi_h=xi_h)) / sig
    out = -0.5 * z * z - np.log(sig) - _LOG_SQRT_2PI
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------
# gamma_in: truncated normal on [GAMMA_LO, GAMMA_HI]
# --------------------------------------------------------------------------------------------
#: Half-widths (b - a)/2 below which log(Phi(b) - Phi(a)) uses the narrow-interval form.
_NARROW = 1e-5


def _log_ndtr_diff(a, b, h=None):
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails and for narrow intervals.

    For h = (b - a)/2 < 1e-5 (a very wide gamma law, sigma_gamma >~ 1e5, where the difference
    of the two log Phi cancels: it was -inf, then +inf in log p, at sigma_gamma ~ 1e16), with
    m = (a + b)/2: Phi(b) - Phi(a) = phi(m) 2 sinh(m h)/m (1 + O(h^2)). Pass ``h`` when it is
    known exactly (``(hi - lo) / (2 sigma)``): b - a may have rounded to 0.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    flip = a > 0                       # Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        lhi = special.log_ndtr(hi)
        out = lhi + np.log1p(-np.exp(special.log_ndtr(lo) - lhi))
        h = 0.5 * (b - a) if h is None else np.broadcast_to(np.asarray(h, dtype=float), a.shape)
        narrow = h < _NARROW
        if np.any(narrow):
            m = np.abs(0.5 * (a + b))
            x = m * h                      # log(2 sinh(x)/m), = log(2h) for m -> 0
            lsh = np.where(x > 1e-8, x + np.log(-np.expm1(-2.0 * np.where(x > 1e-8, x, 1.0))) - np.log(np.where(m > 0, m, 1.0)),
                           np.log(2.0 * h))
            out = np.where(narrow, -0.5 * m * m - _LOG_SQRT_2PI + lsh, out)
    return out


def _check_gamma_law(mu, sigma, lo, hi):
    mu = as_float_array("mu_gamma", mu)
    sigma = as_float_array("sigma_gamma", sigma, lo=0.0, lo_open=True)
    lo = float(as_float_array("gamma_lo", lo))
    hi = float(as_float_array("gamma_hi", hi))
    if not hi > lo:
        raise ValueError(f"the gamma_in support needs hi > lo, got [{lo}, {hi}]")
    return mu, sigma, lo, hi


def sample_gamma(n, mu=1.0, sigma=0.2, *, rng=None, lo: float = GAMMA_LO, hi: float = GAMMA_HI) -> np.ndarray:
    """Draw the gNFW inner slope gamma_in ~ N(mu, sigma) truncated to [lo, hi] = [0, 2].

    Exact inverse-CDF sampling (mirrored when the interval lies in the upper tail, so it stays
    accurate for any mu, sigma); the same law as :func:`gamma_logpdf`.

    Parameters
    ----------
    n : int
    mu, sigma : float or array broadcastable to (n,)
    rng : None, int, SeedSequence or Generator
    lo, hi : float
        Truncation interval (default the model's [0, 2]).

    Performance
    -----------
    About 40 ns per draw.

    Examples
    --------
    >>> g = sample_gamma(1000, mu=1.9, sigma=0.5, rng=0)
    >>> bool(g.min() >= 0.0 and g.max() <= 2.0)
    True
    """
    n = _check_n(n)
    mu, sigma, lo, hi = _check_gamma_law(mu, sigma, lo, hi)
    a = (lo - mu) / sigma
    b = (hi - mu) / sigma
    flip = a > 0
    lo_s = np.where(flip, -b, a)
    hi_s = np.where(flip, -a, b)
    pa, pb = special.ndtr(lo_s), special.ndtr(hi_s)
    u = _rng(rng).random(n)
    z = special.ndtri(pa + u * (pb - pa))
    z = np.where(flip, -z, z)
    return np.clip(mu + sigma * z, lo, hi)


def gamma_logpdf(gamma_in, mu=1.0, sigma=0.2, *, lo: float = GAMMA_LO, hi: float = GAMMA_HI):
    """log density of the truncated normal gamma_in law; -inf outside [lo, hi].

    ``mu`` and ``sigma`` broadcast against ``gamma_in`` (a batch of eta is fine).

    Examples
    --------
    >>> from scipy.stats import truncnorm
    >>> bool(np.isclose(gamma_logpdf(1.3, 1.0, 0.4), truncnorm.logpdf(1.3, -2.5, 2.5, 1.0, 0.4)))
    True
    """
    mu, sigma, lo, hi = _check_gamma_law(mu, sigma, lo, hi)
    g = np.asarray(gamma_in, dtype=float)
    z = (g - mu) / sigma
    out = -0.5 * z * z - np.log(sigma) - _LOG_SQRT_2PI - _log_ndtr_diff((lo - mu) / sigma, (hi - mu) / sigma,
                                                                              0.5 * (hi - lo) / sigma)
    out = np.where((g >= lo) & (g <= hi), out, -np.inf)
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------
# redshifts and the full population
# --------------------------------------------------------------------------------------------
def resolve_redshift(name: str, spec, *, n: int, rng=None) -> np.ndarray:
    """Per-galaxy redshifts from a number, an array of length ``n`` or a callable.

    A callable is called as ``spec(rng, n)`` with the numpy Generator of the draw and must return
    ``n`` positive redshifts (it must be a picklable top-level function to be used with
    ``n_jobs > 1``).
    """
    if callable(spec):
        z = spec(_rng(rng) if not isinstance(rng, np.random.Generator) else rng, n)
        z = as_float_array(name, z, lo=0.0, lo_open=True)
        if z.shape != (n,):
            raise ValueError(f"{name} callable must return {n} values, got shape {z.shape}")
        return z
    z = as_float_array(name, spec, lo=0.0, lo_open=True)
    if z.ndim == 0:
        return np.full(n, float(z))
    if z.shape != (n,):
        raise ValueError(f"{name} must be a number, a callable or an array of length {n}, got shape {z.shape}")
    return z.copy()


def draw_population(n, model: str = "deVauc", *, eta=None, rng=None, zl=DEFAULT_ZL, zs=DEFAULT_ZS,
                    c_halo=DEFAULT_C_HALO) -> dict:
    """Arrays of one population draw (what :func:`generate_samples` wraps in a DataFrame).

    The draw order from ``rng`` is fixed (logM*_sps, logRe, logMh, gamma_in, zl, zs), so a seed
    defines the sample.
    """
    n = _check_n(n)
    e = as_eta(eta, model)
    if np.ndim(e.alpha_sps) != 0:
        raise ValueError("generate_samples needs one eta, not a batch")
    gen = _rng(rng)
    ms = mstar_gene(n, model, gen)
    re = logRe_given_logM(ms, model, gen)
    mh = logMh_given_logM_logRe(ms, re, model, rng=gen, eta=e)
    g = sample_gamma(n, e.mu_gamma, e.sigma_gamma, rng=gen)
    zl_ = resolve_redshift("zl", zl, n=n, rng=gen)
    zs_ = resolve_redshift("zs", zs, n=n, rng=gen)
    c = as_float_array("c_halo", c_halo, lo=0.0, lo_open=True)
    return dict(logM_star_sps=ms, logM_star=ms + e.alpha_sps, logRe=re, logM_halo=mh, gamma_in=g,
                c_halo=np.broadcast_to(c, (n,)).astype(float), zl=zl_, zs=zs_)


def generate_samples(n, model: str = "deVauc", *, eta=None, rng=None, zl=DEFAULT_ZL, zs=DEFAULT_ZS,
                     c_halo=DEFAULT_C_HALO) -> pd.DataFrame:
    """Draw a galaxy population (the truth of a mock, before lensing).

    Parameters
    ----------
    n : int
        Number of galaxies (>= 0).
    model : {"deVauc", "SerExp", "Sersic"}
        Fixed parameters of the stellar-mass, size and halo relations (:data:`MODEL_PARAMS`).
    eta : Eta, dict or 6 numbers, optional
        Hyper-parameters (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma); default
        :meth:`Eta.from_model` (for ``deVauc`` that is :data:`DEFAULT_ETA`).
    rng : None, int, SeedSequence or Generator
    zl, zs : float, array of length n, or callable ``f(rng, n) -> array``
        Lens and source redshifts (default 0.3 and 2.0).
    c_halo : float or array
        Halo concentration (default 5).

    Returns
    -------
    pandas.DataFrame
        Columns logM_star_sps, logM_star (= logM_star_sps + alpha_sps), logRe, logM_halo,
        gamma_in, c_halo, zl, zs.

    Performance
    -----------
    About 0.15 microseconds per galaxy.

    Examples
    --------
    >>> df = generate_samples(1000, rng=42)
    >>> list(df.columns)
    ['logM_star_sps', 'logM_star', 'logRe', 'logM_halo', 'gamma_in', 'c_halo', 'zl', 'zs']
    >>> bool(df.gamma_in.between(0, 2).all())
    True
    """
    return pd.DataFrame(draw_population(n, model, eta=eta, rng=rng, zl=zl, zs=zs, c_halo=c_halo))
