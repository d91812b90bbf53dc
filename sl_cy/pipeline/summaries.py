"""Stage 4 of an inference: summaries, convergence and plots of a run folder's stored chain.

:func:`summarise` writes ``summary.csv``, ``summary.json`` and the plots from ``chain.h5``; it is
shared by a finishing run and by :func:`sl_cy.pipeline.report`. :class:`RunResult` is what every
job of the pipeline returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["RunResult", "StoredChain", "summarise", "CHAIN_FILE", "SUMMARY_CSV", "SUMMARY_JSON", "PLOTS"]

CHAIN_FILE = "chain.h5"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
PLOTS = {"corner": "corner.png", "traces": "traces.png", "log_prob": "log_prob.png"}


@dataclass(kw_only=True)
class RunResult:
    """What :func:`infer`, :func:`report`, :func:`rerun` and :func:`run_pipeline` return.

    Attributes
    ----------
    run_dir : Path
        ``<root>/inference/<sim_id>/<run_id>``.
    sim_id, run_id : str
    summary : pandas.DataFrame
        One row per free parameter (median, mean, std, lo68/hi68, lo95/hi95, truth, tau; ArviZ's
        ess_bulk, ess_tail and r_hat from ``posterior.nc`` when it was written or read).
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
        cols = [c for c in ("truth", "median", "lo68", "hi68", "lo95", "hi95", "tau", "ess_bulk", "ess_tail", "r_hat")
                if c in self.summary]
        print(self.summary[cols].to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"convergence: {self.convergence['verdict']}")
        for name, p in self.files.items():
            print(f"  {name:<14} {p}")


class StoredChain:
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


def summarise(d: Path, params: dict, save_plots: bool):
    """Summary table, convergence report and plots from ``d/chain.h5``; returns (table, conv, files)."""
    from sl_cy.inference import convergence_report, credible_intervals, plot_corner, plot_log_prob, plot_traces
    from sl_cy.io import to_jsonable, write_json_atomic

    names = list(params["free_names"])
    ch = StoredChain(d / CHAIN_FILE, names)
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
