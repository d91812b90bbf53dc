# C-level interface of sl_cy._selection (compiled from csrc/selection.pyx): population constants
# of the A(eta) importance-sampling kernel.

ctypedef struct SelConsts:
    double mu_star          # skew-normal loc of logM*_sps
    double sigma_star       # skew-normal scale
    double a_skew           # skew-normal shape a = 10**log_s_star
    double log_2_over_sig_star
    double mu_R0            # size-mass relation mu_R(M) = mu_R0 + beta_R (M - pivot)
    double beta_R
    double sigma_R
    double log_sigma_R
    double xi_h             # halo-mass dependence on the size residual
    double pivot            # 11.4
    double gamma_lo         # support of the truncated gamma_in law
    double gamma_hi

cdef class SelectionKernel:
    cdef SelConsts c
    cdef object _args
