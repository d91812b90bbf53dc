# C-level interface of sl_cy._likelihood (compiled from csrc/likelihood.pyx).

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

ctypedef struct EtaC:
    double alpha_sps
    double mu_h
    double beta_h
    double sigma_h
    double mu_gamma
    double sigma_gamma

cdef double log_ndtr_diff(double a, double b) noexcept nogil
cdef double gamma_log_norm(double mu, double sigma, double lo, double hi) noexcept nogil
cdef double lens_logp(const PopModel* pm, const EtaC* e, const double* lg, double logRe, double m_obs,
                      const double* L, const double* logMh, const int* kg, const double* logw0,
                      Py_ssize_t n) noexcept nogil
