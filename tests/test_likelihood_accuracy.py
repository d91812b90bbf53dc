"""Per-lens quadrature accuracy of the default grids over the prior box (issue 16, item 1).

eps_i(eta) = log p_i(default grids) - log p_i(reference), the reference being the same lenses
tabulated 8x finer (adaptive node spacing / 8, gamma step / 8: ~64x the points), which agrees with
a 4x finer rule to ~1e-5 near the posterior. The target of issue 16 is |eps_i| <= 0.01 everywhere in
the prior box (:data:`sl_cy.population.ETA_BOX`). It is met near the posterior; it is *not* met
at the box edges (sigma_h or sigma_gamma at 0.05, where the halo or gamma law is narrower than the
node spacing of 0.1), at corners and at some random eta: that test is a strict xfail, so it starts
failing (XPASS) the day the kernel meets the target and the marker must go.

Measured (2026-12-01, mock seed 11, 8 lenses; benchmarks/accuracy_box.py splits these by direction
and tries product rules): near the posterior max |eps| 1.1e-4; edges 0.175 (sigma_h = 0.05 at the
truth; sigma_gamma = 0.05 alone 0.016); box corners 3.1 (at alpha_sps -0.5, mu_h 12, beta_h 4,
sigma_h 0.05, mu_gamma 1.8, sigma_gamma 0.05: with beta_h = 4 the halo law is ~0.0125 dex wide in
logM*, against ~0.07 dex between nodes); 40 random eta 0.91.
"""
import itertools

import numpy as np
import pytest

from sl_cy.grids import DEFAULT_GAMMA_GRID, tabulate_likelihood_grids
from sl_cy.likelihood import LikelihoodKernel
from sl_cy.mock import run_mock_simulation
from sl_cy.population import ETA_BOX, ETA_NAMES

TRUTH = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
LO = np.array([ETA_BOX[n][0] for n in ETA_NAMES])
HI = np.array([ETA_BOX[n][1] for n in ETA_NAMES])
#: about one Laplace width of the ~400-lens default mock on each side of the truth
NEAR = TRUTH + np.array([[0.0] * 6, [0.02, 0.1, 0.1, 0.05, 0.05, 0.03], [-0.02, -0.1, -0.1, -0.05, -0.05, -0.03]])


def _edges():
    e = np.repeat(TRUTH[None], 3, axis=0)
    e[0, 3] = LO[3]
    e[1, 5] = LO[5]
    e[2, [3, 5]] = LO[[3, 5]]
    return e


BOX = {"edges": _edges(),
       "corners": np.array(list(itertools.product(*zip(LO, HI)))),
       "random": LO + (HI - LO) * np.random.default_rng(0).random((40, 6))}


@pytest.fixture(scope="module")
def kernels():
    _, obs = run_mock_simulation(40_000, seed=11, show_progress=False)
    sub = obs.iloc[:8]
    fine_gamma = np.round(np.arange(0.0, 2.0 + 1e-9, 0.1 / 8), 10)
    default = LikelihoodKernel(tabulate_likelihood_grids(sub, show_progress=False), selection=False)
    ref = LikelihoodKernel(tabulate_likelihood_grids(sub, gamma_grid=fine_gamma, adaptive_step=1 / 8,
                                                     show_progress=False), selection=False)
    return default, ref


def _eps(kernels, E):
    default, ref = kernels
    return default.per_lens(E) - ref.per_lens(E)


def test_reference_is_the_finer_rule(kernels):
    default, ref = kernels
    assert np.array_equal(default.gamma_axis, DEFAULT_GAMMA_GRID)
    assert ref.n_points > 40 * default.n_points


def test_default_grids_within_1e3_near_the_posterior(kernels):
    eps = _eps(kernels, NEAR)
    assert np.all(np.isfinite(eps))
    assert np.abs(eps).max() <= 1e-3, np.abs(eps).max()


@pytest.mark.parametrize("group", sorted(BOX))
def test_default_grids_finite_over_the_box(kernels, group):
    """Wherever in the box, every lens has a finite log p_i on both rules (no underflow to -inf)."""
    default, ref = kernels
    E = BOX[group]
    assert np.all(np.isfinite(default.per_lens(E))) and np.all(np.isfinite(ref.per_lens(E)))


@pytest.mark.xfail(strict=True, reason="issue 16 item 1 not met: at sigma_h or sigma_gamma = 0.05 the node "
                                       "spacing (0.1) does not resolve the halo / gamma law (measured up to 3.1)")
@pytest.mark.parametrize("group", sorted(BOX))
def test_default_grids_within_one_percent_over_the_box(kernels, group):
    eps = _eps(kernels, BOX[group])
    assert np.abs(eps).max() <= 0.01, np.abs(eps).max()
