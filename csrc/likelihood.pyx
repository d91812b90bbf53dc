# cython: language_level=3
"""Compiled likelihood kernel of sl_cy (module ``sl_cy._likelihood``).

Per lens i with grid points p = (logMh_j, gamma_k) (DESIGN section 3)::

    p(d_i, det | eta) = sum_p  W_p * p(logMh_j | M_p, Re_i, eta) p(gamma_k | eta)
                               * p_sk(M_p) p(logRe_i | M_p) N(M_obs,i; M_p, sigma_obs)

with M_p = logM*_p - alpha_sps (logM*_p: the lensing stellar mass of the grid point) and the
eta-independent weight W_p = 2 pi n_bkg beta |J| F_phot * w_j * w_k (w: trapezoid weights of the
axes; an axis of one node has weight 1, i.e. no integral over it). Only points with W_p > 0 are
passed in (invalid points are dropped = weight 0), as compacted per-lens arrays ordered by gamma
node (``L`` = logM*, ``logMh``, ``logw0`` = log W_p; ``offsets`` per lens, ``nodes`` the start of
each gamma node's points within the lens: no per-point node index is stored).

Evaluation per (eta, lens): a max-shifted sum (log-sum-exp), in two passes over the points:

1. the cheap part q_p = log W_p + log p(gamma_k|eta) + all Gaussian terms (halo, skew-normal
   exponent, size, observed mass) is an upper bound of the log integrand f_p = q_p + log Phi(a z_p)
   because log Phi <= 0. The four standardised residuals are affine in the point's logM* and logMh
   (``residual_affine`` of ``sl_cy/_population.pxd``: nine coefficients per lens and eta), so pass 1
   is one vector loop per gamma node (``sl_cy_pass1``, an AVX2 clone chosen at run time) that
   writes only q_p and returns its maximum; qmax and f at its point bound max f_p from below (m);
2. s = sum_p exp(q_p - qmax) Phi(a z_p) with Phi = erfc(-a z / sqrt 2) / 2, exp and erfc in vector
   loops (``sl_cy_exp_ndtr``, and ``sl_cy_gauss_ratio`` for the inverse Mills ratio of the
   gradient: glibc's libmvec, <= 4 ulp, on x86-64 Linux with glibc >= 2.35, an AVX2 clone chosen
   at run time; libm's, ~1 ulp, elsewhere), the exact asymptotic ``log_ndtr`` where
   Phi < 1e-85. It runs in place over a few ranges of points (``_pass2_ranges``): per gamma node
   the shortest range holding its points with q_p >= m - CUT (the others contribute < e^-CUT
   each relative to the largest term; CUT = 30: < 9.4e-14 each, < 1e-9 in total for 10^4 points,
   negligible against the quadrature error, ~1e-4 near the posterior; CUT = 40 kept ~20 % more
   points), widened to whole vectors; a point inside a range but below the cut is summed too
   (exact). On the default grids the ranges hold ~40 % of the points (~560 of ~1310 per lens near
   the posterior, ~21 ranges). log p = const + qmax + log s. If s underflows (Phi negligible at
   every point, an extreme alpha_sps) the lens is redone with an on-line log-sum-exp of f_p.

The truncated-normal gamma factor log p(gamma_k | eta) is computed once per eta per node.
Parallel over the flattened (lens, eta) pairs with OpenMP (``prange``), lens-major: the eta of a
batch are evaluated one after the other on a lens, whose points (~30 kB) stay in cache (with
eta-major order every eta re-read all grids from memory, which bounded pass 1). The per-eta sum
over lenses is done afterwards in lens order, so results do not depend on the number of threads.

Performance (2026-12-01, 2057 lenses of a 5x10^5-galaxy mock, 1314 points per lens, batches of 8
eta near the truth, one thread, CPU time, 2-core machine at load 1.4-2.9, alternating with the
previous kernel): 4.4 us per lens per eta (9.5-9.8 before this layout of the passes; 4.8 with
CUT = 40), 8.8-8.9 with the gradient (13.4-13.8); see ``benchmarks/bench_likelihood.py``.
"""
import numpy as np
cimport cython
from cython.parallel cimport prange, threadid
from libc.math cimport exp, log, erfc, isfinite, INFINITY, NAN
from scipy.special.cython_special cimport log_ndtr
from sl_cy._numerics cimport (INV_SQRT2, LOG_SQRT_2PI, fast_log_ndtr, log_gauss_norm, log_ndtr_diff_h,
                              resolve_threads)
from sl_cy._population cimport (PopModel, EtaC, pop_init, residual_affine, halo_slope,
                                gamma_log_pdf, gamma_log_norm as _gamma_log_norm, gamma_in_support,
                                gamma_log_norm_grad, gamma_log_pdf_grad)

cdef double CUT = 30.0
# Phi(a z_s) below which pass 2 takes the asymptotic log_ndtr (erfc(14) / 2 ~ 2.4e-87: as before)
cdef double PHI_FLOOR = 1e-85
# points per vector of pass 2's loops (AVX2: 4 doubles); its ranges are widened to multiples of it
cdef Py_ssize_t VEC = 4

# Vector loops of pass 2 (C, so that GCC vectorises them: glibc >= 2.35 has SIMD exp and erfc in
# libmvec, called from an AVX2 clone of each loop chosen at run time; elsewhere plain loops; the
# vector functions are within 4 ulp of libm). Declared simd here only: this module's loops are the
# only ones that may use them (the tabulation's must stay bit-for-bit equal to their references).
cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
        && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    extern double exp(double) __attribute__((simd("notinbranch")));
    extern double erfc(double) __attribute__((simd("notinbranch")));
    #define SL_CY_CLONES __attribute__((target_clones("avx2", "default"), unused))
    #else
    #define SL_CY_CLONES __attribute__((unused))
    #endif
    #ifdef _OPENMP
    #define SL_CY_SIMD _Pragma("omp simd")
    #else
    #define SL_CY_SIMD
    #endif
    #ifdef _OPENMP
    #define SL_CY_SIMD_MAX _Pragma("omp simd reduction(max:mx)")
    #else
    #define SL_CY_SIMD_MAX
    #endif
    /* pass 1 over the points of one gamma node: q[i] = w[i] + lgk - (zs^2 + zr^2 + zo^2 + zh^2) / 2, the
       residuals affine in L and H (coefficients c of sl_cy._population.residual_affine); returns max q */
    SL_CY_CLONES static double sl_cy_pass1(const double* restrict L, const double* restrict H,
                                           const double* restrict w, double lgk, const double* restrict c,
                                           double* restrict q, ptrdiff_t n) {
        const double c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3], c4 = c[4], c5 = c[5], c6 = c[6], c7 = c[7],
                     c8 = c[8];
        double mx = -INFINITY;
        SL_CY_SIMD_MAX
        for (ptrdiff_t i = 0; i < n; i++) {
            double x = L[i];
            double zs = x * c0 + c1, zr = x * c2 + c3, zo = x * c4 + c5, zh = x * c6 + c7 + H[i] * c8;
            double v = w[i] + lgk - 0.5 * (zs * zs + zr * zr + zo * zo + zh * zh);
            q[i] = v;
            mx = v > mx ? v : mx;
        }
        return mx;
    }
    /* out[i] = exp(u[i] - shift) * P[i] with P[i] = erfc(c z) / 2 (= Phi(-sqrt 2 c z)), z = a L[i] + b;
       returns the sum of out[i] over the points with P[i] > floor and counts the others in *n_low */
    SL_CY_CLONES static double sl_cy_exp_ndtr(const double* restrict u, double shift, const double* restrict L,
                                              double a, double b, double c, double floor, double* restrict P,
                                              double* restrict out, ptrdiff_t n, ptrdiff_t* n_low) {
        double s = 0.0;
        ptrdiff_t low = 0;
        #ifdef _OPENMP
        _Pragma("omp simd reduction(+:s, low)")
        #endif
        for (ptrdiff_t i = 0; i < n; i++) {
            double f = 0.5 * erfc(c * (L[i] * a + b));
            double o = exp(u[i] - shift) * f;
            P[i] = f;
            out[i] = o;
            s += f > floor ? o : 0.0;
            low += f > floor ? 0 : 1;
        }
        *n_low = low;
        return s;
    }
    /* out[i] = phi(s z) / P[i], phi the standard normal density, z = a L[i] + b */
    SL_CY_CLONES static void sl_cy_gauss_ratio(const double* L, double a, double b, double s, const double* P,
                                               double* out, ptrdiff_t n) {
        SL_CY_SIMD
        for (ptrdiff_t i = 0; i < n; i++) {
            double x = s * (L[i] * a + b);
            out[i] = exp(-0.5 * x * x - 0.9189385332046728) / P[i];
        }
    }
    """
    double sl_cy_pass1(const double* L, const double* H, const double* w, double lgk, const double* c, double* q,
                       Py_ssize_t n) noexcept nogil
    double sl_cy_exp_ndtr(const double* u, double shift, const double* L, double a, double b, double c, double floor,
                          double* P, double* out, Py_ssize_t n, Py_ssize_t* n_low) noexcept nogil
    void sl_cy_gauss_ratio(const double* L, double a, double b, double s, const double* P, double* out,
                           Py_ssize_t n) noexcept nogil


cdef double log_ndtr_diff(double a, double b) noexcept nogil:
    """log(Phi(b) - Phi(a)) for a < b (sl_cy._numerics.log_ndtr_diff, exported)."""
    return log_ndtr_diff_h(a, b, 0.5 * (b - a))


cdef double gamma_log_norm(double mu, double sigma, double lo, double hi) noexcept nogil:
    """-log sigma - log sqrt(2 pi) - log(Phi((hi-mu)/sigma) - Phi((lo-mu)/sigma))
    (sl_cy._population.gamma_log_norm, exported)."""
    return _gamma_log_norm(mu, sigma, lo, hi)


cdef inline void _point_dlogf(const PopModel* pm, const EtaC* e, double inv_sh, double Lp, const double* z,
                              double mills, const double* dlg, int k, double* d) noexcept nogil:
    """d log f_p / d eta at one grid point (f_p: the log integrand _point_q + log Phi(a z_s)), from
    its residuals z (see _point_q) and mills = phi(a z_s) / Phi(a z_s); ``dlg`` = d log p(gamma_k |
    eta) / d(mu_gamma, sigma_gamma) per node (NULL for a fixed gamma). M = Lp - alpha_sps enters
    every residual (d M / d alpha_sps = -1); eta enters z_h = (logMh - c0 - c1 (M - pivot)) / sigma_h
    with c0 = mu_h + ..., c1 = beta_h - xi_h beta_R."""
    cdef double zh_s = z[3] * inv_sh
    d[0] = (z[0] - pm.a_skew * mills) * pm.inv_ss - z[1] * pm.beta_R * pm.inv_sR - z[2] * pm.inv_so \
        - zh_s * halo_slope(pm, e)
    d[1] = zh_s
    d[2] = zh_s * (Lp - e.alpha_sps - pm.pivot)
    d[3] = zh_s * z[3]
    if dlg != NULL:
        d[4] = dlg[2 * k]
        d[5] = dlg[2 * k + 1]
    else:
        d[4] = 0.0
        d[5] = 0.0


cdef inline double _mills(double x) noexcept nogil:
    """phi(x) / Phi(x) (the inverse Mills ratio of -x), for any x: from log Phi below -5."""
    if x > -5.0:
        return exp(-0.5 * x * x - LOG_SQRT_2PI) / (0.5 * erfc(-x * INV_SQRT2))
    return exp(-0.5 * x * x - LOG_SQRT_2PI - log_ndtr(x))


cdef inline void _residuals(const double* cf, double Lp, double Hp, double* z) noexcept nogil:
    """The residuals (z_s, z_r, z_o, z_h) of a point from the coefficients of residual_affine, by the
    same expressions as pass 1 (``sl_cy_pass1``), so that both give the same values."""
    z[0] = Lp * cf[0] + cf[1]
    z[1] = Lp * cf[2] + cf[3]
    z[2] = Lp * cf[4] + cf[5]
    z[3] = Lp * cf[6] + cf[7] + Hp * cf[8]


cdef inline void _kept_range(const double* q, Py_ssize_t a, Py_ssize_t b, double thr, Py_ssize_t* lo,
                             Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the shortest range of a..b-1 holding every p with q[p] >= thr (lo = hi if none)."""
    while a < b and not q[a] >= thr:
        a += 1
    while b > a and not q[b - 1] >= thr:
        b -= 1
    lo[0] = a
    hi[0] = b


cdef Py_ssize_t _pass2_ranges(const double* q, const int* nodes, Py_ssize_t nk, Py_ssize_t n, double thr,
                              double* rg) noexcept nogil:
    """The ranges [rg[2j], rg[2j+1]) of points that pass 2 sums (returns their number, <= n): per
    gamma node the shortest range holding its points with q_p >= thr, ranges less than VEC points
    apart merged, then each widened to a multiple of VEC points where its neighbours leave room, so
    that the vector loops of pass 2 have no scalar remainder. Every point with q_p >= thr is in one
    range; the other points of a range are summed too (exact, they are part of the integral)."""
    cdef Py_ssize_t k, nr = 0, lo, hi, j, need, add, room
    for k in range(nk):
        _kept_range(q, nodes[k], nodes[k + 1], thr, &lo, &hi)
        if hi <= lo:
            continue
        if nr > 0 and lo - <Py_ssize_t>rg[2 * nr - 1] < VEC:
            rg[2 * nr - 1] = hi
        else:
            rg[2 * nr] = lo
            rg[2 * nr + 1] = hi
            nr += 1
    for j in range(nr):
        lo = <Py_ssize_t>rg[2 * j]
        hi = <Py_ssize_t>rg[2 * j + 1]
        need = (VEC - (hi - lo) % VEC) % VEC
        if need > 0:
            room = (<Py_ssize_t>rg[2 * j + 2] if j + 1 < nr else n) - hi
            add = need if need < room else room
            hi += add
            need -= add
            room = lo - (<Py_ssize_t>rg[2 * j - 1] if j > 0 else 0)
            add = need if need < room else room
            lo -= add
            rg[2 * j] = lo
            rg[2 * j + 1] = hi
    return nr


cdef double lens_logp(const PopModel* pm, const EtaC* e, const double* lg, double logRe, double m_obs,
                      const double* L, const double* logMh, const int* nodes, Py_ssize_t nk, const double* logw0,
                      Py_ssize_t n, const double* dlg, double* grad, double* work) noexcept nogil:
    """log p(d_i | eta) of one lens from its compacted valid points (-inf if there are none).

    The points of gamma node k are ``nodes[k]:nodes[k+1]`` (nk nodes, nodes[nk] = n).
    ``lg[k]`` = log p(gamma_k | eta) (all 0 for a fixed-gamma grid). With ``grad`` != NULL the
    same pass also accumulates d log p_i / d eta (6 values) into ``grad`` (overwritten): the
    weighted mean over points of d log f_p / d eta (:func:`_point_dlogf`; ``dlg[2k:2k+2]`` =
    d lg[k] / d(mu_gamma, sigma_gamma), NULL for a fixed-gamma grid) plus d const / d sigma_h;
    NaN when log p_i = -inf. ``work``: scratch of ``WORK_PER_POINT`` doubles per point (q_p from
    pass 1; Phi, the weights and the inverse Mills ratio from pass 2)."""
    cdef Py_ssize_t p, j, pmax = -1, k, kmax = -1, n_low = 0, n_part, lo, hi
    cdef int c
    cdef double inv_sh = 1.0 / e.sigma_h
    cdef double qmax = -INFINITY, qk, f, ref, s, thr, wgt, resc, mills
    cdef double const
    cdef double cf[9]
    cdef double z[4]
    cdef double d[6]
    cdef double sg[6]
    # scratch, one array of n each: q_p, Phi(a z_s), the weight exp(q_p - qmax) Phi, the inverse Mills ratio;
    # then the ranges of pass 2 (up to 2 n)
    cdef double* qb = work
    cdef double* Pb = work + n
    cdef double* wb = work + 2 * n
    cdef double* mb = work + 3 * n
    cdef double* rg = work + 4 * n
    cdef Py_ssize_t nr, jr
    for c in range(6):
        sg[c] = 0.0
    if grad != NULL:
        for c in range(6):
            grad[c] = NAN
    if n <= 0:
        return -INFINITY
    # pass 1 (vector loop per gamma node): the log integrand q_p without the skew-normal log Phi(a z_s)
    # term (an upper bound of it, log Phi <= 0) and without the constant normalisations; the
    # standardised residuals z_s (skew-normal), z_r (size), z_o (observed mass), z_h (halo) are
    # affine in the point's logM* and logMh (residual_affine)
    residual_affine(pm, e, logRe, m_obs, cf)
    for k in range(nk):
        if nodes[k + 1] > nodes[k]:
            qk = sl_cy_pass1(&L[nodes[k]], &logMh[nodes[k]], &logw0[nodes[k]], lg[k], cf, &qb[nodes[k]],
                             nodes[k + 1] - nodes[k])
            if qk > qmax:
                qmax = qk
                kmax = k
    if not qmax > -INFINITY:
        return -INFINITY
    for p in range(nodes[kmax], nodes[kmax + 1]):
        if qb[p] == qmax:
            pmax = p
            break
    # the maximum f_max of the full log integrand lies in [qmax + log Phi(a z_pmax), qmax]; the points
    # with q_p < thr contribute < e^-CUT each: pass 2 runs, per gamma node, over the shortest range of
    # the node's points that holds all its points with q_p >= thr (_kept_range; in between, a point
    # below thr is summed too, which is exact)
    thr = qmax + fast_log_ndtr(pm.a_skew * (L[pmax] * cf[0] + cf[1])) - CUT
    # pass 2 (fast path): s = sum exp(q_p - qmax) Phi(a z_p), Phi = erfc(-a z / sqrt 2) / 2, vectorised
    nr = _pass2_ranges(qb, nodes, nk, n, thr, rg)
    s = 0.0
    for jr in range(nr):
        lo = <Py_ssize_t>rg[2 * jr]
        hi = <Py_ssize_t>rg[2 * jr + 1]
        s = s + sl_cy_exp_ndtr(&qb[lo], qmax, &L[lo], cf[0], cf[1], -pm.ask, PHI_FLOOR, &Pb[lo], &wb[lo],
                               hi - lo, &n_part)
        n_low = n_low + n_part
        if grad != NULL:
            sl_cy_gauss_ratio(&L[lo], cf[0], cf[1], pm.a_skew, &Pb[lo], &mb[lo], hi - lo)
    if n_low > 0 or grad != NULL:
        # points where Phi < PHI_FLOOR (left out of the vector sum) take the asymptotic log_ndtr; the
        # gradient sums need each weight. s stays the vector sum plus those points, so that log p is
        # the same with and without the gradient
        k = 0
        for jr in range(nr):
            for p in range(<Py_ssize_t>rg[2 * jr], <Py_ssize_t>rg[2 * jr + 1]):
                if Pb[p] > PHI_FLOOR:
                    wgt = wb[p]
                else:
                    wgt = exp(qb[p] - qmax + log_ndtr(pm.a_skew * (L[p] * cf[0] + cf[1])))
                    s = s + wgt
                if grad != NULL:
                    while p >= nodes[k + 1]:        # the ranges are in order: the node only advances
                        k += 1
                    _residuals(cf, L[p], logMh[p], z)
                    mills = mb[p] if pm.a_skew * z[0] > -5.0 else _mills(pm.a_skew * z[0])
                    _point_dlogf(pm, e, inv_sh, L[p], z, mills, dlg, k, d)
                    for c in range(6):
                        sg[c] = sg[c] + wgt * d[c]
    if not s > 1e-250:
        # robust path (Phi underflows at every relevant point): on-line log-sum-exp of f_p
        ref = thr + CUT
        s = 0.0
        for c in range(6):
            sg[c] = 0.0
        k = 0
        for jr in range(nr):
            for p in range(<Py_ssize_t>rg[2 * jr], <Py_ssize_t>rg[2 * jr + 1]):
                _residuals(cf, L[p], logMh[p], z)
                f = qb[p] + log_ndtr(pm.a_skew * z[0])
                if f > ref:
                    resc = exp(ref - f)
                    s = s * resc + 1.0
                    wgt = 1.0
                    for c in range(6):
                        sg[c] = sg[c] * resc
                    ref = f
                else:
                    wgt = exp(f - ref)
                    s = s + wgt
                if grad != NULL:
                    while p >= nodes[k + 1]:
                        k += 1
                    _point_dlogf(pm, e, inv_sh, L[p], z, _mills(pm.a_skew * z[0]), dlg, k, d)
                    for c in range(6):
                        sg[c] = sg[c] + wgt * d[c]
        if not s > 0.0:
            return -INFINITY
    else:
        ref = qmax
    # constants: halo, skew-normal (log 2/sigma - log sqrt 2pi), size, observed mass
    const = log_gauss_norm(e.sigma_h) + pm.log_c_sk + pm.log_c_R + pm.log_c_obs
    if grad != NULL:
        for c in range(6):
            grad[c] = sg[c] / s
        grad[3] = grad[3] - inv_sh          # d log_gauss_norm(sigma_h) / d sigma_h
    return const + ref + log(s)


cdef inline bint _eta_ok(const double* e) noexcept nogil:
    cdef int i
    for i in range(6):
        if not isfinite(e[i]):
            return False
    return e[3] > 0.0 and e[5] > 0.0


cdef double GAMMA_Z_MAX = 1e4


cdef inline bint _gamma_law_ok(double mu, double sigma, double lo, double hi) noexcept nogil:
    """The truncated normal N(mu, sigma) on [lo, hi] is representable: its mean lies within
    GAMMA_Z_MAX sigma of the support. Farther out log p(gamma) is the difference of two terms of
    size (distance / sigma)^2 that cancel to nothing in double precision (it gave log L = +1e11
    at mu_gamma = 4.5e13, sigma_gamma = 1)."""
    cdef double d = lo - mu if mu < lo else (mu - hi if mu > hi else 0.0)
    return d <= GAMMA_Z_MAX * sigma


@cython.boundscheck(False)
@cython.wraparound(False)
def loglike_lenses(const double[:, ::1] eta, const double[::1] L, const double[::1] logMh,
                   const int[:, ::1] nodes, const double[::1] logw0, const long long[::1] offsets,
                   const double[::1] logRe, const double[::1] m_obs, const double[::1] gamma_axis,
                   bint use_gamma, tuple model, double gamma_lo=0.0, double gamma_hi=2.0,
                   n_threads=1, bint with_grad=False):
    """Per-lens log p(d_i | eta) for a batch of eta (and, with ``with_grad``, its eta-gradient).

    Parameters
    ----------
    eta : (n_eta, 6) float64, C-contiguous
        (alpha_sps, mu_h, beta_h, sigma_h, mu_gamma, sigma_gamma) per row.
    L, logMh, logw0 : (n_points,) float64
        Compacted valid points of all lenses, ordered by lens, then gamma node: lensing logM*,
        logMh and log W_p.
    nodes : (n_lens, max(n_gamma, 1) + 1) int32
        Points of gamma node k of lens i are ``offsets[i] + nodes[i, k] : offsets[i] + nodes[i, k+1]``
        (``nodes[i, 0] = 0``, non-decreasing, ``nodes[i, -1]`` = the lens's number of points).
    offsets : (n_lens + 1,) int64
        Points of lens i are ``offsets[i]:offsets[i+1]``.
    logRe, m_obs : (n_lens,) float64
        Observed log size and SPS mass per lens.
    gamma_axis : (n_gamma,) float64
    use_gamma : bool
        Apply p(gamma | eta) (False for a fixed-gamma, one-node grid).
    model : tuple
        (mu_star, sigma_star, a_skew, mu_R0, beta_R, sigma_R, xi_h, sigma_obs, pivot).
    gamma_lo, gamma_hi : float
        Support of the truncated gamma law.
    n_threads : int or None
        OpenMP threads (None or -1: all cores; ``sl_cy.parallel.resolve_n_threads``).
    with_grad : bool
        Also return d log p_i / d eta from the same pass over the points.

    Returns
    -------
    (n_eta, n_lens) float64
        log p_i; -inf for a lens without valid point, for a row of eta with a non-finite value
        or sigma_h <= 0 or sigma_gamma <= 0, or (with ``use_gamma``) with mu_gamma more than 1e4
        sigma_gamma outside [gamma_lo, gamma_hi] (all lenses of that row).
    (n_eta, n_lens, 6) float64, only with ``with_grad``
        d log p_i / d eta (exact derivative of the computed sum); NaN where log p_i = -inf; 0 for
        mu_gamma, sigma_gamma without ``use_gamma``.

    Raises
    ------
    ValueError
        for inconsistent shapes, ``offsets`` that are not non-decreasing within [0, n_points],
        ``nodes`` that do not partition each lens's points, or a non-positive scatter in ``model``
        (the layout is checked in O(n_lens n_gamma) before any point is read).
    """
    cdef Py_ssize_t ne = eta.shape[0], nl = offsets.shape[0] - 1, ng = gamma_axis.shape[0]
    cdef Py_ssize_t t, i, r, k, a, b
    cdef PopModel pm
    cdef EtaC* ec
    cdef double lnorm
    cdef double dnorm[2]
    cdef int nt = resolve_threads(n_threads)
    if eta.shape[1] != 6:
        raise ValueError(f"eta must have 6 columns, got {eta.shape[1]}")
    if logRe.shape[0] != nl or m_obs.shape[0] != nl:
        raise ValueError("logRe and m_obs need one value per lens")
    if L.shape[0] != logMh.shape[0] or L.shape[0] != logw0.shape[0]:
        raise ValueError("point arrays must have the same length")
    if nl < 0 or offsets[nl] != L.shape[0]:
        raise ValueError("offsets do not match the number of points")
    cdef Py_ssize_t npt = L.shape[0], nkg = max(ng, 1), bad = -1
    with nogil:
        for i in range(nl):
            if offsets[i] < 0 or offsets[i] > offsets[i + 1]:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"offsets must be non-decreasing within [0, {npt}]; offsets[{bad}:{bad + 2}] = "
                         f"{offsets[bad]}, {offsets[bad + 1]}")
    if nodes.shape[0] != nl or nodes.shape[1] != nkg + 1:
        raise ValueError(f"nodes must have shape (n_lens, n_gamma + 1) = ({nl}, {nkg + 1}), got "
                         f"({nodes.shape[0]}, {nodes.shape[1]})")
    with nogil:
        for i in range(nl):
            if nodes[i, 0] != 0 or nodes[i, nkg] != offsets[i + 1] - offsets[i]:
                bad = i
                break
            for k in range(nkg):
                if nodes[i, k + 1] < nodes[i, k]:
                    bad = i
                    break
            if bad >= 0:
                break
    if bad >= 0:
        raise ValueError(f"nodes[{bad}] = {np.asarray(nodes[bad])!r} does not partition the lens's "
                         f"{offsets[bad + 1] - offsets[bad]} points into its gamma nodes (0 = nodes[i, 0] <= ... "
                         f"<= nodes[i, -1] = its number of points)")
    pm.mu_star, pm.sigma_star, pm.a_skew, pm.mu_R0, pm.beta_R, pm.sigma_R, pm.xi_h, pm.sigma_obs, \
        pm.pivot = [float(v) for v in model]
    pm.gamma_lo = gamma_lo
    pm.gamma_hi = gamma_hi
    if not (pm.sigma_star > 0 and pm.sigma_R > 0 and pm.sigma_obs > 0 and isfinite(pm.a_skew)
            and isfinite(pm.sigma_star) and isfinite(pm.sigma_R) and isfinite(pm.sigma_obs)):
        raise ValueError(f"model scatters (sigma_star, sigma_R, sigma_obs) must be finite and > 0 and a_skew "
                         f"finite, got {model!r}")
    pop_init(&pm)
    out_np = np.empty((ne, nl), dtype=np.float64)
    cdef double[:, ::1] out = out_np
    lg_np = np.zeros((ne, max(ng, 1)), dtype=np.float64)
    cdef double[:, ::1] lg = lg_np
    dlg_np = np.zeros((ne, max(ng, 1), 2), dtype=np.float64)
    cdef double[:, :, ::1] dlg = dlg_np
    grad_np = np.empty((<object>ne if with_grad else 1, <object>nl if with_grad else 1, 6), dtype=np.float64)
    cdef double[:, :, ::1] grad = grad_np
    ok_np = np.zeros(ne, dtype=np.int8)
    cdef signed char[::1] ok = ok_np
    # scratch of lens_logp, one row per OpenMP thread (pass 1 stores what pass 2 reads)
    cdef Py_ssize_t nmax = int(np.max(np.diff(offsets))) if nl > 0 else 0
    work_np = np.empty((nt, max(1, WORK_PER_POINT * nmax)), dtype=np.float64)
    cdef double[:, ::1] work = work_np
    with nogil:
        for r in range(ne):
            ok[r] = _eta_ok(&eta[r, 0])
            if ok[r] and use_gamma and not _gamma_law_ok(eta[r, 4], eta[r, 5], gamma_lo, gamma_hi):
                ok[r] = False
            if ok[r] and use_gamma:
                lnorm = _gamma_log_norm(eta[r, 4], eta[r, 5], gamma_lo, gamma_hi)
                if with_grad:
                    gamma_log_norm_grad(eta[r, 4], eta[r, 5], gamma_lo, gamma_hi, dnorm)
                for k in range(ng):
                    lg[r, k] = gamma_log_pdf(&pm, <EtaC*>&eta[r, 0], gamma_axis[k], lnorm)
                    if with_grad and gamma_in_support(&pm, gamma_axis[k]):
                        gamma_log_pdf_grad(<EtaC*>&eta[r, 0], gamma_axis[k], dnorm, &dlg[r, k, 0])
        # lens-major: the eta of a batch are evaluated one after the other on each lens, whose points
        # (~30 kB) then stay in cache (eta-major re-read all the grids from memory for every eta)
        for t in prange(ne * nl, schedule="guided", num_threads=nt):
            i = t // ne
            r = t - i * ne
            if not ok[r]:
                out[r, i] = -INFINITY
                if with_grad:
                    for k in range(6):
                        grad[r, i, k] = NAN
                continue
            a = offsets[i]
            b = offsets[i + 1]
            out[r, i] = lens_logp(&pm, <EtaC*>&eta[r, 0], &lg[r, 0], logRe[i], m_obs[i],
                                  &L[a], &logMh[a], &nodes[i, 0], nkg, &logw0[a], b - a,
                                  &dlg[r, 0, 0] if use_gamma else NULL,
                                  &grad[r, i, 0] if with_grad else NULL, &work[threadid(), 0])
    if with_grad:
        return out_np, grad_np
    return out_np

