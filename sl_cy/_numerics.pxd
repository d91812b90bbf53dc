# Shared numerical utilities of the compiled core (one concern: numerics, no physics).
#
# cimported by csrc/likelihood.pyx, selection.pyx, photometry.pyx and profiles.pyx; every
# constant and helper below is written only here (the scikit-learn layout: small .pxd headers of
# ``cdef inline`` functions beside the compiled modules).

from libc.math cimport exp, expm1, log, log1p, fabs, erfc, INFINITY
from scipy.special.cython_special cimport log_ndtr

# compile-time constants (C macros: a ``cdef double`` in a .pxd would be a module global of a
# module that does not exist; these are literals in every module that cimports them)
cdef extern from *:
    """
    #define SL_CY_LOG_SQRT_2PI 0.9189385332046728      /* log sqrt(2 pi), correctly rounded */
    #define SL_CY_INV_SQRT2 0.7071067811865476         /* 1 / sqrt 2 */
    #define SL_CY_SQRT2 1.4142135623730951
    #define SL_CY_SQRT_2_OVER_PI 0.7978845608028654    /* sqrt(2 / pi) */
    /* 8-point Gauss-Legendre rule on [-1, 1] (numpy.polynomial.legendre.leggauss(8)) */
    static const double SL_CY_GL8_X[8] = {-0.9602898564975362, -0.7966664774136267, -0.525532409916329,
        -0.18343464249564978, 0.18343464249564978, 0.525532409916329, 0.7966664774136267, 0.9602898564975362};
    static const double SL_CY_GL8_W[8] = {0.10122853629037706, 0.22238103445337443, 0.3137066458778869,
        0.36268378337836166, 0.36268378337836166, 0.3137066458778869, 0.22238103445337443, 0.10122853629037706};
    """
    const double LOG_SQRT_2PI "SL_CY_LOG_SQRT_2PI"
    const double INV_SQRT2 "SL_CY_INV_SQRT2"
    const double SQRT2 "SL_CY_SQRT2"
    const double SQRT_2_OVER_PI "SL_CY_SQRT_2_OVER_PI"
    const double* GL8_X "SL_CY_GL8_X"
    const double* GL8_W "SL_CY_GL8_W"


cdef inline double log_gauss_norm(double sigma) noexcept nogil:
    """log of the normalisation 1/(sigma sqrt(2 pi)) of a Gaussian of scatter sigma."""
    return -log(sigma) - LOG_SQRT_2PI


cdef inline double ndtr_erfc(double x) noexcept nogil:
    """Phi(x) = erfc(-x / sqrt 2) / 2 (libc erfc, ~1 ulp relative; underflows below x ~ -37)."""
    return 0.5 * erfc(-x * INV_SQRT2)


cdef inline double fast_log_ndtr(double x) noexcept nogil:
    """log Phi(x): libc erfc (correctly rounded to ~1 ulp) for x >= -20, scipy's asymptotic
    ``log_ndtr`` below; agrees with scipy.special.log_ndtr to ~1e-15 relative, 3x faster."""
    if x > 0.0:
        return log1p(-0.5 * erfc(x * INV_SQRT2))
    if x > -20.0:
        return log(0.5 * erfc(-x * INV_SQRT2))
    return log_ndtr(x)


cdef inline double log_ndtr_diff_h(double a, double b, double h) noexcept nogil:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails and for narrow intervals, with the
    half-width h = (b - a)/2 passed exactly (b - a may have rounded to 0). As
    sl_cy.population._log_ndtr_diff: for h < 1e-5, with m = |a + b|/2,
    Phi(b) - Phi(a) = phi(m) 2 sinh(m h)/m (1 + O(h^2)), where the two log Phi would cancel."""
    cdef double lo, hi, lhi, m, x
    if h < 1e-5:
        m = fabs(0.5 * (a + b))
        x = m * h
        if x > 1e-8:
            return -0.5 * m * m - LOG_SQRT_2PI + x + log(-expm1(-2.0 * x)) - log(m)
        return -0.5 * m * m - LOG_SQRT_2PI + log(2.0 * h)
    if a > 0:
        lo = -b
        hi = -a
    else:
        lo = a
        hi = b
    lhi = log_ndtr(hi)
    return lhi + log1p(-exp(log_ndtr(lo) - lhi))


cdef inline double log_ndtr_diff(double a, double b) noexcept nogil:
    """log(Phi(b) - Phi(a)) for a < b (see log_ndtr_diff_h)."""
    return log_ndtr_diff_h(a, b, 0.5 * (b - a))


cdef inline void lagrange4_weights(double f, double* w) noexcept nogil:
    """Cubic (4-point) Lagrange weights on the nodes -1, 0, 1, 2 at the offset f from node 0."""
    w[0] = -f * (f - 1.0) * (f - 2.0) / 6.0
    w[1] = (f + 1.0) * (f - 1.0) * (f - 2.0) * 0.5
    w[2] = -(f + 1.0) * f * (f - 2.0) * 0.5
    w[3] = (f + 1.0) * f * (f - 1.0) / 6.0


cdef inline void lagrange4_dweights(double f, double* dw) noexcept nogil:
    """d/df of :func:`lagrange4_weights` (the same nodes -1, 0, 1, 2)."""
    dw[0] = -(3.0 * f * f - 6.0 * f + 2.0) / 6.0
    dw[1] = (3.0 * f * f - 4.0 * f - 1.0) * 0.5
    dw[2] = -(3.0 * f * f - 2.0 * f - 2.0) * 0.5
    dw[3] = (3.0 * f * f - 1.0) / 6.0


cdef inline Py_ssize_t lagrange4(double x, Py_ssize_t n, double* w) noexcept nogil:
    """4-point Lagrange weights at grid coordinate x (clamped to [0, n-1]) of a regular axis of
    n >= 4 nodes, on nodes i-1 .. i+2; returns i."""
    cdef Py_ssize_t i
    if not x > 0.0:
        x = 0.0
    if not x < n - 1:
        x = n - 1
    i = <Py_ssize_t> x
    if i < 1:
        i = 1
    if i > n - 3:
        i = n - 3
    lagrange4_weights(x - i, w)
    return i


cdef inline int resolve_threads(object n_threads) except -1:
    """OpenMP thread count of every compiled entry point: ``sl_cy.parallel.resolve_n_threads``
    (None or -1: all cores this process may use; a positive integer: that many; anything else
    raises ValueError). Called with the GIL, before the parallel region."""
    from sl_cy.parallel import resolve_n_threads
    return resolve_n_threads(n_threads)


# --- the integral of x^(s-1) e^(-x) between two points: a difference of incomplete gammas ---------
# Used for the normalisation of the source magnitude law (csrc/photometry.pyx). Everything is in
# log space (x = e^u), for any real shape s (also s <= 0, where Gamma(s) and gamma(s, x) diverge but
# the integral over [a, b], 0 < a < b, does not). The interval is cut at x = 1 and, for s > 1, at
# x = s; each piece is analytic:
#   x <= 1      : the integrated Taylor series of e^(-x), sum_n (-1)^n/n! int x^(s+n-1) dx (each term
#                 in closed form with expm1, exact also for s + n -> 0; alternating, but the terms
#                 decrease and the sum is >= e^-1 times the first one: at most ~1 digit lost);
#   1 < x < s   : gamma(s, b) - gamma(s, a) by the lower series x^s e^-x sum_n x^n / (s)_(n+1);
#   x >= max(1,s): Gamma(s, a) - Gamma(s, b) by the Legendre continued fraction (modified Lentz).
# A difference is formed as log G_hi + log1p(-exp(log G_lo - log G_hi)); when the two are within
# a factor e^0.1 (a piece narrow against the scale of the integrand) that would cancel, and the
# piece is integrated by 8-point Gauss-Legendre in u instead, exact to rounding for such a piece
# (its log-integrand varies by less than ~0.1 across it).

cdef extern from *:
    """
    #define SL_CY_LIG_EPS 1e-17          /* relative truncation of the series / fraction */
    #define SL_CY_LIG_MAXIT 2000         /* bound on their terms (typically < 60) */
    #define SL_CY_LIG_NARROW 0.1         /* log G_hi - log G_lo below this: Gauss-Legendre */
    #define SL_CY_LOG_DBL_MAX 709.782712893384
    """
    const double LIG_EPS "SL_CY_LIG_EPS"
    const int LIG_MAXIT "SL_CY_LIG_MAXIT"
    const double LIG_NARROW "SL_CY_LIG_NARROW"
    const double LOG_DBL_MAX "SL_CY_LOG_DBL_MAX"


cdef inline double log_add_exp(double a, double b) noexcept nogil:
    """log(e^a + e^b), exact in the tails (-inf allowed)."""
    if a < b:
        a, b = b, a
    if b == -INFINITY:
        return a
    return a + log1p(exp(b - a))


cdef inline double _lig_small(double s, double ua, double L) noexcept nogil:
    """log int_{e^ua}^{e^(ua + L)} x^(s-1) e^-x dx for ua + L <= 0 (integrated series of e^-x); the
    width L is passed exactly."""
    cdef double uc = ua + L, p, lt, lt0 = 0.0, lfact = 0.0, tot = 0.0, r
    cdef int n
    for n in range(LIG_MAXIT):
        p = s + n
        # log int_a^c x^(p-1) dx = max(p ua, p uc) + log((1 - e^(-|p| L)) / |p|)
        if p == 0.0:
            lt = log(L)
        else:
            lt = (p * ua if p < 0.0 else p * uc) + log(-expm1(-fabs(p) * L) / fabs(p))
        if n == 0:
            lt0 = lt
        else:
            lfact += log(<double> n)
        r = exp(lt - lt0 - lfact)
        tot += -r if n & 1 else r
        if n > 0 and r < LIG_EPS * tot:
            break
    return lt0 + log(tot)


cdef inline double _log_lower_series(double s, double u) noexcept nogil:
    """log gamma(s, x), x = e^u, s > 0 (series; for x < s)."""
    cdef double x = exp(u), ap = s, term = 1.0 / s, tot = 1.0 / s
    cdef int n
    for n in range(LIG_MAXIT):
        ap += 1.0
        term *= x / ap
        tot += term
        if term < tot * LIG_EPS:
            break
    return s * u - x + log(tot)


cdef inline double _log_upper_cf(double s, double u) noexcept nogil:
    """log Gamma(s, x), x = e^u, any real s (continued fraction; for x >= max(1, s)).
    -inf where Gamma(s, x) underflows below e^-DBL_MAX."""
    cdef double x, b, c, d, h, an, delta
    cdef int i
    if u > LOG_DBL_MAX:
        return -INFINITY
    x = exp(u)
    b = x + 1.0 - s
    c = 1e300
    d = 1.0 / b
    h = d
    for i in range(1, LIG_MAXIT):
        an = -i * (i - s)
        b += 2.0
        d = an * d + b
        if fabs(d) < 1e-300:
            d = 1e-300
        c = b + an / c
        if fabs(c) < 1e-300:
            c = 1e-300
        d = 1.0 / d
        delta = d * c
        h *= delta
        if fabs(delta - 1.0) < LIG_EPS:
            break
    return s * u - x + log(h)


cdef inline double _lig_gl8(double s, double lo, double w) noexcept nogil:
    """log int_{e^lo}^{e^(lo + w)} x^(s-1) e^-x dx = log int e^(s u - e^u) du by one 8-point
    Gauss-Legendre panel (for a piece across which the log-integrand varies little)."""
    cdef double hw = 0.5 * w, c = lo + 0.5 * w, u, f0, tot = 0.0
    cdef int k
    f0 = s * c - exp(c)
    for k in range(8):
        u = c + hw * GL8_X[k]
        tot += GL8_W[k] * exp(s * u - exp(u) - f0)
    return f0 + log(hw * tot)


cdef inline double _lig_diff(double lhi, double llo, double s, double lo, double w) noexcept nogil:
    """log(e^lhi - e^llo) of a piece [lo, lo + w], or its Gauss-Legendre integral if that cancels."""
    if lhi - llo < LIG_NARROW:
        return _lig_gl8(s, lo, w)
    return lhi + log1p(-exp(llo - lhi))


cdef inline double log_gamma_integral(double s, double ua, double d) noexcept nogil:
    """log int_a^b x^(s-1) e^(-x) dx with a = e^ua, b = e^(ua + d), d > 0: the difference of the
    upper (or lower) incomplete gamma functions Gamma(s, a) - Gamma(s, b), for any real s (see the
    comment above). The width d is passed apart from ua so that a narrow interval keeps its digits.
    -inf where the integral underflows (a > ~1e308); nan for nan input.

    Precision: ~1e-14 relative (for |s| <= 11; tests/test_photometry.py, against mpmath and
    quadrature)."""
    cdef double ub = ua + d, tot = -INFINITY, lo, hi, w, us = 0.0
    if not (d > 0.0):
        return ua + d if (ua != ua or d != d) else -INFINITY
    if ua > LOG_DBL_MAX:
        return -INFINITY
    if ua < 0.0:                                     # x <= 1: [ua, min(ub, 0)]
        tot = _lig_small(s, ua, d if ub < 0.0 else -ua)
    if s > 1.0:                                      # 1 < x < s: lower series
        us = log(s)
        lo = ua if ua > 0.0 else 0.0
        hi = ub if ub < us else us
        if hi > lo:
            if ua > 0.0:
                w = d if ub < us else us - ua
            else:
                w = hi
            tot = log_add_exp(tot, _lig_diff(_log_lower_series(s, hi), _log_lower_series(s, lo), s, lo, w))
    lo = ua if ua > us else us                       # x >= max(1, s): continued fraction
    if ub > lo:
        w = d if ua > us else (ua - us) + d
        tot = log_add_exp(tot, _lig_diff(_log_upper_cf(s, lo), _log_upper_cf(s, ub), s, lo, w))
    return tot
