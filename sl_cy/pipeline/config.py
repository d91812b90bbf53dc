"""The settings of one inference run: :class:`RunConfig` (validated, round-trips via ``params.json``).

Everything that defines a chain and is chosen by the user -- walkers, steps, seeds, burn-in, the
selection engine, prior, fixed parameters, start, workers, plots -- lives in one frozen object.
It validates itself on construction (a bad value raises ValueError naming it), writes its part of
``params.json`` (:meth:`RunConfig.to_params`) and is re-created from it (:meth:`RunConfig.from_params`)
by :func:`sl_cy.pipeline.rerun` and :func:`sl_cy.pipeline.resume`.

Examples
--------
>>> c = RunConfig(nwalkers=16, nsteps=400, seed=7)
>>> c.discard, c.mcmc_seed == derived_seed(7, 2)          # burn-in nsteps // 10 after a MAP start
(40, True)
>>> RunConfig.from_params(c.to_params()) == c
True
>>> RunConfig(nsteps=0)
Traceback (most recent call last):
...
ValueError: nsteps must be an integer >= 1, got 0
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

import numpy as np

from sl_cy.inference import DEFAULT_MOVES, DEFAULT_START, STARTS

__all__ = ["RunConfig", "derived_seed", "DEFAULT_NWALKERS", "DEFAULT_NSTEPS", "DEFAULT_BANK_SIZE", "DEFAULT_START",
           "DEFAULT_MOVES",
           "DEFAULT_N_GALAXY", "DEFAULT_SELECTION", "prior_to_dict", "prior_from_dict", "as_prior"]

#: Defaults of ``sl-cy run`` / :func:`sl_cy.pipeline.run_pipeline` (README: measured wall time).
DEFAULT_N_GALAXY = 100_000
DEFAULT_NWALKERS = 16
DEFAULT_NSTEPS = 2000
DEFAULT_BANK_SIZE = 100_000
#: What a params.json written before the start and moves settings existed meant by their absence.
LEGACY_SETTINGS = dict(start="ball", moves="stretch")
#: Default burn-in ``nsteps // DISCARD_DIVISOR[start]`` (a MAP start begins in the posterior's bulk).
DISCARD_DIVISOR = {"map": 10, "ball": 4}
#: Default A(eta) engine: the deterministic quadrature table (the Monte-Carlo bank's noise biases a
#: 6-D chain, see the README); ``"bank"`` selects the importance-sampling bank.
DEFAULT_SELECTION = "quadrature"
SELECTION_ENGINES = ("quadrature", "bank")

#: ``kind`` of a run folder's params.json.
RUN_KIND = "sl_cy.run/1"


def derived_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for sub-stream ``stream`` of a root ``seed``.

    Examples
    --------
    >>> derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(1, 1)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])


def check_pos_int(name, v, lo=1) -> int:
    """``v`` as an int >= ``lo``; ValueError naming ``name`` otherwise (bools refused)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


# --- priors as JSON ------------------------------------------------------------------------------
def _prior_spec(p) -> dict:
    from sl_cy.likelihood import Gaussian, Uniform

    if isinstance(p, Uniform):
        return dict(type="uniform", lo=p.lo, hi=p.hi)
    if isinstance(p, Gaussian):
        return dict(type="gaussian", mu=p.mu, sigma=p.sigma, lo=p.lo, hi=p.hi)
    return dict(type="callable", repr=repr(p))


def prior_to_dict(prior) -> dict:
    """A Prior as JSON: {name: {type, ...}} for every eta parameter."""
    return {n: _prior_spec(p) for n, p in prior.params.items()}


def prior_from_dict(d: Mapping):
    """Inverse of :func:`prior_to_dict` (ValueError for callables, which cannot be re-created)."""
    from sl_cy.likelihood import Gaussian, Prior, Uniform

    params = {}
    for n, s in d.items():
        if s["type"] == "uniform":
            params[n] = Uniform(float(s["lo"]), float(s["hi"]))
        elif s["type"] == "gaussian":
            params[n] = Gaussian(float(s["mu"]), float(s["sigma"]), lo=float(s["lo"]), hi=float(s["hi"]))
        else:
            raise ValueError(f"the prior on {n!r} was a Python callable ({s.get('repr')}); it cannot be re-created "
                             "from params.json")
    return Prior(params)


def as_prior(prior):
    """None (the default box), a :class:`sl_cy.Prior` or a mapping name -> prior, as a Prior."""
    from sl_cy.likelihood import DEFAULT_PRIOR, Prior

    if prior is None:
        return DEFAULT_PRIOR
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, Mapping):
        return Prior(prior)
    raise ValueError(f"prior must be a sl_cy.Prior or a mapping name -> prior, got {type(prior).__name__}")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The user's settings of one inference run (frozen; validated on construction).

    Parameters
    ----------
    nwalkers, nsteps : int
        emcee walkers (>= 2 x free parameters, checked against the posterior) and steps.
    seed : int, optional
        Root seed; fresh entropy when None (then recorded). The sampler uses
        ``derived_seed(seed, 2)``, the selection bank ``derived_seed(seed, 1)``, the draws of a MAP
        start ``derived_seed(seed, 3)``.
    discard : int, optional
        Burn-in steps left out of the summaries (default ``nsteps // 10`` with a MAP start,
        ``nsteps // 4`` with a ball start (:data:`DISCARD_DIVISOR`); ``discard_auto`` records
        that it was the default, so extending a run moves it).
    use_selection : bool
        The selection term -N log A(eta) (``--no-eta`` switches it off). ``params.json`` key ``eta``.
    selection : {"quadrature", "bank"}
        Engine of the default A(eta) (:data:`DEFAULT_SELECTION`).
    bank_size : int
        Galaxies of the Monte-Carlo bank (``selection="bank"``).
    bank_seed : int, optional
        Seed of the bank (default ``derived_seed(seed, 1)``).
    prior : Prior or mapping, optional
        Default the top-hat box :data:`sl_cy.likelihood.DEFAULT_BOX`.
    fixed : mapping name -> value, optional
        Fixed eta parameters.
    initial_guess : array (n_free,), optional
        Centre of the starting ball (:func:`sl_cy.inference.initial_ball`), or with a MAP start
        the start of the MAP search.
    start : {"map", "ball"}
        Walkers drawn from the Laplace approximation at the MAP (default,
        :func:`sl_cy.inference.map_start`) or a small ball around ``initial_guess``. The positions
        a MAP start gives are recorded in ``params.json`` as ``initial_state``.
    moves : {"de", "stretch"}
        emcee moves (:func:`sl_cy.inference.emcee_moves`): differential evolution (default) or
        emcee's stretch move. Runs recorded without ``start``/``moves`` were "ball"/"stretch".
    initial_state : array (nwalkers, n_free), optional
        The walkers' starting positions (overrides ``start``); :func:`sl_cy.pipeline.rerun` passes
        the recorded ones so the chain is reproduced without recomputing the MAP.
    n_jobs : int
        Worker processes / OpenMP threads (-1 = all cores); results do not depend on it.
    save_plots : bool
        Write corner.png, traces.png, log_prob.png.

    Examples
    --------
    >>> RunConfig(seed=1, selection="mc")
    Traceback (most recent call last):
    ...
    ValueError: selection must be one of ('quadrature', 'bank'), got 'mc'
    """

    nwalkers: int = DEFAULT_NWALKERS
    nsteps: int = DEFAULT_NSTEPS
    seed: int | None = None
    discard: int | None = None
    use_selection: bool = True
    selection: str = DEFAULT_SELECTION
    bank_size: int = DEFAULT_BANK_SIZE
    bank_seed: int | None = None
    prior: object = None
    fixed: Mapping = field(default_factory=dict)
    initial_guess: tuple | None = None
    start: str = DEFAULT_START
    moves: str = DEFAULT_MOVES
    initial_state: tuple | None = None
    n_jobs: int = -1
    save_plots: bool = True
    discard_auto: bool = field(default=None, repr=False)

    def __post_init__(self):
        from sl_cy.parallel import resolve_n_jobs
        from sl_cy.selection.bank import _check_seed

        put = lambda k, v: object.__setattr__(self, k, v)   # noqa: E731 - frozen dataclass
        put("nwalkers", check_pos_int("nwalkers", self.nwalkers, 2))
        put("nsteps", check_pos_int("nsteps", self.nsteps, 1))
        put("seed", _check_seed(self.seed))
        put("n_jobs", resolve_n_jobs(self.n_jobs))
        put("bank_size", check_pos_int("bank_size", self.bank_size, 1))
        put("bank_seed", derived_seed(self.seed, 1) if self.bank_seed is None else _check_seed(self.bank_seed))
        if self.discard_auto is None:
            put("discard_auto", self.discard is None)
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        from sl_cy.inference import MOVES

        if self.moves not in MOVES:
            raise ValueError(f"moves must be one of {MOVES}, got {self.moves!r}")
        if self.discard_auto:
            put("discard", self.nsteps // DISCARD_DIVISOR[self.start])
        put("discard", check_pos_int("discard", self.discard, 0))
        if self.discard >= self.nsteps:
            raise ValueError(f"discard ({self.discard}) must be smaller than nsteps ({self.nsteps})")
        if self.selection not in SELECTION_ENGINES:
            raise ValueError(f"selection must be one of {SELECTION_ENGINES}, got {self.selection!r}")
        put("use_selection", bool(self.use_selection))
        put("save_plots", bool(self.save_plots))
        put("prior", as_prior(self.prior))
        put("fixed", {str(k): float(v) for k, v in dict(self.fixed or {}).items()})
        if self.initial_guess is not None:
            g = np.asarray(self.initial_guess, float).ravel()
            if not np.isfinite(g).all():
                raise ValueError(f"initial_guess must be finite, got {self.initial_guess!r}")
            put("initial_guess", tuple(float(v) for v in g))
        if self.initial_state is not None:
            st = np.asarray(self.initial_state, float)
            if st.ndim != 2 or st.shape[0] != self.nwalkers or not np.isfinite(st).all():
                raise ValueError(f"initial_state must be a finite array (nwalkers={self.nwalkers}, n_free), got shape "
                                 f"{st.shape}")
            put("initial_state", tuple(tuple(float(v) for v in row) for row in st))

    @property
    def mcmc_seed(self) -> int:
        """Seed of the sampler: ``derived_seed(seed, 2)``."""
        return derived_seed(self.seed, 2)

    @property
    def start_seed(self) -> int:
        """Seed of the draws of a MAP start: ``derived_seed(seed, 3)``."""
        return derived_seed(self.seed, 3)

    def replace(self, **changes) -> "RunConfig":
        """A copy with some settings changed; a changed ``nsteps`` moves a default burn-in."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        if "discard" in changes:
            d["discard_auto"] = changes["discard"] is None
        elif d["discard_auto"]:
            d["discard"] = None
        return RunConfig(**d)

    def to_params(self) -> dict:
        """This configuration's entries of ``params.json`` (plain JSON); the selection engine's
        entries go under ``selection`` (where the A(eta) stage adds its table or bank hash)."""
        sel = dict(engine=self.selection, enabled=self.use_selection)
        if self.selection == "bank":
            sel.update(bank_size=self.bank_size, bank_seed=self.bank_seed)
        return dict(nwalkers=self.nwalkers, nsteps=self.nsteps, discard=self.discard, discard_auto=self.discard_auto,
                    seed=self.seed, mcmc_seed=self.mcmc_seed, eta=self.use_selection, selection=sel,
                    prior=prior_to_dict(self.prior), fixed=dict(self.fixed),
                    initial_guess=None if self.initial_guess is None else list(self.initial_guess),
                    start=self.start, start_seed=self.start_seed, moves=self.moves,
                    initial_state=None if self.initial_state is None else [list(r) for r in self.initial_state],
                    n_jobs=self.n_jobs, save_plots=self.save_plots)

    @classmethod
    def from_params(cls, p: Mapping) -> "RunConfig":
        """Re-create the configuration recorded in a run folder's ``params.json``.

        Raises ValueError for a run whose A(eta) was a user-supplied callable (not re-creatable)."""
        sel = p.get("selection") or {}
        engine = sel.get("engine", DEFAULT_SELECTION)
        if engine == "user":
            raise ValueError("this run used a user-supplied A(eta) callable; it cannot be re-created from "
                             "params.json (continue it from Python with sl_cy.inference.run_mcmc(..., resume=True))")
        auto = p.get("discard_auto", p["discard"] == p["nsteps"] // 4)
        return cls(nwalkers=p["nwalkers"], nsteps=p["nsteps"], seed=p["seed"], discard=p["discard"],
                   discard_auto=bool(auto), use_selection=p["eta"], selection=engine,
                   bank_size=sel.get("bank_size", DEFAULT_BANK_SIZE), bank_seed=sel.get("bank_seed"),
                   prior=prior_from_dict(p["prior"]), fixed=p.get("fixed") or {},
                   initial_guess=p.get("initial_guess"), start=p.get("start", LEGACY_SETTINGS["start"]),
                   moves=p.get("moves", LEGACY_SETTINGS["moves"]), initial_state=p.get("initial_state"), n_jobs=p.get("n_jobs", -1),
                   save_plots=p.get("save_plots", True))

    def __eq__(self, other):
        if not isinstance(other, RunConfig):
            return NotImplemented
        from sl_cy.io import canonical_json

        return canonical_json(self.to_params()) == canonical_json(other.to_params())

    __hash__ = None
