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
from libc.math cimport exp, log, erfc, isfinite, sqrt, INFINITY, NAN
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


# --------------------------------------------------------------------------------------------
# eta-adaptive sub-sampling of the columns (issue 16 item 1)
# --------------------------------------------------------------------------------------------
# A lens's points come in *runs*: consecutive compacted points that are adjacent nodes of one
# piece of an adaptive column (uniform in arc length; ``runs`` entry = (start << 2) | first_half |
# last_half << 1, start relative to the lens, the flags telling whether the run's first / last
# point is a piece end, of half trapezoid weight). Along a run the eta-independent fields (logM*,
# logMh, and log W without its trapezoid factor) are smooth; only the halo factor, a ridge of
# width sigma_h in z_h, gets sharp. Rule r: every segment of a run cut into r sub-intervals, the
# fields interpolated at the sub-points by Lagrange polynomials in the node index (``order`` 1-3,
# through nodes of the same run), trapezoid weights h / r (h / 2r at a piece end; a run end that
# is not a piece end - its neighbour was dropped - keeps the unrefined half segment: h/2r + h/2).
# r = 1 is the plain rule (the original arrays are passed as they are). r is chosen from
# rho = D(c1) / (sigma_h zmax), D(c1) = dmax sqrt(1 + c1^2) with dmax the longest segment of the
# lens's runs in (logMh, logM*) (dex): by Cauchy-Schwarz an upper bound of |dlogMh - c1 dlogM*|,
# the step of sigma_h z_h between adjacent nodes, on every segment (nearly attained: the columns
# turn through the direction (1, -c1) for c1 >= 0), and smooth in c1. So the rule keeps every
# segment's step of z_h below zmax. Between rho = k and k + tau the rules k and k + 1 are mixed
# with weight lambda = smoothstep((rho - k) / tau): p = (1 - lambda) p_k + lambda p_(k+1),
# continuous in eta with a continuous gradient.
cdef double LOG2 = 0.6931471805599453


cdef inline double _seg_bound(double dmax, double c1, double* slope) noexcept nogil:
    """D(c1) = dmax sqrt(1 + c1^2) and its derivative in c1."""
    cdef double q = sqrt(1.0 + c1 * c1)
    slope[0] = dmax * c1 / q
    return dmax * q


cdef inline int _column_rule(double rho, double tau, int rmax, double* lam, double* dlam) noexcept nogil:
    """Rule k and mixing weight lambda (with d lambda / d rho) for rho: k = 1 up to rho = 1;
    for k < rho <= k + 1, lambda = smoothstep((rho - k) / tau) towards rule k + 1 (then pure k + 1);
    at most rmax."""
    cdef int k
    cdef double t
    lam[0] = 0.0
    dlam[0] = 0.0
    if not rho > 1.0:
        return 1
    if rho >= rmax:
        return rmax
    k = <int>rho             # rho in [k, k + 1)
    t = (rho - k) / tau
    if t >= 1.0:
        return k + 1
    lam[0] = t * t * (3.0 - 2.0 * t)
    dlam[0] = 6.0 * t * (1.0 - t) / tau
    if k >= rmax:
        return rmax
    return k


# finest rule the kernel accepts (the Lagrange coefficients of the sub-points live on the stack)
cdef enum:
    RMAX_LIMIT = 64


cdef inline void _lagrange_coef(int np_, int off, double u, double* c) noexcept nogil:
    """c[i], i < np_: Lagrange coefficients at u of the nodes off + i (node-index coordinate)."""
    cdef int i, m
    for i in range(np_):
        c[i] = 1.0
        for m in range(np_):
            if m != i:
                c[i] = c[i] * (u - (off + m)) / (<double>(i - m))
    for i in range(np_, 4):
        c[i] = 0.0


cdef Py_ssize_t _expand_lens(const double* L, const double* Mh, const double* lw, const int* nodes,
                             Py_ssize_t nk, const int* runs, Py_ssize_t nr, Py_ssize_t n, int r, int order,
                             double* xL, double* xM, double* xw, double* sm, int* xnodes) noexcept nogil:
    """The points of rule r of one lens (module comment above) into xL, xM, xw (log weights) and
    xnodes (the gamma-node starts); ``sm``: scratch of n doubles (log W without the trapezoid
    factor). Returns the number of points."""
    cdef Py_ssize_t ir = 0, k, s, e, j, nx = 0, a, q
    cdef int code, np_, off, t
    cdef double lr = -log(<double>r), lend_half = -log(2.0 * r), lend_cut = log(0.5 / r + 0.5)
    cdef bint h0, h1
    # coef[((np_ - 2) * 3 - off) * RMAX_LIMIT * 4 + q * 4 + i]: the coefficients of stencils of
    # np_ = 2..4 nodes starting off = 0, -1, -2 nodes from the segment's first node, at u = q / r
    cdef double coef[3 * 3 * RMAX_LIMIT * 4]
    cdef double* cf
    for np_ in range(2, 5):
        for off in range(0, -3, -1):
            for q in range(1, r):
                _lagrange_coef(np_, off, (<double>q) / r, &coef[((np_ - 2) * 3 - off) * RMAX_LIMIT * 4 + q * 4])
    for k in range(nk):
        xnodes[k] = <int>nx
        while ir < nr and (runs[ir] >> 2) < nodes[k + 1]:
            code = runs[ir]
            s = code >> 2
            e = (runs[ir + 1] >> 2) if ir + 1 < nr else n
            h0 = (code & 1) != 0
            h1 = (code & 2) != 0
            ir += 1
            if e - s == 1:       # one point: its weight as it is
                xL[nx] = L[s]
                xM[nx] = Mh[s]
                xw[nx] = lw[s]
                nx += 1
                continue
            for j in range(s, e):
                sm[j] = lw[j]
            if h0:
                sm[s] = sm[s] + LOG2
            if h1:
                sm[e - 1] = sm[e - 1] + LOG2
            for j in range(s, e):
                xL[nx] = L[j]
                xM[nx] = Mh[j]
                if j == s:
                    xw[nx] = sm[j] + (lend_half if h0 else lend_cut)
                elif j == e - 1:
                    xw[nx] = sm[j] + (lend_half if h1 else lend_cut)
                else:
                    xw[nx] = sm[j] + lr
                nx += 1
                if j == e - 1:
                    break
                # the stencil of segment [j, j + 1]: order + 1 nodes of the run, centred
                np_ = order + 1
                if np_ > e - s:
                    np_ = <int>(e - s)
                a = j - (np_ - 1) // 2
                if a < s:
                    a = s
                if a + np_ > e:
                    a = e - np_
                off = <int>(a - j)
                for q in range(1, r):
                    cf = &coef[((np_ - 2) * 3 - off) * RMAX_LIMIT * 4 + q * 4]
                    if np_ == 4:
                        xL[nx] = cf[0] * L[a] + cf[1] * L[a + 1] + cf[2] * L[a + 2] + cf[3] * L[a + 3]
                        xM[nx] = cf[0] * Mh[a] + cf[1] * Mh[a + 1] + cf[2] * Mh[a + 2] + cf[3] * Mh[a + 3]
                        xw[nx] = cf[0] * sm[a] + cf[1] * sm[a + 1] + cf[2] * sm[a + 2] + cf[3] * sm[a + 3] + lr
                    else:
                        xL[nx] = 0.0
                        xM[nx] = 0.0
                        xw[nx] = lr
                        for t in range(np_):
                            xL[nx] = xL[nx] + cf[t] * L[a + t]
                            xM[nx] = xM[nx] + cf[t] * Mh[a + t]
                            xw[nx] = xw[nx] + cf[t] * sm[a + t]
                    nx += 1
    xnodes[nk] = <int>nx
    return nx


cdef double _lens_logp_sub(const PopModel* pm, const EtaC* e, const double* lg, double logRe, double m_obs,
                           const double* L, const double* logMh, const int* nodes, Py_ssize_t nk,
                           const double* logw0, Py_ssize_t n, const double* dlg, double* grad, double* work,
                           const int* runs, Py_ssize_t nr, double dmax, double zmax, double tau, int rmax,
                           int order, double* xbuf, Py_ssize_t lay, int* xnodes) noexcept nogil:
    """log p(d_i | eta) of one lens by the eta-adaptive column rule (module comment above; the
    plain :func:`lens_logp` call when rule 1 applies). ``xbuf``: scratch of 3 lay + n doubles with
    lay >= the points of the finest rule used, ``xnodes``: nk + 1 ints, ``work``: WORK_PER_POINT
    lay doubles."""
    cdef double slope, D, rho, lam, dlam, la, lb, wa, wb, mx, tot, drho_b, drho_s
    cdef double ga[6]
    cdef double gb[6]
    cdef int kr, c
    cdef Py_ssize_t nx
    cdef double* xL = xbuf
    cdef double* xM = xbuf + lay
    cdef double* xw = xbuf + 2 * lay
    cdef double* sm = xbuf + 3 * lay
    if nr <= 0 or n <= 0:
        return lens_logp(pm, e, lg, logRe, m_obs, L, logMh, nodes, nk, logw0, n, dlg, grad, work)
    D = _seg_bound(dmax, halo_slope(pm, e), &slope)
    rho = D / (e.sigma_h * zmax)
    kr = _column_rule(rho, tau, rmax, &lam, &dlam)
    if kr == 1 and lam == 0.0:
        return lens_logp(pm, e, lg, logRe, m_obs, L, logMh, nodes, nk, logw0, n, dlg, grad, work)
    if kr == 1:
        la = lens_logp(pm, e, lg, logRe, m_obs, L, logMh, nodes, nk, logw0, n, dlg,
                       ga if grad != NULL else NULL, work)
    else:
        nx = _expand_lens(L, logMh, logw0, nodes, nk, runs, nr, n, kr, order, xL, xM, xw, sm, xnodes)
        la = lens_logp(pm, e, lg, logRe, m_obs, xL, xM, xnodes, nk, xw, nx, dlg, ga if grad != NULL else NULL,
                       work)
    if lam == 0.0:
        if grad != NULL:
            for c in range(6):
                grad[c] = ga[c]
        return la
    nx = _expand_lens(L, logMh, logw0, nodes, nk, runs, nr, n, kr + 1, order, xL, xM, xw, sm, xnodes)
    lb = lens_logp(pm, e, lg, logRe, m_obs, xL, xM, xnodes, nk, xw, nx, dlg, gb if grad != NULL else NULL, work)
    # p = (1 - lam) p_k + lam p_(k+1)
    if not (la > -INFINITY or lb > -INFINITY):
        if grad != NULL:
            for c in range(6):
                grad[c] = NAN
        return -INFINITY
    mx = la if la > lb else lb
    wa = (1.0 - lam) * exp(la - mx) if la > -INFINITY else 0.0
    wb = lam * exp(lb - mx) if lb > -INFINITY else 0.0
    tot = wa + wb
    if grad != NULL:
        # d rho / d beta_h = D'(c1) / (sigma_h zmax) (d c1 / d beta_h = 1); d rho / d sigma_h = -rho / sigma_h
        drho_b = slope / (e.sigma_h * zmax)
        drho_s = -rho / e.sigma_h
        for c in range(6):
            grad[c] = ((wa * ga[c] if wa > 0.0 else 0.0) + (wb * gb[c] if wb > 0.0 else 0.0)) / tot
        slope = dlam * ((exp(lb - mx) if lb > -INFINITY else 0.0) - (exp(la - mx) if la > -INFINITY else 0.0)) / tot
        grad[2] = grad[2] + slope * drho_b
        grad[3] = grad[3] + slope * drho_s
    return mx + log(tot)


def column_rule(const double[:, ::1] eta, const double[::1] dmax, double xi_h, double beta_R, double zmax,
                double tau, int rmax):
    """Rule k and mixing weight lambda of the eta-adaptive column rule per (eta, lens) (as the
    kernel chooses them from ``dmax``; lenses without runs get rule 1 in the kernel).

    Returns
    -------
    k : (n_eta, n_lens) int32, lam : (n_eta, n_lens) float64
    """
    cdef Py_ssize_t ne = eta.shape[0], nl = dmax.shape[0], r, i
    cdef double slope, lam, dlam
    cdef PopModel pm
    pm.xi_h = xi_h
    pm.beta_R = beta_R
    k_np = np.ones((ne, nl), dtype=np.int32)
    lam_np = np.zeros((ne, nl))
    cdef int[:, ::1] kv = k_np
    cdef double[:, ::1] lv = lam_np
    for r in range(ne):
        for i in range(nl):
            kv[r, i] = _column_rule(_seg_bound(dmax[i], halo_slope(&pm, <EtaC*>&eta[r, 0]), &slope)
                                    / (eta[r, 3] * zmax), tau, rmax, &lam, &dlam)
            lv[r, i] = lam
    return k_np, lam_np


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
                   n_threads=1, bint with_grad=False, runs=None, run_off=None, dmax=None,
                   double zmax=1.5, double tau=0.25, int rmax=16, int order=3):
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
    runs, run_off, dmax : optional
        The eta-adaptive column rule (see the comment above :func:`_lens_logp_sub`): ``runs``
        (int32) the runs of all lenses, those of lens i at ``run_off[i]:run_off[i+1]`` (int64; none:
        the plain rule for that lens), ``dmax`` (n_lens,) the longest segment of each lens's runs
        in (logMh, logM*). None: the plain rule everywhere.
    zmax, tau, rmax, order : float, float, int, int
        Largest step of z_h between adjacent points of a rule, width of the mixing zones (in
        rho), finest rule, and order of the interpolation of the fields along a run (1-3).

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
    # the eta-adaptive column rule: runs, their offsets per lens, D(c1) per lens
    cdef bint sub = runs is not None
    cdef const int[::1] rv
    cdef const long long[::1] ro
    cdef const double[::1] dtv
    cdef int[::1] runs_dummy = np.zeros(1, dtype=np.int32)
    cdef long long[::1] ro_dummy = np.zeros(nl + 1, dtype=np.int64)
    cdef double[::1] dt_dummy = np.zeros(max(nl, 1))
    if sub:
        rv = np.ascontiguousarray(runs, dtype=np.int32)
        ro = np.ascontiguousarray(run_off, dtype=np.int64)
        dtv = np.ascontiguousarray(dmax, dtype=np.float64)
        if ro.shape[0] != nl + 1 or dtv.shape[0] != nl:
            raise ValueError("run_off needs n_lens + 1 entries and dmax n_lens")
        if not (zmax > 0 and tau > 0 and tau <= 1 and 1 <= rmax <= RMAX_LIMIT and 1 <= order <= 3):
            raise ValueError(f"need zmax > 0, 0 < tau <= 1, 1 <= rmax <= {RMAX_LIMIT} and order in 1..3")
        for i in range(nl):
            if ro[i] < 0 or ro[i] > ro[i + 1] or ro[i + 1] > rv.shape[0]:
                raise ValueError(f"run_off must be non-decreasing within [0, {rv.shape[0]}]")
            for k in range(ro[i], ro[i + 1]):
                a = rv[k] >> 2
                if a < 0 or a >= offsets[i + 1] - offsets[i] or (k > ro[i] and a <= (rv[k - 1] >> 2)) \
                        or (k == ro[i] and a != 0):
                    raise ValueError(f"runs of lens {i} must start at 0 and increase within its points")
            t = ro[i]
            for k in range(nkg):          # every gamma node's first point starts a run
                if nodes[i, k] == nodes[i, k + 1]:
                    continue
                while t < ro[i + 1] and (rv[t] >> 2) < nodes[i, k]:
                    t += 1
                if ro[i + 1] > ro[i] and (t == ro[i + 1] or (rv[t] >> 2) != nodes[i, k]):
                    raise ValueError(f"runs of lens {i} must start a run at each gamma node's first point")
    else:
        rv = runs_dummy
        ro = ro_dummy
        dtv = dt_dummy
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
    # the finest rule any (eta, lens) pair uses sizes the scratch of the expanded points
    cdef Py_ssize_t rneed = 1, lay = 1
    cdef int kr
    cdef double lam, dlam, slope
    if sub:
        for r in range(ne):
            if not (_eta_ok(&eta[r, 0]) and eta[r, 3] > 0):
                continue
            for i in range(nl):
                if ro[i + 1] > ro[i]:
                    kr = _column_rule(_seg_bound(dtv[i], halo_slope(&pm, <EtaC*>&eta[r, 0]), &slope)
                                      / (eta[r, 3] * zmax), tau, rmax, &lam, &dlam)
                    if kr + (1 if lam > 0.0 else 0) > rneed:
                        rneed = kr + (1 if lam > 0.0 else 0)
    lay = max(1, rneed * nmax)
    work_np = np.empty((nt, max(1, WORK_PER_POINT * lay)), dtype=np.float64)
    cdef double[:, ::1] work = work_np
    xbuf_np = np.empty((nt, (3 * lay + nmax + 1) if sub else 1), dtype=np.float64)
    cdef double[:, ::1] xbuf = xbuf_np
    xnodes_np = np.empty((nt, nkg + 1), dtype=np.int32)
    cdef int[:, ::1] xnodes = xnodes_np
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
            if sub and ro[i + 1] > ro[i]:
                out[r, i] = _lens_logp_sub(&pm, <EtaC*>&eta[r, 0], &lg[r, 0], logRe[i], m_obs[i],
                                           &L[a], &logMh[a], &nodes[i, 0], nkg, &logw0[a], b - a,
                                           &dlg[r, 0, 0] if use_gamma else NULL,
                                           &grad[r, i, 0] if with_grad else NULL, &work[threadid(), 0],
                                           &rv[ro[i]], ro[i + 1] - ro[i], dtv[i], zmax, tau, rmax, order,
                                           &xbuf[threadid(), 0], lay, &xnodes[threadid(), 0])
            else:
                out[r, i] = lens_logp(&pm, <EtaC*>&eta[r, 0], &lg[r, 0], logRe[i], m_obs[i],
                                      &L[a], &logMh[a], &nodes[i, 0], nkg, &logw0[a], b - a,
                                      &dlg[r, 0, 0] if use_gamma else NULL,
                                      &grad[r, i, 0] if with_grad else NULL, &work[threadid(), 0])
    if with_grad:
        return out_np, grad_np
    return out_np

