"""Population laws, hyper-parameters and survey/source constants: samplers match their analytic laws."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from sl_cy import population as pop
from sl_cy.config import DETECTION_MODES, SCATTER, SourceLaw, SurveyConfig
from sl_cy.cosmology import kpc_to_arcsec
from sl_cy.population import (DEFAULT_ETA, MODEL_PARAMS, Eta, gamma_logpdf, generate_samples, logMh_given_logM_logRe,
                              logMh_logpdf, logRe_given_logM, logRe_logpdf, mstar_gene, mstar_logpdf, sample_gamma)

P_MIN = 1e-3   # KS p-value threshold (fixed seeds: deterministic outcomes)


# --- fixed parameters and eta ----------------------------------------------------------------------
def test_model_params_deVauc_matches_design():
    p = MODEL_PARAMS["deVauc"]
    assert (p["mu_star"], p["sigma_star"], p["log_s_star"]) == (11.252, 0.202, 0.17)
    assert (p["mu_R0"], p["beta_R"], p["sigma_R"]) == (0.774, 0.977, 0.112)
    assert (p["mu_h0"], p["beta_h"], p["sigma_h"], p["xi_h"]) == (12.91, 2.04, 0.37, 0.0)
    assert set(MODEL_PARAMS) == {"deVauc", "SerExp", "Sersic"}
    for m in MODEL_PARAMS:
        assert set(MODEL_PARAMS[m]) == set(p)


def test_one_eta_box():
    # one definition of the eta box (sigma_h >= 0.05): the default prior and the support of every
    # A(eta) engine; the grids' stellar-mass window covers its alpha_sps range
    from sl_cy.grids import ADAPTIVE_MSTAR_WINDOW
    from sl_cy.likelihood import DEFAULT_BOX
    from sl_cy.selection import Selection

    box = pop.ETA_BOX
    assert tuple(box) == Eta._fields and box["sigma_h"] == (0.05, 1.0)
    assert DEFAULT_BOX == box and Selection().bounds == box
    assert not hasattr(pop, "PRIOR_BOX")
    assert all(lo < v < hi for v, (lo, hi) in zip(DEFAULT_ETA, box.values()))
    assert ADAPTIVE_MSTAR_WINDOW[0] <= box["alpha_sps"][0] - 1.0 and ADAPTIVE_MSTAR_WINDOW[1] >= box["alpha_sps"][1] + 1.0


def test_eta_structure_and_conversions():
    assert Eta._fields == ("alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma", "sigma_gamma")
    assert tuple(Eta.default()) == tuple(DEFAULT_ETA) == (0.0, 12.91, 2.04, 0.37, 1.0, 0.2)
    assert Eta.from_model("deVauc") == DEFAULT_ETA
    assert Eta.from_model("SerExp").mu_h == 12.83
    arr = DEFAULT_ETA.to_array()
    assert arr.shape == (6,) and Eta.from_array(arr) == DEFAULT_ETA
    batch = np.array(DEFAULT_ETA) + np.linspace(0, 0.1, 4)[:, None]
    eb = Eta.from_array(batch)
    assert eb.mu_h.shape == (4,)
    np.testing.assert_array_equal(eb.to_array(), batch)
    assert pop.as_eta({"mu_h": 13.0}).mu_h == 13.0


@pytest.mark.parametrize("bad, match", [
    ([0, np.nan, 2.04, 0.37, 1.0, 0.2], "eta.mu_h must be finite"),
    ([0, 12.9, 2.04, 0.0, 1.0, 0.2], "eta.sigma_h must be > 0"),
    ([0, 12.9, 2.04, 0.3, 1.0, -0.2], "eta.sigma_gamma must be > 0"),
    ([0, 12.9, 2.04], "eta needs 6 values"),
])
def test_eta_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        Eta.from_array(bad)


def test_as_eta_rejects_unknown_field():
    with pytest.raises(ValueError, match="unknown eta field"):
        pop.as_eta({"mu_halo": 13.0})


# --- samplers vs analytic laws ---------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODEL_PARAMS))
def test_mstar_is_skew_normal(model):
    p = MODEL_PARAMS[model]
    x = mstar_gene(20_000, model, rng=1)
    law = stats.skewnorm(10 ** p["log_s_star"], p["mu_star"], p["sigma_star"])
    assert stats.kstest(x, law.cdf).pvalue > P_MIN
    grid = np.linspace(10.5, 12.5, 7)
    np.testing.assert_allclose(mstar_logpdf(grid, model), law.logpdf(grid), rtol=1e-12)


@pytest.mark.parametrize("model", list(MODEL_PARAMS))
def test_size_and_halo_conditionals(model):
    p = MODEL_PARAMS[model]
    rng = np.random.default_rng(2)
    m = mstar_gene(20_000, model, rng)
    re = logRe_given_logM(m, model, rng)
    mu_r = p["mu_R0"] + p["beta_R"] * (m - 11.4)
    assert stats.kstest((re - mu_r) / p["sigma_R"], "norm").pvalue > P_MIN
    eta = Eta.from_model(model)._replace(beta_h=1.5, sigma_h=0.25)
    mh = logMh_given_logM_logRe(m, re, model, rng=rng, eta=eta)
    mu_h = eta.mu_h + 1.5 * (m - 11.4) + p["xi_h"] * (re - mu_r)
    assert stats.kstest((mh - mu_h) / 0.25, "norm").pvalue > P_MIN
    np.testing.assert_allclose(logRe_logpdf(re[:5], m[:5], model), stats.norm.logpdf(re[:5], mu_r[:5], p["sigma_R"]))
    np.testing.assert_allclose(logMh_logpdf(mh[:5], m[:5], re[:5], eta=eta, model=model),
                               stats.norm.logpdf(mh[:5], mu_h[:5], 0.25))


def test_logMh_logpdf_broadcasts_over_eta_batch():
    etas = Eta.from_array(np.array(DEFAULT_ETA) + np.array([[0, 0, 0, 0, 0, 0], [0, 0.5, 0, 0.1, 0, 0]]))
    lp = logMh_logpdf(13.0, np.array([[11.2, 11.5, 11.8]]), None, eta=etas._replace(
        mu_h=etas.mu_h[:, None], beta_h=etas.beta_h[:, None], sigma_h=etas.sigma_h[:, None]))
    assert lp.shape == (2, 3)
    assert lp[1, 0] == pytest.approx(stats.norm.logpdf(13.0, 13.41 + 2.04 * (11.2 - 11.4), 0.47))


@pytest.mark.parametrize("mu, sigma", [(1.0, 0.2), (1.8, 0.6), (0.1, 1.5), (3.5, 0.4), (-6.0, 1.0)])
def test_gamma_truncated_normal(mu, sigma):
    g = sample_gamma(20_000, mu, sigma, rng=3)
    assert g.min() >= 0.0 and g.max() <= 2.0
    law = stats.truncnorm((0.0 - mu) / sigma, (2.0 - mu) / sigma, mu, sigma)
    assert stats.kstest(g, law.cdf).pvalue > P_MIN
    grid = np.array([0.0, 0.3, 1.0, 1.7, 2.0])
    np.testing.assert_allclose(gamma_logpdf(grid, mu, sigma), law.logpdf(grid), rtol=1e-9)
    norm, _ = integrate.quad(lambda x: math.exp(gamma_logpdf(x, mu, sigma)), 0.0, 2.0, epsabs=0, epsrel=1e-10)
    assert norm == pytest.approx(1.0, rel=1e-8)
    assert gamma_logpdf(-0.01, mu, sigma) == -np.inf and gamma_logpdf(2.01, mu, sigma) == -np.inf


# --- generate_samples ---------------------------------------------------------------------------
def test_generate_samples_columns_and_relations():
    eta = DEFAULT_ETA._replace(alpha_sps=0.12, mu_gamma=1.3)
    df = generate_samples(5_000, eta=eta, rng=4)
    assert list(df.columns) == ["logM_star_sps", "logM_star", "logRe", "logM_halo", "gamma_in", "c_halo", "zl", "zs"]
    np.testing.assert_allclose(df.logM_star - df.logM_star_sps, 0.12)
    assert (df.zl == 0.3).all() and (df.zs == 2.0).all() and (df.c_halo == 5.0).all()
    assert df.gamma_in.between(0, 2).all()
    pd.testing.assert_frame_equal(df, generate_samples(5_000, eta=eta, rng=4))
    assert not df.equals(generate_samples(5_000, eta=eta, rng=5))


def _zl_uniform(rng, n):
    return rng.uniform(0.2, 0.6, n)


def test_generate_samples_redshift_inputs():
    df = generate_samples(100, rng=0, zl=_zl_uniform, zs=np.linspace(1.0, 3.0, 100))
    assert df.zl.between(0.2, 0.6).all() and df.zl.nunique() == 100
    np.testing.assert_allclose(df.zs, np.linspace(1.0, 3.0, 100))
    with pytest.raises(ValueError, match="zs must be a number, a callable or an array of length 100"):
        generate_samples(100, rng=0, zs=np.ones(99) * 2)
    with pytest.raises(ValueError, match="zl callable must return 100 values"):
        generate_samples(100, rng=0, zl=lambda rng, n: np.ones(3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1), "n must be a non-negative integer"),
    (dict(n=2.5), "n must be a non-negative integer"),
    (dict(n=10, model="Hernquist"), "unknown model 'Hernquist'"),
    (dict(n=10, eta=[0, 12.9, np.nan, 0.3, 1, 0.2]), "eta.beta_h must be finite"),
    (dict(n=10, zl=-0.1), "zl must be > 0.0"),
])
def test_generate_samples_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_samples(**kwargs)


# --- source law and survey configuration ---------------------------------------------------------
def test_source_law_pdf_cdf_and_sampling():
    law = SourceLaw()
    assert (law.alpha_s, law.m_star, law.m_min, law.m_max) == (-1.3, 24.5, 20.0, 30.0)

    def unnorm(m):
        L = 10 ** (-0.4 * (m - 24.5))
        return L ** (-1.3 + 1) * math.exp(-L)

    z, _ = integrate.quad(unnorm, 20, 30, epsabs=0, epsrel=1e-12)
    assert law.norm == pytest.approx(z, rel=1e-10)
    assert integrate.quad(law.pdf, 20, 30, epsabs=0, epsrel=1e-12)[0] == pytest.approx(1.0, rel=1e-10)
    for m in (21.0, 24.0, 26.5, 29.0):
        assert law.cdf(m) == pytest.approx(integrate.quad(law.pdf, 20, m, epsabs=1e-14, epsrel=1e-11)[0], abs=1e-11)
    u = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(law.cdf(law.ppf(u)), u, atol=1e-12)
    x = law.sample(20_000, rng=5)
    assert x.min() >= 20 and x.max() <= 30
    assert stats.kstest(x, law.cdf).pvalue > P_MIN
    assert law.pdf(19.0) == 0.0 and law.logpdf(31.0) == -np.inf


@pytest.mark.parametrize("alpha", [-1.0, -2.0, 0.5])
def test_source_law_other_slopes(alpha):
    law = SourceLaw(alpha_s=alpha)
    assert integrate.quad(law.pdf, 20, 30, epsabs=0, epsrel=1e-12)[0] == pytest.approx(1.0, rel=1e-9)
    assert stats.kstest(law.sample(5_000, rng=6), law.cdf).pvalue > P_MIN


def test_survey_config():
    assert SCATTER.star == 0.1 and SCATTER.mag == 0.1
    cfg = SurveyConfig()
    assert (cfg.nbkg, cfg.m_lim, cfg.sigma_m, cfg.sigma_star, cfg.detection) == (4e-4, 26.5, 0.1, 0.1, "observed")
    assert DETECTION_MODES == ("observed", "independent")
    mu, ms = np.array([2.0, -3.0, 0.5]), np.array([26.0, 27.0, 25.0])
    np.testing.assert_allclose(cfg.p_det(mu, ms), stats.norm.cdf((26.5 - ms + 2.5 * np.log10(np.abs(mu))) / 0.1))
    a = SurveyConfig(nbkg_per_arcsec2=0.01)
    zl = np.array([0.2, 0.5])
    np.testing.assert_allclose(a.nbkg_kpc2(zl), 0.01 * np.asarray(kpc_to_arcsec(1.0, zl)) ** 2)
    assert SurveyConfig.from_dict(a.to_dict()) == a and SurveyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="detection must be one of"):
        SurveyConfig(detection="both")
    with pytest.raises(ValueError, match="not both"):
        SurveyConfig(nbkg=1e-3, nbkg_per_arcsec2=0.01)
    with pytest.raises(ValueError, match="sigma_m must be finite and > 0"):
        SurveyConfig(sigma_m=0.0)
