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
from libc.math cimport exp, log, isfinite, INFINITY, NAN
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange
from sl_cy._numerics cimport log_gauss_norm, resolve_threads, lagrange4_weights, lagrange4_dweights
from sl_cy._population cimport (PopModel, EtaC, pop_init, sk_z, sk_Phi, sk_log_pdf, size_mean, size_z,
                                halo_mean, halo_z, gamma_in_support, gamma_z, gamma_log_norm_mass,
                                gamma_log_norm_grad)

cnp.import_array()


cdef inline double _log_target(const PopModel* c, double x, double re, double mh, double g,
                               const EtaC* e, double gam_lognorm) noexcept nogil:
    cdef double M = x - e.alpha_sps
    cdef double z
    if not gamma_in_support(c, g):
        return -INFINITY
    cdef double lp = sk_log_pdf(c, M)
    z = size_z(c, M, re)
    lp += -0.5 * z * z + c.log_c_R
    z = halo_z(c, e, 1.0 / e.sigma_h, M, re, mh)
    lp += -0.5 * z * z + log_gauss_norm(e.sigma_h)
    z = gamma_z(e, g)
    lp += -0.5 * z * z + gamma_log_norm_mass(e.sigma_gamma, gam_lognorm)
    return lp


cdef class SelectionKernel:
    """Population constants of one model (picklable). See the module docstring."""

    def __init__(self, double mu_star, double sigma_star, double a_skew, double mu_R0, double beta_R,
                 double sigma_R, double xi_h, double pivot, double gamma_lo, double gamma_hi):
        self.c.mu_star = mu_star
        self.c.sigma_star = sigma_star
        self.c.a_skew = a_skew
        self.c.mu_R0 = mu_R0
        self.c.beta_R = beta_R
        self.c.sigma_R = sigma_R
        self.c.xi_h = xi_h
        self.c.sigma_obs = 1.0          # not used by A(eta)
        self.c.pivot = pivot
        self.c.gamma_lo = gamma_lo
        self.c.gamma_hi = gamma_hi
        pop_init(&self.c)
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
                o[k] = _log_target(&self.c, x[k], re[k], mh[k], g[k], <const EtaC*>&eta[0], gam_lognorm)
        return out

    def weight_sums(self, const double[::1] x, const double[::1] re, const double[::1] mh,
                    const double[::1] g, const double[::1] base, const double[:, ::1] eta,
                    const double[::1] gam_lognorm, n_threads=1):
        """For each eta row j: (sum_k w_k, sum_k w_k^2, max_k w_k), w_k = exp(base_k + log_target_k).

        Returns an array of shape (n_eta, 3). nogil loop; ``n_threads`` (as
        ``sl_cy.parallel.resolve_n_threads``: None or -1 all cores) > 1 spreads the eta rows
        over OpenMP threads (each row is summed serially, so the result does not depend on it).
        """
        cdef Py_ssize_t n = x.shape[0], m = eta.shape[0], j
        cdef int nt = resolve_threads(n_threads)
        if re.shape[0] != n or mh.shape[0] != n or g.shape[0] != n or base.shape[0] != n:
            raise ValueError("bank arrays must have the same length")
        if eta.shape[1] != 6 or gam_lognorm.shape[0] != m:
            raise ValueError("eta must have shape (n, 6) and gam_lognorm shape (n,)")
        out = np.zeros((m, 3))
        cdef double[:, ::1] o = out
        if n == 0 or m == 0:
            return out
        if nt == 1 or m == 1:
            with nogil:
                for j in range(m):
                    _sums(&self.c, n, &x[0], &re[0], &mh[0], &g[0], &base[0], <const EtaC*>&eta[j, 0], gam_lognorm[j], &o[j, 0])
        else:
            for j in prange(m, nogil=True, num_threads=nt, schedule="static"):
                _sums(&self.c, n, &x[0], &re[0], &mh[0], &g[0], &base[0], <const EtaC*>&eta[j, 0], gam_lognorm[j], &o[j, 0])
        return out


cdef void _sums(const PopModel* c, Py_ssize_t n, const double* x, const double* re, const double* mh,
                const double* g, const double* base, const EtaC* e, double gam_lognorm,
                double* out) noexcept nogil:
    # Same density as _log_target, arranged for speed: the eta-constant normalisations are
    # hoisted and Phi(a z) of the skew-normal multiplies exp(...) instead of being logged (one exp
    # + one erfc per galaxy). Where Phi(a z) underflows (a z < -37) the weight is 0 instead of < 1e-300.
    cdef Py_ssize_t k
    cdef double s = 0.0, s2 = 0.0, wmax = 0.0, w, M, z, zr, zh, zg
    cdef double inv_sh = 1.0 / e.sigma_h
    cdef double cst = (c.log_c_sk + c.log_c_R + log_gauss_norm(e.sigma_h)
                       + gamma_log_norm_mass(e.sigma_gamma, gam_lognorm))
    for k in range(n):
        if not gamma_in_support(c, g[k]):
            continue
        M = x[k] - e.alpha_sps
        z = sk_z(c, M)
        zr = size_z(c, M, re[k])
        zh = halo_z(c, e, inv_sh, M, re[k], mh[k])
        zg = gamma_z(e, g[k])
        w = exp(base[k] + cst - 0.5 * (z * z + zr * zr + zh * zh + zg * zg)) * sk_Phi(c, z)
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
cdef inline double _locate(double x, double x0, double step, Py_ssize_t n, Py_ssize_t* i, double* f) noexcept nogil:
    """Cell index and fraction of x on a regular axis (clamped to its range); returns d f / d x
    (1 / step inside the axis, 0 where x is clamped)."""
    cdef double t = (x - x0) / step
    if t <= 0.0:
        i[0] = 0
        f[0] = 0.0
        return 0.0
    elif t >= n - 1:
        i[0] = n - 2
        f[0] = 1.0
        return 0.0
    elif t == t:
        i[0] = <Py_ssize_t>t
        if i[0] > n - 2:
            i[0] = n - 2
        f[0] = t - i[0]
        return 1.0 / step
    else:
        # nan (a nan point, or inf - inf from a huge eta): the cast would be undefined and index
        # out of bounds; cell 0 with a nan fraction makes the interpolated value nan
        i[0] = 0
        f[0] = t
        return 0.0


cdef inline double _interp_cell(const double* T, const double* LT, const Py_ssize_t* n, const Py_ssize_t* i,
                                const double* f, double* df) noexcept nogil:
    """Interpolation of the C-ordered 4-D rate table T in the cell (i, f) located by
    :func:`_locate` per axis: multilinear in log T where all 16 corners are > 0 (T grows nearly
    exponentially with the masses, so this is ~6x more accurate than linear in T: 0.2 % instead
    of 1.4 % on the population average at the default truth), multilinear in T in cells that
    touch the edge of the lensing region (T = 0 at some corner). ``LT`` is log T (-inf where
    T = 0), precomputed. With ``df`` != NULL, d value / d f_d (d = 0..3) is written to df."""
    cdef Py_ssize_t a, b, c, e, idx, q = 0, d
    cdef Py_ssize_t v[16]
    cdef double wt[16]
    cdef double u[4]
    cdef double w01, w012, s = 0.0, sl = 0.0, val
    cdef double gl[4]
    cdef bint positive = True
    for a in range(2):
        for b in range(2):
            w01 = (f[0] if a else 1.0 - f[0]) * (f[1] if b else 1.0 - f[1])
            for c in range(2):
                w012 = w01 * (f[2] if c else 1.0 - f[2])
                for e in range(2):
                    wt[q] = w012 * (f[3] if e else 1.0 - f[3])
                    idx = (((i[0] + a) * n[1] + (i[1] + b)) * n[2] + (i[2] + c)) * n[3] + (i[3] + e)
                    v[q] = idx
                    if wt[q] != 0.0:
                        if LT[idx] == -INFINITY:
                            positive = False
                        else:
                            sl += wt[q] * LT[idx]
                    q += 1
    if df != NULL:
        # d wt_q / d f_d = +-(product of the other three factors); summed against LT (log branch) or T
        for d in range(4):
            gl[d] = 0.0
        q = 0
        for a in range(2):
            u[0] = f[0] if a else 1.0 - f[0]
            for b in range(2):
                u[1] = f[1] if b else 1.0 - f[1]
                for c in range(2):
                    u[2] = f[2] if c else 1.0 - f[2]
                    for e in range(2):
                        u[3] = f[3] if e else 1.0 - f[3]
                        val = LT[v[q]] if positive else T[v[q]]
                        if positive and wt[q] == 0.0:
                            val = 0.0        # a corner outside the cell's weight (f = 0 or 1 exactly)
                        gl[0] += (1.0 if a else -1.0) * u[1] * u[2] * u[3] * val
                        gl[1] += (1.0 if b else -1.0) * u[0] * u[2] * u[3] * val
                        gl[2] += (1.0 if c else -1.0) * u[0] * u[1] * u[3] * val
                        gl[3] += (1.0 if e else -1.0) * u[0] * u[1] * u[2] * val
                        q += 1
    if positive:
        val = exp(sl)
        if df != NULL:
            for d in range(4):
                df[d] = val * gl[d]
        return val
    for q in range(16):
        if wt[q] != 0.0:
            s += wt[q] * T[v[q]]
    if df != NULL:
        for d in range(4):
            df[d] = gl[d]
    return s


#: The rate table is interpolated by 4-point (cubic) Lagrange in log T along all four axes; at most
#: this many gamma_in nodes (a per-eta row buffer on the stack).
cdef enum:
    MAX_GAMMA_AXIS = 256


cdef inline double _locate4(double x, double x0, double step, Py_ssize_t n, Py_ssize_t* s, double* w,
                            double* dw) noexcept nogil:
    """Cubic Lagrange stencil of x on a regular axis of n >= 4 nodes (clamped to its range): the
    first stencil node s (nodes s .. s+3: the cell's two nodes and one more each side, shifted
    inwards at the ends of the axis), its 4 weights w and (dw != NULL) their derivatives
    d w / d f. Returns d f / d x (1 / step inside the axis, 0 where x is clamped; a nan x gives
    nan weights)."""
    cdef double t = (x - x0) / step, r = 1.0 / step
    cdef Py_ssize_t i
    if t <= 0.0:
        t = 0.0
        r = 0.0
    elif t >= n - 1:
        t = n - 1
        r = 0.0
    elif not t == t:
        s[0] = 0
        for i in range(4):
            w[i] = NAN
            if dw != NULL:
                dw[i] = NAN
        return 0.0
    i = <Py_ssize_t>t
    if i < 1:
        i = 1
    if i > n - 3:
        i = n - 3
    s[0] = i - 1
    lagrange4_weights(t - i, w)
    if dw != NULL:
        lagrange4_dweights(t - i, dw)
    return r


cdef inline void _contract4(const double* src, Py_ssize_t sa, const double* c, Py_ssize_t nb, Py_ssize_t sb,
                            Py_ssize_t G, double* out) noexcept nogil:
    """out[b G + g] = sum_{a < 4} c[a] src[a sa + b sb + g] for b < nb, g < G: one axis of the log-rate
    table (or of a block already contracted along other axes) contracted with 4 Lagrange weights,
    for nb rows of G contiguous gamma_in values. A -inf of log T (T = 0) makes the entry -inf or nan.

    The table is contracted one axis at a time (logM*, then logRe, then logMh: 4 + 4 + 4
    multiply-adds per entry, each intermediate shared by the nodes that need it), not over
    (logM*, logRe) at once (16 per entry), in :func:`_quad_one` and :func:`_interp_point`."""
    cdef Py_ssize_t b, g
    cdef const double* p0
    cdef const double* p1
    cdef const double* p2
    cdef const double* p3
    cdef double* o
    cdef double c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3]
    for b in range(nb):
        p0 = src + b * sb
        p1 = p0 + sa
        p2 = p1 + sa
        p3 = p2 + sa
        o = out + b * G
        for g in range(G):
            o[g] = c0 * p0[g] + c1 * p1[g] + c2 * p2[g] + c3 * p3[g]


cdef inline void _contract_m(const double* LT, const Py_ssize_t* n, Py_ssize_t sm, const double* cm,
                             Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t h0, Py_ssize_t h1, Py_ssize_t g0,
                             Py_ssize_t g1, double* P) noexcept nogil:
    """P[((r - r0) H + h - h0) G + g - g0] = sum_{a < 4} cm[a] LT[sm + a, r, h, g] for r0 <= r < r1,
    h0 <= h < h1, g0 <= g < g1 (H = h1 - h0, G = g1 - g0): the table contracted over logM*."""
    cdef Py_ssize_t r, H = h1 - h0, G = g1 - g0
    for r in range(r1 - r0):
        _contract4(LT + (((sm * n[1] + r0 + r) * n[2] + h0) * n[3] + g0), n[1] * n[2] * n[3], cm, H, n[3], G,
                   P + r * H * G)


cdef inline double _one_minus_exp(double t, double e1) noexcept nogil:
    """1 - exp(-t) for t >= 0 given e1 = exp(-t), to full relative precision: its Taylor series
    (to t^9: truncation < 1e-17 relative) below t = 1/16, 1 - e1 above (cancellation costs at
    most ~16 ulp there). With the exp(-t) the gradient needs anyway, this replaces expm1 (30 % of
    the time of A(eta) before)."""
    if t < 0.0625:
        return t * (1.0 - t * 0.5 * (1.0 - t * (1.0 / 3.0) * (1.0 - t * 0.25 * (1.0 - t * 0.2 * (
            1.0 - t * (1.0 / 6.0) * (1.0 - t * (1.0 / 7.0) * (1.0 - t * 0.125 * (1.0 - t * (1.0 / 9.0)))))))))
    return 1.0 - e1


cdef inline double _dot4(const double* c, const double* v) noexcept nogil:
    return c[0] * v[0] + c[1] * v[1] + c[2] * v[2] + c[3] * v[3]


cdef inline double _interp_point(const double* T, const double* LT, const double* ax0, const Py_ssize_t* n,
                                 const double* step, double x0, double x1, double x2, double x3) noexcept nogil:
    """The rate table at one point: cubic Lagrange in log T along the four axes (as the
    quadrature, :func:`_quad_one`); where the 256-node stencil touches T = 0 (the edge of the
    lensing region), the multilinear rule of :func:`_interp_cell`."""
    cdef Py_ssize_t i[4]
    cdef double f[4]
    cdef Py_ssize_t s[4]
    cdef double c[16]
    cdef double P[64]
    cdef double S[16]
    cdef double row[4]
    cdef double x[4]
    cdef double v
    cdef Py_ssize_t d
    x[0], x[1], x[2], x[3] = x0, x1, x2, x3
    for d in range(4):
        _locate4(x[d], ax0[d], step[d], n[d], &s[d], &c[4 * d], NULL)
    _contract_m(LT, n, s[0], &c[0], s[1], s[1] + 4, s[2], s[2] + 4, s[3], s[3] + 4, P)
    _contract4(P, 16, &c[4], 4, 4, 4, S)
    _contract4(S, 4, &c[8], 1, 0, 4, row)
    v = _dot4(&c[12], row)
    if isfinite(v):
        return exp(v)
    _locate(x0, ax0[0], step[0], n[0], &i[0], &f[0])
    _locate(x1, ax0[1], step[1], n[1], &i[1], &f[1])
    _locate(x2, ax0[2], step[2], n[2], &i[2], &f[2])
    _locate(x3, ax0[3], step[3], n[3], &i[3], &f[3])
    return _interp_cell(T, LT, n, i, f, NULL)


cdef void _quad_one(const PopModel* c, const double* T, const double* LT, const double* ax0,
                    const Py_ssize_t* n, const double* step,
                    Py_ssize_t nm, const double* Mn, const double* wM,
                    Py_ssize_t nr, const double* tR, const double* wR,
                    Py_ssize_t nh, const double* tH, const double* wH, double h_lo, double h_hi,
                    Py_ssize_t ngam, const double* gn, const double* wg,
                    const EtaC* e, double* out, const double* dgn, const double* dwg, double* grad) noexcept nogil:
    # sum_M wM sum_R wR sum_H wH(M, R) sum_g wg  {T, 1 - exp(-T)}(M + alpha, R, H, g): nodes of R
    # scaled to the size-mass Gaussian (Gauss-Hermite); H by Gauss-Legendre on the halo-mass
    # Gaussian's +-6 sigma intersected with the halo support [h_lo, h_hi] (galaxies outside it
    # are not lenses of the model); wM already includes p_sk(M) dM, wg the truncated gamma law.
    #
    # T is interpolated as _interp_point (cubic Lagrange in log T along the four axes), arranged
    # for speed, one table axis at a time (_contract4): per M node the table is contracted over
    # logM* into a block over the (logRe, logMh, gamma_in) rows the R, H and gamma nodes of that M
    # need (_contract_m), per (M, R) node over logRe into a slab over (logMh, gamma_in), per
    # (M, R, H) node over logMh into a row along gamma_in, which the gamma nodes (shared by all
    # (M, R, H)) then interpolate. Where the stencil touches T = 0, the multilinear _interp_cell.
    #
    # With grad != NULL: d E[1 - exp(-T)] / d eta (6 values) of this very sum, by the chain rule
    # through everything that moves with eta: the table coordinate M + alpha_sps; the halo nodes
    # H_k = mid + half t_k (mid, half follow mu_H and sigma_h unless clipped to the halo support)
    # and their weights half wH_k N(H_k; mu_H, sigma_h); the gamma nodes and weights (their
    # derivatives dgn, dwg (ngam, 2) w.r.t. (mu_gamma, sigma_gamma), from the caller). mu_H =
    # mu_h + beta_h (M - pivot) + ..., so d/d beta_h = (M - pivot) d/d mu_H.
    cdef Py_ssize_t i, j, k, l, d, g0, g1, G, hs, h0, h1, sm, sr, o, r0, r1, hu0, hu1, HU
    cdef double M, muR, R, muH, H, sA = 0.0, sF = 0.0, aR, aH, vT, lo, hi, half, mid, z, F, e1, ew, term
    cdef double sh = e.sigma_h, inv_sh = 1.0 / e.sigma_h, lnh = log_gauss_norm(e.sigma_h)
    cdef double dfx0, dfx2, dfm4, dfh4, dlo_m, dlo_s, dhi_m, dhi_s, dhalf_m, dhalf_s, dmid_m, dmid_s
    cdef double dH_m, dH_s, dla_m, dla_s, gF0, gF2, gF3, gmuH, lv
    cdef double g[6]
    cdef double dv[4]
    cdef Py_ssize_t ic[4]
    cdef double fc[4]
    cdef Py_ssize_t ig[64]
    cdef double fg[64]
    cdef double dfg[64]
    cdef Py_ssize_t gs[64]
    cdef double cg[256]
    cdef double dcg[256]
    cdef double dfg4[64]
    cdef Py_ssize_t srj[64]
    cdef Py_ssize_t h0j[64]
    cdef Py_ssize_t h1j[64]
    cdef double cRj[256]
    cdef double cM[4]
    cdef double dcM[4]
    cdef double cH[4]
    cdef double dcH[4]
    cdef double row[MAX_GAMMA_AXIS]
    cdef double rowM[MAX_GAMMA_AXIS]
    cdef double rowH[MAX_GAMMA_AXIS]
    cdef double* P
    cdef double* S
    cdef double* PM = NULL
    cdef double* SM = NULL
    cdef Py_ssize_t npb
    if ngam > 64 or nr > 64 or n[3] > MAX_GAMMA_AXIS:
        out[0] = NAN
        out[1] = NAN
        return
    for d in range(6):
        g[d] = 0.0
    g0 = n[3]
    g1 = 0
    for l in range(ngam):
        dfg[l] = _locate(gn[l], ax0[3], step[3], n[3], &ig[l], &fg[l])
        dfg4[l] = _locate4(gn[l], ax0[3], step[3], n[3], &gs[l], &cg[4 * l], &dcg[4 * l])
        if gs[l] < g0:
            g0 = gs[l]
        if gs[l] + 4 > g1:
            g1 = gs[l] + 4
    G = g1 - g0
    npb = (n[1] + 1) * n[2] * G          # the logM*-contracted block, then the (M, R) slab
    P = <double*>malloc(npb * (2 if grad != NULL else 1) * sizeof(double))
    if P == NULL:
        out[0] = NAN
        out[1] = NAN
        return
    S = P + n[1] * n[2] * G
    if grad != NULL:
        PM = P + npb
        SM = PM + n[1] * n[2] * G
    for i in range(nm):
        M = Mn[i]
        muR = size_mean(c, M)
        dfm4 = _locate4(M + e.alpha_sps, ax0[0], step[0], n[0], &sm, cM, dcM)
        # the (logRe, logMh) rows the stencils of this M's R and H nodes need (tH ascending: the
        # first and last H node)
        r0 = n[1]
        r1 = 0
        hu0 = n[2]
        hu1 = 0
        for j in range(nr):
            R = muR + c.sigma_R * tR[j]
            muH = halo_mean(c, e, M, R)
            lo = muH - 6.0 * sh
            hi = muH + 6.0 * sh
            if lo < h_lo:
                lo = h_lo
            if hi > h_hi:
                hi = h_hi
            if not hi > lo:
                srj[j] = -1
                continue
            half = 0.5 * (hi - lo)
            mid = 0.5 * (hi + lo)
            _locate4(R, ax0[1], step[1], n[1], &srj[j], &cRj[4 * j], NULL)
            _locate4(mid + half * tH[0], ax0[2], step[2], n[2], &h0j[j], cH, NULL)
            _locate4(mid + half * tH[nh - 1], ax0[2], step[2], n[2], &h1j[j], cH, NULL)
            h1j[j] = h1j[j] + 4
            r0 = min(r0, srj[j])
            r1 = max(r1, srj[j] + 4)
            hu0 = min(hu0, h0j[j])
            hu1 = max(hu1, h1j[j])
        if r1 <= r0:
            continue
        HU = hu1 - hu0
        _contract_m(LT, n, sm, cM, r0, r1, hu0, hu1, g0, g1, P)
        if grad != NULL:
            _contract_m(LT, n, sm, dcM, r0, r1, hu0, hu1, g0, g1, PM)
        gmuH = 0.0
        for j in range(nr):
            if srj[j] < 0:
                continue
            R = muR + c.sigma_R * tR[j]
            muH = halo_mean(c, e, M, R)
            lo = muH - 6.0 * sh
            hi = muH + 6.0 * sh
            dlo_m, dlo_s, dhi_m, dhi_s = 1.0, -6.0, 1.0, 6.0
            if lo < h_lo:
                lo = h_lo
                dlo_m, dlo_s = 0.0, 0.0
            if hi > h_hi:
                hi = h_hi
                dhi_m, dhi_s = 0.0, 0.0
            half = 0.5 * (hi - lo)
            mid = 0.5 * (hi + lo)
            dhalf_m, dhalf_s = 0.5 * (dhi_m - dlo_m), 0.5 * (dhi_s - dlo_s)
            dmid_m, dmid_s = 0.5 * (dhi_m + dlo_m), 0.5 * (dhi_s + dlo_s)
            aR = wM[i] * wR[j]
            h0 = h0j[j]
            h1 = h1j[j]
            # the (M, R) slab over (logMh, gamma_in): the M block contracted over logRe
            _contract4(P + ((srj[j] - r0) * HU + h0 - hu0) * G, HU * G, &cRj[4 * j], h1 - h0, G, G, S)
            if grad != NULL:
                _contract4(PM + ((srj[j] - r0) * HU + h0 - hu0) * G, HU * G, &cRj[4 * j], h1 - h0, G, G, SM)
            for k in range(nh):
                H = mid + half * tH[k]
                z = (H - muH) * inv_sh
                aH = aR * half * wH[k] * exp(-0.5 * z * z + lnh)
                dfh4 = _locate4(H, ax0[2], step[2], n[2], &hs, cH, dcH if grad != NULL else NULL)
                _contract4(S + (hs - h0) * G, G, cH, 1, 0, G, row)
                if grad != NULL:
                    _contract4(SM + (hs - h0) * G, G, cH, 1, 0, G, rowM)
                    _contract4(S + (hs - h0) * G, G, dcH, 1, 0, G, rowH)
                    dH_m = dmid_m + dhalf_m * tH[k]
                    dH_s = dmid_s + dhalf_s * tH[k]
                    # d log aH: d log half - z dz - (d sigma_h) / sigma_h
                    dla_m = dhalf_m / half - z * (dH_m - 1.0) * inv_sh
                    dla_s = dhalf_s / half - z * (dH_s - z) * inv_sh - inv_sh
                for l in range(ngam):
                    o = gs[l] - g0
                    lv = _dot4(&cg[4 * l], &row[o])
                    if isfinite(lv):
                        vT = exp(lv)
                        if grad != NULL:
                            # d vT / d x = vT (d log T / d f) (d f / d x)
                            gF0 = vT * _dot4(&cg[4 * l], &rowM[o]) * dfm4
                            gF2 = vT * _dot4(&cg[4 * l], &rowH[o]) * dfh4
                            gF3 = vT * _dot4(&dcg[4 * l], &row[o]) * dfg4[l]
                    else:
                        # the stencil touches T = 0: multilinear rule of the cell
                        dfx0 = _locate(M + e.alpha_sps, ax0[0], step[0], n[0], &ic[0], &fc[0])
                        _locate(R, ax0[1], step[1], n[1], &ic[1], &fc[1])
                        dfx2 = _locate(H, ax0[2], step[2], n[2], &ic[2], &fc[2])
                        ic[3] = ig[l]
                        fc[3] = fg[l]
                        if grad == NULL:
                            vT = _interp_cell(T, LT, n, ic, fc, NULL)
                        else:
                            vT = _interp_cell(T, LT, n, ic, fc, dv)
                            gF0 = dv[0] * dfx0
                            gF2 = dv[2] * dfx2
                            gF3 = dv[3] * dfg[l]
                    e1 = exp(-vT)
                    F = _one_minus_exp(vT, e1)
                    sA += aH * wg[l] * vT
                    sF += aH * wg[l] * F
                    if grad != NULL:
                        ew = aH * wg[l] * e1          # aH wg dF/dT
                        term = aH * wg[l] * F
                        g[0] += ew * gF0
                        gF2 = ew * gF2
                        gmuH += term * dla_m + gF2 * dH_m
                        g[3] += term * dla_s + gF2 * dH_s
                        gF3 = aH * e1 * gF3
                        g[4] += aH * F * dwg[2 * l] + wg[l] * gF3 * dgn[2 * l]
                        g[5] += aH * F * dwg[2 * l + 1] + wg[l] * gF3 * dgn[2 * l + 1]
        g[1] += gmuH
        g[2] += (M - c.pivot) * gmuH
    free(P)
    out[0] = sA
    out[1] = sF
    if grad != NULL:
        for d in range(6):
            grad[d] = g[d]


cdef void _table_meta(const double[:, :, :, ::1] T, const double[:, :, :, ::1] LT, const double[::1] axis_start,
                      const double[::1] axis_step, Py_ssize_t* n, double* ax0, double* st) except *:
    cdef Py_ssize_t d
    if LT.shape[0] != T.shape[0] or LT.shape[1] != T.shape[1] or LT.shape[2] != T.shape[2] or LT.shape[3] != T.shape[3]:
        raise ValueError("T and its logarithm LT must have the same shape")
    if axis_start.shape[0] != 4 or axis_step.shape[0] != 4:
        raise ValueError("axis_start and axis_step need 4 values")
    for d in range(4):
        n[d] = T.shape[d]
        ax0[d] = axis_start[d]
        st[d] = axis_step[d]
        if n[d] < 2 or not st[d] > 0:
            raise ValueError("T must be a 4-D table with >= 2 nodes and a positive step per axis")
        if n[d] < 4:
            raise ValueError(f"the rate table needs >= 4 nodes per axis (cubic interpolation), got {n[d]} along "
                             f"axis {d}")
    if n[3] > MAX_GAMMA_AXIS:
        raise ValueError(f"the rate table has {n[3]} gamma_in nodes, at most {MAX_GAMMA_AXIS} are supported")


def quad_selection(SelectionKernel kern, const double[:, :, :, ::1] T, const double[:, :, :, ::1] LT,
                   const double[::1] axis_start, const double[::1] axis_step,
                   const double[::1] M_nodes, const double[::1] M_weights,
                   const double[::1] R_t, const double[::1] R_w, const double[::1] H_t, const double[::1] H_w,
                   double h_lo, double h_hi,
                   const double[:, ::1] gamma_nodes, const double[:, ::1] gamma_weights,
                   const double[:, ::1] eta, n_threads=1, gamma_nodes_grad=None, gamma_weights_grad=None):
    """E[T] and the lens fraction E[1 - exp(-T)] for a batch of eta by product quadrature (see
    :class:`sl_cy.selection.SelectionQuadrature`).

    ``R_t``/``R_w`` are standard-normal Gauss-Hermite nodes and weights (scaled per law);
    ``H_t``/``H_w`` Gauss-Legendre nodes and weights on [-1, 1] (mapped per (M, R) to the halo
    Gaussian's +-6 sigma within [h_lo, h_hi]); ``gamma_nodes``/``gamma_weights`` (n_eta, n_g) the
    per-eta nodes and weights of the truncated gamma law. Returns (n_eta, 2): E[T] and
    E[1 - exp(-T)].

    With ``gamma_nodes_grad``/``gamma_weights_grad`` (n_eta, n_g, 2): the derivatives of the gamma
    nodes and weights w.r.t. (mu_gamma, sigma_gamma); then also returns (n_eta, 6): the exact
    eta-gradient of E[1 - exp(-T)] as computed (chain rule through the moving nodes and the
    table interpolation).
    """
    cdef Py_ssize_t m = eta.shape[0], j
    cdef int nt = resolve_threads(n_threads)
    cdef Py_ssize_t n[4]
    cdef double ax0[4]
    cdef double st[4]
    _table_meta(T, LT, axis_start, axis_step, n, ax0, st)
    if eta.shape[1] != 6 or gamma_nodes.shape[0] != m or gamma_weights.shape[0] != m:
        raise ValueError("eta must be (n, 6) with one row of gamma nodes/weights per eta")
    if gamma_nodes.shape[1] > 64 or R_t.shape[0] > 64:
        raise ValueError(f"at most 64 gamma and 64 logRe nodes, got {gamma_nodes.shape[1]} and {R_t.shape[0]}")
    if R_t.shape[0] != R_w.shape[0] or H_t.shape[0] != H_w.shape[0] or M_nodes.shape[0] != M_weights.shape[0] \
            or gamma_nodes.shape[1] != gamma_weights.shape[1]:
        raise ValueError("quadrature nodes and weights must have equal lengths")
    for j in range(m):
        if not (eta[j, 3] > 0 and eta[j, 5] > 0):
            raise ValueError(f"eta row {j}: sigma_h and sigma_gamma must be > 0")
    out = np.zeros((m, 2))
    cdef double[:, ::1] o = out
    cdef Py_ssize_t nm = M_nodes.shape[0], nr = R_t.shape[0], nh = H_t.shape[0], ng = gamma_nodes.shape[1]
    cdef bint with_grad = gamma_nodes_grad is not None
    if with_grad != (gamma_weights_grad is not None):
        raise ValueError("give both gamma_nodes_grad and gamma_weights_grad, or neither")
    cdef const double[:, :, ::1] dgn
    cdef const double[:, :, ::1] dwg
    grad_np = np.zeros((m, 6))
    cdef double[:, ::1] gr = grad_np
    if with_grad:
        dgn = np.ascontiguousarray(gamma_nodes_grad, dtype=np.float64)
        dwg = np.ascontiguousarray(gamma_weights_grad, dtype=np.float64)
        if dgn.shape[0] != m or dgn.shape[1] != ng or dgn.shape[2] != 2 or dwg.shape[0] != m \
                or dwg.shape[1] != ng or dwg.shape[2] != 2:
            raise ValueError(f"gamma_nodes_grad and gamma_weights_grad must have shape ({m}, {ng}, 2)")
    if m == 0:
        return (out, grad_np) if with_grad else out
    for j in prange(m, nogil=True, num_threads=nt, schedule="static"):
        _quad_one(&kern.c, &T[0, 0, 0, 0], &LT[0, 0, 0, 0], ax0, n, st, nm, &M_nodes[0], &M_weights[0],
                  nr, &R_t[0], &R_w[0], nh, &H_t[0], &H_w[0], h_lo, h_hi, ng, &gamma_nodes[j, 0],
                  &gamma_weights[j, 0], <const EtaC*>&eta[j, 0], &o[j, 0],
                  &dgn[j, 0, 0] if with_grad else NULL, &dwg[j, 0, 0] if with_grad else NULL,
                  &gr[j, 0] if with_grad else NULL)
    return (out, grad_np) if with_grad else out


def gamma_log_norm_grad_batch(const double[::1] mu, const double[::1] sigma, double lo, double hi):
    """d log-normalisation of the truncated gamma law / d(mu, sigma), per row: (n, 2)
    (sl_cy._population.gamma_log_norm_grad)."""
    cdef Py_ssize_t n = mu.shape[0], k
    if sigma.shape[0] != n:
        raise ValueError("mu and sigma must have equal lengths")
    out = np.empty((n, 2))
    cdef double[:, ::1] o = out
    with nogil:
        for k in range(n):
            gamma_log_norm_grad(mu[k], sigma[k], lo, hi, &o[k, 0])
    return out


def interp_rate(const double[:, :, :, ::1] T, const double[:, :, :, ::1] LT, const double[::1] axis_start, const double[::1] axis_step,
                const double[::1] logM_star, const double[::1] logRe, const double[::1] logM_halo,
                const double[::1] gamma_in):
    """The tabulated selection rate T at arbitrary points (same interpolation as the quadrature;
    clamped to the table's range). Returns an array of the points' length."""
    cdef Py_ssize_t npt = logM_star.shape[0], k
    cdef Py_ssize_t n[4]
    cdef double ax0[4]
    cdef double st[4]
    _table_meta(T, LT, axis_start, axis_step, n, ax0, st)
    if logRe.shape[0] != npt or logM_halo.shape[0] != npt or gamma_in.shape[0] != npt:
        raise ValueError("the point arrays must have equal lengths")
    out = np.empty(npt)
    cdef double[::1] o = out
    with nogil:
        for k in range(npt):
            o[k] = _interp_point(&T[0, 0, 0, 0], &LT[0, 0, 0, 0], ax0, n, st, logM_star[k], logRe[k], logM_halo[k], gamma_in[k])
    return out
