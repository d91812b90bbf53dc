"""Selection normaliser A(eta): Monte-Carlo bank, importance-sampling evaluator, tables, loader.

A(eta) is the expected number of detected two-image lenses per galaxy of the population
(DESIGN section 3)::

    A(eta) = ∫ p(galaxy | eta) ∫_0^{y_c} 2 pi n_bkg beta dbeta K(mu_A(beta), mu_B(beta)),
    K(mu1, mu2) = ∫ p(m_s) P_det(mu1, m_s) P_det(mu2, m_s) dm_s,

with eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma) (:data:`ETA_NAMES`, always
in this order, one vector (6,) or a batch (n, 6)).

Engine (importance sampling, one way of doing things):

1. :func:`build_selection_bank` draws N galaxies (logM*, logRe, logMh, gamma_in) from a broad,
   eta-independent proposal q (:class:`BankProposal`), solves each lens once (radial caustic y_c;
   both images at ``n_beta`` area-uniform source positions beta = y_c sqrt(U)) and stores
   T = pi y_c^2 n_bkg <K(mu_A, mu_B)>_beta (0 where there is no radial caustic) and log q.
2. :class:`SelectionBank` evaluates
   A(eta) ≈ (1/N) Σ_k T_k p_sk(M_k) p(logRe_k|M_k) p(logMh_k|M_k, logRe_k, eta) p(gamma_k|eta) / q_k,
   M_k = logM*_k - alpha_sps, in a compiled nogil loop. No lens is re-solved when eta changes and
   A is smooth in eta (common random numbers). It reports the effective sample size of the
   contributions, ESS = (Σ w_k T_k)^2 / Σ (w_k T_k)^2, and warns (:class:`SelectionWarning`) when it
   is below :data:`ESS_WARN_THRESHOLD`.
3. :func:`compute_Aeta_grid` tabulates A over any named subset of eta (the others fixed),
   :func:`write_A_eta_hdf5` / :func:`write_A_eta_hdf5_1d` store ``Aeta_<axes>_<sizes>.h5``, and
   :func:`cached_A` finds a table (shipped default in ``sl_cy/data/``, the repository's
   ``aeta_tables/``, a user folder) and returns a callable A(eta) of the full eta.

Relation to the mock: a mock galaxy is a detected lens when at least one of its Poisson sources
is detected, so its detected fraction is E[1 - exp(-lambda p_det)] while A is E[lambda p_det]
(the rate the likelihood uses); with lambda = pi y_c^2 n_bkg ~ 0.01 they differ by < 1 %.
For ``"observed"`` detection the probability that both noisy magnitudes are <= m_lim is exactly
the P_det product inside K, so one K serves both detection modes.

Out-of-support convention: a table returns A = 0.0 (never NaN, never an extrapolated number)
outside its axes or when a fixed component differs from the recorded value; upstream,
log A = -inf and the posterior rejects the point.
"""
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
from sl_cy.io import atomic_h5, config_hash, read_attrs, to_jsonable, write_attrs
from sl_cy.parallel import map_chunks
from sl_cy.population import (DEFAULT_ETA, ETA_NAMES, GAMMA_HI, GAMMA_LO, PIVOT_LOGM, Eta, _check_n,
                              _log_ndtr_diff, logRe_given_logM, logRe_logpdf, model_params, mstar_gene,
                              mstar_logpdf, gamma_logpdf)

__all__ = [
    "SelectionWarning", "BankProposal", "SelectionBank", "AEtaTable", "build_selection_bank", "save_bank",
    "load_bank", "compute_Aeta_grid", "write_A_eta_hdf5", "write_A_eta_hdf5_1d", "load_A_eta_table",
    "cached_A", "parse_axes", "ESS_WARN_THRESHOLD", "PRIOR_BOX", "table_filename",
    "SelectionQuadrature", "build_selection_table", "SELECTION_TABLE_AXES",
]

#: Effective sample size below which :class:`SelectionBank` warns (relative MC error ~ 1/sqrt(ESS)).
ESS_WARN_THRESHOLD = 100.0

#: The prior box of eta the default proposal is designed to cover.
PRIOR_BOX = dict(alpha_sps=(-0.5, 0.5), mu_h=(12.0, 14.0), beta_h=(0.0, 4.0), sigma_h=(0.1, 1.0),
                 mu_gamma=(0.2, 1.8), sigma_gamma=(0.05, 1.0))

#: Galaxies per bank chunk. Part of the random stream: changing it changes the bank of a seed.
DEFAULT_CHUNK_SIZE = 25_000

BANK_KIND = "sl_cy.selection_bank"
TABLE_KIND = "sl_cy.A_eta_table"
BANK_SCHEMA = "sl_cy.selection_bank/1"
TABLE_SCHEMA = "sl_cy.A_eta_table/1"

#: Folder of the tables shipped with the package (``sl_cy/data/Aeta_*.h5``).
PACKAGE_TABLE_DIR = Path(__file__).resolve().parent / "data"
#: Environment variable naming an extra folder of user tables.
AETA_DIR_ENV = "SL_CY_AETA_DIR"


class SelectionWarning(UserWarning):
    """The A(eta) estimate is unreliable (effective sample size of the bank below the threshold)."""


# --------------------------------------------------------------------------------------------
# proposal
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BankProposal:
    """The eta-independent proposal q(logM*, logRe, logMh, gamma_in) of the bank.

    Draw (in this order, from the chunk's Generator):

    * ``a ~ U(alpha_lo, alpha_hi)``, M ~ the model's skew-normal logM*_sps law, logRe ~ the
      model's size-mass relation given M, and logM* = M + a. So (logM*, logRe) follow the
      population law *mixed over alpha_sps* in [alpha_lo, alpha_hi]: for any alpha_sps inside it
      the target overlaps the proposal well (weights are bounded by (alpha_hi - alpha_lo) / width
      of the alpha kernel), and the density is the 1-D integral
      q1(logM*, logRe) = 1/(alpha_hi - alpha_lo) ∫ p_sk(logM* - a) p(logRe | logM* - a) da,
      computed by composite Gauss-Legendre quadrature (``n_panels`` x 8 nodes; relative error
      < 1e-9).
    * logMh | logM* ~ a two-component normal mixture around the mean relation
      m(logM*) = logMh_mu0 + logMh_slope (logM* - 11.4): with probability 1 - wide_frac
      N(m, logMh_sigma), else N(m + wide_shift, wide_sigma). The wide component covers the
      high-mass tail that dominates A when sigma_h and beta_h are large (T grows steeply with
      halo mass), so the whole :data:`PRIOR_BOX` (mu_h in [12, 14], beta_h in [0, 4], sigma_h in
      [0.1, 1]) is covered.
    * gamma_in ~ U(gamma_lo, gamma_hi) = U(0, 2), the support of the truncated gamma law.

    Parameters
    ----------
    alpha_lo, alpha_hi : float
        Range of the alpha_sps mixture (default [-0.6, 0.6], the prior box +- 0.1).
    logMh_mu0, logMh_slope, logMh_sigma : float
        Halo-mass proposal core (defaults 13.0, 2.0, 0.8).
    wide_frac, wide_shift, wide_sigma : float
        Weight, mean offset and width of the wide halo-mass component (defaults 0.35, 0.8, 1.5).
    gamma_lo, gamma_hi : float
        Inner-slope proposal range (default the model support [0, 2]).
    n_panels : int
        Quadrature panels of the alpha mixture (default 24).
    """

    alpha_lo: float = -0.6
    alpha_hi: float = 0.6
    logMh_mu0: float = 13.0
    logMh_slope: float = 2.0
    logMh_sigma: float = 0.8
    wide_frac: float = 0.35
    wide_shift: float = 0.8
    wide_sigma: float = 1.5
    gamma_lo: float = GAMMA_LO
    gamma_hi: float = GAMMA_HI
    n_panels: int = 24

    def __post_init__(self):
        for k in ("alpha_lo", "alpha_hi", "logMh_mu0", "logMh_slope", "logMh_sigma", "wide_frac", "wide_shift",
                  "wide_sigma", "gamma_lo", "gamma_hi"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"BankProposal.{k} must be a finite number, got {v!r}")
            object.__setattr__(self, k, float(v))
        if not self.alpha_hi > self.alpha_lo:
            raise ValueError(f"BankProposal needs alpha_hi > alpha_lo, got [{self.alpha_lo}, {self.alpha_hi}]")
        if not (self.logMh_sigma > 0 and self.wide_sigma > 0):
            raise ValueError(f"BankProposal.logMh_sigma and wide_sigma must be > 0, got {self.logMh_sigma}, "
                             f"{self.wide_sigma}")
        if not 0.0 <= self.wide_frac < 1.0:
            raise ValueError(f"BankProposal.wide_frac must be in [0, 1), got {self.wide_frac}")
        if not (GAMMA_LO <= self.gamma_lo < self.gamma_hi <= GAMMA_HI):
            raise ValueError(f"BankProposal gamma range must lie in [{GAMMA_LO}, {GAMMA_HI}] with lo < hi, "
                             f"got [{self.gamma_lo}, {self.gamma_hi}]")
        if isinstance(self.n_panels, bool) or not isinstance(self.n_panels, (int, np.integer)) or self.n_panels < 1:
            raise ValueError(f"BankProposal.n_panels must be a positive integer, got {self.n_panels!r}")
        object.__setattr__(self, "n_panels", int(self.n_panels))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BankProposal":
        return cls(**d)

    def sample(self, n: int, model: str = "deVauc", rng=None) -> dict:
        """Draw ``n`` galaxies: dict of ``logM_star``, ``logRe``, ``logM_halo``, ``gamma_in``."""
        n = _check_n(n)
        gen = np.random.default_rng(rng)
        a = gen.uniform(self.alpha_lo, self.alpha_hi, n)
        m = mstar_gene(n, model, gen)
        re = logRe_given_logM(m, model, gen)
        x = m + a
        wide = gen.random(n) < self.wide_frac
        mh = (self.logMh_mu0 + self.logMh_slope * (x - PIVOT_LOGM) + np.where(wide, self.wide_shift, 0.0)
              + np.where(wide, self.wide_sigma, self.logMh_sigma) * gen.standard_normal(n))
        g = gen.uniform(self.gamma_lo, self.gamma_hi, n)
        return dict(logM_star=x, logRe=re, logM_halo=mh, gamma_in=g)

    def _nodes(self):
        t, w = np.polynomial.legendre.leggauss(8)
        edges = np.linspace(self.alpha_lo, self.alpha_hi, self.n_panels + 1)
        half = 0.5 * np.diff(edges)
        mid = 0.5 * (edges[1:] + edges[:-1])
        nodes = (mid[:, None] + half[:, None] * t[None, :]).ravel()
        weights = (half[:, None] * w[None, :]).ravel()
        return nodes, weights

    def logpdf(self, logM_star, logRe, logM_halo, gamma_in, model: str = "deVauc", block: int = 8192):
        """log q of galaxies (arrays of equal shape); -inf outside the gamma range.

        Performance
        -----------
        About 10 microseconds per galaxy (192-node alpha quadrature, NumPy).
        """
        x = np.asarray(logM_star, float).ravel()
        re = np.asarray(logRe, float).ravel()
        mh = np.asarray(logM_halo, float).ravel()
        g = np.asarray(gamma_in, float).ravel()
        nodes, weights = self._nodes()
        logw = np.log(weights)
        out = np.empty(x.size)
        for i in range(0, x.size, block):
            xs, rs = x[i:i + block, None], re[i:i + block, None]
            M = xs - nodes[None, :]
            lt = mstar_logpdf(M, model) + logRe_logpdf(rs, M, model) + logw[None, :]
            mx = lt.max(axis=1, keepdims=True)
            out[i:i + block] = (mx[:, 0] + np.log(np.exp(lt - mx).sum(axis=1)))
        out -= math.log(self.alpha_hi - self.alpha_lo)
        d = mh - self.logMh_mu0 - self.logMh_slope * (x - PIVOT_LOGM)
        z1 = d / self.logMh_sigma
        z2 = (d - self.wide_shift) / self.wide_sigma
        l1 = math.log1p(-self.wide_frac) - 0.5 * z1 * z1 - math.log(self.logMh_sigma)
        with np.errstate(divide="ignore"):
            l2 = math.log(self.wide_frac) if self.wide_frac > 0 else -np.inf
        l2 = l2 - 0.5 * z2 * z2 - math.log(self.wide_sigma)
        out += np.logaddexp(l1, l2) - 0.5 * math.log(2 * math.pi)
        inside = (g >= self.gamma_lo) & (g <= self.gamma_hi)
        out += np.where(inside, -math.log(self.gamma_hi - self.gamma_lo), -np.inf)
        return out.reshape(np.shape(logM_star))


# --------------------------------------------------------------------------------------------
# bank
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BankTask:
    index: int
    n: int
    seed: np.random.SeedSequence
    model: str
    proposal: BankProposal
    n_beta: int
    zl: float
    zs: float
    c_halo: float
    cosmo: Any


def _bank_chunk(task: _BankTask) -> dict:
    """Worker: draw one chunk from the proposal and solve every lens (top-level, picklable)."""
    from sl_cy.lensing import forward_solve

    rng = np.random.default_rng(task.seed)
    s = task.proposal.sample(task.n, task.model, rng)
    bu = np.sqrt(rng.random((task.n, task.n_beta)))
    out = forward_solve(s["logM_star"][:, None], s["logM_halo"][:, None], s["logRe"][:, None],
                        s["gamma_in"][:, None], task.c_halo, task.zl, task.zs, beta_unit=bu, cosmo=task.cosmo)
    st = np.broadcast_to(out["status"], bu.shape)
    yc = np.broadcast_to(out["y_caustic"], bu.shape)[:, 0]
    crit_ok = np.isfinite(yc) & (yc > 0)
    s["y_caustic"] = np.where(crit_ok, yc, 0.0)
    s["beta_unit"] = bu
    s["mu_A"] = np.where(st == 0, out["mu_A"], 0.0)
    s["mu_B"] = np.where(st == 0, out["mu_B"], 0.0)
    s["status"] = np.asarray(st, dtype=np.int8)
    s["log_q"] = task.proposal.logpdf(s["logM_star"], s["logRe"], s["logM_halo"], s["gamma_in"], task.model)
    return s


_BANK_FIELDS = ("logM_star", "logRe", "logM_halo", "gamma_in", "y_caustic", "beta_unit", "mu_A", "mu_B",
                "status", "log_q", "K", "T")


def _ktable_for(survey: SurveyConfig, n_mu: int = 601):
    from sl_cy.ktable import build_K_table

    src = survey.source
    return build_K_table(n_mu=n_mu, m_lim=survey.m_lim, sigma_m=survey.sigma_m, m_star=src.m_star,
                         alpha_s=src.alpha_s, m_min=src.m_min, m_max=src.m_max)


def _check_seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def bank_config(n, seed, survey=None, proposal=None, zl=DEFAULT_ZL, zs=DEFAULT_ZS, c_halo=DEFAULT_C_HALO,
                model: str = "deVauc", n_beta: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE, cosmo=None,
                k_n_mu: int = 601) -> dict:
    """The configuration dict of a bank (what its hash is computed from); validates the inputs."""
    n = _check_n(n)
    if n < 1:
        raise ValueError("a selection bank needs n >= 1 galaxies")
    survey = SurveyConfig() if survey is None else survey
    if not isinstance(survey, SurveyConfig):
        raise ValueError(f"survey must be a SurveyConfig, got {type(survey).__name__}")
    proposal = BankProposal() if proposal is None else proposal
    if not isinstance(proposal, BankProposal):
        raise ValueError(f"proposal must be a BankProposal, got {type(proposal).__name__}")
    zl = float(as_float_array("zl", zl, lo=0.0, lo_open=True))
    zs = float(as_float_array("zs", zs, lo=0.0, lo_open=True))
    if not zs > zl:
        raise ValueError(f"the source redshift zs={zs} must exceed the lens redshift zl={zl}")
    c_halo = float(as_float_array("c_halo", c_halo, lo=0.0, lo_open=True))
    mp = model_params(model)
    for name, v in (("n_beta", n_beta), ("chunk_size", chunk_size), ("k_n_mu", k_n_mu)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    c = get_cosmology(cosmo)
    return dict(schema=BANK_SCHEMA, package_version=__version__, n=n, seed=_check_seed(seed),
                chunk_size=int(chunk_size), n_beta=int(n_beta), model=model, model_params=mp,
                gamma_support=[GAMMA_LO, GAMMA_HI], survey=survey.to_dict(), nbkg_kpc2=float(survey.nbkg_kpc2(zl, c)),
                proposal=proposal.to_dict(), zl=zl, zs=zs, c_halo=c_halo,
                cosmology=dict(H0=c.H0, Om=c.Om, Ode=c.Ode), k_table=dict(n_mu=int(k_n_mu), mu_min=1e-3, mu_max=1e3))


def build_selection_bank(n, seed=None, survey: SurveyConfig | None = None, proposal: BankProposal | None = None,
                         zl: float = DEFAULT_ZL, zs: float = DEFAULT_ZS, c_halo: float = DEFAULT_C_HALO,
                         model: str = "deVauc", n_jobs=1, executor=None, *, n_beta: int = 1,
                         chunk_size: int = DEFAULT_CHUNK_SIZE, cosmo=None, ktable=None,
                         progress=False) -> "SelectionBank":
    """Draw and solve the eta-independent Monte-Carlo bank of the A(eta) estimator.

    Parameters
    ----------
    n : int
        Number of galaxies (>= 1).
    seed : int, optional
        Root seed; chunk i uses ``SeedSequence(seed).spawn(n_chunks)[i]``, so the bank is identical
        for any ``n_jobs`` / executor. None draws fresh entropy (recorded in the configuration).
    survey : SurveyConfig, optional
        Source density, magnitude limit, scatter and source law (default ``SurveyConfig()``); the
        same object the mock and likelihood use.
    proposal : BankProposal, optional
        The proposal q (default :class:`BankProposal`(), covering :data:`PRIOR_BOX`).
    zl, zs, c_halo : float
        Lens and source redshift and halo concentration (fixed).
    model : {"deVauc", "SerExp", "Sersic"}
        Population model of the fixed laws (skew-normal mass, size-mass relation, xi_h).
    n_jobs : int
        1 serial, k processes, -1 all cores (ignored with ``executor``).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
    n_beta : int, default 1
        Area-uniform source positions per galaxy; T averages K over them (variance reduction).
    chunk_size : int
        Galaxies per random chunk (part of the random stream).
    cosmo : Cosmology, optional
    ktable : KTable, optional
        A prebuilt K table with the survey's constants (default: built here, ~0.3 s).
    progress : bool

    Returns
    -------
    SelectionBank

    Performance
    -----------
    About 7e4 galaxies/s per core with n_beta = 1 and 4e4 with n_beta = 4 (lens solve ~4 us,
    proposal density ~8 us), plus ~0.3 s for the K table; see ``benchmarks/bench_selection.py``.

    Precision
    ---------
    The bank is exact Monte Carlo: A(eta) has relative error ~ 1/sqrt(ESS) (reported).

    Examples
    --------
    >>> bank = build_selection_bank(20_000, seed=1)
    >>> A, ess = bank.evaluate(DEFAULT_ETA, return_ess=True)
    >>> bool(0.001 < A < 0.01 and ess > 100)
    True
    """
    cfg = bank_config(n, seed, survey, proposal, zl, zs, c_halo, model, n_beta, chunk_size, cosmo)
    survey = SurveyConfig() if survey is None else survey
    proposal = BankProposal() if proposal is None else proposal
    n_chunks = -(-cfg["n"] // cfg["chunk_size"])
    seeds = np.random.SeedSequence(cfg["seed"]).spawn(n_chunks)
    cosmo_ = get_cosmology(cosmo)
    tasks = [_BankTask(i, min(cfg["chunk_size"], cfg["n"] - i * cfg["chunk_size"]), seeds[i], model, proposal,
                       cfg["n_beta"], cfg["zl"], cfg["zs"], cfg["c_halo"], cosmo_) for i in range(n_chunks)]
    parts = map_chunks(_bank_chunk, tasks, n_jobs=n_jobs, executor=executor, progress=progress,
                       desc="A(eta) bank")
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    kt = _ktable_for(survey, cfg["k_table"]["n_mu"]) if ktable is None else ktable
    if ktable is not None:
        kp = kt.params
        want = dict(m_lim=survey.m_lim, sigma_m=survey.sigma_m, m_star=survey.source.m_star,
                    alpha_s=survey.source.alpha_s, m_min=survey.source.m_min, m_max=survey.source.m_max)
        if any(abs(kp[k] - v) > 1e-12 * max(1.0, abs(v)) for k, v in want.items()):
            raise ValueError(f"ktable was built with {kp}, the survey needs {want}")
    ok = data["status"] == 0
    K = np.zeros(data["mu_A"].shape)
    if ok.any():
        K[ok] = kt(data["mu_A"][ok], data["mu_B"][ok])
    data["K"] = K
    data["T"] = math.pi * data["y_caustic"] ** 2 * cfg["nbkg_kpc2"] * K.mean(axis=1)
    return SelectionBank(data, cfg)


class SelectionBank:
    """A solved Monte-Carlo bank and the importance-sampling estimator of A(eta).

    Build with :func:`build_selection_bank`, store with :meth:`save` / :func:`save_bank`, read with
    :func:`load_bank`. Calling the bank, ``bank(eta)``, returns A(eta).

    Attributes
    ----------
    data : dict of ndarray
        Per galaxy: ``logM_star``, ``logRe``, ``logM_halo``, ``gamma_in``, ``y_caustic`` (0 without
        caustic), ``log_q``, ``T``; per (galaxy, beta): ``beta_unit``, ``mu_A``, ``mu_B``, ``status``, ``K``.
    config : dict
        Full configuration (:func:`bank_config`); ``config_hash`` its sha256.
    ess_threshold : float
        Warning threshold of the effective sample size (default :data:`ESS_WARN_THRESHOLD`).
    """

    def __init__(self, data: dict, config: dict, ess_threshold: float = ESS_WARN_THRESHOLD):
        missing = [k for k in _BANK_FIELDS if k not in data]
        if missing:
            raise ValueError(f"bank data lacks {missing}")
        self.data = {k: np.asarray(data[k]) for k in _BANK_FIELDS}
        self.config = dict(config)
        self.config_hash = config_hash(self.config)
        self.ess_threshold = float(ess_threshold)
        n = self.data["T"].shape[0]
        if n != int(self.config["n"]):
            raise ValueError(f"bank holds {n} galaxies, its configuration says {self.config['n']}")
        p = model_params(self.config["model"])
        self.kernel = _selection.SelectionKernel(p["mu_star"], p["sigma_star"], 10.0 ** p["log_s_star"], p["mu_R0"],
                                                 p["beta_R"], p["sigma_R"], p["xi_h"], PIVOT_LOGM,
                                                 float(self.config["gamma_support"][0]),
                                                 float(self.config["gamma_support"][1]))
        T = self.data["T"]
        keep = np.flatnonzero((T > 0) & np.isfinite(self.data["log_q"]))
        self._x = np.ascontiguousarray(self.data["logM_star"][keep], dtype=float)
        self._re = np.ascontiguousarray(self.data["logRe"][keep], dtype=float)
        self._mh = np.ascontiguousarray(self.data["logM_halo"][keep], dtype=float)
        self._g = np.ascontiguousarray(self.data["gamma_in"][keep], dtype=float)
        self._base = np.ascontiguousarray(np.log(T[keep]) - self.data["log_q"][keep], dtype=float)
        # P(>= 1 detected source) = 1 - exp(-T) per galaxy (what a mock counts, see lens_fraction)
        self._base_frac = np.ascontiguousarray(np.log(-np.expm1(-T[keep])) - self.data["log_q"][keep], dtype=float)

    # -- properties --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of galaxies in the bank (the 1/N of the estimator)."""
        return int(self.config["n"])

    @property
    def n_contributing(self) -> int:
        """Galaxies with T > 0 (those summed per eta)."""
        return int(self._x.size)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"SelectionBank(n={self.n}, contributing={self.n_contributing}, model={self.config['model']!r}, "
                f"hash={self.config_hash[:12]})")

    # -- evaluation ---------------------------------------------------------------------------
    @staticmethod
    def _eta_batch(eta) -> tuple[np.ndarray, bool]:
        if isinstance(eta, Eta):
            eta = eta.to_array()
        elif isinstance(eta, dict):
            unknown = set(eta) - set(ETA_NAMES)
            if unknown:
                raise ValueError(f"unknown eta field(s) {sorted(unknown)}; fields are {ETA_NAMES}")
            eta = Eta(**eta).to_array()
        e = as_float_array("eta", eta)
        if e.ndim == 0 or e.shape[-1] != 6 or e.ndim > 2:
            raise ValueError(f"eta must have shape (6,) or (n, 6) in the order {ETA_NAMES}, got shape {e.shape}")
        scalar = e.ndim == 1
        e = np.ascontiguousarray(np.atleast_2d(e), dtype=float)
        for j in (3, 5):
            if np.any(e[:, j] <= 0):
                raise ValueError(f"eta.{ETA_NAMES[j]} must be > 0; got {e[e[:, j] <= 0, j][0]!r}")
        return e, scalar

    def _gamma_lognorm(self, e: np.ndarray) -> np.ndarray:
        lo, hi = (float(v) for v in self.config["gamma_support"])
        mu, sig = e[:, 4], e[:, 5]
        return np.ascontiguousarray(_log_ndtr_diff((lo - mu) / sig, (hi - mu) / sig), dtype=float)

    def evaluate(self, eta, return_ess: bool = False, return_error: bool = False, warn: bool = True,
                 n_threads: int = 1):
        """A(eta) by importance sampling from the bank.

        Parameters
        ----------
        eta : array (6,) or (n, 6), Eta or dict
            (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma); any value is allowed
            (sigmas > 0); far outside :data:`PRIOR_BOX` the ESS drops and a warning is issued.
        return_ess : bool
            Also return the effective sample size ESS = (Σ c_k)^2 / Σ c_k^2 of the contributions
            c_k = w_k T_k (0 when A = 0).
        return_error : bool
            Also return the Monte-Carlo standard error of A.
        warn : bool
            Issue a :class:`SelectionWarning` when ESS < ``ess_threshold``.
        n_threads : int
            OpenMP threads over the rows of a batch (results are identical for any value).

        Returns
        -------
        A : float (for one eta) or ndarray (n,)
        ess, err : same shape (when requested, in this order)

        Performance
        -----------
        One nogil loop over the contributing galaxies with one exp and one erfc each: about
        3 ms per eta for a 1e5 bank on one core (plain NumPy with the population log-densities:
        ~5 ms).

        Precision
        ---------
        Relative MC error ~ 1/sqrt(ESS); A is a smooth function of eta for a fixed bank.

        Examples
        --------
        >>> bank = build_selection_bank(20_000, seed=1)
        >>> A = bank([DEFAULT_ETA, DEFAULT_ETA._replace(mu_h=13.2)])
        >>> bool(A[1] > A[0])
        True
        """
        e, scalar = self._eta_batch(eta)
        sums = self.kernel.weight_sums(self._x, self._re, self._mh, self._g, self._base, e,
                                       self._gamma_lognorm(e), int(n_threads))
        N = float(self.n)
        s, s2 = sums[:, 0], sums[:, 1]
        A = s / N
        with np.errstate(invalid="ignore", divide="ignore"):
            ess = np.where(s2 > 0, s * s / np.where(s2 > 0, s2, 1.0), 0.0)
        err = np.sqrt(np.maximum(s2 / N - A * A, 0.0) / N)
        if warn and np.any(ess < self.ess_threshold):
            bad = np.flatnonzero(ess < self.ess_threshold)
            warnings.warn(f"A(eta) from a bank of {self.n} galaxies has effective sample size "
                          f"{ess[bad[0]]:.1f} < {self.ess_threshold:g} at eta = {e[bad[0]].tolist()} "
                          f"({bad.size} of {len(e)} eta); the estimate is unreliable (use a larger bank "
                          f"or a proposal covering this eta)", SelectionWarning, stacklevel=2)
        outs = [A] + ([ess] if return_ess else []) + ([err] if return_error else [])
        if scalar:
            outs = [float(o[0]) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def __call__(self, eta):
        """A(eta) for eta of shape (6,) (float) or (n, 6) (array); see :meth:`evaluate`."""
        return self.evaluate(eta)

    def lens_fraction(self, eta, return_error: bool = False):
        """Expected fraction of galaxies that are detected lenses, E[1 - exp(-T)] (what a mock counts).

        A mock galaxy is a lens when at least one of its Poisson sources is detected, so its
        detected fraction is E[1 - exp(-lambda p_det)], slightly below A(eta) = E[lambda p_det]
        (the Poisson rate the likelihood normalises with): by ~1 % at the default eta and ~3 % at
        mu_gamma = 1.3, where massive steep halos have lambda ~ 0.1 - 1. With ``n_beta`` = 1 the
        per-galaxy K is a one-point estimate, which biases this (not A) low by a fraction of
        that difference; use ``n_beta`` >= 4 for a precise comparison.

        Returns
        -------
        float or ndarray (and the MC standard error when ``return_error``)

        Examples
        --------
        >>> bank = build_selection_bank(20_000, seed=1, n_beta=4)
        >>> bool(bank.lens_fraction(DEFAULT_ETA) < bank(DEFAULT_ETA))
        True
        """
        e, scalar = self._eta_batch(eta)
        sums = self.kernel.weight_sums(self._x, self._re, self._mh, self._g, self._base_frac, e,
                                       self._gamma_lognorm(e), 1)
        N = float(self.n)
        f = sums[:, 0] / N
        err = np.sqrt(np.maximum(sums[:, 1] / N - f * f, 0.0) / N)
        if scalar:
            f, err = float(f[0]), float(err[0])
        return (f, err) if return_error else f

    def log_target(self, eta) -> np.ndarray:
        """Compiled log p(galaxy | eta) of every contributing galaxy (for tests and diagnostics)."""
        e, _ = self._eta_batch(eta)
        if len(e) != 1:
            raise ValueError("log_target takes one eta")
        return self.kernel.log_target(self._x, self._re, self._mh, self._g, e[0], float(self._gamma_lognorm(e)[0]))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the bank to HDF5 (see :func:`save_bank`)."""
        return save_bank(path, self)


def save_bank(path, bank: SelectionBank) -> Path:
    """Write a bank to ``path`` atomically: one dataset per field, configuration and hash as attributes.

    Examples
    --------
    >>> import tempfile
    >>> b = build_selection_bank(2000, seed=3)
    >>> p = save_bank(Path(tempfile.mkdtemp()) / "bank.h5", b)
    >>> load_bank(p).config_hash == b.config_hash
    True
    """
    path = Path(path)
    with atomic_h5(path) as f:
        f.attrs["kind"] = BANK_KIND
        write_attrs(f, dict(config=bank.config, config_hash=bank.config_hash, sl_cy_version=__version__))
        for k in _BANK_FIELDS:
            f.create_dataset(k, data=bank.data[k], compression="gzip", compression_opts=4, shuffle=True)
    return path


def load_bank(path, expected_hash: str | None = None) -> SelectionBank:
    """Read a bank written by :func:`save_bank`; ValueError when it is not one, is corrupt, or its
    hash differs from ``expected_hash``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no selection bank at {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != BANK_KIND:
            raise ValueError(f"{path} is not a selection bank (kind={f.attrs.get('kind')!r})")
        attrs = read_attrs(f)
        data = {k: f[k][()] for k in _BANK_FIELDS}
    bank = SelectionBank(data, attrs["config"])
    if bank.config_hash != attrs["config_hash"]:
        raise ValueError(f"{path}: stored hash {attrs['config_hash']} does not match its configuration")
    if expected_hash is not None and bank.config_hash != expected_hash:
        raise ValueError(f"{path}: bank hash {bank.config_hash} differs from the expected {expected_hash}")
    return bank


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def parse_axes(spec: str) -> dict:
    """Parse ``"name:lo:hi:n,name:lo:hi:n"`` (n points, endpoints included) into {name: grid}.

    Examples
    --------
    >>> {k: v.tolist() for k, v in parse_axes("mu_h:12:14:3").items()}
    {'mu_h': [12.0, 13.0, 14.0]}
    """
    axes = {}
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        bits = part.split(":")
        if len(bits) != 4:
            raise ValueError(f"axis spec {part!r} must be name:lo:hi:n")
        name, lo, hi, n = bits
        if name not in ETA_NAMES:
            raise ValueError(f"unknown eta axis {name!r}; names are {ETA_NAMES}")
        try:
            lo_, hi_, n_ = float(lo), float(hi), int(n)
        except ValueError:
            raise ValueError(f"axis spec {part!r}: lo, hi must be numbers and n an integer") from None
        if n_ < 1 or (n_ > 1 and not hi_ > lo_):
            raise ValueError(f"axis spec {part!r}: need n >= 1 and hi > lo")
        if name in axes:
            raise ValueError(f"axis {name!r} given twice")
        axes[name] = np.linspace(lo_, hi_, n_)
    if not axes:
        raise ValueError("no axes given")
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


@dataclass
class AEtaTable:
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
    bank_hash, bank_config : str, dict
        The bank the table was computed from.
    method : {"cubic", "linear"}
        Interpolation of log A in the table axes (default cubic; linear is used when an axis has
        fewer than 4 points). For the shipped 11x11x9x7 table the interpolation error against the
        bank it was built from is 0.2 % median, 1 % at the 90th percentile with cubic (linear:
        3 % and 8 %).
    """

    axes: list
    grids: list
    values: np.ndarray
    ess: np.ndarray
    fixed: Eta
    bank_hash: str = ""
    bank_config: dict = field(default_factory=dict)
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

    def __call__(self, eta):
        """A at eta (6,) -> float or (n, 6) -> array; 0.0 outside the table (log A = -inf upstream).

        Performance
        -----------
        ~20 us per call + ~1 us per eta (scipy RegularGridInterpolator on log A).

        Precision
        ---------
        Interpolation error of log A on the grid spacing (cubic O(h^4), linear O(h^2)); the
        table values carry the bank's MC error ~ 1/sqrt(ESS). Linear reproduces the nodes
        exactly; scipy's cubic spline fit is solved iteratively and reproduces them to ~1e-5.
        """
        e, scalar = SelectionBank._eta_batch(eta)
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

    def bounds(self) -> dict:
        """{axis: (lo, hi)} of the table (the support of A, hence of the prior)."""
        return {n: (float(g[0]), float(g[-1])) for n, g in zip(self.axes, self.grids)}


def table_filename(axes: dict) -> str:
    """``Aeta_<axes>_<sizes>.h5``, e.g. ``Aeta_alpha_sps-mu_h_11x11.h5``."""
    names = "-".join(axes)
    sizes = "x".join(str(len(g)) for g in axes.values())
    return f"Aeta_{names}_{sizes}.h5"


def compute_Aeta_grid(bank: SelectionBank, axes: dict, fixed=None, n_threads: int = 1,
                      block: int = 4096) -> AEtaTable:
    """Tabulate A(eta) over a named subset of eta (seed name).

    Parameters
    ----------
    bank : SelectionBank
    axes : dict {name: 1-D increasing grid}
        Any subset of :data:`ETA_NAMES` (stored in eta order).
    fixed : Eta, dict or (6,), optional
        Values of the other components (default :data:`DEFAULT_ETA`; a dict updates it).
    n_threads : int
        OpenMP threads over the grid points (values identical for any number).
    block : int
        Grid points per kernel call.

    Returns
    -------
    AEtaTable
        Callable on the full eta; write it with :func:`write_A_eta_hdf5`.

    Performance
    -----------
    ~2-3 ms per grid point per thread for a 1e5 bank.

    Examples
    --------
    >>> bank = build_selection_bank(20_000, seed=1)
    >>> t = compute_Aeta_grid(bank, {"mu_h": np.linspace(12.5, 13.5, 5)})
    >>> t.values.shape
    (5,)
    """
    if not isinstance(bank, SelectionBank):
        raise ValueError(f"bank must be a SelectionBank, got {type(bank).__name__}")
    axes = _check_axes(axes)
    fx = _fixed_eta(fixed)
    names = list(axes)
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    pts = np.tile(fx.to_array(), (mesh[0].size, 1))
    for n, m in zip(names, mesh):
        pts[:, ETA_NAMES.index(n)] = m.ravel()
    A = np.empty(len(pts))
    ess = np.empty(len(pts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelectionWarning)
        for i in range(0, len(pts), block):
            A[i:i + block], ess[i:i + block] = bank.evaluate(pts[i:i + block], return_ess=True, warn=False,
                                                             n_threads=n_threads)
    low = int((ess < bank.ess_threshold).sum())
    if low:
        warnings.warn(f"{low} of {len(pts)} table entries have ESS < {bank.ess_threshold:g} "
                      f"(min {ess.min():.1f}); widen the proposal or enlarge the bank", SelectionWarning, stacklevel=2)
    shape = tuple(len(g) for g in axes.values())
    return AEtaTable(names, list(axes.values()), A.reshape(shape), ess.reshape(shape), fx, bank.config_hash,
                     dict(bank.config))


def write_A_eta_hdf5(path, table: AEtaTable, extra_attrs: dict | None = None) -> Path:
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
        write_attrs(f, dict(axes=list(table.axes), fixed=table.fixed.to_dict(), bank_hash=table.bank_hash,
                            bank_config=table.bank_config, survey=table.bank_config.get("survey"),
                            model=table.bank_config.get("model", ""), sl_cy_version=__version__,
                            eta_names=list(ETA_NAMES), **(extra_attrs or {})))
        f.create_dataset("A", data=table.values)
        f.create_dataset("ess", data=table.ess)
        g = f.create_group("grids")
        for n, grid in zip(table.axes, table.grids):
            g.create_dataset(n, data=grid)
    table.path = path
    return path


def write_A_eta_hdf5_1d(path, axis: str, grid, values, fixed=None, ess=None, bank: SelectionBank | None = None,
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
                  dict(bank.config) if bank else {})
    return write_A_eta_hdf5(path, t, extra_attrs)


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
    return AEtaTable(axes, grids, values, ess, Eta(**a["fixed"]), a.get("bank_hash", ""), a.get("bank_config", {}),
                     method=method, path=path)


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------
def table_folders(folder=None) -> list[Path]:
    """Folders searched by :func:`cached_A`, in order: ``folder``, ``$SL_CY_AETA_DIR``, the shipped
    ``sl_cy/data/``, and the repository's ``aeta_tables/`` (source checkouts only)."""
    out = []
    if folder is not None:
        out.append(Path(folder))
    if os.environ.get(AETA_DIR_ENV):
        out.append(Path(os.environ[AETA_DIR_ENV]))
    out.append(PACKAGE_TABLE_DIR)
    repo = PACKAGE_TABLE_DIR.parent.parent / "aeta_tables"
    if repo.is_dir():
        out.append(repo)
    return out


def _config_matches(bank_config: dict, config) -> bool:
    if config is None:
        return True
    if isinstance(config, SurveyConfig):
        config = {"survey": config.to_dict()}
    if not isinstance(config, dict):
        raise ValueError(f"config must be a SurveyConfig or a dict of bank-configuration keys, got {type(config).__name__}")
    for k, v in config.items():
        if k == "survey" and isinstance(v, SurveyConfig):
            v = v.to_dict()
        if k not in bank_config:
            return False
        if config_hash(to_jsonable(bank_config[k])) != config_hash(to_jsonable(v)):
            return False
    return True


def cached_A(path=None, folder=None, config=None, interactive: bool = False, method: str = "cubic") -> AEtaTable:
    """Find and load an A(eta) table; return a callable A(eta) of the full eta (seed name).

    Parameters
    ----------
    path : str or Path, optional
        A table file: load it (no discovery).
    folder : str or Path, optional
        Extra folder searched first (then ``$SL_CY_AETA_DIR``, the shipped ``sl_cy/data/`` and a
        source checkout's ``aeta_tables/``).
    config : SurveyConfig or dict, optional
        Keep only tables whose bank configuration matches: a SurveyConfig compares the survey; a
        dict compares each given key of the bank configuration (e.g. ``{"model": "deVauc",
        "zl": 0.3, "survey": SurveyConfig()}``).
    interactive : bool
        List the candidates and ask which one to use (stdin); otherwise the first one is used
        (folder order, then name).
    method : {"cubic", "linear"}
        Interpolation of log A in the table axes (cubic: 0.2 % median error on the default table).

    Returns
    -------
    AEtaTable
        ``A = table(eta)`` for eta (6,) -> float or (n, 6) -> array; A = 0.0 outside the table
        axes or when a non-tabulated component differs from the recorded ``table.fixed``
        (log A = -inf upstream; never NaN or extrapolation).

    Raises
    ------
    ValueError
        When no table matches (the message lists the folders searched).

    Examples
    --------
    >>> A = cached_A()
    >>> bool(A(DEFAULT_ETA) > 0), A(DEFAULT_ETA._replace(alpha_sps=5.0))
    (True, 0.0)
    """
    if path is not None:
        return load_A_eta_table(path, method)
    folders = table_folders(folder)
    cands = []
    seen = set()
    for d in folders:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("Aeta_*.h5")):
            rp = p.resolve()
            if rp in seen:
                continue
            seen.add(rp)
            try:
                t = load_A_eta_table(p, method)
            except (ValueError, OSError, KeyError):
                continue
            if _config_matches(t.bank_config, config):
                cands.append(t)
    if not cands:
        raise ValueError(f"no A(eta) table Aeta_*.h5 matching the configuration in {[str(d) for d in folders]}; "
                         f"build one with `sl-cy aeta`")
    if interactive and len(cands) > 1:
        for i, t in enumerate(cands):
            print(f"[{i}] {t.path}  axes={t.bounds()}  bank={t.bank_hash[:12]}")
        while True:
            ans = input(f"A(eta) table [0-{len(cands) - 1}, default 0]: ").strip()
            if ans == "":
                return cands[0]
            if ans.isdigit() and int(ans) < len(cands):
                return cands[int(ans)]
            print("please enter one of the listed numbers")
    return cands[0]


# --------------------------------------------------------------------------------------------
# deterministic A(eta): product quadrature over a tabulated selection rate
# --------------------------------------------------------------------------------------------
#: Axes (start, stop, step) of the selection-rate table T(logM*, logRe, logMh, gamma_in).
SELECTION_TABLE_AXES = dict(logM_star=(9.8, 12.9, 0.1), logRe=(-0.7, 2.1, 0.1), logM_halo=(10.0, 16.5, 0.1),
                            gamma_in=(0.0, 2.0, 0.1))
SELECTION_TABLE_VERSION = 2


def _axis(spec):
    lo, hi, st = (float(v) for v in spec)
    n = int(round((hi - lo) / st)) + 1
    return lo + st * np.arange(n)


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

    re, mh, g = np.meshgrid(*task.axes, indexing="ij")
    bu = task.beta_unit
    out = forward_solve(task.logM_star, mh[..., None], re[..., None], g[..., None], task.c_halo, task.zl, task.zs,
                        beta_unit=bu, cosmo=task.cosmo)
    ok = out["status"] == 0
    yc = np.broadcast_to(out["y_caustic"], ok.shape)[..., 0]
    return dict(index=task.index, y_caustic=np.where(np.isfinite(yc) & (yc > 0), yc, 0.0),
                mu_A=np.where(ok, out["mu_A"], 0.0), mu_B=np.where(ok, out["mu_B"], 0.0), ok=ok)


class SelectionQuadrature:
    """Deterministic A(eta) (and the lens fraction) by product quadrature over a tabulated
    per-galaxy selection rate.

    The rate of detected sources behind a galaxy, T(logM*, logRe, logMh, gamma_in) =
    pi y_c^2 n_bkg <K(mu_A(beta), mu_B(beta))>_beta (area-average over the caustic by 8-point
    Gauss-Legendre in v, (beta / y_c)^2 = (1 - cos pi v) / 2, which clusters the nodes at the
    Einstein ring and at the caustic where K varies fastest: 8 nodes agree with 16 to 5e-4), does
    not depend on eta; it is tabulated once on :data:`SELECTION_TABLE_AXES` (1.2e6 nodes, ~45 s on
    one core, ~25 s on two; cached on disk, keyed by its configuration). Then

        A(eta) = ∫ dM p_sk(M) ∫ dlogRe p(logRe | M) ∫ dlogMh p(logMh | M, logRe, eta)
                 ∫ dgamma p(gamma | eta) T(M + alpha_sps, logRe, logMh, gamma)

    by Gauss-Legendre in M (64 nodes over the skew-normal's [-4, 6] sigma), Gauss-Hermite in logRe
    (8) and logMh (12) scaled to their conditional Gaussians, and Gauss-Legendre over the
    truncated gamma law (16 nodes on its +-7 sigma intersected with [0, 2]); T is interpolated
    multilinearly. The lens fraction E[1 - exp(-T)] comes from the same quadrature.

    Unlike the Monte-Carlo bank (:class:`SelectionBank`), the result is a smooth deterministic
    function of eta: no importance-sampling noise, which for N lenses enters log L as
    N x (relative error of A) and biased 6-D posteriors of ~500 lenses by 3-4 sigma with a 2e5
    bank.

    Parameters
    ----------
    T, F : ndarray, shape (n_M*, n_Re, n_Mh, n_gamma)
        Selection rate and 1 - exp(-T) on the axes.
    axes : dict
        ``SELECTION_TABLE_AXES``-like (start, stop, step) per axis.
    config : dict
        What the table was built with.
    n_threads : int, optional

    Attributes
    ----------
    path : Path or None
        The cache file it was loaded from or saved to by :func:`build_selection_table`.

    Performance
    -----------
    About 1.5-3 ms per eta on one core (98 304 interpolations of the table); eta batches are
    spread over OpenMP threads.

    Precision
    ---------
    Quadrature and interpolation errors are smooth in eta; the table step (0.1) limits the
    absolute accuracy of A to ~1 % (tested against the bank), ratios A(eta1)/A(eta2) within a
    posterior are far more accurate than that. Outside the table (e.g. logMh > 16.5) T is
    clamped to its edge value.

    Examples
    --------
    >>> sq = build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
    ...                                       logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)
    >>> bool(0.0 < sq(DEFAULT_ETA) < 0.05)
    True
    """

    def __init__(self, T, F, axes: dict, config: dict, n_threads: int | None = None):
        self.T = np.ascontiguousarray(T, dtype=float)
        self.F = np.ascontiguousarray(F, dtype=float)
        self.axes = {k: tuple(float(v) for v in axes[k]) for k in SELECTION_TABLE_AXES}
        self.config = dict(config)
        self.config_hash = config_hash(self.config)
        self.path = None
        shape = tuple(len(_axis(self.axes[k])) for k in SELECTION_TABLE_AXES)
        if self.T.shape != shape or self.F.shape != shape:
            raise ValueError(f"selection table has shape {self.T.shape}, its axes need {shape}")
        self._start = np.array([self.axes[k][0] for k in SELECTION_TABLE_AXES])
        self._step = np.array([self.axes[k][2] for k in SELECTION_TABLE_AXES])
        p = model_params(self.config.get("model", "deVauc"))
        self.kernel = _selection.SelectionKernel(p["mu_star"], p["sigma_star"], 10.0 ** p["log_s_star"], p["mu_R0"],
                                                 p["beta_R"], p["sigma_R"], p["xi_h"], PIVOT_LOGM, GAMMA_LO, GAMMA_HI)
        # fixed nodes: M (Gauss-Legendre x skew-normal density), logRe and logMh (Gauss-Hermite)
        t, w = np.polynomial.legendre.leggauss(64)
        lo, hi = p["mu_star"] - 4 * p["sigma_star"], p["mu_star"] + 6 * p["sigma_star"]
        self._M = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
        self._wM = 0.5 * (hi - lo) * w * np.exp(mstar_logpdf(self._M, self.config.get("model", "deVauc")))
        self._tR, wR = np.polynomial.hermite_e.hermegauss(8)
        self._wR = wR / math.sqrt(2 * math.pi)
        self._tH, wH = np.polynomial.hermite_e.hermegauss(12)
        self._wH = wH / math.sqrt(2 * math.pi)
        self._tg, self._wg = np.polynomial.legendre.leggauss(16)
        from sl_cy.parallel import available_cores

        self.n_threads = int(n_threads or available_cores())

    def __repr__(self) -> str:
        return f"SelectionQuadrature(table {self.T.shape}, hash {self.config_hash[:10]})"

    def _gamma_nodes(self, e: np.ndarray):
        mu, sg = e[:, 4:5], e[:, 5:6]
        lo = np.clip(mu - 7 * sg, GAMMA_LO, GAMMA_HI)
        hi = np.clip(mu + 7 * sg, GAMMA_LO, GAMMA_HI)
        empty = ~(hi > lo)
        lo = np.where(empty, GAMMA_LO, lo)
        hi = np.where(empty, GAMMA_HI, hi)
        g = 0.5 * (hi - lo) * self._tg[None, :] + 0.5 * (hi + lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            lp = gamma_logpdf(g, mu, sg)
        w = 0.5 * (hi - lo) * self._wg[None, :] * np.exp(lp)
        return np.ascontiguousarray(g), np.ascontiguousarray(np.where(np.isfinite(w), w, 0.0))

    def _quad(self, eta, lens_fraction: bool):
        """Column 0: A(eta); column 1 (only with ``lens_fraction``): E[1 - exp(-T)]."""
        e, scalar = SelectionBank._eta_batch(eta)
        g, wg = self._gamma_nodes(e)
        out = _selection.quad_selection(self.kernel, self.T, self.F, self._start, self._step, self._M, self._wM,
                                        self._tR, self._wR, self._tH, self._wH, g, wg, e, self.n_threads,
                                        lens_fraction)
        return out, scalar

    def __call__(self, eta):
        """A(eta) for one eta (float) or a batch (n, 6) (array); ValueError (as the bank) for a
        non-finite eta or sigma_h, sigma_gamma <= 0 (:class:`sl_cy.likelihood.Posterior` turns
        that into -inf for the row)."""
        out, scalar = self._quad(eta, False)
        return float(out[0, 0]) if scalar else out[:, 0]

    def lens_fraction(self, eta):
        """E[1 - exp(-T)]: the fraction of galaxies with at least one detected source."""
        out, scalar = self._quad(eta, True)
        return float(out[0, 1]) if scalar else out[:, 1]

    def save(self, path) -> Path:
        with atomic_h5(path) as f:
            f.create_dataset("T", data=self.T, compression="gzip")
            f.create_dataset("F", data=self.F, compression="gzip")
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
            return cls(f["T"][()], f["F"][()], a["axes"], a["config"])


def selection_table_config(survey=None, zl=DEFAULT_ZL, zs=DEFAULT_ZS, c_halo=DEFAULT_C_HALO, model="deVauc",
                           axes=None, n_beta=8, cosmo=None, k_n_mu=601) -> dict:
    survey = SurveyConfig() if survey is None else survey
    c = get_cosmology(cosmo)
    axes = dict(SELECTION_TABLE_AXES if axes is None else axes)
    if set(axes) != set(SELECTION_TABLE_AXES):
        raise ValueError(f"axes must give {list(SELECTION_TABLE_AXES)}, got {list(axes)}")
    for k, (lo, hi, st) in axes.items():
        if not (st > 0 and hi > lo):
            raise ValueError(f"axis {k}: need start < stop and step > 0, got {(lo, hi, st)}")
    return dict(schema=SELECTION_TABLE_VERSION, package_version=__version__, model=model,
                model_params=model_params(model), survey=survey.to_dict(), nbkg_kpc2=float(survey.nbkg_kpc2(zl, c)),
                zl=float(zl), zs=float(zs), c_halo=float(c_halo), cosmology=dict(H0=c.H0, Om=c.Om, Ode=c.Ode),
                axes={k: [float(v) for v in axes[k]] for k in SELECTION_TABLE_AXES}, n_beta=int(n_beta),
                k_table=dict(n_mu=int(k_n_mu)))


def build_selection_table(survey: SurveyConfig | None = None, zl: float = DEFAULT_ZL, zs: float = DEFAULT_ZS,
                          c_halo: float = DEFAULT_C_HALO, model: str = "deVauc", axes: dict | None = None,
                          n_beta: int = 8, n_jobs=1, executor=None, cosmo=None, cache: bool = True,
                          cache_dir=None, progress=False) -> SelectionQuadrature:
    """Tabulate the selection rate T and return the deterministic A(eta) (:class:`SelectionQuadrature`).

    Parameters
    ----------
    survey, zl, zs, c_halo, model, cosmo :
        As for :func:`build_selection_bank` (the same constants as the mock and the likelihood).
    axes : dict, optional
        (start, stop, step) per axis (default :data:`SELECTION_TABLE_AXES`).
    n_beta : int
        Gauss-Legendre nodes of the area average over source positions.
    n_jobs, executor :
        Parallelism over logM* slices (:func:`sl_cy.parallel.map_chunks`).
    cache : bool
        Load/store the table in ``cache_dir`` (default ``$SL_CY_CACHE_DIR`` or ``~/.cache/sl_cy``),
        keyed by the hash of its configuration.

    Returns
    -------
    SelectionQuadrature

    Performance
    -----------
    ~9 forward solves per node: ~45 s for the default 1.2e6-node table on one core (``n_jobs``
    processes divide it), then a cache hit takes ~0.1 s.
    """
    cfg = selection_table_config(survey, zl, zs, c_halo, model, axes, n_beta, cosmo)
    h = config_hash(cfg)
    path = None
    if cache:
        from sl_cy._profiles import cache_dir as default_cache_dir

        path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"selection_table_{h[:16]}.h5"
        if path.exists():
            try:
                sq = SelectionQuadrature.load(path, expected_hash=h)
                sq.path = path
                return sq
            except (OSError, KeyError, ValueError):
                pass
    survey = SurveyConfig() if survey is None else survey
    ax = {k: _axis(cfg["axes"][k]) for k in SELECTION_TABLE_AXES}
    # area average over u = (beta / y_c)^2 in [0, 1): K varies fastest at both ends (mu -> inf on
    # the Einstein ring, u -> 0, and at the radial caustic, u -> 1), so substitute
    # u = (1 - cos(pi v)) / 2, which clusters Gauss-Legendre nodes in v at both ends
    t, wv = np.polynomial.legendre.leggauss(int(n_beta))
    v = 0.5 * (t + 1.0)
    u = 0.5 * (1.0 - np.cos(np.pi * v))
    w = wv * 0.5 * np.pi * np.sin(np.pi * v)     # du = (pi / 2) sin(pi v) dv; (0.5 * w) sums to 1
    bu = np.sqrt(u)
    cos = get_cosmology(cosmo)
    tasks = [_TableTask(i, float(x), (ax["logRe"], ax["logM_halo"], ax["gamma_in"]), bu, cfg["zl"], cfg["zs"],
                        cfg["c_halo"], cos) for i, x in enumerate(ax["logM_star"])]
    kt = _ktable_for(survey, cfg["k_table"]["n_mu"])
    T = np.zeros(tuple(len(a) for a in ax.values()))
    for r in map_chunks(_table_row, tasks, n_jobs=n_jobs, executor=executor, progress=progress,
                        desc="selection table"):
        K = np.zeros(r["mu_A"].shape)
        ok = r["ok"]
        if ok.any():
            K[ok] = kt(r["mu_A"][ok], r["mu_B"][ok])
        T[r["index"]] = math.pi * r["y_caustic"] ** 2 * cfg["nbkg_kpc2"] * (K @ (0.5 * w))
    sq = SelectionQuadrature(T, -np.expm1(-T), {k: cfg["axes"][k] for k in SELECTION_TABLE_AXES}, cfg)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sq.save(path)
            sq.path = path
        except OSError:
            pass
    return sq
