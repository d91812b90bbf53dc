"""Property-based fuzzing of the compiled entry points (issue 12, item 6).

Every compiled kernel is driven with extreme and non-finite inputs (+-inf, NaN, huge, tiny,
subnormal, zero, negative) through its public wrapper and, where the wrapper validates, also
directly (the compiled functions are called by other compiled code and by internal callers that
skip validation). The properties: no crash, no hang (hypothesis deadlines; every loop in the
kernels is bounded), and either a status code / a documented sentinel value (-inf, 0, NaN with a
status) or a ValueError that names the offending input.

Budget: ~20 s for the whole module on one core (``max_examples`` per test below). The default
run is derandomized (the same examples every time, so the suite does not flake on a new find);
``SL_CY_FUZZ_SCALE=20`` runs 20 x the examples with fresh random draws (clean at 20 x when this
was written).
"""
import math
import os

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sl_cy import _lensing, _likelihood, _photometry, _selection  # noqa: E402
from sl_cy.config import SurveyConfig  # noqa: E402
from sl_cy.forward import ForwardModel  # noqa: E402
from sl_cy.ktable import KTable, build_K_table  # noqa: E402
from sl_cy.testing import K_direct  # noqa: E402
from sl_cy.lensing import Status, forward_solve, invert_images  # noqa: E402
from sl_cy.likelihood import LikelihoodKernel  # noqa: E402
from sl_cy.photometry import PhotometryModel, mag_likelihood, selection_function, source_mag_pdf  # noqa: E402

INF, NAN = math.inf, math.nan
NASTY = [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e-30, -1e-30, 1e30, -1e30, 1e300, -1e300,
         1.7976931348623157e308, -1.7976931348623157e308, INF, -INF, NAN]
COSMO = (70.0, 0.3, 0.7)
STATUSES = {int(s) for s in Status}

SCALE = max(1, int(os.environ.get("SL_CY_FUZZ_SCALE", "1")))


@pytest.fixture(scope="module", autouse=True)
def _gnfw_table_ready():
    """Build or load the gNFW table before the deadlines start: its one-off cost (~1.5 s, or the wait
    for another pytest-xdist worker that holds its cache lock) is not a slow example."""
    from sl_cy._profiles import ensure_gnfw_table

    ensure_gnfw_table()


FAST = settings(max_examples=150 * SCALE, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=SCALE == 1, print_blob=True)


def nasty():
    return st.sampled_from(NASTY) | st.floats(allow_nan=True, allow_infinity=True)


def around(lo, hi):
    """Mostly physical values, often extreme ones."""
    return st.floats(lo, hi) | nasty()


def vec(elem, n=6):
    return st.lists(elem, min_size=1, max_size=n).map(lambda v: np.array(v, dtype=float))


def assert_names_input(exc, names):
    msg = str(exc)
    assert any(n in msg for n in names), f"ValueError does not name the bad input: {msg!r}"


# --------------------------------------------------------------------------------------------
# lensing: forward solve and inversion
# --------------------------------------------------------------------------------------------
LENS_NAMES = ("logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs", "beta_unit", "x_A", "x_B")


def _check_forward(out, images=True):
    s = np.asarray(out["status"])
    assert set(np.unique(s).tolist()) <= STATUSES
    ok = s == 0
    for k in ("theta_e", "x_rad", "y_caustic"):
        assert np.all(np.isfinite(np.asarray(out[k])[ok])), k
    te, xr, yc = (np.asarray(out[k])[ok] for k in ("theta_e", "x_rad", "y_caustic"))
    assert np.all(te > 0) and np.all(xr > 0) and np.all(xr <= te) and np.all(yc > 0)
    if images:
        for k in ("x_A", "x_B", "mu_A", "mu_B", "detJ"):
            assert np.all(~np.isnan(np.asarray(out[k])[ok])), k
        xa, xb = np.asarray(out["x_A"])[ok], np.asarray(out["x_B"])[ok]
        assert np.all(xa >= te * (1 - 1e-12)) and np.all(xb < 0) and np.all(-xb <= te * (1 + 1e-12))


@FAST
@given(ms=around(8, 13), mh=around(10, 16), re=around(-1, 2), g=around(0, 2.4), c=around(1, 20),
       zl=around(0.01, 3), dz=around(0.01, 5), bu=around(0, 1))
def test_forward_solve_public(ms, mh, re, g, c, zl, dz, bu):
    try:
        out = forward_solve(ms, mh, re, gamma_in=g, c_halo=c, zl=zl, zs=zl + dz, beta_unit=bu)
    except ValueError as e:
        assert_names_input(e, LENS_NAMES)
        return
    _check_forward(out)


@FAST
@given(ms=vec(around(8, 13)), mh=around(10, 16), re=vec(around(-1, 2)), g=around(0, 2.4), c=around(1, 20),
       zl=around(0.01, 3), zs=around(0.01, 8), bu=vec(around(0, 1)), images=st.booleans())
def test_forward_batch_compiled(ms, mh, re, g, c, zl, zs, bu, images):
    """The compiled batch, unvalidated: bad rows get a status, never a crash or a hang."""
    n = max(len(ms), len(re), len(bu))
    pad = lambda a: np.resize(a, n)  # noqa: E731
    out = _lensing.forward_batch(pad(ms), mh, pad(re), g, c, zl, zs, pad(bu), *COSMO, images=images)
    _check_forward(out, images)


@FAST
@given(xa=around(0.1, 30), xb=around(-30, -0.1), re=around(-1, 2), mh=around(10, 16), g=around(0, 2.4),
       c=around(1, 20), zl=around(0.01, 3), dz=around(0.01, 5))
def test_invert_images_public(xa, xb, re, mh, g, c, zl, dz):
    try:
        r = invert_images(xa, xb, re, logM_halo=mh, gamma_in=g, c_halo=c, zl=zl, zs=zl + dz)
    except ValueError as e:
        assert_names_input(e, LENS_NAMES)
        return
    s = int(r["status"])
    assert s in STATUSES
    if s == 0:
        for k in ("logM_star", "beta", "y_caustic", "theta_e", "x_rad", "detJ"):
            assert np.isfinite(r[k]), k
        # |mu| = inf is exact for an image on the Einstein ring (beta = 0)
        assert 0 <= r["beta"] < r["y_caustic"] and r["mu_A"] > 0 and r["mu_B"] > 0 and r["detJ"] >= 0
        assert xa >= r["theta_e"] * (1 - 1e-12) and -xb > r["x_rad"]


@FAST
@given(xa=vec(around(0.1, 30)), xb=vec(around(-30, -0.1)), re=around(-1, 2), mh=vec(around(10, 16)),
       g=around(0, 2.4), c=around(1, 20), zl=around(0.01, 3), zs=around(0.01, 8))
def test_invert_batch_compiled(xa, xb, re, mh, g, c, zl, zs):
    n = max(len(xa), len(xb), len(mh))
    pad = lambda a: np.resize(a, n)  # noqa: E731
    r = _lensing.invert_batch(pad(xa), pad(xb), re, pad(mh), g, c, zl, zs, *COSMO)
    s = r["status"]
    assert set(np.unique(s).tolist()) <= STATUSES
    ok = s == 0
    for k in ("logM_star", "beta", "y_caustic", "detJ"):
        assert np.all(np.isfinite(r[k][ok])), k
    for k in ("mu_A", "mu_B"):
        assert np.all(r[k][ok] > 0), k
    assert np.all(pad(xa)[ok] >= r["theta_e"][ok] * (1 - 1e-12))


# --------------------------------------------------------------------------------------------
# photometry: F_phot, selection function, magnitude likelihood, source law
# --------------------------------------------------------------------------------------------
PHOT_NAMES = ("m_lim", "sigma_m", "m_star", "alpha_s", "m_min", "m_max", "mA_obs", "mB_obs", "mu_A", "mu_B",
              "mu", "ms", "m_obs", "m_s", "m_bar", "mu1", "mu2", "mu_min", "mu_max", "n_mu")


@FAST
@given(det=st.sampled_from(["observed", "independent"]), m_lim=around(20, 30), sigma_m=around(0.01, 1),
       m_star=around(20, 28), alpha_s=around(-2, 1), m_min=around(15, 22), width=around(1, 15))
def test_photometry_model_construction(det, m_lim, sigma_m, m_star, alpha_s, m_min, width):
    try:
        model = PhotometryModel(det, m_lim=m_lim, sigma_m=sigma_m, m_star=m_star, alpha_s=alpha_s, m_min=m_min,
                                m_max=m_min + width)
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
        return
    lf = model.fphot(25.0, 25.5, mu_A=2.0, mu_B=1.5, log=True)
    assert not math.isnan(lf) and lf < INF


@pytest.fixture(scope="module", params=["observed", "independent"])
def phot_model(request):
    return PhotometryModel(request.param)


@FAST
@given(mA=vec(around(15, 35)), mB=around(15, 35), muA=vec(around(-100, 100)), muB=around(-100, 100))
def test_fphot(phot_model, mA, mB, muA, muB):
    n = max(len(mA), len(muA))
    mA, muA = np.resize(mA, n), np.resize(muA, n)
    try:
        lf = phot_model.fphot(mA, mB, mu_A=muA, mu_B=muB, log=True)
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
        return
    lf = np.asarray(lf)
    assert not np.isnan(lf).any() and (lf < INF).all()
    f = np.asarray(phot_model.fphot(mA, mB, mu_A=muA, mu_B=muB))
    assert (f >= 0).all() and np.isfinite(f).all()


@FAST
@given(mA=vec(nasty() | st.floats(15, 35)), mB=vec(nasty() | st.floats(15, 35)),
       muA=vec(nasty() | st.floats(-100, 100)), muB=vec(nasty() | st.floats(-100, 100)))
def test_fphot_compiled(phot_model, mA, mB, muA, muB):
    """The compiled kernel without the wrapper's checks: -inf for non-finite input, never NaN."""
    n = max(len(mA), len(mB), len(muA), len(muB))
    mA, mB, muA, muB = (np.resize(a, n) for a in (mA, mB, muA, muB))
    k = phot_model.kernel
    for direct in (False, True):
        lf = k.log_fphot(mA, mB, muA, muB, direct=direct)
        assert not np.isnan(lf).any() and (lf < INF).all()
    lf = k.fphot_lens(float(mA[0]), float(mB[0]), muA, muB, take_log=True)
    assert not np.isnan(lf).any()
    lp = k.log_ptilde(mA)
    assert not np.isnan(lp[~np.isnan(mA)]).any() and (lp < INF).all()


@FAST
@given(mu=vec(around(-100, 100)), m_lim=around(20, 30), ms=vec(around(15, 35)), sigma_m=around(0.01, 1),
       m_obs=vec(around(15, 35)))
def test_selection_function_and_mag_likelihood(mu, m_lim, ms, sigma_m, m_obs):
    n = max(len(mu), len(ms), len(m_obs))
    mu, ms, m_obs = (np.resize(a, n) for a in (mu, ms, m_obs))
    try:
        p = np.asarray(selection_function(mu, m_lim, ms, sigma_m))
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
    else:
        assert ((p >= 0) & (p <= 1)).all()
    try:
        q = np.asarray(mag_likelihood(m_obs, mu, ms, sigma_m))
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
    else:
        assert ((q >= 0) & np.isfinite(q)).all()
    try:
        r = np.asarray(source_mag_pdf(ms, m_star=m_lim - 2, m_min=20, m_max=30))
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
    else:
        assert ((r >= 0) & np.isfinite(r)).all()


@FAST
@given(mu=vec(nasty() | st.floats(-100, 100)), ms=vec(nasty() | st.floats(15, 35)), m_lim=nasty(),
       sigma_m=nasty() | st.floats(0.01, 1))
def test_photometry_arrays_compiled(mu, ms, m_lim, sigma_m):
    n = max(len(mu), len(ms))
    mu, ms = np.resize(mu, n), np.resize(ms, n)
    try:
        p = _photometry.selection_array(mu, m_lim, ms, sigma_m)
        q = _photometry.mag_like_array(ms, mu, ms, sigma_m)
    except ValueError as e:
        assert_names_input(e, ("sigma_m",))
        assert not (sigma_m > 0 and math.isfinite(sigma_m))
    else:
        assert not ((p < 0) | (p > 1)).any() and not (q < 0).any()
    lp = _photometry.source_law_log_pdf(ms, 24.5, -1.3, 20.0, 30.0)
    assert not (lp > 10).any()


# --------------------------------------------------------------------------------------------
# K table
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ktable():
    return build_K_table(n_mu=61)


@FAST
@given(mu1=vec(around(-1e3, 1e3)), mu2=vec(around(-1e3, 1e3)))
def test_ktable_lookup(ktable, mu1, mu2):
    n = max(len(mu1), len(mu2))
    mu1, mu2 = np.resize(mu1, n), np.resize(mu2, n)
    try:
        K = np.asarray(ktable(mu1, mu2))
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
    else:
        assert ((K >= 0) & (K <= 1 + 1e-9)).all()
    lk = ktable.kernel.log_eval(mu1, mu2)                 # compiled, unvalidated
    assert not np.isnan(lk).any() and (lk <= 1e-9).all()
    try:
        Kd = np.asarray(K_direct(mu1[:2], mu2[:2]))
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES)
    else:
        assert ((Kd >= 0) & (Kd <= 1 + 1e-9)).all()
    Kd = _photometry.k_direct_array(mu1[:2], mu2[:2], 26.5, 0.1, 24.5, -1.3, 20.0, 30.0)
    assert not ((Kd < 0) | (Kd > 1 + 1e-9)).any()


@settings(FAST, max_examples=40 * SCALE)
@given(mu_min=around(1e-4, 1), mu_max=around(1, 1e4), n_mu=st.integers(-2, 12), m_lim=around(20, 30),
       sigma_m=around(0.01, 1), m_min=around(15, 22), width=around(1, 15))
def test_build_K_table(mu_min, mu_max, n_mu, m_lim, sigma_m, m_min, width):
    try:
        t = build_K_table(mu_min, mu_max, n_mu, m_lim=m_lim, sigma_m=sigma_m, m_min=m_min, m_max=m_min + width, n_threads=1)
    except ValueError as e:
        assert_names_input(e, PHOT_NAMES + ("K must", "log10_mu"))
        return
    assert isinstance(t, KTable)
    K = np.asarray(t([0.5, 2.0, 50.0], [1.0, 3.0, 60.0]))
    assert ((K >= 0) & (K <= 1 + 1e-9)).all()


# --------------------------------------------------------------------------------------------
# likelihood kernel
# --------------------------------------------------------------------------------------------
ETA0 = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])


def _stacked(n_lens, n_mh, n_g, rng, L_vals=None, logRe=None, m_obs=None, beta=None, sigma_star=0.1):
    shape = (n_lens, n_mh, n_g)
    mh_axis = np.linspace(12.0, 14.0, n_mh)
    g_axis = np.linspace(0.0, 2.0, n_g) if n_g > 1 else np.array([1.0])
    st_ = dict(logMh_axis=mh_axis, gamma_axis=g_axis, nbkg_kpc2=np.full(n_lens, 4e-4),
               valid=np.zeros(shape, np.int8),
               logM_star=11.4 + 0.2 * rng.standard_normal(shape) if L_vals is None else np.resize(L_vals, shape),
               logMh=np.broadcast_to(mh_axis[None, :, None], shape).copy(),
               beta=rng.uniform(0.1, 1, shape) if beta is None else np.resize(beta, shape),
               detJ=rng.uniform(0.01, 0.1, shape), F_phot=rng.uniform(0.01, 1, shape),
               wq=np.full(shape, 0.1), ycaustic=np.ones(shape), muA=np.ones(shape), muB=np.ones(shape))
    st_["forward_model"] = ForwardModel(survey=SurveyConfig(sigma_star=sigma_star)).to_dict()
    st_["observed"] = pd.DataFrame(dict(
        logRe=np.resize(rng.uniform(0.5, 1.2, n_lens) if logRe is None else logRe, n_lens),
        logM_star_sps_observed=np.resize(rng.uniform(11, 12, n_lens) if m_obs is None else m_obs, n_lens)))
    return st_


@pytest.fixture(scope="module")
def lkernel():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return LikelihoodKernel(_stacked(3, 5, 4, np.random.default_rng(0)), selection=False, n_threads=1)


ETA_NAMES = ("eta", "alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma", "sigma_gamma", "6 columns", "shape")


@FAST
@given(eta=st.lists(around(-5, 15), min_size=6, max_size=6), rows=st.integers(1, 3))
def test_likelihood_kernel_eta(lkernel, eta, rows):
    e = np.tile(np.array(eta), (rows, 1))
    e[0] = ETA0 if rows > 1 else e[0]
    try:
        out = lkernel.per_lens(e)
    except ValueError as exc:
        assert_names_input(exc, ETA_NAMES)
        return
    assert out.shape == (rows, 3)
    assert not np.isnan(out).any() and (out < INF).all()
    if rows > 1:
        assert np.isfinite(out[0]).all()


@FAST
@given(L=vec(around(9, 13), 8), logRe=vec(around(0, 1.5), 3), m_obs=vec(around(10, 13), 3),
       beta=vec(around(0, 1), 4), eta=st.lists(around(-5, 15), min_size=6, max_size=6),
       n_g=st.sampled_from([1, 3]), sigma_star=around(0.01, 1))
def test_likelihood_kernel_grids(L, logRe, m_obs, beta, eta, n_g, sigma_star):
    """Non-finite and extreme grid contents and observables: never NaN or +inf."""
    import warnings

    try:
        st_ = _stacked(3, 4, n_g, np.random.default_rng(1), L_vals=L, logRe=logRe, m_obs=m_obs, beta=beta,
                       sigma_star=sigma_star)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            k = LikelihoodKernel(st_, selection=False, n_threads=1)
    except ValueError as exc:
        assert_names_input(exc, ("sigma_star", "logRe", "logM_star_sps_observed", "no valid grid point"))
        return
    e = np.array([ETA0, eta])
    try:
        out = k.per_lens(e)
    except ValueError as exc:
        assert_names_input(exc, ETA_NAMES)
        return
    assert not np.isnan(out).any() and (out < INF).all()


@FAST
@given(offsets=st.lists(st.integers(-5, 12), min_size=1, max_size=5), n=st.integers(0, 8),
       nodes=st.lists(st.integers(-3, 9), min_size=0, max_size=25), ng=st.integers(0, 4), use_gamma=st.booleans(),
       cols=st.integers(1, 6))
def test_likelihood_compiled_layout(offsets, n, nodes, ng, use_gamma, cols):
    """The raw kernel refuses an inconsistent point layout instead of reading out of bounds."""
    pts = np.full(n, 11.4)
    nl = len(offsets) - 1
    nd = np.resize(np.array(nodes, dtype=np.int32), nl * cols).reshape(nl, cols) if nodes else \
        np.zeros((nl, cols), dtype=np.int32)
    try:
        out = _likelihood.loglike_lenses(np.atleast_2d(ETA0), pts, np.full(n, 13.0), np.ascontiguousarray(nd),
                                         np.zeros(n), np.array(offsets, dtype=np.int64), np.full(nl, 0.8),
                                         np.full(nl, 11.5), np.linspace(0, 2, ng), use_gamma,
                                         (11.252, 0.202, 1.48, 0.774, 0.977, 0.112, 0.0, 0.1, 11.4))
    except ValueError as exc:
        assert_names_input(exc, ("offsets", "nodes", "gamma", "point arrays", "logRe"))
        return
    assert out.shape == (1, nl) and not np.isnan(out).any()


# --------------------------------------------------------------------------------------------
# selection: bank kernel and quadrature
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bank():
    from sl_cy.selection import build_selection_bank

    return build_selection_bank(2000, seed=1)


@pytest.fixture(scope="module")
def squad():
    from sl_cy.selection import build_selection_table

    return build_selection_table(axes=dict(logM_star=(10.5, 12.5, 0.25), logRe=(0.0, 1.6, 0.4),
                                           logM_halo=(11.0, 15.0, 0.5), gamma_in=(0.0, 2.0, 0.5)), cache=False)


def _quad_compiled(squad, e):
    """The compiled quadrature with the gamma nodes of the default eta (the eta rows unvalidated)."""
    g, wg = squad._gamma_nodes(np.ascontiguousarray([ETA0] * len(e)))
    lo, hi = squad.forward_model.halo_support
    return _selection.quad_selection(squad.kernel, squad.T, squad._logT, squad._start, squad._step, squad._M,
                                     squad._wM, squad._tR, squad._wR, squad._tH, squad._wH, lo, hi, g, wg, e, 1)


eta_strategy = st.lists(around(-5, 15), min_size=6, max_size=6).map(lambda v: np.array(v))


@FAST
@given(eta=eta_strategy)
def test_selection_bank(bank, eta):
    try:
        A, ess = bank.evaluate(eta, return_ess=True, warn=False)
    except ValueError as exc:
        assert_names_input(exc, ETA_NAMES)
        return
    assert A >= 0 and math.isfinite(A) and ess >= 0
    f = bank.lens_fraction(eta)
    assert f >= 0 and math.isfinite(f)


@FAST
@given(eta=eta_strategy)
def test_selection_quadrature(squad, eta):
    try:
        A = squad(eta)
        f = squad.lens_fraction(eta)
    except ValueError as exc:
        assert_names_input(exc, ETA_NAMES)
        return
    assert not math.isnan(A) and A >= 0 and not math.isnan(f) and f >= 0


@FAST
@given(eta=st.lists(nasty() | st.floats(-5, 15), min_size=6, max_size=6), lognorm=nasty() | st.floats(-5, 0))
def test_selection_compiled(squad, bank, eta, lognorm):
    """The compiled quadrature and bank sums with unvalidated (non-finite, huge) eta: no crash."""
    e = np.ascontiguousarray([eta], dtype=float)
    try:
        out = _quad_compiled(squad, e)
    except ValueError as exc:             # the kernel's own checks: sigma_h, sigma_gamma > 0
        assert_names_input(exc, ("sigma_h", "sigma_gamma"))
        assert not (eta[3] > 0 and eta[5] > 0)
    else:
        assert out.shape == (1, 2) and not (out < 0).any()
    pts = np.array([eta[:4]])
    r = _selection.interp_rate(squad.T, squad._logT, squad._start, squad._step, *[np.ascontiguousarray(c) for c in pts.T])
    assert r.shape == (1,) and not (r < 0).any()
    s = bank.kernel.weight_sums(bank._x, bank._re, bank._mh, bank._g, bank._base, e, np.array([lognorm]), 1)
    assert s.shape == (1, 3)
    lt = bank.kernel.log_target(bank._x, bank._re, bank._mh, bank._g, e[0], lognorm)
    assert lt.shape == bank._x.shape


# --------------------------------------------------------------------------------------------
# regressions: one test per bug the fuzzing found (minimal failing inputs as hypothesis shrank them)
# --------------------------------------------------------------------------------------------
def test_regression_subnormal_image_A_is_not_a_valid_inversion():
    # alpha(x_A) underflowed to 0, so beta = x_A >= 0 passed and a central image counted as image A
    r = invert_images(5e-324, -1.0, 1.0, logM_halo=10.0, gamma_in=0.0, c_halo=1.0, zl=1.0, zs=2.0)
    assert int(r["status"]) == Status.BETA_NEGATIVE


def test_regression_comoving_distance_bounded_for_any_redshift():
    import time

    from sl_cy.cosmology import Dang

    t0 = time.perf_counter()
    out = forward_solve(11.5, 13.0, 0.9, zs=1e9, beta_unit=0.5)     # was ~250 s (loop linear in z)
    assert time.perf_counter() - t0 < 1.0 and int(out["status"]) == 0
    # Dang(1e30) was -0.0 (undefined int cast); D_A -> D_C(inf)/(1+z): positive, decreasing
    d = [Dang(z) for z in (1e3, 1e8, 1e30, 1e300)]
    assert all(x > 0 for x in d) and d == sorted(d, reverse=True)
    assert Dang(100.0) == pytest.approx(124.73993899658203, rel=1e-13)     # astropy, unchanged path


def test_regression_fphot_huge_magnitudes_are_minus_inf_not_nan():
    for det in ("observed", "independent"):
        m = PhotometryModel(det)
        assert m.fphot(5.774513908345761e+37, 15.0, mu_A=1.0, mu_B=1.0, log=True) == -INF
        assert m.ptilde(1e300, log=True) == -INF
    # an image 1e300 mag fainter than the limit (independent detection) gave nan
    m = PhotometryModel("independent", m_lim=-1e300)
    assert m.fphot(25.0, 25.5, mu_A=2.0, mu_B=1.5, log=True) == -INF


@pytest.mark.parametrize("kw, name", [(dict(m_min=15.0, m_max=1e30), "m_max - m_min"),
                                      (dict(sigma_m=1e30), "sigma_m"), (dict(sigma_m=1e-300), "sigma_m"),
                                      (dict(alpha_s=1e5), "alpha_s"),
                                      (dict(m_star=1e30, m_min=15.0, m_max=20.0), "cannot be normalised")])
def test_regression_photometry_constants_out_of_range(kw, name):
    # m_max - m_min = 1e30: "negative dimensions are not allowed" (undefined cast of the table
    # size); sigma_m = 1e30 or alpha_s = 1e5: nan or log F = +52; sigma_m = 1e-300: ~1e300 panels;
    # m_star = 1e30: source_mag_pdf returned nan
    with pytest.raises(ValueError, match=name):
        PhotometryModel("independent", **kw)
    with pytest.raises(ValueError, match=name):
        K_direct(1.0, 2.0, **kw)
    if "sigma_m" not in kw:
        with pytest.raises(ValueError, match=name):
            source_mag_pdf(25.0, **kw)


def test_regression_compiled_photometry_rejects_bad_constants():
    with pytest.raises(ValueError, match="sigma_m"):
        _photometry.mag_like_array(np.array([0.0]), np.array([1.0]), np.array([0.0]), -1.0)   # was -0.399
    with pytest.raises(ValueError, match="m_min < m_max"):
        _photometry.k_direct_array(np.ones(1), np.ones(1), 26.5, 0.1, 24.5, -1.3, 30.0, 20.0)
    # panel counts and the table size are clamped before the cast: bounded work, no error
    k = _photometry.PhotometryKernel(0, 26.5, 0.1, 24.5, -1.3, 20.0, 20.0 + 1e-12, 32, 0.0)
    assert np.isfinite(k.log_ptilde(np.array([20.0]))).all()


def test_regression_readonly_broadcast_inputs(recwarn):
    # a read-only broadcast view reached a writable memoryview: DeprecationWarning (future error)
    m = PhotometryModel("observed")
    m.fphot(np.array([25.0]), 25.5, mu_A=np.array([2.0]), mu_B=1.5)
    m.kernel.log_fphot(*np.broadcast_arrays(np.array([25.0]), 25.5, 2.0, 1.5))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_regression_mu_zero_with_overflowing_magnitudes():
    # m_lim - m_s = +inf (finite inputs) and log10|0| = -inf gave nan instead of the documented 0
    assert selection_function(0.0, 1e300, -1.7976931348623157e308, 1.0) == 0.0
    assert mag_likelihood(1e300, 0.0, -1.7976931348623157e308, 1.0) == 0.0


def test_regression_coarse_K_table_never_exceeds_one(ktable):
    assert ktable(30.0, 33.0) <= 1.0            # was 1.000258 (cubic overshoot where K saturates)


def test_regression_likelihood_model_scatters_must_be_positive():
    # sigma_star = -1e-30 gave nan (the forward model now refuses it too)
    with pytest.raises(ValueError, match="scatters"):
        _likelihood.loglike_lenses(np.atleast_2d(ETA0), np.zeros(1), np.full(1, 13.0),
                                   np.array([[0, 1, 1, 1]], np.int32),
                                   np.zeros(1), np.array([0, 1], dtype=np.int64), np.full(1, 0.8), np.full(1, 11.5),
                                   np.linspace(0, 2, 3), True, (11.252, 0.202, 1.48, 0.774, 0.977, 0.112, 0.0,
                                                                -1e-30, 11.4))


def test_regression_likelihood_layout_is_checked():
    # offsets[0] < 0 and a gamma-node index out of range read out of bounds (segfault); the node
    # index per point is now the start of each node's points per lens (``nodes``), checked the same way
    args = (np.zeros(2), np.full(2, 13.0))
    model = (11.252, 0.202, 1.48, 0.774, 0.977, 0.112, 0.0, 0.1, 11.4)
    with pytest.raises(ValueError, match="offsets"):
        _likelihood.loglike_lenses(np.atleast_2d(ETA0), *args, np.array([[0, 1, 2, 2]], np.int32), np.zeros(2),
                                   np.array([-5, 2], dtype=np.int64), np.full(1, 0.8), np.full(1, 11.5),
                                   np.linspace(0, 2, 3), True, model)
    for bad in ([[0, 1, 1000000, 2]], [[0, 2, 1, 2]], [[1, 1, 2, 2]], [[0, 1, 2, 3]], [[0, 1, 2]]):
        with pytest.raises(ValueError, match="nodes"):
            _likelihood.loglike_lenses(np.atleast_2d(ETA0), *args, np.array(bad, np.int32), np.zeros(2),
                                       np.array([0, 2], dtype=np.int64), np.full(1, 0.8), np.full(1, 11.5),
                                       np.linspace(0, 2, 3), True, model)


def test_regression_extreme_gamma_law(lkernel, bank, squad):
    from sl_cy.population import gamma_logpdf

    # mean 4.5e13 sigma beyond the support: log L was +1.4e11 (and +9e15 at (-1e8, 1e-8))
    for mg, sg in ((4.5e13, 1.0), (-1e8, 1e-8)):
        assert (lkernel.per_lens([0, 12.91, 2.04, 0.37, mg, sg]) == -INF).all()
        for A in (bank, squad):
            with pytest.raises(ValueError, match="mu_gamma"):
                A([0, 12.91, 2.04, 0.37, mg, sg])
    # very wide law: uniform on [0, 2]; log p was -0.667 at sigma 1e15 and +inf beyond 1e16
    for sg in (1e8, 1e15, 1e30, 1e300):
        assert gamma_logpdf(np.array([0.5]), 0.0, sg)[0] == pytest.approx(-math.log(2.0), abs=1e-9)
        assert gamma_logpdf(np.array([0.5]), 1e30, 1e30)[0] < 0
    wide = lkernel.per_lens([0, 12.91, 2.04, 0.37, 0.0, 1e30])
    assert np.isfinite(wide).all() and np.allclose(wide, lkernel.per_lens([0, 12.91, 2.04, 0.37, 0.0, 1e8]))
    assert math.isfinite(bank.evaluate([0, 12.91, 2.04, 0.37, 1e30, 1e30], warn=False))     # was inf


def test_regression_nan_table_coordinate(squad):
    # a nan coordinate (a nan point, or inf - inf from a huge eta) was cast to a table index out of
    # bounds; now the interpolated value is nan
    r = _selection.interp_rate(squad.T, squad._logT, squad._start, squad._step, np.array([np.nan]), np.array([0.9]),
                               np.array([13.0]), np.array([1.0]))
    assert np.isnan(r).all()
    out = _quad_compiled(squad, np.ascontiguousarray([[np.nan, 12.91, 2.04, 0.37, 1.0, 0.2]]))
    assert np.isnan(out).all()
