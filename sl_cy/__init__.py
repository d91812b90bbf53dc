"""sl_cy: statistical strong lensing with a compiled (Cython) core.

Simulate populations of galaxy-scale lenses (de Vaucouleurs stars + generalised-NFW halo),
precompute per-lens likelihood grids and infer the population hyper-parameters
eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma) with a selection correction.

The top level holds what a user calls (the seed's public names and the main entry points);
everything else is importable from its module (``sl_cy.lensing``, ``sl_cy.population``,
``sl_cy.mock``, ``sl_cy.grids``, ``sl_cy.selection``, ``sl_cy.likelihood``, ``sl_cy.inference``,
...). Reference implementations for tests and benchmarks live in :mod:`sl_cy.testing`.
"""
from sl_cy._version import __version__
from sl_cy import _check_build

_check_build.check_build()   # a clear ImportError (what is missing, how to build it) for an unbuilt source tree
from sl_cy.cosmology import Dang, Sigma_cr, rhoc
from sl_cy.lensing import (LensModel, compute_detJ, forward_solve, invert_images, lens_properties,
                           solve_lens_parameters_from_obs, solve_single_lens)
from sl_cy.config import SCATTER, SurveyConfig
from sl_cy.population import MODEL_PARAMS, generate_samples
from sl_cy.mock import run_mock_simulation, simulate_mock
from sl_cy.photometry import selection_function, mag_likelihood
from sl_cy.ktable import build_K_table, save_K_table_hdf5, load_K_interpolator
from sl_cy.grids import LensGrid, tabulate_likelihood_grids
from sl_cy.forward import ForwardModel
from sl_cy.selection import (Selection, SelectionBank, SelectionQuadrature, build_selection_table, selection_for,
                             write_A_eta_hdf5)
from sl_cy.likelihood import Prior, Uniform, Gaussian, Posterior, log_prior, log_likelihood, log_posterior
from sl_cy.inference import run_mcmc, credible_intervals, convergence_report, plot_corner
from sl_cy.runs import write_run_hdf5
from sl_cy.arviz_export import to_arviz
from sl_cy.sbc import validate
from sl_cy.catalogue import read_catalogue
from sl_cy.tables import generate_and_save_mock_tabulate, tabulate_sim

__all__ = [
    "__version__",
    # the seed's public names (DESIGN.md section 4)
    "run_mock_simulation", "generate_samples", "MODEL_PARAMS", "LensModel", "solve_single_lens",
    "solve_lens_parameters_from_obs", "compute_detJ", "lens_properties", "LensGrid", "tabulate_likelihood_grids",
    "log_prior", "log_likelihood", "log_posterior", "run_mcmc", "build_K_table", "save_K_table_hdf5",
    "load_K_interpolator", "write_run_hdf5", "write_A_eta_hdf5", "selection_function", "mag_likelihood", "Dang",
    "Sigma_cr", "rhoc", "SCATTER",
    # forward model and batched lensing
    "ForwardModel", "SurveyConfig", "forward_solve", "invert_images", "simulate_mock",
    # selection engines
    "Selection", "SelectionQuadrature", "SelectionBank", "selection_for", "build_selection_table",
    # inference
    "Posterior", "Prior", "Uniform", "Gaussian", "credible_intervals", "convergence_report", "plot_corner",
    # results in ArviZ's format; simulation-based calibration
    "to_arviz", "validate",
    # data in, tables out
    "read_catalogue", "generate_and_save_mock_tabulate", "tabulate_sim",
]
