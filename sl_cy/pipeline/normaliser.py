"""Stage 2 of an inference: the selection normaliser A(eta) of the grids' forward model.

:func:`normaliser_for` returns the engine a run uses -- the deterministic quadrature table
(default, cached by its configuration hash in :func:`sl_cy.cache.cache_dir`), the Monte-Carlo
bank (:func:`selection_bank_for`, cached under ``<root>/data/banks/``) or the user's callable --
and what ``params.json`` records of it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["selection_bank_for", "normaliser_for", "BANK_DIR"]

#: Folder of the Monte-Carlo banks under the working root.
BANK_DIR = ("data", "banks")


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
    from sl_cy.cache import cache_path, load_or_build
    from sl_cy.io import config_hash
    from sl_cy.selection import bank_config, build_selection_bank, load_bank

    h = config_hash(bank_config(n, seed, forward_model=forward_model))
    path = cache_path("bank", h, folder=Path(root).joinpath(*BANK_DIR))
    bank, reused = load_or_build(
        path, load=lambda p: load_bank(p, expected_hash=h),
        build=lambda: build_selection_bank(n, seed, forward_model=forward_model, n_jobs=n_jobs, progress=progress),
        save=lambda b, p: b.save(p), what="selection bank")
    return bank, path, reused


def normaliser_for(fm, config, *, A=None, root=".", progress=False, verbose=False, n_lenses=None):
    """The A(eta) engine of a run and its ``params.json`` record.

    Parameters
    ----------
    fm : ForwardModel
        The grids' forward model (A must be built from the same one).
    config : RunConfig
        ``use_selection``, ``selection`` (engine), ``bank_size``, ``bank_seed``, ``n_jobs``.
    A : callable, optional
        The user's own A(eta_batch) (recorded as engine ``"user"``).
    root : str or Path
        Working root (the bank cache).
    progress, verbose : bool
    n_lenses : int, optional
        The number of lenses: the quadrature engine is built on a table refined where this many
        lenses need it (``sl_cy.selection.selection_for(fm, n_lenses=...)``).

    Returns
    -------
    (A or None when the selection term is off, dict for ``params.json["selection"]``)
    """
    if not config.use_selection:
        return None, dict(enabled=False, forward_model_hash=fm.hash)
    record = dict(config.to_params()["selection"], forward_model_hash=fm.hash)
    if A is not None:
        record.update(engine="user", A=repr(A)[:200])
        return A, record
    if config.selection == "quadrature":
        from sl_cy.selection import selection_for

        if verbose:
            print("A(eta): deterministic quadrature table (sl_cy.selection.selection_for)", flush=True)
        A = selection_for(fm, n_lenses=n_lenses, n_jobs=config.n_jobs, progress=bool(progress))
        A.n_threads = config.n_jobs
        record.update(table_hash=A.config_hash, table_file=None if A.path is None else str(A.path))
        return A, record
    if verbose:
        print(f"A(eta): selection bank of {config.bank_size} galaxies (seed {config.bank_seed})", flush=True)
    A, path, reused = selection_bank_for(config.bank_size, config.bank_seed, root=root, forward_model=fm,
                                         n_jobs=config.n_jobs, progress=bool(progress))
    record.update(bank_hash=A.config_hash, bank_file=str(path), bank_reused=bool(reused))
    return A, record
