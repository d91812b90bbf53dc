"""Lensing core: reference values, identities, round trips, statuses and bad input."""
import json
import pathlib
import warnings

import numpy as np
import pytest

import sl_cy
from sl_cy import LensModel, testing as ref
from sl_cy.lensing import Status
from sl_cy.lensing import LensingWarning

CASES = json.loads((pathlib.Path(__file__).parent / "data" / "physics_cases.json").read_text())["lenses"]


def _random_lenses(n, seed=0, gamma_hi=1.9):
    rng = np.random.default_rng(seed)
    ms = rng.normal(11.3, 0.25, n)
    return dict(logM_star=ms, logM_halo=12.9 + 2.0 * (ms - 11.4) + rng.normal(0, 0.3, n),
                logRe=0.77 + 0.98 * (ms - 11.4) + rng.normal(0, 0.1, n), gamma_in=rng.uniform(0.0, gamma_hi, n),
                c_halo=rng.uniform(3, 9, n), zl=rng.uniform(0.1, 0.8, n), zs=rng.uniform(1.0, 4.0, n),
                beta_unit=rng.uniform(0, 1, n))


@pytest.mark.parametrize("case", CASES, ids=[f"lens{i}" for i in range(len(CASES))])
def test_reference_values(case):
    p = case["inputs"]
    m = LensModel(p["logM_star"], p["logM_halo"], p["logRe"], zl=p["zl"], zs=p["zs"], gamma_in=p["gamma_in"], c_halo=p["c_halo"])
    rel = dict(rel=1e-6)
    assert sl_cy.Dang(p["zl"]) == pytest.approx(case["Dang_zl_Mpc"], **rel)
    assert sl_cy.Dang(p["zs"]) == pytest.approx(case["Dang_zs_Mpc"], **rel)
    assert sl_cy.Dang(p["zl"], p["zs"]) == pytest.approx(case["Dang_zl_zs_Mpc"], **rel)
    assert sl_cy.Sigma_cr(p["zl"], p["zs"]) == pytest.approx(case["Sigma_cr_Msun_kpc2"], **rel)
    assert sl_cy.rhoc(p["zl"]) == pytest.approx(case["rhoc_zl_Msun_Mpc3"], **rel)
    assert m.rs == pytest.approx(case["rs_kpc"], **rel)
    r = np.array(case["radii_kpc"])
    np.testing.assert_allclose(m.alpha(r), case["alpha_kpc"], rtol=1e-6)
    np.testing.assert_allclose(m.kappa(r), case["kappa"], rtol=1e-6)
    assert m.einstein_radius() == pytest.approx(case["einstein_radius_kpc"], **rel)
    assert m.solve_xradcrit() == pytest.approx(case["xradcrit_kpc"], **rel)
    assert m.solve_ycaustic() == pytest.approx(case["ycaustic_kpc"], **rel)
    xA, xB = sl_cy.solve_single_lens(m, p["beta_unit"])
    assert abs(xA - case["xA_kpc"]) < 1e-8 and abs(xB - case["xB_kpc"]) < 1e-8
    props = sl_cy.lens_properties(m, p["beta_unit"])
    assert props["magnificationA"] == pytest.approx(case["muA"], **rel)
    assert props["magnificationB"] == pytest.approx(case["muB"], **rel)
    inv = case["inversion"]
    logM, bu, yc, muA, muB = sl_cy.solve_lens_parameters_from_obs(
        case["xA_kpc"], case["xB_kpc"], p["logRe"], p["logM_halo"], zl=p["zl"], zs=p["zs"], gamma_in=p["gamma_in"], c_halo=p["c_halo"])
    assert logM == pytest.approx(inv["logM_star"], rel=1e-9)
    assert bu * yc == pytest.approx(inv["beta_kpc"], **rel)
    assert yc == pytest.approx(inv["ycaustic_kpc"], **rel)
    assert muA == pytest.approx(inv["muA_abs"], **rel) and muB == pytest.approx(inv["muB_abs"], **rel)
    dj = sl_cy.compute_detJ(case["xA_kpc"], case["xB_kpc"], p["logRe"], p["logM_halo"], zl=p["zl"], zs=p["zs"],
                            gamma_in=p["gamma_in"], c_halo=p["c_halo"])
    assert dj == pytest.approx(inv["detJ"], **rel)


def test_forward_solve_against_independent_quadrature():
    L = _random_lenses(6, seed=3)
    out = sl_cy.forward_solve(**L)
    assert np.all(out["status"] == 0)
    for i in range(6):
        r = ref.RefLens(*(L[k][i] for k in ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs")))
        assert out["theta_e"][i] == pytest.approx(r.einstein_radius(), rel=1e-6)
        assert out["x_rad"][i] == pytest.approx(r.xradcrit(), rel=1e-6)
        assert out["y_caustic"][i] == pytest.approx(r.ycaustic(), rel=1e-6)
        xA, xB = r.images(L["beta_unit"][i])
        assert out["x_A"][i] == pytest.approx(xA, rel=1e-6) and out["x_B"][i] == pytest.approx(xB, rel=1e-6)
        assert out["mu_A"][i] == pytest.approx(r.mu(xA), rel=1e-5) and out["mu_B"][i] == pytest.approx(r.mu(xB), rel=1e-5)


def test_lens_equation_residual_and_critical_identities():
    L = _random_lenses(300, seed=1)
    out = sl_cy.forward_solve(**L)
    ok = out["status"] == 0
    assert ok.mean() > 0.95
    for i in np.flatnonzero(ok)[:300]:
        m = LensModel(**{k: L[k][i] for k in ("logM_star", "logM_halo", "logRe", "zl", "zs", "gamma_in", "c_halo")})
        beta = out["beta"][i]
        for x in (out["x_A"][i], out["x_B"][i]):
            assert abs(x - m.alpha(x) - beta) <= 1e-10
        assert out["x_A"][i] > out["theta_e"][i] and -out["theta_e"][i] < out["x_B"][i] < -out["x_rad"][i]
        te, xr = out["theta_e"][i], out["x_rad"][i]
        assert abs(m.alpha(te) - te) < 1e-10
        assert abs(m.inv_mu_r(xr)) < 1e-8
        assert out["y_caustic"][i] == pytest.approx(m.alpha(xr) - xr, rel=1e-12)


def test_deflection_symmetry_and_magnification_identity():
    m = LensModel(11.4, 13.1, 0.8, zl=0.35, zs=1.8, gamma_in=1.3, c_halo=6.0)
    x = np.concatenate([np.logspace(-2, 2, 60), -np.logspace(-2, 2, 60)])
    np.testing.assert_allclose(m.alpha(-x), -m.alpha(x), rtol=1e-15)
    np.testing.assert_allclose(m.kappa(-x), m.kappa(x), rtol=1e-15)
    np.testing.assert_allclose(m.mu_from_kg(x), m.mu_from_rt(x), rtol=1e-9)
    np.testing.assert_allclose(m.alpha(x), m.alpha_star(x) + m.alpha_halo(x), rtol=1e-14)
    # d alpha / dx = 2 kappa - alpha / x (mass conservation), checked by finite differences
    xs = np.logspace(-1, 1.5, 12)
    h = 1e-5 * xs
    dadx = (m.alpha(xs + h) - m.alpha(xs - h)) / (2 * h)
    np.testing.assert_allclose(dadx, 2 * m.kappa(xs) - m.alpha(xs) / xs, rtol=1e-6)


def test_point_mass_limit():
    """A compact galaxy without halo deflects like a point mass outside a few Re."""
    m = LensModel(11.0, 3.0, -3.0, zl=0.3, zs=2.0, gamma_in=1.0)
    theta_pm = np.sqrt(1e11 / (np.pi * m.Sigma_cr))
    assert m.einstein_radius() == pytest.approx(theta_pm, rel=1e-6)
    x = np.array([5.0, 20.0])
    np.testing.assert_allclose(m.alpha(x), 1e11 / (np.pi * m.Sigma_cr * x), rtol=1e-6)


def test_inversion_round_trip_and_jacobian():
    L = _random_lenses(400, seed=2)
    out = sl_cy.forward_solve(**L)
    ok = out["status"] == 0
    args = {k: L[k][ok] for k in ("logRe", "gamma_in", "c_halo", "zl", "zs")}
    r = sl_cy.invert_images(out["x_A"][ok], out["x_B"][ok], logM_halo=L["logM_halo"][ok], **args)
    inner = L["beta_unit"][ok] > 1e-6
    assert np.all(r["status"][inner] == 0)
    np.testing.assert_allclose(r["logM_star"], L["logM_star"][ok], atol=1e-10, rtol=0)
    np.testing.assert_allclose(r["beta"], out["beta"][ok], atol=1e-9, rtol=1e-8)
    np.testing.assert_allclose(r["y_caustic"], out["y_caustic"][ok], rtol=1e-10)
    np.testing.assert_allclose(r["mu_A"], np.abs(out["mu_A"][ok]), rtol=1e-8)
    np.testing.assert_allclose(r["mu_B"], np.abs(out["mu_B"][ok]), rtol=1e-8)
    # |J| against a central finite difference of the inversion itself
    idx = np.flatnonzero(inner)[:40]
    xA, xB = out["x_A"][ok][idx], out["x_B"][ok][idx]
    sub = {k: v[idx] for k, v in args.items()}
    sub["logM_halo"] = L["logM_halo"][ok][idx]

    def inv(a, b):
        q = sl_cy.invert_images(a, b, **sub)
        return q["logM_star"], q["beta"]

    h = 1e-6
    lA1, bA1 = inv(xA + h, xB)
    lA0, bA0 = inv(xA - h, xB)
    lB1, bB1 = inv(xA, xB + h)
    lB0, bB0 = inv(xA, xB - h)
    det_fd = np.abs(((lA1 - lA0) * (bB1 - bB0) - (lB1 - lB0) * (bA1 - bA0)) / (2 * h) ** 2)
    np.testing.assert_allclose(r["detJ"][idx], det_fd, rtol=1e-6)
    dj = sl_cy.compute_detJ(xA, xB, sub["logRe"], sub["logM_halo"], zl=sub["zl"], zs=sub["zs"], gamma_in=sub["gamma_in"], c_halo=sub["c_halo"])
    np.testing.assert_allclose(dj, r["detJ"][idx], rtol=1e-14)
    # the forward solve reports the same Jacobian, and kappa / shear at the images
    np.testing.assert_allclose(out["detJ"][ok][idx], r["detJ"][idx], rtol=1e-9)
    for i in idx[:5]:
        j = np.flatnonzero(ok)[i]
        m = LensModel(**{k: L[k][j] for k in ("logM_star", "logM_halo", "logRe", "zl", "zs", "gamma_in", "c_halo")})
        assert out["kappa_A"][j] == pytest.approx(m.kappa(out["x_A"][j]), rel=1e-13)
        assert out["shear_B"][j] == pytest.approx(m.gamma(out["x_B"][j]), rel=1e-12)


def test_inversion_validity_codes():
    m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    xA, xB = sl_cy.solve_single_lens(m, 0.5)
    grid = np.linspace(10.0, 16.0, 61)
    r = sl_cy.invert_images(xA, xB, 0.9, logM_halo=grid)
    st = r["status"]
    assert st[np.argmin(np.abs(grid - 13.0))] == Status.OK
    # a heavy halo leaves no room for stars; invalid points are flagged, never NaN-poisoned
    assert Status.MSTAR_NONPOSITIVE in st
    assert set(np.unique(st)) <= {int(s) for s in Status}
    valid = st == Status.OK
    assert np.all(np.isfinite(r["logM_star"][valid])) and np.all(r["beta"][valid] >= 0)
    assert np.all(r["beta"][valid] < r["y_caustic"][valid])
    # a central image passed as x_B is not image B
    xr = m.solve_xradcrit()
    r2 = sl_cy.invert_images(xA, -0.5 * xr, 0.9, logM_halo=13.0)
    assert int(r2["status"]) != Status.OK


def test_no_radial_caustic_and_subcritical_statuses():
    out = sl_cy.forward_solve([11.5, 11.5, 9.0], [13.0, 13.0, 10.0], [0.9, 0.9, 0.9], gamma_in=[1.0, 2.2, 1.0],
                              beta_unit=0.3)
    assert list(out["status"]) == [Status.OK, Status.NO_RADIAL_CAUSTIC, Status.NO_EINSTEIN_RADIUS]
    assert np.isnan(out["x_A"][1:]).all()
    m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0, gamma_in=2.2)
    assert np.isfinite(m.einstein_radius())
    with pytest.warns(LensingWarning, match="radial critical curve"):
        assert np.isnan(m.solve_ycaustic())
    with pytest.warns(LensingWarning):
        assert np.isnan(sl_cy.solve_single_lens(m, 0.2)).all()
    weak = LensModel(9.0, 10.0, 0.9, zl=0.3, zs=2.0)
    with pytest.warns(LensingWarning, match="subcritical"):
        assert np.isnan(weak.einstein_radius())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(LensModel(11.5, 13.0, 0.9).solve_ycaustic())


def test_source_on_axis_and_at_caustic_edge():
    m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    xA, xB = sl_cy.solve_single_lens(m, 0.0)
    assert xA == pytest.approx(m.einstein_radius(), rel=1e-14) and xB == -xA
    xA, xB = sl_cy.solve_single_lens(m, 1 - 1e-9)
    assert abs(xB + m.solve_xradcrit()) < 1e-3
    assert abs(xB - m.alpha(xB) - (1 - 1e-9) * m.solve_ycaustic()) < 1e-10


def test_seed_helpers_and_arcsec():
    m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    assert m.solve_ycaustic_arcsec() == pytest.approx(sl_cy.cosmology.kpc_to_arcsec(m.solve_ycaustic(), 0.3))
    assert m.Mh5() == pytest.approx(sl_cy.profiles.gnfw_halo(5.0, 13.0, gamma_in=1.0, c_halo=5.0, zl=0.3)["M2d"], rel=1e-12)
    assert m.logMh5() == pytest.approx(np.log10(m.Mh5()))
    props = sl_cy.lens_properties(m, 0.5)
    assert props["gammaA"] == pytest.approx(m.gamma(props["xA"]))
    assert props["magnificationA"] == pytest.approx(m.mu_from_kg(props["xA"]), rel=1e-9)
    # images given in the other orientation are reflected, not rejected
    a = sl_cy.solve_lens_parameters_from_obs(props["xA"], props["xB"], 0.9, 13.0)
    b = sl_cy.solve_lens_parameters_from_obs(-props["xA"], -props["xB"], 0.9, 13.0)
    assert a == b


@pytest.mark.parametrize("call, match", [
    (lambda: LensModel(np.nan, 13.0, 0.9), "logM_star"),
    (lambda: LensModel(11.5, 13.0, 0.9, gamma_in=2.6), "gamma_in"),
    (lambda: LensModel(11.5, 13.0, 0.9, gamma_in=-0.2), "gamma_in"),
    (lambda: LensModel(11.5, 13.0, 0.9, zl=2.0, zs=1.0), "zs"),
    (lambda: LensModel(11.5, 13.0, 0.9, c_halo=-1.0), "c_halo"),
    (lambda: LensModel(11.5, 13.0, 0.9).alpha(0.0), "centre"),
    (lambda: sl_cy.solve_lens_parameters_from_obs(3.0, 2.0, 0.9, 13.0), "opposite sides"),
    (lambda: sl_cy.solve_lens_parameters_from_obs(np.nan, -2.0, 0.9, 13.0), "xA_obs"),
    (lambda: sl_cy.compute_detJ(3.0, -2.0, 0.9, 13.0, gamma_in=3.0), "gamma_in"),
    (lambda: sl_cy.solve_single_lens(LensModel(11.5, 13.0, 0.9), 1.0), "beta_unit"),
    (lambda: sl_cy.invert_images([3.0, 4.0], [-2.0, 1.0], 0.9, logM_halo=13.0), "x_B"),
    (lambda: sl_cy.forward_solve([11.0, np.inf], 13.0, 0.9), "logM_star"),
    (lambda: sl_cy.profiles.gnfw_halo(-1.0, 13.0), "R"),
])
def test_bad_input_raises_clear_valueerror(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_read_only_inputs_are_accepted():
    """pandas hands out read-only arrays; the compiled kernels take const buffers."""
    zl = np.array([0.3, 0.4])
    zl.flags.writeable = False
    out = sl_cy.forward_solve(11.5, 13.0, 0.9, zl=zl, beta_unit=0.5)
    assert np.all(out["status"] == 0)
    r = sl_cy.invert_images(out["x_A"], out["x_B"], 0.9, logM_halo=13.0, zl=zl)
    np.testing.assert_allclose(r["logM_star"], 11.5, atol=1e-10)
    assert np.all(np.isfinite(sl_cy.cosmology.kpc_to_arcsec(1.0, zl)))
    x = np.array([0.5, 2.0])
    x.flags.writeable = False
    assert np.all(np.isfinite(sl_cy.profiles.gnfw_dimensionless(x, 1.0)[0]))
