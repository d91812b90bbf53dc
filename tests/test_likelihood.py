"""Likelihood kernel, priors and Posterior (sl_cy.likelihood, sl_cy._likelihood)."""
import math
import warnings

import numpy as np
import pytest

from sl_cy.forward import ForwardModel, ForwardModelMismatch
from sl_cy.grids import stack_grids, tabulate_likelihood_grids
from sl_cy.likelihood import (DEFAULT_BOX, BoxPrior, Gaussian, LikelihoodKernel, Posterior, Prior, Uniform,
                              log_likelihood, log_posterior, log_prior, trapezoid_weights)
from sl_cy.testing import log_likelihood_numpy
from sl_cy.mock import run_mock_simulation
from sl_cy.population import DEFAULT_ETA, ETA_NAMES

TRUTH = np.asarray(DEFAULT_ETA, float)
ETAS = np.array([
    TRUTH,
    [0.2, 13.5, 3.0, 0.05, 0.3, 0.05],        # sigma_h and sigma_gamma at their lower bound
    [-0.4, 12.1, 0.5, 1.0, 1.7, 1.0],
    [0.5, 14.0, 4.0, 0.05, 1.8, 0.05],
    [-0.5, 12.0, 0.0, 1.0, 0.2, 1.0],
])


@pytest.fixture(scope="module")
def observed():
    _, obs = run_mock_simulation(30_000, seed=11, show_progress=False)
    return obs.iloc[:25].reset_index(drop=True)


@pytest.fixture(scope="module")
def grids2d(observed):
    """A regular grid over the whole halo support (the kernel does not care how points are placed)."""
    return tabulate_likelihood_grids(observed, np.linspace(10.0, 17.0, 36), np.linspace(0.0, 2.0, 11),
                                     show_progress=False, adaptive=False)


@pytest.fixture(scope="module")
def grids1d(observed):
    return tabulate_likelihood_grids(observed, np.linspace(10.0, 17.0, 57), [1.0], show_progress=False,
                                     adaptive=False)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b) / np.abs(b))


# ---------------------------------------------------------------------------------------------
# kernel == plain NumPy integral
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(len(ETAS)))
def test_kernel_equals_numpy_2d(grids2d, i):
    for sel in (False, True):          # with and without the one-entry-per-galaxy factor
        k = LikelihoodKernel(grids2d, selection=sel)
        got = k.per_lens(ETAS[i])
        ref = log_likelihood_numpy(ETAS[i], grids2d, per_lens=True, selection=sel)
        assert np.all(np.isfinite(ref))
        assert _rel(got, ref) <= 1e-10
        assert _rel(got.sum(), ref.sum()) <= 1e-10


def test_kernel_equals_numpy_batch_and_1d(grids1d, grids2d):
    for g in (grids1d, grids2d):
        k = LikelihoodKernel(g, selection=False)
        got = k(ETAS)
        ref = np.array([log_likelihood_numpy(e, g) for e in ETAS])
        assert got.shape == (len(ETAS),)
        assert _rel(got, ref) <= 1e-10


@pytest.mark.parametrize("model", ["SerExp", "Sersic"])
def test_kernel_equals_numpy_other_models(observed, model):
    """xi_h != 0 (halo mass depends on the size residual) and other stellar-mass laws, and another
    sigma_star: the kernel takes them from the grids' forward model."""
    from sl_cy.config import SurveyConfig

    fm = ForwardModel(model=model, survey=SurveyConfig(sigma_star=0.2))
    g = tabulate_likelihood_grids(observed.iloc[:10], np.linspace(10.0, 17.0, 36), np.linspace(0.0, 2.0, 11),
                                  forward_model=fm, show_progress=False, adaptive=False)
    k = LikelihoodKernel(g, selection=False)
    assert k.forward_model == fm and k._model[-2] == 0.2
    for e in ETAS[:3]:
        assert _rel(k.per_lens(e), log_likelihood_numpy(e, g, per_lens=True)) <= 1e-10


def test_fixed_gamma_grid_ignores_gamma_law(grids1d):
    """One gamma node: no gamma integral and p(gamma | eta) is not applied."""
    k = LikelihoodKernel(grids1d, selection=False)
    assert not k.use_gamma
    a = k(TRUTH)
    b = k(np.r_[TRUTH[:4], 0.3, 0.9])
    assert a[0] == b[0]


def test_vectorised_equals_scalar_and_threads(grids2d):
    rng = np.random.default_rng(3)
    E = TRUTH + rng.normal(0, 0.02, (9, 6))
    k1 = LikelihoodKernel(grids2d, n_threads=1)
    k2 = LikelihoodKernel(grids2d, n_threads=2)
    batch = k1(E)
    scal = np.array([k1(e)[0] for e in E])
    assert np.array_equal(batch, scal)
    assert np.array_equal(batch, k2(E))
    assert np.array_equal(k1.per_lens(E), k2.per_lens(E))


def test_invalid_points_contribute_zero(grids2d):
    st = stack_grids(grids2d)
    base = LikelihoodKernel(st)(ETAS)
    st2 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
    bad = st2["valid"] != 0
    assert bad.any()
    for name in ("logM_star", "beta", "detJ", "F_phot"):
        st2[name][bad] = np.where(np.arange(bad.sum()) % 2, np.nan, 1e300)
    assert np.array_equal(LikelihoodKernel(st2)(ETAS), base)
    # invalidating one more point is the same as giving it zero weight
    i, j, m = np.argwhere(st["valid"] == 0)[5]
    st3 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
    st3["valid"][i, j, m] = 4
    st4 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
    st4["F_phot"][i, j, m] = 0.0
    assert np.array_equal(LikelihoodKernel(st3)(ETAS), LikelihoodKernel(st4)(ETAS))


def test_lens_without_valid_point_is_an_error_naming_it(grids2d):
    st = stack_grids(grids2d)
    st["valid"] = st["valid"].copy()
    st["valid"][3] = 2
    with pytest.raises(ValueError, match=r"no valid grid point.*lens 3 \(row 3; NO_RADIAL_CAUSTIC"):
        LikelihoodKernel(st)
    with pytest.raises(ValueError, match="no valid grid point"):
        Posterior(st)


def test_bad_eta_rows_are_minus_inf_not_crash(grids2d):
    k = LikelihoodKernel(grids2d, selection=False)
    E = np.array([TRUTH, np.r_[np.nan, TRUTH[1:]], np.r_[TRUTH[:3], -0.1, TRUTH[4:]],
                  np.r_[TRUTH[:5], 0.0], np.r_[TRUTH[:1], np.inf, TRUTH[2:]]])
    out = k(E)
    assert np.isfinite(out[0]) and np.all(out[1:] == -np.inf)


def test_trapezoid_weights():
    x = np.array([0.0, 0.1, 0.3, 0.6])
    w = trapezoid_weights(x)
    f = x ** 1
    assert math.isclose(np.sum(w * f), np.trapezoid(f, x), rel_tol=1e-15)
    assert trapezoid_weights([2.0]).tolist() == [1.0]


def test_extreme_alpha_underflow_path(grids2d):
    """Skew-normal factor underflowing everywhere still gives the right finite value."""
    k = LikelihoodKernel(grids2d, selection=False)
    e = np.r_[6.0, TRUTH[1:]]
    ref = log_likelihood_numpy(e, grids2d, per_lens=True)
    got = k.per_lens(e)
    fin = np.isfinite(ref)
    assert fin.any()
    assert np.array_equal(np.isfinite(got), fin)
    assert _rel(got[fin], ref[fin]) <= 1e-10


# ---------------------------------------------------------------------------------------------
# priors
# ---------------------------------------------------------------------------------------------
def test_default_box_prior():
    assert DEFAULT_BOX == {"alpha_sps": (-0.5, 0.5), "mu_h": (12.0, 14.0), "beta_h": (0.0, 4.0),
                           "sigma_h": (0.05, 1.0), "mu_gamma": (0.2, 1.8), "sigma_gamma": (0.05, 1.0)}
    vol = np.prod([hi - lo for lo, hi in DEFAULT_BOX.values()])
    assert math.isclose(log_prior(TRUTH), -math.log(vol), rel_tol=1e-14)
    for i, n in enumerate(ETA_NAMES):
        lo, hi = DEFAULT_BOX[n]
        for v, fin in ((lo, True), (hi, True), (lo - 1e-9, False), (hi + 1e-9, False)):
            e = TRUTH.copy()
            e[i] = v
            assert np.isfinite(log_prior(e)) == fin, (n, v)
    assert log_prior(np.r_[np.nan, TRUTH[1:]]) == -np.inf
    out = log_prior(np.vstack([TRUTH, TRUTH + 10]))
    assert out.shape == (2,) and np.isfinite(out[0]) and out[1] == -np.inf


def test_prior_objects():
    pr = Prior({"alpha_sps": Gaussian(0.1, 0.05), "mu_h": (12.5, 13.5), "beta_h": lambda x: -x},
               fixed={"sigma_gamma": 0.2})
    assert pr.free_names == ("alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma")
    e = TRUTH.copy()
    expect = (-0.5 * ((0.0 - 0.1) / 0.05) ** 2 - math.log(0.05) - 0.5 * math.log(2 * math.pi)
              - math.log(1.0) - 2.04 - math.log(0.95) - math.log(1.6))
    assert math.isclose(pr.logpdf(e), expect, rel_tol=1e-13)
    e2 = e.copy()
    e2[5] = 50.0                                       # fixed: not scored
    assert math.isclose(pr.logpdf(e2), expect, rel_tol=1e-13)
    e3 = e.copy()
    e3[1] = 13.9
    assert pr.logpdf(e3) == -np.inf
    # scalar-only callable is accepted
    pr2 = Prior({"beta_h": lambda x: float(-abs(x))})
    assert np.all(np.isfinite(pr2.logpdf(np.vstack([TRUTH, TRUTH]))))
    assert BoxPrior({"mu_h": (12.0, 12.9)}).logpdf(TRUTH) == -np.inf
    with pytest.raises(ValueError):
        Prior({"nope": Uniform(0, 1)})
    with pytest.raises(ValueError):
        Uniform(1, 0)
    # a sigma <= 0 is excluded whatever its prior
    assert Prior({"sigma_h": Gaussian(0.3, 1.0)}).logpdf(np.r_[TRUTH[:3], -0.1, TRUTH[4:]]) == -np.inf


# ---------------------------------------------------------------------------------------------
# log_likelihood / log_posterior / Posterior
# ---------------------------------------------------------------------------------------------
class _ConstA:
    """A stand-in normaliser of the grids' forward model: A(eta) = 0.5 + 0.1 alpha_sps."""

    def __init__(self, fm):
        from sl_cy.selection import Selection

        self.forward_model = fm
        self.bounds = Selection().bounds
        self.in_bounds = Selection.in_bounds.__get__(self)

    def __call__(self, e):
        return 0.5 + 0.1 * np.atleast_2d(e)[:, 0]


def test_log_likelihood_with_selection(grids2d):
    k = LikelihoodKernel(grids2d)
    base = k(ETAS)
    A = _ConstA(k.forward_model)
    got = log_likelihood(ETAS, Posterior(k, A=A))
    assert np.allclose(got, base - k.n_lenses * np.log(A(ETAS)), rtol=1e-14, atol=0)
    # default: the forward model's quadrature A(eta), the same as passing it
    from sl_cy.selection import selection_for

    sq = selection_for(k.forward_model)
    assert math.isclose(log_likelihood(ETAS[0], grids2d), base[0] - k.n_lenses * math.log(sq(ETAS[0])),
                        rel_tol=1e-13)
    # switched off explicitly: no A and no one-entry-per-galaxy factor
    assert math.isclose(log_likelihood(ETAS[0], grids2d, selection=False),
                        LikelihoodKernel(grids2d, selection=False)(ETAS[0])[0], rel_tol=1e-15)
    # an A that fails inside its bounds is an error, never -inf
    with pytest.raises(ValueError, match="A\\(eta\\) = 0.0"):
        Posterior(k, A=lambda e: np.zeros(len(np.atleast_2d(e)))).log_likelihood(ETAS[0])
    lp = log_posterior(ETAS, Posterior(k, A=A))
    assert np.isfinite(lp[0]) and math.isclose(lp[0], log_prior(ETAS[0]) + got[0], rel_tol=1e-15)


def test_list_mutation_is_seen(grids2d):
    """No cache keyed by object identity: a changed list gives a new likelihood."""
    g = list(grids2d)
    a = log_likelihood(TRUTH, g, selection=False)
    g.pop()
    b = log_likelihood(TRUTH, g, selection=False)
    assert a != b
    assert math.isclose(b, LikelihoodKernel(g, selection=False)(TRUTH)[0], rel_tol=1e-15)


def test_posterior_support_and_loud_failures(grids2d):
    post = Posterior(grids2d)
    assert post.free_names == ETA_NAMES and post.ndim == 6
    th = np.array([TRUTH, np.r_[np.nan, TRUTH[1:]], np.r_[TRUTH[:1], 20.0, TRUTH[2:]],
                   np.r_[0.6, TRUTH[1:]], np.r_[TRUTH[:3], 0.05, TRUTH[4:]]])
    out = post(th)
    assert out.shape == (5,)
    assert np.isfinite(out[0]) and np.isfinite(out[4])
    assert np.all(out[1:4] == -np.inf)              # NaN, outside the prior box: explicit support checks
    assert post(th[0]) == out[0]
    assert "outside its prior" in post.explain(th[2][None][0])
    # a wrong length is an error, not -inf
    with pytest.raises(ValueError, match="theta needs 6 values"):
        post(np.ones(3))

    # an exception inside the normaliser propagates with its message
    class Broken(_ConstA):
        def __call__(self, e):
            raise RuntimeError("A undefined here")

    with pytest.raises(RuntimeError, match="A undefined here"):
        Posterior(grids2d, A=Broken(post.forward_model))(TRUTH)
    # without the selection term
    post2 = Posterior(grids2d, use_selection=False)
    assert math.isclose(post2(th[0]), log_prior(TRUTH) + LikelihoodKernel(grids2d, selection=False)(TRUTH)[0],
                        rel_tol=1e-15)


def test_mismatched_forward_models_raise(observed, grids2d):
    from sl_cy.config import SurveyConfig
    from sl_cy.selection import build_selection_bank

    bank = build_selection_bank(2000, seed=1, forward_model=ForwardModel(survey=SurveyConfig(m_lim=25.0)))
    with pytest.raises(ForwardModelMismatch, match="survey.m_lim: 26.5 != 25.0"):
        Posterior(grids2d, A=bank)
    with pytest.raises(ForwardModelMismatch, match="model"):
        Posterior(grids2d, model="SerExp")
    other = tabulate_likelihood_grids(observed.iloc[:2], np.linspace(10.0, 17.0, 36), np.linspace(0.0, 2.0, 11),
                                      forward_model=ForwardModel(c_halo=7.0), show_progress=False, adaptive=False)
    with pytest.raises(ValueError, match="c_halo: 5.0 != 7.0"):
        LikelihoodKernel(list(grids2d[:2]) + other)


def test_posterior_fixed_parameters(grids1d, grids2d):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p1 = Posterior(grids1d, use_selection=False)
    assert p1.free_names == ("alpha_sps", "mu_h", "beta_h", "sigma_h")
    p2 = Posterior(grids2d, fixed={"alpha_sps": 0.0, "sigma_gamma": 0.2})
    assert p2.free_names == ("mu_h", "beta_h", "sigma_h", "mu_gamma")
    th = np.array([12.91, 2.04, 0.37, 1.0])
    assert np.array_equal(p2.full_eta(th), TRUTH)
    full = Posterior(grids2d)
    assert math.isclose(p2(th), full(TRUTH) - full.prior.logpdf(TRUTH) + p2.prior.logpdf(TRUTH), rel_tol=1e-14)


# ---------------------------------------------------------------------------------------------
# adaptive quadrature (the pipeline's default grids)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grids_adaptive(observed):
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID

    return tabulate_likelihood_grids(observed.iloc[:8], show_progress=False)


def test_kernel_equals_numpy_adaptive(grids_adaptive):
    """The numpy reference is the plain column rule: the kernel equals it with its eta-adaptive
    column rule off, and with it on for the lenses whose rule is 1 (the others differ by the
    plain rule's quadrature error: sub-sampled columns at sigma_h = 0.05)."""
    k = LikelihoodKernel(grids_adaptive, selection=False)
    n_sub = 0
    for e in ETAS:
        ref = log_likelihood_numpy(e, grids_adaptive, per_lens=True)
        assert np.all(np.isfinite(ref))
        got = k.per_lens(e)
        rule, lam, _ = k.column_rule_of(e)
        plain = (rule[0] == 1) & (lam[0] == 0)
        n_sub += (~plain).sum()
        if plain.any():
            assert _rel(got[plain], ref[plain]) <= 1e-10
        if (~plain).any():
            assert _rel(got[~plain], ref[~plain]) > 1e-6
        k.column_rule = False
        try:
            assert _rel(k.per_lens(e), ref) <= 1e-10
        finally:
            k.column_rule = True
    assert n_sub > 0


def test_adaptive_rule_matches_independent_fine_uniform_quadrature():
    """The adaptive rule (~1100 points per lens) against a uniform 0.005 dex x 0.01 trapezoid grid
    (~2e5 points per lens, an independent rule) at the default truth, on the mock lenses whose
    likelihood ridge is worst for a uniform grid (it runs into the M* -> 0 edge: a 41 x 21 grid
    errs by 13-100 % on them)."""
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID

    _, obs = run_mock_simulation(125_000, seed=1, show_progress=False)
    sub = obs.iloc[[0, 3, 7, 9]]
    ad = tabulate_likelihood_grids(sub, DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID, adaptive=True, show_progress=False)
    fine = tabulate_likelihood_grids(sub, np.arange(10.0, 17.0 + 1e-9, 0.005), np.arange(0.0, 2.0 + 1e-9, 0.01),
                                     show_progress=False, adaptive=False)
    coarse = tabulate_likelihood_grids(sub, np.arange(10.0, 17.0 + 1e-9, 0.125), DEFAULT_GAMMA_GRID,
                                       show_progress=False, adaptive=False)
    a = LikelihoodKernel(ad).per_lens(TRUTH)
    f = LikelihoodKernel(fine).per_lens(TRUTH)
    c = LikelihoodKernel(coarse).per_lens(TRUTH)
    assert np.max(np.abs(np.expm1(a - f))) < 0.01
    assert np.max(np.abs(np.expm1(c - f))) > 0.1         # the uniform grid it replaces does not


def test_adaptive_grid_converges_and_round_trips(observed, tmp_path):
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, PADDING, load_grids_hdf5, save_grids_hdf5

    sub = observed.iloc[:4]
    g1 = tabulate_likelihood_grids(sub, DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID, adaptive=True, show_progress=False)
    g4 = tabulate_likelihood_grids(sub, DEFAULT_LOGMH_GRID, np.arange(0, 2 + 1e-9, 0.025), adaptive=True,
                                   adaptive_step=0.25, show_progress=False)
    for e in ETAS[:1]:
        assert np.max(np.abs(np.expm1(LikelihoodKernel(g1).per_lens(e) - LikelihoodKernel(g4).per_lens(e)))) < 0.01
    g = g1[0]
    assert g.adaptive and g.config["quadrature"] == "adaptive"
    pad = g.valid == PADDING
    assert pad.any() and np.all(g.wq[pad] == 0) and np.all(np.isnan(g.logMh[pad]))
    assert PADDING not in [int(c) for c in np.unique(g.valid[g.valid != 0])] or "PADDING" not in g.invalid_reasons()
    # nodes stay inside the scanned range and each column's weights sum to at most its length
    ok = np.isfinite(g.logMh)
    assert g.logMh[ok].min() >= 10.0 - 1e-9 and g.logMh[ok].max() <= 17.0 + 1e-9
    assert np.all(g.wq.sum(axis=0) <= 7.0 * 0.1 * (1 + 1e-4))   # column length x gamma weight
    save_grids_hdf5(tmp_path / "ad.h5", g1)
    back = load_grids_hdf5(tmp_path / "ad.h5")
    assert all(x.equals(y) for x, y in zip(g1, back))
    assert np.array_equal(LikelihoodKernel(back).per_lens(TRUTH), LikelihoodKernel(g1).per_lens(TRUTH))


def test_column_rule_runs_and_points_dropped_inside_a_piece(grids_adaptive):
    """A point dropped inside a column piece (zero weight) splits its run; the kept neighbours are
    not piece ends (full weight in the plain rule) and keep the unrefined half segment towards the
    hole in the sub-sampled rules. Where the integrand is smooth (the truth) the rules k converge
    and stay within the plain rule's error at the holes (its end corrections there: measured
    3.9e-3; 1.4e-4 without holes); halving the weight of those run ends instead (as if they were
    piece ends) moves log p by ~0.07."""
    import copy

    from sl_cy.likelihood import COLUMN_RULE

    grids = copy.deepcopy(grids_adaptive)
    k0 = LikelihoodKernel(grids, selection=False)
    lp0 = k0.per_lens(TRUTH)
    for g in grids:                     # drop the middle node of each gamma column
        for j in range(g.shape[1]):
            v = np.flatnonzero(g.valid[:, j] == 0)
            if len(v) > 6:
                g.F_phot[v[len(v) // 2], j] = 0.0
    k = LikelihoodKernel(grids, selection=False)
    assert k.n_points == k0.n_points - sum(int(np.sum((g.valid == 0).sum(0) > 6)) for g in grids)
    n_runs = np.diff(k.run_off)
    assert np.all(n_runs > np.diff(k0.run_off))                  # each hole splits a run
    assert ((k.runs & 3) != 3).sum() >= n_runs.sum() // 2         # run ends that are not piece ends
    plain = k.per_lens(TRUTH)
    assert np.abs(plain - lp0).max() > 1e-2                        # the holes matter
    saved = dict(COLUMN_RULE)
    got = []
    try:
        for z in (0.2, 0.05, 0.02):                              # rules 2-4, 6-12, 15-30 at the truth
            COLUMN_RULE.update(zmax=z, rmax=64)
            rule, lam, _ = k.column_rule_of(TRUTH)
            assert rule.min() >= 2
            got.append(k.per_lens(TRUTH))
            assert np.abs(got[-1] - plain).max() <= 1e-2
            assert np.abs(k0.per_lens(TRUTH) - lp0).max() <= 1e-3
        assert np.abs(got[2] - got[1]).max() <= 1e-3
        wrong = k.runs.copy()
        k.runs[:] = wrong | 3                                     # every run end taken as a piece end
        assert np.abs(k.per_lens(TRUTH) - plain).max() > 3e-2
        k.runs[:] = wrong
    finally:
        COLUMN_RULE.update(saved)
