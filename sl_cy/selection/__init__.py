"""Selection normaliser A(eta): one interface (:mod:`sl_cy.selection.base`), three engines.

* :mod:`~sl_cy.selection.quadrature` -- :class:`SelectionQuadrature`, the deterministic default:
  the per-galaxy selection rate T(logM*, logRe, logMh, gamma_in) tabulated once, the population
  integrated against it by product quadrature (smooth in eta, no Monte-Carlo noise);
  :func:`selection_for` returns the one of a forward model (built once, cached on disk).
* :mod:`~sl_cy.selection.bank` -- :class:`SelectionBank`, importance sampling from an
  eta-independent Monte-Carlo bank (for validation; reports its effective sample size).
* :mod:`~sl_cy.selection.tables` -- :class:`AEtaTable`, A tabulated over some eta components
  from either engine, stored as ``Aeta_<axes>_<sizes>.h5``.
"""
from sl_cy.selection.base import ESS_WARN_THRESHOLD, Selection, SelectionWarning, eta_batch
from sl_cy.selection.bank import (BankProposal, SelectionBank, bank_config, build_selection_bank, load_bank,
                                  save_bank)
from sl_cy.selection.bank import _check_seed, _ktable_for  # noqa: F401  (private helpers of sl_cy.pipeline, benchmarks)
from sl_cy.selection.quadrature import (SELECTION_TABLE_VERSION, SelectionQuadrature, build_selection_table,
                                        selection_for, selection_table_axes, selection_table_config)
from sl_cy.selection.tables import (AEtaTable, cached_A, compute_Aeta_grid, load_A_eta_table, parse_axes,
                                    table_filename, write_A_eta_hdf5, write_A_eta_hdf5_1d)

__all__ = [
    "Selection", "SelectionWarning", "ESS_WARN_THRESHOLD", "eta_batch", "BankProposal", "SelectionBank",
    "bank_config", "build_selection_bank", "load_bank", "save_bank", "SelectionQuadrature", "build_selection_table",
    "selection_for", "selection_table_axes", "selection_table_config", "SELECTION_TABLE_VERSION", "AEtaTable",
    "cached_A", "compute_Aeta_grid", "load_A_eta_table", "parse_axes", "table_filename", "write_A_eta_hdf5",
    "write_A_eta_hdf5_1d",
]
