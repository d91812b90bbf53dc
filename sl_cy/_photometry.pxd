# C-level interface of sl_cy._photometry (compiled from csrc/photometry.pyx).
#
# Everything here is nogil and allocation-free, for the tabulation (F_phot per grid point),
# likelihood and A(eta) kernels. Typical use from another Cython module:
#
#     from sl_cy._photometry cimport PhotometryKernel, KTableKernel, fphot, fphot_batch, ktable_log_eval
#     cdef PhotometryKernel pk = model.kernel          # sl_cy.photometry.PhotometryModel.kernel
#     cdef KTableKernel kk = ktable.kernel             # sl_cy.ktable.KTable.kernel
#     with nogil:
#         fphot_batch(&pk.c, mA_obs, mB_obs, &muA[0], &muB[0], n, &out[0], False)
#         K = exp(ktable_log_eval(&kk.c, muA, muB))
#
# Conventions: magnifications are signed or not, |mu| is used; a non-finite input or mu == 0
# gives F_phot = 0 (log F_phot = -inf) and K = 0 -- a grid point that contributes nothing,
# never a NaN that poisons a sum. The structs point into numpy buffers owned by the kernel
# objects: keep the Python object alive while the struct is in use.

# detection models (DESIGN section 2)
cdef enum:
    DET_OBSERVED = 0        # detection on the reported noisy magnitudes (default)
    DET_INDEPENDENT = 1     # detection with its own noise realisation: P_det per image

ctypedef struct SourceLaw:
    # p(m) = exp((alpha_s + 1) ln L - L - log_norm) on [m_min, m_max], L = 10^(-0.4 (m - m_star))
    double m_star
    double alpha_s
    double m_min
    double m_max
    double log_norm         # log of the integral of L^(alpha_s+1) e^(-L) dm over [m_min, m_max]

ctypedef struct PhotTable:
    SourceLaw law
    int detection           # DET_OBSERVED or DET_INDEPENDENT
    double m_lim            # limiting magnitude (independent detection)
    double sigma_m          # magnitude noise
    double s                # sigma_m / sqrt(2): width of the smoothing of p(m_s)
    double log_norm_delta   # log N(0; 0, sqrt(2) sigma_m) = -log(2 sqrt(pi) sigma_m)
    double inv_4sig2        # 1 / (4 sigma_m^2)
    double m0               # log p~ table: m_bar = m0 + i h, i = 0 .. n-1
    double h
    double inv_h
    Py_ssize_t n
    const double* logpt     # log p~(m_bar) at the nodes

ctypedef struct KTable:
    double u0               # grid of u = log10|mu|: u0 + i h, i = 0 .. n-1 (same on both axes)
    double h
    double inv_h
    Py_ssize_t n
    const double* logk      # log K, n x n, row-major, symmetric

cdef class PhotometryKernel:
    cdef PhotTable c
    cdef object _logpt      # numpy buffer behind c.logpt
    cdef object _args       # constructor arguments (__reduce__)

cdef class KTableKernel:
    cdef KTable c
    cdef object _logk       # numpy buffer behind c.logk
    cdef object _args       # constructor arguments (__reduce__)

# source magnitude law and per-image quantities
cdef double law_log_norm(double m_star, double alpha_s, double m_min, double m_max) noexcept nogil
cdef double law_log_pdf(const SourceLaw* law, double m) noexcept nogil
cdef double selection_prob(double mu, double m_lim, double ms, double sigma_m) noexcept nogil
cdef double mag_like(double m_obs, double mu, double ms, double sigma_m) noexcept nogil

# photometric factor F_phot(m_A,obs, m_B,obs, mu_A, mu_B) for the model in T.detection
cdef double phot_log_ptilde(const PhotTable* T, double mbar) noexcept nogil
cdef double log_fphot(const PhotTable* T, double mA, double mB, double muA, double muB) noexcept nogil
cdef double fphot(const PhotTable* T, double mA, double mB, double muA, double muB) noexcept nogil
cdef void fphot_batch(const PhotTable* T, double mA, double mB, const double* muA,
                      const double* muB, Py_ssize_t n, double* out, bint take_log) noexcept nogil

# K(mu1, mu2) = int p(m_s) P_det(mu1, m_s) P_det(mu2, m_s) dm_s
cdef double k_direct(const SourceLaw* law, double m_lim, double sigma_m, double mu1, double mu2) noexcept nogil
cdef double ktable_log_eval(const KTable* T, double mu1, double mu2) noexcept nogil
