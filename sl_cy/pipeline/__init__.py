"""End-to-end pipeline: simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots and run folder.

Thin Python over the existing pieces (:mod:`sl_cy.tables`, :mod:`sl_cy.selection`,
:mod:`sl_cy.likelihood`, :mod:`sl_cy.inference`, :mod:`sl_cy.runs`), one module per concern:

* :mod:`~sl_cy.pipeline.config` -- :class:`RunConfig`, the run's settings (validated; round-trips
  through ``params.json``), the defaults and :func:`derived_seed`;
* :mod:`~sl_cy.pipeline.inputs` -- stage 1: the grids of a simulation or a catalogue;
* :mod:`~sl_cy.pipeline.normaliser` -- stage 2: the selection normaliser A(eta);
* :mod:`~sl_cy.pipeline.sampling` -- stage 3: MCMC into the crash-safe chain, finishing the folder;
* :mod:`~sl_cy.pipeline.summaries` -- stage 4: summaries, convergence, plots; :class:`RunResult`;
* :mod:`~sl_cy.pipeline.jobs` -- :func:`infer`, :func:`resume`, :func:`rerun`, :func:`report`;
* :mod:`~sl_cy.pipeline.main_job` -- :func:`run_pipeline` (``sl-cy run``);
* :mod:`~sl_cy.pipeline.streaming` -- :func:`compute_posterior_from_file`.

The run folder's life cycle is :class:`sl_cy.runs.RunFolder`'s; signals are the CLI's business
(it turns SIGTERM into KeyboardInterrupt), the library installs no handler.

The jobs:

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
from sl_cy.pipeline.config import (DEFAULT_BANK_SIZE, DEFAULT_N_GALAXY, DEFAULT_NSTEPS, DEFAULT_NWALKERS,
                                   DEFAULT_SELECTION, RunConfig, derived_seed)
from sl_cy.pipeline.inputs import check_writable, file_sha256
from sl_cy.pipeline.jobs import infer, report, rerun, resume, run_posterior
from sl_cy.pipeline.main_job import run_pipeline
from sl_cy.pipeline.normaliser import selection_bank_for
from sl_cy.pipeline.streaming import compute_posterior_from_file
from sl_cy.pipeline.summaries import RunResult

__all__ = [
    "DEFAULT_NWALKERS", "DEFAULT_NSTEPS", "DEFAULT_BANK_SIZE", "DEFAULT_N_GALAXY", "DEFAULT_SELECTION", "RunConfig",
    "RunResult", "derived_seed", "file_sha256", "check_writable", "selection_bank_for", "infer", "report", "rerun",
    "resume", "run_posterior", "run_pipeline", "compute_posterior_from_file",
]
