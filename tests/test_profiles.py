"""Mass profiles and cosmology against closed forms, limits and independent quadrature."""
import numpy as np
import pytest
from scipy import integrate, special

import sl_cy
from sl_cy import _profiles, testing as ref
from sl_cy.cosmology import Cosmology, get_cosmology
from sl_cy.profiles import devauc_m2d, devauc_sigma, gnfw_dimensionless, gnfw_halo


# --- cosmology -------------------------------------------------------------------------------
def test_distances_match_astropy():
    astropy_cosmo = pytest.importorskip("astropy.cosmology")
    for c_ap, c_sl in [(astropy_cosmo.FlatLambdaCDM(H0=70, Om0=0.3, Tcmb0=0), None),
                       (astropy_cosmo.LambdaCDM(H0=68, Om0=0.25, Ode0=0.7, Tcmb0=0), Cosmology(68, 0.25, 0.7))]:
        z = np.array([0.05, 0.3, 0.7, 1.5, 3.0, 6.0])
        ours = sl_cy.Dang(z, cosmo=c_sl)
        theirs = c_ap.angular_diameter_distance(z).value
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)
        d12 = sl_cy.Dang(0.3, z[z > 0.3], cosmo=c_sl)
        np.testing.assert_allclose(d12, c_ap.angular_diameter_distance(0.3, z[z > 0.3]).value, rtol=1e-10)
        np.testing.assert_allclose(sl_cy.rhoc(z, cosmo=c_sl),
                                   c_ap.critical_density(z).to("Msun/Mpc3").value, rtol=1e-10)


def test_astropy_object_is_accepted():
    astropy_cosmo = pytest.importorskip("astropy.cosmology")
    c = get_cosmology(astropy_cosmo.FlatLambdaCDM(H0=67.0, Om0=0.31, Tcmb0=0))
    assert c == Cosmology(67.0, 0.31, 0.69)
    assert sl_cy.Dang(0.5, cosmo=astropy_cosmo.FlatLambdaCDM(H0=67.0, Om0=0.31, Tcmb0=0)) == sl_cy.Dang(0.5, cosmo=c)


def test_sigma_cr_against_reference_formula():
    for zl, zs in [(0.2, 1.0), (0.5, 3.0)]:
        assert sl_cy.Sigma_cr(zl, zs) == pytest.approx(ref.sigma_cr(zl, zs), rel=1e-12)


def test_angle_conversions_round_trip():
    x = np.array([0.5, 3.0, 10.0])
    np.testing.assert_allclose(sl_cy.cosmology.arcsec_to_kpc(sl_cy.cosmology.kpc_to_arcsec(x, 0.4), 0.4), x, rtol=1e-14)


def test_cosmology_bad_input():
    with pytest.raises(ValueError, match="closed"):
        Cosmology(70, 0.5, 0.7)
    with pytest.raises(ValueError, match="zs must be > zl"):
        sl_cy.Sigma_cr(2.0, 1.0)
    with pytest.raises(ValueError, match="z"):
        sl_cy.Dang(np.nan)
    with pytest.raises(TypeError):
        get_cosmology("planck")


# --- de Vaucouleurs ----------------------------------------------------------------------------
def test_incomplete_gamma_is_exact():
    z = np.concatenate([np.logspace(-3, 0.3, 50), np.linspace(2, 60, 200)])
    np.testing.assert_allclose(_profiles.gammainc8_array(z), special.gammainc(8, z), rtol=1e-13, atol=0)


def test_devauc_sigma_integrates_to_m2d():
    logM, logRe = 11.2, 0.6
    for R in [0.05, 1.0, 4.0, 30.0]:
        m = integrate.quad(lambda r: 2 * np.pi * r * devauc_sigma(r, logM, logRe), 0, R, epsrel=1e-12, limit=400,
                           points=[min(R, 1e-3)])[0]
        assert devauc_m2d(R, logM, logRe) == pytest.approx(m, rel=1e-8)
    assert devauc_m2d(1e6, logM, logRe) == pytest.approx(10 ** logM, rel=1e-12)
    assert devauc_sigma(1.0, logM, logRe) == pytest.approx(ref.devauc_sigma(1.0, 10 ** logM, 10 ** logRe), rel=1e-13)


# --- gNFW ------------------------------------------------------------------------------------
def test_nfw_closed_forms():
    x = np.logspace(-4, 3, 301)
    x = x[np.abs(x - 1) > 1e-6]
    sig, m2, m3 = gnfw_dimensionless(x, 1.0)
    np.testing.assert_allclose(sig, [ref.nfw_sigma_closed(v) for v in x], rtol=1e-7)
    np.testing.assert_allclose(m2, [ref.nfw_m2_closed(v) for v in x], rtol=1e-7)
    np.testing.assert_allclose(m3, np.log1p(x) - x / (1 + x), rtol=1e-7, atol=1e-15)


def test_gnfw_table_against_independent_quadrature():
    rng = np.random.default_rng(42)
    x = np.exp(rng.uniform(np.log(1e-4), np.log(1e3), 40))
    g = np.concatenate([rng.uniform(0, 2.4, 30), [0.0, 0.99, 1.0, 1.01, 1.5, 2.0, 2.2, 2.4, 0.5, 1.97]])
    sig, m2, m3 = gnfw_dimensionless(x, g)
    for i in range(len(x)):
        assert sig[i] == pytest.approx(ref.gnfw_sigma(x[i], g[i]), rel=1e-6), (x[i], g[i])
        assert m2[i] == pytest.approx(ref.gnfw_m2(x[i], g[i]), rel=1e-6), (x[i], g[i])
        assert m3[i] == pytest.approx(ref.gnfw_m3(x[i], g[i]), rel=1e-6), (x[i], g[i])


def test_gnfw_table_dense_against_own_quadrature():
    """The interpolated table against the builder's quadrature at 5000 off-node points."""
    rng = np.random.default_rng(7)
    x = np.exp(rng.uniform(np.log(1e-4), np.log(1e3), 5000))
    g = rng.uniform(0, 2.4, 5000)
    for a, b in zip(gnfw_dimensionless(x, g), ref.gnfw_quadrature(x, g)):
        assert np.max(np.abs(a / b - 1)) < 1e-7


def test_gnfw_small_radius_limits():
    # M2d / (2 pi Sigma R^2) = m2 / (x^2 sigma / 2) -> 1/(3-g) for g > 1 and 1/2 for g < 1
    for g in [0.0, 0.3, 0.6]:
        s, m2, _ = gnfw_dimensionless(1e-6, g)
        assert m2 / (1e-12 * s / 2) == pytest.approx(0.5, rel=2e-3)
    for g in [1.4, 1.8, 2.2, 2.4]:
        s, m2, _ = gnfw_dimensionless(1e-6, g)
        assert m2 / (1e-12 * s / 2) == pytest.approx(1 / (3 - g), rel=2e-3)
    # gamma_in = 2 is an isothermal cusp: sigma -> pi / x
    s, _, _ = gnfw_dimensionless(1e-5, 2.0)
    assert s * 1e-5 / np.pi == pytest.approx(1.0, rel=1e-3)


def test_gnfw_halo_normalisation():
    h = gnfw_halo(np.array([1.0, 10.0]), 13.0, gamma_in=1.3, c_halo=6.0, zl=0.4)
    r200 = h["r200"]
    assert gnfw_halo(r200, 13.0, gamma_in=1.3, c_halo=6.0, zl=0.4)["M3d"] == pytest.approx(1e13, rel=1e-9)
    assert h["rs"] == pytest.approx(r200 / 6.0)
    ref_lens = ref.RefLens(11.0, 13.0, 0.5, 1.3, 6.0, 0.4, 2.0)
    assert h["rs"] == pytest.approx(ref_lens.rs, rel=1e-12)
    assert h["rho0"] == pytest.approx(ref_lens.rho0, rel=1e-7)


def test_table_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("SL_CY_CACHE_DIR", str(tmp_path))
    before = gnfw_dimensionless(np.array([0.01, 1.0, 50.0]), 1.3)
    _profiles.reset_gnfw_table()
    _profiles.ensure_gnfw_table()                       # builds and writes the cache
    assert (tmp_path / _profiles.table_cache_path().split("/")[-1]).exists()
    built = gnfw_dimensionless(np.array([0.01, 1.0, 50.0]), 1.3)
    _profiles.reset_gnfw_table()
    _profiles.ensure_gnfw_table()                       # loads it
    loaded = gnfw_dimensionless(np.array([0.01, 1.0, 50.0]), 1.3)
    for a, b, c in zip(before, built, loaded):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SL_CY_CACHE_DIR", str(tmp_path))
    path = _profiles.table_cache_path()
    tmp_path.mkdir(exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"not a table")
    _profiles.reset_gnfw_table()
    _profiles.ensure_gnfw_table()
    s, m2, m3 = gnfw_dimensionless(1.0, 1.0)
    assert m3 == pytest.approx(np.log(2) - 0.5, rel=1e-9)


@pytest.mark.parametrize("call", [
    lambda: gnfw_dimensionless(-1.0, 1.0),
    lambda: gnfw_dimensionless(1.0, 2.5),
    lambda: gnfw_dimensionless(1.0, -0.1),
    lambda: gnfw_dimensionless(np.nan, 1.0),
    lambda: devauc_sigma(-0.5, 11.0, 0.5),
    lambda: devauc_m2d(1.0, np.inf, 0.5),
    lambda: gnfw_halo(1.0, 13.0, c_halo=0.0),
])
def test_profile_bad_input(call):
    with pytest.raises(ValueError):
        call()
