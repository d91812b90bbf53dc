"""The log posterior streamed from a ``grids.h5`` in blocks of lenses (bounded memory)."""
from __future__ import annotations

import numpy as np

from sl_cy.pipeline.config import as_prior, check_pos_int

__all__ = ["compute_posterior_from_file"]


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

    block = check_pos_int("block", block, 1)
    e = np.asarray(eta, dtype=float)
    one = e.ndim == 1
    e2 = np.atleast_2d(e)
    if e2.shape[-1] != 6:
        raise ValueError(f"eta must have shape (6,) or (n, 6), got {e.shape}")
    with h5py.File(grids_file, "r") as f:
        n_lens = int(f["valid"].shape[0])
    # the first block gives the prior (with fixed values), the normaliser and the support
    head = Posterior(load_grids_hdf5(grids_file, lenses=np.arange(min(block, n_lens))), A=A,
                     prior=None if prior is None else as_prior(prior), fixed=fixed, use_selection=selection,
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
