# C-level interface of sl_cy._likelihood (compiled from csrc/likelihood.pyx). The population
# model struct and eta live in sl_cy/_population.pxd (re-exported here for cimporting code).

from sl_cy._population cimport PopModel, EtaC

cdef double log_ndtr_diff(double a, double b) noexcept nogil
cdef double gamma_log_norm(double mu, double sigma, double lo, double hi) noexcept nogil
# scratch doubles per grid point that lens_logp needs in ``work`` (pass 1 -> pass 2)
cdef enum:
    WORK_PER_POINT = 6

cdef double lens_logp(const PopModel* pm, const EtaC* e, const double* lg, double logRe, double m_obs,
                      const double* L, const double* logMh, const int* nodes, Py_ssize_t nk, const double* logw0,
                      Py_ssize_t n, const double* dlg, double* grad, double* work) noexcept nogil
