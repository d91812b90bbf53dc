# cython: language_level=3
"""Compiled mass profiles and cosmology for sl_cy (module ``sl_cy._profiles``).

Contents
--------
* Cosmology: comoving and angular-diameter distances, critical surface density, critical density
  (flat or open Lambda-CDM without radiation; astropy CODATA 2018 / IAU 2015 constants).
* de Vaucouleurs (Sersic n = 4) stars: Sigma and the projected mass M2d through the exact
  regularised incomplete gamma function P(8, z).
* Generalised NFW halo: dimensionless surface density sigma(x, g), projected mass m2(x, g) and
  3-D mass m3(x, g), tabulated once by Gauss-Legendre quadrature in C over
  ln x in [ln 1e-6, ln 1e4] and g in [0, 2.4] and interpolated (4-point Lagrange in ln x,
  6-point Lagrange in g, on the logarithms of the functions).

Dimensionless gNFW conventions (rho~(s) = s^-g (1+s)^(g-3), s = r/rs, x = R/rs)::

    Sigma(R)  = rho0 rs      sigma(x, g),   sigma = 2 int_x^inf rho~(s) s / sqrt(s^2 - x^2) ds
    M2d(R)    = 4 pi rho0 rs^3 m2(x, g),    m2    = m3(x) + int_x^inf s^2 rho~ (x/s)^2 / (1 + sqrt(1 - x^2/s^2)) ds
    M3d(r)    = 4 pi rho0 rs^3 m3(x, g),    m3    = int_0^x s^2 rho~(s) ds

The table is built on first use (about a second on one core) and cached as ``.npy`` files in
``$SL_CY_CACHE_DIR`` (default ``~/.cache/sl_cy``); a cache that does not match the table's
version and grid is rebuilt. Precision: <= 1e-6 relative over the documented domain (tests check
against independent adaptive quadrature and the NFW closed forms).
"""
import os
import hashlib

import numpy as np
cimport cython
from cython.parallel cimport prange
from libc.math cimport exp, log, log1p, sqrt, cosh, sinh, tanh, floor, ceil, M_PI, NAN, INFINITY
from sl_cy._numerics cimport lagrange4_weights, resolve_threads

# --------------------------------------------------------------------------------------------
# constants (astropy: CODATA 2018, IAU 2015)
# --------------------------------------------------------------------------------------------
cdef double C_KM_S = 299792.458
cdef double G_CGS = 6.6743e-8
cdef double MSUN_G = 1.988409870698051e33
cdef double KPC_CM = 3.085677581491367e21
# G in kpc (km/s)^2 / Msun
cdef double G_KPC = G_CGS * MSUN_G / (KPC_CM * 1e10)

CONSTANTS = dict(c_km_s=C_KM_S, G_cgs=G_CGS, Msun_g=MSUN_G, kpc_cm=KPC_CM, G_kpc_kms2_Msun=G_KPC)

# Gauss-Legendre rule on [-1, 1]
cdef enum:
    NGL = 16
cdef double GLX[NGL]
cdef double GLW[NGL]
_glx, _glw = np.polynomial.legendre.leggauss(NGL)
for _i in range(NGL):
    GLX[_i] = _glx[_i]
    GLW[_i] = _glw[_i]

# de Vaucouleurs: b(n) = 2n - 1/3 + 4/(405 n) + 46/(25515 n^2), n = 4
cdef double DEV_B = 8.0 - 1.0 / 3.0 + 4.0 / 1620.0 + 46.0 / (25515.0 * 16.0)
# Sigma*(R) = M* exp(-b q) / (2 pi n Re^2 Gamma(2n) b^-2n) = M*/Re^2 * DEV_SIGMA_NORM * exp(-b q)
cdef double DEV_SIGMA_NORM = DEV_B ** 8 / (8.0 * M_PI * 5040.0)
DEVAUC_B = DEV_B

# --------------------------------------------------------------------------------------------
# cosmology
# --------------------------------------------------------------------------------------------
cdef void cosmo_init(Cosmo* c, double H0, double Om, double Ode) noexcept nogil:
    c.H0 = H0
    c.Om = Om
    c.Ode = Ode
    c.Ok = 1.0 - Om - Ode
    if c.Ok < 1e-15 and c.Ok > -1e-15:
        c.Ok = 0.0
    c.dh_kpc = C_KM_S / H0 * 1000.0


cdef inline double _inv_E(const Cosmo* c, double z) noexcept nogil:
    cdef double a = 1.0 + z
    return 1.0 / sqrt(c.Om * a * a * a + c.Ok * a * a + c.Ode)


cdef double Z_DIRECT = 100.0     # D_C is integrated in z up to here, in u = ln(1 + z) beyond
cdef double U_STEP = 0.25        # segment width in u of the high-redshift part
cdef double U_MAX = 709.782712893384    # ln(DBL_MAX): z = inf is integrated to z = DBL_MAX


cdef double comoving_kpc(const Cosmo* c, double z) noexcept nogil:
    """Line-of-sight comoving distance D_C(z) in kpc (composite 16-point Gauss-Legendre).

    Segments of 0.5 in z up to Z_DIRECT, then of U_STEP in u = ln(1 + z) (integrand
    (1 + z)/E(z)), so the work is bounded for any z (at most ~3000 segments); NaN for z < 0 or NaN."""
    cdef int nseg, k, i
    cdef double zd, h, s = 0.0, a, u0, u1, t, hu, su = 0.0
    if not (z >= 0.0):
        return NAN
    zd = z if z < Z_DIRECT else Z_DIRECT
    nseg = 1 + <int> (zd / 0.5)
    h = zd / nseg
    for k in range(nseg):
        a = k * h
        for i in range(NGL):
            s += GLW[i] * _inv_E(c, a + 0.5 * h * (1.0 + GLX[i]))
    if not (z > Z_DIRECT):
        return c.dh_kpc * 0.5 * h * s
    u0 = log1p(Z_DIRECT)
    u1 = log1p(z) if z < INFINITY else U_MAX
    nseg = 1 + <int> ((u1 - u0) / U_STEP)
    hu = (u1 - u0) / nseg
    for k in range(nseg):
        a = u0 + k * hu
        for i in range(NGL):
            t = exp(a + 0.5 * hu * (1.0 + GLX[i]))          # 1 + z; (1 + z)/E(z), overflow-free:
            su += GLW[i] / sqrt(c.Om * t + c.Ok + c.Ode / (t * t))
    return c.dh_kpc * 0.5 * (h * s + hu * su)


cdef inline double _transverse(const Cosmo* c, double dc) noexcept nogil:
    cdef double sk
    if c.Ok == 0.0:
        return dc
    sk = sqrt(c.Ok)
    return c.dh_kpc / sk * sinh(sk * dc / c.dh_kpc)


cdef double dang_kpc(const Cosmo* c, double z1, double z2) noexcept nogil:
    """Angular-diameter distance between z1 < z2 in kpc (Hogg 1999, eq. 19, Ok >= 0)."""
    cdef double dm1 = _transverse(c, comoving_kpc(c, z1))
    cdef double dm2 = _transverse(c, comoving_kpc(c, z2))
    cdef double q1, q2
    if c.Ok == 0.0:
        return (dm2 - dm1) / (1.0 + z2)
    q1 = dm1 / c.dh_kpc
    q2 = dm2 / c.dh_kpc
    return (dm2 * sqrt(1.0 + c.Ok * q1 * q1) - dm1 * sqrt(1.0 + c.Ok * q2 * q2)) / (1.0 + z2)


cdef double sigma_cr_kpc(const Cosmo* c, double zl, double zs) noexcept nogil:
    """Critical surface density c^2/(4 pi G) Ds/(Dd Dds) in Msun/kpc^2."""
    cdef double dd = dang_kpc(c, 0.0, zl)
    cdef double ds = dang_kpc(c, 0.0, zs)
    cdef double dds = dang_kpc(c, zl, zs)
    return C_KM_S * C_KM_S / (4.0 * M_PI * G_KPC) * ds / (dd * dds)


cdef double rhoc_kpc3(const Cosmo* c, double z) noexcept nogil:
    """Critical density 3 H(z)^2 / (8 pi G) in Msun/kpc^3."""
    cdef double Hz = c.H0 / 1000.0 / _inv_E(c, z)     # km/s/kpc
    return 3.0 * Hz * Hz / (8.0 * M_PI * G_KPC)


# --------------------------------------------------------------------------------------------
# de Vaucouleurs
# --------------------------------------------------------------------------------------------
cdef double gammainc8(double z) noexcept nogil:
    """Regularised lower incomplete gamma P(8, z), exact for the integer order 8.

    z < 2: P = e^-z sum_{k>=8} z^k/k! (no cancellation); otherwise P = 1 - e^-z sum_{k<8} z^k/k!.
    """
    cdef double term, s
    cdef int k
    if z <= 0.0:
        return 0.0
    if z < 2.0:
        term = z * z
        term = term * term
        term = term * term / 40320.0          # z^8 / 8!
        s = term
        k = 9
        while term > 1e-17 * s and k < 60:
            term *= z / k
            s += term
            k += 1
        return exp(-z) * s
    term = 1.0
    s = 1.0
    for k in range(1, 8):
        term *= z / k
        s += term
    return 1.0 - exp(-z) * s


cdef double devauc_m2d_unit(double R, double Re) noexcept nogil:
    """Projected stellar mass inside R per unit M*: P(8, b (R/Re)^(1/4))."""
    return gammainc8(DEV_B * sqrt(sqrt(R / Re)))


cdef double devauc_sigma_unit(double R, double Re) noexcept nogil:
    """Stellar surface density per unit M* (1/kpc^2)."""
    return DEV_SIGMA_NORM / (Re * Re) * exp(-DEV_B * sqrt(sqrt(R / Re)))


cdef void devauc_unit(double R, double Re, double* m2d_unit, double* sigma_unit) noexcept nogil:
    """Both M2d and Sigma per unit M* at R, sharing z = b (R/Re)^(1/4)."""
    cdef double z = DEV_B * sqrt(sqrt(R / Re))
    m2d_unit[0] = gammainc8(z)
    sigma_unit[0] = DEV_SIGMA_NORM / (Re * Re) * exp(-z)


# --------------------------------------------------------------------------------------------
# gNFW: quadrature (table builder) and interpolation
# --------------------------------------------------------------------------------------------
cdef inline double _rho_t(double g, double s) noexcept nogil:
    return exp(-g * log(s) + (g - 3.0) * log1p(s))


cdef void _gnfw_sigma_tail(double g, double x, double* sig, double* tail) noexcept nogil:
    """sigma(x, g) and the M2d tail int_x^inf ... by Gauss-Legendre in t, s = x cosh t."""
    cdef double tmax = 22.0, ssum = 0.0, tsum = 0.0, t, w, ch, r
    cdef int nseg, k, i
    if x < 2.0:
        tmax += log(2.0 / x)
    nseg = <int> ceil(tmax)
    for k in range(nseg):
        for i in range(NGL):
            t = k + 0.5 * (1.0 + GLX[i])
            w = 0.5 * GLW[i]
            ch = cosh(t)
            r = _rho_t(g, x * ch)
            ssum += w * r * ch
            tsum += w * r * sinh(t) / (1.0 + tanh(t))
    sig[0] = 2.0 * x * ssum
    tail[0] = x * x * x * tsum


cdef double _gnfw_m3_series(double g, double x) noexcept nogil:
    """m3 = x^a sum_k (a)_k/k! (-x)^k / (a + k), a = 3 - g, for x << 1."""
    cdef double a = 3.0 - g, ck = 1.0, s = 1.0 / a, term
    cdef int k
    for k in range(1, 40):
        ck *= (a + k - 1.0) / k * (-x)
        term = ck / (a + k)
        s += term
        if term < 1e-18 * s and term > -1e-18 * s:
            break
    return exp(a * log(x)) * s


cdef double _gnfw_m3_increment(double g, double u1, double u2) noexcept nogil:
    """int_{u1}^{u2} s^(3-g) (1+s)^(g-3) du, s = e^u (Gauss-Legendre)."""
    cdef double h = u2 - u1, s = 0.0, v, e
    cdef int i
    for i in range(NGL):
        v = u1 + 0.5 * h * (1.0 + GLX[i])
        e = exp(v)
        s += GLW[i] * exp((3.0 - g) * v + (g - 3.0) * log1p(e))
    return 0.5 * h * s


cdef void _build_row(double g, double u0, double du, int nx,
                     double* lnsig, double* lnm2, double* lnm3) noexcept nogil:
    cdef double m3, sig, tail, x
    cdef int i
    m3 = _gnfw_m3_series(g, exp(u0))
    for i in range(nx):
        if i > 0:
            m3 += _gnfw_m3_increment(g, u0 + (i - 1) * du, u0 + i * du)
        x = exp(u0 + i * du)
        _gnfw_sigma_tail(g, x, &sig, &tail)
        lnsig[i] = log(sig)
        lnm2[i] = log(m3 + tail)
        lnm3[i] = log(m3)


def build_gnfw_table(double g0, double dg, int ng, double u0, double du, int nx, n_threads=None, int j0=0):
    """Build the gNFW tables ln sigma, ln m2, ln m3 on a (g, ln x) grid by quadrature.

    Parameters
    ----------
    g0, dg, ng : float, float, int
        gamma_in grid ``g0 + j dg``, ``j0 <= j < j0 + ng``.
    u0, du, nx : float, float, int
        ln x grid ``u0 + i du``, i < nx.
    n_threads : int or None
        OpenMP threads (None or -1: all cores; ``sl_cy.parallel.resolve_n_threads``).
    j0 : int
        First row: a block of rows equals the same rows of the whole table bit for bit (so the
        table can be built block by block, answering Ctrl-C between blocks).

    Returns
    -------
    lnsig, lnm2, lnm3 : ndarray, shape (ng, nx)
    """
    lnsig = np.empty((ng, nx))
    lnm2 = np.empty((ng, nx))
    lnm3 = np.empty((ng, nx))
    cdef double[:, ::1] a = lnsig, b = lnm2, c = lnm3
    cdef int j
    cdef int nt = resolve_threads(n_threads)
    for j in prange(ng, nogil=True, schedule="dynamic", num_threads=nt):
        _build_row(g0 + (j0 + j) * dg, u0, du, nx, &a[j, 0], &b[j, 0], &c[j, 0])
    return lnsig, lnm2, lnm3


def gnfw_quadrature(x, g):
    """Direct quadrature of (sigma, m2, m3) at arbitrary points (the table's own integrator).

    Slow (tens of microseconds per point); used to validate the interpolated table.
    """
    xa, ga = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(g, dtype=float))
    shape = xa.shape
    cdef const double[::1] xv = np.ascontiguousarray(xa, dtype=float).ravel()
    cdef const double[::1] gv = np.ascontiguousarray(ga, dtype=float).ravel()
    cdef Py_ssize_t n = xv.shape[0], k
    out = np.empty((3, n))
    cdef double[:, ::1] o = out
    cdef double sig, tail, m3, u, ustart
    cdef int i, nstep
    with nogil:
        for k in range(n):
            _gnfw_sigma_tail(gv[k], xv[k], &sig, &tail)
            u = log(xv[k])
            ustart = u - 1.0 if u - 1.0 < log(1e-6) else log(1e-6)
            nstep = <int> ceil((u - ustart) / 0.05)
            m3 = _gnfw_m3_series(gv[k], exp(ustart))
            for i in range(nstep):
                m3 += _gnfw_m3_increment(gv[k], ustart + i * (u - ustart) / nstep,
                                         ustart + (i + 1) * (u - ustart) / nstep)
            o[0, k] = sig
            o[1, k] = m3 + tail
            o[2, k] = m3
    return out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape)


# --- the interpolation table (module global) ---
cdef struct GTable:
    double* lnsig
    double* lnm2
    double* lnm3
    int ng
    int nx
    double g0
    double dg
    double u0
    double du
    bint ready

cdef GTable _T
_T.ready = False
_TABLE_ARRAYS = None      # keeps the numpy buffers alive

# default grid: g in [0, 2.4], ln x in [ln 1e-6, ln 1e4]
TABLE_VERSION = 1
TABLE_G0 = 0.0
TABLE_G1 = 2.4
TABLE_DG = 0.02
TABLE_X0 = 1e-6
TABLE_X1 = 1e4
TABLE_DU = 0.02


cdef void gamma_stencil(double g, GStencil* st) noexcept nogil:
    cdef double s, w
    cdef int j0, k, m
    j0 = <int> floor((g - _T.g0) / _T.dg) - 2
    if j0 < 0:
        j0 = 0
    if j0 > _T.ng - 6:
        j0 = _T.ng - 6
    s = (g - (_T.g0 + j0 * _T.dg)) / _T.dg
    st.j0 = j0
    for k in range(6):
        w = 1.0
        for m in range(6):
            if m != k:
                w *= (s - m) / (k - m)
        st.w[k] = w


cdef inline double _row_value(const double* tab, int nx, int j0, const double* w, int i) noexcept nogil:
    cdef double v = 0.0
    cdef int k
    for k in range(6):
        v += w[k] * tab[(j0 + k) * nx + i]
    return v


cdef inline double _interp(const double* tab, double u, const GStencil* st) noexcept nogil:
    cdef int nx = _T.nx, i0, k
    cdef double t, f0, f1
    cdef double v[4]
    cdef const double* row
    cdef double umax = _T.u0 + (nx - 1) * _T.du
    if u <= _T.u0:
        f0 = _row_value(tab, nx, st.j0, st.w, 0)
        f1 = _row_value(tab, nx, st.j0, st.w, 1)
        return f0 + (f1 - f0) * (u - _T.u0) / _T.du
    if u >= umax:
        f0 = _row_value(tab, nx, st.j0, st.w, nx - 1)
        f1 = _row_value(tab, nx, st.j0, st.w, nx - 2)
        return f0 + (f0 - f1) * (u - umax) / _T.du
    i0 = <int> floor((u - _T.u0) / _T.du) - 1
    if i0 < 0:
        i0 = 0
    if i0 > nx - 4:
        i0 = nx - 4
    t = (u - (_T.u0 + i0 * _T.du)) / _T.du
    lagrange4_weights(t - 1.0, v)           # nodes i0 .. i0+3 = -1 .. 2 relative to i0 + 1
    f0 = 0.0
    for k in range(6):
        row = tab + (st.j0 + k) * nx + i0
        f0 += st.w[k] * (v[0] * row[0] + v[1] * row[1] + v[2] * row[2] + v[3] * row[3])
    return f0


cdef double gnfw_lnsigma(double lnx, const GStencil* st) noexcept nogil:
    return _interp(_T.lnsig, lnx, st)


cdef double gnfw_lnm2(double lnx, const GStencil* st) noexcept nogil:
    return _interp(_T.lnm2, lnx, st)


cdef double gnfw_lnm3(double lnx, const GStencil* st) noexcept nogil:
    return _interp(_T.lnm3, lnx, st)


cdef void gnfw_lnsigma_lnm2(double lnx, const GStencil* st, double* lnsig, double* lnm2) noexcept nogil:
    lnsig[0] = _interp(_T.lnsig, lnx, st)
    lnm2[0] = _interp(_T.lnm2, lnx, st)


def set_gnfw_table(lnsig, lnm2, lnm3, double g0, double dg, double u0, double du):
    """Install interpolation tables (arrays of shape (ng, nx), C-contiguous float64)."""
    global _TABLE_ARRAYS
    arrs = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (lnsig, lnm2, lnm3))
    if not (arrs[0].shape == arrs[1].shape == arrs[2].shape) or arrs[0].ndim != 2:
        raise ValueError("gNFW tables must be three 2-D arrays of one shape")
    if arrs[0].shape[0] < 6 or arrs[0].shape[1] < 4:
        raise ValueError("gNFW tables need at least 6 gamma rows and 4 ln x columns")
    if not all(np.all(np.isfinite(a)) for a in arrs):
        raise ValueError("gNFW tables contain non-finite values")
    cdef double[:, ::1] a0 = arrs[0], a1 = arrs[1], a2 = arrs[2]
    _TABLE_ARRAYS = arrs
    _T.lnsig = &a0[0, 0]
    _T.lnm2 = &a1[0, 0]
    _T.lnm3 = &a2[0, 0]
    _T.ng = a0.shape[0]
    _T.nx = a0.shape[1]
    _T.g0 = g0
    _T.dg = dg
    _T.u0 = u0
    _T.du = du
    _T.ready = True


def table_grid():
    """The default table grid: (g0, dg, ng, u0, du, nx)."""
    ng = int(round((TABLE_G1 - TABLE_G0) / TABLE_DG)) + 1
    u0 = float(np.log(TABLE_X0))
    nx = int(np.ceil((np.log(TABLE_X1) - u0) / TABLE_DU)) + 1
    return TABLE_G0, TABLE_DG, ng, u0, TABLE_DU, nx


def cache_dir():
    """The folder of sl_cy's on-disk caches (:func:`sl_cy.cache.cache_dir`), as a string."""
    from sl_cy.cache import cache_dir as _cache_dir
    return str(_cache_dir())


def table_cache_path():
    """Path of the on-disk cache of the default gNFW table."""
    key = repr((TABLE_VERSION, table_grid(), NGL)).encode()
    h = hashlib.sha1(key).hexdigest()[:12]
    return os.path.join(cache_dir(), f"gnfw_table_v{TABLE_VERSION}_{h}.npz")


def ensure_gnfw_table(bint use_cache=True):
    """Make the default gNFW table available: load it from the cache or build it (~1 s).

    A cache file that fails to load or has the wrong shape is rebuilt; failing to write the
    cache (read-only home) is not an error.
    """
    if _T.ready:
        return
    from sl_cy.cache import load_or_build

    g0, dg, ng, u0, du, nx = table_grid()

    def load(path):
        with np.load(path) as f:
            arrs = (f["lnsig"], f["lnm2"], f["lnm3"])
        if not all(a.shape == (ng, nx) for a in arrs):
            raise ValueError(f"{path}: gNFW table of another shape")
        return arrs

    def build():
        # built in blocks of rows (~0.1 s each on one core) so that a Ctrl-C is answered between them
        blocks = [build_gnfw_table(g0, dg, min(8, ng - j), u0, du, nx, None, j) for j in range(0, ng, 8)]
        return tuple(np.ascontiguousarray(np.concatenate([b[k] for b in blocks])) for k in range(3))

    def save(arrs, path):
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, lnsig=arrs[0], lnm2=arrs[1], lnm3=arrs[2])
        os.replace(tmp, path)

    arrs, _ = load_or_build(table_cache_path() if use_cache else None, load=load, build=build, save=save,
                            what="gNFW table")
    set_gnfw_table(*arrs, g0, dg, u0, du)


def reset_gnfw_table():
    """Forget the installed table (tests use this to exercise the build path)."""
    global _TABLE_ARRAYS
    _T.ready = False
    _TABLE_ARRAYS = None


# --------------------------------------------------------------------------------------------
# vectorised Python entry points (validation lives in the pure-Python layer)
# --------------------------------------------------------------------------------------------
def gnfw_dimensionless(x, g):
    """Interpolated (sigma, m2, m3)(x, g) for arrays x > 0, g in [0, 2.4] (broadcast)."""
    ensure_gnfw_table()
    xa, ga = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(g, dtype=float))
    shape = xa.shape
    cdef const double[::1] xv = np.ascontiguousarray(xa, dtype=float).ravel()
    cdef const double[::1] gv = np.ascontiguousarray(ga, dtype=float).ravel()
    cdef Py_ssize_t n = xv.shape[0], k
    out = np.empty((3, n))
    cdef double[:, ::1] o = out
    cdef GStencil st
    cdef double u
    with nogil:
        for k in range(n):
            gamma_stencil(gv[k], &st)
            u = log(xv[k])
            o[0, k] = exp(gnfw_lnsigma(u, &st))
            o[1, k] = exp(gnfw_lnm2(u, &st))
            o[2, k] = exp(gnfw_lnm3(u, &st))
    return out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape)


def devauc_arrays(R, Re):
    """(Sigma, M2d) per unit stellar mass of a de Vaucouleurs profile at radii R (kpc)."""
    Ra, Rea = np.broadcast_arrays(np.asarray(R, dtype=float), np.asarray(Re, dtype=float))
    shape = Ra.shape
    cdef const double[::1] rv = np.ascontiguousarray(Ra, dtype=float).ravel()
    cdef const double[::1] ev = np.ascontiguousarray(Rea, dtype=float).ravel()
    cdef Py_ssize_t n = rv.shape[0], k
    out = np.empty((2, n))
    cdef double[:, ::1] o = out
    with nogil:
        for k in range(n):
            o[0, k] = devauc_sigma_unit(rv[k], ev[k])
            o[1, k] = devauc_m2d_unit(rv[k], ev[k])
    return out[0].reshape(shape), out[1].reshape(shape)


def gammainc8_array(z):
    """P(8, z) elementwise (exposed for tests)."""
    za = np.asarray(z, dtype=float)
    cdef const double[::1] zv = np.ascontiguousarray(za).ravel()
    out = np.empty(zv.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t k
    for k in range(zv.shape[0]):
        o[k] = gammainc8(zv[k])
    return out.reshape(za.shape)


def cosmology_arrays(z1, z2, double H0, double Om, double Ode):
    """Distances for redshift pairs: (D(0,z1), D(0,z2), D(z1,z2)) in Mpc, Sigma_cr(z1, z2) in
    Msun/kpc^2 and rho_c(z1) in Msun/Mpc^3 (broadcast arrays)."""
    za, zb = np.broadcast_arrays(np.asarray(z1, dtype=float), np.asarray(z2, dtype=float))
    shape = za.shape
    cdef const double[::1] av = np.ascontiguousarray(za, dtype=float).ravel()
    cdef const double[::1] bv = np.ascontiguousarray(zb, dtype=float).ravel()
    cdef Py_ssize_t n = av.shape[0], k
    out = np.empty((5, n))
    cdef double[:, ::1] o = out
    cdef Cosmo c
    cosmo_init(&c, H0, Om, Ode)
    with nogil:
        for k in range(n):
            o[0, k] = dang_kpc(&c, 0.0, av[k]) / 1000.0
            o[1, k] = dang_kpc(&c, 0.0, bv[k]) / 1000.0
            o[2, k] = dang_kpc(&c, av[k], bv[k]) / 1000.0
            o[3, k] = sigma_cr_kpc(&c, av[k], bv[k]) if bv[k] > av[k] else 0.0
            o[4, k] = rhoc_kpc3(&c, av[k]) * 1e9
    return tuple(out[i].reshape(shape) for i in range(5))
