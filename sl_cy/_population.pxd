# The galaxy population of the compiled core (DESIGN section 3), written once: the model
# constants (PopModel), the hyper-parameters eta (EtaC) and the densities
#
#   p_sk(M)                   skew-normal of M = logM*_sps: 2/sigma* phi(z) Phi(a z), z = (M - mu*)/sigma*
#   p(logRe | M)              N(mu_R0 + beta_R (M - pivot), sigma_R)
#   p(logMh | M, logRe, eta)  N(mu_h + beta_h (M - pivot) + xi_h (logRe - mu_R(M)), sigma_h)
#   p(gamma | eta)            N(mu_gamma, sigma_gamma) truncated to [gamma_lo, gamma_hi]
#
# cimported by csrc/likelihood.pyx (per-lens likelihood) and csrc/selection.pyx (A(eta)); the
# kernels combine these pieces (standardised residuals z and log-normalisations) in their own
# loops, so no density is written twice.

from libc.math cimport exp, log, erfc, INFINITY
from sl_cy._numerics cimport LOG_SQRT_2PI, INV_SQRT2, log_gauss_norm, log_ndtr_diff_h, fast_log_ndtr

ctypedef struct PopModel:
    double mu_star          # skew-normal loc of logM*_sps
    double sigma_star       # skew-normal scale
    double a_skew           # skew-normal shape a = 10**log_s_star
    double mu_R0            # size-mass relation: mu_R(M) = mu_R0 + beta_R (M - pivot)
    double beta_R
    double sigma_R
    double xi_h             # halo-mass dependence on the size residual
    double sigma_obs        # scatter of the observed SPS mass (dex)
    double pivot            # PIVOT_LOGM = 11.4
    double gamma_lo         # support of the truncated gamma_in law
    double gamma_hi
    # derived by pop_init
    double inv_ss           # 1 / sigma_star
    double ask              # a_skew / sqrt 2
    double inv_sR           # 1 / sigma_R
    double inv_so           # 1 / sigma_obs
    double log_c_sk         # log(2 / sigma_star) - log sqrt(2 pi): skew-normal normalisation
    double log_c_R          # log-normalisation of p(logRe | M)
    double log_c_obs        # log-normalisation of N(M_obs; M, sigma_obs)

ctypedef struct EtaC:
    double alpha_sps
    double mu_h
    double beta_h
    double sigma_h
    double mu_gamma
    double sigma_gamma


cdef inline void pop_init(PopModel* pm) noexcept nogil:
    """Fill the derived fields of pm from its model constants."""
    pm.inv_ss = 1.0 / pm.sigma_star
    pm.ask = pm.a_skew * INV_SQRT2
    pm.inv_sR = 1.0 / pm.sigma_R
    pm.inv_so = 1.0 / pm.sigma_obs
    pm.log_c_sk = log(2.0 * pm.inv_ss) - LOG_SQRT_2PI
    pm.log_c_R = log_gauss_norm(pm.sigma_R)
    pm.log_c_obs = log_gauss_norm(pm.sigma_obs)


# --- skew-normal p_sk(M) = exp(log_c_sk - z^2/2) Phi(a z) ---
cdef inline double sk_z(const PopModel* pm, double M) noexcept nogil:
    """Standardised stellar mass z = (M - mu*) / sigma*."""
    return (M - pm.mu_star) * pm.inv_ss


cdef inline double sk_Phi(const PopModel* pm, double z) noexcept nogil:
    """The skewing factor Phi(a z) = erfc(-a z / sqrt 2) / 2 (underflows to 0 for a z < -37)."""
    return 0.5 * erfc(-pm.ask * z)


cdef inline double sk_log_pdf(const PopModel* pm, double M) noexcept nogil:
    cdef double z = sk_z(pm, M)
    return pm.log_c_sk - 0.5 * z * z + fast_log_ndtr(pm.a_skew * z)


# --- size-mass relation p(logRe | M) ---
cdef inline double size_mean(const PopModel* pm, double M) noexcept nogil:
    return pm.mu_R0 + pm.beta_R * (M - pm.pivot)


cdef inline double size_z(const PopModel* pm, double M, double logRe) noexcept nogil:
    return (logRe - size_mean(pm, M)) * pm.inv_sR


# --- halo mass p(logMh | M, logRe, eta) ---
cdef inline double halo_slope(const PopModel* pm, const EtaC* e) noexcept nogil:
    """c1 = beta_h - xi_h beta_R: d(halo mean) / dM at fixed logRe (the size residual moves with M)."""
    return e.beta_h - pm.xi_h * pm.beta_R


cdef inline double halo_mean(const PopModel* pm, const EtaC* e, double M, double logRe) noexcept nogil:
    """mu_h + beta_h (M - pivot) + xi_h (logRe - mu_R(M)), grouped as c0 + c1 (M - pivot) with
    c0 = mu_h + xi_h (logRe - mu_R0), c1 = beta_h - xi_h beta_R (loop-invariant per lens and eta,
    hoisted by the compiler in the likelihood kernel)."""
    return (e.mu_h + pm.xi_h * (logRe - pm.mu_R0)) + halo_slope(pm, e) * (M - pm.pivot)


cdef inline double halo_z(const PopModel* pm, const EtaC* e, double inv_sh, double M, double logRe,
                          double logMh) noexcept nogil:
    """(logMh - halo mean) / sigma_h, with inv_sh = 1 / sigma_h."""
    return (logMh - halo_mean(pm, e, M, logRe)) * inv_sh


# --- the four residuals at a grid point, affine in its lensing logM* L and logMh H ---
cdef inline void residual_affine(const PopModel* pm, const EtaC* e, double logRe, double m_obs,
                                 double* c) noexcept nogil:
    """Coefficients of the standardised residuals of one lens at eta as affine functions of a grid
    point's lensing logM* L and logMh H (M = L - alpha_sps): z_s = c[0] L + c[1] (skew-normal,
    :func:`sk_z`), z_r = c[2] L + c[3] (size, :func:`size_z`), z_o = c[4] L + c[5] (observed mass
    N(m_obs; M, sigma_obs)), z_h = c[6] L + c[7] + c[8] H (halo, :func:`halo_z`). The intercepts are
    those functions at L = 0, the slopes their exact derivatives, so no formula is written twice;
    a residual of size z then carries an absolute rounding error ~ |c[odd]| 1e-16 (~1e-14)."""
    cdef double inv_sh = 1.0 / e.sigma_h
    c[0] = pm.inv_ss
    c[1] = sk_z(pm, -e.alpha_sps)
    c[2] = -pm.beta_R * pm.inv_sR
    c[3] = size_z(pm, -e.alpha_sps, logRe)
    c[4] = -pm.inv_so
    c[5] = (m_obs + e.alpha_sps) * pm.inv_so
    c[6] = -halo_slope(pm, e) * inv_sh
    c[7] = halo_z(pm, e, inv_sh, -e.alpha_sps, logRe, 0.0)
    c[8] = inv_sh


# --- truncated-normal gamma law p(gamma | eta) = exp(-z^2/2 + gamma_log_norm) on [lo, hi] ---
cdef inline bint gamma_in_support(const PopModel* pm, double g) noexcept nogil:
    return g >= pm.gamma_lo and g <= pm.gamma_hi


cdef inline double gamma_log_norm_mass(double sigma, double log_mass) noexcept nogil:
    """Log-normalisation of N(mu, sigma) truncated to an interval of normal mass exp(log_mass)."""
    return log_gauss_norm(sigma) - log_mass


cdef inline double gamma_log_mass(double mu, double sigma, double lo, double hi) noexcept nogil:
    """log(Phi((hi-mu)/sigma) - Phi((lo-mu)/sigma))."""
    return log_ndtr_diff_h((lo - mu) / sigma, (hi - mu) / sigma, 0.5 * (hi - lo) / sigma)


cdef inline double gamma_log_norm(double mu, double sigma, double lo, double hi) noexcept nogil:
    """-log sigma - log sqrt(2 pi) - log(Phi((hi-mu)/sigma) - Phi((lo-mu)/sigma))."""
    return gamma_log_norm_mass(sigma, gamma_log_mass(mu, sigma, lo, hi))


cdef inline double gamma_z(const EtaC* e, double g) noexcept nogil:
    return (g - e.mu_gamma) / e.sigma_gamma


cdef inline double gamma_log_pdf(const PopModel* pm, const EtaC* e, double g, double lnorm) noexcept nogil:
    """log p(gamma | eta) given lnorm = gamma_log_norm(...); -inf outside the support."""
    cdef double z
    if not gamma_in_support(pm, g):
        return -INFINITY
    z = gamma_z(e, g)
    return -0.5 * z * z + lnorm


cdef inline void gamma_log_norm_grad(double mu, double sigma, double lo, double hi, double* d) noexcept nogil:
    """d gamma_log_norm(mu, sigma, lo, hi) / d(mu, sigma) into d[0], d[1]. With a, b = (lo - mu)/sigma,
    (hi - mu)/sigma and m = Phi(b) - Phi(a): d log m / d mu = (phi(a) - phi(b)) / (sigma m),
    d log m / d sigma = (a phi(a) - b phi(b)) / (sigma m); phi / m from the logs (any tail)."""
    cdef double a = (lo - mu) / sigma, b = (hi - mu) / sigma
    cdef double lm = gamma_log_mass(mu, sigma, lo, hi)
    cdef double pa = exp(-0.5 * a * a - LOG_SQRT_2PI - lm), pb = exp(-0.5 * b * b - LOG_SQRT_2PI - lm)
    d[0] = -(pa - pb) / sigma
    d[1] = -1.0 / sigma - (a * pa - b * pb) / sigma


cdef inline void gamma_log_pdf_grad(const EtaC* e, double g, const double* dnorm, double* d) noexcept nogil:
    """d log p(gamma | eta) / d(mu_gamma, sigma_gamma) inside the support, given dnorm =
    gamma_log_norm_grad(...): z / sigma + dnorm[0], z^2 / sigma + dnorm[1] with z = gamma_z."""
    cdef double z = gamma_z(e, g)
    d[0] = z / e.sigma_gamma + dnorm[0]
    d[1] = z * z / e.sigma_gamma + dnorm[1]
