"""The compiled core writes each shared constant and formula once (issue 14): the numerical
constants and helpers live in ``sl_cy/_numerics.pxd``, the population in ``sl_cy/_population.pxd``,
the local lens mapping in ``sl_cy/_lensing.pxd``; the ``.pyx`` sources cimport them."""
import math
import pathlib
import re
from decimal import Decimal, getcontext

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
PKG = ROOT / "sl_cy"

pytestmark = pytest.mark.skipif(not CSRC.is_dir(), reason="needs the source tree (csrc/)")


def _sources():
    return {p.name: p.read_text() for p in sorted(CSRC.glob("*.pyx")) + sorted(PKG.glob("*.pxd"))}


@pytest.mark.parametrize("name", ["LOG_SQRT_2PI", "INV_SQRT2", "SQRT2", "SQRT_2_OVER_PI"])
def test_constants_defined_once(name):
    defs = [f for f, s in _sources().items() if re.search(rf"\b(double|const double)\s+{name}\b", s)]
    assert defs == ["_numerics.pxd"]


def test_log_sqrt_2pi_correctly_rounded():
    text = (PKG / "_numerics.pxd").read_text()
    val = float(re.search(r"#define SL_CY_LOG_SQRT_2PI\s+([0-9.e+-]+)", text).group(1))
    getcontext().prec = 50
    pi = Decimal("3.14159265358979323846264338327950288419716939937510")
    exact = (2 * pi).ln() / 2
    assert abs(Decimal(val) - exact) <= abs(Decimal(math.nextafter(val, 0.0)) - exact)


@pytest.mark.parametrize("pattern, home, count", [
    (r"inline void lagrange4_weights", "_numerics.pxd", 1),      # 4-point Lagrange weights
    (r"\(f \+ 1\.0\) \* f \* \(f - 1\.0\) / 6\.0", "_numerics.pxd", 1),  # ... their last weight
    (r"log1p\(-0\.5 \* erfc", "_numerics.pxd", 1),              # log Phi for x > 0
    (r"xi_h \*", "_population.pxd", 2),                          # the halo-mass mean (c0 and c1)
    (r"beta_R \* \(M - ", "_population.pxd", 1),                 # the size-mass mean
    (r"1\.0 \+ \w+ / \w+ - 2\.0 \* \w+", "_lensing.pxd", 1),    # 1/mu_r = 1 + alpha/x - 2 kappa
    (r"M_LN10 \* fabs", "_lensing.pxd", 1),                      # the inversion Jacobian
    (r"alpha / x - \w+\.kappa", "lensing.pyx", 1),               # the shear (in lens_point only)
    (r"log_gamma_integral\(double", "_numerics.pxd", 1),         # the source-law normalisation
    (r"from sl_cy\.parallel import resolve_n_threads", "_numerics.pxd", 1),  # the thread count
])
def test_formula_written_once(pattern, home, count):
    hits = [f for f, s in _sources().items() for _ in re.finditer(pattern, s)]
    assert hits == [home] * count, hits


def test_thread_count_read_in_one_place():
    """Every OpenMP loop runs on ``nt = resolve_threads(n_threads)`` (``_numerics.pxd``, which
    calls ``sl_cy.parallel.resolve_n_threads``); the core count is computed only in parallel.py."""
    for f, s in _sources().items():
        loops = re.findall(r"num_threads=([\w(), ]+?)[,)]", s)
        assert all(v == "nt" for v in loops), (f, loops)
        if loops:
            assert "resolve_threads" in s and re.search(r"nt = resolve_threads\(n_threads\)", s), f
    py = {p.relative_to(PKG).as_posix(): p.read_text() for p in PKG.rglob("*.py")}
    counting = sorted(f for f, s in py.items() if re.search(r"sched_getaffinity|cpu_count\(", s))
    assert counting == ["parallel.py"], counting
    assert not [f for f, s in py.items() if re.search(r"n_threads or |max\(n_threads", s)]


def test_dead_code_removed():
    text = "\n".join(_sources().values())
    for name in ("lens_mu(", "gnfw_table_ready", "ktable_eval(", "lens_alpha_kappa", "lens_components",
                 "lens_local(", "lens_inv_mu_r", "_pair_from_components"):
        assert name not in text
