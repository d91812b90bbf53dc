# C-level interface of sl_cy._lensing (compiled from csrc/lensing.pyx).
from libc.math cimport fabs, M_LN10
from sl_cy._profiles cimport Cosmo, GStencil

# status codes (mirrored by sl_cy.lensing.Status)
cdef enum:
    ST_OK = 0
    ST_NO_EINSTEIN = 1         # subcritical: mean convergence < 1 everywhere
    ST_NO_RADIAL = 2           # no radial critical curve inside the Einstein radius
    ST_BETA_NEGATIVE = 3       # inversion: beta < 0
    ST_BEYOND_CAUSTIC = 4      # beta >= y_caustic: a single image
    ST_MSTAR_NONPOS = 5        # inversion: M* <= 0
    ST_XB_CENTRAL = 6          # inversion: |x_B| < x_r, x_B would be the central image
    ST_ROOT_FAILED = 7         # iteration limit reached
    ST_BAD_INPUT = 8           # non-finite or out-of-domain input in a batch

ctypedef struct Lens:
    double re           # kpc
    double inv_re
    double rs           # kpc
    double ln_rs
    double a_star       # alpha* = a_star * P(8, b (R/Re)^1/4) / x   [a_star = M*/(pi Sigma_cr)]
    double k_star       # kappa* = k_star * exp(-b (R/Re)^1/4)
    double a_halo       # alpha_h = a_halo * m2(R/rs) / x
    double k_halo       # kappa_h = k_halo * sigma(R/rs)
    double sigma_cr     # Msun/kpc^2
    double mstar        # Msun (0 while unknown, during the inversion)
    GStencil st

ctypedef struct LensPoint:
    # the local lens mapping at one signed position x != 0 (lens_point: the one place it is assembled)
    double alpha_star   # signed deflections (kpc): stars, halo, total
    double alpha_halo
    double alpha
    double kappa_star   # convergence at |x|: stars, halo, total
    double kappa_halo
    double kappa
    double inv_mu_r     # 1/mu_r = 1 + alpha/x - 2 kappa
    double inv_mu_t     # 1/mu_t = 1 - alpha/x
    double shear        # alpha/x - kappa (mean convergence inside |x| minus kappa)
    double mu           # signed magnification

ctypedef struct Critical:
    double theta_e
    double x_rad
    double y_caustic
    int status

cdef void lens_setup(Lens* L, const Cosmo* c, double sigma_cr, double rhoc, double logM_star,
                     double logM_halo, double logRe, double gamma_in, double c_halo) noexcept nogil
cdef void lens_point(const Lens* L, double x, LensPoint* p) noexcept nogil
cdef void lens_critical(const Lens* L, Critical* cr) noexcept nogil
cdef int lens_images(const Lens* L, const Critical* cr, double beta, double* xA, double* xB) noexcept nogil
cdef int lens_invert_local(Lens* L, double xA, double xB, double* logM_star, double* beta,
                           double* muA, double* muB, double* detJ, double* inv_mu_rB) noexcept nogil
cdef int lens_invert(Lens* L, double xA, double xB, double* logM_star, double* beta,
                     Critical* cr, double* muA, double* muB, double* detJ) noexcept nogil
cdef void lens_image_pair(const Lens* L, double a, double b, double* out) noexcept nogil


# --- local lens mapping of a spherical lens, written once (x signed, alpha signed, kappa at |x|) ---
cdef inline double inv_mu_r(double alpha, double x, double kappa) noexcept nogil:
    """Radial eigenvalue 1/mu_r = 1 + alpha/x - 2 kappa = d(x - alpha)/dx."""
    return 1.0 + alpha / x - 2.0 * kappa


cdef inline double inv_mu_t(double alpha, double x) noexcept nogil:
    """Tangential eigenvalue 1/mu_t = 1 - alpha/x."""
    return 1.0 - alpha / x


cdef inline double magnification(double ir, double it) noexcept nogil:
    """Signed mu = 1 / (1/mu_t * 1/mu_r)."""
    return 1.0 / (it * ir)


cdef inline double inversion_jacobian(double irA, double irB, double dalpha_star) noexcept nogil:
    """|J| = |d(log10 M*, beta)/d(x_A, x_B)| = |mu_r^-1(x_A) mu_r^-1(x_B)| / (ln10 |alpha*(x_A) - alpha*(x_B)|),
    with alpha* the stellar deflection (dalpha_star = alpha*(x_A) - alpha*(x_B) = M* (a*(x_A) - a*(x_B)),
    a* per unit M*)."""
    return fabs(irA * irB) / (M_LN10 * fabs(dalpha_star))
