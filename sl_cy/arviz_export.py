"""Results in the ecosystem's format: ArviZ ``InferenceData`` of any run (issue 17).

:func:`to_arviz` turns an emcee sampler of :func:`sl_cy.inference.run_mcmc` or a run folder
``inference/<sim_id>/<run_id>/`` into an :class:`arviz.InferenceData` with

* ``posterior``: one variable per free eta component (``alpha_sps``, ``mu_h``, ...), dims
  ``(chain, draw)`` with chain = emcee walker and draw = kept step (after the burn-in
  ``discard``, thinned to at most ``max_draws`` samples in all);
* ``sample_stats``: ``lp``, the log posterior of each draw;
* ``log_likelihood``: ``lenses`` with dims ``(chain, draw, lens)``, the pointwise (per-lens)
  log-likelihood of each draw, so PSIS-LOO (``az.loo``) and WAIC work. Each lens's term is its
  whole contribution to log L, selection included::

      log L(eta) = sum_i [ log p(d_i, det | eta) - log A(eta) ]      (pointwise term in brackets)

  so the terms add up to :meth:`sl_cy.likelihood.Posterior.log_likelihood` exactly;
* ``observed_data``: the observed table (``xA, xB, logRe, ...``) on the ``lens`` dim;
* attributes: the eta names, the fixed values, the truth of a mock (``truth_<name>`` and a JSON
  ``truth``), discard, thin, sampler and package version.

Every run folder gets ``posterior.nc`` (NetCDF, ``az.from_netcdf`` reads it) when the run ends
(:func:`write_posterior_nc`); ``sl-cy report`` prints ArviZ's summary (R-hat, bulk and tail ESS)
from it beside the package's own.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sl_cy._version import __version__

__all__ = ["POSTERIOR_NC", "DEFAULT_MAX_DRAWS", "to_arviz", "inference_data", "run_inference_data",
           "pointwise_log_likelihood", "write_posterior_nc", "arviz_summary", "add_arviz_columns"]

#: File name of the ArviZ export in a run folder.
POSTERIOR_NC = "posterior.nc"
#: Default cap on the samples (walkers x kept steps) of an export: the per-lens log-likelihood of
#: every kept sample is computed (~n_lens x 20 us per sample on one core).
DEFAULT_MAX_DRAWS = 2000


def _az():
    """arviz, imported without its import-time FutureWarning about the coming refactor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def pointwise_log_likelihood(posterior, theta, *, block: int = 256) -> np.ndarray:
    """Per-lens log-likelihood terms, each with its share of the selection term.

    Parameters
    ----------
    posterior : sl_cy.likelihood.Posterior
    theta : array (n, n_free)
        Free vectors (in ``posterior.free_names`` order).
    block : int
        Draws per kernel call (bounds the memory).

    Returns
    -------
    ndarray (n, n_lens)
        ``log p(d_i, det | eta) - log A(eta)`` (no ``- log A`` when the selection term is off);
        the sum over lenses is ``posterior.log_likelihood(theta)``.

    Performance
    -----------
    n x n_lens x ~20 us on one core (the compiled kernel, OpenMP over draws and lenses) plus one
    A(eta) call per draw.

    Precision
    ---------
    The row sums equal :meth:`sl_cy.likelihood.Posterior.log_likelihood` to rounding (1e-12 relative).

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> from sl_cy.likelihood import Posterior
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> post = Posterior(tabulate_likelihood_grids(obs))
    >>> t = np.array([[0.0, 12.91, 2.04, 0.37, 1.0, 0.2]])
    >>> pw = pointwise_log_likelihood(post, t)
    >>> bool(np.isclose(pw.sum(), post.log_likelihood(t)[0]))
    True
    """
    t = np.atleast_2d(np.asarray(theta, dtype=float))
    e = np.ascontiguousarray(posterior.full_eta(t))
    out = np.empty((len(e), posterior.n_lenses))
    for s in range(0, len(e), max(1, int(block))):
        eb = e[s:s + block]
        pl = np.atleast_2d(posterior.kernel.per_lens(eb))
        if posterior.use_selection:
            pl = pl - posterior._log_A(eb)[:, None]
        out[s:s + len(eb)] = pl
    if not np.all(np.isfinite(out)):
        i, j = np.argwhere(~np.isfinite(out))[0]
        raise FloatingPointError(f"the log-likelihood of lens {j} is {out[i, j]} at eta = {e[i].tolist()}: this draw "
                                 "is outside the support of the posterior")
    return out


def _thin_for(n_steps: int, n_walkers: int, thin, max_draws) -> int:
    if thin is not None:
        thin = int(thin)
        if thin < 1:
            raise ValueError(f"thin must be a positive integer, got {thin}")
        return thin
    max_draws = int(max_draws)
    if max_draws < 1:
        raise ValueError(f"max_draws must be a positive integer, got {max_draws}")
    return max(1, -(-n_steps * n_walkers // max_draws))


def inference_data(chain, log_prob, names, *, posterior=None, discard: int = 0, thin=None,
                   max_draws: int = DEFAULT_MAX_DRAWS, truth: Mapping | None = None, observed=None,
                   attrs: Mapping | None = None):
    """An :class:`arviz.InferenceData` from an emcee chain (the engine of :func:`to_arviz`).

    Parameters
    ----------
    chain : array (n_steps, n_walkers, n_free)
        As ``sampler.get_chain()``.
    log_prob : array (n_steps, n_walkers)
        As ``sampler.get_log_prob()``.
    names : sequence of str
        Free parameter names (eta names).
    posterior : sl_cy.likelihood.Posterior, optional
        The target that was sampled: with it the ``log_likelihood`` group (per lens, selection
        included) and the ``observed_data`` group are added.
    discard : int
        Burn-in steps left out.
    thin : int, optional
        Keep every ``thin``-th step (default: the smallest thinning that keeps at most
        ``max_draws`` samples in all).
    max_draws : int
    truth : mapping name -> value, optional
        Stored in the attributes (``truth_<name>`` and JSON ``truth``).
    observed : DataFrame, optional
        Observed table (default the posterior's grids' observed table).
    attrs : mapping, optional
        More attributes (JSON-able values are stored as JSON strings).

    Returns
    -------
    arviz.InferenceData

    Performance
    -----------
    Dominated by the per-lens log-likelihood: kept samples x n_lens x ~20 us (one core).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> idata = inference_data(rng.normal(size=(40, 8, 2)), rng.normal(size=(40, 8)), ["mu_h", "beta_h"], discard=10)
    >>> idata.posterior["mu_h"].shape
    (8, 30)
    """
    az = _az()
    ch = np.asarray(chain, dtype=float)
    lp = np.asarray(log_prob, dtype=float)
    names = [str(n) for n in names]
    if ch.ndim != 3 or ch.shape[2] != len(names):
        raise ValueError(f"chain must have shape (n_steps, n_walkers, {len(names)}) for {names}, got {ch.shape}")
    if lp.shape != ch.shape[:2]:
        raise ValueError(f"log_prob must have shape {ch.shape[:2]}, got {lp.shape}")
    discard = int(discard)
    if not 0 <= discard < ch.shape[0]:
        raise ValueError(f"discard must be in [0, {ch.shape[0]}) for a chain of {ch.shape[0]} steps, got {discard}")
    thin = _thin_for(ch.shape[0] - discard, ch.shape[1], thin, max_draws)
    ch = ch[discard::thin]
    lp = lp[discard::thin]
    kept = np.arange(discard, discard + len(ch) * thin, thin)
    # arviz layout: (chain, draw, ...) with chain = walker
    post = {n: ch[:, :, j].T.copy() for j, n in enumerate(names)}
    groups = dict(posterior=post, sample_stats=dict(lp=lp.T.copy()))
    coords = dict(draw=kept)
    dims = {}
    at = dict(sl_cy_version=__version__, inference_library="emcee", chain_is="emcee walker",
              eta_names=json.dumps(names), discard=discard, thin=thin,
              pointwise_log_likelihood="log p(d_i, det | eta) - log A(eta) per lens (sums to log L)")
    if posterior is not None:
        if tuple(posterior.free_names) != tuple(names):
            raise ValueError(f"the posterior's free parameters {posterior.free_names} differ from the chain's {names}")
        flat = ch.reshape(-1, len(names))
        pw = pointwise_log_likelihood(posterior, flat)
        groups["log_likelihood"] = dict(lenses=pw.reshape(ch.shape[0], ch.shape[1], -1).transpose(1, 0, 2))
        obs = pd.DataFrame(posterior.kernel.observed if observed is None else observed).reset_index(drop=True)
        if len(obs) != posterior.n_lenses:
            raise ValueError(f"observed has {len(obs)} rows but the posterior has {posterior.n_lenses} lenses")
        od = {c: obs[c].to_numpy() for c in obs.columns if np.asarray(obs[c]).dtype.kind in "fiub"}
        od["lens_index"] = np.arange(len(obs))
        groups["observed_data"] = od
        coords["lens"] = np.arange(len(obs))
        dims.update({c: ["lens"] for c in od})
        dims["lenses"] = ["lens"]
        at.update(fixed=json.dumps(dict(posterior.prior.fixed)), selection=str(bool(posterior.use_selection)),
                  forward_model=json.dumps(posterior.forward_model.to_dict()), n_lenses=int(posterior.n_lenses))
    if truth:
        tr = {k: float(v) for k, v in dict(truth).items()}
        at["truth"] = json.dumps(tr)
        at.update({f"truth_{k}": v for k, v in tr.items()})
    for k, v in dict(attrs or {}).items():
        if isinstance(v, (int, np.integer)) and not -2 ** 63 <= int(v) < 2 ** 63:
            v = str(v)              # e.g. a seed drawn from fresh entropy (128 bits): no HDF5/NetCDF integer holds it
        at[k] = v if isinstance(v, (str, int, float, np.integer, np.floating)) else json.dumps(v, default=str)
    with warnings.catch_warnings():          # "more chains than draws": the layout is (walker, draw) by construction
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.from_dict(**groups, coords=coords, dims=dims, attrs=at)


def to_arviz(source, *, posterior=None, discard=None, thin=None, max_draws: int = DEFAULT_MAX_DRAWS, truth=None,
             rebuild: bool = False):
    """Export an emcee run or a run folder to :class:`arviz.InferenceData`.

    Parameters
    ----------
    source : emcee.EnsembleSampler, or str / Path of a run folder
        A sampler of :func:`sl_cy.inference.run_mcmc` (it carries its ``posterior``), or a run
        folder ``inference/<sim_id>/<run_id>`` (its ``posterior.nc`` is read when present; else
        the chain is read from ``chain.h5`` and the posterior rebuilt from ``params.json`` and
        the tables under ``data/``).
    posterior : sl_cy.likelihood.Posterior, optional
        The target, when the sampler does not carry it (for the per-lens log-likelihood).
    discard : int, optional
        Burn-in steps left out (default: a run folder's recorded ``discard``; a quarter of a
        sampler's steps).
    thin, max_draws : int, optional
        As in :func:`inference_data`.
    truth : mapping name -> value, optional
        The true eta (a run folder of a mock supplies its own).
    rebuild : bool
        For a run folder: build the export again from the chain even if ``posterior.nc`` exists.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``sample_stats`` (``lp``), ``log_likelihood`` (``lenses``, per lens)
        and ``observed_data``; ``az.loo(idata)`` and ``az.summary(idata)`` work on it.

    Performance
    -----------
    Kept samples (<= ``max_draws``) x n_lens x ~20 us for the per-lens log-likelihood; reading
    ``posterior.nc`` takes milliseconds.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> from sl_cy.inference import run_mcmc
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> s = run_mcmc(tabulate_likelihood_grids(obs), nwalkers=12, nsteps=8, progress=False, seed=1)
    >>> idata = to_arviz(s)
    >>> sorted(idata.groups())
    ['log_likelihood', 'observed_data', 'posterior', 'sample_stats']
    """
    if isinstance(source, (str, Path)):
        d = Path(source)
        nc = d / POSTERIOR_NC
        if nc.exists() and not rebuild and posterior is None and discard is None and thin is None:
            return _az().from_netcdf(str(nc))
        return _run_folder_idata(d, posterior=posterior, discard=discard, thin=thin, max_draws=max_draws)
    if not hasattr(source, "get_chain"):
        raise TypeError(f"to_arviz needs an emcee sampler or a run folder path, got {type(source).__name__}")
    post = posterior if posterior is not None else getattr(source, "posterior", None)
    names = getattr(source, "param_names", None) or (post.free_names if post is not None else None)
    chain = source.get_chain()
    if names is None:
        names = [f"p{i}" for i in range(chain.shape[2])]
    disc = chain.shape[0] // 4 if discard is None else int(discard)
    return inference_data(chain, source.get_log_prob(), names, posterior=post, discard=disc, thin=thin,
                          max_draws=max_draws, truth=truth)


def _run_folder_idata(d: Path, *, posterior=None, discard=None, thin=None, max_draws=DEFAULT_MAX_DRAWS):
    """The export of a run folder from its chain (posterior rebuilt from params.json if not given)."""
    from sl_cy.pipeline import run_posterior
    from sl_cy.runs import read_params

    params = read_params(d)
    if posterior is None:
        posterior = run_posterior(d)
    return run_inference_data(d, params, posterior, discard=discard, thin=thin, max_draws=max_draws)


def run_inference_data(run_dir, params: Mapping, posterior, *, discard=None, thin=None,
                       max_draws: int = DEFAULT_MAX_DRAWS, observed=None):
    """The :class:`arviz.InferenceData` of a run folder's ``chain.h5`` with its ``params.json`` and
    the Posterior it sampled (what ``posterior.nc`` holds).

    Parameters
    ----------
    run_dir : str or Path
    params : mapping
        The folder's ``params.json`` (free names, discard, truth, ids).
    posterior : Posterior or None
        None leaves out the ``log_likelihood`` and ``observed_data`` groups.
    discard, thin, max_draws, observed :
        As in :func:`inference_data` (default discard: the recorded one; default observed: the
        posterior kernel's table).

    Returns
    -------
    arviz.InferenceData
    """
    import emcee

    chain_file = Path(run_dir) / "chain.h5"
    if not chain_file.exists():
        raise FileNotFoundError(f"no chain at {chain_file}")
    be = emcee.backends.HDFBackend(str(chain_file), name="mcmc", read_only=True)
    chain, lp = be.get_chain(), be.get_log_prob()
    disc = min(int(params["discard"]) if discard is None else int(discard), chain.shape[0] - 1)
    observed = None
    if posterior is not None and len(getattr(posterior.kernel, "observed", ())) != posterior.n_lenses:
        import h5py                              # a sharded kernel (dask) keeps the lens table on the workers

        from sl_cy.io import read_dataframe

        with h5py.File(params["grids"]["file"], "r") as f:
            observed = read_dataframe(f["observed"])
    return inference_data(chain, lp, params["free_names"], posterior=posterior, discard=disc, thin=thin,
                          max_draws=max_draws, truth=params.get("truth"), observed=observed,
                          attrs=dict(sim_id=params.get("sim_id"), run_id=params.get("run_id"), seed=params.get("seed")))


def add_arviz_columns(table: pd.DataFrame, idata) -> pd.DataFrame:
    """``table`` (one row per parameter) with ArviZ's ``ess_bulk``, ``ess_tail`` and ``r_hat`` joined.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> idata = inference_data(rng.normal(size=(100, 4, 1)), rng.normal(size=(100, 4)), ["mu_h"])
    >>> list(add_arviz_columns(pd.DataFrame({"median": [0.0]}, index=["mu_h"]), idata).columns)
    ['median', 'ess_bulk', 'ess_tail', 'r_hat']
    """
    az_t = arviz_summary(idata)[["ess_bulk", "ess_tail", "r_hat"]]
    out = table.drop(columns=[c for c in az_t.columns if c in table.columns])
    return out.join(az_t)


def write_posterior_nc(run_dir, idata) -> Path:
    """Write ``posterior.nc`` into a run folder atomically (temporary file, then rename).

    Parameters
    ----------
    run_dir : str or Path
    idata : arviz.InferenceData

    Returns
    -------
    Path of ``posterior.nc``.

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> idata = inference_data(rng.normal(size=(20, 4, 1)), rng.normal(size=(20, 4)), ["mu_h"])
    >>> write_posterior_nc(tempfile.mkdtemp(), idata).name
    'posterior.nc'
    """
    p = Path(run_dir) / POSTERIOR_NC
    tmp = p.with_name("." + p.name + ".tmp")
    try:
        idata.to_netcdf(str(tmp))
        tmp.replace(p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def arviz_summary(idata) -> pd.DataFrame:
    """ArviZ's summary of the posterior: mean, sd, HDI, MCSE, ``ess_bulk``, ``ess_tail``, ``r_hat``.

    R-hat across emcee walkers is a rough guide (the walkers of an ensemble are not independent
    chains); the bulk and tail ESS are the useful numbers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> idata = inference_data(rng.normal(size=(200, 4, 1)), rng.normal(size=(200, 4)), ["mu_h"])
    >>> list(arviz_summary(idata).columns)[-3:]
    ['ess_bulk', 'ess_tail', 'r_hat']
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return _az().summary(idata, var_names=list(idata.posterior.data_vars))
