# C-level interface of sl_cy._profiles (compiled from csrc/profiles.pyx).
#
# Everything here is nogil and allocation-free so that the lensing, photometry and likelihood
# kernels can call it from their inner loops.

ctypedef struct Cosmo:
    double H0          # km/s/Mpc
    double Om          # matter density today
    double Ode         # dark-energy (Lambda) density today
    double Ok          # curvature density today, 1 - Om - Ode (>= 0 supported)
    double dh_kpc      # Hubble distance c/H0 in kpc

ctypedef struct GStencil:
    # 6-point Lagrange weights over the gamma rows of the gNFW tables, for one gamma_in
    int j0
    double w[6]

cdef void cosmo_init(Cosmo* c, double H0, double Om, double Ode) noexcept nogil
cdef double comoving_kpc(const Cosmo* c, double z) noexcept nogil
cdef double dang_kpc(const Cosmo* c, double z1, double z2) noexcept nogil
cdef double sigma_cr_kpc(const Cosmo* c, double zl, double zs) noexcept nogil
cdef double rhoc_kpc3(const Cosmo* c, double z) noexcept nogil

cdef double gammainc8(double z) noexcept nogil
cdef double devauc_m2d_unit(double R, double Re) noexcept nogil
cdef double devauc_sigma_unit(double R, double Re) noexcept nogil
cdef void devauc_unit(double R, double Re, double* m2d_unit, double* sigma_unit) noexcept nogil

cdef void gamma_stencil(double g, GStencil* st) noexcept nogil
cdef double gnfw_lnsigma(double lnx, const GStencil* st) noexcept nogil
cdef double gnfw_lnm2(double lnx, const GStencil* st) noexcept nogil
cdef double gnfw_lnm3(double lnx, const GStencil* st) noexcept nogil
cdef void gnfw_lnsigma_lnm2(double lnx, const GStencil* st, double* lnsig, double* lnm2) noexcept nogil
