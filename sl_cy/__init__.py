"""sl_cy: statistical strong lensing with a compiled (Cython) core.

Simulate populations of galaxy-scale lenses (de Vaucouleurs stars + generalised-NFW halo),
precompute per-lens likelihood grids and infer the population hyper-parameters
eta = (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma) with a selection correction.
"""
from sl_cy._version import __version__
from sl_cy import _check_build

_check_build.check_build()   # a clear ImportError (what is missing, how to build it) for an unbuilt source tree
from sl_cy.cosmology import Cosmology, DEFAULT_COSMOLOGY, Dang, Sigma_cr, rhoc, kpc_to_arcsec, arcsec_to_kpc
from sl_cy.profiles import devauc_sigma, devauc_m2d, gnfw_dimensionless, gnfw_halo
from sl_cy.lensing import (LensModel, LensingWarning, Status, compute_detJ, forward_solve, invert_images,
                           lens_properties, orient_images, solve_lens_parameters_from_obs, solve_single_lens)
from sl_cy.config import SCATTER, SourceLaw, SurveyConfig
from sl_cy.population import (MODEL_PARAMS, DEFAULT_ETA, ETA_NAMES, Eta, generate_samples, mstar_gene, logRe_given_logM,
                              logMh_given_logM_logRe, sample_gamma, gamma_logpdf, mstar_logpdf, logRe_logpdf,
                              logMh_logpdf)
from sl_cy.mock import run_mock_simulation, simulate_mock, MockResult, save_mock, load_mock
from sl_cy.parallel import map_chunks
from sl_cy.photometry import (PhotometryModel, get_photometry_model, fphot, selection_function, mag_likelihood,
                              source_mag_pdf)
from sl_cy.ktable import KTable, build_K_table, save_K_table_hdf5, load_K_interpolator, K_direct
from sl_cy.grids import LensGrid, tabulate_likelihood_grids, save_grids_hdf5, load_grids_hdf5
from sl_cy.forward import ForwardModel, ForwardModelMismatch
from sl_cy.selection import (Selection, SelectionQuadrature, build_selection_table, selection_for, SelectionBank,
                             SelectionWarning, BankProposal, AEtaTable, build_selection_bank, save_bank, load_bank,
                             compute_Aeta_grid, write_A_eta_hdf5, write_A_eta_hdf5_1d, load_A_eta_table, cached_A)
from sl_cy.likelihood import (Prior, BoxPrior, Uniform, Gaussian, DEFAULT_BOX, log_prior, log_likelihood, log_posterior,
                              Posterior, LikelihoodKernel)
from sl_cy.inference import (run_mcmc, get_mle_params, find_map, credible_intervals, get_param_covariance_from_chain,
                             convergence_report, grid_posterior, save_grid_posterior_hdf5, plot_corner, plot_traces,
                             plot_log_prob)
from sl_cy.catalogue import read_catalogue
from sl_cy.tables import generate_and_save_mock_tabulate, load_mock_and_grids, save_subset, tabulate_sim

__all__ = [
    "__version__", "Cosmology", "DEFAULT_COSMOLOGY", "Dang", "Sigma_cr", "rhoc", "kpc_to_arcsec",
    "arcsec_to_kpc", "devauc_sigma", "devauc_m2d", "gnfw_dimensionless", "gnfw_halo", "LensModel",
    "LensingWarning", "Status", "compute_detJ", "forward_solve", "invert_images", "lens_properties",
    "orient_images", "solve_lens_parameters_from_obs", "solve_single_lens",
    "SCATTER", "SourceLaw", "SurveyConfig", "MODEL_PARAMS", "DEFAULT_ETA", "ETA_NAMES", "Eta", "generate_samples",
    "mstar_gene", "logRe_given_logM", "logMh_given_logM_logRe", "sample_gamma", "gamma_logpdf", "mstar_logpdf",
    "logRe_logpdf", "logMh_logpdf", "run_mock_simulation", "simulate_mock", "MockResult", "save_mock", "load_mock",
    "map_chunks", "PhotometryModel", "get_photometry_model", "fphot", "selection_function", "mag_likelihood",
    "source_mag_pdf", "KTable", "build_K_table", "save_K_table_hdf5", "load_K_interpolator", "K_direct",
    "LensGrid", "tabulate_likelihood_grids", "save_grids_hdf5", "load_grids_hdf5",
    "ForwardModel", "ForwardModelMismatch", "Selection", "SelectionQuadrature", "build_selection_table",
    "selection_for", "SelectionBank", "SelectionWarning", "BankProposal", "AEtaTable", "build_selection_bank", "save_bank", "load_bank",
    "compute_Aeta_grid", "write_A_eta_hdf5", "write_A_eta_hdf5_1d", "load_A_eta_table", "cached_A",
    "Prior", "BoxPrior", "Uniform", "Gaussian", "DEFAULT_BOX", "log_prior", "log_likelihood", "log_posterior",
    "Posterior", "LikelihoodKernel", "run_mcmc", "get_mle_params", "find_map", "credible_intervals",
    "get_param_covariance_from_chain", "convergence_report", "grid_posterior", "save_grid_posterior_hdf5",
    "plot_corner", "plot_traces", "plot_log_prob",
    "read_catalogue", "generate_and_save_mock_tabulate", "load_mock_and_grids", "save_subset", "tabulate_sim",
]
