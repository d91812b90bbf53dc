# Shared numerical utilities of the compiled core (one concern: numerics, no physics).
#
# cimported by csrc/likelihood.pyx, selection.pyx, photometry.pyx and profiles.pyx; every
# constant and helper below is written only here (the scikit-learn layout: small .pxd headers of
# ``cdef inline`` functions beside the compiled modules).

from libc.math cimport exp, expm1, log, log1p, fabs, erfc
from scipy.special.cython_special cimport log_ndtr

# compile-time constants (C macros: a ``cdef double`` in a .pxd would be a module global of a
# module that does not exist; these are literals in every module that cimports them)
cdef extern from *:
    """
    #define SL_CY_LOG_SQRT_2PI 0.9189385332046728      /* log sqrt(2 pi), correctly rounded */
    #define SL_CY_INV_SQRT2 0.7071067811865476         /* 1 / sqrt 2 */
    #define SL_CY_SQRT2 1.4142135623730951
    #define SL_CY_SQRT_2_OVER_PI 0.7978845608028654    /* sqrt(2 / pi) */
    """
    const double LOG_SQRT_2PI "SL_CY_LOG_SQRT_2PI"
    const double INV_SQRT2 "SL_CY_INV_SQRT2"
    const double SQRT2 "SL_CY_SQRT2"
    const double SQRT_2_OVER_PI "SL_CY_SQRT_2_OVER_PI"


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


cdef inline int resolve_threads(int n_threads):
    """OpenMP thread count: n_threads if > 0, else the number of CPUs this process may run on."""
    if n_threads > 0:
        return n_threads
    import os
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1
