# C-level interface of sl_cy._selection (compiled from csrc/selection.pyx): the A(eta) kernel
# holds the population constants (sl_cy/_population.pxd; sigma_obs is not used by A(eta)).

from sl_cy._population cimport PopModel

cdef class SelectionKernel:
    cdef PopModel c
    cdef object _args
