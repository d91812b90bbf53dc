"""Per-lens likelihood grids: truth recovery, independent checks, cache, parallel, bad input."""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import sl_cy
from sl_cy import testing as ref
from sl_cy.config import SourceLaw, SurveyConfig
from sl_cy.forward import ForwardModel
from sl_cy.grids import (DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, LensGrid, check_observed_table, load_grids_hdf5,
                         save_grids_hdf5, stack_grids, tabulate_likelihood_grids)

MH = np.linspace(11.5, 14.5, 13)
GAM = np.linspace(0.2, 1.8, 9)


def regular_grids(obs, logMh_grid, gamma_grid, **kw):
    """The regular (logMh_grid x gamma_grid) grid (``adaptive=False``); the warning that the axis
    does not cover the halo support is expected here (these tests check the grid points, not the
    integral)."""
    with pytest.warns(RuntimeWarning, match="halo support"):
        return tabulate_likelihood_grids(obs, logMh_grid, gamma_grid, adaptive=False, **kw)


@pytest.fixture(scope="module")
def mock():
    lenses, observed = sl_cy.run_mock_simulation(30_000, seed=11, show_progress=False)
    assert len(observed) > 40
    return lenses.reset_index(drop=True), observed.reset_index(drop=True)


def test_truth_is_reproduced_at_the_true_grid_node(mock):
    lenses, observed = mock
    for i in range(12):
        t = lenses.iloc[i]
        mh = np.array([t.logM_halo - 0.2, t.logM_halo, t.logM_halo + 0.2])
        ga = np.array([max(t.gamma_in - 0.1, 0.0), t.gamma_in, t.gamma_in + 0.1]) if t.gamma_in > 0 else \
            np.array([0.0, 0.1, 0.2])
        j = int(np.argmin(np.abs(ga - t.gamma_in)))
        g = regular_grids(observed.iloc[[i]], mh, ga)[0]
        assert g.valid[1, j] == 0
        assert g.logM_star[1, j] == pytest.approx(t.logM_star, abs=1e-9)
        assert g.beta[1, j] == pytest.approx(t.beta_kpc, rel=1e-8, abs=1e-10)
        assert g.ycaustic[1, j] == pytest.approx(t.ycaustic_kpc, rel=1e-9)
        assert g.muA[1, j] == pytest.approx(abs(t.magnificationA), rel=1e-7)
        assert g.muB[1, j] == pytest.approx(abs(t.magnificationB), rel=1e-7)


def test_grid_interpolates_to_the_truth(mock):
    lenses, observed = mock
    mh = np.linspace(11.0, 15.5, 91)
    ga = np.linspace(0.0, 2.0, 81)
    grids = regular_grids(observed.iloc[:30], mh, ga)
    from scipy.interpolate import RegularGridInterpolator
    errs = []
    for g, (_, t) in zip(grids, lenses.iloc[:30].iterrows()):
        v = RegularGridInterpolator((mh, ga), g.logM_star)([[t.logM_halo, t.gamma_in]])[0]
        if np.isfinite(v):
            errs.append(abs(v - t.logM_star))
    assert len(errs) >= 25
    assert np.median(errs) < 2e-4


def test_jacobian_and_fphot_against_independent_computations(mock):
    _, observed = mock
    g = regular_grids(observed.iloc[[0]], MH, GAM)[0]
    o = g.observed
    pts = np.argwhere(g.is_valid)[::7][:6]
    assert len(pts) >= 3
    law = SourceLaw()
    for a, b in pts:
        lens = ref.RefLens(g.logM_star[a, b], MH[a], o["logRe"], GAM[b], 5.0, o["zl"], o["zs"])
        assert g.detJ[a, b] == pytest.approx(ref.detJ_analytic(lens, o["xA"], o["xB"]), rel=1e-6)
        assert g.detJ[a, b] == pytest.approx(ref.detJ_finite_difference(lens, o["xA"], o["xB"]), rel=1e-5)
        # F_phot by adaptive quadrature over the source magnitude ("observed" detection: no P_det)
        mA, mB, s = o["magnitude_observedA"], o["magnitude_observedB"], 0.1
        f = lambda m: law.pdf(m) * stats.norm.pdf(mA, m - 2.5 * np.log10(g.muA[a, b]), s) \
            * stats.norm.pdf(mB, m - 2.5 * np.log10(g.muB[a, b]), s)
        q = integrate.quad(f, 20, 30, points=[mA + 2.5 * np.log10(g.muA[a, b])], limit=200, epsabs=0, epsrel=1e-11)[0]
        assert g.F_phot[a, b] == pytest.approx(q, rel=1e-6)


def test_invalid_points_are_flagged_and_weighted_zero(mock):
    _, observed = mock
    g = regular_grids(observed.iloc[[1]], np.linspace(10.0, 16.0, 25), GAM)[0]
    assert g.n_invalid > 0 and g.is_valid.any()
    assert sum(g.invalid_reasons().values()) == g.n_invalid
    w = g.weight()
    assert np.all(w[~g.is_valid] == 0) and np.all(np.isfinite(w)) and np.all(w[g.is_valid] >= 0)


def test_serial_and_parallel_are_identical(mock):
    _, observed = mock
    a = tabulate_likelihood_grids(observed.iloc[:20], MH, GAM, cache_every=6)
    b = tabulate_likelihood_grids(observed.iloc[:20], MH, GAM, cache_every=6, n_jobs=2)
    assert all(x.equals(y) for x, y in zip(a, b))


def test_cache_resume_is_bit_identical_and_refuses_other_inputs(mock, tmp_path):
    _, observed = mock
    sub = observed.iloc[:20]
    plain = tabulate_likelihood_grids(sub, MH, GAM, cache_every=5)
    first = tabulate_likelihood_grids(sub, MH, GAM, cache_every=5, cache_dir=tmp_path)
    chunks = sorted(tmp_path.glob("chunk_*.h5"))
    assert len(chunks) == 4
    chunks[2].unlink()                                   # an interrupted run: one chunk missing
    chunks[3].write_bytes(b"truncated")                  # ... and one half-written file
    stamp = chunks[0].stat().st_mtime_ns
    resumed = tabulate_likelihood_grids(sub, MH, GAM, cache_every=5, cache_dir=tmp_path)
    assert chunks[0].stat().st_mtime_ns == stamp         # finished chunks were not recomputed
    for x, y, z in zip(plain, first, resumed):
        assert x.equals(y) and x.equals(z)
    with pytest.raises(ValueError, match="different inputs"):
        tabulate_likelihood_grids(observed.iloc[:21], MH, GAM, cache_every=5, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="different inputs"):
        tabulate_likelihood_grids(sub, MH, GAM, cache_every=5, cache_dir=tmp_path, sigma_m=0.2)


def test_per_lens_redshift_columns_are_honoured(mock):
    _, observed = mock
    sub = observed.iloc[:3].copy()
    sub["zl"] = [0.25, 0.35, 0.45]
    sub["zs"] = [1.5, 2.5, 3.0]
    grids = tabulate_likelihood_grids(sub, MH, GAM)
    for i, g in enumerate(grids):
        single = tabulate_likelihood_grids(sub.drop(columns=["zl", "zs"]).iloc[[i]], MH, GAM,
                                           zl=sub.zl.iloc[i], zs=sub.zs.iloc[i])[0]
        np.testing.assert_array_equal(g.logM_star, single.logM_star)
        assert g.observed["zl"] == sub.zl.iloc[i]
    assert not np.array_equal(grids[0].logM_star, grids[2].logM_star)


def test_independent_detection_adds_pdet(mock):
    _, observed = mock
    # the same nodes (the column-step refinement depends on F_phot, so it is off here)
    a = tabulate_likelihood_grids(observed.iloc[[0]], MH, GAM, peak_halvings=0)[0]
    b = tabulate_likelihood_grids(observed.iloc[[0]], MH, GAM, survey=SurveyConfig(detection="independent"),
                                  peak_halvings=0)[0]
    ok = a.is_valid
    assert np.all(b.F_phot[ok] <= a.F_phot[ok] * (1 + 1e-9))
    assert b.config["detection"] == "independent"


def test_forward_model_and_its_overrides_reach_the_grid(mock):
    _, observed = mock
    fm = ForwardModel(survey=SurveyConfig(m_lim=25.5), zl=0.4, c_halo=6.0)
    for given in (fm, fm.to_dict()):              # the object or its dict (as stored in files)
        g = tabulate_likelihood_grids(observed.iloc[[0]].drop(columns=["zl", "zs"]), MH, [1.0],
                                      forward_model=given, sigma_m=0.2)[0]
        got = ForwardModel.from_dict(g.config["forward_model"])
        assert got == fm.replace(survey=SurveyConfig(m_lim=25.5, sigma_m=0.2)), got.diff(fm)
        assert g.config["c_halo"] == 6.0 and g.config["sigma_m"] == 0.2 and g.observed["zl"] == 0.4


def test_hdf5_round_trips(mock, tmp_path):
    _, observed = mock
    grids = tabulate_likelihood_grids(observed.iloc[:5], MH, GAM)
    import h5py
    with h5py.File(tmp_path / "one.h5", "w") as f:
        grids[0].to_hdf5(f.create_group("lens"))
    with h5py.File(tmp_path / "one.h5", "r") as f:
        assert LensGrid.from_hdf5(f["lens"]).equals(grids[0])
    save_grids_hdf5(tmp_path / "all.h5", grids)
    back = load_grids_hdf5(tmp_path / "all.h5")
    assert all(x.equals(y) for x, y in zip(grids, back))
    part = load_grids_hdf5(tmp_path / "all.h5", lenses=[1, 3])
    assert part[1].equals(grids[3])
    st = stack_grids(grids)
    assert st["logM_star"].shape == (5,) + grids[0].shape and grids[0].shape[1] == len(GAM)
    assert st["forward_model"] == ForwardModel().to_dict()


def test_piece_codes_are_recorded_and_older_files_load_without_them(mock, tmp_path):
    """Adaptive grids carry the piece codes of their columns (one first and one last node per
    piece; the likelihood's eta-adaptive column rule needs them), saved and loaded with the grids;
    a grids file written before they were recorded loads with none (all 0), and the likelihood
    then keeps the plain column rule for those lenses (it cannot sub-sample)."""
    import h5py

    from sl_cy.grids import PIECE_CODES
    from sl_cy.likelihood import LikelihoodKernel

    _, observed = mock
    grids = tabulate_likelihood_grids(observed.iloc[:4], gamma_grid=GAM)
    for g in grids:
        pc = g.piece.astype(int)
        used = g.valid != 100
        assert np.array_equal(pc != 0, used)
        assert np.array_equal((pc & PIECE_CODES["first"]).astype(bool).sum(0), (pc & PIECE_CODES["last"]).astype(bool).sum(0))
        assert np.all(pc[0][used[0]] & PIECE_CODES["first"])
    save_grids_hdf5(tmp_path / "new.h5", grids)
    with h5py.File(tmp_path / "new.h5", "a") as f:
        del f["piece"]                                   # the layout before piece codes
    with pytest.warns(RuntimeWarning, match="plain column rule"):
        old = load_grids_hdf5(tmp_path / "new.h5")
    assert all(np.all(g.piece == 0) for g in old)
    eta = np.array([0.0, 13.5, 4.0, 0.05, 1.0, 0.2])
    k_new, k_old = LikelihoodKernel(grids, selection=False), LikelihoodKernel(old, selection=False)
    assert np.all(k_new.column_rule_of(eta)[0] > 1) and np.all(k_old.column_rule_of(eta)[0] == 1)
    k_new.column_rule = False
    np.testing.assert_array_equal(k_old.per_lens(eta), k_new.per_lens(eta))
    # regular grids carry no piece codes either
    reg = regular_grids(observed.iloc[:2], MH, GAM)
    assert all(np.all(g.piece == 0) for g in reg)


def test_fixed_gamma_is_a_one_dimensional_grid(mock):
    _, observed = mock
    g = regular_grids(observed.iloc[[0]], MH, [1.0])[0]
    assert g.shape == (len(MH), 1) and g.gamma_axis.tolist() == [1.0]
    # without gamma_grid the default gamma grid is used (a one-node axis only when asked for)
    d = tabulate_likelihood_grids(observed.iloc[[0]], MH)[0]
    np.testing.assert_array_equal(d.gamma_axis, DEFAULT_GAMMA_GRID)
    assert d.config["quadrature"] == "adaptive"


def test_adaptive_scan_covers_the_halo_support_and_uniform_grids_warn(mock):
    _, observed = mock
    g = tabulate_likelihood_grids(observed.iloc[[0]], MH, GAM)[0]          # adaptive by default
    lo, hi = ForwardModel().halo_support
    assert g.logMh_axis[0] == lo and g.logMh_axis[-1] == hi
    assert DEFAULT_LOGMH_GRID[0] == lo and DEFAULT_LOGMH_GRID[-1] == hi
    with pytest.warns(RuntimeWarning, match="halo support"):
        tabulate_likelihood_grids(observed.iloc[[0]], MH, GAM, adaptive=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        full = tabulate_likelihood_grids(observed.iloc[[0]], DEFAULT_LOGMH_GRID, [1.0], adaptive=False)[0]
    assert full.shape == (len(DEFAULT_LOGMH_GRID), 1)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns=["magnitude_observedB"]), "missing column"),
    (lambda d: d.assign(logRe=[np.nan] + list(d.logRe.iloc[1:])), "column 'logRe' has a non-finite value"),
    (lambda d: d.assign(xB=d.xA), "opposite sides"),
    (lambda d: d.assign(zl=3.0, zs=2.0), "zl < zs"),
])
def test_bad_tables_are_reported_by_column_and_row(mock, mutate, match):
    _, observed = mock
    with pytest.raises(ValueError, match=match):
        tabulate_likelihood_grids(mutate(observed.iloc[:4].copy()), MH, GAM)


def test_bad_axes():
    obs = pd.DataFrame(dict(xA=[6.6], xB=[-3.0], logRe=[0.9], logM_star_sps_observed=[11.5],
                            magnitude_observedA=[24.0], magnitude_observedB=[24.8], zl=[0.3], zs=[2.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        tabulate_likelihood_grids(obs, [13.0, 12.0])
    with pytest.raises(ValueError, match="gamma_grid"):
        tabulate_likelihood_grids(obs, MH, [0.5, 2.6])
    assert check_observed_table(obs)["zl"][0] == 0.3
    # no silent default redshifts: a table without zl/zs columns needs explicit values
    no_z = obs.drop(columns=["zl", "zs"])
    with pytest.raises(ValueError, match="no 'zl' column and no zl was given"):
        check_observed_table(no_z)
    with pytest.raises(ValueError, match="no 'zl' column"):
        tabulate_likelihood_grids(no_z)
    assert check_observed_table(no_z, 0.4, 1.5)["zs"][0] == 1.5


# two lenses of run_mock_simulation(100_000, seed=1) (rows 84, 1): the first has image B near the
# radial critical curve, where W = beta |J| F_phot peaks within ~2 nodes of its columns
PEAK_LENSES = pd.DataFrame(dict(xA=[22.2661, 10.2153], xB=[-2.0823, -5.3636], logRe=[0.5682, 0.7042],
                                logM_star_sps_observed=[11.1362, 11.3503], magnitude_observedA=[24.0073, 24.6288],
                                magnitude_observedB=[25.8252, 25.4071], zl=0.3, zs=2.0))


def test_column_step_is_halved_only_for_a_sharp_weight_peak():
    from sl_cy.grids import GRID_ARRAYS, WEIGHT_PEAK_CURVATURE, weight_peak_curvature
    from sl_cy.likelihood import LikelihoodKernel
    from sl_cy.population import DEFAULT_ETA

    plain = tabulate_likelihood_grids(PEAK_LENSES, peak_halvings=0, show_progress=False)
    grids = tabulate_likelihood_grids(PEAK_LENSES, show_progress=False)
    c0, c1 = weight_peak_curvature(plain), weight_peak_curvature(grids)
    assert c0[0] > WEIGHT_PEAK_CURVATURE and (c0[1:] < WEIGHT_PEAK_CURVATURE).all()
    assert (c1 <= WEIGHT_PEAK_CURVATURE).all()
    n0 = plain[0].shape[0]
    assert grids[0].shape[0] > n0                    # the refined lens needs more slots: all lenses get them
    # the smooth lenses are unchanged (their extra slots are padding) ...
    for a, b in zip(plain[1:], grids[1:]):
        for k in GRID_ARRAYS + ("valid",):
            np.testing.assert_array_equal(getattr(b, k)[:n0], getattr(a, k))
        assert (b.valid[n0:] == 100).all() and (b.wq[n0:] == 0).all()
    # ... the sharp one gets about twice the nodes, and a per-lens integral closer to a 4x finer rule
    assert 1.6 < grids[0].is_valid.sum() / plain[0].is_valid.sum() < 2.4
    fine = LikelihoodKernel(tabulate_likelihood_grids(PEAK_LENSES.iloc[:1], adaptive_step=0.25, peak_halvings=0,
                                                      show_progress=False)).per_lens(np.array([DEFAULT_ETA]))[0, 0]
    err = [abs(LikelihoodKernel(g[:1]).per_lens(np.array([DEFAULT_ETA]))[0, 0] - fine) for g in (plain, grids)]
    assert err[1] < err[0] / 3
    # the rule is part of the configuration (grids.h5 attributes and the cache key)
    assert grids[0].config["peak_halvings"] == 2 and plain[0].config["peak_halvings"] == 0
    assert grids[0].config["peak_curvature"] == WEIGHT_PEAK_CURVATURE
    assert grids[0].config["key"] != plain[0].config["key"]
    with pytest.raises(ValueError, match="peak_halvings"):
        tabulate_likelihood_grids(PEAK_LENSES, peak_halvings=-1)
