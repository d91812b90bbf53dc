"""Analytic eta-gradients (issue 16): the per-lens kernel, log A(eta) of the selection quadrature,
the whole posterior, and the L-BFGS MAP that uses them. Every check is against central finite
differences of the values the package computes (no stored numbers)."""
import numpy as np
import pytest

from sl_cy.grids import tabulate_likelihood_grids
from sl_cy.inference import find_map
from sl_cy.likelihood import DEFAULT_BOX, Gaussian, LikelihoodKernel, Posterior, Prior, Uniform
from sl_cy.mock import run_mock_simulation

TRUTH = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
# the default truth, sigma_h and sigma_gamma at (just above) their lower bound 0.05, box corners
ETAS = [TRUTH,
        np.array([0.1, 13.2, 1.5, 0.0501, 0.8, 0.0501]),
        np.array([0.45, 13.9, 0.1, 0.06, 0.3, 0.06]),
        np.array([-0.45, 12.05, 3.9, 0.99, 1.75, 0.99]),
        np.array([-0.3, 12.2, 3.5, 0.8, 1.6, 0.9]),
        # the box corner with the largest quadrature error (sigma_h = sigma_gamma = 0.05 exactly, beta_h = 4)
        np.array([-0.5, 12.0, 4.0, 0.05, 1.8, 0.05]),
        # the eta-adaptive column rule (LikelihoodKernel.column_rule_of): mixing zones between
        # rules 1 and 2 (sigma_h = 0.141) and rules 5 and 6 (beta_h = 4, sigma_h = 0.054), pure rule 3
        np.array([0.05, 12.8, 2.04, 0.141, 1.1, 0.3]),
        np.array([0.0, 13.5, 4.0, 0.054, 1.0, 0.2]),
        np.array([-0.1, 13.0, 2.5, 0.075, 0.9, 0.25])]


@pytest.fixture(scope="module")
def grids():
    _, obs = run_mock_simulation(40_000, seed=11, show_progress=False)
    return tabulate_likelihood_grids(obs, show_progress=False)


@pytest.fixture(scope="module")
def posterior(grids):
    return Posterior(grids)


def _fd5(f, x, j, h):
    """Five-point central difference of f along component j (error O(h^4))."""
    def at(d):
        y = np.array(x, float)
        y[..., j] += d
        return np.asarray(f(y), float)
    return (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)


def test_gradient_etas_cover_the_column_rules(grids):
    """ETAS include plain-rule points, pure sub-sampled rules and both kinds of mixing zones."""
    k = LikelihoodKernel(grids, selection=False, n_threads=1)
    rule, lam, _ = k.column_rule_of(np.array(ETAS))
    assert np.all(rule[0] == 1) and np.all(lam[0] == 0)
    mixing = (lam > 0.05) & (lam < 0.95)
    assert mixing[6].mean() > 0.5 and np.all(rule[6][mixing[6]] == 1)
    assert mixing[7].mean() > 0.5 and np.all(rule[7][mixing[7]] >= 4)
    assert np.any((rule[8] >= 2) & (lam[8] == 0))


@pytest.mark.parametrize("selection", [True, False])
def test_kernel_gradient_matches_finite_differences_per_lens(grids, selection):
    k = LikelihoodKernel(grids, selection=selection, n_threads=1)
    assert k.n_lenses >= 50
    for eta in ETAS:
        lp, g = k.per_lens_and_grad(eta)
        assert np.array_equal(lp, k.per_lens(eta))          # same pass, same value
        fd = np.stack([_fd5(k.per_lens, eta, j, 3e-5) for j in range(6)], axis=1)
        ok = np.isfinite(lp)
        assert ok.sum() > 0.9 * len(lp)
        err = np.abs(g[ok] - fd[ok]) / np.maximum(np.abs(fd[ok]), 1.0)
        assert err.max() < 1e-6, (eta, err.max(axis=0))
        assert np.all(np.isnan(g[~ok]))
        v, gs = k.value_and_grad(eta)
        assert v == pytest.approx(k(eta)[0], rel=1e-15)
        np.testing.assert_allclose(gs, g[ok].sum(0) if ok.all() else gs, rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.5, 3.0, 6.0])
def test_kernel_gradient_in_the_skew_normal_tail(grids, alpha):
    """alpha_sps far above the box: the skew-normal factor Phi(a z) is < 1e-85 at many points (its
    asymptotic branch) or everywhere (the kernel's on-line log-sum-exp path), and the inverse Mills
    ratio comes from log Phi; the gradient still matches finite differences."""
    k = LikelihoodKernel(grids, selection=False, n_threads=1)
    eta = np.r_[alpha, TRUTH[1:]]
    lp, g = k.per_lens_and_grad(eta)
    ok = np.isfinite(lp)
    assert ok.sum() > 0.9 * len(lp)
    fd = np.stack([_fd5(k.per_lens, eta, j, 3e-5) for j in range(6)], axis=1)
    err = np.abs(g[ok] - fd[ok]) / np.maximum(np.abs(fd[ok]), 1.0)
    assert err.max() < 1e-6, err.max(axis=0)


def test_kernel_gradient_batch_and_thread_count(grids):
    k1 = LikelihoodKernel(grids, n_threads=1)
    k2 = LikelihoodKernel(grids, n_threads=2)
    E = np.stack(ETAS)
    lp1, g1 = k1.per_lens_and_grad(E)
    lp2, g2 = k2.per_lens_and_grad(E)
    assert np.array_equal(lp1, lp2) and np.array_equal(g1, g2)
    for r, eta in enumerate(ETAS):
        np.testing.assert_array_equal(k1.per_lens_and_grad(eta)[1], g1[r])


def test_fixed_gamma_grid_has_zero_gamma_gradient():
    _, obs = run_mock_simulation(20_000, seed=5, show_progress=False)
    k = LikelihoodKernel(tabulate_likelihood_grids(obs, gamma_grid=[1.0], show_progress=False), selection=False)
    lp, g = k.per_lens_and_grad(TRUTH)
    assert np.all(g[:, 4:] == 0.0)
    fd = np.stack([_fd5(k.per_lens, TRUTH, j, 3e-5) for j in range(4)], axis=1)
    assert np.max(np.abs(g[:, :4] - fd) / np.maximum(np.abs(fd), 1.0)) < 1e-6


def test_log_A_gradient_matches_finite_differences(posterior):
    A = posterior.A
    for eta in ETAS:
        la, g = A.log_lens_fraction_and_grad(eta)
        assert la == np.log(A(eta))
        # plain central differences with a small step: the rate table is piecewise multilinear
        # (in log T), so a wide stencil would straddle cell edges of some node
        h = 1e-6
        fd = np.array([(np.log(A(eta + h * np.eye(6)[j])) - np.log(A(eta - h * np.eye(6)[j]))) / (2 * h)
                       for j in range(6)])
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)
    la, gb = A.log_lens_fraction_and_grad(np.stack(ETAS))
    assert gb.shape == (len(ETAS), 6)
    np.testing.assert_array_equal(gb[1], A.log_lens_fraction_and_grad(ETAS[1])[1])


def test_posterior_gradient_free_parameters_and_priors(grids):
    pr = Prior({"alpha_sps": Gaussian(0.05, 0.1), "beta_h": Uniform(0.0, 4.0)}, fixed={"sigma_gamma": 0.2})
    post = Posterior(grids, prior=pr)
    assert post.has_grad and post.ndim == 5
    for eta in ETAS[:3]:
        th = post.free_theta(np.where(np.arange(6) == 5, 0.2, eta))
        v, g = post.log_prob_and_grad(th)
        assert v == post(th)
        # small-step central differences (-N log A: its rate table is piecewise multilinear, see
        # test_log_A_gradient_matches_finite_differences); absolute floor for the round-off of a
        # log posterior of ~1e3: 1e-16 x 1e3 / 1e-6
        h = 1e-6
        fd = np.array([(post(th + h * np.eye(5)[j]) - post(th - h * np.eye(5)[j])) / (2 * h) for j in range(5)])
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
    # batch, and outside the support: -inf with a NaN gradient
    bad = post.free_theta(TRUTH.copy())
    bad[1] = 20.0
    vb, gb = post.log_prob_and_grad(np.stack([post.free_theta(TRUTH), bad]))
    assert np.isfinite(vb[0]) and vb[1] == -np.inf and np.all(np.isnan(gb[1]))
    assert post.bounds()[1] == DEFAULT_BOX["mu_h"]
    assert post.bounds()[0] == (-0.5, 0.5)                    # Gaussian prior within A's bounds


def test_no_gradient_for_a_callable_prior(grids):
    post = Posterior(grids, prior=Prior({"mu_h": lambda x: -0.5 * (x - 12.9) ** 2}))
    assert not post.has_grad
    with pytest.raises(NotImplementedError, match="mu_h"):
        post.log_prob_and_grad(TRUTH)
    assert find_map(post, TRUTH, maxiter=5)["method"] == "Nelder-Mead"


def test_lbfgs_map_equals_nelder_mead_map():
    _, obs = run_mock_simulation(20_000, seed=5, show_progress=False)
    post = Posterior(tabulate_likelihood_grids(obs, gamma_grid=[1.0], show_progress=False), use_selection=False)
    x0 = TRUTH[:4]
    lb = find_map(post, x0)
    assert lb["method"] == "L-BFGS-B" and lb["success"], lb["message"]
    nm = find_map(post, x0, method="Nelder-Mead")
    # the same optimum: L-BFGS-B at least as high, the points within 2e-3 of each other (the
    # posterior widths here are ~0.01-0.1), the gradient ~0 there
    assert lb["log_post"] >= nm["log_post"] - 1e-6
    np.testing.assert_allclose(lb["x"], nm["x"], atol=2e-3)
    assert np.max(np.abs(lb["grad"])) < 1e-3
    assert lb["nfev"] < nm["nfev"] / 5
