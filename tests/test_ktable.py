"""K(mu1, mu2) = int p(m_s) P_det(mu1, m_s) P_det(mu2, m_s) dm_s: direct quadrature, table,
interpolation error, HDF5 round trip, symmetry and limits."""
import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import integrate, special

import sl_cy
from sl_cy import _photometry
from sl_cy.ktable import KTable, build_K_table, load_K_interpolator, save_K_table_hdf5
from sl_cy.testing import K_direct

DATA = Path(__file__).parent / "data" / "physics_cases.json"
M_LIM, SIGMA_M, M_STAR, ALPHA_S, M_MIN, M_MAX = 26.5, 0.1, 24.5, -1.3, 20.0, 30.0
KMAG = 0.4 * np.log(10.0)


def _law_unnorm(m):
    x = -KMAG * (m - M_STAR)
    return np.exp((ALPHA_S + 1.0) * x - np.exp(x))


Z = integrate.quad(_law_unnorm, M_MIN, M_MAX, epsabs=0, epsrel=1e-13, limit=200)[0]


def _K_quad(mu1, mu2):
    """Plain SciPy reference."""
    c1 = M_LIM + 2.5 * np.log10(abs(mu1))
    c2 = M_LIM + 2.5 * np.log10(abs(mu2))
    f = lambda m: _law_unnorm(m) / Z * special.ndtr((c1 - m) / SIGMA_M) * special.ndtr((c2 - m) / SIGMA_M)
    pts = sorted({min(max(c, M_MIN), M_MAX) for c in (c1, c2)} - {M_MIN, M_MAX})
    return integrate.quad(f, M_MIN, M_MAX, points=pts or None, epsabs=0, epsrel=1e-12, limit=500)[0]


@pytest.fixture(scope="module")
def table():
    return build_K_table()


def test_reference_values(table):
    cases = json.loads(DATA.read_text())["photometry"]
    for c in cases:
        assert K_direct(c["mu1"], c["mu2"]) == pytest.approx(c["K"], rel=1e-6, abs=0)
        assert table(c["mu1"], c["mu2"]) == pytest.approx(c["K"], rel=1e-6, abs=0)
        assert table(-c["mu1"], c["mu2"]) == table(c["mu1"], c["mu2"])      # |mu| used


def test_direct_vs_quad():
    rng = np.random.default_rng(1)
    mu1 = 10 ** rng.uniform(-2.0, 2.5, 20)
    mu2 = 10 ** rng.uniform(-2.0, 2.5, 20)
    got = K_direct(mu1, mu2)
    want = np.array([_K_quad(a, b) for a, b in zip(mu1, mu2)])
    assert np.all(want > 0)
    assert np.max(np.abs(got / want - 1)) < 1e-9


def test_table_entries_equal_direct(table):
    i = np.array([0, 37, 150, 300, 333, 450, 600])
    j = np.array([600, 5, 420, 300, 10, 449, 0])
    mu = table.mu_grid
    assert np.allclose(table.K[i, j], K_direct(mu[i], mu[j]), rtol=1e-12, atol=1e-300)


def test_interpolation_error_off_grid(table):
    rng = np.random.default_rng(2)
    mu1 = 10 ** rng.uniform(-2.5, 3.0, 600) * rng.choice([-1, 1], 600)
    mu2 = 10 ** rng.uniform(-2.5, 3.0, 600)
    exact = K_direct(mu1, mu2)
    keep = np.flatnonzero(exact > 1e-6)[:200]
    assert keep.size == 200
    got = table(mu1[keep], mu2[keep])
    assert np.max(np.abs(got / exact[keep] - 1)) <= 1e-4
    # near the diagonal (the sharpest feature of log K) as well
    u = rng.uniform(-1.9, 2.5, 200)
    a, b = 10 ** u, 10 ** (u + rng.uniform(-0.02, 0.02, 200))
    ex = K_direct(a, b)
    m = ex > 1e-6
    assert np.max(np.abs(table(a[m], b[m]) / ex[m] - 1)) <= 1e-4


def test_symmetry_bounds_limits(table):
    assert np.array_equal(table.K, table.K.T)
    rng = np.random.default_rng(3)
    a = 10 ** rng.uniform(-4, 4, 1000)
    b = -(10 ** rng.uniform(-4, 4, 1000))
    ka, kb = table(a, b), table(b, a)
    assert np.array_equal(ka, kb)                     # exactly symmetric
    assert np.all((ka >= 0) & (ka <= 1))
    assert np.all(table.K <= 1) and np.all(table.K >= 0)
    # mu -> infinity: K -> 1 (both images always detected), bounded by 1
    assert table(1e4, 1e5) == pytest.approx(1.0, abs=1e-12)
    assert K_direct(1e6, 1e6) == pytest.approx(1.0, abs=1e-12)
    # one image very bright: K(mu1, inf) = K(mu1, big)
    assert table(0.5, 1e8) == pytest.approx(K_direct(0.5, 1e8), rel=1e-5)
    # demagnified: negligible, never NaN, also for mu = 0
    assert table(1e-3, 1.0) < 1e-50
    assert 0.0 <= table(0.0, 1.0) < 1e-50 and K_direct(0.0, 1.0) == 0.0
    # monotone in each argument along the grid
    assert np.all(np.diff(table.K, axis=0) >= -1e-15)


def test_hdf5_round_trip(table, tmp_path):
    path = tmp_path / "sub" / "K_test.h5"
    out = save_K_table_hdf5(table, path)
    assert out == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["K_test.h5"]      # no temp file left
    with h5py.File(path, "r") as f:
        a = dict(f.attrs)
        assert a["kind"] == "sl_cy.K_table"
        assert a["sl_cy_version"] == sl_cy.__version__
        for key, val in dict(m_lim=26.5, sigma_m=0.1, m_star=24.5, alpha_s=-1.3, m_min=20.0, m_max=30.0).items():
            assert a[key] == val
        assert a["n_mu"] == 601 and a["mu_min"] == pytest.approx(1e-3) and a["mu_max"] == pytest.approx(1e3)
        for key in ("created_utc", "grid", "interpolation", "definition", "format_version"):
            assert key in a
        assert f["K"].dtype == np.float64 and f["K"].shape == (601, 601)
    loaded = load_K_interpolator(path)
    assert np.array_equal(loaded.K, table.K)
    assert np.array_equal(loaded.log10_mu, table.log10_mu)
    assert loaded.params == table.params
    mu = 10 ** np.random.default_rng(4).uniform(-3, 3, (2, 100))
    assert np.array_equal(loaded(*mu), table(*mu))
    assert load_K_interpolator(loaded) is loaded
    # KTable.from_hdf5 is the same reader; overwriting is atomic too
    table.to_hdf5(path)
    assert np.array_equal(KTable.from_hdf5(path).K, table.K)


def test_hdf5_rejects_foreign_file(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["K"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="not an sl_cy K table"):
        load_K_interpolator(p)


def test_small_custom_table_and_pickle():
    t = build_K_table(mu_min=0.05, mu_max=50.0, n_mu=161, m_lim=25.0, sigma_m=0.2, alpha_s=-1.1)
    assert t.meta["m_lim"] == 25.0 and t.meta["alpha_s"] == -1.1
    mu = np.array([0.3, 2.0, 7.5])
    exact = K_direct(mu, mu[::-1], m_lim=25.0, sigma_m=0.2, alpha_s=-1.1)
    assert np.allclose(t(mu, mu[::-1]), exact, rtol=1e-4)
    t2 = pickle.loads(pickle.dumps(t))
    assert np.array_equal(t2(mu, mu), t(mu, mu))


def test_compiled_kernel_conventions(table):
    k = table.kernel
    out = k.log_eval(np.array([np.nan, 1.0]), np.array([1.0, np.nan]))
    assert np.all(out == -np.inf)                      # C level: nan -> K = 0, never NaN
    assert np.all(np.isfinite(k.log_eval(np.array([0.0, np.inf]), np.array([1.0, 1.0]))))


def test_bad_input_raises(table):
    with pytest.raises(ValueError, match="mu1"):
        table(np.nan, 1.0)
    with pytest.raises(ValueError, match="mu2"):
        K_direct(1.0, [1.0, np.inf])
    with pytest.raises(ValueError, match="sigma_m"):
        build_K_table(n_mu=10, sigma_m=0.0)
    with pytest.raises(ValueError, match="sigma_m"):
        K_direct(1.0, 1.0, sigma_m=-0.1)
    with pytest.raises(ValueError, match="mu_max"):
        build_K_table(mu_min=10.0, mu_max=1.0)
    with pytest.raises(ValueError, match="n_mu"):
        build_K_table(n_mu=3)
    with pytest.raises(ValueError, match="m_max"):
        build_K_table(n_mu=10, m_min=30.0, m_max=20.0)
    with pytest.raises(TypeError):
        save_K_table_hdf5({"K": 1}, "x.h5")
    with pytest.raises(ValueError, match="uniform"):
        KTable(np.array([0.0, 1.0, 3.0, 4.0]), np.eye(4) * 0.5, table.meta)
    with pytest.raises(ValueError):
        _photometry.KTableKernel(0.0, 0.1, np.zeros((3, 3)))


def test_ktable_cli(tmp_path, cli):
    from sl_cy.ktable import load_K_interpolator

    out = tmp_path / "k.h5"
    r = cli("ktable", "--out", out, "--n-mu", "121", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    K = load_K_interpolator(out)
    assert 0.0 < float(K(3.8, 1.8)) < 1.0
    r = cli("ktable", "--out", out, "--sigma-m", "0", cwd=tmp_path)
    assert r.returncode == 2 and "sigma_m" in r.stderr
