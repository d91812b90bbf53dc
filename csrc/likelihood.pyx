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
   because log Phi <= 0; its maximum qmax and f at that point bound max f_p from below (m); q_p
   and the residuals z_p are stored in a per-thread scratch row (``WORK_PER_POINT`` doubles per
   point), and the points with q_p >= m - CUT (below) are compacted there, so pass 2 reads them
   instead of computing them again;
2. s = sum_p exp(q_p - qmax) Phi(a z_p) with Phi = erfc(-a z / sqrt 2) / 2, exp and erfc in vector
   loops (``sl_cy_exp_ndtr``, and ``sl_cy_gauss_ratio`` for the inverse Mills ratio of the
   gradient: glibc's libmvec, <= 4 ulp, on x86-64 Linux with glibc >= 2.35, an AVX2 clone chosen
   at run time; libm's, ~1 ulp, elsewhere), the exact asymptotic ``log_ndtr`` where
   Phi < 1e-85, skipping points with q_p < m - CUT: they
   contribute < e^-CUT each relative to the largest term (CUT = 40: < 4.3e-18 each, < 5e-14
   in total for 10^4 points); log p = const + qmax + log s. If s underflows (Phi negligible at
   every point, an extreme alpha_sps) the lens is redone with an on-line log-sum-exp of f_p.

The truncated-normal gamma factor log p(gamma_k | eta) is computed once per eta per node.
Parallel over the flattened (eta, lens) pairs with OpenMP (``prange``); the per-eta sum over
lenses is done afterwards in lens order, so results do not depend on the number of threads.
"""
import numpy as np
cimport cython
from cython.parallel cimport prange, threadid
from libc.math cimport exp, log, erfc, isfinite, INFINITY, NAN
from scipy.special.cython_special cimport log_ndtr
from sl_cy._numerics cimport (SQRT2, INV_SQRT2, LOG_SQRT_2PI, fast_log_ndtr, log_gauss_norm, log_ndtr_diff_h,
                              resolve_threads)
from sl_cy._population cimport (PopModel, EtaC, pop_init, sk_z, sk_Phi, size_z, halo_z, halo_slope,
                                gamma_log_pdf, gamma_log_norm as _gamma_log_norm, gamma_in_support,
                                gamma_log_norm_grad, gamma_log_pdf_grad)

cdef double CUT = 40.0

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
    /* out[i] = exp(u[i] - shift) * P[i] with P[i] = erfc(c z[i]) / 2 (= Phi(-sqrt 2 c z[i])) */
    SL_CY_CLONES static void sl_cy_exp_ndtr(const double* u, double shift, const double* z, double c,
                                            double* P, double* out, ptrdiff_t n) {
        SL_CY_SIMD
        for (ptrdiff_t i = 0; i < n; i++) {
            double f = 0.5 * erfc(c * z[i]);
            P[i] = f;
            out[i] = exp(u[i] - shift) * f;
        }
    }
    /* out[i] = phi(a z[i]) / P[i], phi the standard normal density */
    SL_CY_CLONES static void sl_cy_gauss_ratio(const double* z, double a, const double* P, double* out,
                                               ptrdiff_t n) {
        SL_CY_SIMD
        for (ptrdiff_t i = 0; i < n; i++) {
            double x = a * z[i];
            out[i] = exp(-0.5 * x * x - 0.9189385332046728) / P[i];
        }
    }
    """
    void sl_cy_exp_ndtr(const double* u, double shift, const double* z, double c, double* P, double* out,
                        Py_ssize_t n) noexcept nogil
    void sl_cy_gauss_ratio(const double* z, double a, const double* P, double* out, Py_ssize_t n) noexcept nogil


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


cdef double lens_logp(const PopModel* pm, const EtaC* e, const double* lg, double logRe, double m_obs,
                      const double* L, const double* logMh, const int* nodes, Py_ssize_t nk, const double* logw0,
                      Py_ssize_t n, const double* dlg, double* grad, double* work) noexcept nogil:
    """log p(d_i | eta) of one lens from its compacted valid points (-inf if there are none).

    The points of gamma node k are ``nodes[k]:nodes[k+1]`` (nk nodes, nodes[nk] = n).
    ``lg[k]`` = log p(gamma_k | eta) (all 0 for a fixed-gamma grid). With ``grad`` != NULL the
    same pass also accumulates d log p_i / d eta (6 values) into ``grad`` (overwritten): the
    weighted mean over points of d log f_p / d eta (:func:`_point_dlogf`; ``dlg[2k:2k+2]`` =
    d lg[k] / d(mu_gamma, sigma_gamma), NULL for a fixed-gamma grid) plus d const / d sigma_h;
    NaN when log p_i = -inf. ``work``: scratch of ``WORK_PER_POINT`` doubles per point (pass 1
    stores q_p and the residuals of the points kept, pass 2 reads them)."""
    cdef Py_ssize_t p, j, m = 0, pmax = -1, k
    cdef int c
    cdef double inv_sh = 1.0 / e.sigma_h
    cdef double q, qmax = -INFINITY, f, ref, s, thr, xs, wgt, resc, mills
    cdef double const
    cdef double z[4]
    cdef double d[6]
    cdef double sg[6]
    cdef double M, a0, a1, a2, a3
    cdef PopModel lpm
    cdef EtaC le
    # scratch, one array of n each: q_p, the residuals (z_s, z_r, z_o, z_h), the point index,
    # Phi(a z_s), the weight exp(q_p - qmax) Phi and the inverse Mills ratio
    cdef double* qb = work
    cdef double* zs = work + n
    cdef double* zr = work + 2 * n
    cdef double* zo = work + 3 * n
    cdef double* zh = work + 4 * n
    cdef double* ib = work + 5 * n
    cdef double* Pb = work + 6 * n
    cdef double* wb = work + 7 * n
    cdef double* mb = work + 8 * n
    for c in range(6):
        sg[c] = 0.0
    if grad != NULL:
        for c in range(6):
            grad[c] = NAN
    if n <= 0:
        return -INFINITY
    # pass 1: the log integrand q_p at each point without the skew-normal log Phi(a z_s) term (an
    # upper bound of it, log Phi <= 0) and without the constant normalisations, with its
    # standardised residuals z_s (skew-normal), z_r (size), z_o (observed mass), z_h (halo); the
    # model and eta are copied to locals so that the compiler may vectorise the loop
    lpm = pm[0]
    le = e[0]
    for k in range(nk):         # log p(gamma_k | eta), constant over the points of node k
        for p in range(nodes[k], nodes[k + 1]):
            qb[p] = logw0[p] + lg[k]
    for p in range(n):
        M = L[p] - le.alpha_sps
        a0 = sk_z(&lpm, M)
        a1 = size_z(&lpm, M, logRe)
        a2 = (m_obs - M) * lpm.inv_so
        a3 = halo_z(&lpm, &le, inv_sh, M, logRe, logMh[p])
        zs[p] = a0
        zr[p] = a1
        zo[p] = a2
        zh[p] = a3
        qb[p] = qb[p] - 0.5 * (a0 * a0 + a1 * a1 + a2 * a2 + a3 * a3)
    for p in range(n):
        if qb[p] > qmax:
            qmax = qb[p]
            pmax = p
    if pmax < 0:
        return -INFINITY
    # the maximum f_max of the full log integrand lies in [qmax + log Phi(a z_pmax), qmax]
    thr = qmax + fast_log_ndtr(pm.a_skew * zs[pmax]) - CUT
    # keep the points with q_p >= thr (the others contribute < e^-CUT each), compacted in place
    for p in range(n):
        if qb[p] >= thr:
            qb[m] = qb[p]
            zs[m] = zs[p]
            zr[m] = zr[p]
            zo[m] = zo[p]
            zh[m] = zh[p]
            ib[m] = p
            m += 1
    # pass 2 (fast path): s = sum exp(q_p - qmax) Phi(a z_p), Phi = erfc(-a z / sqrt 2) / 2, vectorised
    sl_cy_exp_ndtr(qb, qmax, zs, -pm.ask, Pb, wb, m)
    if grad != NULL:
        sl_cy_gauss_ratio(zs, pm.a_skew, Pb, mb, m)
    s = 0.0
    k = 0
    for j in range(m):
        xs = -pm.ask * zs[j]
        if xs < 14.0:
            wgt = wb[j]
        else:
            wgt = exp(qb[j] - qmax + log_ndtr(-xs * SQRT2))
        s = s + wgt
        if grad != NULL:
            p = <Py_ssize_t>ib[j]
            while p >= nodes[k + 1]:        # the kept points are in order: their node only advances
                k += 1
            z[0] = zs[j]
            z[1] = zr[j]
            z[2] = zo[j]
            z[3] = zh[j]
            mills = mb[j] if pm.a_skew * z[0] > -5.0 else _mills(pm.a_skew * z[0])
            _point_dlogf(pm, e, inv_sh, L[p], z, mills, dlg, k, d)
            for c in range(6):
                sg[c] = sg[c] + wgt * d[c]
    if not s > 1e-250:
        # robust path (Phi underflows at every relevant point): on-line log-sum-exp of f_p
        ref = thr + CUT
        s = 0.0
        k = 0
        for c in range(6):
            sg[c] = 0.0
        for j in range(m):
            z[0] = zs[j]
            z[1] = zr[j]
            z[2] = zo[j]
            z[3] = zh[j]
            f = qb[j] + log_ndtr(pm.a_skew * z[0])
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
                p = <Py_ssize_t>ib[j]
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
        for t in prange(ne * nl, schedule="guided", num_threads=nt):
            r = t // nl
            i = t - r * nl
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

