"""Simulation-based calibration (SBC) of the eta posterior: ``sl-cy validate`` (issue 17).

Is the posterior calibrated for *this* forward model (survey, redshifts, population model)? For
each replicate r = 0, 1, ...:

1. draw the truth eta_r from a stated prior (default :data:`DEFAULT_SBC_BOX`, a box around the
   default truth; any :class:`sl_cy.likelihood.Prior` is accepted) -- the inference uses the
   same prior, as SBC requires;
2. simulate a mock of ``n_galaxy`` galaxies at eta_r, tabulate its grids (in memory), and
   sample the posterior with emcee (walkers started from prior draws, independent of eta_r);
3. keep ``n_draws`` = L draws spaced by the autocorrelation time after the burn-in and record
   the rank of eta_r among them (0..L per parameter), its posterior quantile (PIT, from all kept
   steps) and the posterior mean and standard deviation (pull = (mean - truth) / sd).

If the posterior is calibrated the ranks are uniform on 0..L, and the central q-interval covers
the truth in a fraction q of the replicates (Talts et al. 2018; Modrak et al. 2023).
:func:`sbc_summary` (a pure function of the ranks, PITs and pulls) gives per parameter the rank
histogram with the binomial 99 % band, a chi^2 uniformity p-value, the empirical coverage at
68 % and 95 % (with binomial p-values) and the mean and spread of the pull, and a verdict line.

Seeds: one root seed; replicate r uses ``SeedSequence(seed, spawn_key=(r,))`` and its
sub-streams (truth, mock, sampler), so a replicate's result does not depend on the number of
replicates, the order they run in, or where they run (processes or a dask cluster, through
:func:`sl_cy.parallel.iter_chunks`).

Folder ``out`` (like a run folder, :class:`sl_cy.runs.RunFolder`)::

    params.json       the configuration (written first)
    metadata.json     status running / interrupted / complete, times, version
    replicates.csv    one row per finished replicate, appended as each finishes
    summary.json      the statistics of :func:`sbc_summary` and the verdict
    ranks.png, coverage.png

Rerunning the same call (or command) on the folder continues it: finished replicates are read
back from ``replicates.csv`` (a line torn by a kill is dropped) and only the others run; a larger
``replicates`` extends it. The result equals an uninterrupted run's.
"""
from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from sl_cy._version import __version__
from sl_cy.population import DEFAULT_ETA, ETA_NAMES

__all__ = ["DEFAULT_SBC_BOX", "QUICK", "FULL", "sbc_prior", "prior_draws", "rank_of_truth", "sbc_summary",
           "ValidationResult", "ValidationInterrupted", "validate", "plot_rank_histograms", "plot_coverage"]

VALIDATE_KIND = "sl_cy.validate/1"
REPLICATES_CSV = "replicates.csv"
SUMMARY_JSON = "summary.json"
PLOTS = {"ranks": "ranks.png", "coverage": "coverage.png"}

#: Default prior of the truth in :func:`validate` (and of its inference): a box around the default
#: truth, narrow enough that every draw gives a sample of lenses like the default mock's.
DEFAULT_SBC_BOX = {
    "alpha_sps": (-0.05, 0.05),
    "mu_h": (12.76, 13.06),
    "beta_h": (1.74, 2.34),
    "sigma_h": (0.30, 0.45),
    "mu_gamma": (0.90, 1.10),
    "sigma_gamma": (0.15, 0.25),
}

#: Settings of ``--quick`` and of the full default: replicates, galaxies per mock, walkers, steps,
#: burn-in and kept draws L per replicate.
QUICK = dict(replicates=100, n_galaxy=50_000, nwalkers=12, nsteps=300, discard=100, n_draws=19)
FULL = dict(replicates=500, n_galaxy=100_000, nwalkers=16, nsteps=1000, discard=300, n_draws=99)


def sbc_prior(box: Mapping | None = None, fixed: Mapping | None = None):
    """The default SBC prior: :class:`~sl_cy.likelihood.Uniform` on :data:`DEFAULT_SBC_BOX` per
    parameter (``box`` overrides some (lo, hi)); ``fixed`` parameters are held at their values.

    Examples
    --------
    >>> sbc_prior().support("mu_h")
    (12.76, 13.06)
    """
    from sl_cy.likelihood import BoxPrior

    return BoxPrior({**DEFAULT_SBC_BOX, **dict(box or {})}, fixed=fixed)


# --------------------------------------------------------------------------------------------
# drawing from a prior
# --------------------------------------------------------------------------------------------
def _draw_1d(p, rng, n: int, name: str) -> np.ndarray:
    from sl_cy.likelihood import Gaussian, Uniform

    if isinstance(p, Uniform):
        return rng.uniform(p.lo, p.hi, n)
    if isinstance(p, Gaussian):
        from scipy.stats import truncnorm

        a, b = (p.lo - p.mu) / p.sigma, (p.hi - p.mu) / p.sigma
        return truncnorm.ppf(rng.uniform(size=n), a, b, loc=p.mu, scale=p.sigma)
    sup = p.support() if hasattr(p, "support") else None
    if sup is None or not all(math.isfinite(v) for v in sup):
        raise ValueError(f"cannot draw {name} from its prior {p!r}: a callable prior needs a finite support")
    x = np.linspace(sup[0], sup[1], 4097)                # inverse CDF on a fine grid
    lp = np.asarray(p.logpdf(x), dtype=float)
    if not np.isfinite(lp).any():
        raise ValueError(f"the prior of {name} ({p!r}) has no mass on its support {sup}")
    w = np.exp(lp - np.max(lp[np.isfinite(lp)]))
    w = np.where(np.isfinite(w), w, 0.0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(x))])
    return np.interp(rng.uniform(size=n) * cdf[-1], cdf, x)


def prior_draws(prior, n: int, rng) -> np.ndarray:
    """``n`` full eta vectors (n, 6) drawn from a :class:`~sl_cy.likelihood.Prior` (fixed values filled in).

    Uniform and (truncated) Gaussian priors are drawn exactly, a callable prior by the inverse
    CDF on 4097 points of its support. A draw with a sigma <= 0 is drawn again.

    Examples
    --------
    >>> e = prior_draws(sbc_prior(), 1000, np.random.default_rng(0))
    >>> e.shape, bool((e[:, 1] >= 12.76).all() and (e[:, 1] <= 13.06).all())
    ((1000, 6), True)
    """
    n = int(n)
    out = np.empty((n, len(ETA_NAMES)))
    for j, name in enumerate(ETA_NAMES):
        out[:, j] = prior.fixed[name] if name in prior.fixed else _draw_1d(prior.params[name], rng, n, name)
    for _ in range(100):
        bad = np.flatnonzero(~np.isfinite(np.atleast_1d(prior.logpdf(out))))
        if not bad.size:
            return out
        for j, name in enumerate(ETA_NAMES):
            if name not in prior.fixed:
                out[bad, j] = _draw_1d(prior.params[name], rng, bad.size, name)
    raise ValueError(f"draws from {prior!r} keep falling outside its support (e.g. a sigma <= 0)")


# --------------------------------------------------------------------------------------------
# the statistics (pure functions)
# --------------------------------------------------------------------------------------------
def rank_of_truth(draws, truth) -> np.ndarray:
    """Rank of the truth among posterior draws, per parameter: the number of draws below it.

    Parameters
    ----------
    draws : array (L, k)
        L posterior draws of k parameters.
    truth : array (k,)

    Returns
    -------
    int array (k,) in 0..L (uniform on 0..L for a calibrated posterior and independent draws).

    Examples
    --------
    >>> rank_of_truth([[0.1, 5.0], [0.3, 1.0], [0.2, 3.0]], [0.25, 0.0])
    array([2, 0])
    """
    d = np.asarray(draws, dtype=float)
    t = np.asarray(truth, dtype=float)
    if d.ndim != 2 or t.shape != (d.shape[1],):
        raise ValueError(f"draws must be (L, k) and truth (k,), got {d.shape} and {t.shape}")
    return np.sum(d < t[None, :], axis=0).astype(int)


def _n_bins(n_values: int, n_rep: int, max_bins: int = 20) -> int:
    """The largest divisor of the number of rank values (L + 1) <= max_bins with >= 5 expected per bin."""
    best = 1
    for b in range(1, min(max_bins, n_values) + 1):
        if n_values % b == 0 and n_rep / b >= 5:
            best = b
    return best


def sbc_summary(ranks, n_draws: int, *, pit=None, pulls=None, names=None, levels=(0.68, 0.95), n_bins=None,
                alpha: float = 0.01) -> dict:
    """The SBC statistics of a set of replicates: rank histograms, chi^2 uniformity, coverage, pulls.

    Parameters
    ----------
    ranks : int array (n_rep, k)
        Rank of the truth among ``n_draws`` posterior draws (0..n_draws), per replicate and parameter.
    n_draws : int
        L, the draws per replicate.
    pit : array (n_rep, k), optional
        Posterior quantile of the truth (probability integral transform) per replicate; coverage
        uses it when given, else the randomised rank quantile (rank + V) / (L + 1), V ~ U(0, 1)
        drawn from a fixed seed (so the result is a function of the input).
    pulls : array (n_rep, k), optional
        (posterior mean - truth) / posterior sd.
    names : sequence of k str, optional
    levels : sequence of float
        Nominal coverages reported (central intervals).
    n_bins : int, optional
        Histogram bins (default: the largest divisor of L + 1, at most 20, with >= 5 replicates
        expected per bin).
    alpha : float
        Family-wise level of the verdict: a parameter fails when its chi^2 p-value or a coverage
        p-value is below alpha / (number of tests) (Bonferroni over parameters x (1 + len(levels))).

    Returns
    -------
    dict
        ``parameters``: per name ``hist`` (counts), ``chi2``, ``dof``, ``p_value``,
        ``coverage`` {level: fraction}, ``coverage_p`` {level: two-sided binomial p},
        ``pull_mean``, ``pull_sd``, ``ok``; ``band`` (binomial 99 % interval of a bin count),
        ``n_bins``, ``n_replicates``, ``n_draws``, ``coverage_curve`` (nominal levels and the
        empirical coverage per parameter), ``calibrated`` and a one-line ``verdict``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> s = sbc_summary(rng.integers(0, 20, size=(400, 2)), 19, names=["a", "b"])
    >>> s["n_bins"], s["calibrated"]
    (20, True)
    """
    from scipy.stats import binom, binomtest, chi2 as chi2_dist

    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks must be (n_replicates, k), got shape {r.shape}")
    L = int(n_draws)
    if r.size and (r.min() < 0 or r.max() > L):
        raise ValueError(f"ranks must lie in 0..{L}, got {r.min()}..{r.max()}")
    n, k = r.shape
    names = list(names) if names is not None else [f"p{j}" for j in range(k)]
    if pit is None:                  # the randomised PIT of a rank: exactly uniform for a calibrated posterior
        u = (r + np.random.default_rng(0).uniform(size=r.shape)) / (L + 1)
    else:
        u = np.asarray(pit, dtype=float)
    B = _n_bins(L + 1, n) if n_bins is None else int(n_bins)
    if (L + 1) % B:
        raise ValueError(f"n_bins={B} must divide the {L + 1} rank values")
    band = (int(binom.ppf(0.005, n, 1.0 / B)), int(binom.ppf(0.995, n, 1.0 / B))) if n else (0, 0)
    nominal = np.linspace(0.0, 1.0, 51)
    n_tests = max(1, k * (1 + len(levels)))
    thr = alpha / n_tests
    out, curve, failed = {}, {}, []
    for j, name in enumerate(names):
        hist = np.bincount(r[:, j] * B // (L + 1), minlength=B) if n else np.zeros(B, int)
        e = n / B
        chi2 = float(np.sum((hist - e) ** 2 / e)) if n else float("nan")
        p = float(chi2_dist.sf(chi2, B - 1)) if n and B > 1 else float("nan")
        dev = np.abs(u[:, j] - 0.5)
        cov = {f"{lev:g}": float(np.mean(dev <= lev / 2)) if n else float("nan") for lev in levels}
        cov_p = {f"{lev:g}": float(binomtest(int(np.sum(dev <= lev / 2)), n, lev).pvalue) if n else float("nan")
                 for lev in levels}
        curve[name] = [float(np.mean(dev <= q / 2)) if n else float("nan") for q in nominal]
        pm = ps = float("nan")
        if pulls is not None and n:
            pu = np.asarray(pulls, dtype=float)[:, j]
            pm, ps = float(np.mean(pu)), float(np.std(pu, ddof=1)) if n > 1 else float("nan")
        ok = bool(n and (np.isnan(p) or p >= thr) and all(v >= thr for v in cov_p.values()))
        if not ok:
            failed.append(name)
        out[name] = dict(hist=hist.tolist(), chi2=chi2, dof=B - 1, p_value=p, coverage=cov, coverage_p=cov_p,
                         pull_mean=pm, pull_sd=ps, ok=ok)
    calibrated = bool(n) and not failed
    if not n:
        verdict = "no finished replicates"
    elif calibrated:
        pmin = min(v["p_value"] for v in out.values())
        verdict = (f"calibrated: {n} replicates, no parameter fails at the {100 * alpha:g} % family-wise level "
                   f"(chi^2 and coverage p-values vs {thr:.2g}; smallest chi^2 p = {pmin:.3g})")
    else:
        why = "; ".join(f"{m} (chi^2 p = {out[m]['p_value']:.2g}, coverage 68/95 = "
                        + "/".join(f"{100 * c:.0f}" for c in out[m]["coverage"].values()) + " %)" for m in failed)
        verdict = (f"NOT calibrated: {n} replicates; failing at the {100 * alpha:g} % family-wise level "
                   f"(p < {thr:.2g}): {why}")
    return dict(parameters=out, names=names, band=band, band_level=0.99, n_bins=B, n_replicates=n, n_draws=L,
                coverage_curve=dict(nominal=nominal.tolist(), empirical=curve), alpha=alpha, threshold=thr,
                calibrated=calibrated, verdict=verdict)


# --------------------------------------------------------------------------------------------
# one replicate (top-level: runs in worker processes or on a dask cluster)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Replicate:
    index: int
    seed: int
    n_galaxy: int
    mock_kwargs: dict
    prior: object
    nwalkers: int
    nsteps: int
    discard: int
    n_draws: int
    n_threads: int


_SELECTION_MEMO: dict = {}


def _selection(fm, n_threads):
    """The A(eta) quadrature of a forward model, loaded once per process."""
    from sl_cy.selection import selection_for

    A = _SELECTION_MEMO.get(fm.hash)
    if A is None:
        A = _SELECTION_MEMO[fm.hash] = selection_for(fm, n_jobs=1, progress=False)
    A.n_threads = n_threads
    return A


def _stream(seed: int, index: int, k: int) -> int:
    return int(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(k))).generate_state(1)[0])


def _run_replicate(task: _Replicate) -> dict:
    """Simulate, tabulate and sample one replicate; a row of replicates.csv."""
    import emcee

    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.inference import run_mcmc
    from sl_cy.likelihood import Posterior
    from sl_cy.mock import simulate_mock
    from sl_cy.tables import mock_forward_model

    t0, c0 = time.perf_counter(), time.process_time()
    row = dict(index=task.index, status="ok", reason="")
    prior = task.prior
    truth = prior_draws(prior, 1, np.random.default_rng(_stream(task.seed, task.index, 0)))[0]
    names = prior.free_names
    free = [ETA_NAMES.index(n) for n in names]
    row.update({f"true_{n}": float(truth[i]) for n, i in zip(names, free)})
    try:
        mock = simulate_mock(task.n_galaxy, seed=_stream(task.seed, task.index, 1), eta=truth.tolist(),
                             show_progress=False, keep_galaxies=False, **task.mock_kwargs)
        row["n_lenses"] = len(mock.observed)
        if len(mock.observed) < 2:
            raise ValueError(f"the mock has {len(mock.observed)} detected lenses")
        fm = mock_forward_model(mock.config)
        grids = tabulate_likelihood_grids(mock.observed, forward_model=fm, n_jobs=1, show_progress=False)
        post = Posterior(grids, A=_selection(fm, task.n_threads), prior=prior, n_threads=task.n_threads)
        rng = np.random.default_rng(_stream(task.seed, task.index, 2))
        p0 = _start_from_prior(post, task.nwalkers, rng)
        # the stretch move: the replicate chains' length and burn-in were calibrated with it
        s = run_mcmc(post, nwalkers=task.nwalkers, nsteps=task.nsteps, initial_state=p0, progress=False,
                     seed=_stream(task.seed, task.index, 3), nproc=task.n_threads, moves="stretch")
    except (ValueError, FloatingPointError) as exc:          # an unusable replicate is recorded, not fatal
        row.update(status="failed", reason=" ".join(str(exc).split())[:300], wall_s=time.perf_counter() - t0,
                   cpu_s=time.process_time() - c0)
        return row
    kept = s.get_chain(discard=task.discard)                  # (steps, walkers, k)
    with np.errstate(invalid="ignore", divide="ignore"):       # a walker that never moved: tau is NaN
        tau = emcee.autocorr.integrated_time(kept, tol=0)
    tau_max = float(np.max(tau)) if np.all(np.isfinite(tau)) else float("nan")
    thin = max(1, int(math.ceil(tau_max))) if math.isfinite(tau_max) else len(kept)   # else one draw per walker
    pool = kept[::thin].reshape(-1, len(names))
    n_indep = len(pool)
    src = pool if n_indep >= task.n_draws else kept.reshape(-1, len(names))
    draws = src[rng.choice(len(src), task.n_draws, replace=False)]
    ranks = rank_of_truth(draws, truth[free])
    flat = kept.reshape(-1, len(names))
    mean, sd = flat.mean(axis=0), flat.std(axis=0, ddof=1)
    pit = np.mean(flat < truth[free][None, :], axis=0)
    row.update(acceptance=float(np.mean(s.acceptance_fraction)), tau_max=tau_max, n_indep=int(n_indep),
               wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
    for j, n in enumerate(names):
        row.update({f"rank_{n}": int(ranks[j]), f"pit_{n}": float(pit[j]), f"mean_{n}": float(mean[j]),
                    f"sd_{n}": float(sd[j])})
    return row


def _start_from_prior(post, nwalkers: int, rng, max_tries: int = 50) -> np.ndarray:
    """Walker starts drawn from the prior (independent of the truth), each with a finite posterior."""
    p = post.free_theta(prior_draws(post.prior, nwalkers, rng))
    for _ in range(max_tries):
        bad = ~np.isfinite(np.atleast_1d(post(p)))
        if not bad.any():
            return p
        p[bad] = post.free_theta(prior_draws(post.prior, int(bad.sum()), rng))
    raise ValueError(f"no finite log posterior at {int(bad.sum())} of {nwalkers} prior draws: {post.explain(p[bad][0])}")


# --------------------------------------------------------------------------------------------
# replicates.csv
# --------------------------------------------------------------------------------------------
def _columns(names) -> list:
    cols = ["index", "status", "reason", "n_lenses", "acceptance", "tau_max", "n_indep", "wall_s", "cpu_s"]
    cols += [f"true_{n}" for n in names]
    for n in names:
        cols += [f"rank_{n}", f"pit_{n}", f"mean_{n}", f"sd_{n}"]
    return cols


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _read_rows(path: Path, cols: list) -> list:
    """Rows of replicates.csv; a torn or malformed line (a kill mid-write) is dropped and the file
    rewritten without it."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    if header != cols:
        raise ValueError(f"{path} has the columns {header[:6]}..., not those of this configuration")
    rows, good = [], [lines[0]]
    for line in lines[1:]:
        if not line.endswith("\n"):
            continue                                  # torn last line
        vals = next(csv.reader([line]), [])
        if len(vals) != len(cols):
            continue
        rows.append(dict(zip(cols, vals)))
        good.append(line)
    if len(good) != len(lines):
        from sl_cy.io import write_bytes_atomic

        write_bytes_atomic(path, "".join(good).encode())
    return rows


def _append_row(path: Path, cols: list, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(cols)
        w.writerow([_fmt(row.get(c)) for c in cols])
        f.flush()
        os.fsync(f.fileno())


def _table(rows: list, names) -> dict:
    """Arrays of the finished, usable replicates (sorted by index)."""
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: int(r["index"]))
    get = lambda key, typ=float: np.array([[typ(r[f"{key}_{n}"]) for n in names] for r in ok]).reshape(len(ok), len(names))
    truth, mean, sd = get("true"), get("mean"), get("sd")
    return dict(index=[int(r["index"]) for r in ok], ranks=get("rank", int), pit=get("pit"), truth=truth, mean=mean,
                sd=sd, pulls=(mean - truth) / sd, failed=[r for r in rows if r["status"] != "ok"],
                n_lenses=np.array([float(r["n_lenses"]) for r in ok if r["n_lenses"]]),
                n_indep=np.array([int(r["n_indep"]) for r in ok]),
                wall_s=np.array([float(r["wall_s"]) for r in rows if r.get("wall_s")]),
                cpu_s=np.array([float(r["cpu_s"]) for r in rows if r.get("cpu_s")]))


# --------------------------------------------------------------------------------------------
# plots (each on a Figure of its own)
# --------------------------------------------------------------------------------------------
def plot_rank_histograms(summary: dict, path=None):
    """Rank histogram per parameter with the binomial 99 % band of a uniform histogram. Returns the Figure."""
    from sl_cy.inference import LABELS, _figure

    names = summary["names"]
    k = len(names)
    ncol = min(3, k)
    nrow = -(-k // ncol)
    fig = _figure(figsize=(3.6 * ncol, 2.6 * nrow))
    axs = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    B, (lo, hi) = summary["n_bins"], summary["band"]
    for ax, n in zip(axs, names):
        st = summary["parameters"][n]
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(summary["n_replicates"] / B, color="0.5", lw=0.8)
        ax.bar(np.arange(B), st["hist"], width=1.0, color="C0" if st["ok"] else "C3", edgecolor="white")
        ax.set_title(f"{LABELS.get(n, n)}  p = {st['p_value']:.2g}", fontsize=9)
        ax.set_xlabel(f"rank bin ({B} bins of 0..{summary['n_draws']})", fontsize=8)
    for ax in axs[k:]:
        ax.set_visible(False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_coverage(summary: dict, path=None):
    """Empirical versus nominal coverage of central intervals, per parameter, with the binomial 99 %
    band of a calibrated posterior. Returns the Figure."""
    from scipy.stats import binom

    from sl_cy.inference import LABELS, _figure

    cc = summary["coverage_curve"]
    q = np.asarray(cc["nominal"])
    n = max(1, summary["n_replicates"])
    fig = _figure(figsize=(4.8, 4.4))
    ax = fig.subplots()
    ax.fill_between(q, binom.ppf(0.005, n, q) / n, binom.ppf(0.995, n, q) / n, color="0.85", label="99 % band")
    ax.plot([0, 1], [0, 1], color="0.4", lw=0.8)
    for name, emp in cc["empirical"].items():
        ax.plot(q, emp, lw=1.2, label=LABELS.get(name, name))
    ax.set_xlabel("nominal coverage (central interval)")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------
class ValidationInterrupted(KeyboardInterrupt):
    """:func:`validate` was interrupted (Ctrl-C, SIGTERM); its folder is kept, marked ``interrupted``.

    Attributes
    ----------
    continue_with : str
        How many replicates are saved and how to continue (the same call or command).
    """

    def __init__(self, message: str, *, continue_with: str):
        super().__init__(message)
        self.continue_with = continue_with


@dataclass
class ValidationResult:
    """What :func:`validate` returns.

    Attributes
    ----------
    out : Path
        The validation folder.
    summary : dict
        :func:`sbc_summary` of the finished replicates (plus cost figures).
    table : pandas.DataFrame
        One row per parameter: coverage 68/95, chi^2 p-value, mean pull, pull sd.
    files : dict name -> Path
    wall_time_s : float
    """

    out: Path
    summary: dict
    table: object
    files: dict = field(default_factory=dict)
    wall_time_s: float = float("nan")

    def print(self) -> None:
        """Print the table, the verdict and where the files went."""
        s = self.summary
        print(self.table.to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"replicates: {s['n_replicates']} usable, {s['n_failed']} failed; L = {s['n_draws']} draws each; "
              f"{s.get('mean_n_lenses', float('nan')):.0f} lenses on average")
        print(f"verdict: {s['verdict']}")
        for name, p in self.files.items():
            print(f"  {name:<14} {p}")


def _summary_table(summary: dict):
    import pandas as pd

    rows = {}
    for n in summary["names"]:
        st = summary["parameters"][n]
        rows[n] = dict(cov68=st["coverage"]["0.68"], cov95=st["coverage"]["0.95"], chi2_p=st["p_value"],
                       pull_mean=st["pull_mean"], pull_sd=st["pull_sd"])
    return pd.DataFrame.from_dict(rows, orient="index")


def _prior_spec(prior) -> dict:
    from sl_cy.pipeline.config import prior_to_dict

    return dict(params=prior_to_dict(prior), fixed=dict(prior.fixed))


def validate(replicates=None, *, n_galaxy=None, seed=None, out="validation", quick: bool = False, prior=None,
             fixed=None, n_draws=None, nwalkers=None, nsteps=None, discard=None, mock_kwargs: Mapping | None = None,
             n_jobs=-1, executor=None, progress=None, save_plots: bool = True, verbose: bool = False
             ) -> ValidationResult:
    """Simulation-based calibration of the eta posterior for a forward model (``sl-cy validate``).

    Parameters
    ----------
    replicates : int, optional
        Number of replicates (default 500, ``quick``: 100). A folder that holds fewer finished
        replicates is continued up to this number.
    n_galaxy : int, optional
        Galaxies per mock (default 1e5, ~430 lenses; ``quick``: 5e4, ~210 lenses).
    seed : int, optional
        Root seed (default: the folder's recorded seed when continuing, else fresh entropy, recorded).
    out : str or Path
        The validation folder (created, or continued when it holds this configuration).
    quick : bool
        The cheaper settings of :data:`QUICK` (fewer replicates, smaller mocks, shorter chains).
    prior : Prior or mapping, optional
        Prior of the truth and of the inference (default :func:`sbc_prior`, the box
        :data:`DEFAULT_SBC_BOX`).
    fixed : mapping name -> value, optional
        eta components held fixed (not drawn, not sampled).
    n_draws, nwalkers, nsteps, discard : int, optional
        L draws per replicate, emcee walkers and steps, burn-in (defaults :data:`FULL` / :data:`QUICK`).
    mock_kwargs : mapping, optional
        The forward model: keywords of :func:`sl_cy.mock.simulate_mock` (``maximum_magnitude``,
        ``nbkg``, ``zl``, ``zs``, ``model``, ``detection``, ``sigma_m``, ``sigma_star``, ...; not
        ``eta``, which is drawn).
    n_jobs : int
        Replicates run at once in local worker processes (-1: all cores); each uses
        cores // n_jobs threads. Results do not depend on it.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Run the replicates there instead (one thread each).
    progress : bool, optional
        Progress bar over replicates (default: when stderr is a terminal).
    save_plots : bool
        Write ranks.png and coverage.png.
    verbose : bool
        Print the table, verdict and files.

    Returns
    -------
    ValidationResult

    Raises
    ------
    ValueError
        For bad settings, or a folder that holds another configuration (the message names the
        differing entry).
    sl_cy.runs.RunLockedError
        Another process is writing the folder.
    ValidationInterrupted
        On Ctrl-C or SIGTERM (a KeyboardInterrupt): the finished replicates are in
        ``replicates.csv`` and ``metadata.json`` says ``interrupted``; the same call continues.

    Performance
    -----------
    Per replicate: mock and grids ~1-2 s, then nwalkers x nsteps posterior calls at
    ~n_lens x 20 us + ~5 ms (the A(eta) quadrature, most of the cost) each on one core.
    Measured (``replicates.csv`` has ``cpu_s`` per replicate): ``quick`` (~225 lenses, 12 x 300)
    ~30 s of one core per replicate, so 100 replicates ~25 min on two idle cores; the full
    default (~430 lenses, 16 x 1000) ~3-4 min of one core per replicate, ~15 h for 500 on two
    cores. See the README ("Is it calibrated?").

    Examples
    --------
    >>> import tempfile
    >>> r = validate(3, n_galaxy=20_000, nwalkers=12, nsteps=30, discard=10, n_draws=4, seed=1,
    ...              out=tempfile.mkdtemp(), n_jobs=1, save_plots=False)
    >>> r.summary["n_replicates"] + r.summary["n_failed"]
    3
    """
    from sl_cy.forward import ForwardModel
    from sl_cy.io import to_jsonable, write_json_atomic
    from sl_cy.mock import mock_config
    from sl_cy.parallel import available_cores, iter_chunks, resolve_n_jobs
    from sl_cy.pipeline import check_writable
    from sl_cy.pipeline.config import as_prior as _as_prior, check_pos_int as _check_pos_int
    from sl_cy.runs import RunFolder, read_params, utc_now
    from sl_cy.selection import _check_seed
    from sl_cy.tables import mock_forward_model

    t_start = time.perf_counter()
    base = QUICK if quick else FULL
    replicates = _check_pos_int("replicates", base["replicates"] if replicates is None else replicates, 1)
    n_galaxy = _check_pos_int("n_galaxy", base["n_galaxy"] if n_galaxy is None else n_galaxy, 1)
    nwalkers = _check_pos_int("nwalkers", base["nwalkers"] if nwalkers is None else nwalkers, 2)
    nsteps_given = nsteps is not None
    nsteps = _check_pos_int("nsteps", nsteps if nsteps_given else base["nsteps"], 2)
    if discard is None:
        discard = nsteps // 2 if nsteps_given else base["discard"]
    discard = _check_pos_int("discard", discard, 0)
    n_draws = _check_pos_int("n_draws", base["n_draws"] if n_draws is None else n_draws, 1)
    if discard >= nsteps:
        raise ValueError(f"discard ({discard}) must be smaller than nsteps ({nsteps})")
    if n_draws > (nsteps - discard) * nwalkers:
        raise ValueError(f"n_draws ({n_draws}) exceeds the {(nsteps - discard) * nwalkers} samples after burn-in")
    pr = sbc_prior() if prior is None else _as_prior(prior)
    pr = pr.with_fixed(fixed)
    names = list(pr.free_names)
    if nwalkers < 2 * len(names):
        raise ValueError(f"nwalkers must be >= 2 x free parameters = {2 * len(names)}, got {nwalkers}")
    mk = dict(mock_kwargs or {})
    if "eta" in mk:
        raise ValueError("mock_kwargs must not hold 'eta': the truth of each replicate is drawn from the prior")
    workers = resolve_n_jobs(n_jobs)
    out = Path(out)
    folder = RunFolder(out)
    existing = (out / "params.json").exists()
    if existing:
        old = read_params(out)
        if old.get("kind") != VALIDATE_KIND:
            raise ValueError(f"{out} holds something else than an sl-cy validate folder (kind {old.get('kind')!r}); "
                             "choose another --out")
        seed = old["seed"] if seed is None else _check_seed(seed)
    else:
        seed = _check_seed(seed)
    # the forward model (and a check that the options make a valid mock), before anything is written
    cfg, _ = mock_config(n_galaxy, seed=seed, eta=DEFAULT_ETA, **mk)
    fm = mock_forward_model(cfg)
    bad = [n for n in names if not (pr.support(n) and all(math.isfinite(v) for v in pr.support(n)))]
    if bad:
        raise ValueError(f"the prior of {bad} has no finite support to draw the truth from")
    params = dict(kind=VALIDATE_KIND, seed=seed, n_galaxy=n_galaxy, nwalkers=nwalkers, nsteps=nsteps, discard=discard,
                  n_draws=n_draws, prior=_prior_spec(pr), free_names=names, mock_kwargs=mk,
                  forward_model=fm.to_dict(), chunk_size=cfg.get("chunk_size"), sampler="emcee",
                  package_version=__version__)
    if existing:
        from sl_cy.io import canonical_json

        diff = [k for k in params if k not in ("package_version", "mock_kwargs")      # the forward model decides
                and canonical_json(to_jsonable(old.get(k))) != canonical_json(to_jsonable(params[k]))]
        if diff:
            k = diff[0]
            raise ValueError(f"{out} holds another validation configuration ({k}: recorded "
                             f"{canonical_json(to_jsonable(old.get(k)))[:100]}, now "
                             f"{canonical_json(to_jsonable(params[k]))[:100]}); use another --out or the same options")
        folder.lock()
        folder.mark_running(replicates=replicates)
    else:
        check_writable(out.parent if str(out.parent) else ".")
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a validation folder; choose another --out")
        folder = RunFolder.create(out, to_jsonable(params), sim_id="validate", started_utc=utc_now(),
                                  replicates=replicates)
    cols = _columns(names)
    csv_path = out / REPLICATES_CSV
    try:
        _selection(ForwardModel.from_dict(fm.to_dict()), 1)      # build / load the A(eta) table once, here
        rows = _read_rows(csv_path, cols)
        done = {int(r["index"]) for r in rows}
        todo = [i for i in range(replicates) if i not in done]
        threads = 1 if executor is not None else max(1, available_cores() // min(workers, max(1, len(todo))))
        tasks = [_Replicate(i, seed, n_galaxy, mk, pr, nwalkers, nsteps, discard, n_draws, threads) for i in todo]
        if verbose:
            print(f"sl-cy validate: {len(done)} of {replicates} replicates already in {csv_path}; running "
                  f"{len(tasks)} ({n_galaxy} galaxies, {nwalkers} walkers x {nsteps} steps, L = {n_draws})", flush=True)
        for _, row in iter_chunks(_run_replicate, tasks, n_jobs=min(workers, max(1, len(tasks))), executor=executor,
                                  progress=progress, desc="replicates"):
            _append_row(csv_path, cols, row)
            rows.append({c: _fmt(row.get(c)) for c in cols})
        rows = _read_rows(csv_path, cols)
        rows = [r for r in rows if int(r["index"]) < replicates]
        tab = _table(rows, names)
        summary = sbc_summary(tab["ranks"], n_draws, pit=tab["pit"], pulls=tab["pulls"], names=names)
        summary.update(n_failed=len(tab["failed"]), failed=[dict(index=int(r["index"]), reason=r["reason"])
                                                             for r in tab["failed"]],
                       mean_n_lenses=float(np.mean(tab["n_lenses"])) if len(tab["n_lenses"]) else float("nan"),
                       replicate_wall_s_mean=float(np.mean(tab["wall_s"])) if len(tab["wall_s"]) else float("nan"),
                       replicate_cpu_s_mean=float(np.mean(tab["cpu_s"])) if len(tab["cpu_s"]) else float("nan"),
                       seed=seed)
        summary["n_short_chains"] = int(np.sum(tab["n_indep"] < n_draws))
        if summary["n_short_chains"]:
            summary["verdict"] += (f" ({summary['n_short_chains']} replicate(s) had fewer than L = {n_draws} draws "
                                   "spaced by the autocorrelation time: lengthen --nsteps)")
        if summary["n_failed"]:
            summary["verdict"] += f" ({summary['n_failed']} replicate(s) failed and are left out: see replicates.csv)"
        files = {"params.json": out / "params.json", "metadata.json": out / "metadata.json",
                 REPLICATES_CSV: csv_path}
        files[SUMMARY_JSON] = write_json_atomic(out / SUMMARY_JSON, to_jsonable(summary))
        if save_plots and summary["n_replicates"]:
            plot_rank_histograms(summary, out / PLOTS["ranks"])
            plot_coverage(summary, out / PLOTS["coverage"])
            files.update({v: out / v for v in PLOTS.values()})
        folder.mark_complete(replicates=replicates, n_finished=len(rows), verdict=summary["verdict"],
                             wall_time_s=time.perf_counter() - t_start)
    except BaseException as exc:
        from sl_cy.pipeline.sampling import interrupt_reason as _interrupt_reason

        try:
            n_rows = len(_read_rows(csv_path, cols))
        except Exception:                                  # noqa: BLE001 - report the interruption, not this
            n_rows = None
        folder.mark_interrupted(step=n_rows, nsteps=replicates, reason=_interrupt_reason(exc))
        hint = f"{n_rows} of {replicates} replicates are saved in {csv_path}; the same command continues from there"
        if isinstance(exc, KeyboardInterrupt):
            raise ValidationInterrupted(str(exc) or "KeyboardInterrupt", continue_with=hint) from exc
        if hasattr(exc, "add_note"):
            exc.add_note(hint)
        raise
    finally:
        folder.unlock()
    res = ValidationResult(out, summary, _summary_table(summary), files, time.perf_counter() - t_start)
    if verbose:
        res.print()
    return res
