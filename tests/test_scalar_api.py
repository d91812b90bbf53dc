"""The seed's scalar API (LensModel & co.) equals the batch API to the last bit.

The scalar path (``_lensing.ScalarLens``, ``_lensing.invert_one`` and the cached lens-plane
constants) must run the same C routines on the same inputs as ``forward_solve`` /
``invert_images``; these tests compare with ``==`` (NaN equal to NaN), never with a tolerance.
"""
import pickle
import warnings

import numpy as np
import pytest

import sl_cy
from sl_cy import LensModel, _lensing
from sl_cy.lensing import Status
from sl_cy.cosmology import Cosmology
from sl_cy.lensing import LensingWarning

KEYS = ("logM_star", "logM_halo", "logRe", "zl", "zs", "gamma_in", "c_halo")


def _lenses(n, seed):
    """Random lenses spanning valid, subcritical and no-radial-caustic cases, per-lens redshifts."""
    rng = np.random.default_rng(seed)
    ms = rng.normal(11.3, 0.35, n)
    return dict(logM_star=ms, logM_halo=12.9 + 2.0 * (ms - 11.4) + rng.normal(0, 0.4, n),
                logRe=0.77 + 0.98 * (ms - 11.4) + rng.normal(0, 0.15, n), gamma_in=rng.uniform(0.0, 2.4, n),
                c_halo=rng.uniform(3, 9, n), zl=rng.uniform(0.1, 0.8, n), zs=rng.uniform(1.0, 4.0, n),
                beta_unit=rng.uniform(0, 1, n))


def _same(a, b):
    """Bit-equality of floats, NaN equal to NaN."""
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


def _model(L, i, cosmo=None, cast=float):
    return LensModel(**{k: cast(L[k][i]) for k in KEYS}, cosmo=cosmo)


@pytest.mark.parametrize("cosmo", [None, Cosmology(67.7, 0.31), Cosmology(70.0, 0.3, 0.6)],
                         ids=["default", "flat-planck-like", "open"])
def test_lens_model_equals_forward_solve_bitwise(cosmo):
    L = _lenses(400, seed=11)
    crit = sl_cy.forward_solve(**{k: L[k] for k in ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs")},
                               cosmo=cosmo)
    out = sl_cy.forward_solve(**{k: L[k] for k in ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs")},
                              beta_unit=L["beta_unit"], cosmo=cosmo)
    statuses = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LensingWarning)
        for i in range(len(L["zl"])):
            # Python floats for even i, numpy.float64 for odd i: both take the fast path
            m = _model(L, i, cosmo, cast=float if i % 2 == 0 else np.float64)
            c = m.critical()
            statuses.add(c["status"])
            assert c["status"] == crit["status"][i]
            assert _same(m.einstein_radius(), crit["theta_e"][i])
            assert _same(m.solve_xradcrit(), crit["x_rad"][i])
            assert _same(m.solve_ycaustic(), crit["y_caustic"][i])
            bu = float(L["beta_unit"][i])
            xA, xB = sl_cy.solve_single_lens(m, bu)
            assert _same(xA, out["x_A"][i]) and _same(xB, out["x_B"][i])
            p = sl_cy.lens_properties(m, bu)
            assert p["status"] == out["status"][i]
            for mine, theirs in (("magnificationA", "mu_A"), ("magnificationB", "mu_B"), ("kappaA", "kappa_A"),
                                 ("kappaB", "kappa_B"), ("gammaA", "shear_A"), ("gammaB", "shear_B"),
                                 ("beta", "beta"), ("ycaustic_kpc", "y_caustic"),
                                 ("einstein_radius_kpc", "theta_e"), ("xradcrit_kpc", "x_rad")):
                assert _same(p[mine], out[theirs][i]), (i, mine)
            if out["status"][i] == Status.OK:
                # local quantities at the images, through the per-method scalar path
                assert m.mu_from_rt(xA) == out["mu_A"][i] and m.mu_from_rt(xB) == out["mu_B"][i]
                assert m.kappa(xA) == out["kappa_A"][i] and m.gamma(xB) == out["shear_B"][i]
                assert p["xA_arcsec"] == sl_cy.cosmology.kpc_to_arcsec(np.array([xA]), m.zl, cosmo)[0]
    assert {Status.OK, Status.NO_RADIAL_CAUSTIC} <= statuses


def test_local_quantities_scalar_equal_array_and_profile_batch():
    L = _lenses(60, seed=12)
    rng = np.random.default_rng(0)
    names = _lensing.LOCAL_NAMES
    for i in range(60):
        m = _model(L, i)
        x = np.concatenate([rng.uniform(0.01, 30.0, 5), -rng.uniform(0.01, 30.0, 5)])
        pb = _lensing.profile_batch(x, *(float(L[k][i]) for k in ("logM_star", "logM_halo", "logRe", "gamma_in",
                                                                  "c_halo", "zl", "zs")), 70.0, 0.3, 0.7)
        assert m.rs == pb["rs"] and m.Sigma_cr == pb["sigma_cr"] == sl_cy.Sigma_cr(m.zl, m.zs)
        assert m.M200 == pb["M200"]
        for name in names:
            arr = getattr(m, name)(x)
            assert _same(arr, pb[name]), name
            assert _same([getattr(m, name)(float(v)) for v in x], arr), name
        assert _same([m.mu_from_rt(float(v)) for v in x], m.mu_from_rt(x))
        assert _same([m.gamma(float(v)) for v in x], m.gamma(x))
        assert _same([m.mu_from_kg(float(v)) for v in x], m.mu_from_kg(x))
        assert _same(m.alpha_halo(5.0) * np.pi * 5.0 * m.Sigma_cr, m.Mh5())


def test_inversion_scalar_equals_invert_images_bitwise():
    L = _lenses(400, seed=13)
    L["gamma_in"] = np.minimum(L["gamma_in"], 1.9)
    out = sl_cy.forward_solve(**{k: L[k] for k in ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs")},
                              beta_unit=L["beta_unit"])
    ok = np.flatnonzero(out["status"] == 0)
    rng = np.random.default_rng(1)
    # invert at halos off the truth too: valid points and every kind of invalid one
    mh = L["logM_halo"][ok] + rng.normal(0.0, 0.8, ok.size)
    args = {k: L[k][ok] for k in ("logRe", "c_halo", "zl", "zs")}
    args["gamma_in"] = rng.uniform(0.0, 2.4, ok.size)
    xa_all, xb_all = out["x_A"][ok], out["x_B"][ok] * np.where(np.arange(ok.size) % 5 == 4, 0.2, 1.0)
    r = sl_cy.invert_images(xa_all, xb_all, logM_halo=mh, **args)
    assert {Status.OK, Status.MSTAR_NONPOSITIVE, Status.NO_RADIAL_CAUSTIC, Status.XB_CENTRAL_IMAGE} \
        <= set(r["status"].tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LensingWarning)
        for j in range(ok.size):
            xA, xB = float(xa_all[j]), float(xb_all[j])
            if j % 3 == 2:                       # reflected images are oriented, not rejected
                xA, xB = -xA, -xB
            cast = float if j % 2 == 0 else np.float64
            a = (cast(xA), cast(xB), cast(args["logRe"][j]), cast(mh[j]))
            kw = dict(zl=cast(args["zl"][j]), zs=cast(args["zs"][j]), gamma_in=cast(args["gamma_in"][j]),
                      c_halo=cast(args["c_halo"][j]))
            res = sl_cy.solve_lens_parameters_from_obs(*a, **kw)
            if r["status"][j] == Status.OK:
                yc = r["y_caustic"][j]
                want = (r["logM_star"][j], r["beta"][j] / yc, yc, r["mu_A"][j], r["mu_B"][j])
                assert all(_same(u, v) for u, v in zip(res, want)), j
            else:
                assert np.isnan(res).all()
            dj = sl_cy.compute_detJ(*a, **kw)
            want = np.nan if r["status"][j] == Status.MSTAR_NONPOSITIVE else r["detJ"][j]
            assert _same(dj, want), j
    # the array path of compute_detJ gives the same numbers
    dja = sl_cy.compute_detJ(xa_all, xb_all, args["logRe"], mh, zl=args["zl"], zs=args["zs"],
                             gamma_in=args["gamma_in"], c_halo=args["c_halo"])
    assert _same(dja, np.where(r["status"] == Status.MSTAR_NONPOSITIVE, np.nan, r["detJ"]))


def test_scalar_cosmology_equals_array_path():
    rng = np.random.default_rng(3)
    zl = rng.uniform(0.05, 1.0, 50)
    zs = zl + rng.uniform(0.1, 3.0, 50)
    for cosmo in (None, Cosmology(67.7, 0.31), Cosmology(70.0, 0.3, 0.6)):
        d_l = sl_cy.Dang(zl, cosmo=cosmo)
        d_ls = sl_cy.Dang(zl, zs, cosmo=cosmo)
        sc = sl_cy.Sigma_cr(zl, zs, cosmo=cosmo)
        rc = sl_cy.rhoc(zl, cosmo=cosmo)
        arc = sl_cy.cosmology.kpc_to_arcsec(np.full(50, 3.7), zl, cosmo=cosmo)
        back = sl_cy.cosmology.arcsec_to_kpc(np.full(50, 1.3), zl, cosmo=cosmo)
        for i in range(50):
            a, b = float(zl[i]), float(zs[i])
            assert sl_cy.Dang(a, cosmo=cosmo) == d_l[i]
            assert sl_cy.Dang(a, b, cosmo=cosmo) == d_ls[i]
            assert sl_cy.Sigma_cr(a, b, cosmo=cosmo) == sc[i]
            assert sl_cy.rhoc(a, cosmo=cosmo) == rc[i]
            assert sl_cy.cosmology.kpc_to_arcsec(3.7, a, cosmo=cosmo) == arc[i]
            assert sl_cy.cosmology.arcsec_to_kpc(1.3, a, cosmo=cosmo) == back[i]


def test_caches_are_keyed_by_cosmology():
    a = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    b = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0, cosmo=Cosmology(67.7, 0.31))
    assert a.Sigma_cr != b.Sigma_cr and a.einstein_radius() != b.einstein_radius()
    assert b.Sigma_cr == sl_cy.Sigma_cr(0.3, 2.0, cosmo=Cosmology(67.7, 0.31))
    assert sl_cy.Dang(0.3) != sl_cy.Dang(0.3, cosmo=Cosmology(67.7, 0.31))


def test_other_scalar_types_take_the_checked_path_and_agree():
    ref = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0, gamma_in=1.2, c_halo=6.0)
    for cast in (np.float32, np.array, lambda v: np.array([v])[0], lambda v: v):
        vals = [cast(v) for v in (11.5, 13.0, 0.9, 0.3, 2.0, 1.2, 6.0)]
        m = LensModel(*vals[:3], zl=vals[3], zs=vals[4], gamma_in=vals[5], c_halo=vals[6])
        if cast is np.float32:
            continue                                     # 0.9 is a different number in float32
        assert m.solve_ycaustic() == ref.solve_ycaustic()
        assert type(m.logRe) is float
    m = LensModel(11, 13, 1, zl=0.3, zs=2, gamma_in=1, c_halo=5)       # ints
    assert m.solve_ycaustic() == LensModel(11.0, 13.0, 1.0).solve_ycaustic()
    x0 = np.array(2.5)
    assert ref.alpha(x0) == ref.alpha(2.5) and isinstance(ref.alpha(x0), float)
    assert sl_cy.solve_single_lens(ref, np.array(0.4)) == sl_cy.solve_single_lens(ref, 0.4)
    xA, xB = sl_cy.solve_single_lens(ref, 0.4)
    assert sl_cy.compute_detJ(np.array(xA), np.array(xB), 0.9, 13.0, zl=0.3, zs=2.0, gamma_in=1.2, c_halo=6.0) == \
        sl_cy.compute_detJ(xA, xB, 0.9, 13.0, zl=0.3, zs=2.0, gamma_in=1.2, c_halo=6.0)


def test_parameters_are_read_only_and_models_pickle():
    m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0, gamma_in=1.3, cosmo=Cosmology(68.0, 0.3))
    with pytest.raises(AttributeError):
        m.logM_star = 11.0
    with pytest.raises(AttributeError):
        m.Sigma_cr = 1.0
    m2 = pickle.loads(pickle.dumps(m))
    assert repr(m2) == repr(m) and m2.cosmo == m.cosmo
    assert m2.solve_ycaustic() == m.solve_ycaustic() and m2.alpha(1.7) == m.alpha(1.7)


def test_scalar_warnings_and_errors():
    m = LensModel(11.5, 13.0, 0.9, gamma_in=2.2)
    with pytest.warns(LensingWarning, match="radial critical curve"):
        assert np.isnan(m.solve_ycaustic_arcsec())
    with pytest.warns(LensingWarning, match="radial critical curve"):
        p = sl_cy.lens_properties(m, 0.3)
    assert p["status"] == Status.NO_RADIAL_CAUSTIC and np.isnan(p["xA_arcsec"]) and np.isfinite(p["einstein_radius_kpc"])
    with pytest.raises(ValueError, match="LensModel takes scalars"):
        LensModel([11.5, 11.6], 13.0, 0.9)
    with pytest.raises(ValueError, match="x must be finite"):
        m.alpha(np.inf)
    with pytest.raises(ValueError, match="centre"):
        m.mu_from_rt(0)
    with pytest.raises(ValueError, match="R must be"):
        m.Mh5(-1.0)
    with pytest.raises(ValueError, match="zs"):
        sl_cy.solve_lens_parameters_from_obs(3.0, -2.0, 0.9, 13.0, zl=0.5, zs=0.5)
    with pytest.raises(ValueError, match="opposite sides"):
        sl_cy.compute_detJ(3.0, 0.0, 0.9, 13.0)
    with pytest.raises(ValueError, match="x_kpc"):
        sl_cy.cosmology.kpc_to_arcsec(np.nan, 0.3)
    with pytest.raises(ValueError, match="z2 must be >= z1"):
        sl_cy.Dang(1.0, 0.5)
