"""Per-lens quadrature accuracy of the default grids over the prior box (issue 16, item 1).

eps_i(eta) = log p_i(default grids) - log p_i(reference), the reference being the same lenses
tabulated 8x finer (adaptive node spacing / 8, gamma step / 8: ~64x the points), which agrees with
a 4x finer rule to ~1e-5 near the posterior. The target of issue 16 is |eps_i| <= 0.01 everywhere in
the prior box (:data:`sl_cy.population.ETA_BOX`). It is met near the posterior; it is *not* met
at the box edges (sigma_h or sigma_gamma at 0.05, where the halo or gamma law is narrower than the
node spacing of 0.1), at corners and at some random eta: that test is a strict xfail, so it starts
failing (XPASS) the day the kernel meets the target and the marker must go.

Measured (2026-12-01, mock seed 11, 8 lenses; benchmarks/accuracy_box.py splits these by direction
and tries product rules), plain column rule: near the posterior max |eps| 1.1e-4; edges 0.175
(sigma_h = 0.05 at the truth; sigma_gamma = 0.05 alone 0.016); box corners 3.1 (at alpha_sps -0.5,
mu_h 12, beta_h 4, sigma_h 0.05, mu_gamma 1.8, sigma_gamma 0.05: with beta_h = 4 the halo law is
~0.0125 dex wide in logM*, against ~0.07 dex between nodes); 40 random eta 0.91.

With the eta-adaptive sub-sampling of the columns (the kernel's default, ``LikelihoodKernel.column_rule``;
each segment of a column cut in k where the halo ridge is narrower than the node spacing): near
the posterior unchanged (the plain rule there, bit for bit); the sigma_h = 0.05 edge 1.1e-4, a
sigma_h scan 0.05-0.4 at beta_h = 2.04 and 4 <= 2.3e-3 (tests below); what is left is mostly the
gamma direction: edges 0.0205 (the sigma_gamma = 0.05 rows), corners 1.63, random 0.91 (the gamma
law near gamma = 2), and a column-direction error of another kind at alpha_sps = -0.5, mu_h = 14
corners (<= 0.43: the photometric factor cuts the column end off within one node).
"""
import itertools

import numpy as np
import pytest

from sl_cy.grids import DEFAULT_GAMMA_GRID, tabulate_likelihood_grids
from sl_cy.likelihood import COLUMN_RULE, LikelihoodKernel
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


@pytest.mark.xfail(strict=True, reason="issue 16 item 1 not met in the gamma direction: at sigma_gamma = 0.05 "
                                       "and for wide gamma laws near gamma = 2 the gamma step 0.1 does not resolve "
                                       "the integrand (edges 0.0205, corners 1.63, random 0.91 with the column "
                                       "rule)")
@pytest.mark.parametrize("group", sorted(BOX))
def test_default_grids_within_one_percent_over_the_box(kernels, group):
    eps = _eps(kernels, BOX[group])
    assert np.abs(eps).max() <= 0.01, np.abs(eps).max()


# ---------------------------------------------------------------------------------------------
# the eta-adaptive column rule (sub-sampled columns where the halo ridge is narrower than the nodes)
# ---------------------------------------------------------------------------------------------
def _sigma_h_scan(beta_h):
    mu_h = 12.91 if beta_h < 3 else 13.5
    return np.array([[0.0, mu_h, beta_h, sh, 1.0, 0.2] for sh in np.geomspace(0.05, 0.4, 15)])


@pytest.mark.parametrize("beta_h", [2.04, 4.0])
def test_column_rule_within_one_percent_at_small_sigma_h(kernels, beta_h):
    """sigma_h from 0.4 down to the box edge 0.05 (the halo ridge from wider than the node spacing
    to ~1/7 of it at beta_h = 4): within 1 % of the 8x finer rule (measured <= 2.3e-3); the plain
    rule errs by > 10 % there."""
    default, ref = kernels
    E = _sigma_h_scan(beta_h)
    rule, lam, _ = default.column_rule_of(E)
    assert rule[-1].max() == 1 and rule[0].min() >= 2 and rule[0].max() >= 3
    eps = default.per_lens(E) - ref.per_lens(E)
    assert np.abs(eps).max() <= 0.01, np.abs(eps).max(axis=1)
    default.column_rule = False
    try:
        plain = default.per_lens(E) - ref.per_lens(E)
    finally:
        default.column_rule = True
    assert np.abs(plain).max() > 0.1


def test_column_rule_sigma_h_edge_within_one_percent(kernels):
    """The sigma_h = 0.05 box edge at the truth (measured 1.1e-4; 0.175 with the plain rule)."""
    eps = _eps(kernels, _edges()[:1])
    assert np.abs(eps).max() <= 0.01, np.abs(eps).max()


def test_column_rule_is_the_plain_rule_near_the_posterior(kernels):
    """Rule 1 (no sub-sampling) in and around the posterior of the default truth, down to
    sigma_h = 0.16: the kernel's values and gradients are bit for bit the plain rule's."""
    default, _ = kernels
    E = np.concatenate([NEAR, TRUTH + np.array([[0, 0, 0, -0.21, 0, 0], [0, 0, 0.3, 0.1, 0, 0]])])
    rule, lam, pts = default.column_rule_of(E)
    assert np.all(rule == 1) and np.all(lam == 0) and np.all(pts == np.diff(default.offsets))
    lp, g = default.per_lens_and_grad(E)
    default.column_rule = False
    try:
        lp0, g0 = default.per_lens_and_grad(E)
    finally:
        default.column_rule = True
    assert np.array_equal(lp, lp0) and np.array_equal(g, g0)


def test_column_rule_converges_to_the_fine_rule(kernels):
    """At sigma_h = 0.05, beta_h = 4 finer rules than the default choice (smaller zmax) stay at the
    fine reference, and the default choice is already there (the sub-sampled rule converges)."""
    default, ref = kernels
    eta = np.array([0.0, 13.5, 4.0, 0.05, 1.0, 0.2])
    r = ref.per_lens(eta)
    errs = []
    saved = dict(COLUMN_RULE)
    try:
        for z in (6.0, 3.0, 1.5, 0.75):
            COLUMN_RULE.update(zmax=z, rmax=64)
            errs.append(np.abs(default.per_lens(eta) - r).max())
    finally:
        COLUMN_RULE.update(saved)
    assert errs[0] > 0.05 and errs[0] > 10 * errs[2], errs
    assert errs[2] <= 0.01 and errs[3] <= 0.01, errs


def _one_lens_thresholds(k, lens, beta_h):
    """sigma_h where lens ``lens`` of kernel k switches: rho = k and k + tau for k = 1..rmax-1."""
    c = COLUMN_RULE
    D = k.dmax[lens] * np.sqrt(1 + beta_h ** 2)           # xi_h = 0: c1 = beta_h
    rho = sorted({float(v) for j in range(1, c["rmax"]) for v in (j, j + c["tau"])} | {float(c["rmax"])})
    return [D / (c["zmax"] * r) for r in rho]


def test_column_rule_is_continuous_across_its_switches(kernels):
    """log p_i a relative step 1e-9 in sigma_h either side of every switch of the rule (start and
    end of each mixing zone) moves by O(step) (bounded by the gradient); with (nearly) no mixing
    zone the same steps jump by far more (the test can fail)."""
    default, _ = kernels
    lens, beta_h = 3, 4.0
    jumps, sharp = [], []

    def bound(g, sh):
        return 10 * np.abs(g[:, lens, 3]).max() * 2e-9 * sh + 1e-11

    saved = dict(COLUMN_RULE)
    try:
        for sh in _one_lens_thresholds(default, lens, beta_h):
            if sh < 0.02:
                continue
            E = np.array([[0.0, 13.5, beta_h, sh * f, 1.0, 0.2] for f in (1 - 1e-9, 1 + 1e-9)])
            lp, g = default.per_lens_and_grad(E)
            jumps.append(abs(lp[1, lens] - lp[0, lens]) / bound(g, sh))
        COLUMN_RULE.update(tau=1e-12)
        for sh in _one_lens_thresholds(default, lens, beta_h)[::2]:
            if sh < 0.02:
                continue
            E = np.array([[0.0, 13.5, beta_h, sh * f, 1.0, 0.2] for f in (1 - 1e-9, 1 + 1e-9)])
            lp, g = default.per_lens_and_grad(E)
            sharp.append(abs(lp[1, lens] - lp[0, lens]) / bound(g, sh))
    finally:
        COLUMN_RULE.update(saved)
    assert len(jumps) >= 10
    assert max(jumps) <= 1.0, jumps
    assert max(sharp) > 100, sharp
