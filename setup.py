"""Build script for the compiled core of sl_cy.

Each ``csrc/<name>.pyx`` is compiled into the extension module ``sl_cy._<name>``; the matching
``.pxd`` declarations live beside the compiled module in ``sl_cy/_<name>.pxd`` (so other Cython
code can ``cimport`` them, the scikit-learn layout). OpenMP is used when the compiler supports
it; set ``SL_CY_NO_OPENMP=1`` to build without it.
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["profiles", "lensing", "photometry", "selection", "likelihood", "tabulate"]

use_openmp = os.environ.get("SL_CY_NO_OPENMP", "0") != "1" and sys.platform.startswith("linux")
compile_args = ["-O3", "-fno-math-errno"]
link_args = []
if use_openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

extensions = [
    Extension(
        f"sl_cy._{name}",
        [f"csrc/{name}.pyx"],
        include_dirs=[np.get_include()],
        # the likelihood kernel's pass 1 writes five scratch arrays: let GCC version the loop for them
        extra_compile_args=compile_args + (["--param=vect-max-version-for-alias-checks=40"]
                                           if name == "likelihood" and use_openmp and "clang" not in os.environ.get("CC", "") else []),
        extra_link_args=link_args,
        # libm's linker script pulls in libmvec (glibc's SIMD exp/erfc, used by the likelihood kernel)
        libraries=["m"] if sys.platform.startswith("linux") else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["."],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
