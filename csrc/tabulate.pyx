# cython: language_level=3
"""Compiled adaptive column rule of sl_cy (module ``sl_cy._tabulate``).

For one lens and one gamma node (a *column*), the two images fix logM* as a function of logMh;
the likelihood integrand is a narrow ridge along this curve. :func:`adaptive_columns_batch`
traces the curve and places quadrature nodes uniformly in its arc length, for many lenses at
once (``prange`` over lenses, everything below nogil C). It is the compiled form of the rule
documented in :func:`sl_cy.grids.adaptive_columns` and gives the same nodes and weights as its
former Python implementation (kept as :func:`sl_cy.reference.ref_adaptive_columns`):

1. *Tracer.* logM* and validity are computed on the scan axis; every interval is bisected
   depth first (same set of points as the breadth-first rounds of the Python rule: whether an
   interval is split depends only on its two end points) while it is valid at both ends, not
   outside the logM* window on one side, changes logM* by more than ``b step / 4`` and is
   wider than 1e-7 dex; or while its validity changes and it is wider than 1e-4 dex; at most
   ``max_rounds`` levels.
2. *Pieces.* Runs of >= 2 consecutive points that are valid with logM* inside the window;
   arc length s along each, ds^2 = (dlogMh / a)^2 + (dlogM* / b)^2.
3. *Placement.* ceil(s_end / step) + 1 nodes per piece (scaled down to fit ``n_nodes`` slots),
   uniform in s; logMh(s) and dlogMh/ds from the monotone piecewise cubic Hermite interpolant
   (Fritsch-Carlson / Fritsch-Butland derivatives with the one-sided end conditions of Moler,
   exactly as ``scipy.interpolate.PchipInterpolator``); weight = trapezoid weight in s times
   dlogMh/ds times the trapezoid weight of the gamma node.

Validity of a point is that of :func:`sl_cy.lensing.invert_images` (status 0), decided mostly
without the critical curves (their ~13 profile evaluations are 5/6 of a full inversion). The
local inversion (``lens_invert_local`` of ``_lensing``, 2 evaluations) gives M*, beta and
1/mu_r(x_B). M* <= 0 or beta < 0 is invalid, as in ``lens_invert``. Otherwise, kappa decreasing
outwards (de Vaucouleurs and gNFW) puts x_B inside and x_A outside the Einstein radius, and when
1/mu_r changes sign once inside theta_E: |x_B| > x_r <=> 1/mu_r(x_B) > 0, which also gives
beta < y_c (alpha(x) - x decreases on (x_r, theta_E)), and ``lens_critical`` finds x_r iff
1/mu_r < 0 at its deepest search point theta_E / 2^26, which holds if 1/mu_r(x_A / 2^26) < 0
(one more evaluation). The full ``lens_invert`` decides wherever this is not conclusive:
|1/mu_r(x_B)| < 1e-4 (near the x_B = x_r edge, where beta < y_c is a question of rounding),
1/mu_r(x_A / 2^26) >= 0 (no radial curve, e.g. gamma_in >= 2) or non-finite values (~2e-5 of
the points of mock lenses on the default grids). ``exact_validity=True`` uses ``lens_invert`` at every point (the
tests check that both give the same nodes, and the same validity point by point on wide scans).
Cost: ~0.4 us per point, ~3500 points per lens on the default grids (scan [10, 17] x 21 gamma).
"""
import numpy as np
from cython.parallel cimport prange
from libc.math cimport ceil, floor, fabs, hypot, isfinite, NAN
from libc.stdlib cimport realloc, free

from sl_cy._numerics cimport resolve_threads
from sl_cy._profiles cimport Cosmo, cosmo_init, sigma_cr_kpc, rhoc_kpc3
from sl_cy._lensing cimport (Lens, LensPoint, Critical, ST_OK, lens_setup, lens_invert, lens_invert_local,
                             lens_point)
from sl_cy import _profiles

# |1/mu_r(x_B)| below which validity is left to the full inversion (see the module docstring)
cdef double IR_GUARD = 1e-4
# deepest point of the radial-critical-curve search of lens_critical, relative to theta_E
cdef double RAD_PROBE = 1.0 / 67108864.0      # 2^-26

# flags per lens
cdef enum:
    FLAG_OK = 0
    FLAG_SLOTS = 1      # a column has more pieces than n_nodes / 2: pieces dropped
    FLAG_MEMORY = 2     # allocation failure: the lens has no nodes
# piece code of a node slot (the ``piece`` output; 0 = unused slot / no piece information)
cdef enum:
    PIECE_FIRST = 1     # first node of a piece
    PIECE_LAST = 2      # last node of a piece
    PIECE_NODE = 4      # a node of an adaptive piece
PIECE_CODES = dict(first=PIECE_FIRST, last=PIECE_LAST, node=PIECE_NODE)
FLAGS = {FLAG_OK: "ok", FLAG_SLOTS: "pieces dropped (more pieces than n_nodes // 2)",
         FLAG_MEMORY: "allocation failure"}


cdef struct Column:
    # one lens at one gamma node
    const Cosmo* cosmo
    double sigcr, rhoc, xA, xB, logRe, gamma, c_halo
    double lo, hi          # logM* window
    double tol_L           # bisection threshold on |dlogM*|
    double r_probe         # x_A / 2^26
    int max_rounds
    bint exact


cdef struct Trace:
    # the points of one column, in increasing logMh, and scratch arrays of the same size
    double* m
    double* L
    unsigned char* ok
    double* s
    double* d
    Py_ssize_t n, cap


cdef inline void _trace_init(Trace* t) noexcept nogil:
    """An empty trace owning no memory (also what _trace_free leaves)."""
    t.m = NULL
    t.L = NULL
    t.ok = NULL
    t.s = NULL
    t.d = NULL
    t.n = 0
    t.cap = 0


cdef int _trace_reserve(Trace* t, Py_ssize_t cap) noexcept nogil:
    cdef double* m
    cdef double* L
    cdef double* s
    cdef double* d
    cdef unsigned char* ok
    if cap <= t.cap:
        return 0
    m = <double*>realloc(t.m, cap * sizeof(double))
    if m == NULL:
        return -1
    t.m = m
    L = <double*>realloc(t.L, cap * sizeof(double))
    if L == NULL:
        return -1
    t.L = L
    s = <double*>realloc(t.s, cap * sizeof(double))
    if s == NULL:
        return -1
    t.s = s
    d = <double*>realloc(t.d, cap * sizeof(double))
    if d == NULL:
        return -1
    t.d = d
    ok = <unsigned char*>realloc(t.ok, cap * sizeof(unsigned char))
    if ok == NULL:
        return -1
    t.ok = ok
    t.cap = cap
    return 0


cdef void _trace_free(Trace* t) noexcept nogil:
    free(t.m)
    free(t.L)
    free(t.ok)
    free(t.s)
    free(t.d)
    _trace_init(t)


cdef inline int _push(Trace* t, double m, double L, unsigned char ok) noexcept nogil:
    if t.n == t.cap and _trace_reserve(t, 2 * t.cap + 64) != 0:
        return -1
    t.m[t.n] = m
    t.L[t.n] = L
    t.ok[t.n] = ok
    t.n += 1
    return 0


# --------------------------------------------------------------------------------------------
# one point: logM* and validity
# --------------------------------------------------------------------------------------------
cdef int _solve(const Column* p, double mh, double* Lout, unsigned char* okout) noexcept nogil:
    """logM* (NaN where invalid) and validity (status 0 of invert_images) at halo mass mh.
    Returns 1 if the full inversion decided, 0 otherwise."""
    cdef Lens L
    cdef LensPoint probe
    cdef Critical cr
    cdef double lm, beta, muA, muB, dj, irB
    cdef int st, full = 0
    cdef bint ok
    lens_setup(&L, p.cosmo, p.sigcr, p.rhoc, NAN, mh, p.logRe, p.gamma, p.c_halo)
    st = lens_invert_local(&L, p.xA, p.xB, &lm, &beta, &muA, &muB, &dj, &irB)
    if st != ST_OK:
        ok = False
    elif beta < 0.0:
        ok = False                     # BETA_NEGATIVE (or a failed critical curve): invalid
    elif p.exact or not (isfinite(beta) and fabs(irB) >= IR_GUARD):
        full = 1
    elif irB < 0.0:
        ok = False                     # |x_B| < x_r: XB_CENTRAL
    else:
        lens_point(&L, p.r_probe, &probe)
        if probe.inv_mu_r < 0.0:
            ok = True                  # radial curve found, |x_B| > x_r, beta < y_c
        else:
            full = 1
    if full:
        lens_setup(&L, p.cosmo, p.sigcr, p.rhoc, NAN, mh, p.logRe, p.gamma, p.c_halo)
        ok = lens_invert(&L, p.xA, p.xB, &lm, &beta, &cr, &muA, &muB, &dj) == ST_OK
    Lout[0] = lm if ok else NAN
    okout[0] = ok
    return full


cdef int _refine(Trace* t, const Column* p, double m1, double L1, unsigned char ok1,
                 double m2, double L2, unsigned char ok2, int depth) noexcept nogil:
    """Append the bisection points strictly inside (m1, m2), in increasing order."""
    cdef double dm = m2 - m1, mm, Lm
    cdef unsigned char okm
    cdef bint need
    if depth >= p.max_rounds:
        return 0
    need = (ok1 and ok2 and not ((L1 < p.lo and L2 < p.lo) or (L1 > p.hi and L2 > p.hi))
            and fabs(L2 - L1) > p.tol_L and dm > 1e-7)
    need = need or (ok1 != ok2 and dm > 1e-4)
    if not need:
        return 0
    mm = 0.5 * (m1 + m2)
    _solve(p, mm, &Lm, &okm)
    if _refine(t, p, m1, L1, ok1, mm, Lm, okm, depth + 1) != 0:
        return -1
    if _push(t, mm, Lm, okm) != 0:
        return -1
    return _refine(t, p, mm, Lm, okm, m2, L2, ok2, depth + 1)


cdef int _trace_column(Trace* t, const Column* p, const double* m0, Py_ssize_t nm) noexcept nogil:
    cdef Py_ssize_t i
    cdef double La, Lb
    cdef unsigned char oka, okb
    t.n = 0
    if nm == 0:
        return 0
    _solve(p, m0[0], &La, &oka)
    if _push(t, m0[0], La, oka) != 0:
        return -1
    for i in range(1, nm):
        _solve(p, m0[i], &Lb, &okb)
        if _refine(t, p, m0[i - 1], La, oka, m0[i], Lb, okb, 0) != 0:
            return -1
        if _push(t, m0[i], Lb, okb) != 0:
            return -1
        La = Lb
        oka = okb
    return 0


# --------------------------------------------------------------------------------------------
# placement: PCHIP (as scipy.interpolate.PchipInterpolator) in arc length
# --------------------------------------------------------------------------------------------
cdef inline double _sign(double x) noexcept nogil:
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return x          # 0 (or NaN)


cdef inline double _pchip_end(double h0, double h1, double m0, double m1) noexcept nogil:
    """One-sided three-point end slope, shape-preserving (scipy's PchipInterpolator._edge_case)."""
    cdef double d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if _sign(d) != _sign(m0):
        return 0.0
    if _sign(m0) != _sign(m1) and fabs(d) > 3.0 * fabs(m0):
        return 3.0 * m0
    return d


cdef void _pchip_slopes(const double* x, const double* y, double* d, Py_ssize_t n) noexcept nogil:
    """Derivatives d[0:n] of the monotone cubic through (x, y), n >= 2 (scipy's
    PchipInterpolator._find_derivatives: weighted harmonic mean of the adjacent secants, 0 at a
    local extremum)."""
    cdef Py_ssize_t i
    cdef double h0, h1, m0, m1, w1, w2
    if n == 2:
        d[0] = (y[1] - y[0]) / (x[1] - x[0])
        d[1] = d[0]
        return
    for i in range(1, n - 1):
        h0 = x[i] - x[i - 1]
        h1 = x[i + 1] - x[i]
        m0 = (y[i] - y[i - 1]) / h0
        m1 = (y[i + 1] - y[i]) / h1
        if _sign(m1) != _sign(m0) or m1 == 0.0 or m0 == 0.0:
            d[i] = 0.0
        else:
            w1 = 2 * h1 + h0
            w2 = h1 + 2 * h0
            d[i] = 1.0 / ((w1 / m0 + w2 / m1) / (w1 + w2))
    h0 = x[1] - x[0]
    h1 = x[2] - x[1]
    d[0] = _pchip_end(h0, h1, (y[1] - y[0]) / h0, (y[2] - y[1]) / h1)
    h0 = x[n - 1] - x[n - 2]
    h1 = x[n - 2] - x[n - 3]
    d[n - 1] = _pchip_end(h0, h1, (y[n - 1] - y[n - 2]) / h0, (y[n - 2] - y[n - 3]) / h1)


cdef void _pchip_place(const double* x, const double* y, const double* d, Py_ssize_t n,
                       Py_ssize_t nout, double wg, double* om, double* ow,
                       Py_ssize_t stride) noexcept nogil:
    """nout nodes uniform in x on [x[0], x[n-1]] (as numpy.linspace): the cubic Hermite value
    and derivative there (evaluated as scipy's PPoly), written with the trapezoid weight in x
    times the derivative times wg to om[j*stride], ow[j*stride]."""
    cdef double xend = x[n - 1], h = xend / (nout - 1), sv, s, dx, slope, t, c0, c1, c2, c3, w
    cdef Py_ssize_t j, iv = 0
    for j in range(nout):
        sv = xend if j == nout - 1 else j * h + 0.0
        while iv < n - 2 and sv >= x[iv + 1]:
            iv += 1
        dx = x[iv + 1] - x[iv]
        slope = (y[iv + 1] - y[iv]) / dx
        t = (d[iv] + d[iv + 1] - 2 * slope) / dx
        c0 = t / dx
        c1 = (slope - d[iv]) / dx - t
        c2 = d[iv]
        c3 = y[iv]
        s = sv - x[iv]
        w = h * 0.5 if (j == 0 or j == nout - 1) else h
        om[j * stride] = ((c3 + c2 * s) + c1 * (s * s)) + c0 * (s * s * s)
        ow[j * stride] = w * ((c2 * 1.0 + (c1 * 2.0) * s) + (c0 * 3.0) * (s * s)) * wg


cdef int _place_column(Trace* t, const Column* p, double a, double b, double step, int n_nodes,
                       double wg, double* om, double* ow, signed char* opc, Py_ssize_t stride,
                       int* n_pieces) noexcept nogil:
    """Pieces of the traced column and their nodes/weights (slots 0.. of om/ow, stride apart), and
    each used slot's piece code in opc (PIECE_NODE, | PIECE_FIRST on a piece's first node,
    | PIECE_LAST on its last: the nodes of a piece are uniform in arc length, its two ends have
    half the trapezoid weight). Returns FLAG_SLOTS if pieces had to be dropped for lack of
    slots, else 0."""
    cdef Py_ssize_t i, s0, n = t.n, npieces = 0, need, total = 0, j = 0, nout, k
    cdef bint use
    cdef int flag = 0
    cdef double send
    # pass 1: arc length along every piece, count pieces and nodes
    i = 0
    while i < n:
        s0 = i
        while i < n and t.ok[i] and t.L[i] >= p.lo and t.L[i] <= p.hi:
            i += 1
        if i - s0 >= 2:
            t.s[s0] = 0.0
            for j in range(s0 + 1, i):
                t.s[j] = t.s[j - 1] + hypot((t.m[j] - t.m[j - 1]) / a, (t.L[j] - t.L[j - 1]) / b)
            npieces += 1
            total += <Py_ssize_t>ceil(t.s[i - 1] / step) + 1
        if i == s0:
            i += 1
    n_pieces[0] = <int>npieces
    if npieces == 0:
        return 0
    # pass 2: placement
    j = 0
    i = 0
    while i < n:
        s0 = i
        while i < n and t.ok[i] and t.L[i] >= p.lo and t.L[i] <= p.hi:
            i += 1
        if i - s0 >= 2:
            send = t.s[i - 1]
            nout = <Py_ssize_t>ceil(send / step) + 1
            if total > n_nodes:    # too long a column: coarser spacing, same slots
                nout = <Py_ssize_t>floor(<double>(nout * (n_nodes - 2 * npieces)) / <double>total)
                if nout < 2:
                    nout = 2
            if j + nout > n_nodes:
                flag = FLAG_SLOTS
                break
            _pchip_slopes(&t.s[s0], &t.m[s0], &t.d[s0], i - s0)
            _pchip_place(&t.s[s0], &t.m[s0], &t.d[s0], i - s0, nout, wg, &om[j * stride],
                         &ow[j * stride], stride)
            for k in range(nout):
                opc[(j + k) * stride] = PIECE_NODE
            opc[j * stride] |= PIECE_FIRST
            opc[(j + nout - 1) * stride] |= PIECE_LAST
            j += nout
        if i == s0:
            i += 1
    return flag


cdef int _lens_columns(const Cosmo* cosmo, double xA, double xB, double logRe, double m_obs,
                       double zl, double zs, const double* gam, const double* wg, Py_ssize_t ng,
                       const double* m0, Py_ssize_t nm, double c_halo, double step, double a,
                       double b, double win_lo, double win_hi, int n_nodes, int max_rounds,
                       bint exact, double* om, double* ow, signed char* opc, long long* n_solved,
                       int* n_pieces) noexcept nogil:
    """All columns of one lens into om/ow (shape (n_nodes, ng), pre-filled NaN / 0)."""
    cdef Column p
    cdef Trace t
    cdef Py_ssize_t k
    cdef int flag = 0, f
    _trace_init(&t)
    if _trace_reserve(&t, 8 * nm + 64) != 0:
        _trace_free(&t)
        return FLAG_MEMORY
    p.cosmo = cosmo
    p.sigcr = sigma_cr_kpc(cosmo, zl, zs)
    p.rhoc = rhoc_kpc3(cosmo, zl)
    p.xA = xA
    p.xB = xB
    p.logRe = logRe
    p.c_halo = c_halo
    p.lo = m_obs + win_lo
    p.hi = m_obs + win_hi
    p.tol_L = 0.25 * b * step
    p.r_probe = xA * RAD_PROBE
    p.max_rounds = max_rounds
    p.exact = exact
    n_solved[0] = 0
    for k in range(ng):
        p.gamma = gam[k]
        if _trace_column(&t, &p, m0, nm) != 0:
            flag = FLAG_MEMORY
            break
        n_solved[0] += t.n
        f = _place_column(&t, &p, a, b, step, n_nodes, wg[k], &om[k], &ow[k], &opc[k], ng, &n_pieces[k])
        if f > flag:
            flag = f
    _trace_free(&t)
    return flag


def adaptive_columns_batch(const double[::1] xA, const double[::1] xB, const double[::1] logRe,
                           const double[::1] m_obs, const double[::1] zl, const double[::1] zs,
                           const double[::1] gamma_axis, const double[::1] gamma_weights,
                           const double[::1] logMh_axis, double c_halo, double H0, double Om,
                           double Ode, double step, double scale_mh, double scale_mstar,
                           double window_lo, double window_hi, int n_nodes, int max_rounds=30,
                           n_threads=1, bint exact_validity=False):
    """Adaptive halo-mass nodes and weights of many lenses (the rule of
    :func:`sl_cy.grids.adaptive_columns`; inputs are not validated here).

    Parameters
    ----------
    xA, xB, logRe, m_obs, zl, zs : (n_lens,) float64
        Images (kpc, x_A > 0 > x_B), log10 size, observed SPS mass and redshifts per lens.
    gamma_axis, gamma_weights : (n_gamma,) float64
        Gamma nodes (columns) and their quadrature weights.
    logMh_axis : (n_scan,) float64
        Scan axis, strictly increasing.
    c_halo, H0, Om, Ode : float
        Halo concentration and cosmology.
    step, scale_mh, scale_mstar, window_lo, window_hi : float
        Node spacing in arc length, the scales (a, b) of logMh and logM* (dex), and the logM*
        window relative to ``m_obs``.
    n_nodes : int
        Slots per column.
    max_rounds : int
        Bisection depth limit.
    n_threads : int or None
        OpenMP threads over lenses (None or -1: all cores; ``sl_cy.parallel.resolve_n_threads``);
        results do not depend on it.
    exact_validity : bool
        Decide every point's validity by the full inversion (critical curves) instead of the
        shortcuts of the module docstring (for tests; ~4x slower).

    Returns
    -------
    logMh, wq : (n_lens, n_nodes, n_gamma) float64
        Nodes (NaN in unused slots) and weights in d(logMh) d(gamma) (0 in unused slots).
    flags : (n_lens,) int8
        0; 1 if a column had more pieces than ``n_nodes // 2`` (the pieces that did not fit
        were dropped); 2 on allocation failure (no nodes).
    n_points : (n_lens,) int64
        Points traced (logM* evaluations) per lens.
    n_pieces : (n_lens, n_gamma) int32
        Contiguous valid pieces per column.
    piece : (n_lens, n_nodes, n_gamma) int8
        Piece code of each slot: 0 unused, else ``PIECE_CODES["node"]`` plus ``"first"`` /
        ``"last"`` on the first / last node of a piece (the pieces of a column are in consecutive
        slots; within one, nodes are uniform in arc length).
    """
    _profiles.ensure_gnfw_table()
    cdef Py_ssize_t n = xA.shape[0], ng = gamma_axis.shape[0], nm = logMh_axis.shape[0], i
    if not (xB.shape[0] == n and logRe.shape[0] == n and m_obs.shape[0] == n and zl.shape[0] == n
            and zs.shape[0] == n):
        raise ValueError("xA, xB, logRe, m_obs, zl, zs need one value per lens")
    if gamma_weights.shape[0] != ng:
        raise ValueError("gamma_weights must match gamma_axis")
    if n_nodes < 0 or max_rounds < 0:
        raise ValueError("n_nodes and max_rounds must be >= 0")
    out_m = np.full((n, n_nodes, ng), np.nan)
    out_w = np.zeros((n, n_nodes, ng))
    flags = np.zeros(n, dtype=np.int8)
    npts = np.zeros(n, dtype=np.int64)
    npc = np.zeros((n, ng), dtype=np.int32)
    out_pc = np.zeros((n, n_nodes, ng), dtype=np.int8)
    cdef signed char[:, :, ::1] opc = out_pc
    cdef double[:, :, ::1] om = out_m
    cdef double[:, :, ::1] ow = out_w
    cdef signed char[::1] fl = flags
    cdef long long[::1] npv = npts
    cdef int[:, ::1] npcv = npc
    cdef Cosmo cosmo
    cdef int nt = resolve_threads(n_threads)
    cosmo_init(&cosmo, H0, Om, Ode)
    if n == 0 or ng == 0 or n_nodes == 0:
        return out_m, out_w, flags, npts, npc, out_pc
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=nt):
        fl[i] = _lens_columns(&cosmo, xA[i], xB[i], logRe[i], m_obs[i], zl[i], zs[i],
                              &gamma_axis[0], &gamma_weights[0], ng, &logMh_axis[0], nm, c_halo,
                              step, scale_mh, scale_mstar, window_lo, window_hi, n_nodes,
                              max_rounds, exact_validity, &om[i, 0, 0], &ow[i, 0, 0], &opc[i, 0, 0],
                              &npv[i], &npcv[i, 0])
    return out_m, out_w, flags, npts, npc, out_pc


def point_validity(double xA, double xB, double logRe, const double[::1] logMh, double gamma,
                   double c_halo, double zl, double zs, double H0, double Om, double Ode):
    """Tracer's logM* and validity at halo masses ``logMh`` of one lens and gamma (for tests).

    Returns
    -------
    logM_star, ok_fast, ok_exact, full : ndarray
        logM* (NaN where invalid), validity by the tracer's shortcuts and by the full inversion,
        and whether the shortcut path fell back to the full inversion.
    """
    _profiles.ensure_gnfw_table()
    cdef Py_ssize_t n = logMh.shape[0], i
    lm = np.empty(n)
    okf = np.zeros(n, dtype=bool)
    oke = np.zeros(n, dtype=bool)
    full = np.zeros(n, dtype=bool)
    cdef double[::1] vl = lm
    cdef unsigned char[::1] vf = okf.view(np.uint8), ve = oke.view(np.uint8), vu = full.view(np.uint8)
    cdef Cosmo cosmo
    cdef Column p
    cdef double Le
    cosmo_init(&cosmo, H0, Om, Ode)
    p.cosmo = &cosmo
    p.sigcr = sigma_cr_kpc(&cosmo, zl, zs)
    p.rhoc = rhoc_kpc3(&cosmo, zl)
    p.xA = xA
    p.xB = xB
    p.logRe = logRe
    p.gamma = gamma
    p.c_halo = c_halo
    p.r_probe = xA * RAD_PROBE
    with nogil:
        for i in range(n):
            p.exact = False
            vu[i] = _solve(&p, logMh[i], &vl[i], &vf[i])
            p.exact = True
            _solve(&p, logMh[i], &Le, &ve[i])
    return lm, okf, oke, full


def place_trace(const double[::1] logMh, const double[::1] logM_star, ok, double lo, double hi,
                double step, double scale_mh, double scale_mstar, int n_nodes, double gamma_weight=1.0,
                bint with_pieces=False):
    """Placement step alone, on a given column trace (for tests: traces with several pieces).

    Parameters
    ----------
    logMh, logM_star : (n,) float64
        Trace points in increasing logMh and their logM*.
    ok : (n,) bool
        Validity of the points.
    lo, hi : float
        logM* window (absolute).
    step, scale_mh, scale_mstar, n_nodes, gamma_weight :
        As in :func:`adaptive_columns_batch` (one column).

    Returns
    -------
    logMh, wq : (n_nodes,) float64
    n_pieces, flag : int
    piece : (n_nodes,) int8, only with ``with_pieces``
        Piece codes of the slots (as :func:`adaptive_columns_batch`).
    """
    cdef Py_ssize_t n = logMh.shape[0], i
    if logM_star.shape[0] != n or len(ok) != n:
        raise ValueError("logMh, logM_star and ok must have the same length")
    if n_nodes < 1:
        raise ValueError("n_nodes must be >= 1")
    okv = np.ascontiguousarray(ok, dtype=np.uint8)
    cdef const unsigned char[::1] vok = okv
    out_m = np.full(n_nodes, np.nan)
    out_w = np.zeros(n_nodes)
    out_pc = np.zeros(n_nodes, dtype=np.int8)
    cdef double[::1] om = out_m
    cdef double[::1] ow = out_w
    cdef signed char[::1] opc = out_pc
    cdef Trace t
    cdef Column p
    cdef int npieces = 0, flag
    _trace_init(&t)
    if _trace_reserve(&t, n + 1) != 0:
        _trace_free(&t)
        raise MemoryError()
    for i in range(n):
        t.m[i] = logMh[i]
        t.L[i] = logM_star[i]
        t.ok[i] = vok[i]
    t.n = n
    p.lo = lo
    p.hi = hi
    flag = _place_column(&t, &p, scale_mh, scale_mstar, step, n_nodes, gamma_weight, &om[0], &ow[0], &opc[0], 1,
                         &npieces)
    _trace_free(&t)
    if with_pieces:
        return out_m, out_w, npieces, flag, out_pc
    return out_m, out_w, npieces, flag
