"""Laplace + PSIS importance sampling (sl_cy.samplers) against the posterior evaluated on a fine
grid (an independent quadrature of the same posterior), and its emcee-shaped output."""
import numpy as np
import pytest

from sl_cy.grids import tabulate_likelihood_grids
from sl_cy.inference import credible_intervals, grid_posterior
from sl_cy.likelihood import Posterior, Prior
from sl_cy.mock import run_mock_simulation
from sl_cy.samplers import laplace_importance_sampling


@pytest.fixture(scope="module")
def grids():
    _, obs = run_mock_simulation(40_000, seed=11, show_progress=False)
    return tabulate_likelihood_grids(obs, show_progress=False)


def test_moments_match_a_grid_posterior(grids):
    """Two free parameters (mu_h, sigma_h; the rest fixed at the truth): weighted mean, sd and
    median agree with the grid posterior within a few Monte-Carlo errors."""
    fixed = dict(alpha_sps=0.0, beta_h=2.04, mu_gamma=1.0, sigma_gamma=0.2)
    post = Posterior(grids, fixed=fixed)
    s = laplace_importance_sampling(post, n_draws=1500, seed=3)
    assert s.param_names == ("mu_h", "sigma_h")
    assert s.khat < 0.7 and s.ess > 300, s.summary()
    sd_lap = np.sqrt(np.diag(s.cov))
    ax = {n: np.linspace(s.map[j] - 6 * sd_lap[j], s.map[j] + 6 * sd_lap[j], 41) for j, n in enumerate(post.free_names)}
    gp = grid_posterior(post, ax)
    for j, n in enumerate(post.free_names):
        x, m = gp.axes[n], gp.marginals[n]
        mean = float(np.sum(x * m))
        sd = float(np.sqrt(np.sum((x - mean) ** 2 * m)))
        mc = sd / np.sqrt(s.ess)                       # Monte-Carlo error of the weighted mean
        assert abs(s.mean()[j] - mean) < 4 * mc + 0.01 * sd, (n, s.mean()[j], mean, sd)
        sd_is = float(np.sqrt(s.weights @ (s.draws[:, j] - s.mean()[j]) ** 2))
        assert abs(sd_is / sd - 1) < 0.15, (n, sd_is, sd)
        med = float(np.interp(0.5, np.cumsum(m) - 0.5 * m, x))
        assert abs(s.quantiles([0.5])[0, j] - med) < 5 * mc + 0.01 * sd


def test_emcee_shaped_draws_and_errors(grids):
    post = Posterior(grids, fixed=dict(beta_h=2.04, mu_gamma=1.0, sigma_gamma=0.2))
    s = laplace_importance_sampling(post, n_draws=300, seed=1, max_rounds=1)
    assert s.get_chain().shape == (300, 1, 3)
    flat = s.get_chain(flat=True)
    assert flat.shape == (300, 3) and np.all(np.isfinite(post(flat)))
    ci = credible_intervals(flat, names=post.free_names)
    assert np.all(ci["lo68"] < ci["hi68"])
    assert np.isclose(np.exp(s.log_weights).sum(), 1.0) and 0 < s.ess <= 300
    assert s.n_evals >= 300 + 12 and s.timings["total"] > 0
    np.testing.assert_array_equal(s.resample(seed=4), s.resample(seed=4))
    with pytest.raises(NotImplementedError, match="mu_h"):
        laplace_importance_sampling(Posterior(grids, prior=Prior({"mu_h": lambda x: 0.0 * x})), n_draws=50)
    with pytest.raises(ValueError, match="n_draws"):
        laplace_importance_sampling(post, n_draws=3)
