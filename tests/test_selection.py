"""Tests of the selection normaliser A(eta): bank, importance-sampling evaluator, tables, loader."""
import math
import warnings

import h5py
import numpy as np
import pytest
from scipy import integrate

from sl_cy.cli import main as cli_main
from sl_cy.config import SurveyConfig
from sl_cy.forward import ForwardModel
from sl_cy.mock import simulate_mock
from sl_cy.population import (DEFAULT_ETA, ETA_BOX, ETA_NAMES, gamma_logpdf, logMh_logpdf, logRe_logpdf,
                              mstar_logpdf)
from sl_cy.selection import (AEtaTable, BankProposal, SelectionBank, SelectionQuadrature, SelectionWarning,
                             build_selection_bank, cached_A, compute_Aeta_grid, load_A_eta_table, load_bank,
                             parse_axes, save_bank, selection_for, table_filename, write_A_eta_hdf5,
                             write_A_eta_hdf5_1d)

ETA0 = np.array(DEFAULT_ETA, dtype=float)


@pytest.fixture(scope="module")
def bank():
    return build_selection_bank(200_000, seed=11, n_jobs=2, n_beta=4)


@pytest.fixture(scope="module")
def small_bank():
    return build_selection_bank(30_000, seed=5, chunk_size=10_000)


def _eta(**kw):
    return np.array(DEFAULT_ETA._replace(**kw), dtype=float)


# --------------------------------------------------------------------------------------------
# densities: the compiled kernel reproduces sl_cy.population
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [ETA0, _eta(alpha_sps=0.3, mu_h=13.4, beta_h=1.0, sigma_h=0.6),
                                 _eta(alpha_sps=-0.4, mu_gamma=1.7, sigma_gamma=0.5)])
def test_log_target_equals_population_densities(small_bank, eta):
    b = small_bank
    d = b.data
    keep = d["T"] > 0
    x, re, mh, g = (d[k][keep] for k in ("logM_star", "logRe", "logM_halo", "gamma_in"))
    M = x - eta[0]
    ref = (mstar_logpdf(M) + logRe_logpdf(re, M) + logMh_logpdf(mh, M, re, eta=eta)
           + gamma_logpdf(g, eta[4], eta[5]))
    got = b.log_target(eta)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)
    # the fast summation kernel gives the same A (the lens fraction E[1 - exp(-T)]) and E[T] as the
    # plain NumPy estimator
    T = d["T"][keep]
    A_ref = np.sum(np.exp(np.log(-np.expm1(-T)) - d["log_q"][keep] + ref)) / b.n
    assert b.evaluate(eta, warn=False) == pytest.approx(A_ref, rel=1e-11)
    assert b(eta) == b.lens_fraction(eta) == b.evaluate(eta, warn=False)
    ET_ref = np.sum(np.exp(np.log(T) - d["log_q"][keep] + ref)) / b.n
    assert b.expected_sources(eta) == pytest.approx(ET_ref, rel=1e-11)
    assert b.evaluate(eta, warn=False, quantity="expected_sources") == b.expected_sources(eta)


def test_proposal_density_is_normalised_mixture():
    prop = BankProposal()
    x, re, mh, g = 11.6, 0.95, 13.5, 0.7
    ref = integrate.quad(lambda a: math.exp(mstar_logpdf(x - a) + logRe_logpdf(re, x - a)),
                         prop.alpha_lo, prop.alpha_hi, epsabs=0, epsrel=1e-12, limit=200)[0]
    ref /= prop.alpha_hi - prop.alpha_lo
    d = mh - prop.logMh_mu0 - prop.logMh_slope * (x - 11.4)
    qh = ((1 - prop.wide_frac) * math.exp(-0.5 * (d / prop.logMh_sigma) ** 2) / prop.logMh_sigma
          + prop.wide_frac * math.exp(-0.5 * ((d - prop.wide_shift) / prop.wide_sigma) ** 2) / prop.wide_sigma)
    qh /= math.sqrt(2 * math.pi)
    want = math.log(ref * qh / (prop.gamma_hi - prop.gamma_lo))
    assert float(prop.logpdf(x, re, mh, g)) == pytest.approx(want, rel=1e-9)
    # samples follow the density: histogram of logM* against the marginal (coarse check)
    s = prop.sample(200_000, rng=1)
    assert s["gamma_in"].min() >= 0 and s["gamma_in"].max() <= 2
    assert abs(np.mean(s["logM_star"]) - (11.386)) < 0.01   # mixture over symmetric alpha keeps the mean


# --------------------------------------------------------------------------------------------
# consistency with the mock
# --------------------------------------------------------------------------------------------
MOCK_ETAS = [
    ("default", {}),
    ("alpha+0.2", dict(alpha_sps=0.2)),
    ("alpha-0.2", dict(alpha_sps=-0.2)),
    ("mu_h+0.3", dict(mu_h=12.91 + 0.3)),
    ("mu_h-0.3", dict(mu_h=12.91 - 0.3)),
    ("mu_gamma+0.3", dict(mu_gamma=1.3)),
    ("mu_gamma-0.3", dict(mu_gamma=0.7)),
]


@pytest.mark.parametrize("label,kw", MOCK_ETAS, ids=[m[0] for m in MOCK_ETAS])
def test_A_equals_mock_detected_fraction(bank, label, kw):
    eta = DEFAULT_ETA._replace(**kw)
    A, ess, err = bank.evaluate(np.array(eta), return_ess=True, return_error=True)
    assert ess > 1000
    n_mock = 400_000
    res = simulate_mock(n_mock, seed=1000 + len(label), eta=eta, survey=SurveyConfig(), show_progress=False,
                        keep_galaxies=False, n_jobs=1)
    f = res.lens_fraction
    n_l = res.n_lenses
    assert n_l > 700
    sig_mock = math.sqrt(f * (1 - f) / n_mock)
    # A(eta) is the lens fraction E[1 - exp(-T)]: the mock counts galaxies with >= 1 detected source
    lf, lf_err = bank.lens_fraction(np.array(eta), return_error=True)
    assert A == lf and err == lf_err
    sig = math.hypot(sig_mock, lf_err)
    assert abs(lf - f) < 4.0 * sig, (label, lf, f, sig)
    # E[T] (the Poisson rate of detected sources) exceeds it by the multiple-source saturation only
    ET, ET_err = bank.expected_sources(np.array(eta), return_error=True)
    assert 0 < ET - lf < 0.05 * ET
    assert abs(ET - f) < 4.0 * math.hypot(sig_mock, ET_err) + (ET - lf), (label, ET, f)


# --------------------------------------------------------------------------------------------
# evaluator API
# --------------------------------------------------------------------------------------------
def test_batch_equals_scalar(small_bank):
    etas = np.array([ETA0, _eta(mu_h=13.2), _eta(alpha_sps=-0.3, sigma_gamma=0.4), _eta(beta_h=3.0)])
    batch = small_bank(etas)
    assert batch.shape == (4,)
    for e, a in zip(etas, batch):
        assert small_bank(e) == a
    A2, ess2 = small_bank.evaluate(etas, return_ess=True, n_threads=2)
    np.testing.assert_array_equal(A2, batch)
    assert isinstance(small_bank(DEFAULT_ETA), float)
    assert small_bank(dict(DEFAULT_ETA._asdict())) == small_bank(ETA0)


def test_bank_deterministic_across_n_jobs(small_bank):
    b2 = build_selection_bank(30_000, seed=5, chunk_size=10_000, n_jobs=2)
    assert b2.config_hash == small_bank.config_hash
    for k in ("logM_star", "logM_halo", "T", "log_q", "mu_A"):
        np.testing.assert_array_equal(b2.data[k], small_bank.data[k])
    assert b2(ETA0) == small_bank(ETA0)


def test_ess_warning_far_from_proposal(bank):
    with pytest.warns(SelectionWarning, match="effective sample size"):
        A, ess = bank.evaluate(np.array([0.0, 12.0, 4.0, 0.1, 1.0, 0.05]) + [3.0, 0, 0, 0, 0, 0],
                               return_ess=True)
    assert ess < 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)
        bank(ETA0)                      # no warning at the default


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 7)), _eta(sigma_h=0.0), _eta(sigma_gamma=-1.0),
                                 np.full(6, np.nan)])
def test_bad_eta_raises(small_bank, bad):
    with pytest.raises(ValueError):
        small_bank(bad)


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="n >= 1"):
        build_selection_bank(0, seed=1)
    with pytest.raises(ValueError, match="zs"):
        build_selection_bank(10, seed=1, zl=2.0, zs=1.0)
    with pytest.raises(ValueError, match="model"):
        build_selection_bank(10, seed=1, model="nope")
    with pytest.raises(ValueError, match="alpha_hi"):
        BankProposal(alpha_lo=1.0, alpha_hi=0.0)


def test_bank_hdf5_round_trip(small_bank, tmp_path):
    p = save_bank(tmp_path / "bank.h5", small_bank)
    b = load_bank(p, expected_hash=small_bank.config_hash)
    for k, v in small_bank.data.items():
        np.testing.assert_array_equal(b.data[k], v)
    assert b.config == small_bank.config
    assert b(ETA0) == small_bank(ETA0)
    with pytest.raises(ValueError, match="differs"):
        load_bank(p, expected_hash="0" * 64)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a selection bank"):
        load_bank(tmp_path / "other.h5")


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def test_table_grid_write_load_interpolate(small_bank, tmp_path):
    axes = {"mu_h": np.linspace(12.5, 13.5, 6), "alpha_sps": np.linspace(-0.2, 0.2, 5)}
    t = compute_Aeta_grid(small_bank, axes)
    assert t.axes == ["alpha_sps", "mu_h"]                 # eta order
    assert t.values.shape == (5, 6)
    path = write_A_eta_hdf5(tmp_path, t)
    assert path.name == "Aeta_alpha_sps-mu_h_5x6.h5" == table_filename(dict(zip(t.axes, t.grids)))
    A = cached_A(path, method="linear")
    assert isinstance(A, AEtaTable) and A.method == "linear"
    # exact at the nodes
    e = _eta(alpha_sps=0.1, mu_h=12.9)
    assert A(e) == pytest.approx(small_bank(e), rel=1e-10)
    # between nodes: close to the bank (log-linear interpolation on a 0.2 x 0.1 grid)
    e = _eta(alpha_sps=0.05, mu_h=13.05)
    assert A(e) == pytest.approx(small_bank(e), rel=0.03)
    assert cached_A(path)(e) == pytest.approx(small_bank(e), rel=0.01)        # cubic (default)
    # out of range and fixed-component mismatch -> 0.0 (log A = -inf upstream), never NaN
    assert A(_eta(alpha_sps=0.3)) == 0.0
    assert A(_eta(beta_h=2.5)) == 0.0
    batch = A(np.array([ETA0, _eta(mu_h=15.0), _eta(alpha_sps=-0.1)]))
    assert batch.shape == (3,) and batch[1] == 0.0 and np.all(np.isfinite(batch)) and batch[0] > 0
    # cubic interpolation agrees at the nodes
    Ac = cached_A(path, method="cubic")
    assert Ac(_eta(alpha_sps=0.1, mu_h=12.9)) == pytest.approx(small_bank(_eta(alpha_sps=0.1, mu_h=12.9)), rel=1e-3)
    # the table records its source engine and forward model (table discovery by folder and
    # configuration is retired: a table is loaded by its path)
    assert A.path == path
    assert A.source_hash == small_bank.config_hash and A.source_config == small_bank.config
    assert A.forward_model == small_bank.forward_model == ForwardModel()
    # its support: the table axes, the other components pinned to their fixed values
    b = A.bounds
    assert b["alpha_sps"] == (-0.2, 0.2) and b["mu_h"] == (12.5, 13.5)
    assert b["beta_h"][0] < DEFAULT_ETA.beta_h < b["beta_h"][1] and b["beta_h"][1] - b["beta_h"][0] < 1e-6
    assert A.in_bounds(np.array([ETA0, _eta(alpha_sps=0.3), _eta(beta_h=2.5)])).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="no A\\(eta\\) table"):
        cached_A(tmp_path / "missing.h5")
    # a table of an older sl_cy (E[T], no forward model) is refused
    old = tmp_path / "old.h5"
    old.write_bytes(path.read_bytes())
    with h5py.File(old, "a") as f:
        del f.attrs["quantity"]
    with pytest.raises(ValueError, match="older sl_cy"):
        load_A_eta_table(old)


def test_table_1d_writer(small_bank, tmp_path):
    grid = np.linspace(12.0, 14.0, 9)
    vals = small_bank(np.array([_eta(mu_h=m) for m in grid]))
    p = write_A_eta_hdf5_1d(tmp_path / "Aeta_mu_h_9.h5", "mu_h", grid, values=vals, bank=small_bank)
    t = load_A_eta_table(p)
    assert t.axes == ["mu_h"] and t.source_hash == small_bank.config_hash
    # scipy's cubic spline fit is solved iteratively: nodes are reproduced to ~1e-4 (log A)
    np.testing.assert_allclose(t(np.array([_eta(mu_h=m) for m in grid])), vals, rtol=3e-4)
    t_lin = load_A_eta_table(p, method="linear")
    np.testing.assert_allclose(t_lin(np.array([_eta(mu_h=m) for m in grid])), vals, rtol=1e-12)
    with pytest.raises(ValueError):
        write_A_eta_hdf5_1d(tmp_path / "x.h5", "mu_h", grid, values=vals[:-1])
    with pytest.raises(ValueError, match="unknown eta axis"):
        compute_Aeta_grid(small_bank, {"logMh": grid})


def test_parse_axes():
    ax = parse_axes("alpha_sps:-0.5:0.5:0.1,mu_h:12:14:1")
    assert list(ax) == ["alpha_sps", "mu_h"] and len(ax["alpha_sps"]) == 11 and ax["mu_h"].tolist() == [12, 13, 14]
    for bad in ("mu_h:12:14", "foo:0:1:3", "mu_h:14:12:0.5", "mu_h:a:b:3", "mu_h:12:13:0"):
        with pytest.raises(ValueError):
            parse_axes(bad)
    # the retired name:lo:hi:n form gives one point: refused with the format in the message
    with pytest.raises(ValueError, match="single point.*name:start:stop:step"):
        parse_axes("mu_h:12:14:3")


def test_default_A_is_the_quadrature_and_consistent(bank):
    # the shipped bank-based table is retired: cached_A() is the default engine of the default
    # forward model (the deterministic quadrature, built once and cached)
    A = cached_A()
    assert isinstance(A, SelectionQuadrature)
    assert A.forward_model == ForwardModel() and A.forward_model.survey == SurveyConfig()
    assert A.config_hash == selection_for(ForwardModel()).config_hash
    a_q = A(ETA0)
    assert a_q == A.lens_fraction(ETA0) < A.expected_sources(ETA0)
    a_bank, err = bank.evaluate(ETA0, return_error=True)
    assert a_q == pytest.approx(a_bank, rel=0.05)
    # its support is the one eta box of the prior
    assert A.bounds == dict(ETA_BOX)
    assert A.in_bounds(ETA0)[0] and not A.in_bounds(_eta(alpha_sps=5.0))[0]


@pytest.mark.filterwarnings("ignore::sl_cy.selection.SelectionWarning")
def test_cli_aeta(tmp_path):
    axes = "mu_h:12.5:13.5:0.5,sigma_h:0.2:0.6:0.2"
    rc = cli_main(["aeta", "--engine", "bank", "--n-bank", "5000", "--seed", "3", "--axes", axes,
                   "--out", str(tmp_path / "bank"), "--no-progress", "--bank-out", str(tmp_path / "bank.h5")])
    assert rc == 0
    t = cached_A(tmp_path / "bank" / "Aeta_mu_h-sigma_h_3x3.h5")
    b = load_bank(tmp_path / "bank.h5")
    assert t.source_hash == b.config_hash and t.forward_model == b.forward_model
    assert t(ETA0) > 0
    # the default engine: the deterministic quadrature of the default forward model
    assert cli_main(["aeta", "--axes", axes, "--out", str(tmp_path / "quad"), "--no-progress"]) == 0
    q = cached_A(tmp_path / "quad" / "Aeta_mu_h-sigma_h_3x3.h5")
    sq = selection_for(ForwardModel())
    assert q.source_hash == sq.config_hash and q.forward_model == ForwardModel()
    node = _eta(mu_h=13.0, sigma_h=0.4)
    assert q(node) == pytest.approx(sq(node), rel=1e-9)         # log-linear on 3 points: exact at the nodes
    assert cli_main(["aeta", "--n-bank", "10", "--axes", "bogus:0:1:0.5", "--out", str(tmp_path)]) == 2


def test_eta_names_order():
    assert ETA_NAMES == ("alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma", "sigma_gamma")
