"""Resuming a chain: run N steps, "interrupt", resume to 2N; identical to an uninterrupted run (~15 s).

Run:  python examples/resume_chain.py [output folder]

sl_cy.run_mcmc writes every step to the emcee HDF5 backend (``backend_file``). With
``resume=True`` it continues the stored chain up to ``nsteps`` in total, restoring the sampler's
random state from the file, so the result is bit-for-bit the chain an uninterrupted run with the
same seed gives. A file that exists but cannot be read (a process killed in the middle of writing
a step can leave one) is refused, never overwritten. The run folders of ``sl-cy run`` / ``infer``
also journal every step so that a killed run always resumes: ``sl-cy resume PATH``
(:func:`sl_cy.pipeline.resume`).
"""
import sys
from pathlib import Path

import numpy as np

import sl_cy


def main(out=".", n=20):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, observed = sl_cy.run_mock_simulation(30_000, seed=4, show_progress=False)
    grids = sl_cy.tabulate_likelihood_grids(observed)
    post = sl_cy.Posterior(grids, fixed={"mu_gamma": 1.0, "sigma_gamma": 0.2})   # selection term on by default
    kw = dict(nwalkers=12, seed=9, progress=False)

    part = out / "resumed_chain.h5"
    for p in (part, out / "full_chain.h5"):
        p.unlink(missing_ok=True)
    s = sl_cy.run_mcmc(post, nsteps=n, backend_file=part, **kw)                 # ... then "interrupted"
    print(f"first session: {s.iteration} steps stored in {part}")
    s = sl_cy.run_mcmc(post, nsteps=2 * n, backend_file=part, resume=True, **kw)
    print(f"resumed session: chain now has {s.iteration} steps")
    full = sl_cy.run_mcmc(post, nsteps=2 * n, backend_file=out / "full_chain.h5", **kw)
    same = np.array_equal(s.get_chain(), full.get_chain()) and np.array_equal(s.get_log_prob(), full.get_log_prob())
    print(f"resumed chain == uninterrupted chain: {same}")
    return same


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
