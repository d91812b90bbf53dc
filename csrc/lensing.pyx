# cython: language_level=3
"""Compiled spherical lensing for sl_cy (module ``sl_cy._lensing``).

A lens is de Vaucouleurs stars + gNFW halo (see ``sl_cy._profiles``); x is a signed position
(kpc) along a line through the centre. Everything below the ``def`` entry points is nogil C:

* deflection alpha, convergence kappa, 1/mu_r, 1/mu_t, mu;
* Einstein radius (alpha(x) = x), radial critical curve (1/mu_r = 0 inside theta_E), radial
  caustic y_c = alpha(x_r) - x_r;
* images A (x > theta_E) and B (-theta_E < x < -x_r) of a source at 0 <= beta < y_c;
* inversion (x_A, x_B) -> (M*, beta) at fixed halo, and the analytic Jacobian
  |J| = |mu_r^-1(x_A) mu_r^-1(x_B)| / (M* ln10 |a*(x_A) - a*(x_B)|).

Root finders are bracketed (safeguarded Newton, Brent) and bounded in iterations. Failures are
reported as status codes (``ST_*`` in ``_lensing.pxd``), never as exceptions inside a batch.

Entry points: ``forward_batch``, ``invert_batch``, ``profile_batch`` for arrays; for the seed's
one-lens-at-a-time API ``ScalarLens`` (a lens set up once, critical curves on first use),
``invert_one`` and ``plane_constants``. Both kinds call the same C routines: ``lens_point`` (its
``_assemble``) is the only place where alpha, kappa, 1/mu_r, 1/mu_t, the shear and mu are put
together, for the root finders, the images, the inversion and the profiles alike, so every path
agrees to the last bit.
"""
import numpy as np
from libc.math cimport exp, log, fabs, sqrt, pow, isfinite, M_PI, NAN, M_LN10

from sl_cy._profiles cimport (Cosmo, GStencil, cosmo_init, sigma_cr_kpc, rhoc_kpc3, devauc_unit,
                              gamma_stencil, gnfw_lnsigma_lnm2, gnfw_lnm3)
from sl_cy import _profiles

cdef enum:
    MAXIT = 200

cdef double GAMMA_MAX = 2.4
cdef double XTOL = 1e-14          # relative tolerance on root positions

STATUS_NAMES = {
    ST_OK: "ok",
    ST_NO_EINSTEIN: "no Einstein radius (subcritical lens)",
    ST_NO_RADIAL: "no radial critical curve inside the Einstein radius",
    ST_BETA_NEGATIVE: "source position beta < 0",
    ST_BEYOND_CAUSTIC: "source beyond the radial caustic (single image)",
    ST_MSTAR_NONPOS: "inverted stellar mass M* <= 0",
    ST_XB_CENTRAL: "|x_B| inside the radial critical curve (central image, not image B)",
    ST_ROOT_FAILED: "root finder hit its iteration limit",
    ST_BAD_INPUT: "non-finite or out-of-domain input",
}

# order of the local quantities of a LensPoint (rows of profile_batch / ScalarLens.profile / .local):
# LOCAL_NAMES (the LensModel method names), then the shear and the signed magnification
LOCAL_NAMES = ("alpha", "alpha_star", "alpha_halo", "kappa", "kappa_star", "kappa_halo", "inv_mu_r", "inv_mu_t")
POINT_NAMES = LOCAL_NAMES + ("shear", "mu")
cdef enum:
    N_POINT = 10


# --------------------------------------------------------------------------------------------
# lens set-up and local quantities
# --------------------------------------------------------------------------------------------
cdef void lens_setup(Lens* L, const Cosmo* c, double sigma_cr, double rhoc, double logM_star,
                     double logM_halo, double logRe, double gamma_in, double c_halo) noexcept nogil:
    """Fill a Lens. logM_star may be NaN (stellar part then set later from the inversion)."""
    cdef double m200 = pow(10.0, logM_halo)
    cdef double r200 = pow(3.0 * m200 / (4.0 * M_PI * 200.0 * rhoc), 1.0 / 3.0)
    cdef double m3c
    L.re = pow(10.0, logRe)
    L.inv_re = 1.0 / L.re
    L.rs = r200 / c_halo
    L.ln_rs = log(L.rs)
    L.sigma_cr = sigma_cr
    gamma_stencil(gamma_in, &L.st)
    m3c = exp(gnfw_lnm3(log(c_halo), &L.st))
    L.a_halo = m200 / (m3c * M_PI * sigma_cr)
    L.k_halo = m200 / (4.0 * M_PI * L.rs * L.rs * m3c * sigma_cr)
    lens_set_mstar(L, pow(10.0, logM_star) if isfinite(logM_star) else 0.0)


cdef inline void lens_set_mstar(Lens* L, double mstar) noexcept nogil:
    L.mstar = mstar
    L.a_star = mstar / (M_PI * L.sigma_cr)
    L.k_star = mstar / L.sigma_cr


ctypedef struct _Profiles:
    # the dimensionless profiles at R = |x|: de Vaucouleurs enclosed mass and surface density per
    # unit M*, gNFW sigma and m2 at R/rs
    double pm
    double ps
    double sig
    double m2


cdef inline void _profiles_at(const Lens* L, double x, _Profiles* q) noexcept nogil:
    cdef double R = fabs(x), lsig, lm2
    devauc_unit(R, L.re, &q.pm, &q.ps)
    gnfw_lnsigma_lnm2(log(R) - L.ln_rs, &L.st, &lsig, &lm2)
    q.sig = exp(lsig)
    q.m2 = exp(lm2)


cdef inline void _assemble(const Lens* L, double x, const _Profiles* q, LensPoint* p) noexcept nogil:
    """The local lens mapping at x from the profiles there: the one place where alpha, kappa,
    1/mu_r, 1/mu_t, the shear and mu are put together (M* in L.a_star, L.k_star)."""
    cdef double es = L.a_star * q.pm, eh = L.a_halo * q.m2
    p.alpha_star = es / x
    p.alpha_halo = eh / x
    p.alpha = (es + eh) / x
    p.kappa_star = L.k_star * q.ps
    p.kappa_halo = L.k_halo * q.sig
    p.kappa = p.kappa_star + p.kappa_halo
    p.inv_mu_r = inv_mu_r(p.alpha, x, p.kappa)
    p.inv_mu_t = inv_mu_t(p.alpha, x)
    p.shear = p.alpha / x - p.kappa
    p.mu = magnification(p.inv_mu_r, p.inv_mu_t)


cdef void lens_point(const Lens* L, double x, LensPoint* p) noexcept nogil:
    """The local lens mapping of the full lens at a signed position x != 0 (see LensPoint)."""
    cdef _Profiles q
    _profiles_at(L, x, &q)
    _assemble(L, x, &q, p)


cdef inline void _point_row(const LensPoint* p, double* out) noexcept nogil:
    """out[0..9] in the order of ``POINT_NAMES``."""
    out[0] = p.alpha
    out[1] = p.alpha_star
    out[2] = p.alpha_halo
    out[3] = p.kappa
    out[4] = p.kappa_star
    out[5] = p.kappa_halo
    out[6] = p.inv_mu_r
    out[7] = p.inv_mu_t
    out[8] = p.shear
    out[9] = p.mu


cdef inline void _pair_out(const LensPoint* pA, const LensPoint* pB, double* out) noexcept nogil:
    """The image-pair quantities of lens_image_pair (out[0..6]) from the points at x_A and x_B."""
    out[0] = pA.mu
    out[1] = pB.mu
    out[2] = pA.kappa
    out[3] = pB.kappa
    out[4] = pA.shear
    out[5] = pB.shear
    out[6] = inversion_jacobian(pA.inv_mu_r, pB.inv_mu_r, pA.alpha_star - pB.alpha_star)


cdef void lens_image_pair(const Lens* L, double a, double b, double* out) noexcept nogil:
    """Quantities at the images x_A = a, x_B = b of a solved lens, written to out[0..6]:
    mu_A, mu_B (signed), kappa_A, kappa_B, shear_A, shear_B and
    |J| = |mu_r^-1(x_A) mu_r^-1(x_B)| / (ln10 |alpha*(x_A) - alpha*(x_B)|)."""
    cdef LensPoint pA, pB
    lens_point(L, a, &pA)
    lens_point(L, b, &pB)
    _pair_out(&pA, &pB, out)


# --------------------------------------------------------------------------------------------
# root finders
# --------------------------------------------------------------------------------------------
ctypedef void (*fdf_t)(const Lens* L, double x, double p, double* f, double* df) noexcept nogil
ctypedef double (*f_t)(const Lens* L, double x) noexcept nogil


cdef void _f_einstein(const Lens* L, double x, double p, double* f, double* df) noexcept nogil:
    # alpha(x) - x ; d/dx = -1/mu_r
    cdef LensPoint q
    lens_point(L, x, &q)
    f[0] = q.alpha - x
    df[0] = -q.inv_mu_r


cdef void _f_lenseq(const Lens* L, double x, double beta, double* f, double* df) noexcept nogil:
    # x - alpha(x) - beta ; d/dx = 1/mu_r
    cdef LensPoint q
    lens_point(L, x, &q)
    f[0] = x - q.alpha - beta
    df[0] = q.inv_mu_r


cdef double _f_radial(const Lens* L, double x) noexcept nogil:
    cdef LensPoint q
    lens_point(L, x, &q)
    return q.inv_mu_r


cdef int _rtsafe(fdf_t fn, const Lens* L, double p, double x1, double x2, double f1, double f2,
                 double* root) noexcept nogil:
    """Safeguarded Newton on a bracket [x1, x2] with f1 f2 <= 0 (Numerical Recipes rtsafe)."""
    cdef double xl, xh, rts, dx, dxold, f, df, tol, tmp
    cdef int j
    if f1 == 0.0:
        root[0] = x1
        return ST_OK
    if f2 == 0.0:
        root[0] = x2
        return ST_OK
    if f1 < 0.0:
        xl = x1
        xh = x2
    else:
        xl = x2
        xh = x1
    tol = XTOL * (fabs(x1) if fabs(x1) > fabs(x2) else fabs(x2))
    rts = 0.5 * (x1 + x2)
    dxold = fabs(x2 - x1)
    dx = dxold
    fn(L, rts, p, &f, &df)
    for j in range(MAXIT):
        if (((rts - xh) * df - f) * ((rts - xl) * df - f) > 0.0) or (fabs(2.0 * f) > fabs(dxold * df)):
            dxold = dx
            dx = 0.5 * (xh - xl)
            rts = xl + dx
            if xl == rts:
                root[0] = rts
                return ST_OK
        else:
            dxold = dx
            dx = f / df
            tmp = rts
            rts -= dx
            if tmp == rts:
                root[0] = rts
                return ST_OK
        if fabs(dx) < tol:
            fn(L, rts, p, &f, &df)
            root[0] = rts
            return ST_OK
        fn(L, rts, p, &f, &df)
        if f == 0.0:
            root[0] = rts
            return ST_OK
        if f < 0.0:
            xl = rts
        else:
            xh = rts
    root[0] = rts
    return ST_ROOT_FAILED


cdef int _brent(f_t fn, const Lens* L, double a, double b, double fa, double fb,
                double* root) noexcept nogil:
    """Brent's method on a bracket [a, b] with fa fb <= 0 (Numerical Recipes zbrent)."""
    cdef double c = b, fc = fb, d = 0.0, e = 0.0, tol1, xm, p, q, r, s, mn1, mn2
    cdef int it
    for it in range(MAXIT):
        if (fb > 0.0 and fc > 0.0) or (fb < 0.0 and fc < 0.0):
            c = a
            fc = fa
            d = b - a
            e = d
        if fabs(fc) < fabs(fb):
            a = b
            b = c
            c = a
            fa = fb
            fb = fc
            fc = fa
        tol1 = 2.0 * 2.2e-16 * fabs(b) + 0.5 * XTOL * fabs(b)
        xm = 0.5 * (c - b)
        if fabs(xm) <= tol1 or fb == 0.0:
            root[0] = b
            return ST_OK
        if fabs(e) >= tol1 and fabs(fa) > fabs(fb):
            s = fb / fa
            if a == c:
                p = 2.0 * xm * s
                q = 1.0 - s
            else:
                q = fa / fc
                r = fb / fc
                p = s * (2.0 * xm * q * (q - r) - (b - a) * (r - 1.0))
                q = (q - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0.0:
                q = -q
            p = fabs(p)
            mn1 = 3.0 * xm * q - fabs(tol1 * q)
            mn2 = fabs(e * q)
            if 2.0 * p < (mn1 if mn1 < mn2 else mn2):
                e = d
                d = p / q
            else:
                d = xm
                e = d
        else:
            d = xm
            e = d
        a = b
        fa = fb
        if fabs(d) > tol1:
            b += d
        else:
            b += tol1 if xm > 0 else -tol1
        fb = fn(L, b)
    root[0] = b
    return ST_ROOT_FAILED


# --------------------------------------------------------------------------------------------
# critical curves and images
# --------------------------------------------------------------------------------------------
cdef void lens_critical(const Lens* L, Critical* cr) noexcept nogil:
    """Einstein radius, radial critical curve (outermost inside theta_E) and radial caustic."""
    cdef double lo, hi, flo, fhi, df, x
    cdef LensPoint q
    cdef int i, st
    cr.theta_e = NAN
    cr.x_rad = NAN
    cr.y_caustic = NAN
    # --- Einstein radius: bracket alpha(x) - x by doubling/halving around Re
    x = L.re
    _f_einstein(L, x, 0.0, &flo, &df)
    if flo > 0.0:
        lo = x
        hi = 2.0 * x
        _f_einstein(L, hi, 0.0, &fhi, &df)
        i = 0
        while fhi > 0.0:
            lo = hi
            flo = fhi
            hi *= 2.0
            _f_einstein(L, hi, 0.0, &fhi, &df)
            i += 1
            if i > 200:
                cr.status = ST_ROOT_FAILED
                return
    else:
        hi = x
        fhi = flo
        lo = 0.5 * x
        _f_einstein(L, lo, 0.0, &flo, &df)
        while flo <= 0.0:
            hi = lo
            fhi = flo
            lo *= 0.5
            if lo < 1e-9 * L.re:
                cr.status = ST_NO_EINSTEIN
                return
            _f_einstein(L, lo, 0.0, &flo, &df)
    st = _rtsafe(_f_einstein, L, 0.0, lo, hi, flo, fhi, &cr.theta_e)
    if st != ST_OK:
        cr.status = st
        return
    # --- radial critical curve: outermost sign change of 1/mu_r below theta_E
    hi = cr.theta_e
    fhi = _f_radial(L, hi)
    lo = 0.5 * hi
    flo = _f_radial(L, lo)
    while flo >= 0.0:
        hi = lo
        fhi = flo
        lo *= 0.5
        if lo < 1e-8 * cr.theta_e:
            cr.status = ST_NO_RADIAL
            return
        flo = _f_radial(L, lo)
    if fhi < 0.0:
        # 1/mu_r < 0 at theta_E cannot happen for a monotonic profile; refuse rather than guess
        cr.status = ST_NO_RADIAL
        return
    st = _brent(_f_radial, L, lo, hi, flo, fhi, &cr.x_rad)
    if st != ST_OK:
        cr.status = st
        return
    lens_point(L, cr.x_rad, &q)
    cr.y_caustic = q.alpha - cr.x_rad
    cr.status = ST_OK


cdef int lens_images(const Lens* L, const Critical* cr, double beta, double* xA, double* xB) noexcept nogil:
    """Images A (x > theta_E) and B (-theta_E < x < -x_r) of a source at beta (kpc)."""
    cdef double lo, hi, flo, fhi, df, d
    cdef int i, st
    xA[0] = NAN
    xB[0] = NAN
    if cr.status != ST_OK:
        return cr.status
    if not beta >= 0.0:
        return ST_BETA_NEGATIVE
    if beta >= cr.y_caustic:
        return ST_BEYOND_CAUSTIC
    if beta == 0.0:
        xA[0] = cr.theta_e
        xB[0] = -cr.theta_e
        return ST_OK
    # image A on [theta_E, hi]
    lo = cr.theta_e
    flo = -beta
    d = beta if beta > 1e-3 * cr.theta_e else 1e-3 * cr.theta_e
    hi = lo + d
    _f_lenseq(L, hi, beta, &fhi, &df)
    i = 0
    while fhi < 0.0:
        d *= 2.0
        hi = lo + d
        _f_lenseq(L, hi, beta, &fhi, &df)
        i += 1
        if i > 200:
            return ST_ROOT_FAILED
    st = _rtsafe(_f_lenseq, L, beta, lo, hi, flo, fhi, xA)
    if st != ST_OK:
        return st
    # image B on [-theta_E, -x_r]: f(-theta_E) = -beta < 0, f(-x_r) = y_c - beta > 0
    st = _rtsafe(_f_lenseq, L, beta, -cr.theta_e, -cr.x_rad, -beta, cr.y_caustic - beta, xB)
    return st


# --------------------------------------------------------------------------------------------
# inversion
# --------------------------------------------------------------------------------------------
cdef int lens_invert_local(Lens* L, double xA, double xB, double* logM_star, double* beta,
                           double* muA, double* muB, double* detJ, double* inv_mu_rB) noexcept nogil:
    """The local part of lens_invert: (log M*, beta), |mu| and |J| at the two images and 1/mu_r
    at x_B, from the fields at the images only (no critical curves). Sets M* in L. Returns ST_OK,
    or ST_MSTAR_NONPOS with NaN outputs.

    The lens equation at both images, x_A - x_B = M* (a*(x_A) - a*(x_B)) + alpha_h(x_A) - alpha_h(x_B)
    with a* = alpha* per unit M*, gives M*; the points are then assembled with that M*."""
    cdef _Profiles qA, qB
    cdef LensPoint pA, pB
    cdef double mstar
    cdef double o[7]
    _profiles_at(L, xA, &qA)
    _profiles_at(L, xB, &qB)
    mstar = (((xA - xB) - L.a_halo * qA.m2 / xA + L.a_halo * qB.m2 / xB)
             / (qA.pm / (M_PI * L.sigma_cr * xA) - qB.pm / (M_PI * L.sigma_cr * xB)))
    logM_star[0] = NAN
    beta[0] = NAN
    muA[0] = NAN
    muB[0] = NAN
    detJ[0] = NAN
    inv_mu_rB[0] = NAN
    if not mstar > 0.0:
        return ST_MSTAR_NONPOS
    lens_set_mstar(L, mstar)
    _assemble(L, xA, &qA, &pA)
    _assemble(L, xB, &qB, &pB)
    _pair_out(&pA, &pB, o)
    logM_star[0] = log(mstar) / M_LN10
    beta[0] = xA - pA.alpha
    muA[0] = fabs(o[0])
    muB[0] = fabs(o[1])
    detJ[0] = o[6]
    inv_mu_rB[0] = pB.inv_mu_r
    return ST_OK


cdef int lens_invert(Lens* L, double xA, double xB, double* logM_star, double* beta,
                     Critical* cr, double* muA, double* muB, double* detJ) noexcept nogil:
    """(x_A, x_B) -> (log M*, beta) for the halo in L; fills critical curves, mu and |J|."""
    cdef double irB, b
    cdef int st = lens_invert_local(L, xA, xB, logM_star, beta, muA, muB, detJ, &irB)
    cr.theta_e = NAN
    cr.x_rad = NAN
    cr.y_caustic = NAN
    if st != ST_OK:
        cr.status = st
        return st
    b = beta[0]
    lens_critical(L, cr)
    if cr.status != ST_OK:
        return cr.status
    # x_A < theta_E means beta < 0 (mean convergence > 1 inside theta_E); test it as well because
    # alpha(x_A) underflows for a subnormal x_A, which then passed as a source at beta = x_A >= 0
    if b < 0.0 or xA < cr.theta_e:
        return ST_BETA_NEGATIVE
    if b >= cr.y_caustic:
        return ST_BEYOND_CAUSTIC
    if -xB <= cr.x_rad:
        return ST_XB_CENTRAL
    return ST_OK


# --------------------------------------------------------------------------------------------
# batched entry points
# --------------------------------------------------------------------------------------------
cdef inline bint _bad_lens(double logMh, double logRe, double g, double c, double zl, double zs) noexcept nogil:
    return not (isfinite(logMh) and isfinite(logRe) and g >= 0.0 and g <= GAMMA_MAX and c > 0.0
                and isfinite(c) and zl > 0.0 and zs > zl and isfinite(zs))


cdef inline void _cosmo_update(Cosmo* c, double zl, double zs, double* last_zl, double* last_zs,
                               double* sigcr, double* rhoc) noexcept nogil:
    if zl != last_zl[0] or zs != last_zs[0]:
        sigcr[0] = sigma_cr_kpc(c, zl, zs)
        rhoc[0] = rhoc_kpc3(c, zl)
        last_zl[0] = zl
        last_zs[0] = zs


def _arrays(*args):
    """Broadcast inputs to contiguous float64 1-D arrays; return (arrays, shape)."""
    b = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in args])
    shape = b[0].shape
    return [np.ascontiguousarray(a, dtype=float).ravel() for a in b], shape


def forward_batch(logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs, beta_unit,
                  double H0, double Om, double Ode, bint images=True):
    """Critical curves and (optionally) images for a batch of lenses (arrays broadcast).

    Returns a dict of arrays: theta_e, x_rad, y_caustic (kpc), and with ``images`` x_A, x_B
    (kpc), mu_A, mu_B (signed), kappa_A, kappa_B, shear_A, shear_B at the images and the
    Jacobian detJ = |d(logM*, beta)/d(x_A, x_B)| of the lens, plus ``status`` (int8, 0 = ok).
    """
    _profiles.ensure_gnfw_table()
    (ms, mh, re, gg, cc, zlv, zsv, bu), shape = _arrays(logM_star, logM_halo, logRe, gamma_in,
                                                      c_halo, zl, zs, beta_unit)
    cdef Py_ssize_t n = ms.shape[0], k
    out = {name: np.full(n, np.nan) for name in ("theta_e", "x_rad", "y_caustic", "x_A", "x_B", "mu_A", "mu_B",
                                                 "kappa_A", "kappa_B", "shear_A", "shear_B", "detJ")}
    status = np.zeros(n, dtype=np.int8)
    cdef const double[::1] vms = ms
    cdef const double[::1] vmh = mh
    cdef const double[::1] vre = re
    cdef const double[::1] vg = gg
    cdef const double[::1] vc = cc
    cdef const double[::1] vzl = zlv
    cdef const double[::1] vzs = zsv
    cdef const double[::1] vbu = bu
    cdef double[::1] te = out["theta_e"], xr = out["x_rad"], yc = out["y_caustic"]
    cdef double[::1] xa = out["x_A"], xb = out["x_B"], mua = out["mu_A"], mub = out["mu_B"]
    cdef double[::1] kpa = out["kappa_A"], kpb = out["kappa_B"], sha = out["shear_A"], shb = out["shear_B"]
    cdef double[::1] dj = out["detJ"]
    cdef signed char[::1] stv = status
    cdef Cosmo cosmo
    cdef Lens L
    cdef Critical cr
    cdef double last_zl = NAN, last_zs = NAN, sigcr = NAN, rhoc = NAN, a, b
    cdef double pair[7]
    cdef int st
    cdef bint do_images = images
    cosmo_init(&cosmo, H0, Om, Ode)
    with nogil:
        for k in range(n):
            if _bad_lens(vmh[k], vre[k], vg[k], vc[k], vzl[k], vzs[k]) or not isfinite(vms[k]) \
                    or (do_images and not (vbu[k] >= 0.0 and vbu[k] < 1.0)):
                stv[k] = ST_BAD_INPUT
                continue
            _cosmo_update(&cosmo, vzl[k], vzs[k], &last_zl, &last_zs, &sigcr, &rhoc)
            lens_setup(&L, &cosmo, sigcr, rhoc, vms[k], vmh[k], vre[k], vg[k], vc[k])
            lens_critical(&L, &cr)
            stv[k] = cr.status
            te[k] = cr.theta_e
            xr[k] = cr.x_rad
            yc[k] = cr.y_caustic
            if cr.status != ST_OK:
                continue
            if do_images:
                st = lens_images(&L, &cr, vbu[k] * cr.y_caustic, &a, &b)
                stv[k] = st
                if st == ST_OK:
                    xa[k] = a
                    xb[k] = b
                    lens_image_pair(&L, a, b, pair)
                    mua[k] = pair[0]
                    mub[k] = pair[1]
                    kpa[k] = pair[2]
                    kpb[k] = pair[3]
                    sha[k] = pair[4]
                    shb[k] = pair[5]
                    dj[k] = pair[6]
    out = {key: v.reshape(shape) for key, v in out.items()}
    out["status"] = status.reshape(shape)
    return out


def invert_batch(x_A, x_B, logRe, logM_halo, gamma_in, c_halo, zl, zs,
                 double H0, double Om, double Ode):
    """Inversion (x_A, x_B) -> (logM*, beta) at given halo for a batch (arrays broadcast).

    Returns a dict of arrays: logM_star, beta (kpc), y_caustic (kpc), theta_e, x_rad, mu_A,
    mu_B (absolute values), detJ and status (int8, 0 = valid grid point).
    """
    _profiles.ensure_gnfw_table()
    (xa, xb, re, mh, gg, cc, zlv, zsv), shape = _arrays(x_A, x_B, logRe, logM_halo, gamma_in,
                                                      c_halo, zl, zs)
    cdef Py_ssize_t n = xa.shape[0], k
    names = ("logM_star", "beta", "y_caustic", "theta_e", "x_rad", "mu_A", "mu_B", "detJ")
    out = {name: np.full(n, np.nan) for name in names}
    status = np.zeros(n, dtype=np.int8)
    cdef const double[::1] vxa = xa
    cdef const double[::1] vxb = xb
    cdef const double[::1] vre = re
    cdef const double[::1] vmh = mh
    cdef const double[::1] vg = gg
    cdef const double[::1] vc = cc
    cdef const double[::1] vzl = zlv
    cdef const double[::1] vzs = zsv
    cdef double[::1] olm = out["logM_star"], obe = out["beta"], oyc = out["y_caustic"]
    cdef double[::1] ote = out["theta_e"], oxr = out["x_rad"], oma = out["mu_A"], omb = out["mu_B"]
    cdef double[::1] odj = out["detJ"]
    cdef signed char[::1] stv = status
    cdef Cosmo cosmo
    cdef Lens L
    cdef Critical cr
    cdef double last_zl = NAN, last_zs = NAN, sigcr = NAN, rhoc = NAN
    cosmo_init(&cosmo, H0, Om, Ode)
    with nogil:
        for k in range(n):
            if _bad_lens(vmh[k], vre[k], vg[k], vc[k], vzl[k], vzs[k]) or not (vxa[k] > 0.0) \
                    or not (vxb[k] < 0.0) or not isfinite(vxa[k]):
                stv[k] = ST_BAD_INPUT
                continue
            _cosmo_update(&cosmo, vzl[k], vzs[k], &last_zl, &last_zs, &sigcr, &rhoc)
            lens_setup(&L, &cosmo, sigcr, rhoc, NAN, vmh[k], vre[k], vg[k], vc[k])
            stv[k] = lens_invert(&L, vxa[k], vxb[k], &olm[k], &obe[k], &cr, &oma[k], &omb[k], &odj[k])
            oyc[k] = cr.y_caustic
            ote[k] = cr.theta_e
            oxr[k] = cr.x_rad
    out = {key: v.reshape(shape) for key, v in out.items()}
    out["status"] = status.reshape(shape)
    return out


cdef void _local_columns(const Lens* L, const double[::1] xv, double[:, ::1] o) noexcept:
    """o[:, k] = the ``POINT_NAMES`` quantities of lens_point(L, xv[k]) for every k (o has N_POINT rows)."""
    cdef Py_ssize_t k, i
    cdef LensPoint p
    cdef double row[N_POINT]
    with nogil:
        for k in range(xv.shape[0]):
            lens_point(L, xv[k], &p)
            _point_row(&p, row)
            for i in range(N_POINT):
                o[i, k] = row[i]


def profile_batch(x, double logM_star, double logM_halo, double logRe, double gamma_in,
                  double c_halo, double zl, double zs, double H0, double Om, double Ode):
    """Local lens quantities of ONE lens at signed positions x (kpc, x != 0).

    Returns a dict of arrays: alpha, alpha_star, alpha_halo (signed, kpc), kappa, kappa_star,
    kappa_halo, inv_mu_r, inv_mu_t, shear, mu (``POINT_NAMES``), plus scalars sigma_cr
    (Msun/kpc^2), rs (kpc), M200.
    """
    _profiles.ensure_gnfw_table()
    xa = np.asarray(x, dtype=float)
    shape = xa.shape
    cdef const double[::1] xv = np.ascontiguousarray(xa).ravel()
    cdef Py_ssize_t n = xv.shape[0]
    names = POINT_NAMES
    out = np.empty((N_POINT, n))
    cdef double[:, ::1] o = out
    cdef Cosmo cosmo
    cdef Lens L
    cdef double sigcr, rhoc
    cosmo_init(&cosmo, H0, Om, Ode)
    sigcr = sigma_cr_kpc(&cosmo, zl, zs)
    rhoc = rhoc_kpc3(&cosmo, zl)
    lens_setup(&L, &cosmo, sigcr, rhoc, logM_star, logM_halo, logRe, gamma_in, c_halo)
    _local_columns(&L, xv, o)
    res = {name: out[i].reshape(shape) for i, name in enumerate(names)}
    res["sigma_cr"] = sigcr
    res["rs"] = L.rs
    res["M200"] = 10.0 ** logM_halo
    return res


# --------------------------------------------------------------------------------------------
# scalar entry points (the seed's one-lens-at-a-time API): the same C routines as the batches
# --------------------------------------------------------------------------------------------
def plane_constants(double zl, double zs, double H0, double Om, double Ode):
    """(Sigma_cr in Msun/kpc^2, rho_c(zl) in Msun/kpc^3) for one lens plane.

    The values the batch kernels compute for (zl, zs); ``sl_cy.lensing`` caches them per
    (zl, zs, cosmology).
    """
    cdef Cosmo cosmo
    cosmo_init(&cosmo, H0, Om, Ode)
    return sigma_cr_kpc(&cosmo, zl, zs), rhoc_kpc3(&cosmo, zl)


cdef class ScalarLens:
    """One lens (stars + halo) set up once in C; critical curves solved on first use.

    ScalarLens(logM_star, logM_halo, logRe, gamma_in, c_halo, sigma_cr, rho_c, H0, Om, Ode)
    with ``sigma_cr`` (Msun/kpc^2) and ``rho_c`` (Msun/kpc^3) from :func:`plane_constants`.
    Inputs are assumed valid (``sl_cy.lensing.LensModel`` checks them); every quantity is
    computed by the routines ``forward_batch`` / ``profile_batch`` use, so results are
    bit-identical to the batch API.
    """
    cdef Lens L
    cdef Critical cr
    cdef bint has_cr

    def __cinit__(self, double logM_star, double logM_halo, double logRe, double gamma_in,
                  double c_halo, double sigma_cr, double rho_c, double H0, double Om, double Ode):
        cdef Cosmo cosmo
        # the redshifts enter only through sigma_cr and rho_c: (1, 2) stands in for a valid pair
        if not (isfinite(logM_star) and isfinite(sigma_cr) and sigma_cr > 0.0 and isfinite(rho_c)
                and rho_c > 0.0) or _bad_lens(logM_halo, logRe, gamma_in, c_halo, 1.0, 2.0):
            raise ValueError("ScalarLens: non-finite or out-of-domain input")
        _profiles.ensure_gnfw_table()
        cosmo_init(&cosmo, H0, Om, Ode)
        lens_setup(&self.L, &cosmo, sigma_cr, rho_c, logM_star, logM_halo, logRe, gamma_in, c_halo)
        self.has_cr = False

    @property
    def rs(self):
        """gNFW scale radius (kpc)."""
        return self.L.rs

    @property
    def sigma_cr(self):
        """Critical surface density (Msun/kpc^2)."""
        return self.L.sigma_cr

    cdef void _need_critical(self) noexcept:
        if not self.has_cr:
            lens_critical(&self.L, &self.cr)
            self.has_cr = True

    def critical(self):
        """(theta_e, x_rad, y_caustic, status) in kpc, solved once per lens."""
        self._need_critical()
        return self.cr.theta_e, self.cr.x_rad, self.cr.y_caustic, self.cr.status

    def images(self, double beta_unit):
        """(x_A, x_B, status) for a source at beta = beta_unit * y_caustic (NaN unless status 0)."""
        cdef double a = NAN, b = NAN
        cdef int st
        self._need_critical()
        if self.cr.status != ST_OK:
            return a, b, self.cr.status
        st = lens_images(&self.L, &self.cr, beta_unit * self.cr.y_caustic, &a, &b)
        if st != ST_OK:
            a = NAN
            b = NAN
        return a, b, st

    def image_properties(self, double beta_unit):
        """(status, x_A, x_B, mu_A, mu_B, kappa_A, kappa_B, shear_A, shear_B, detJ); NaN unless
        status 0 (the positions then keep what the root finder left, NaN)."""
        cdef double a = NAN, b = NAN
        cdef double pair[7]
        cdef int st, i
        for i in range(7):
            pair[i] = NAN
        self._need_critical()
        if self.cr.status != ST_OK:
            st = self.cr.status
        else:
            st = lens_images(&self.L, &self.cr, beta_unit * self.cr.y_caustic, &a, &b)
            if st == ST_OK:
                lens_image_pair(&self.L, a, b, pair)
        if st != ST_OK:
            a = NAN
            b = NAN
        return st, a, b, pair[0], pair[1], pair[2], pair[3], pair[4], pair[5], pair[6]

    def local(self, double x):
        """The ten ``POINT_NAMES`` quantities at one position x != 0 (kpc), as a tuple."""
        cdef LensPoint p
        lens_point(&self.L, x, &p)
        return (p.alpha, p.alpha_star, p.alpha_halo, p.kappa, p.kappa_star, p.kappa_halo, p.inv_mu_r,
                p.inv_mu_t, p.shear, p.mu)

    def local_one(self, double x, int which):
        """One of the ``POINT_NAMES`` quantities (index ``which``) at x != 0 (kpc)."""
        cdef LensPoint p
        cdef double row[N_POINT]
        if which < 0 or which >= N_POINT:
            raise IndexError(which)
        lens_point(&self.L, x, &p)
        _point_row(&p, row)
        return row[which]

    def profile(self, x):
        """(10, n) array of the ``POINT_NAMES`` quantities at the positions x (1-D, x != 0)."""
        cdef const double[::1] xv = np.ascontiguousarray(x, dtype=float).ravel()
        out = np.empty((N_POINT, xv.shape[0]))
        _local_columns(&self.L, xv, out)
        return out


def invert_one(double xA, double xB, double logRe, double logM_halo, double gamma_in, double c_halo,
               double sigma_cr, double rho_c, double H0, double Om, double Ode):
    """One inversion (x_A > 0 > x_B) at a given halo, as ``invert_batch`` does it.

    Returns (status, logM_star, beta, y_caustic, theta_e, x_rad, mu_A, mu_B, detJ) with
    ``sigma_cr``, ``rho_c`` from :func:`plane_constants`; status ``ST_BAD_INPUT`` (all NaN) for
    input ``invert_batch`` would reject.
    """
    cdef Cosmo cosmo
    cdef Lens L
    cdef Critical cr
    cdef double lm = NAN, be = NAN, ma = NAN, mb = NAN, dj = NAN
    cdef int st
    # as in invert_batch; the redshifts enter only through sigma_cr and rho_c
    if _bad_lens(logM_halo, logRe, gamma_in, c_halo, 1.0, 2.0) or not (xA > 0.0) or not (xB < 0.0) \
            or not isfinite(xA) or not (sigma_cr > 0.0 and rho_c > 0.0):
        return ST_BAD_INPUT, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN
    _profiles.ensure_gnfw_table()
    cosmo_init(&cosmo, H0, Om, Ode)
    lens_setup(&L, &cosmo, sigma_cr, rho_c, NAN, logM_halo, logRe, gamma_in, c_halo)
    st = lens_invert(&L, xA, xB, &lm, &be, &cr, &ma, &mb, &dj)
    return st, lm, be, cr.y_caustic, cr.theta_e, cr.x_rad, ma, mb, dj
