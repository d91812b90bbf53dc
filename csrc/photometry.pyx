# cython: language_level=3
"""Compiled photometry for sl_cy (module ``sl_cy._photometry``).

Contents (DESIGN sections 2, 3 and 6)
-------------------------------------
* Source magnitude law p(m_s) proportional to L^(alpha_s+1) e^(-L), L = 10^(-0.4 (m_s - m_star)),
  normalised on [m_min, m_max] (analytic normalisation: an incomplete gamma difference in log
  space, ``_numerics.log_gamma_integral``).
* Per image: detection probability P_det = Phi((m_lim - m_s + 2.5 log10|mu|) / sigma_m) and the
  magnitude likelihood N(m_obs; m_s - 2.5 log10|mu|, sigma_m).
* The photometric factor of a two-image lens, with y = m_obs + 2.5 log10|mu| per image,
  Delta = y_A - y_B, m_bar = (y_A + y_B) / 2 and s = sigma_m / sqrt(2)::

      F_phot = N(Delta; 0, sqrt(2) sigma_m) * I,   I = int p(m_bar + s t) phi(t) [P_A P_B] dt

  with the bracket only for ``"independent"`` detection (P_X = Phi(z_X - t / sqrt(2)),
  z_X = (m_lim + 2.5 log10|mu_X| - m_bar) / sigma_m). For ``"observed"`` detection
  I = p~(m_bar), p(m_s) smoothed by N(0, s), is read from a table of log p~ (cubic Lagrange,
  spacing s/32, m_bar in [m_min - 6, m_max + 6]; exact quadrature outside).
* The quadrature behind both (``_log_integral``): the log-integrand psi(t) is strongly concave
  (psi'' <= -1: log p, log phi and log Phi are all concave), so its maximum t* is found by a
  safeguarded Newton iteration on [a, b] = [(m_min - m_bar)/s, (m_max - m_bar)/s] and all the mass
  lies within ~10 of t*. Away from the edges of p: 10-point Gauss-Hermite centred on t* with the
  local curvature; near an edge (or with the maximum on it): 2 x 20-point Gauss-Legendre on the
  window where psi > psi(t*) - 45. Everything is summed relative to psi(t*), so log F_phot stays
  exact (relative) far into the tails where F_phot itself underflows.
* K(mu1, mu2) = int p(m_s) P_det(mu1, m_s) P_det(mu2, m_s) dm_s: direct composite
  Gauss-Legendre quadrature (panels of min(0.05, sigma_m/2) mag, 8 nodes), a parallel table
  builder on a log10|mu| grid, and a bicubic (4 x 4 Lagrange) interpolator of log K.

Precision (measured against scipy.integrate.quad, see tests/test_photometry.py and
tests/test_ktable.py): log F_phot within 1e-8 absolute (= relative on F_phot) for both detection
models (the p~ table itself: 4e-9); K direct ~1e-13 relative; the default K table (601 x 601,
0.01 dex) interpolates to <= 1e-5 relative (max measured 5e-6) wherever K > 1e-6.

Every C function is nogil, allocation-free and thread safe (the structs are read-only).
"""
import numpy as np
cimport cython
from cython.parallel cimport prange
from libc.math cimport exp, log, log10, fabs, sqrt, floor, ceil, isfinite, isnan, INFINITY, M_PI, M_LN10
from scipy.special.cython_special cimport ndtr, log_ndtr, erfcx
from sl_cy._numerics cimport (SQRT2, INV_SQRT2, LOG_SQRT_2PI, SQRT_2_OVER_PI, lagrange4, resolve_threads,
                              log_gamma_integral)

# --------------------------------------------------------------------------------------------
# constants and quadrature rules
# --------------------------------------------------------------------------------------------
cdef double KMAG = 0.4 * M_LN10                 # L = exp(-KMAG (m - m_star))
cdef double LOG_2_SQRT_PI = 1.2655121234846454  # log(2 sqrt(pi))

cdef enum:
    NGH = 10        # Gauss-Hermite nodes (interior maxima)
    NGLW = 20       # Gauss-Legendre nodes per window panel (maxima near an edge)
    NPANW = 2       # window panels
    NGLK = 8        # Gauss-Legendre nodes per panel for K
    MAXIT = 60      # mode search iterations (typically 2-4)

cdef double GHX[NGH]
cdef double GHW[NGH]        # Gauss-Hermite weights times exp(x^2)
cdef double GLWX[NGLW]
cdef double GLWW[NGLW]
cdef double GLKX[NGLK]
cdef double GLKW[NGLK]
_x, _w = np.polynomial.hermite.hermgauss(NGH)
for _i in range(NGH):
    GHX[_i] = _x[_i]
    GHW[_i] = _w[_i] * np.exp(_x[_i] ** 2)
_x, _w = np.polynomial.legendre.leggauss(NGLW)
for _i in range(NGLW):
    GLWX[_i] = _x[_i]
    GLWW[_i] = _w[_i]
_x, _w = np.polynomial.legendre.leggauss(NGLK)
for _i in range(NGLK):
    GLKX[_i] = _x[_i]
    GLKW[_i] = _w[_i]

cdef double WIN = 10.0          # Gauss-Hermite when t* is >= WIN (in units of s) from both edges
cdef double TAIL = 45.0         # window: psi(t) >= psi(t*) - TAIL  (e^-45 ~ 3e-20)
cdef double MODE_TOL = 1e-4     # Newton step tolerance on t* (the rule only needs a good centre)
cdef double Z_SAFE = 8.5        # Phi(z) = 1 to 1e-17 above this
cdef double FAR = 1e8           # m_bar this many s outside [m_min, m_max]: log I = -inf
cdef double LAW_PANEL = 0.05    # mag, panel width of the K quadrature

# defaults of the photometric table (see PhotometryKernel)
TABLE_NODES_PER_S = 32
TABLE_PAD_MAG = 6.0
TABLE_MAX_NODES = 400000


cdef double MAX_PANELS = 1e6     # bound on the quadrature panels (the Python layer keeps far below)


cdef inline int _n_panels(double width, double panel) noexcept nogil:
    """ceil(width / panel) clamped to [1, MAX_PANELS] (also for nan/inf: no undefined cast, no
    unbounded loop)."""
    cdef double n = ceil(width / panel)
    if not (n >= 1.0):
        return 1
    if n > MAX_PANELS:
        return <int> MAX_PANELS
    return <int> n


# --------------------------------------------------------------------------------------------
# source magnitude law
# --------------------------------------------------------------------------------------------
cdef inline double _law_lp_unnorm(double m_star, double alpha_s, double m) noexcept nogil:
    """(alpha_s + 1) ln L - L: log of the unnormalised law, analytic in m (no range check)."""
    cdef double x = -KMAG * (m - m_star)
    return (alpha_s + 1.0) * x - exp(x)


cdef double law_log_norm(double m_star, double alpha_s, double m_min, double m_max) noexcept nogil:
    """log int_{m_min}^{m_max} L^(alpha_s+1) e^(-L) dm, analytic: with x = L (dm = -dx/(KMAG x))
    it is (Gamma(alpha_s+1, L(m_max)) - Gamma(alpha_s+1, L(m_min))) / KMAG, an incomplete gamma
    difference evaluated in log space (``_numerics.log_gamma_integral``, any alpha_s); -inf where
    it underflows."""
    return log_gamma_integral(alpha_s + 1.0, -KMAG * (m_max - m_star), KMAG * (m_max - m_min)) - log(KMAG)


cdef inline void _law_init(SourceLaw* law, double m_star, double alpha_s, double m_min, double m_max) noexcept nogil:
    law.m_star = m_star
    law.alpha_s = alpha_s
    law.m_min = m_min
    law.m_max = m_max
    law.log_norm = law_log_norm(m_star, alpha_s, m_min, m_max)


cdef double law_log_pdf(const SourceLaw* law, double m) noexcept nogil:
    """log p(m): normalised law, -inf outside [m_min, m_max] (nan for nan)."""
    if isnan(m):
        return m
    if m < law.m_min or m > law.m_max:
        return -INFINITY
    return _law_lp_unnorm(law.m_star, law.alpha_s, m) - law.log_norm


# --------------------------------------------------------------------------------------------
# per image
# --------------------------------------------------------------------------------------------
cdef inline double mag_shift(double mu) noexcept nogil:
    """2.5 log10|mu|: how much brighter (mag) an image of magnification mu is than its source."""
    return 2.5 * log10(fabs(mu))


cdef inline double _p_det(double c, double ms, double sigma_m) noexcept nogil:
    """The detection probability Phi((c - m_s) / sigma_m) of an image of a source of magnitude
    m_s, with c = m_lim + mag_shift(mu) the faintest source magnitude it reaches m_lim at (the
    one place P_det is written: per image, and inside the K quadrature)."""
    return ndtr((c - ms) / sigma_m)


cdef double selection_prob(double mu, double m_lim, double ms, double sigma_m) noexcept nogil:
    """P_det = Phi((m_lim - m_s + 2.5 log10|mu|) / sigma_m); mu = 0 gives 0 (nan propagates)."""
    if mu == 0.0:             # also when m_lim - m_s overflows to +inf (inf - inf would give nan)
        return 0.0
    return _p_det(m_lim + mag_shift(mu), ms, sigma_m)


cdef double mag_like(double m_obs, double mu, double ms, double sigma_m) noexcept nogil:
    """N(m_obs; m_s - 2.5 log10|mu|, sigma_m); mu = 0 gives 0 (nan propagates)."""
    if mu == 0.0:             # also when m_obs - m_s overflows to +inf
        return 0.0
    cdef double d = (m_obs - ms + mag_shift(mu)) / sigma_m
    return exp(-0.5 * d * d - LOG_SQRT_2PI) / sigma_m


# --------------------------------------------------------------------------------------------
# the integral I(m_bar) over the source magnitude, in log space
# --------------------------------------------------------------------------------------------
cdef inline double _psi0(const PhotTable* T, double mbar, double t) noexcept nogil:
    """log integrand without detection factors: log p(m_bar + s t) + log phi(t)."""
    return _law_lp_unnorm(T.law.m_star, T.law.alpha_s, mbar + T.s * t) - T.law.log_norm \
        - 0.5 * t * t - LOG_SQRT_2PI


cdef inline void _dlogphi(double z, double t, double* g, double* g2) noexcept nogil:
    """Add d/dt and d2/dt2 of log Phi(z - t/sqrt2): -lambda(u)/sqrt2 and lambda'(u)/2 with
    lambda = phi/Phi = sqrt(2/pi)/erfcx(-u/sqrt2), lambda' = -lambda (u + lambda) in (-1, 0)."""
    cdef double u = z - t * INV_SQRT2, lam, lp
    if u > 9.0:                      # lambda < 1e-18
        return
    lam = SQRT_2_OVER_PI / erfcx(-u * INV_SQRT2)
    lp = lam * (u + lam)
    g[0] -= lam * INV_SQRT2
    g2[0] -= 0.5 * (lp if lp < 1.0 else 1.0)


cdef inline void _dpsi(const PhotTable* T, double mbar, double t, double zA, double zB, int act,
                       double* g, double* g2) noexcept nogil:
    """First and second derivative of psi at t (g2 <= -1)."""
    cdef double s = T.s, L
    L = exp(-KMAG * (mbar + s * t - T.law.m_star))
    g[0] = s * KMAG * (L - T.law.alpha_s - 1.0) - t
    g2[0] = -s * s * KMAG * KMAG * L - 1.0
    if act & 1:
        _dlogphi(zA, t, g, g2)
    if act & 2:
        _dlogphi(zB, t, g, g2)


cdef inline double _term(const PhotTable* T, double mbar, double t, double zA, double zB, int act,
                         bint linear, double b0, double pa0, double pb0) noexcept nogil:
    """exp(psi(t) - psi(t*)) given the centre values b0 = psi0(t*) and, for the active images,
    pa0/pb0 = Phi (linear) or log Phi (log space) at t*."""
    cdef double e = _psi0(T, mbar, t) - b0, r = 1.0
    if linear:
        if act & 1:
            r *= ndtr(zA - t * INV_SQRT2) / pa0
        if act & 2:
            r *= ndtr(zB - t * INV_SQRT2) / pb0
        return exp(e) * r
    if act & 1:
        e += log_ndtr(zA - t * INV_SQRT2) - pa0
    if act & 2:
        e += log_ndtr(zB - t * INV_SQRT2) - pb0
    return exp(e)


cdef double _log_integral(const PhotTable* T, double mbar, double zA, double zB, int act) noexcept nogil:
    """log int_a^b exp(psi(t)) dt, a = (m_min - m_bar)/s, b = (m_max - m_bar)/s, with
    psi = log p(m_bar + s t) + log phi(t) + [log Phi(z_A - t/sqrt2) if act & 1]
    + [log Phi(z_B - t/sqrt2) if act & 2] (see the module docstring)."""
    cdef double s = T.s
    cdef double a = (T.law.m_min - mbar) / s, b = (T.law.m_max - mbar) / s
    cdef double lo = -INFINITY, hi = INFINITY, t, tn, g = 0.0, g2 = -1.0, gg, U, se, tot, c, hw, wl, wh
    cdef double b0, pa0 = 1.0, pb0 = 1.0, p0, umin
    cdef bint linear = True
    cdef int it, k, j
    if a > FAR or b < -FAR or not (b >= a):
        # the support lies > FAR (1e8) standard deviations away: log I < -5e15, F = 0 exactly in
        # double precision (computing it would lose all digits of t and end in nan)
        return -INFINITY
    # maximum of psi on [a, b]: safeguarded Newton (psi' decreasing, psi'' <= -1)
    t = 0.0
    if t < a:
        t = a
    if t > b:
        t = b
    for it in range(MAXIT):
        _dpsi(T, mbar, t, zA, zB, act, &g, &g2)
        if g > 0.0:
            lo = t
        else:
            hi = t
        tn = t - g / g2
        if tn > b:
            tn = b
        if tn < a:
            tn = a
        if tn == t:                      # maximum on an edge
            break
        if not (tn > lo and tn < hi):    # left the bracket: bisect (both ends known here)
            tn = 0.5 * (lo + hi)
        if fabs(tn - t) < MODE_TOL:
            break
        t = tn
    # centre values; detection factors in linear space unless they may underflow on the window
    b0 = _psi0(T, mbar, t)
    p0 = b0
    if act:
        umin = (zA if zA < zB else zB) - (t + WIN) * INV_SQRT2
        linear = umin > -30.0
        if act & 1:
            pa0 = ndtr(zA - t * INV_SQRT2) if linear else log_ndtr(zA - t * INV_SQRT2)
            p0 += log(pa0) if linear else pa0
        if act & 2:
            pb0 = ndtr(zB - t * INV_SQRT2) if linear else log_ndtr(zB - t * INV_SQRT2)
            p0 += log(pb0) if linear else pb0
    if t - a >= WIN and b - t >= WIN:
        # interior: Gauss-Hermite centred on t with the local curvature
        se = SQRT2 / sqrt(-g2)
        tot = 0.0
        for k in range(NGH):
            tot += GHW[k] * _term(T, mbar, t + se * GHX[k], zA, zB, act, linear, b0, pa0, pb0)
        return p0 + log(se * tot)
    # near an edge: Gauss-Legendre on the window psi >= psi(t) - TAIL
    gg = 0.0
    if (t <= a and g < 0.0) or (t >= b and g > 0.0):
        gg = fabs(g)
    U = sqrt(gg * gg + 2.0 * TAIL) - gg
    wl = t - U
    if wl < a:
        wl = a
    wh = t + U
    if wh > b:
        wh = b
    hw = 0.5 * (wh - wl) / NPANW
    tot = 0.0
    for j in range(NPANW):
        c = wl + (2 * j + 1) * hw
        for k in range(NGLW):
            tot += GLWW[k] * _term(T, mbar, c + hw * GLWX[k], zA, zB, act, linear, b0, pa0, pb0)
    return p0 + log(tot * hw)


# --------------------------------------------------------------------------------------------
# F_phot
# --------------------------------------------------------------------------------------------
cdef double phot_log_ptilde(const PhotTable* T, double mbar) noexcept nogil:
    """log p~(m_bar), p~ = p(m_s) convolved with N(0, sigma_m/sqrt2): table (cubic Lagrange)
    inside its range, exact quadrature outside."""
    cdef double x = (mbar - T.m0) * T.inv_h
    cdef double w[4]
    cdef Py_ssize_t i
    cdef const double* y
    if not (x >= 0.0 and x <= <double> (T.n - 1)) or T.logpt == NULL:
        return _log_integral(T, mbar, 0.0, 0.0, 0)
    i = lagrange4(x, T.n, w)
    y = T.logpt + i - 1
    return w[0] * y[0] + w[1] * y[1] + w[2] * y[2] + w[3] * y[3]


cdef inline double _log_fphot_impl(const PhotTable* T, double mA, double mB, double muA, double muB,
                                   bint use_table) noexcept nogil:
    cdef double aA, aB, yA, yB, d, mbar, base, zA, zB, lbar, tb, thi, bb
    cdef int act
    if not (isfinite(mA) and isfinite(mB) and isfinite(muA) and isfinite(muB)) or muA == 0.0 or muB == 0.0:
        return -INFINITY
    aA = mag_shift(muA)
    aB = mag_shift(muB)
    yA = mA + aA
    yB = mB + aB
    d = yA - yB
    mbar = 0.5 * (yA + yB)
    base = T.log_norm_delta - d * d * T.inv_4sig2
    if T.detection == DET_INDEPENDENT:
        zA = (T.m_lim + aA - mbar) / T.sigma_m
        zB = (T.m_lim + aB - mbar) / T.sigma_m
        if zA < -FAR or zB < -FAR:
            # an image > 1e8 sigma_m fainter than the limit: log P_det < -5e15 (the mode search of
            # the quadrature would overflow to nan)
            return -INFINITY
        # Phi_A = Phi_B = 1 (to 1e-17) over the whole window of the observed-model integrand?
        # Its maximum is at t* <= max(a, 0, s k (L(max(m_bar, m_min)) - alpha - 1)), window t* + 10.
        lbar = exp(-KMAG * ((mbar if mbar > T.law.m_min else T.law.m_min) - T.law.m_star))
        tb = T.s * KMAG * (lbar - T.law.alpha_s - 1.0)
        bb = (T.law.m_min - mbar) / T.s
        if tb < bb:
            tb = bb
        if tb < 0.0:
            tb = 0.0
        thi = tb + WIN
        bb = (T.law.m_max - mbar) / T.s
        if thi > bb:
            thi = bb
        act = 0
        if not use_table or zA - thi * INV_SQRT2 < Z_SAFE:
            act |= 1
        if not use_table or zB - thi * INV_SQRT2 < Z_SAFE:
            act |= 2
        if act:
            return base + _log_integral(T, mbar, zA, zB, act)
    if not use_table:
        return base + _log_integral(T, mbar, 0.0, 0.0, 0)
    return base + phot_log_ptilde(T, mbar)


cdef double log_fphot(const PhotTable* T, double mA, double mB, double muA, double muB) noexcept nogil:
    """log F_phot for the detection model of T; -inf for non-finite input or mu == 0."""
    return _log_fphot_impl(T, mA, mB, muA, muB, True)


cdef double fphot(const PhotTable* T, double mA, double mB, double muA, double muB) noexcept nogil:
    """F_phot for the detection model of T; 0 for non-finite input or mu == 0."""
    return exp(_log_fphot_impl(T, mA, mB, muA, muB, True))


cdef void fphot_batch(const PhotTable* T, double mA, double mB, const double* muA,
                      const double* muB, Py_ssize_t n, double* out, bint take_log) noexcept nogil:
    """F_phot (or log F_phot) of one lens (observed magnitudes mA, mB) at n magnification pairs."""
    cdef Py_ssize_t k
    if take_log:
        for k in range(n):
            out[k] = _log_fphot_impl(T, mA, mB, muA[k], muB[k], True)
    else:
        for k in range(n):
            out[k] = exp(_log_fphot_impl(T, mA, mB, muA[k], muB[k], True))


# --------------------------------------------------------------------------------------------
# K(mu1, mu2)
# --------------------------------------------------------------------------------------------
cdef inline int _k_panels(const SourceLaw* law, double sigma_m, double* hw) noexcept nogil:
    cdef double width = LAW_PANEL if LAW_PANEL < 0.5 * sigma_m else 0.5 * sigma_m
    cdef int npan = _n_panels(law.m_max - law.m_min, width)
    hw[0] = 0.5 * (law.m_max - law.m_min) / npan
    return npan


cdef double k_direct(const SourceLaw* law, double m_lim, double sigma_m, double mu1, double mu2) noexcept nogil:
    """K(mu1, mu2) by composite 8-point Gauss-Legendre over [m_min, m_max] (panels <= 0.05 mag
    and <= sigma_m/2); 0 for nan input or mu == 0, 1 - (tail) for |mu| = inf."""
    cdef double hw, c, m, tot = 0.0, c1, c2
    cdef int npan, i, k
    if isnan(mu1) or isnan(mu2):
        return 0.0
    c1 = m_lim + mag_shift(mu1)
    c2 = m_lim + mag_shift(mu2)
    npan = _k_panels(law, sigma_m, &hw)
    for i in range(npan):
        c = law.m_min + (2 * i + 1) * hw
        for k in range(NGLK):
            m = c + hw * GLKX[k]
            tot += GLKW[k] * exp(_law_lp_unnorm(law.m_star, law.alpha_s, m) - law.log_norm) \
                * _p_det(c1, m, sigma_m) * _p_det(c2, m, sigma_m)
    return tot * hw


cdef double ktable_log_eval(const KTable* T, double mu1, double mu2) noexcept nogil:
    """log K from the table: bicubic (4 x 4 Lagrange) in log K over u = log10|mu|, u clamped to the
    grid (K saturates at large |mu|; below the grid the edge value, already negligible, is
    returned); exactly symmetric; -inf for nan input."""
    cdef double u1, u2, acc, row
    cdef double wa[4]
    cdef double wb[4]
    cdef Py_ssize_t i, j, p, q, n = T.n
    cdef const double* r
    if isnan(mu1) or isnan(mu2):
        return -INFINITY
    u1 = log10(fabs(mu1))
    u2 = log10(fabs(mu2))
    if u1 > u2:
        u1, u2 = u2, u1
    i = lagrange4((u1 - T.u0) * T.inv_h, n, wa)
    j = lagrange4((u2 - T.u0) * T.inv_h, n, wb)
    acc = 0.0
    for p in range(4):
        r = T.logk + (i - 1 + p) * n + (j - 1)
        row = wb[0] * r[0] + wb[1] * r[1] + wb[2] * r[2] + wb[3] * r[3]
        acc += wa[p] * row
    # K <= 1: the cubic overshoots where K saturates on a coarse grid (K = 1.00026 at 0.1 dex)
    return acc if acc < 0.0 else 0.0


# --------------------------------------------------------------------------------------------
# kernel objects (own the tables; the structs are what C code uses)
# --------------------------------------------------------------------------------------------
cdef class PhotometryKernel:
    """Compiled photometric model: source law, survey constants, detection model and the log p~
    table. Built once (~5 ms for the defaults); read-only afterwards and safe to share between threads.

    Use :class:`sl_cy.photometry.PhotometryModel` from Python; Cython code passes ``&kernel.c``
    to ``fphot``/``fphot_batch``/``log_fphot``.
    """

    def __init__(self, int detection, double m_lim, double sigma_m, double m_star, double alpha_s,
                 double m_min, double m_max, int nodes_per_s=TABLE_NODES_PER_S,
                 double pad=TABLE_PAD_MAG):
        if detection != DET_OBSERVED and detection != DET_INDEPENDENT:
            raise ValueError(f"detection must be {DET_OBSERVED} or {DET_INDEPENDENT}, got {detection}")
        if not (sigma_m > 0.0 and isfinite(sigma_m)):
            raise ValueError(f"sigma_m must be finite and > 0, got {sigma_m!r}")
        if not (isfinite(m_min) and isfinite(m_max) and m_max > m_min):
            raise ValueError(f"need finite m_min < m_max, got {m_min!r}, {m_max!r}")
        if not (isfinite(m_lim) and isfinite(m_star) and isfinite(alpha_s)):
            raise ValueError("m_lim, m_star and alpha_s must be finite")
        if nodes_per_s < 4 or not (pad >= 0.0):
            raise ValueError("nodes_per_s must be >= 4 and pad >= 0")
        _law_init(&self.c.law, m_star, alpha_s, m_min, m_max)
        if not isfinite(self.c.law.log_norm):
            raise ValueError("the source magnitude law cannot be normalised on [m_min, m_max] "
                             f"(log norm = {self.c.law.log_norm})")
        self.c.detection = detection
        self.c.m_lim = m_lim
        self.c.sigma_m = sigma_m
        self.c.s = sigma_m * INV_SQRT2
        self.c.log_norm_delta = -LOG_2_SQRT_PI - log(sigma_m)
        self.c.inv_4sig2 = 0.25 / (sigma_m * sigma_m)
        cdef double h = self.c.s / nodes_per_s
        cdef double lo = m_min - pad, hi = m_max + pad
        cdef double nd = ceil((hi - lo) / h) + 1.0      # clamped before the cast (huge/inf ranges)
        if not (nd <= TABLE_MAX_NODES):
            nd = TABLE_MAX_NODES
        if nd < 4.0:                                   # the cubic stencil needs 4 nodes
            nd = 4.0
        cdef Py_ssize_t n = <Py_ssize_t> nd, i
        h = (hi - lo) / (n - 1)
        self.c.m0 = lo
        self.c.h = h
        self.c.inv_h = 1.0 / h
        self.c.n = n
        self.c.logpt = NULL
        arr = np.empty(n)
        cdef double[::1] v = arr
        with nogil:
            for i in range(n):
                v[i] = _log_integral(&self.c, lo + i * h, 0.0, 0.0, 0)
        self._logpt = arr
        self.c.logpt = &v[0]
        self._args = (detection, m_lim, sigma_m, m_star, alpha_s, m_min, m_max, nodes_per_s, pad)

    def __reduce__(self):
        # rebuilt (about a millisecond) when sent to another process; never persisted
        return (PhotometryKernel, self._args)

    @property
    def detection(self):
        return self.c.detection

    @property
    def params(self):
        """dict of the constants the kernel was built with (m_lim, sigma_m, law parameters)."""
        return dict(m_lim=self.c.m_lim, sigma_m=self.c.sigma_m, m_star=self.c.law.m_star,
                    alpha_s=self.c.law.alpha_s, m_min=self.c.law.m_min, m_max=self.c.law.m_max)

    @property
    def log_norm(self):
        """log of the normalisation integral of L^(alpha_s+1) e^(-L) over [m_min, m_max]."""
        return self.c.law.log_norm

    @property
    def table(self):
        """(m_bar grid, log p~ values) of the observed-detection table (copies)."""
        return self.c.m0 + self.c.h * np.arange(self.c.n), np.array(self._logpt, copy=True)

    def log_ptilde(self, mbar, bint direct=False):
        """log p~(m_bar) for a 1-D float64 array (table, or exact quadrature with ``direct``)."""
        cdef const double[::1] mv = np.ascontiguousarray(mbar, dtype=float)
        out = np.empty(mv.shape[0])
        cdef double[::1] o = out
        cdef Py_ssize_t k
        with nogil:
            for k in range(mv.shape[0]):
                if direct:
                    o[k] = _log_integral(&self.c, mv[k], 0.0, 0.0, 0)
                else:
                    o[k] = phot_log_ptilde(&self.c, mv[k])
        return out

    def log_fphot(self, mA, mB, muA, muB, bint direct=False):
        """log F_phot for 1-D float64 arrays of equal length. ``direct`` bypasses the p~ table
        (exact quadrature for every point; for verification)."""
        cdef const double[::1] a = np.ascontiguousarray(mA, dtype=float)
        cdef const double[::1] b = np.ascontiguousarray(mB, dtype=float)
        cdef const double[::1] ua = np.ascontiguousarray(muA, dtype=float)
        cdef const double[::1] ub = np.ascontiguousarray(muB, dtype=float)
        cdef Py_ssize_t n = a.shape[0], k
        if b.shape[0] != n or ua.shape[0] != n or ub.shape[0] != n:
            raise ValueError("log_fphot: arrays must have equal length")
        out = np.empty(n)
        cdef double[::1] o = out
        cdef bint tab = not direct
        with nogil:
            for k in range(n):
                o[k] = _log_fphot_impl(&self.c, a[k], b[k], ua[k], ub[k], tab)
        return out

    def fphot_lens(self, double mA, double mB, muA, muB, bint take_log=False):
        """F_phot (or log) of one lens at arrays of magnifications, through ``fphot_batch``."""
        cdef const double[::1] ua = np.ascontiguousarray(muA, dtype=float)
        cdef const double[::1] ub = np.ascontiguousarray(muB, dtype=float)
        if ua.shape[0] != ub.shape[0]:
            raise ValueError("fphot_lens: muA and muB must have equal length")
        out = np.empty(ua.shape[0])
        cdef double[::1] o = out
        if ua.shape[0]:
            with nogil:
                fphot_batch(&self.c, mA, mB, &ua[0], &ub[0], ua.shape[0], &o[0], take_log)
        return out


cdef class KTableKernel:
    """Compiled K(mu1, mu2) interpolator over a uniform log10|mu| grid (log K, bicubic).

    Use :class:`sl_cy.ktable.KTable` from Python; Cython code passes ``&kernel.c`` to
    ``ktable_log_eval`` (log K).
    """

    def __init__(self, double u0, double h, logk):
        arr = np.ascontiguousarray(logk, dtype=float)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 4:
            raise ValueError(f"log K table must be square with n >= 4, got shape {arr.shape}")
        if not (h > 0.0 and isfinite(h) and isfinite(u0)):
            raise ValueError(f"bad grid u0={u0!r}, h={h!r}")
        if np.isnan(arr).any():
            raise ValueError("log K table contains NaN")
        cdef double[:, ::1] v = arr
        self._logk = arr
        self.c.u0 = u0
        self.c.h = h
        self.c.inv_h = 1.0 / h
        self.c.n = arr.shape[0]
        self.c.logk = &v[0, 0]
        self._args = (u0, h, arr)

    def __reduce__(self):
        return (KTableKernel, self._args)

    def log_eval(self, mu1, mu2):
        """log K for 1-D float64 arrays of equal length."""
        cdef const double[::1] a = np.ascontiguousarray(mu1, dtype=float)
        cdef const double[::1] b = np.ascontiguousarray(mu2, dtype=float)
        cdef Py_ssize_t n = a.shape[0], k
        if b.shape[0] != n:
            raise ValueError("log_eval: arrays must have equal length")
        out = np.empty(n)
        cdef double[::1] o = out
        with nogil:
            for k in range(n):
                o[k] = ktable_log_eval(&self.c, a[k], b[k])
        return out

    def eval(self, mu1, mu2):
        """K for 1-D float64 arrays of equal length."""
        return np.exp(self.log_eval(mu1, mu2))


# --------------------------------------------------------------------------------------------
# array entry points (inputs already validated/broadcast by the Python layer: 1-D float64; the
# scalar constants are checked again here, cheaply, so that no call can loop without bound)
# --------------------------------------------------------------------------------------------
def _check_constants(double sigma_m=1.0, double m_star=0.0, double alpha_s=0.0, double m_min=0.0,
                     double m_max=1.0):
    if not (sigma_m > 0.0 and isfinite(sigma_m)):
        raise ValueError(f"sigma_m must be finite and > 0, got {sigma_m!r}")
    if not (isfinite(m_star) and isfinite(alpha_s) and isfinite(m_min) and isfinite(m_max) and m_max > m_min):
        raise ValueError(f"the source law needs finite m_star, alpha_s and m_min < m_max, got m_star={m_star!r}, "
                         f"alpha_s={alpha_s!r}, m_min={m_min!r}, m_max={m_max!r}")


def source_law_log_norm(double m_star, double alpha_s, double m_min, double m_max):
    """log int_{m_min}^{m_max} L^(alpha_s+1) e^(-L) dm (analytic: incomplete gamma functions in
    log space; -inf where it underflows)."""
    return law_log_norm(m_star, alpha_s, m_min, m_max)


def source_law_log_partial(m, double m_star, double alpha_s, double m_min):
    """log int_{m_min}^{m} L^(alpha_s+1) e^(-L) dm' for a 1-D array m (-inf for m <= m_min): the
    unnormalised cumulative distribution of the law, by the analytic normalisation."""
    cdef const double[::1] mv = np.ascontiguousarray(m, dtype=float)
    out = np.empty(mv.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        for k in range(mv.shape[0]):
            o[k] = law_log_norm(m_star, alpha_s, m_min, mv[k])
    return out


def source_law_log_pdf(m, double m_star, double alpha_s, double m_min, double m_max):
    """log p(m) of the normalised law (-inf outside [m_min, m_max]) for a 1-D array."""
    _check_constants(1.0, m_star, alpha_s, m_min, m_max)
    cdef const double[::1] mv = np.ascontiguousarray(m, dtype=float)
    cdef SourceLaw law
    _law_init(&law, m_star, alpha_s, m_min, m_max)
    out = np.empty(mv.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        for k in range(mv.shape[0]):
            o[k] = law_log_pdf(&law, mv[k])
    return out


def selection_array(mu, double m_lim, ms, double sigma_m):
    """selection_prob over equal-length 1-D arrays mu, ms."""
    _check_constants(sigma_m)
    cdef const double[::1] a = np.ascontiguousarray(mu, dtype=float)
    cdef const double[::1] b = np.ascontiguousarray(ms, dtype=float)
    out = np.empty(a.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        for k in range(a.shape[0]):
            o[k] = selection_prob(a[k], m_lim, b[k], sigma_m)
    return out


def mag_like_array(m_obs, mu, ms, double sigma_m):
    """mag_like over equal-length 1-D arrays."""
    _check_constants(sigma_m)
    cdef const double[::1] a = np.ascontiguousarray(m_obs, dtype=float)
    cdef const double[::1] b = np.ascontiguousarray(mu, dtype=float)
    cdef const double[::1] c = np.ascontiguousarray(ms, dtype=float)
    out = np.empty(a.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        for k in range(a.shape[0]):
            o[k] = mag_like(a[k], b[k], c[k], sigma_m)
    return out


def k_direct_array(mu1, mu2, double m_lim, double sigma_m, double m_star, double alpha_s,
                   double m_min, double m_max):
    """K(mu1, mu2) by direct quadrature over equal-length 1-D arrays (~50 us per point)."""
    _check_constants(sigma_m, m_star, alpha_s, m_min, m_max)
    cdef const double[::1] a = np.ascontiguousarray(mu1, dtype=float)
    cdef const double[::1] b = np.ascontiguousarray(mu2, dtype=float)
    cdef SourceLaw law
    _law_init(&law, m_star, alpha_s, m_min, m_max)
    out = np.empty(a.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        for k in range(a.shape[0]):
            o[k] = k_direct(&law, m_lim, sigma_m, a[k], b[k])
    return out


def k_grid(u, double m_lim, double sigma_m, double m_star, double alpha_s, double m_min,
           double m_max, n_threads=None):
    """K on the tensor grid u x u (u = log10|mu|, 1-D), symmetric n x n array.

    Same quadrature as ``k_direct`` (identical nodes), organised as
    K_ij = sum_k w_k p(m_k) Phi_ik Phi_jk with Phi_ik = Phi((m_lim + 2.5 u_i - m_k)/sigma_m),
    rows computed in parallel (OpenMP; ``n_threads`` None or -1: all cores,
    ``sl_cy.parallel.resolve_n_threads``).
    """
    _check_constants(sigma_m, m_star, alpha_s, m_min, m_max)
    cdef const double[::1] uv = np.ascontiguousarray(u, dtype=float)
    cdef Py_ssize_t n = uv.shape[0], i, j, k
    cdef SourceLaw law
    cdef double hw, c, acc
    cdef int npan, ip, q, nt
    _law_init(&law, m_star, alpha_s, m_min, m_max)
    npan = _k_panels(&law, sigma_m, &hw)
    cdef Py_ssize_t nk = npan * NGLK
    nodes = np.empty(nk)
    wp = np.empty(nk)
    cdef double[::1] mk = nodes, wk = wp
    for ip in range(npan):
        c = law.m_min + (2 * ip + 1) * hw
        for q in range(NGLK):
            mk[ip * NGLK + q] = c + hw * GLKX[q]
            wk[ip * NGLK + q] = hw * GLKW[q] * exp(_law_lp_unnorm(law.m_star, law.alpha_s, c + hw * GLKX[q])
                                                   - law.log_norm)
    P = np.empty((n, nk))
    R = np.empty((n, nk))
    K = np.empty((n, n))
    cdef double[:, ::1] Pv = P, Rv = R, Kv = K
    nt = resolve_threads(n_threads)
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            for k in range(nk):
                Pv[i, k] = _p_det(m_lim + 2.5 * uv[i], mk[k], sigma_m)     # uv = log10|mu|
                Rv[i, k] = wk[k] * Pv[i, k]
        for i in prange(n, schedule="dynamic", num_threads=nt):
            for j in range(i, n):
                acc = 0.0
                for k in range(nk):
                    acc = acc + Rv[i, k] * Pv[j, k]
                Kv[i, j] = acc
                Kv[j, i] = acc
    return K
