"""Inference of eta: emcee sampling (HDF5 backend, resume, vectorised walkers), summaries,
convergence diagnostics, posterior on a grid, and plots.

The target is a :class:`sl_cy.likelihood.Posterior` (log prior + sum_i log p(d_i | eta)
- N log A(eta)) on the FREE parameters, in ETA_NAMES order without the fixed ones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sl_cy.likelihood import Posterior, Prior, use_selection_flag
from sl_cy.parallel import process_pool
from sl_cy.population import DEFAULT_ETA, ETA_NAMES

__all__ = [
    "run_mcmc", "initial_ball", "map_search", "map_start", "emcee_moves", "STARTS", "DEFAULT_START",
    "DEFAULT_MOVES", "MOVES", "get_mle_params", "find_map", "credible_intervals", "get_param_covariance_from_chain",
    "convergence_report", "GridPosterior", "grid_posterior", "save_grid_posterior_hdf5", "plot_corner", "plot_traces",
    "plot_log_prob", "LABELS",
]

#: LaTeX labels of the parameters (plots).
LABELS = {
    "alpha_sps": r"$\alpha_{\rm sps}$", "mu_h": r"$\mu_h$", "beta_h": r"$\beta_h$", "sigma_h": r"$\sigma_h$",
    "mu_gamma": r"$\mu_\gamma$", "sigma_gamma": r"$\sigma_\gamma$",
}


def _as_posterior(grids, A=None, prior=None, fixed=None, use_selection=True) -> Posterior:
    if isinstance(grids, Posterior):
        if A is not None or prior is not None or fixed:
            raise ValueError("pass A/prior/fixed to the Posterior, not to run_mcmc, when giving a Posterior")
        return grids
    return Posterior(grids, A=A, prior=prior, fixed=fixed, use_selection=use_selection)


def initial_ball(posterior: Posterior, nwalkers: int, *, initial_guess=None, seed=None, scale: float = 1e-3,
                 max_tries: int = 100) -> np.ndarray:
    """Walker starting points: a small Gaussian ball inside the prior support, all with finite
    log posterior.

    Parameters
    ----------
    posterior : Posterior
    nwalkers : int
    initial_guess : array, optional
        Centre: the free vector (n_free,) or a full eta (6,); default the default-mock truth,
        moved to the middle of the prior support when it lies outside.
    seed : int, optional
    scale : float
        Ball radius as a fraction of each parameter's prior width.

    Returns
    -------
    (nwalkers, n_free) array

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> post = Posterior(tabulate_likelihood_grids(obs), use_selection=False)
    >>> initial_ball(post, 12, seed=0).shape
    (12, 6)
    """
    names = posterior.free_names
    sup = [posterior.prior.support(n) or (-np.inf, np.inf) for n in names]
    lo = np.array([s[0] for s in sup], float)
    hi = np.array([s[1] for s in sup], float)
    if initial_guess is None:
        x0 = np.array([getattr(DEFAULT_ETA, n) for n in names], float)
    else:
        g = np.asarray(initial_guess, float).ravel()
        if len(g) == 6 and posterior.ndim != 6:
            g = posterior.free_theta(g)
        if len(g) != posterior.ndim:
            raise ValueError(f"initial_guess needs {posterior.ndim} values {names} (or 6), got {len(g)}")
        x0 = g
    width = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    mid = np.where(np.isfinite(lo + hi), 0.5 * (lo + hi), x0)
    outside = ~((x0 > lo) & (x0 < hi))
    x0 = np.where(outside, mid, x0)
    rng = np.random.default_rng(seed)
    eps = 1e-9 * width
    draw = lambda k: np.clip(x0 + scale * width * rng.standard_normal((k, len(x0))), lo + eps, hi - eps)  # noqa: E731
    p, bad = _redraw_until_finite(posterior, draw(nwalkers), draw, max_tries)
    if bad.all():
        why = posterior.explain(p[0]) if hasattr(posterior, "explain") else ""
        raise ValueError(f"no starting walker has a finite log posterior (centre {dict(zip(names, x0.tolist()))}): "
                         f"{why or 'the log posterior is -inf there'}. Give an initial_guess inside the prior and the "
                         "selection normaliser's bounds")
    return p


def _redraw_until_finite(posterior, p, draw, max_tries: int):
    """Replace the walkers of ``p`` whose log posterior is -inf by ``draw(k)`` (k new walkers), up to
    ``max_tries`` rounds; returns ``p`` and the mask of the walkers still at -inf."""
    for _ in range(max_tries):
        bad = ~np.isfinite(np.atleast_1d(posterior(p)))
        if not bad.any():
            return p, bad
        p[bad] = draw(int(bad.sum()))
    return p, ~np.isfinite(np.atleast_1d(posterior(p)))


#: Named emcee move sets (:func:`emcee_moves`; ``run_mcmc(moves=...)``, ``RunConfig.moves``).
MOVES = ("stretch", "de")
#: Default moves of :func:`run_mcmc` and ``sl-cy run``: ``"de"`` = DEMove 0.8 + DESnookerMove 0.2.
DEFAULT_MOVES = "de"
#: Walker starts of :func:`run_mcmc` and ``sl-cy run``: ``"map"`` = draws of the Laplace
#: approximation at the MAP (:func:`map_start`); ``"ball"`` = the small ball around
#: ``initial_guess`` (or the default-mock truth) of :func:`initial_ball`.
STARTS = ("map", "ball")
DEFAULT_START = "map"


def emcee_moves(moves):
    """The emcee moves of a name.

    Parameters
    ----------
    moves : {"stretch", "de"}, None, or emcee moves
        ``"stretch"`` (or None): emcee's default affine-invariant stretch move. ``"de"``:
        differential evolution, 80 % ``DEMove`` + 20 % ``DESnookerMove`` (ter Braak & Vrugt 2008;
        the mix emcee's documentation suggests for correlated posteriors): its jumps follow the
        differences between walkers, i.e. the posterior's degenerate directions. Anything else
        (an emcee move, or a list of (move, weight)) is passed through.

    Returns
    -------
    None (emcee's default) or a list of (move, weight)

    Examples
    --------
    >>> [type(m).__name__ for m, _ in emcee_moves("de")]
    ['DEMove', 'DESnookerMove']
    >>> emcee_moves("stretch") is None
    True
    """
    import emcee

    if moves is None or (isinstance(moves, str) and moves == "stretch"):
        return None
    if isinstance(moves, str):
        if moves == "de":
            return [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]
        raise ValueError(f"moves must be one of {MOVES} or emcee moves, got {moves!r}")
    return moves


def map_start(posterior: Posterior, nwalkers: int, *, initial_guess=None, seed=None, scale: float = 1.0,
              max_tries: int = 100):
    """Walker starting points drawn from the Laplace approximation of the posterior at its MAP.

    The MAP comes from :func:`map_search` (L-BFGS-B with the analytic gradient from the best of
    ``initial_guess`` -- default the default-mock truth, as :func:`initial_ball` -- and quasi-random
    probes of the box, restarted where it stops at a saddle; seconds); the covariance is the
    inverse Hessian there (:func:`sl_cy.samplers.laplace_hessian`). The walkers are ``nwalkers``
    Gaussian draws of that covariance times ``scale**2``, kept inside the prior support and redrawn
    where the log posterior is -inf. An ensemble that already spans the posterior needs almost no
    burn-in, and the ensemble moves start with the right scales along the degenerate directions.
    Without analytic gradients (:attr:`Posterior.has_grad` False) the MAP is found by Nelder-Mead
    and the walkers start in the small ball of :func:`initial_ball` around it.

    Parameters
    ----------
    posterior : Posterior
    nwalkers : int
    initial_guess : array, optional
        Start of the MAP search (free vector or full eta).
    seed : int, optional
        Seeds the draws (the MAP itself is deterministic).
    scale : float
        Width of the start in units of the Laplace standard deviations.

    Returns
    -------
    p0 : (nwalkers, n_free) array
    info : dict
        ``map`` (free vector, list), ``log_post``, ``success``, ``nfev``, ``method``, ``starts``
        (L-BFGS-B runs of :func:`map_search`), ``sd`` (the Laplace standard deviations, list;
        None without a gradient), ``scale``, ``seconds``.

    Performance
    -----------
    ~100 gradient evaluations (1 posterior point each) + 2 x n_free for the Hessian: ~2-3 s for
    400 lenses on two idle cores (10-26 s measured under load). Without gradients (the bank
    engine) Nelder-Mead takes ~1000-3000 evaluations.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> post = Posterior(tabulate_likelihood_grids(obs))
    >>> p0, info = map_start(post, 12, seed=0)
    >>> p0.shape, bool(np.isfinite(post(p0)).all()), len(info["map"])
    ((12, 6), True, 6)
    """
    import time
    import warnings

    from sl_cy.samplers import _bounds_arrays, _proposal_cov

    t0 = time.perf_counter()
    if not posterior.has_grad:
        x0 = initial_ball(posterior, 1, initial_guess=initial_guess, scale=0.0)[0]
        m = find_map(posterior, x0)
    else:
        m = map_search(posterior, initial_guess=initial_guess)
    xmap = np.asarray(m["x"], float)
    info = dict(map=xmap.tolist(), log_post=float(m["log_post"]), success=bool(m["success"]), nfev=int(m["nfev"]),
                method=m["method"], sd=None, scale=float(scale), starts=len(m.get("starts", [None])))
    if not posterior.has_grad:
        p0 = initial_ball(posterior, nwalkers, initial_guess=xmap, seed=seed)
        info["seconds"] = time.perf_counter() - t0
        return p0, info
    lo, hi = _bounds_arrays(posterior)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a floored eigenvalue only widens the start
        cov = _proposal_cov(m["hessian"], lo, hi) * float(scale) ** 2
    info["sd"] = np.sqrt(np.diag(cov)).tolist()
    width = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    eps = 1e-9 * width
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov)
    draw = lambda k: np.clip(xmap + rng.standard_normal((k, len(xmap))) @ chol.T, lo + eps, hi - eps)  # noqa: E731
    p, bad = _redraw_until_finite(posterior, draw(nwalkers), draw, max_tries)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {nwalkers} walkers drawn around the MAP "
                         f"{dict(zip(posterior.free_names, info['map']))} have log posterior -inf: "
                         f"{posterior.explain(p[bad][0])}")
    info["seconds"] = time.perf_counter() - t0
    return p, info


def run_mcmc(grids, *, nwalkers: int = 32, nsteps: int = 2000, initial_guess=None, backend_file=None,
             parallel: bool = False, nproc: int | None = None, use_selection: bool | None = None, eta: bool | None = None,
             vectorize: bool = True,
             resume: bool = False, progress: bool = True, seed=None, A=None, prior: Prior | None = None,
             fixed: Mapping | None = None, backend_name: str = "mcmc", backend=None, initial_state=None,
             start: str = DEFAULT_START, moves=DEFAULT_MOVES):
    """Sample the posterior of eta with emcee (seed name).

    Parameters
    ----------
    grids : list of LensGrid, stacked dict, LikelihoodKernel or Posterior
    nwalkers : int
        Walkers (>= 2 n_free).
    nsteps : int
        TOTAL number of steps of the chain (with ``resume=True`` the chain is continued up to
        ``nsteps``, not by ``nsteps`` more).
    initial_guess : array, optional
        Centre of the starting ball (free vector or full eta; :func:`initial_ball`), or with
        ``start="map"`` the start of the MAP search.
    backend_file : str or Path, optional
        emcee HDF5 backend (group ``backend_name``): every step is written as it is made.
    parallel, nproc : bool, int
        With ``vectorize=True`` the compiled kernel is already multi-threaded over walkers and
        lenses: ``nproc`` sets its threads and no pool is used. With ``vectorize=False`` a
        process pool of ``nproc`` workers (None: all cores) evaluates the walkers; it is the
        ``spawn`` pool of :func:`sl_cy.parallel.process_pool`, as everywhere in sl_cy.
    use_selection : bool
        Include the selection term (default; False = the seed's ``--no-eta``, biased). ``eta=`` is
        accepted as its alias (the seed's name here).
    vectorize : bool
        One posterior call per step with all walkers (``EnsembleSampler(vectorize=True)``).
    resume : bool
        Continue the chain stored in ``backend_file`` (same nwalkers and free parameters);
        without a stored chain it starts afresh. The random state is restored from the backend,
        so an interrupted-and-resumed chain equals an uninterrupted one of the same seed. A file
        that exists but cannot be read is refused (ValueError), never overwritten.
    progress : bool
        tqdm progress bar.
    seed : int, optional
        Seeds the starting ball and the sampler's random state.
    A : Selection, optional
        Selection normaliser (default: the deterministic quadrature of the grids' forward model,
        :func:`sl_cy.selection.selection_for`).
    prior : Prior, optional
        Default :func:`sl_cy.likelihood.BoxPrior`.
    fixed : mapping, optional
        Fixed parameters {name: value}.
    backend : emcee backend, optional
        Use this backend instead of ``backend_file`` (e.g. the crash-safe
        :class:`sl_cy.chainstore.JournaledHDFBackend` of the pipeline's run folders).
    initial_state : array (nwalkers, n_free), optional
        Starting positions of the walkers instead of the ball of :func:`initial_ball` (e.g. draws
        from the prior, as :func:`sl_cy.sbc.validate` does, or of :func:`map_start`); each must have
        a finite log posterior. Overrides ``start``.
    start : {"map", "ball"}
        Where the walkers start (:data:`STARTS`): ``"map"`` (default) draws them from the Laplace
        approximation at the MAP (:func:`map_start`: L-BFGS-B with the analytic gradient, seconds),
        so the chain begins in the posterior's bulk and needs little burn-in (the pipeline
        discards ``nsteps // 10``); ``"ball"``: a small ball around ``initial_guess``
        (:func:`initial_ball`; discard a quarter or more).
    moves : {"stretch", "de"} or emcee moves
        The ensemble moves (:func:`emcee_moves`; default ``"de"``: differential evolution, whose
        autocorrelation time on this posterior's mu_h-sigma_h-mu_gamma degeneracy is ~2.5x shorter
        than the stretch move's; None or ``"stretch"``: emcee's stretch move). A resumed chain
        continues with the moves given now: pass those it was started with to reproduce an
        uninterrupted chain bit for bit (the pipeline records them in params.json).

    Returns
    -------
    emcee.EnsembleSampler
        ``sampler.posterior`` is the :class:`Posterior`, ``sampler.param_names`` the free names.

    Performance
    -----------
    Per step: one kernel call, ~n_lens x nwalkers x 20-30 us on one core with the default
    adaptive grids (~1100 points per lens; the default ``sl-cy run``, 429 lenses x 16 walkers:
    0.16 s per step on two idle cores). A MAP start adds ~30-100 gradient evaluations and
    2 x n_free for its Hessian (~2-3 s for 400 lenses).

    Precision
    ---------
    Monte-Carlo: check :func:`convergence_report` (chain length > 50 autocorrelation times).

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> grids = tabulate_likelihood_grids(obs)
    >>> s = run_mcmc(grids, nwalkers=12, nsteps=5, progress=False, seed=1)
    >>> s.get_chain().shape
    (5, 12, 6)
    """
    import emcee

    post = _as_posterior(grids, A=A, prior=prior, fixed=fixed, use_selection=use_selection_flag(use_selection, eta=eta))
    mv = emcee_moves(moves)
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    ndim = post.ndim
    nsteps = int(nsteps)
    if nwalkers < 2 * ndim:
        raise ValueError(f"nwalkers must be >= 2 * n_free = {2 * ndim}, got {nwalkers}")
    if backend is None and backend_file is not None:
        Path(backend_file).parent.mkdir(parents=True, exist_ok=True)
        backend = emcee.backends.HDFBackend(str(backend_file), name=backend_name)
    if backend is not None:
        done = _stored_steps(backend) if resume else 0
        if resume and done > 0:
            if backend.shape != (nwalkers, ndim):
                raise ValueError(f"cannot resume: the backend holds a chain of shape {backend.shape} "
                                 f"(walkers, params), requested ({nwalkers}, {ndim})")
        else:
            backend.reset(nwalkers, ndim)
            done = 0
    else:
        done = 0
    pool = None
    if vectorize:
        if nproc:
            post.kernel.n_threads = int(nproc)
    elif parallel:
        pool = process_pool(-1 if nproc is None else int(nproc), post)   # spawn, like every pool of sl_cy
    try:
        sampler = emcee.EnsembleSampler(nwalkers, ndim, post, vectorize=vectorize, backend=backend, pool=pool,
                                        moves=mv)
        # call the posterior directly: emcee's wrapper prints a traceback for any exception, also for
        # the KeyboardInterrupt of a Ctrl-C or SIGTERM (it only adds args/kwargs, which are empty here)
        sampler.log_prob_fn = post
        sampler.posterior = post
        sampler.param_names = post.free_names
        remaining = nsteps - done
        if done > 0:
            if remaining > 0:          # an uninterrupted chain is not checked again at this step either
                sampler.run_mcmc(None, remaining, progress=progress, skip_initial_state_check=True)
        elif remaining > 0:
            if initial_state is None and start == "map":
                p0, _ = map_start(post, nwalkers, initial_guess=initial_guess, seed=seed)
            elif initial_state is None:
                p0 = initial_ball(post, nwalkers, initial_guess=initial_guess, seed=seed)
            else:
                p0 = np.array(initial_state, dtype=float)
                if p0.shape != (nwalkers, ndim):
                    raise ValueError(f"initial_state must have shape ({nwalkers}, {ndim}), got {p0.shape}")
                bad = ~np.isfinite(np.atleast_1d(post(p0)))
                if bad.any():
                    raise ValueError(f"initial_state row {int(np.flatnonzero(bad)[0])} has log posterior -inf: "
                                     f"{post.explain(p0[bad][0])}")
            rs = np.random.RandomState(seed).get_state() if seed is not None else None
            sampler.run_mcmc(emcee.State(p0, random_state=rs), remaining, progress=progress)
    except BaseException:
        if pool is not None:           # Ctrl-C or an error: do not wait for the workers' evaluations
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return sampler


def _stored_steps(backend) -> int:
    """Steps stored in a backend (0 when it holds none); an existing file that cannot be read raises."""
    import os

    fn = getattr(backend, "filename", None)
    if fn is None:                                      # an in-memory backend
        return int(backend.iteration) if backend.initialized else 0
    if not os.path.exists(fn):
        return 0
    import h5py

    try:
        with h5py.File(fn, "r") as f:
            if backend.name not in f:
                return 0
            return int(f[backend.name].attrs["iteration"])
    except (OSError, KeyError) as err:
        raise ValueError(f"cannot resume: {fn} exists but cannot be read ({' '.join(str(err).split())}); it is "
                         "left untouched (sl_cy.chainstore.recover_chain rebuilds a run folder's chain from its "
                         "journal)") from err


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
def get_mle_params(flat_chain) -> np.ndarray:
    """Posterior median of each parameter (seed name; a robust point estimate).

    Examples
    --------
    >>> get_mle_params(np.arange(10.0).reshape(5, 2))
    array([4., 5.])
    """
    return np.median(np.asarray(flat_chain, float), axis=0)


def find_map(posterior, x0, method: str | None = None, **options) -> dict:
    """Maximum a posteriori by scipy.optimize.minimize on -log posterior.

    Parameters
    ----------
    posterior : Posterior or callable
        log posterior of a free vector. A :class:`Posterior` with analytic gradients
        (:attr:`Posterior.has_grad`) is maximised by L-BFGS-B with its exact gradient
        (:meth:`Posterior.log_prob_and_grad`) within :meth:`Posterior.bounds`.
    x0 : array
        Start (inside the prior support).
    method : str, optional
        scipy method. Default: "L-BFGS-B" when the gradient exists, else "Nelder-Mead" (the
        posterior is -inf outside the prior box).
    **options
        scipy ``options`` (override the defaults: L-BFGS-B ftol 1e-14, gtol 1e-7; Nelder-Mead
        xatol 1e-6, fatol 1e-8).

    Returns
    -------
    dict
        ``x`` (MAP), ``log_post``, ``success``, ``message``, ``nfev``, ``method``; with L-BFGS-B
        also ``grad`` (the gradient at the MAP).

    Performance
    -----------
    L-BFGS-B: ~20-60 gradient evaluations (each ~1.7 posterior evaluations); Nelder-Mead on 6
    parameters: ~1000-3000 evaluations.

    Examples
    --------
    >>> r = find_map(lambda x: -0.5 * float(np.sum((np.asarray(x) - 1.0) ** 2)), [0.0, 0.0])
    >>> np.round(r["x"], 3)
    array([1., 1.])
    """
    from scipy.optimize import minimize

    grad_ok = isinstance(posterior, Posterior) and posterior.has_grad
    if method is None:
        method = "L-BFGS-B" if grad_ok else "Nelder-Mead"
    x0 = np.asarray(x0, float)
    if method == "L-BFGS-B" and grad_ok:
        def fg(x):
            v, g = posterior.log_prob_and_grad(np.asarray(x, float))
            if not np.isfinite(v):
                return 1e300, np.zeros_like(x)
            return -v, -g

        opts = dict(ftol=1e-14, gtol=1e-7, maxiter=2000, maxcor=20)
        opts.update(options)
        res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=posterior.bounds(), options=opts)
        return dict(x=np.asarray(res.x), log_post=-float(res.fun), success=bool(res.success),
                    message=str(res.message), nfev=int(res.nfev), method="L-BFGS-B", grad=-np.asarray(res.jac))

    def f(x):
        v = float(np.asarray(posterior(np.asarray(x, float))).reshape(-1)[0])
        return 1e300 if not np.isfinite(v) else -v

    opts = dict(xatol=1e-6, fatol=1e-8, maxiter=20000, maxfev=20000) if method == "Nelder-Mead" else {}
    opts.update(options)
    res = minimize(f, x0, method=method, options=opts)
    return dict(x=np.asarray(res.x), log_post=-float(res.fun), success=bool(res.success), message=str(res.message),
                nfev=int(res.nfev), method=method)


def map_search(posterior: Posterior, *, initial_guess=None, n_probe: int = 32, max_starts: int = 4) -> dict:
    """The MAP, robust to local optima: L-BFGS-B (:func:`find_map`) from the best of several starts.

    1. ``initial_guess`` (default the default-mock truth, as :func:`initial_ball`) and
       ``n_probe - 1`` scrambled-Halton points of the bounded box (5 %-95 % of each range; fixed
       sequence, so the result is deterministic) are evaluated in one batched call;
    2. L-BFGS-B from the best of them; the Hessian at the optimum
       (:func:`sl_cy.samplers.laplace_hessian`) decides whether it is a maximum;
    3. if it is not negative definite (a saddle or a ridge, where L-BFGS-B also stops), L-BFGS-B
       again from the next-best probe, up to ``max_starts`` runs; the highest maximum found wins.

    Why: the 6-D posterior has stationary points away from its mode. From the default-mock truth,
    L-BFGS-B on a mock at the steep, massive truth (-0.1, 13.2, 2.5, 0.5, 1.4, 0.15; 538 lenses)
    stopped "successfully" at mu_gamma 0.83, sigma_gamma 0.41 with a log posterior 105 below the
    mode and an indefinite Hessian; the four best quasi-random probes all reach the mode.

    Parameters
    ----------
    posterior : Posterior
        With analytic gradients (:attr:`Posterior.has_grad`).
    initial_guess : array, optional
        Free vector or full eta; one of the probes.
    n_probe : int
        Points evaluated to choose the starts (>= 1; 1 = only ``initial_guess``).
    max_starts : int
        L-BFGS-B runs at most.

    Returns
    -------
    dict
        As :func:`find_map` (``x``, ``log_post``, ``success``, ``message``, ``method``, ``grad``),
        with ``nfev`` summed over the probes, runs and Hessians, ``hessian`` (at ``x``),
        ``maximum`` (the Hessian is negative definite) and ``starts`` (one entry per run: start,
        optimum, log posterior, maximum).

    Performance
    -----------
    ``n_probe`` evaluations in one batch + ~20-50 gradient evaluations per run + 24 for each
    Hessian; one run in the usual case: ~2-3 s for 400 lenses on two idle cores.

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> m = map_search(Posterior(tabulate_likelihood_grids(obs)))
    >>> m["maximum"], len(m["starts"]), m["x"].shape
    (True, 1, (6,))
    """
    from scipy.stats import qmc

    from sl_cy.samplers import _bounds_arrays, laplace_hessian

    n_probe, max_starts = int(n_probe), int(max_starts)
    if n_probe < 1 or max_starts < 1:
        raise ValueError(f"n_probe and max_starts must be >= 1, got {n_probe}, {max_starts}")
    x0 = initial_ball(posterior, 1, initial_guess=initial_guess, scale=0.0)[0]
    lo, hi = _bounds_arrays(posterior)
    box = np.isfinite(lo) & np.isfinite(hi)
    probes = np.repeat(x0[None, :], n_probe, axis=0)
    if n_probe > 1:
        u = qmc.Halton(len(x0), scramble=True, seed=0).random(n_probe - 1)
        probes[1:] = np.where(box, lo + (0.05 + 0.9 * u) * np.where(box, hi - lo, 0.0), x0)
    v = np.atleast_1d(posterior(probes))
    nfev = n_probe
    best, runs = None, []
    for i in np.argsort(-np.where(np.isfinite(v), v, -np.inf), kind="stable")[:max_starts]:
        if not np.isfinite(v[i]):
            break
        m = find_map(posterior, probes[i])
        H = laplace_hessian(posterior, m["x"])
        nfev += m["nfev"] + 4 * len(x0)
        m["hessian"], m["maximum"] = H, bool(np.all(np.linalg.eigvalsh(-H) > 0))
        runs.append(dict(start=probes[i].tolist(), x=m["x"].tolist(), log_post=m["log_post"], maximum=m["maximum"]))
        if best is None or (m["maximum"], m["log_post"]) > (best["maximum"], best["log_post"]):
            best = m
        if best["maximum"]:
            break
    if best is None:
        raise ValueError(f"no start of the MAP search has a finite log posterior (initial guess "
                         f"{dict(zip(posterior.free_names, x0.tolist()))}): {posterior.explain(x0)}")
    best["nfev"], best["starts"] = nfev, runs
    return best


def credible_intervals(flat_chain, names=None, levels=(0.68, 0.95)) -> pd.DataFrame:
    """Median and equal-tailed credible intervals per parameter.

    Returns
    -------
    pandas.DataFrame
        Index = parameter names; columns ``median``, ``mean``, ``std`` and ``lo68``/``hi68``,
        ``lo95``/``hi95`` (one pair per level).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ci = credible_intervals(rng.standard_normal((20000, 2)), names=["a", "b"])
    >>> bool(abs(ci.loc["a", "hi68"] - 0.994) < 0.05)
    True
    """
    c = np.asarray(flat_chain, float)
    names = list(names) if names is not None else [f"p{i}" for i in range(c.shape[1])]
    out = pd.DataFrame(index=names)
    out["median"] = np.median(c, axis=0)
    out["mean"] = c.mean(axis=0)
    out["std"] = c.std(axis=0, ddof=1)
    for lev in levels:
        tag = int(round(100 * lev))
        lo, hi = np.quantile(c, [0.5 - lev / 2, 0.5 + lev / 2], axis=0)
        out[f"lo{tag}"] = lo
        out[f"hi{tag}"] = hi
    return out


def get_param_covariance_from_chain(flat_chain) -> np.ndarray:
    """Posterior covariance matrix (n_free, n_free) of a flat chain.

    Examples
    --------
    >>> get_param_covariance_from_chain(np.random.default_rng(0).standard_normal((5000, 3))).shape
    (3, 3)
    """
    return np.atleast_2d(np.cov(np.asarray(flat_chain, float), rowvar=False))


def convergence_report(sampler, discard: int = 0, factor: float = 50.0) -> dict:
    """Autocorrelation times (``tol=0``: always an estimate) and acceptance fractions.

    Returns
    -------
    dict
        ``tau`` (per parameter), ``tau_max``, ``n_steps``, ``n_steps_over_tau``, ``converged``
        (n_steps > ``factor`` x tau_max), ``acceptance_mean``/``min``/``max``, ``acceptance_ok``
        (mean in [0.15, 0.7]) and a one-line ``verdict``.

    Examples
    --------
    >>> class S:  # a stand-in with the emcee interface
    ...     iteration = 1000
    ...     acceptance_fraction = np.full(8, 0.3)
    ...     def get_autocorr_time(self, discard=0, tol=50): return np.array([10.0, 12.0])
    >>> convergence_report(S())["converged"]
    True
    """
    n = int(getattr(sampler, "iteration", 0) or sampler.get_chain().shape[0]) - int(discard)
    try:
        tau = np.asarray(sampler.get_autocorr_time(discard=discard, tol=0), float)
    except Exception:
        tau = np.full(1, np.nan)
    acc = np.asarray(sampler.acceptance_fraction, float)
    tmax = float(np.nanmax(tau)) if np.isfinite(tau).any() else float("nan")
    conv = bool(np.isfinite(tmax) and n > factor * tmax)
    acc_ok = bool(0.15 <= acc.mean() <= 0.7)
    verdict = (f"{'converged' if conv else 'NOT converged'}: {n} steps = {n / tmax if tmax > 0 else float('nan'):.1f} "
               f"x tau_max ({tmax:.1f}; need > {factor:g}); mean acceptance {acc.mean():.2f}"
               f"{'' if acc_ok else ' (outside [0.15, 0.7])'}")
    return dict(tau=tau, tau_max=tmax, n_steps=n, n_steps_over_tau=(n / tmax if tmax > 0 else float("nan")),
                converged=conv, acceptance_mean=float(acc.mean()), acceptance_min=float(acc.min()),
                acceptance_max=float(acc.max()), acceptance_ok=acc_ok, verdict=verdict)


# --------------------------------------------------------------------------------------------
# posterior on a grid
# --------------------------------------------------------------------------------------------
@dataclass
class GridPosterior:
    """Posterior evaluated on a regular grid of some parameters (the others fixed).

    Attributes
    ----------
    names : tuple
        Grid parameters (axis order of the arrays).
    axes : dict name -> 1-D array
    log_post : ndarray
        Unnormalised log posterior, shape (len(axis) for each name).
    weights : ndarray
        exp(log_post - max), normalised to sum 1 (cell weights; uniform axes assumed).
    marginals : dict name -> 1-D array
        1-D marginals (sum 1).
    marginals_2d : dict (name1, name2) -> 2-D array
        2-D marginals for each pair (sum 1).
    fixed : dict
        Values of the parameters not on the grid.
    """

    names: tuple
    axes: dict
    log_post: np.ndarray
    weights: np.ndarray
    marginals: dict
    marginals_2d: dict
    fixed: dict = field(default_factory=dict)

    def mean(self) -> dict:
        """Posterior mean of each grid parameter."""
        return {n: float(np.sum(self.axes[n] * self.marginals[n])) for n in self.names}

    def map(self) -> dict:
        """Grid point of the maximum posterior."""
        idx = np.unravel_index(np.argmax(self.log_post), self.log_post.shape)
        return {n: float(self.axes[n][i]) for n, i in zip(self.names, idx)}


def grid_posterior(posterior: Posterior, axes: Mapping, fixed: Mapping | None = None, *, batch: int = 4096) -> GridPosterior:
    """Evaluate the posterior on a grid of some free parameters (the rest fixed).

    Parameters
    ----------
    posterior : Posterior
    axes : mapping name -> 1-D array
        Grid axes (free parameters of ``posterior``).
    fixed : mapping name -> value, optional
        Values of the free parameters not on the grid (default: the default-mock truth).
    batch : int
        Points per vectorised posterior call.

    Returns
    -------
    GridPosterior

    Performance
    -----------
    n_points x n_lens x ~8 us on one core (30 x 30 lens grids).

    Examples
    --------
    >>> from sl_cy.mock import run_mock_simulation
    >>> from sl_cy.grids import tabulate_likelihood_grids
    >>> _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> post = Posterior(tabulate_likelihood_grids(obs, np.arange(11.0, 15.01, 0.1)))
    >>> gp = grid_posterior(post, {"mu_h": np.linspace(12.5, 13.5, 11), "sigma_h": np.linspace(0.2, 0.6, 5)})
    >>> gp.weights.shape, round(float(gp.weights.sum()), 12)
    ((11, 5), 1.0)
    """
    names = tuple(axes)
    bad = [n for n in names if n not in posterior.free_names]
    if bad:
        raise ValueError(f"grid parameter(s) {bad} are not free parameters {posterior.free_names}")
    ax = {n: np.asarray(axes[n], float).ravel() for n in names}
    fx = dict(fixed or {})
    rest = [n for n in posterior.free_names if n not in names]
    vals = {n: float(fx.get(n, getattr(DEFAULT_ETA, n))) for n in rest}
    shape = tuple(len(ax[n]) for n in names)
    mesh = np.meshgrid(*[ax[n] for n in names], indexing="ij")
    theta = np.empty((int(np.prod(shape)), posterior.ndim))
    for j, n in enumerate(posterior.free_names):
        theta[:, j] = mesh[names.index(n)].ravel() if n in names else vals[n]
    lp = np.concatenate([np.atleast_1d(posterior(theta[s:s + batch])) for s in range(0, len(theta), batch)])
    lp = lp.reshape(shape)
    m = np.max(lp)
    w = np.exp(lp - m) if np.isfinite(m) else np.zeros(shape)
    tot = w.sum()
    w = w / tot if tot > 0 else w
    marg = {n: w.sum(axis=tuple(k for k in range(len(names)) if k != i)) for i, n in enumerate(names)}
    marg2 = {}
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        marg2[(a, b)] = w.sum(axis=tuple(k for k in range(len(names)) if k not in (i, j)))
    return GridPosterior(names, ax, lp, w, marg, marg2, vals)


def save_grid_posterior_hdf5(path, gp: GridPosterior, attrs: Mapping | None = None) -> Path:
    """Write a :class:`GridPosterior` to HDF5 atomically (axes, log_post, weights, marginals).

    Examples
    --------
    >>> import tempfile, os, h5py
    >>> gp = GridPosterior(("mu_h",), {"mu_h": np.array([12.0, 13.0])}, np.array([0.0, -1.0]),
    ...                    np.array([0.73, 0.27]), {"mu_h": np.array([0.73, 0.27])}, {})
    >>> p = save_grid_posterior_hdf5(os.path.join(tempfile.mkdtemp(), "g.h5"), gp)
    >>> with h5py.File(p) as f: print(f["weights"].shape)
    (2,)
    """
    from sl_cy.io import atomic_h5, write_attrs

    with atomic_h5(path) as f:
        ga = f.create_group("axes")
        for n in gp.names:
            ga.create_dataset(n, data=gp.axes[n])
        f.create_dataset("log_post", data=gp.log_post)
        f.create_dataset("weights", data=gp.weights)
        gm = f.create_group("marginals")
        for n, v in gp.marginals.items():
            gm.create_dataset(n, data=v)
        g2 = f.create_group("marginals_2d")
        for (a, b), v in gp.marginals_2d.items():
            g2.create_dataset(f"{a}__{b}", data=v)
        write_attrs(f, dict(kind="sl_cy.grid_posterior", names=list(gp.names), fixed=gp.fixed, **dict(attrs or {})))
    return Path(path)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------
def _figure(**kw):
    """A new matplotlib Figure that belongs to no pyplot state and switches no backend (plots work
    the same in scripts, on headless machines and in a Jupyter kernel)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _labels(names, n):
    if names is None:
        names = ETA_NAMES if n == 6 else [f"p{i}" for i in range(n)]
    return [LABELS.get(x, x) for x in names]


def plot_corner(chain, truths=None, path=None, *, names=None, **kwargs):
    """Corner plot (``corner`` package) of a flat chain (n_samples, n_free); PNG at ``path``.

    Returns the matplotlib Figure (a ``matplotlib.figure.Figure`` of its own: no pyplot state, no
    backend switch, so it also displays in Jupyter).
    """
    import corner

    c = np.asarray(chain, float)
    if c.ndim == 3:
        c = c.reshape(-1, c.shape[-1])
    k = c.shape[1]
    fig = kwargs.pop("fig", None) or _figure(figsize=(2.2 * k + 0.6, 2.2 * k + 0.6))
    fig = corner.corner(c, fig=fig, labels=_labels(names, k), truths=truths, quantiles=[0.16, 0.5, 0.84],
                        show_titles=True, **kwargs)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_traces(sampler, path=None, names=None, *, discard: int = 0):
    """Trace of every walker for each parameter; PNG at ``path``. Returns the Figure."""
    ch = sampler.get_chain(discard=discard)
    names = names or getattr(sampler, "param_names", None)
    nd = ch.shape[2]
    fig = _figure(figsize=(8, 1.8 * nd))
    axs = fig.subplots(nd, 1, sharex=True, squeeze=False)
    for j, lab in enumerate(_labels(names, nd)):
        axs[j, 0].plot(ch[:, :, j], lw=0.5, alpha=0.4, color="k")
        axs[j, 0].set_ylabel(lab)
    axs[-1, 0].set_xlabel("step")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_log_prob(sampler, path=None, discard: int = 0):
    """log posterior of every walker versus step; PNG at ``path``. Returns the Figure."""
    lp = sampler.get_log_prob(discard=discard)
    fig = _figure(figsize=(8, 3))
    ax = fig.subplots()
    lpf = np.where(np.isfinite(lp), lp, np.nan)
    ax.plot(lpf, lw=0.5, alpha=0.4, color="k")
    ax.set_xlabel("step")
    ax.set_ylabel("log posterior")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
