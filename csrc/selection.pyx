# cython: language_level=3
"""Compiled kernel of the selection normaliser A(eta) (sl_cy.selection).

For a Monte-Carlo bank of galaxies (logM*, logRe, logMh, gamma_in) drawn from an
eta-independent proposal q, with per-galaxy base_k = log T_k - log q_k, the importance-sampling
estimate of A(eta) needs, per eta, the sums over k of w_k and w_k^2 with

    log w_k = base_k + log p_sk(M_k) + log p(logRe_k | M_k) + log p(logMh_k | M_k, logRe_k, eta)
              + log p(gamma_k | eta),          M_k = logM*_k - alpha_sps.

The densities reproduce sl_cy.population exactly (skew-normal, size-mass, halo-mass and
truncated-normal gamma laws); tests check equality against the Python definitions.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport exp, log, erfc, sqrt, INFINITY
from cython.parallel cimport prange
from scipy.special.cython_special cimport log_ndtr

cnp.import_array()

cdef double LOG_SQRT_2PI = 0.9189385332046727
cdef double INV_SQRT2 = 0.7071067811865476


cdef inline double _log_ndtr(double t) noexcept nogil:
    # log Phi(t): erfc is accurate (relative) for t > -5; scipy's asymptotic form below
    if t > -5.0:
        return log(0.5 * erfc(-t * INV_SQRT2))
    return log_ndtr(t)


cdef inline double _log_target(const SelConsts* c, double x, double re, double mh, double g,
                               const double* e, double gam_lognorm) noexcept nogil:
    cdef double M = x - e[0]
    cdef double z = (M - c.mu_star) / c.sigma_star
    cdef double lp = c.log_2_over_sig_star - LOG_SQRT_2PI - 0.5 * z * z + _log_ndtr(c.a_skew * z)
    cdef double muR = c.mu_R0 + c.beta_R * (M - c.pivot)
    z = (re - muR) / c.sigma_R
    lp += -0.5 * z * z - c.log_sigma_R - LOG_SQRT_2PI
    z = (mh - e[1] - e[2] * (M - c.pivot) - c.xi_h * (re - muR)) / e[3]
    lp += -0.5 * z * z - log(e[3]) - LOG_SQRT_2PI
    if g < c.gamma_lo or g > c.gamma_hi:
        return -INFINITY
    z = (g - e[4]) / e[5]
    lp += -0.5 * z * z - log(e[5]) - LOG_SQRT_2PI - gam_lognorm
    return lp


cdef class SelectionKernel:
    """Population constants of one model (picklable). See the module docstring."""

    def __init__(self, double mu_star, double sigma_star, double a_skew, double mu_R0, double beta_R,
                 double sigma_R, double xi_h, double pivot, double gamma_lo, double gamma_hi):
        self.c.mu_star = mu_star
        self.c.sigma_star = sigma_star
        self.c.a_skew = a_skew
        self.c.log_2_over_sig_star = log(2.0 / sigma_star)
        self.c.mu_R0 = mu_R0
        self.c.beta_R = beta_R
        self.c.sigma_R = sigma_R
        self.c.log_sigma_R = log(sigma_R)
        self.c.xi_h = xi_h
        self.c.pivot = pivot
        self.c.gamma_lo = gamma_lo
        self.c.gamma_hi = gamma_hi
        self._args = (mu_star, sigma_star, a_skew, mu_R0, beta_R, sigma_R, xi_h, pivot, gamma_lo, gamma_hi)

    def __reduce__(self):
        return (SelectionKernel, self._args)

    def log_target(self, const double[::1] x, const double[::1] re, const double[::1] mh,
                   const double[::1] g, const double[::1] eta, double gam_lognorm):
        """log p_sk(M) + log p(logRe|M) + log p(logMh|M, logRe, eta) + log p(gamma|eta) per galaxy
        for one eta (6,), M = x - alpha_sps; ``gam_lognorm`` = log of the truncated-normal mass."""
        cdef Py_ssize_t n = x.shape[0], k
        out = np.empty(n)
        cdef double[::1] o = out
        with nogil:
            for k in range(n):
                o[k] = _log_target(&self.c, x[k], re[k], mh[k], g[k], &eta[0], gam_lognorm)
        return out

    def weight_sums(self, const double[::1] x, const double[::1] re, const double[::1] mh,
                    const double[::1] g, const double[::1] base, const double[:, ::1] eta,
                    const double[::1] gam_lognorm, int n_threads=1):
        """For each eta row j: (sum_k w_k, sum_k w_k^2, max_k w_k), w_k = exp(base_k + log_target_k).

        Returns an array of shape (n_eta, 3). nogil loop; ``n_threads`` > 1 spreads the eta rows
        over OpenMP threads (each row is summed serially, so the result does not depend on it).
        """
        cdef Py_ssize_t n = x.shape[0], m = eta.shape[0], j
        if re.shape[0] != n or mh.shape[0] != n or g.shape[0] != n or base.shape[0] != n:
            raise ValueError("bank arrays must have the same length")
        if eta.shape[1] != 6 or gam_lognorm.shape[0] != m:
            raise ValueError("eta must have shape (n, 6) and gam_lognorm shape (n,)")
        out = np.zeros((m, 3))
        cdef double[:, ::1] o = out
        if n == 0 or m == 0:
            return out
        if n_threads < 1:
            n_threads = 1
        if n_threads == 1 or m == 1:
            with nogil:
                for j in range(m):
                    _sums(&self.c, n, &x[0], &re[0], &mh[0], &g[0], &base[0], &eta[j, 0], gam_lognorm[j], &o[j, 0])
        else:
            for j in prange(m, nogil=True, num_threads=n_threads, schedule="static"):
                _sums(&self.c, n, &x[0], &re[0], &mh[0], &g[0], &base[0], &eta[j, 0], gam_lognorm[j], &o[j, 0])
        return out


cdef void _sums(const SelConsts* c, Py_ssize_t n, const double* x, const double* re, const double* mh,
                const double* g, const double* base, const double* e, double gam_lognorm,
                double* out) noexcept nogil:
    # Same density as _log_target, rearranged for speed: the eta-constant terms are hoisted and
    # Phi(a z) of the skew-normal multiplies exp(...) instead of being logged (one exp + one erfc
    # per galaxy). Where Phi(a z) underflows (a z < -37) the weight is 0 instead of < 1e-300.
    cdef Py_ssize_t k
    cdef double s = 0.0, s2 = 0.0, wmax = 0.0, w, M, z, muR, lp, zh, zg
    cdef double alpha = e[0], mu_h = e[1], beta_h = e[2], inv_sh = 1.0 / e[3]
    cdef double mu_g = e[4], inv_sg = 1.0 / e[5]
    cdef double cst = (c.log_2_over_sig_star - LOG_SQRT_2PI - c.log_sigma_R - LOG_SQRT_2PI
                         - log(e[3]) - LOG_SQRT_2PI - log(e[5]) - LOG_SQRT_2PI - gam_lognorm)
    cdef double inv_ss = 1.0 / c.sigma_star, inv_sR = 1.0 / c.sigma_R
    cdef double ma = -c.a_skew * INV_SQRT2
    for k in range(n):
        if g[k] < c.gamma_lo or g[k] > c.gamma_hi:
            continue
        M = x[k] - alpha
        z = (M - c.mu_star) * inv_ss
        muR = c.mu_R0 + c.beta_R * (M - c.pivot)
        lp = (re[k] - muR) * inv_sR
        zh = (mh[k] - mu_h - beta_h * (M - c.pivot) - c.xi_h * (re[k] - muR)) * inv_sh
        zg = (g[k] - mu_g) * inv_sg
        w = exp(base[k] + cst - 0.5 * (z * z + lp * lp + zh * zh + zg * zg)) * 0.5 * erfc(ma * z)
        s += w
        s2 += w * w
        if w > wmax:
            wmax = w
    out[0] = s
    out[1] = s2
    out[2] = wmax


# ---------------------------------------------------------------------------------------------
# deterministic A(eta): product quadrature over a tabulated selection rate T(logM*, logRe, logMh, gamma)
# ---------------------------------------------------------------------------------------------
cdef inline void _interp4(const double* T, const double* F, const double* ax0, const Py_ssize_t* n,
                          const double* step, double x0, double x1, double x2, double x3,
                          double* outT, double* outF) noexcept nogil:
    """Multilinear interpolation of the C-ordered 4-D tables T and F (same axes), clamped to
    their range; F is skipped when NULL."""
    cdef double u[4]
    cdef double f[4]
    cdef Py_ssize_t i[4]
    cdef Py_ssize_t d, a, b, c, e, idx
    cdef double t, w, s = 0.0, sf = 0.0
    u[0] = x0
    u[1] = x1
    u[2] = x2
    u[3] = x3
    for d in range(4):
        t = (u[d] - ax0[d]) / step[d]
        if t <= 0.0:
            i[d] = 0
            f[d] = 0.0
        elif t >= n[d] - 1:
            i[d] = n[d] - 2
            f[d] = 1.0
        else:
            i[d] = <Py_ssize_t>t
            if i[d] > n[d] - 2:
                i[d] = n[d] - 2
            f[d] = t - i[d]
    for a in range(2):
        for b in range(2):
            for c in range(2):
                for e in range(2):
                    w = (f[0] if a else 1.0 - f[0]) * (f[1] if b else 1.0 - f[1]) \
                        * (f[2] if c else 1.0 - f[2]) * (f[3] if e else 1.0 - f[3])
                    if w == 0.0:
                        continue
                    idx = (((i[0] + a) * n[1] + (i[1] + b)) * n[2] + (i[2] + c)) * n[3] + (i[3] + e)
                    s += w * T[idx]
                    if F != NULL:
                        sf += w * F[idx]
    outT[0] = s
    outF[0] = sf


cdef void _quad_one(const SelConsts* c, const double* T, const double* F, const double* ax0,
                    const Py_ssize_t* n, const double* step,
                    Py_ssize_t nm, const double* Mn, const double* wM,
                    Py_ssize_t nr, const double* tR, const double* wR,
                    Py_ssize_t nh, const double* tH, const double* wH,
                    Py_ssize_t ngam, const double* gn, const double* wg,
                    const double* e, double* out) noexcept nogil:
    # A = sum_M wM p_sk(M) sum_R wR sum_H wH sum_g wg T(M + alpha, R, H, g), nodes of R and H
    # scaled to the (conditional) Gaussian of each law; wM already includes p_sk(M) dM.
    cdef Py_ssize_t i, j, k, l
    cdef double M, muR, R, muH, H, sA = 0.0, sF = 0.0, aR, aH, vT, vF = 0.0
    for i in range(nm):
        M = Mn[i]
        muR = c.mu_R0 + c.beta_R * (M - c.pivot)
        for j in range(nr):
            R = muR + c.sigma_R * tR[j]
            muH = e[1] + e[2] * (M - c.pivot) + c.xi_h * (R - muR)
            aR = wM[i] * wR[j]
            for k in range(nh):
                H = muH + e[3] * tH[k]
                aH = aR * wH[k]
                for l in range(ngam):
                    _interp4(T, F, ax0, n, step, M + e[0], R, H, gn[l], &vT, &vF)
                    sA += aH * wg[l] * vT
                    sF += aH * wg[l] * vF
    out[0] = sA
    out[1] = sF


def quad_selection(SelectionKernel kern, const double[:, :, :, ::1] T, const double[:, :, :, ::1] F,
                   const double[::1] axis_start, const double[::1] axis_step,
                   const double[::1] M_nodes, const double[::1] M_weights,
                   const double[::1] R_t, const double[::1] R_w, const double[::1] H_t, const double[::1] H_w,
                   const double[:, ::1] gamma_nodes, const double[:, ::1] gamma_weights,
                   const double[:, ::1] eta, int n_threads=1, bint lens_fraction=True):
    """A(eta) and the lens fraction for a batch of eta by product quadrature (see
    :class:`sl_cy.selection.SelectionQuadrature`).

    ``R_t``/``H_t`` are standard-normal nodes (scaled per law), ``gamma_nodes``/``gamma_weights``
    (n_eta, n_g) the per-eta nodes and weights of the truncated gamma law. Returns (n_eta, 2):
    A and, with ``lens_fraction`` (otherwise 0, and F is not read), E[1 - exp(-T)].
    """
    cdef Py_ssize_t m = eta.shape[0], j
    cdef Py_ssize_t n[4]
    cdef double ax0[4]
    cdef double st[4]
    cdef Py_ssize_t d
    for d in range(4):
        n[d] = T.shape[d]
        ax0[d] = axis_start[d]
        st[d] = axis_step[d]
        if n[d] < 2 or F.shape[d] != n[d]:
            raise ValueError("T and F must be equal 4-D tables with >= 2 nodes per axis")
    if eta.shape[1] != 6 or gamma_nodes.shape[0] != m or gamma_weights.shape[0] != m:
        raise ValueError("eta must be (n, 6) with one row of gamma nodes/weights per eta")
    out = np.zeros((m, 2))
    cdef double[:, ::1] o = out
    cdef Py_ssize_t nm = M_nodes.shape[0], nr = R_t.shape[0], nh = H_t.shape[0], ng = gamma_nodes.shape[1]
    cdef const double* Fp = &F[0, 0, 0, 0] if lens_fraction else NULL
    if m == 0:
        return out
    for j in prange(m, nogil=True, num_threads=max(n_threads, 1), schedule="static"):
        _quad_one(&kern.c, &T[0, 0, 0, 0], Fp, ax0, n, st, nm, &M_nodes[0], &M_weights[0],
                  nr, &R_t[0], &R_w[0], nh, &H_t[0], &H_w[0], ng, &gamma_nodes[j, 0], &gamma_weights[j, 0],
                  &eta[j, 0], &o[j, 0])
    return out
