"""Deterministic A(eta) by product quadrature over the tabulated selection rate (SelectionQuadrature)."""
import numpy as np
import pytest

from sl_cy.population import DEFAULT_ETA
from sl_cy.selection import SelectionQuadrature, build_selection_bank, build_selection_table
from sl_cy.selection.quadrature import AXIS_NAMES

TRUTH = np.asarray(DEFAULT_ETA, float)
#: a reduced table around the default population (the default axes take ~15 s to build); beyond
#: logMh = 16 the rate is clamped to the table's edge (negligible weight near the default eta)
AXES = dict(logM_star=(10.4, 12.6, 0.1), logRe=(-0.3, 1.9, 0.2), logM_halo=(11.0, 16.0, 0.1), gamma_in=(0.0, 2.0, 0.1))
NEAR = np.array([TRUTH, TRUTH + [0.05, 0, 0, 0, 0, 0], TRUTH + [0, 0.15, 0, 0, 0, 0], TRUTH + [0, 0, 0.3, 0.05, 0, 0],
                 TRUTH + [0, 0, 0, 0, 0.2, 0.05]])


@pytest.fixture(scope="module")
def sq(tmp_path_factory):
    return build_selection_table(axes=AXES, cache_dir=tmp_path_factory.mktemp("selcache"), n_jobs=2)


@pytest.fixture(scope="module")
def bank():
    return build_selection_bank(300_000, seed=7, n_beta=4)


def test_quadrature_agrees_with_the_monte_carlo_bank(sq, bank):
    A = sq(NEAR)
    Ab, ess = bank.evaluate(NEAR, return_ess=True, warn=False)
    sig = 1.0 / np.sqrt(ess)
    rel = A / Ab - 1
    assert np.all(np.abs(rel) < 4 * sig + 0.02), (rel, sig)
    # ratios (what the posterior sees) agree better than absolute values
    assert np.all(np.abs(np.log(A[1:] / A[0]) - np.log(Ab[1:] / Ab[0])) < 4 * np.sqrt(sig[1:] ** 2 + sig[0] ** 2))
    # A(eta) is the lens fraction E[1 - exp(-T)]; E[T] exceeds it by the multiple-source saturation
    f = sq.lens_fraction(NEAR)
    assert np.array_equal(f, A)
    ET = sq.expected_sources(NEAR)
    assert np.all(f < ET) and np.all(f > 0.9 * ET)
    ETb, ess_b = bank.evaluate(NEAR, return_ess=True, warn=False, quantity="expected_sources")
    assert np.all(np.abs(ET / ETb - 1) < 4 / np.sqrt(ess_b) + 0.03)


def test_quadrature_is_smooth_and_deterministic(sq):
    mu = np.linspace(12.7, 13.1, 41)
    E = np.repeat(TRUTH[None], len(mu), 0)
    E[:, 1] = mu
    la = np.log(sq(E))
    d2 = np.diff(la, 2)
    # a Monte-Carlo estimate jitters at ~1/sqrt(ESS) ~ 1e-2; the quadrature only shows the kinks
    # of the multilinear table interpolation (~5e-4 at 0.01 steps)
    assert np.max(np.abs(d2)) < 1e-3
    assert np.all(np.diff(la) > 0)                  # more massive halos lens more
    assert np.array_equal(sq(E), sq(E))
    one = sq(TRUTH)
    assert isinstance(one, float) and one == pytest.approx(sq(E[20:21])[0] if mu[20] == TRUTH[1] else one)


def test_quadrature_threads_and_bad_rows(sq):
    with pytest.raises(ValueError, match="sigma_h must be > 0"):
        sq(np.vstack([NEAR, [0.0, 13.0, 2.0, -0.1, 1.0, 0.2]]))
    with pytest.raises(ValueError, match="eta must be finite"):
        sq([np.nan] * 6)
    sq1 = SelectionQuadrature(sq.T, sq.axes, sq.config, n_threads=1)
    assert np.array_equal(sq1(NEAR), sq(NEAR))
    assert np.array_equal(sq1.expected_sources(NEAR), sq.expected_sources(NEAR))


def test_rate_interpolates_the_table_in_log_T(sq):
    # log T: cubic (4-point Lagrange) along each axis; half-way between two nodes along one axis
    # that is the mid-point rule (-1, 9, 9, -1) / 16 of the four nodes around
    names = ("logM_star", "logRe", "logM_halo", "gamma_in")
    start = {k: v[0] for k, v in sq.axes.items()}
    step = {k: v[2] for k, v in sq.axes.items()}
    i = np.unravel_index(np.argmax(sq.T), sq.T.shape)
    i = tuple(min(max(v, 1), n - 3) for v, n in zip(i, sq.T.shape))
    node = [start[k] + step[k] * v for k, v in zip(names, i)]
    box = sq.T[i[0] - 1:i[0] + 3, i[1] - 1:i[1] + 3, i[2] - 1:i[2] + 3, i[3] - 1:i[3] + 3]
    assert np.all(box > 0)
    assert sq.rate(*node)[()] == pytest.approx(sq.T[i], rel=1e-12)
    lt = np.log(box)
    for d in range(4):
        mid = list(node)
        mid[d] += 0.5 * step[names[d]]
        want = np.exp(np.array([-1, 9, 9, -1]) @ np.moveaxis(lt, d, 0)[(slice(None),) + (1,) * 3] / 16)
        assert sq.rate(*mid)[()] == pytest.approx(want, rel=1e-12), names[d]
    lo, hi = sq.forward_model.halo_support             # outside the halo support no galaxy is a lens
    out = sq.rate([node[0]] * 2, [node[1]] * 2, [lo - 0.5, hi + 0.5], [node[3]] * 2)
    assert out.tolist() == [0.0, 0.0]


def test_table_cache_round_trip(sq, tmp_path):
    p = sq.save(tmp_path / "t.h5")
    back = SelectionQuadrature.load(p)
    assert np.array_equal(back.T, sq.T) and back.config_hash == sq.config_hash
    assert np.array_equal(back(NEAR), sq(NEAR))
    with pytest.raises(ValueError, match="another configuration"):
        SelectionQuadrature.load(p, expected_hash="0" * 64)
    with pytest.raises(ValueError, match="axis"):
        build_selection_table(axes=dict(AXES, logRe=(1.0, 0.0, 0.1)), cache=False)


def test_posterior_with_quadrature_selection(sq, monkeypatch):
    from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, tabulate_likelihood_grids
    from sl_cy.likelihood import Posterior
    from sl_cy.mock import run_mock_simulation

    _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    grids = tabulate_likelihood_grids(obs.iloc[:10], DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID, adaptive=True,
                                      show_progress=False)
    post = Posterior(grids, A=sq)
    lp = post(np.vstack([TRUTH, [0.0, 13.0, 2.0, 0.3, 5.0, 0.2]]))
    assert np.isfinite(lp[0]) and lp[1] == -np.inf
    # an A(eta) of another forward model is refused, naming the differing field
    from sl_cy.config import SurveyConfig
    from sl_cy.forward import ForwardModel, ForwardModelMismatch

    other = SelectionQuadrature(sq.T, sq.axes, dict(sq.config, forward_model=ForwardModel(
        survey=SurveyConfig(m_lim=25.5)).to_dict()))
    with pytest.raises(ForwardModelMismatch, match="survey.m_lim"):
        Posterior(grids, A=other)
    # from ERROR_CHECK_MIN_LENSES lenses on the posterior checks A's accuracy for its N and warns
    from sl_cy.selection import SelectionWarning
    from sl_cy.selection import quadrature as q

    monkeypatch.setattr(q, "ERROR_CHECK_MIN_LENSES", 10)
    with pytest.warns(SelectionWarning, match="not accurate enough for 10 lenses"):
        Posterior(grids, A=sq.coarsened("logRe"))      # an axis too short to check


@pytest.mark.parametrize("eta", [(0.0, 12.91, 2.04, 0.37, 1.0, 0.2), (-0.1, 13.2, 2.5, 0.5, 1.4, 0.15),
                                 (0.15, 12.5, 1.5, 0.25, 0.6, 0.3), (0.3, 13.0, 2.0, 0.1, 1.0, 0.1)],
                         ids=["default", "steep-massive", "shallow-light", "heavy-narrow"])
def test_A_equals_the_mock_lens_fraction(eta):
    """A(eta) of the default engine (the forward model's quadrature) equals the lens fraction of a
    mock of 1e6 galaxies within 3 sigma of its binomial error, at the default eta and far from it
    (benchmarks/aeta_vs_mock.py does the same with 5e6: all within 2 sigma). The old normaliser
    E[T] is 51 % too high at the steep, massive eta."""
    from sl_cy.mock import simulate_mock
    from sl_cy.selection import selection_for

    n = 1_000_000
    m = simulate_mock(n, seed=77, eta=eta, n_jobs=2, keep_galaxies=False, show_progress=False)
    f = m.n_lenses / n
    err = (f * (1 - f) / n) ** 0.5
    A = selection_for(m.forward_model)(np.array(eta))
    assert abs(A - f) < 3 * err, (A, f, err)


def _random_eta(n, seed):
    from sl_cy.population import ETA_BOX, ETA_NAMES

    lo, hi = (np.array([ETA_BOX[k][i] for k in ETA_NAMES]) for i in (0, 1))
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, 6))


def test_interpolation_error_against_a_table_with_twice_the_step(sq):
    # every second node along one axis is exactly the table a build with twice that step gives;
    # with the cubic rule log A moves by at most these at random eta in the box (measured 9.8e-5,
    # 9.1e-3, 2.1e-4, 1.9e-3; the multilinear rule moved it by 3.9e-3, 6.0e-2, 2.2e-3, 9.9e-3)
    E = _random_eta(8, 5)
    la = np.log(sq(E))
    for ax, tol in (("logM_star", 5e-4), ("logRe", 2e-2), ("logM_halo", 1e-3), ("gamma_in", 5e-3)):
        c = sq.coarsened(ax)
        d = ("logM_star", "logRe", "logM_halo", "gamma_in").index(ax)
        assert c.T.shape[d] == (sq.T.shape[d] + 1) // 2 and c.axes[ax][2] == pytest.approx(2 * sq.axes[ax][2])
        assert np.max(np.abs(np.log(c(E)) - la)) < tol, ax


def test_error_report_flags_a_coarse_table_at_large_n(sq):
    import warnings

    from sl_cy.population import ETA_NAMES
    from sl_cy.selection import SelectionWarning

    small = sq.error_report(400)
    assert small["ok"] and small["max"] < 0.1 and not small["unchecked"] and set(small["D"]) == set(ETA_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sq.check_accuracy(400)                          # no warning
    # this test table's logRe step (0.2, twice the default) is too coarse for 1e5 lenses; the
    # estimate grows like sqrt(N) (a smooth error: N x the change over sigma ~ 1 / sqrt(N))
    big = sq.error_report(100_000)
    assert not big["ok"] and big["max"] > 0.1 and "logRe" in big["refine"] and "refine={" in big["remedy"]
    assert set(big["D_axis"]) == set(AXIS_NAMES)
    np.testing.assert_allclose(sum(np.array(list(v.values())) for v in big["D_axis"].values()),
                               list(big["D_table"].values()), rtol=1e-12, atol=1e-15)
    assert 8 < big["max"] / small["max"] < 30
    assert abs(big["D_table"][big["worst"]]) > abs(big["D_rule"][big["worst"]])
    with pytest.warns(SelectionWarning, match="not accurate enough for 100000 lenses.*Remedy"):
        sq.check_accuracy(100_000)
    with pytest.raises(ValueError, match="not accurate enough"):
        sq.check_accuracy(100_000, action="raise")
    # an axis too short to coarsen cannot be checked: never reported ok
    r = sq.coarsened("logRe").error_report(400)
    assert r["unchecked"] == ["logRe"] and not r["ok"] and "too few nodes" in r["remedy"]
    with pytest.raises(ValueError, match="n_lenses"):
        sq.error_report(0)


def test_selection_table_axes_refine_per_axis():
    from sl_cy.selection import selection_table_axes

    base = selection_table_axes()
    fine = selection_table_axes(refine={"logRe": 2, "gamma_in": 2})
    assert fine["logRe"][2] == pytest.approx(base["logRe"][2] / 2) and fine["gamma_in"][2] == 0.05
    assert fine["logM_star"] == base["logM_star"] and fine["logM_halo"] == base["logM_halo"]
    assert selection_table_axes(refine=2)["logM_halo"][2] == pytest.approx(0.05)
    for bad, match in (({"logR": 2}, "unknown axis 'logR'"), ({"logRe": 0}, "logRe=0"), (1.5, "positive integer"),
                       (True, "positive integer")):
        with pytest.raises(ValueError, match=match):
            selection_table_axes(refine=bad)


def test_error_report_passes_the_default_table_at_default_n():
    from sl_cy.selection import selection_for

    A = selection_for()
    assert selection_for(n_lenses=430).config_hash == A.config_hash     # no refinement needed at 430 lenses
    r = A.error_report(430)                             # the default run's ~430 lenses
    assert r["ok"] and r["max"] < 0.02 and r["refine"] == {}, r
    # at 1e5 lenses the table term dominates, from the gamma_in and logRe steps: selection_for(fm,
    # n_lenses=1e5) builds the table refined along those two
    big = A.error_report(100_000)
    assert not big["ok"] and big["refine"] == {"gamma_in": 2, "logRe": 2}, big
    # the 2x rule alone: what the default table gives at 1e4 lenses (measured <= 0.009 at the
    # Laplace widths of benchmarks/accuracy_scaling.py, <= 0.03 here at the default widths)
    assert max(abs(v) for v in A.error_report(10_000)["D_rule"].values()) < 0.05


def test_selection_for_refines_the_table_when_n_needs_it(tmp_path, monkeypatch):
    """End to end: ``selection_for(fm, n_lenses=N, axes=coarse)`` consults the coarse table's error
    report at N, builds the table refined along the axes it names (steps halved), which meets the
    criterion at N, and the next call loads both from the cache (no forward solve). A Posterior
    with the default A passes its number of lenses to ``selection_for``. Cheap: a coarse first
    table (8 x 15 x 11 x 9 nodes) whose error is too large for N = 1000 lenses (its report: 0.44,
    refine all four axes; the refined table: 0.04)."""
    import warnings

    from sl_cy.grids import tabulate_likelihood_grids
    from sl_cy.likelihood import Posterior
    from sl_cy.mock import run_mock_simulation
    from sl_cy.selection import SelectionWarning
    from sl_cy.selection import quadrature as q

    builds = []
    real_build, real_for = q._build_table, q.selection_for

    def counting_build(cfg, *args):
        builds.append(cfg["axes"])
        return real_build(cfg, *args)

    monkeypatch.setattr(q, "_build_table", counting_build)
    base = dict(logM_star=(10.0, 12.8, 0.4), logRe=(-0.6, 2.2, 0.2), logM_halo=(11.0, 16.0, 0.5),
                gamma_in=(0.0, 2.0, 0.25))
    kw = dict(axes=base, n_jobs=2, cache_dir=tmp_path, progress=False)
    n = q.ERROR_CHECK_MIN_LENSES
    coarse = real_for(**kw)                                            # no N: the first table as is
    assert len(builds) == 1 and coarse.T.shape == (8, 15, 11, 9)
    r0 = coarse.error_report(n)
    assert not r0["ok"] and r0["max"] > 2 * q.ERROR_TOL and r0["refine"], r0
    assert real_for(n_lenses=n - 1, **kw).config_hash == coarse.config_hash   # below the check: as is
    fine = real_for(n_lenses=n, **kw)
    assert len(builds) == 2                                            # the coarse one came from the cache
    for k in AXIS_NAMES:
        lo, hi, st = fine.axes[k]
        assert (lo, hi) == base[k][:2] and st == pytest.approx(base[k][2] / r0["refine"].get(k, 1)), k
    assert fine.path.exists() and fine.path != coarse.path
    r1 = fine.error_report(n)
    assert r1["ok"] and r1["max"] <= q.ERROR_TOL and not r1["unchecked"], r1
    again = real_for(n_lenses=n, **kw)
    assert len(builds) == 2 and again.path == fine.path and np.array_equal(again.T, fine.T)

    # Posterior(grids) with the default A: selection_for(fm, n_lenses=N) with its N (redirected to
    # the coarse first table here; 100 copies of 10 lenses = N), then the accuracy check at N
    seen = []

    def spy(fm, n_lenses=None):
        seen.append(n_lenses)
        return real_for(fm, n_lenses=n_lenses, **kw)

    monkeypatch.setattr("sl_cy.selection.selection_for", spy)
    _, obs = run_mock_simulation(20_000, seed=3, show_progress=False)
    grids = tabulate_likelihood_grids(obs.iloc[:10], show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)
        post = Posterior(grids * (n // 10))
    # one table for both: the kernel's one-entry-per-galaxy rate factor and A(eta) (asked for with N)
    assert post.n_lenses == n and seen == [n] and post.A.config_hash == fine.config_hash and len(builds) == 2
    assert post.kernel.rate_engine is post.A
    assert np.isfinite(post(np.asarray(DEFAULT_ETA, float)))
