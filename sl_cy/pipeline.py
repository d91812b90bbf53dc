"""End-to-end pipeline: simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots and run folder.

Thin Python over the existing pieces (:mod:`sl_cy.tables`, :mod:`sl_cy.selection`,
:mod:`sl_cy.likelihood`, :mod:`sl_cy.inference`, :mod:`sl_cy.runs`):

* :func:`run_pipeline` -- the main job (``sl-cy run``): mock, grids, selection bank, MCMC;
* :func:`infer` -- inference on the grids of a simulation or of a user catalogue (``sl-cy infer``);
* :func:`report` -- re-create summaries and plots from a run folder's stored chain (``sl-cy report``);
* :func:`rerun` -- run again from a run folder's ``params.json`` (``sl-cy rerun``);
* :func:`resume` -- continue an interrupted or killed run to the identical chain (``sl-cy resume``);
* :func:`compute_posterior_from_file` -- the log posterior streamed from a ``grids.h5`` in blocks.

Layout on disk (``root`` is the working folder, default ``.``)::

    <root>/data/tables/<sim_id>/mock.h5        mock (truth, lenses, observed table)  [mocks only]
    <root>/data/tables/<sim_id>/grids.h5       per-lens likelihood grids
    <root>/data/banks/bank_<hash16>.h5         A(eta) Monte-Carlo banks (``selection="bank"``), keyed by
                                               their config hash
    ~/.cache/sl_cy/selection_table_<hash16>.h5 the deterministic A(eta) table (default engine;
                                               ``$SL_CY_CACHE_DIR`` overrides the folder)
    <root>/inference/<sim_id>/<run_id>/
        params.json     everything needed to re-run (written first)
        metadata.json   UTC start/end, version, git commit, table hashes, ``status``
        chain.h5        emcee HDF5 backend (group ``mcmc``), written step by step
        chain.journal   append-only copy of every step with a CRC (while not complete)
        run.h5          the run file (:func:`sl_cy.runs.write_run_hdf5`)
        summary.csv     one row per free parameter: median, mean, std, 68 %/95 % intervals, truth, tau
        summary.json    the same plus the convergence verdict
        corner.png, traces.png, log_prob.png   (with ``save_plots``)

Life cycle (:class:`sl_cy.runs.RunFolder`): all input validation (options, catalogue columns
and values) and the tables come first; a run that fails there leaves no run folder. The folder is
then created and locked, and ``metadata.json`` says ``"status": "running"``; ``chain.h5`` grows
step by step, each step first appended to ``chain.journal`` (:mod:`sl_cy.chainstore`). Ctrl-C,
SIGTERM (the CLI turns it into KeyboardInterrupt) or an exception after sampling has started keep
the folder: the chain is made consistent at the last finished step and ``metadata.json`` says
``"status": "interrupted"`` with ``step``, ``nsteps`` and ``reason``; :func:`resume` finishes it to
the chain an uninterrupted run gives. A SIGKILL leaves ``"running"`` in an unlocked folder (a
*killed* run), which resumes the same way, a torn last step dropped. When everything is written
the journal is removed and the status becomes ``"complete"``, so a folder that says ``complete``
is always whole.

Seeds: one root ``seed``. The mock uses it directly (same sim as ``sl-cy simulate --seed``);
the selection bank (if used) and the sampler use ``derived_seed(seed, 1)`` and ``derived_seed(seed, 2)``
(independent streams). All three are recorded in ``params.json``; with the same seed, tables and
bank, the chain is bit-for-bit identical (:func:`rerun`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from sl_cy._version import __version__
from sl_cy.selection import _check_seed

__all__ = [
    "DEFAULT_NWALKERS", "DEFAULT_NSTEPS", "DEFAULT_BANK_SIZE", "DEFAULT_N_GALAXY", "DEFAULT_SELECTION", "RunResult", "derived_seed",
    "file_sha256", "selection_bank_for", "infer", "report", "rerun", "resume", "run_pipeline", "compute_posterior_from_file",
]

#: Defaults of ``sl-cy run`` / :func:`run_pipeline` (measured 4 min 13 s on the idle 2-core machine).
DEFAULT_N_GALAXY = 100_000
DEFAULT_NWALKERS = 16
DEFAULT_NSTEPS = 3000
DEFAULT_BANK_SIZE = 100_000
#: Default A(eta) engine: the deterministic quadrature table (the Monte-Carlo bank's noise biases a
#: 6-D chain, see the README); ``"bank"`` selects the importance-sampling bank.
DEFAULT_SELECTION = "quadrature"

RUN_KIND = "sl_cy.run/1"
CHAIN_FILE = "chain.h5"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
PLOTS = {"corner": "corner.png", "traces": "traces.png", "log_prob": "log_prob.png"}
BANK_DIR = ("data", "banks")


@dataclass
class RunResult:
    """What :func:`infer`, :func:`report`, :func:`rerun` and :func:`run_pipeline` return.

    Attributes
    ----------
    run_dir : Path
        ``<root>/inference/<sim_id>/<run_id>``.
    sim_id, run_id : str
    summary : pandas.DataFrame
        One row per free parameter (median, mean, std, lo68/hi68, lo95/hi95, truth, tau).
    convergence : dict
        :func:`sl_cy.inference.convergence_report` of the stored chain (``verdict``, ``converged``...).
    files : dict name -> Path
        Every artefact written.
    wall_time_s : float
    """

    run_dir: Path
    sim_id: str
    run_id: str
    summary: pd.DataFrame
    convergence: dict
    files: dict = field(default_factory=dict)
    wall_time_s: float = float("nan")

    def print(self, prog: str = "sl-cy") -> None:
        """Print the summary table, the verdict and where each artefact went."""
        cols = [c for c in ("truth", "median", "lo68", "hi68", "lo95", "hi95", "tau") if c in self.summary]
        print(self.summary[cols].to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"convergence: {self.convergence['verdict']}")
        for name, p in self.files.items():
            print(f"  {name:<14} {p}")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def derived_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for sub-stream ``stream`` of a root ``seed``.

    Examples
    --------
    >>> derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(1, 1)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt"); _ = open(p, "w").write("abc")
    >>> file_sha256(p)[:12]
    'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()




def check_writable(folder) -> Path:
    """Raise OSError naming ``folder`` unless files can be created in it (created if missing);
    called before any work starts, so an unwritable output folder is reported at once.

    Examples
    --------
    >>> import tempfile
    >>> check_writable(tempfile.mkdtemp()).is_dir()
    True
    """
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sl_cy_write_test_"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write in the output folder {folder}: {exc.strerror or exc}") from None
    return folder


def _check_pos_int(name, v, lo=1) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _prior_spec(p) -> dict:
    from sl_cy.likelihood import Gaussian, Uniform

    if isinstance(p, Uniform):
        return dict(type="uniform", lo=p.lo, hi=p.hi)
    if isinstance(p, Gaussian):
        return dict(type="gaussian", mu=p.mu, sigma=p.sigma, lo=p.lo, hi=p.hi)
    return dict(type="callable", repr=repr(p))


def _prior_to_dict(prior) -> dict:
    """A Prior as JSON: {name: {type, ...}} for every eta parameter."""
    return {n: _prior_spec(p) for n, p in prior.params.items()}


def _prior_from_dict(d: Mapping):
    """Inverse of :func:`_prior_to_dict` (ValueError for callables, which cannot be re-created)."""
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


def _as_prior(prior):
    from sl_cy.likelihood import DEFAULT_PRIOR, Prior

    if prior is None:
        return DEFAULT_PRIOR
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, Mapping):
        return Prior(prior)
    raise ValueError(f"prior must be a sl_cy.Prior or a mapping name -> prior, got {type(prior).__name__}")


def selection_bank_for(n: int, seed: int, *, root=".", forward_model=None, n_jobs=1, progress=False):
    """Load the A(eta) bank of this configuration from the cache, or build and cache it.

    Parameters
    ----------
    n, seed : int
        Bank size and seed (:func:`sl_cy.selection.build_selection_bank`).
    root : str or Path
        The cache is ``<root>/data/banks/bank_<hash16>.h5``, keyed by the sha256 of the bank
        configuration (size, seed, forward model, version).
    forward_model : ForwardModel, optional
        The forward model of the grids (so A matches the numerator).
    n_jobs : int
        Worker processes for building (the bank does not depend on it).
    progress : bool

    Returns
    -------
    (SelectionBank, Path, reused: bool)

    Performance
    -----------
    Building: ~7e4 galaxies/s per core; loading a cached 1e5 bank: ~0.1 s.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> b, p, reused = selection_bank_for(3000, 1, root=d)
    >>> selection_bank_for(3000, 1, root=d)[2], p.parent.name
    (True, 'banks')
    """
    from sl_cy.io import config_hash
    from sl_cy.selection import bank_config, build_selection_bank, load_bank

    cfg = bank_config(n, seed, forward_model)
    h = config_hash(cfg)
    path = Path(root).joinpath(*BANK_DIR) / f"bank_{h[:16]}.h5"
    if path.exists():
        try:
            return load_bank(path, expected_hash=h), path, True
        except (ValueError, OSError, KeyError):
            pass                                    # corrupt or stale: rebuild
    bank = build_selection_bank(n, seed, forward_model=forward_model, n_jobs=n_jobs, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    bank.save(path)
    return bank, path, False


# --------------------------------------------------------------------------------------------
# tables of a simulation / catalogue
# --------------------------------------------------------------------------------------------
def _grids_attrs(path) -> dict:
    import h5py

    from sl_cy.grids import GRID_ARRAYS
    from sl_cy.io import read_attrs

    with h5py.File(path, "r") as f:
        a = read_attrs(f)
        a["_complete"] = all(k in f for k in GRID_ARRAYS + ("valid", "nbkg_kpc2", "observed"))
        a["_logMh_axis"] = f["logMh_axis"][()]
        a["_gamma_axis"] = f["gamma_axis"][()]
        a["_n_lenses"] = int(f["valid"].shape[0])
    return a


def _grids_up_to_date(path, mock_hash: str, logMh_grid, gamma_grid) -> bool:
    """grids.h5 was tabulated from this mock, on these axes, by this package version."""
    try:
        a = _grids_attrs(path)
    except (OSError, KeyError, ValueError):
        return False
    return (a["_complete"] and a.get("mock_config_hash") == mock_hash and a.get("config", {}).get("version") == __version__
            and a.get("config", {}).get("quadrature") == "adaptive"
            and np.array_equal(a["_logMh_axis"], logMh_grid) and np.array_equal(a["_gamma_axis"], gamma_grid))


def _catalogue_tables(observed, unit, zl, zs, root, sim_id, logMh_grid, gamma_grid, n_jobs, progress,
                      forward_model=None):
    """Validate a catalogue and (re)use or tabulate its grids; nothing is written here.

    Returns (sim_id, grids_path, grids or None (reuse), catalogue dict for params, attrs to save).
    """
    from sl_cy.catalogue import read_catalogue
    from sl_cy.config import SurveyConfig
    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.io import config_hash
    from sl_cy.tables import GRIDS_FILE, sim_dir

    from sl_cy.forward import as_forward_model

    fm = as_forward_model(forward_model, zl=zl, zs=zs)
    cat_path = Path(observed).resolve()
    table = read_catalogue(cat_path, unit=unit, zl=fm.zl, zs=fm.zs)      # all validation, no file written
    sha = file_sha256(cat_path)
    cat = dict(path=str(cat_path), sha256=sha, unit=unit, zl=fm.zl, zs=fm.zs, n_lenses=len(table),
               forward_model=fm.to_dict())
    sim_id = sim_id or f"obs_{config_hash(dict(sha256=sha, unit=unit, forward_model=fm.hash))[:8]}"
    gpath = sim_dir(sim_id, root) / GRIDS_FILE
    if gpath.exists():
        try:
            a = _grids_attrs(gpath)
        except (OSError, KeyError, ValueError):
            a = {}
        if (a.get("_complete") and a.get("catalogue_sha256") == sha and a.get("unit") == unit
                and a.get("forward_model") == fm.to_dict() and a.get("config", {}).get("version")
                == __version__ and a.get("config", {}).get("quadrature") == "adaptive" and np.array_equal(a.get("_logMh_axis"), logMh_grid)
                and np.array_equal(a.get("_gamma_axis"), gamma_grid)):
            return sim_id, gpath, None, cat, None
        if a.get("source") != "catalogue" and a:
            raise FileExistsError(f"{gpath} holds the grids of another simulation; choose another --sim-id")
    grids = tabulate_likelihood_grids(table, logMh_grid, gamma_grid, forward_model=fm, n_jobs=n_jobs,
                                      show_progress=progress, adaptive=True)
    attrs = dict(sim_id=str(sim_id), source="catalogue", catalogue_path=str(cat_path), catalogue_sha256=sha,
                 unit=unit, forward_model=fm.to_dict())
    return sim_id, gpath, grids, cat, attrs


def _sim_constants(sim: Path) -> dict:
    """Truth, lens table and mock hash of a simulation (None for a catalogue's tables)."""
    mock_path = sim / "mock.h5"
    if mock_path.exists():
        from sl_cy.mock import load_mock

        m = load_mock(mock_path)
        return dict(truth={k: float(v) for k, v in m.config["eta"].items()}, lenses=m.lenses,
                    mock_config_hash=m.config_hash, mock_file=mock_path)
    return dict(truth=None, lenses=None, mock_config_hash=None, mock_file=None)


# --------------------------------------------------------------------------------------------
# summaries and plots of a stored chain (shared by infer and report)
# --------------------------------------------------------------------------------------------
class _StoredChain:
    """The emcee HDF5 backend of a run folder with the sampler attributes the summaries use."""

    def __init__(self, path, names):
        import emcee

        if not Path(path).exists():
            raise FileNotFoundError(f"no chain at {path}")
        self.backend = emcee.backends.HDFBackend(str(path), name="mcmc", read_only=True)
        self.param_names = tuple(names)
        self.iteration = int(self.backend.iteration)
        if self.iteration == 0:
            raise ValueError(f"{path} holds an empty chain")

    @property
    def acceptance_fraction(self):
        return self.backend.accepted / float(self.iteration)

    def get_chain(self, **kw):
        return self.backend.get_chain(**kw)

    def get_log_prob(self, **kw):
        return self.backend.get_log_prob(**kw)

    def get_autocorr_time(self, **kw):
        return self.backend.get_autocorr_time(**kw)


def _summaries(d: Path, params: dict, save_plots: bool):
    """Summary table, convergence report and plots from ``d/chain.h5``; returns (table, conv, files)."""
    from sl_cy.inference import convergence_report, credible_intervals, plot_corner, plot_log_prob, plot_traces
    from sl_cy.io import to_jsonable, write_json_atomic

    names = list(params["free_names"])
    ch = _StoredChain(d / CHAIN_FILE, names)
    discard = min(int(params["discard"]), ch.iteration - 1)
    flat = ch.get_chain(discard=discard, flat=True)
    table = credible_intervals(flat, names=names, levels=(0.68, 0.95))
    truth = params.get("truth")
    if truth:
        table.insert(0, "truth", [truth[n] for n in names])
    conv = convergence_report(ch, discard=discard)
    tau = np.atleast_1d(conv["tau"])
    table["tau"] = tau if len(tau) == len(names) else np.nan
    files = {}
    p = d / SUMMARY_CSV
    tmp = p.with_name("." + p.name + ".tmp")
    table.to_csv(tmp, index_label="parameter", float_format="%.6g")
    tmp.replace(p)
    files["summary.csv"] = p
    summ = dict(parameters={n: table.loc[n].to_dict() for n in names}, convergence=conv, discard=discard,
                n_samples=int(len(flat)), n_steps=ch.iteration, nwalkers=int(ch.backend.shape[0]),
                sim_id=params["sim_id"], run_id=params["run_id"], truth_known=bool(truth))
    files["summary.json"] = write_json_atomic(d / SUMMARY_JSON, to_jsonable(summ))
    if save_plots:
        tr = table["truth"].to_numpy() if truth else None
        for key, fn in (("corner", lambda path: plot_corner(flat, truths=tr, names=names, path=path)),
                        ("traces", lambda path: plot_traces(ch, path=path, names=names)),
                        ("log_prob", lambda path: plot_log_prob(ch, path=path))):
            fn(d / PLOTS[key])               # a Figure of its own (no pyplot state): freed when dropped
            files[PLOTS[key]] = d / PLOTS[key]
    return table, conv, files


def _interrupt_reason(exc: BaseException) -> str:
    """Why a run stopped, for metadata.json: ``"signal SIGTERM"``, ``"KeyboardInterrupt"``, ``"ValueError: ..."``."""
    if isinstance(exc, KeyboardInterrupt):
        msg = str(exc)
        return f"signal {msg}" if msg.startswith("SIG") else "KeyboardInterrupt"
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}"[:500] if msg else type(exc).__name__


@dataclass
class _Prepared:
    """Everything an inference needs after validation: the posterior, params.json, the tables."""

    d: Path
    sim_id: str
    run_id: str
    started: str
    params: dict
    tables: dict
    post: object
    grids: list
    gpath: Path
    const: dict
    selection: dict
    A_call: object
    eta: bool


# --------------------------------------------------------------------------------------------
# infer
# --------------------------------------------------------------------------------------------
def infer(sim_id=None, *, observed=None, unit="kpc", root=".", out=None, nwalkers=DEFAULT_NWALKERS,
          nsteps=DEFAULT_NSTEPS, seed=None, eta=True, A=None, selection=DEFAULT_SELECTION, bank_size=DEFAULT_BANK_SIZE,
          bank_seed=None,
          prior=None, fixed=None, n_jobs=-1, progress=True, save_plots=True, run_id=None, discard=None,
          initial_guess=None, zl=None, zs=None, logMh_grid=None, gamma_grid=None, expect=None, forward_model=None,
          extra_params=None, verbose=False) -> RunResult:
    """Infer eta from the grids of a simulation (or a user catalogue) into a reproducible run folder.

    Parameters
    ----------
    sim_id : str, optional
        Simulation folder ``<root>/data/tables/<sim_id>`` holding ``grids.h5`` (and ``mock.h5`` for a
        mock: then the truth is known). With ``observed`` it names the folder of the catalogue's
        grids (default ``obs_<hash8>`` of the catalogue's sha256, unit and redshifts).
    observed : str or Path, optional
        A CSV/HDF5 lens catalogue (:func:`sl_cy.catalogue.read_catalogue`): validated, then its
        grids are tabulated (or reused when the same file was tabulated before) FIRST; any bad
        column or value raises ValueError naming column and row, before anything is written.
    unit : {"kpc", "arcsec"}
        Unit of the catalogue's image positions.
    root : str or Path
        Working folder of the tables (``data/``) and, unless ``out`` is given, of the run.
    out : str or Path, optional
        Root folder of the run folder (default ``root``).
    nwalkers, nsteps : int
        emcee walkers (>= 2 x free parameters) and steps.
    seed : int, optional
        Root seed (fresh entropy when None, recorded); the sampler uses ``derived_seed(seed, 2)``.
    eta : bool
        Selection term -N log A(eta) on (default) or off (``--no-eta``).
    A : callable, optional
        Your own A(eta_batch); default per ``selection``. With ``selection="bank"``: a
        :class:`sl_cy.selection.SelectionBank` of ``bank_size``
        galaxies with ``bank_seed`` (default ``derived_seed(seed, 1)``), cached under
        ``<root>/data/banks/`` by its configuration hash (built with the sim's survey, redshifts,
        concentration and cosmology).
    selection : {"quadrature", "bank"}
        Engine of the default A(eta): the deterministic quadrature table of
        :func:`sl_cy.selection.build_selection_table` (default; built once, ~20 s, and cached in
        ``$SL_CY_CACHE_DIR`` or ``~/.cache/sl_cy`` by its configuration hash; no Monte-Carlo noise
        for the sampler to chase), or the Monte-Carlo bank below (``"bank"``; with 1e5 galaxies
        its noise pulls a 6-D chain by several sigma, see the README).
    prior : Prior or mapping, optional
        Default the top-hat :data:`sl_cy.likelihood.DEFAULT_BOX`.
    fixed : mapping name -> value, optional
        Fixed parameters (for a one-node gamma grid mu_gamma, sigma_gamma are fixed anyway).
    n_jobs : int
        Processes for tabulation/bank and OpenMP threads for the likelihood and A (-1 = all
        cores); results do not depend on it.
    progress, save_plots : bool
    run_id : str, optional
        Default :func:`sl_cy.runs.new_run_id` (UTC time); an existing folder is refused.
    discard : int, optional
        Burn-in steps left out of the summaries (default nsteps // 4).
    initial_guess : array, optional
        Centre of the starting ball (default the default-mock truth, see
        :func:`sl_cy.inference.initial_ball`).
    zl, zs : float
        Redshifts of a catalogue without zl/zs columns.
    logMh_grid, gamma_grid : array, optional
        Grid axes for a catalogue (default :data:`sl_cy.grids.DEFAULT_LOGMH_GRID`,
        :data:`sl_cy.grids.DEFAULT_GAMMA_GRID`).
    expect : dict, optional
        ``{"grids_key": ..., "catalogue_sha256": ...}``: refuse to run when the tables differ
        (used by :func:`rerun`).
    extra_params : dict, optional
        Stored in ``params.json`` (e.g. the pipeline's mock settings).
    verbose : bool
        Print progress messages and where the artefacts went.

    Returns
    -------
    RunResult

    Raises
    ------
    sl_cy.runs.RunInterrupted
        On Ctrl-C or SIGTERM (turned into KeyboardInterrupt by the caller, e.g. the CLI) once the
        run folder exists: the folder is kept, ``metadata.json`` says ``"status": "interrupted"``
        with the step reached, and :func:`resume` continues it to the identical chain. An
        exception after sampling has started keeps the folder the same way (the exception
        propagates with a note saying so); a failure before (validation, tables) leaves no folder.

    Performance
    -----------
    Per MCMC step ~ nwalkers x (n_lens x ~10 us + bank size x ~10 ns) on two idle cores
    (430 lenses, 16 walkers, 1e5 bank: ~0.08 s/step; ~0.12 s when another job holds a core).

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> sorted(p.name for p in r.run_dir.iterdir())
    ['chain.h5', 'metadata.json', 'params.json', 'run.h5', 'summary.csv', 'summary.json']
    """
    from sl_cy.runs import RunFolder

    t_start = time.perf_counter()
    prep = _prepare(sim_id, observed=observed, unit=unit, root=root, out=out, nwalkers=nwalkers, nsteps=nsteps,
                    seed=seed, eta=eta, A=A, selection=selection, bank_size=bank_size, bank_seed=bank_seed, prior=prior,
                    fixed=fixed, n_jobs=n_jobs, progress=progress, save_plots=save_plots, run_id=run_id,
                    discard=discard, initial_guess=initial_guess, zl=zl, zs=zs, logMh_grid=logMh_grid,
                    gamma_grid=gamma_grid, expect=expect, forward_model=forward_model, extra_params=extra_params,
                    verbose=verbose)
    folder = RunFolder.create(prep.d, prep.params, sim_id=prep.sim_id, started_utc=prep.started, tables=prep.tables,
                              run_id=prep.run_id, step=0, nsteps=prep.params["nsteps"])
    return _sample_and_finish(prep, folder, resumed_from=None, t_start=t_start, progress=progress, verbose=verbose)


def _prepare(sim_id=None, *, observed=None, unit="kpc", root=".", out=None, nwalkers=DEFAULT_NWALKERS,
             nsteps=DEFAULT_NSTEPS, seed=None, eta=True, A=None, selection=DEFAULT_SELECTION,
             bank_size=DEFAULT_BANK_SIZE, bank_seed=None, prior=None, fixed=None, n_jobs=-1, progress=True,
             save_plots=True, run_id=None, discard=None, initial_guess=None, zl=None, zs=None, logMh_grid=None,
             gamma_grid=None, expect=None, forward_model=None, extra_params=None, verbose=False,
             resume_dir=None) -> _Prepared:
    """Validate the inputs, load or build the tables and A(eta), and compose params.json (nothing of
    the run folder is written; a catalogue's grids are). See :func:`infer`."""
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, load_grids_hdf5, save_grids_hdf5
    from sl_cy.likelihood import Posterior
    from sl_cy.parallel import resolve_n_jobs
    from sl_cy.runs import new_run_id, run_dir
    from sl_cy.runs import RunFolder, utc_now
    from sl_cy.tables import GRIDS_FILE, sim_dir

    started = utc_now()
    # ---- validation (nothing written) ------------------------------------------------------
    nwalkers = _check_pos_int("nwalkers", nwalkers, 2)
    nsteps = _check_pos_int("nsteps", nsteps, 1)
    seed = _check_seed(seed)
    n_jobs = resolve_n_jobs(n_jobs)
    bank_size = _check_pos_int("bank_size", bank_size, 1)
    bank_seed = derived_seed(seed, 1) if bank_seed is None else _check_seed(bank_seed)
    mcmc_seed = derived_seed(seed, 2)
    discard_auto = discard is None
    discard = nsteps // 4 if discard is None else _check_pos_int("discard", discard, 0)
    if discard >= nsteps:
        raise ValueError(f"discard ({discard}) must be smaller than nsteps ({nsteps})")
    if selection not in ("bank", "quadrature"):
        raise ValueError(f"selection must be 'bank' or 'quadrature', got {selection!r}")
    if unit not in ("kpc", "arcsec"):
        raise ValueError(f"unit must be 'kpc' or 'arcsec', got {unit!r}")
    pr = _as_prior(prior)
    mh_axis = np.asarray(DEFAULT_LOGMH_GRID if logMh_grid is None else logMh_grid, float)
    g_axis = np.asarray(DEFAULT_GAMMA_GRID if gamma_grid is None else gamma_grid, float)
    root = Path(root)
    out_root = Path(out) if out is not None else root
    check_writable(root)
    check_writable(out_root)
    run_id = run_id or new_run_id()
    catalogue, new_grids, new_attrs = None, None, None
    if observed is not None:
        sim_id, gpath, new_grids, catalogue, new_attrs = _catalogue_tables(
            observed, unit, zl, zs, root, sim_id, mh_axis, g_axis, n_jobs, progress if progress else False,
            forward_model)
    else:
        if not sim_id:
            raise ValueError("give a sim_id (tables under data/tables/<sim_id>/) or an observed catalogue")
        gpath = sim_dir(sim_id, root) / GRIDS_FILE
        if not gpath.exists():
            raise FileNotFoundError(f"no grids at {gpath}; run `sl-cy simulate` and `sl-cy tabulate --sim-id "
                                    f"{sim_id}` (or `sl-cy run`) first")
    d = run_dir(sim_id, run_id, out_root)
    if resume_dir is None and RunFolder.taken(d):
        raise FileExistsError(f"run folder {d} already exists")
    if resume_dir is not None and d.resolve() != Path(resume_dir).resolve():
        raise ValueError(f"the recorded sim_id/run_id give {d}, not the folder {resume_dir} being resumed")
    if expect and catalogue and expect.get("catalogue_sha256") not in (None, catalogue["sha256"]):
        raise ValueError(f"catalogue {catalogue['path']} changed since the run (sha256 differs)")
    grids = new_grids if new_grids is not None else load_grids_hdf5(gpath)
    from sl_cy.likelihood import LikelihoodKernel

    kernel = LikelihoodKernel(grids, selection=bool(eta), n_threads=n_jobs)   # validates the lenses
    if eta:
        from sl_cy.likelihood import _check_redshifts

        _check_redshifts(kernel)                  # before any file is written
    fm = kernel.forward_model
    n_free = len(_as_prior(prior).with_fixed(fixed).free_names if kernel.use_gamma else
                 _as_prior(prior).with_fixed({"mu_gamma": 1.0, "sigma_gamma": 0.2, **dict(fixed or {})}).free_names)
    if nwalkers < 2 * n_free:
        raise ValueError(f"nwalkers must be >= 2 x free parameters = {2 * n_free}, got {nwalkers}")
    # ---- tables (catalogue grids are written only now, after all checks) ---------------------
    if new_grids is not None:
        gpath.parent.mkdir(parents=True, exist_ok=True)
        save_grids_hdf5(gpath, new_grids, attrs=new_attrs)
    gattrs = _grids_attrs(gpath)
    if expect and expect.get("grids_key") not in (None, gattrs.get("config", {}).get("key")):
        raise ValueError(f"{gpath} was re-tabulated since the run (grids key differs); cannot reproduce it")
    sim = gpath.parent
    const = _sim_constants(sim)
    grids_sha = file_sha256(gpath)
    engine = selection
    selection = dict(enabled=bool(eta), forward_model_hash=fm.hash)
    A_call = None
    if eta:
        if A is None and engine == "quadrature":
            from sl_cy.selection import selection_for

            if verbose:
                print("A(eta): deterministic quadrature table (sl_cy.selection.selection_for)", flush=True)
            A_call = selection_for(fm, n_jobs=n_jobs, progress=bool(progress))
            A_call.n_threads = n_jobs
            selection.update(engine="quadrature", table_hash=A_call.config_hash,
                             table_file=None if A_call.path is None else str(A_call.path))
        elif A is None:
            if verbose:
                print(f"A(eta): selection bank of {bank_size} galaxies (seed {bank_seed})", flush=True)
            A_call, bank_path, reused = selection_bank_for(bank_size, bank_seed, root=root, forward_model=fm,
                                                           n_jobs=n_jobs, progress=bool(progress))
            selection.update(engine="bank", bank_size=bank_size, bank_seed=bank_seed, bank_hash=A_call.config_hash,
                             bank_file=str(bank_path), bank_reused=bool(reused))
        else:
            A_call = A
            selection.update(engine="user", A=repr(A)[:200])
    post = Posterior(kernel, A=A_call, prior=pr, fixed=fixed, use_selection=bool(eta))
    truth = const["truth"]
    params = dict(
        kind=RUN_KIND, command="infer", sim_id=str(sim_id), run_id=str(run_id), root=str(root.resolve()),
        out=str(out_root.resolve()), source="catalogue" if catalogue else ("mock" if truth else "tables"),
        catalogue=catalogue, nwalkers=nwalkers, nsteps=nsteps, discard=discard, seed=seed, mcmc_seed=mcmc_seed,
        eta=bool(eta), selection=selection, prior=_prior_to_dict(post.prior), fixed=dict(post.prior.fixed),
        discard_auto=discard_auto, free_names=list(post.free_names),
        initial_guess=None if initial_guess is None else np.asarray(initial_guess, float),
        n_jobs=n_jobs, save_plots=bool(save_plots), model=fm.model, forward_model=fm.to_dict(),
        grids=dict(file=str(gpath.resolve()), relative=str(Path("data", "tables", sim_id, GRIDS_FILE)),
                   sha256=grids_sha, key=gattrs.get("config", {}).get("key"), n_lenses=len(grids),
                   logMh_axis=gattrs["_logMh_axis"], gamma_axis=gattrs["_gamma_axis"],
                   quadrature=gattrs.get("config", {}).get("quadrature"),
                   adaptive_step=gattrs.get("config", {}).get("adaptive_step")),
        truth=truth, package_version=__version__, **dict(extra_params or {}))
    tables = dict(grids_file=str(gpath.resolve()), grids_sha256=grids_sha, grids_key=params["grids"]["key"],
                  mock_config_hash=const["mock_config_hash"], bank_hash=selection.get("bank_hash"),
                  selection_table_hash=selection.get("table_hash"),
                  catalogue_sha256=catalogue["sha256"] if catalogue else None)
    return _Prepared(d=d, sim_id=str(sim_id), run_id=str(run_id), started=started, params=params, tables=tables,
                     post=post, grids=grids, gpath=gpath, const=const, selection=selection, A_call=A_call,
                     eta=bool(eta))


def _sample_and_finish(prep: _Prepared, folder, *, resumed_from, t_start, progress, verbose) -> RunResult:
    """MCMC into the run folder's crash-safe chain, then summaries, plots, run.h5 and ``"complete"``.

    On any interruption or error the chain is made consistent at the last finished step and the
    folder marked ``"interrupted"`` (removed instead when an error struck before the first step
    of a new run: nothing was produced).
    """
    from sl_cy.chainstore import JournaledHDFBackend, recover_chain
    from sl_cy.inference import run_mcmc
    from sl_cy.runs import RUN_FILE, RunInterrupted, write_run_hdf5

    d, params, post, selection, A_call = folder.path, prep.params, prep.post, prep.selection, prep.A_call
    nsteps, nwalkers = params["nsteps"], params["nwalkers"]
    backend = None
    try:
        backend = JournaledHDFBackend(d / CHAIN_FILE, name="mcmc")
        if verbose:
            what = f"resuming at step {resumed_from} of {nsteps}" if resumed_from is not None else f"{nsteps} steps"
            print(f"MCMC: {nwalkers} walkers, {what}, over {post.free_names}, {len(prep.grids)} lenses, "
                  f"selection {'on' if prep.eta else 'off'} -> {d / CHAIN_FILE}", flush=True)
        t0 = time.perf_counter()
        ig = params.get("initial_guess")
        sampler = run_mcmc(post, nwalkers=nwalkers, nsteps=nsteps, initial_guess=None if ig is None else np.asarray(ig),
                           backend=backend, resume=resumed_from is not None, progress=bool(progress),
                           seed=params["mcmc_seed"], nproc=params["n_jobs"])
        backend.close()
        t_mcmc = time.perf_counter() - t0
        table, conv, files = _summaries(d, params, params["save_plots"])
        exports = {c: table[c].to_numpy() for c in table.columns}
        exports.update(names=list(table.index), verdict=conv["verdict"], converged=conv["converged"],
                       tau=np.atleast_1d(conv["tau"]), acceptance_mean=conv["acceptance_mean"],
                       mcmc_wall_time_s=t_mcmc)
        med = post.full_eta(table["median"].to_numpy())
        if prep.eta and selection.get("engine") == "bank":
            a, ess = A_call.evaluate(med, return_ess=True, warn=False)
            exports.update(A_at_median=a, A_ess_at_median=ess)
            selection.update(A_at_median=a, A_ess_at_median=ess)
        elif prep.eta and selection.get("engine") == "quadrature":
            a = float(np.asarray(A_call(med[None, :])).reshape(-1)[0])
            exports.update(A_at_median=a)
            selection.update(A_at_median=a)
        meta = dict(sim_id=prep.sim_id, run_id=prep.run_id, package_version=__version__, tables=prep.tables,
                    started_utc=folder.metadata.get("started_utc", prep.started))
        write_run_hdf5(d / RUN_FILE, metadata=meta, params=params, truth=prep.const["truth"],
                       samples=prep.const["lenses"], observed=pd.DataFrame([g.observed for g in prep.grids]), grids_path=params["grids"]["relative"],
                       chain=sampler.get_chain(), log_prob=sampler.get_log_prob(),
                       acceptance=sampler.acceptance_fraction, exports=exports)
        backend.journal.unlink(missing_ok=True)          # chain.h5 is whole: the journal has served
        folder.mark_complete(step=nsteps, nsteps=nsteps, wall_time_s=time.perf_counter() - t_start,
                             mcmc_wall_time_s=t_mcmc, convergence=conv["verdict"], selection=selection)
    except BaseException as exc:
        if backend is not None:
            backend.close()
        try:
            step = recover_chain(d / CHAIN_FILE).steps
        except Exception as err:                  # noqa: BLE001 - report, never mask the interruption
            step, reason_extra = None, f"; the chain could not be checked: {err}"
        else:
            reason_extra = ""
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not interrupted and step == 0 and resumed_from is None:
            folder.unlock()
            shutil.rmtree(d, ignore_errors=True)          # failed before producing anything
            raise
        reason = _interrupt_reason(exc)
        try:
            folder.mark_interrupted(step=step, nsteps=nsteps, reason=reason + reason_extra)
        except Exception as err:                  # noqa: BLE001 - e.g. a full disk: it still resumes as "killed"
            reason_extra += f"; metadata.json could not be updated: {err}"
        msg = (f"run interrupted at step {step} of {nsteps} ({reason}{reason_extra}); its folder {d} is kept: "
               f"continue it with `sl-cy resume {d}` (Python: sl_cy.pipeline.resume)")
        if interrupted:
            raise RunInterrupted(msg, run_dir=d, step=step, nsteps=nsteps, reason=reason) from exc
        if hasattr(exc, "add_note"):
            exc.add_note(msg)
        raise
    finally:
        if backend is not None:
            backend.close()
        folder.unlock()
    files = {"params.json": d / "params.json", "metadata.json": d / "metadata.json", "chain.h5": d / CHAIN_FILE,
             "run.h5": d / RUN_FILE, **files, "grids.h5": prep.gpath}
    if selection.get("bank_file"):
        files["A(eta) bank"] = Path(selection["bank_file"])
    if selection.get("table_file"):
        files["A(eta) table"] = Path(selection["table_file"])
    res = RunResult(d, prep.sim_id, prep.run_id, table, conv, files, time.perf_counter() - t_start)
    if verbose:
        res.print()
    return res


# --------------------------------------------------------------------------------------------
# report / rerun / resume
# --------------------------------------------------------------------------------------------
def _read_run(run_path):
    from sl_cy.runs import read_params

    d = Path(run_path)
    params = read_params(d)
    if params.get("kind") != RUN_KIND:
        raise ValueError(f"{d}/params.json is not an sl_cy run (kind {params.get('kind')!r})")
    return d, params


def report(run_path, save_plots: bool = True, verbose: bool = False) -> RunResult:
    """Re-create summary.csv, summary.json and the plots of a run folder from its stored chain.

    Parameters
    ----------
    run_path : str or Path
        ``inference/<sim_id>/<run_id>``.
    save_plots : bool
        Also redraw corner.png, traces.png and log_prob.png.
    verbose : bool
        Print the summary and the files.

    Returns
    -------
    RunResult

    Performance
    -----------
    Seconds (reading the chain, autocorrelation times, plots); nothing is re-sampled.

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, eta=False, n_jobs=1, progress=False,
    ...           save_plots=False)
    >>> report(r.run_dir, save_plots=False).summary.shape[0]
    6
    """
    t0 = time.perf_counter()
    d, params = _read_run(run_path)
    table, conv, files = _summaries(d, params, save_plots)
    res = RunResult(d, params["sim_id"], params["run_id"], table, conv, files, time.perf_counter() - t0)
    if verbose:
        res.print()
    return res


def rerun(run_path, out=None, run_id=None, progress: bool = True, n_jobs=None, verbose: bool = False) -> RunResult:
    """Run an inference again from its ``params.json``; the same seed gives the identical chain.

    Parameters
    ----------
    run_path : str or Path
        ``<root>/inference/<sim_id>/<run_id>`` of the run to reproduce; the tables are read from
        ``<root>/data/`` (the grids key and catalogue sha256 must match the recorded ones).
    out : str or Path, optional
        Root folder of the new run folder (default the same ``<root>``; the new run gets a new
        run_id, ``inference/<sim_id>/<new run_id>``).
    run_id : str, optional
    progress : bool
    n_jobs : int, optional
        Override the recorded worker count (results do not depend on it).
    verbose : bool

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=5, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> r2 = rerun(r.run_dir, progress=False)
    >>> import h5py
    >>> with h5py.File(r.run_dir / "chain.h5") as a, h5py.File(r2.run_dir / "chain.h5") as b:
    ...     bool((a["mcmc/chain"][()] == b["mcmc/chain"][()]).all())
    True
    """
    d, p = _read_run(run_path)
    root = _tables_root(d, p)
    if p["selection"].get("engine") == "user":
        raise ValueError("this run used a user-supplied A(eta) callable; it cannot be re-run from params.json")
    kw = _infer_kwargs(p, root)
    kw["extra_params"]["rerun_of"] = str(d.resolve())
    return infer(p["sim_id"], out=out if out is not None else d.resolve().parents[2], run_id=run_id, progress=progress,
                 n_jobs=p["n_jobs"] if n_jobs is None else n_jobs, verbose=verbose, **kw)


def _tables_root(d: Path, p: dict) -> Path:
    """The root holding a run's tables: the run folder's own root (``<root>/inference/<sim>/<run>``)
    when its grids are there (a moved working folder), else the recorded one."""
    here = d.resolve().parents[2]
    if (here / "data" / "tables" / p["sim_id"]).is_dir() or not Path(p.get("root", here)).is_dir():
        return here
    return Path(p["root"])


def _infer_kwargs(p: dict, root: Path) -> dict:
    """The keywords of :func:`infer` that re-create a run from its params.json (tables under ``root``)."""
    cat = p.get("catalogue")
    sel = p["selection"]
    return dict(observed=cat["path"] if cat else None, unit=cat["unit"] if cat else "kpc", root=root,
                nwalkers=p["nwalkers"], nsteps=p["nsteps"], seed=p["seed"], eta=p["eta"],
                selection=sel.get("engine", "bank"), bank_size=sel.get("bank_size", DEFAULT_BANK_SIZE),
                bank_seed=sel.get("bank_seed"), prior=_prior_from_dict(p["prior"]), fixed=p["fixed"],
                save_plots=p["save_plots"], discard=None if p.get("discard_auto") else p["discard"],
                initial_guess=p.get("initial_guess"),
                zl=cat["zl"] if cat else None, zs=cat["zs"] if cat else None,
                forward_model=cat.get("forward_model") if cat else None,
                logMh_grid=p["grids"]["logMh_axis"], gamma_grid=p["grids"]["gamma_axis"],
                expect=dict(grids_key=p["grids"].get("key"), catalogue_sha256=cat["sha256"] if cat else None),
                extra_params={k: v for k, v in p.items() if k == "pipeline"})


#: params.json entries that define the chain: a resumed run must find them unchanged.
_CHAIN_DEFINING = ("seed", "mcmc_seed", "nwalkers", "eta", "free_names", "prior", "fixed", "initial_guess",
                   "forward_model")


def _chain_mismatch(old: dict, new: dict) -> str | None:
    """The first chain-defining difference between a recorded and a re-created params.json."""
    from sl_cy.io import canonical_json

    same = lambda a, b: canonical_json(a) == canonical_json(b)
    for k in _CHAIN_DEFINING:
        if not same(old.get(k), new.get(k)):
            return f"{k} (recorded {canonical_json(old.get(k))[:120]}, now {canonical_json(new.get(k))[:120]})"
    for k in ("engine", "enabled", "bank_hash", "table_hash", "forward_model_hash"):
        if not same(old["selection"].get(k), new["selection"].get(k)):
            return f"the selection normaliser's {k}"
    if old["grids"].get("sha256") != new["grids"].get("sha256"):
        return "the grids file (sha256 differs)"
    return None


def resume(run_path, nsteps=None, *, n_jobs=None, progress: bool = True, verbose: bool = False) -> RunResult:
    """Continue an interrupted or killed run to its requested total of steps and finish it.

    The chain is continued from its last finished step with the sampler's recorded random state,
    so the final chain is identical, bit for bit, to an uninterrupted run with the same seed,
    however many times the run was interrupted. A step torn by a SIGKILL (or a power cut) is
    dropped first (:func:`sl_cy.chainstore.recover_chain`). The tables are re-used after checking
    their hashes against ``params.json``; then summaries, plots and ``run.h5`` are written and
    ``metadata.json`` says ``"complete"``, exactly as for an uninterrupted run.

    Parameters
    ----------
    run_path : str or Path
        ``<root>/inference/<sim_id>/<run_id>`` (tables under ``<root>/data/``).
    nsteps : int, optional
        New total number of steps (default the recorded one). Larger extends the run (also a
        complete one); the default burn-in (``nsteps // 4``, unless ``discard`` was given) follows.
    n_jobs : int, optional
        Override the recorded worker count (results do not depend on it).
    progress, verbose : bool

    Returns
    -------
    RunResult

    Raises
    ------
    sl_cy.runs.RunLockedError
        A live process is still writing the folder.
    ValueError
        The tables or settings that define the chain changed since the run, ``nsteps`` is below the
        steps already made, or the chain cannot be read at all.

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> d = tempfile.mkdtemp()
    >>> sid, _, _ = generate_and_save_mock_tabulate(20_000, seed=3, root=d, show_progress=False)
    >>> r = infer(sid, root=d, nwalkers=14, nsteps=6, seed=1, selection="bank", bank_size=3000, n_jobs=1,
    ...           progress=False, save_plots=False)
    >>> r2 = resume(r.run_dir, nsteps=9, progress=False)          # extend a finished run
    >>> import json; json.loads((r2.run_dir / "metadata.json").read_text())["status"]
    'complete'
    """
    from sl_cy.chainstore import ChainUnreadableError, recover_chain
    from sl_cy.runs import RunFolder, utc_now

    t_start = time.perf_counter()
    d, p = _read_run(run_path)
    d = d.resolve()
    if p["selection"].get("engine") == "user":
        raise ValueError("this run used a user-supplied A(eta) callable; resume it from Python with "
                         "sl_cy.inference.run_mcmc(..., resume=True) on its chain.h5")
    folder = RunFolder(d)
    before = folder.state
    folder.lock()
    try:
        total = p["nsteps"] if nsteps is None else _check_pos_int("nsteps", nsteps, 1)
        try:
            rec = recover_chain(d / CHAIN_FILE, dry_run=True)        # nothing is changed before all checks
        except ChainUnreadableError as err:
            raise ValueError(str(err)) from None
        if rec.steps > total:
            raise ValueError(f"nsteps={total} is below the {rec.steps} steps already in {d / CHAIN_FILE}")
        if before == "complete" and total == p["nsteps"] and rec.steps == total:
            folder.unlock()
            if verbose:
                print(f"{d} is already complete ({total} steps); nothing to resume")
            return report(d, save_plots=False, verbose=verbose)
        auto = p.get("discard_auto", p["discard"] == p["nsteps"] // 4)
        discard = total // 4 if auto else p["discard"]
        if discard >= total:
            raise ValueError(f"discard ({discard}) must be smaller than nsteps ({total})")
        kw = _infer_kwargs(p, _tables_root(d, p))
        kw.update(nsteps=total, discard=discard)
        if verbose:
            fix = [a for a in rec.actions if a != "nothing stored"]
            print(f"resuming {d} ({before}, {rec.steps} of {total} steps in the chain"
                  + (f"; to repair: {'; '.join(fix)}" if fix else "") + ")", flush=True)
        prep = _prepare(p["sim_id"], out=d.parents[2], run_id=d.name, progress=progress, verbose=verbose,
                        n_jobs=p["n_jobs"] if n_jobs is None else n_jobs, resume_dir=d, **kw)
        why = _chain_mismatch(p, prep.params)
        if why is not None:
            raise ValueError(f"cannot resume {d}: {why} changed since the run, so the continued chain would not be "
                             "this run's chain; start a new run instead (`sl-cy rerun` re-creates it in one go)")
        rec = recover_chain(d / CHAIN_FILE)
        params = dict(p, nsteps=total, discard=discard, discard_auto=bool(auto), n_jobs=prep.params["n_jobs"])
        prep.params = params
        folder.write_params(params)
        resumes = list(folder.metadata.get("resumes") or []) + [
            dict(utc=utc_now(), from_step=rec.steps, state_before=before, repairs=rec.actions)]
        folder.mark_running(step=rec.steps, nsteps=total, resumes=resumes)
    except BaseException:
        folder.unlock()
        raise
    return _sample_and_finish(prep, folder, resumed_from=rec.steps, t_start=t_start, progress=progress,
                              verbose=verbose)


# --------------------------------------------------------------------------------------------
# the main job
# --------------------------------------------------------------------------------------------
def run_pipeline(n_galaxy=DEFAULT_N_GALAXY, seed=None, sim_id=None, root=".", *, nwalkers=DEFAULT_NWALKERS,
                 nsteps=DEFAULT_NSTEPS, n_jobs=-1, eta=True, save_plots=True, bank_size=DEFAULT_BANK_SIZE,
                 progress=True, overwrite=False, confirm: Callable[[str], bool] | None = None, run_id=None,
                 prior=None, fixed=None, discard=None, selection=DEFAULT_SELECTION, mock_kwargs: Mapping | None = None,
                 verbose=True) -> RunResult:
    """Simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots and run file (``sl-cy run``).

    Parameters
    ----------
    n_galaxy : int
        Galaxies of the mock (default 1e5: ~430 detected lenses).
    seed : int, optional
        Root seed (fresh entropy when None, recorded): the mock uses it, the bank and the
        sampler use derived seeds.
    sim_id : str, optional
        Table folder (default ``sim_<hash8>`` of the mock configuration, as ``sl-cy simulate``).
    root : str or Path
        Working folder: ``data/tables/<sim_id>/``, ``data/banks/``, ``inference/<sim_id>/<run_id>/``.
    nwalkers, nsteps, n_jobs, eta, save_plots, bank_size, progress, run_id, prior, fixed, discard, selection :
        As in :func:`infer`.
    overwrite : bool
        Replace ``mock.h5`` of another configuration under the same sim_id (otherwise refused).
    confirm : callable(question) -> bool, optional
        Asked before re-using existing tables and before overwriting (``--interact``); without
        it existing matching tables are re-used and mismatching ones refused unless ``overwrite``.
    mock_kwargs : mapping, optional
        Passed to :func:`sl_cy.mock.simulate_mock` (eta, detection, nbkg, zl, zs, model, ...).
    verbose : bool
        Print each stage and where each artefact went.

    Returns
    -------
    RunResult

    Performance
    -----------
    Defaults on the idle 2-core machine: mock, grids and A(eta) table ~12 s (table cached after
    the first run), MCMC 3000 steps x ~0.08 s: 4 min 13 s in all (~6 min when another job holds a
    core; see README).

    Examples
    --------
    >>> import tempfile
    >>> r = run_pipeline(20_000, seed=1, root=tempfile.mkdtemp(), nwalkers=14, nsteps=5, selection="bank",
    ...                  bank_size=3000, n_jobs=1, progress=False, save_plots=False, verbose=False)
    >>> r.run_dir.parent.parent.name
    'inference'
    """
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID
    from sl_cy.io import read_attrs
    from sl_cy.mock import mock_config
    from sl_cy.parallel import resolve_n_jobs
    from sl_cy.tables import GRIDS_FILE, MOCK_FILE, generate_and_save_mock_tabulate, sim_dir, tabulate_sim

    t0 = time.perf_counter()
    n_galaxy = _check_pos_int("n_galaxy", n_galaxy, 1)
    check_writable(root)
    seed = _check_seed(seed)
    n_jobs = resolve_n_jobs(n_jobs)
    mk = dict(mock_kwargs or {})
    _, chash = mock_config(n_galaxy, seed=seed, **mk)
    sim_id = sim_id or f"sim_{chash[:8]}"
    d = sim_dir(sim_id, root)
    mock_path, grids_path = d / MOCK_FILE, d / GRIDS_FILE
    show = bool(progress)
    say = print if verbose else (lambda *a, **k: None)
    regenerate = True
    if mock_path.exists():
        import h5py

        try:
            with h5py.File(mock_path, "r") as f:
                old = read_attrs(f).get("config_hash")
        except OSError:
            old = None
        if old == chash:
            regenerate = bool(overwrite) or (confirm is not None and not confirm(
                f"{d} already holds this mock (config hash {chash[:12]}); re-use it?"))
        elif overwrite or (confirm is not None and confirm(
                f"{mock_path} holds ANOTHER configuration; overwrite it?")):
            regenerate = True
        else:
            raise FileExistsError(f"{mock_path} exists with another configuration; use --overwrite, --interact or "
                                  "another --sim-id")
    if regenerate:
        say(f"[1-2/4] simulate {n_galaxy} galaxies (seed {seed}) and tabulate -> {d}", flush=True)
        generate_and_save_mock_tabulate(n_galaxy, seed, sim_id, root=root, n_jobs=n_jobs, show_progress=show, **mk)
    else:
        say(f"[1/4] re-using mock {mock_path}", flush=True)
        if _grids_up_to_date(grids_path, chash, DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID):
            say(f"[2/4] re-using grids {grids_path}", flush=True)
        else:
            say(f"[2/4] tabulate -> {grids_path}", flush=True)
            tabulate_sim(sim_id, root, n_jobs=n_jobs, show_progress=show, overwrite=True)
    say("[3/4] A(eta) and [4/4] MCMC", flush=True)
    pipe = dict(pipeline=dict(n_galaxy=n_galaxy, mock_seed=seed, mock_config_hash=chash, mock_kwargs=mk))
    res = infer(sim_id, root=root, nwalkers=nwalkers, nsteps=nsteps, seed=seed, eta=eta, bank_size=bank_size,
                prior=prior, fixed=fixed, n_jobs=n_jobs, progress=progress, save_plots=save_plots, run_id=run_id,
                discard=discard, selection=selection, extra_params=pipe, verbose=verbose)
    res.files = {"mock.h5": mock_path, **res.files}
    res.wall_time_s = time.perf_counter() - t0
    if verbose:
        print(f"  {'mock.h5':<14} {mock_path}")
        print(f"total wall time {res.wall_time_s:.1f} s")
    return res


# --------------------------------------------------------------------------------------------
# streaming posterior
# --------------------------------------------------------------------------------------------
def compute_posterior_from_file(eta, grids_file, *, A=None, prior=None, fixed=None, block: int = 256,
                                selection: bool = True, model=None, n_threads=None):
    """log posterior of full eta vector(s), streamed from a ``grids.h5`` ``block`` lenses at a time.

    Equal to ``Posterior(all grids, A=A, prior=prior, fixed=fixed, use_selection=selection)(eta)``
    (same per-lens sums, summed once at the end) but never holds more than one block of grids in
    memory.

    Parameters
    ----------
    eta : array (6,) or (n, 6)
        Full eta (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma).
    grids_file : str or Path
        Written by :func:`sl_cy.grids.save_grids_hdf5` (``data/tables/<sim_id>/grids.h5``).
    A : Selection, optional
        Selection normaliser (default: the deterministic quadrature of the grids' forward model).
    prior : Prior or mapping, optional
        Default the top-hat box. ``fixed`` parameters (and mu_gamma, sigma_gamma for a one-node
        gamma grid) are not scored.
    fixed : mapping, optional
    block : int
        Lenses per read.
    selection : bool
        False switches the selection term off (the seed's ``--no-eta``).
    model : str, optional
        Checked against the grids' forward model when given (seed signature).
    n_threads : int, optional
        OpenMP threads of the kernel.

    Returns
    -------
    float (one eta) or ndarray (n,); -inf outside the prior and A's bounds.

    Performance
    -----------
    The kernel cost (n_lens x n_eta x ~20 us) plus reading the file once per call.

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> from sl_cy.grids import load_grids_hdf5
    >>> from sl_cy.likelihood import Posterior
    >>> sid, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=tempfile.mkdtemp(), show_progress=False)
    >>> e = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
    >>> bool(abs(compute_posterior_from_file(e, gp, block=16) - Posterior(load_grids_hdf5(gp))(e)) < 1e-10)
    True
    """
    import h5py

    from sl_cy.grids import load_grids_hdf5
    from sl_cy.likelihood import LikelihoodKernel, Posterior

    block = _check_pos_int("block", block, 1)
    e = np.asarray(eta, dtype=float)
    one = e.ndim == 1
    e2 = np.atleast_2d(e)
    if e2.shape[-1] != 6:
        raise ValueError(f"eta must have shape (6,) or (n, 6), got {e.shape}")
    with h5py.File(grids_file, "r") as f:
        n_lens = int(f["valid"].shape[0])
    # the first block gives the prior (with fixed values), the normaliser and the support
    head = Posterior(load_grids_hdf5(grids_file, lenses=np.arange(min(block, n_lens))), A=A,
                     prior=None if prior is None else _as_prior(prior), fixed=fixed, use_selection=selection,
                     model=model, n_threads=n_threads)
    out = np.full(len(e2), -np.inf)
    ok = head.in_support(e2)
    if ok.any():
        eo = np.ascontiguousarray(e2[ok])
        ll = np.zeros(len(eo))
        for s in range(0, n_lens, block):
            grids = load_grids_hdf5(grids_file, lenses=np.arange(s, min(s + block, n_lens)))
            ll += LikelihoodKernel(grids, selection=selection, n_threads=n_threads).per_lens(eo).sum(axis=1)
        if selection:
            ll -= n_lens * head._log_A(eo)
        out[ok] = np.atleast_1d(head.prior.logpdf(eo)) + ll
    return float(out[0]) if one else out
