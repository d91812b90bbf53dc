"""Reference implementations for tests and benchmarks (the ``numpy.testing`` pattern).

Plain NumPy/SciPy implementations of the sl_cy strong-lensing physics, plus the slow
reference forms of compiled product functions: :func:`log_likelihood_numpy` (of
:class:`sl_cy.likelihood.LikelihoodKernel`), :func:`K_direct` (of :class:`sl_cy.ktable.KTable`),
:func:`gnfw_quadrature` (of :func:`sl_cy.profiles.gnfw_dimensionless`) and
:func:`source_law_log_norm_quadrature` (of the analytic source-law normalisation). Nothing in the
product imports this module; the tests and benchmarks do.

This module is deliberately slow and straightforward.  It exists for three reasons:

1. it is an *independent* quadrature cross-check for the compiled (Cython) core in the
   test-suite (``RefLens`` evaluates every profile by direct adaptive quadrature), and
2. it is the "plain SciPy implementation of the same formulae" that the benchmarks time
   the compiled core against (``ref_forward_solve`` / ``ref_invert``);
3. it keeps the former Python form of a rule that is now compiled, as the reference the tests
   and benchmarks compare the compiled rule with (``ref_adaptive_columns``: the adaptive
   per-lens column rule of ``csrc/tabulate.pyx``; it solves its points with the compiled core).

Everything is scalar and returns plain Python floats.  Units are kpc, Msun and
Msun/kpc^2 unless stated otherwise; distances returned by :func:`dang_mpc` are in Mpc.

Conventions (see ``DESIGN.md``):

* flat LCDM, no radiation, astropy CODATA2018 / IAU2015 constants;
* stars: de Vaucouleurs (Sersic n = 4) with the Ciotti & Bertin expansion of b(n);
* halo: generalised NFW normalised by ``M3d(r200) = M200`` with ``M200`` defined w.r.t.
  ``200 rho_c(zl)``;
* lensing is spherical, ``x`` is a *signed* position on a line through the lens centre;
  image A is at ``x_A > thetaE``, image B at ``-thetaE < x_B < -x_r`` (negative);
  magnifications are signed (``mu_B < 0``: image B is a saddle point);
* ``beta_unit`` is the source position in units of the radial caustic,
  ``beta = beta_unit * y_c`` with ``0 <= beta_unit < 1``.

Configurations that are not two-image lenses of this model (no Einstein radius, no radial
critical curve, e.g. ``gamma_in >= 2``) give ``nan`` rather than an exception.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special
from scipy.interpolate import CubicSpline

__all__ = [
    "C_CM_S", "G_CGS", "MPC_CM", "KPC_CM", "MSUN_G",
    "RefCosmology", "DEFAULT_COSMO", "dang_mpc", "sigma_cr", "rhoc",
    "devauc_b", "devauc_sigma", "devauc_m2d",
    "gnfw_sigma", "gnfw_m2", "gnfw_m3", "gnfw_m3_hyp2f1",
    "nfw_sigma_closed", "nfw_m2_closed",
    "RefLens", "RefHaloSpline", "ref_forward_solve", "ref_invert", "detJ_analytic", "detJ_finite_difference",
    "ref_adaptive_columns", "ref_place_column",
    "log_likelihood_numpy", "K_direct", "gnfw_quadrature",
]

# ---------------------------------------------------------------------------------------
# Constants (astropy: CODATA 2018, IAU 2015)
# ---------------------------------------------------------------------------------------
C_CM_S = 29979245800.0             #: speed of light [cm/s]
G_CGS = 6.6743e-08                 #: Newton's constant [cm^3 g^-1 s^-2]
MPC_CM = 3.085677581491367e+24     #: megaparsec [cm]
KPC_CM = MPC_CM / 1000.0           #: kiloparsec [cm]
MSUN_G = 1.988409870698051e+33     #: solar mass [g]
C_KM_S = C_CM_S / 1.0e5            #: speed of light [km/s]

# quadrature settings used everywhere below
_EPSREL = 1.0e-12
_LIMIT = 200
_TAIL_REL = 1.0e-17                # stop summing pieces once a piece is this small (relative)
_MAX_PIECES = 400


def _quad(f, a, b, **kw):
    """``scipy.integrate.quad`` with tight tolerances, returning only the value.

    Round-off warnings on pieces whose value is already negligible are silenced; the
    accuracy of the sum is controlled by the piecewise splitting, not by one call.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        val, _err = integrate.quad(f, a, b, epsabs=0.0, epsrel=_EPSREL, limit=_LIMIT, **kw)
    return val


# ---------------------------------------------------------------------------------------
# Cosmology
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefCosmology:
    """Flat LCDM cosmology without radiation.

    Parameters
    ----------
    H0 : float
        Hubble constant in km/s/Mpc (default 70).
    Om : float
        Matter density parameter today (default 0.3); Omega_Lambda = 1 - Om.

    Examples
    --------
    >>> cosmo = RefCosmology(H0=70.0, Om=0.3)
    >>> round(cosmo.E(0.0), 12)
    1.0
    """

    H0: float = 70.0
    Om: float = 0.3

    def E(self, z):
        """Dimensionless Hubble rate E(z) = sqrt(Om (1+z)^3 + 1 - Om)."""
        return math.sqrt(self.Om * (1.0 + z) ** 3 + 1.0 - self.Om)

    def hubble_distance_mpc(self):
        """c / H0 in Mpc."""
        return C_KM_S / self.H0

    def comoving_mpc(self, z):
        """Line-of-sight comoving distance D_C(z) = (c/H0) int_0^z dz'/E(z') in Mpc."""
        if z == 0.0:
            return 0.0
        return self.hubble_distance_mpc() * _quad(lambda zz: 1.0 / self.E(zz), 0.0, z)

    def H_per_s(self, z):
        """H(z) = H0 E(z) in 1/s."""
        return self.H0 * 1.0e5 / MPC_CM * self.E(z)


DEFAULT_COSMO = RefCosmology()


def dang_mpc(z1, z2, cosmo=DEFAULT_COSMO):
    """Angular-diameter distance between redshifts ``z1 < z2`` in a flat universe.

    Parameters
    ----------
    z1, z2 : float
        Redshifts of the near and far planes (``z1 = 0`` for the observer).
    cosmo : RefCosmology, optional

    Returns
    -------
    float
        D(z1, z2) = (D_C(z2) - D_C(z1)) / (1 + z2) in Mpc.

    Precision
    ---------
    Adaptive quadrature at relative tolerance 1e-12.

    Examples
    --------
    >>> round(dang_mpc(0.0, 0.3), 6)
    918.766823
    """
    return float((cosmo.comoving_mpc(z2) - cosmo.comoving_mpc(z1)) / (1.0 + z2))


def sigma_cr(zl, zs, cosmo=DEFAULT_COSMO):
    """Critical surface density Sigma_cr = c^2/(4 pi G) * Ds / (Dd Dds).

    Parameters
    ----------
    zl, zs : float
        Lens and source redshifts.
    cosmo : RefCosmology, optional

    Returns
    -------
    float
        Sigma_cr in Msun/kpc^2.

    Precision
    ---------
    Set by the distance quadrature (~1e-12 relative).

    Examples
    --------
    >>> round(sigma_cr(0.3, 2.0) / 1e9, 6)
    2.352363
    """
    dd = dang_mpc(0.0, zl, cosmo) * MPC_CM
    ds = dang_mpc(0.0, zs, cosmo) * MPC_CM
    dds = dang_mpc(zl, zs, cosmo) * MPC_CM
    sig_cgs = C_CM_S ** 2 / (4.0 * math.pi * G_CGS) * ds / (dd * dds)   # g / cm^2
    return float(sig_cgs * KPC_CM ** 2 / MSUN_G)


def rhoc(z, cosmo=DEFAULT_COSMO):
    """Critical density of the universe rho_c(z) = 3 H(z)^2 / (8 pi G).

    Parameters
    ----------
    z : float
        Redshift.
    cosmo : RefCosmology, optional

    Returns
    -------
    float
        rho_c(z) in Msun/Mpc^3 (divide by 1e9 for Msun/kpc^3).

    Precision
    ---------
    Closed form (machine precision).

    Examples
    --------
    >>> round(rhoc(0.3) / 1e11, 6)
    1.84828
    """
    h = cosmo.H_per_s(z)
    rho_cgs = 3.0 * h ** 2 / (8.0 * math.pi * G_CGS)                     # g / cm^3
    return float(rho_cgs * MPC_CM ** 3 / MSUN_G)


# ---------------------------------------------------------------------------------------
# de Vaucouleurs stars
# ---------------------------------------------------------------------------------------
def devauc_b(n=4):
    """Sersic b(n), Ciotti & Bertin (1999) expansion.

    Parameters
    ----------
    n : float
        Sersic index (4 for de Vaucouleurs).

    Returns
    -------
    float
        b = 2n - 1/3 + 4/(405 n) + 46/(25515 n^2), so that Re encloses half the light.

    Precision
    ---------
    The expansion itself is accurate to ~1e-6 for n = 4; it *defines* the model here.

    Examples
    --------
    >>> round(devauc_b(4), 10)
    7.6692484813
    """
    n = float(n)
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def devauc_sigma(R, Mstar, Re):
    """Surface density of a de Vaucouleurs profile.

    Parameters
    ----------
    R : float
        Projected radius in kpc (the sign is ignored).
    Mstar : float
        Total stellar mass in Msun.
    Re : float
        Effective (half-mass) radius in kpc.

    Returns
    -------
    float
        Sigma*(R) = M* exp(-b (R/Re)^(1/4)) / (2 pi n Re^2 Gamma(2n) b^(-2n)) in Msun/kpc^2.

    Precision
    ---------
    Closed form (machine precision).

    Examples
    --------
    >>> s0 = devauc_sigma(0.0, 1.0, 1.0)     # central value per unit mass
    >>> round(s0, 4)
    94.4827
    """
    n = 4.0
    b = devauc_b(n)
    norm = 2.0 * math.pi * n * Re ** 2 * math.gamma(2.0 * n) * b ** (-2.0 * n)
    return float(Mstar * math.exp(-b * (abs(R) / Re) ** (1.0 / n)) / norm)


def devauc_m2d(R, Mstar, Re):
    """Projected mass of a de Vaucouleurs profile inside radius R.

    Parameters
    ----------
    R : float
        Projected radius in kpc (the sign is ignored).
    Mstar : float
        Total stellar mass in Msun.
    Re : float
        Effective radius in kpc.

    Returns
    -------
    float
        M2d*(R) = M* P(2n, b (R/Re)^(1/n)) in Msun, P the regularised lower incomplete gamma.

    Precision
    ---------
    ``scipy.special.gammainc`` (~1e-15 relative).

    Examples
    --------
    >>> round(devauc_m2d(2.0, 1.0, 2.0), 6)    # half the mass inside Re
    0.5
    """
    n = 4.0
    b = devauc_b(n)
    return float(Mstar * special.gammainc(2.0 * n, b * (abs(R) / Re) ** (1.0 / n)))


# ---------------------------------------------------------------------------------------
# gNFW halo, dimensionless functions
# ---------------------------------------------------------------------------------------
def _rho_dimless(s, g):
    """Dimensionless gNFW density rho~(s) = s^-g (1 + s)^(g - 3)."""
    return s ** (-g) * (1.0 + s) ** (g - 3.0)


def _sum_pieces_in_t(integrand, x):
    """Sum ``int_0^inf integrand(t) dt`` over unit pieces of t, where s = x cosh t.

    Pieces [k, k+1] are integrated one after the other until the scale radius has been
    passed (s > 1 and t > 1, after which every integrand used here decreases like
    e^(-2t)) and a piece contributes less than 1e-17 of the running total.
    """
    total = 0.0
    for k in range(_MAX_PIECES):
        piece = _quad(integrand, float(k), float(k + 1))
        total += piece
        t_end = k + 1.0
        if x * math.cosh(t_end) > 1.0 and t_end > 1.0 and abs(piece) <= _TAIL_REL * abs(total):
            break
    return total


def gnfw_sigma(x, g):
    """Dimensionless projected density of the gNFW profile.

    Parameters
    ----------
    x : float
        Projected radius in units of rs (x > 0).
    g : float
        Inner slope gamma_in in [0, 2.4] (< 3).

    Returns
    -------
    float
        sigma(x, g) = Sigma(R)/(rho0 rs) = 2 int_x^inf rho~(s) s / sqrt(s^2 - x^2) ds,
        evaluated with s = x cosh t as 2 x int_0^inf rho~(x cosh t) cosh t dt (no
        endpoint singularity), summed over unit pieces of t.

    Precision
    ---------
    ~1e-12 relative for x in [1e-4, 1e3], g in [0, 2.4] (checked against the NFW
    closed form).

    Examples
    --------
    >>> abs(gnfw_sigma(0.5, 1.0) / nfw_sigma_closed(0.5) - 1) < 1e-11
    True
    """
    x = abs(float(x))
    g = float(g)
    if x == 0.0:   # central value: 2 B(1 - g, 2), finite only for g < 1
        return 2.0 / ((1.0 - g) * (2.0 - g)) if g < 1.0 else float("inf")

    def integrand(t):
        c = math.cosh(t)
        return _rho_dimless(x * c, g) * c

    return float(2.0 * x * _sum_pieces_in_t(integrand, x))


def gnfw_m3(x, g):
    """Dimensionless 3-D enclosed mass of the gNFW profile, by quadrature.

    Parameters
    ----------
    x : float
        Radius in units of rs.
    g : float
        Inner slope gamma_in (< 3).

    Returns
    -------
    float
        m3(x, g) = M3d(r)/(4 pi rho0 rs^3) = int_0^x t^(2-g) (1+t)^(g-3) dt.
        The piece [0, min(x, 1)] uses the algebraic-weight rule (QAWS) for the t^(2-g)
        endpoint behaviour; the rest is integrated in ln t decade by decade.

    Precision
    ---------
    ~1e-13 relative.

    Examples
    --------
    >>> abs(gnfw_m3(2.0, 1.0) - (math.log(3.0) - 2.0 / 3.0)) < 1e-13
    True
    """
    x = abs(float(x))
    g = float(g)
    if x == 0.0:
        return 0.0
    x0 = min(x, 1.0)
    total = _quad(lambda t: (1.0 + t) ** (g - 3.0), 0.0, x0, weight="alg", wvar=(2.0 - g, 0.0))
    if x > 1.0:
        # integrand in u = ln t: t^(3-g) (1+t)^(g-3)
        u_edges = np.arange(0.0, math.log(x), math.log(10.0))
        u_edges = np.append(u_edges, math.log(x))
        for ua, ub in zip(u_edges[:-1], u_edges[1:]):
            total += _quad(lambda u: (math.exp(u) / (1.0 + math.exp(u))) ** (3.0 - g), ua, ub)
    return float(total)


def gnfw_m3_hyp2f1(x, g):
    """Closed form of :func:`gnfw_m3` through the Gauss hypergeometric function.

    Parameters
    ----------
    x : float
        Radius in units of rs.
    g : float
        Inner slope gamma_in (< 3).

    Returns
    -------
    float
        m3(x, g) = x^(3-g)/(3-g) 2F1(3-g, 3-g; 4-g; -x).

    Precision
    ---------
    That of ``scipy.special.hyp2f1`` (~1e-14 in practice for these arguments).

    Examples
    --------
    >>> abs(gnfw_m3_hyp2f1(2.0, 1.0) - (math.log(3.0) - 2.0 / 3.0)) < 1e-13
    True
    """
    x = abs(float(x))
    a = 3.0 - float(g)
    return float(x ** a / a * special.hyp2f1(a, a, a + 1.0, -x))


def _gnfw_m2_tail(x, g):
    """int_x^inf s^2 rho~(s) (x^2/s^2)/(1 + sqrt(1 - x^2/s^2)) ds, cancellation free.

    With s = x cosh t this is x^3 int_0^inf rho~(x cosh t) sinh t / (1 + tanh t) dt.
    """
    def integrand(t):
        return _rho_dimless(x * math.cosh(t), g) * math.sinh(t) / (1.0 + math.tanh(t))

    return x ** 3 * _sum_pieces_in_t(integrand, x)


def gnfw_m2(x, g):
    """Dimensionless projected (cylinder) mass of the gNFW profile.

    Parameters
    ----------
    x : float
        Projected radius in units of rs.
    g : float
        Inner slope gamma_in in [0, 2.4].

    Returns
    -------
    float
        m2(x, g) = M2d(R)/(4 pi rho0 rs^3)
                 = m3(x) + int_x^inf s^2 rho~(s) (x^2/s^2)/(1 + sqrt(1 - x^2/s^2)) ds.
        The bracket is 1 - sqrt(1 - x^2/s^2) written without cancellation.

    Precision
    ---------
    ~1e-12 relative for x in [1e-4, 1e3], g in [0, 2.4] (checked against the NFW
    closed form and against the small-x limits).

    Examples
    --------
    >>> abs(gnfw_m2(0.5, 1.0) / nfw_m2_closed(0.5) - 1) < 1e-11
    True
    """
    x = abs(float(x))
    g = float(g)
    if x == 0.0:
        return 0.0
    return float(gnfw_m3(x, g) + _gnfw_m2_tail(x, g))


def _nfw_F(x):
    """arccosh(1/x)/sqrt(1-x^2) for x < 1, arccos(1/x)/sqrt(x^2-1) for x > 1, 1 at x = 1."""
    if x < 1.0:
        return 2.0 / math.sqrt(1.0 - x * x) * math.atanh(math.sqrt((1.0 - x) / (1.0 + x)))
    if x > 1.0:
        return 2.0 / math.sqrt(x * x - 1.0) * math.atan(math.sqrt((x - 1.0) / (1.0 + x)))
    return 1.0


def nfw_sigma_closed(x):
    """Closed-form dimensionless NFW (g = 1) surface density Sigma/(rho0 rs).

    Parameters
    ----------
    x : float
        Projected radius in units of rs (x != 1 handled by the limit 2/3).

    Returns
    -------
    float
        2/(x^2 - 1) (1 - F(x)) with F(x) = 2/sqrt(1-x^2) atanh(sqrt((1-x)/(1+x))) (x < 1)
        or 2/sqrt(x^2-1) atan(sqrt((x-1)/(1+x))) (x > 1).

    Precision
    ---------
    Machine precision away from x = 1 (near x = 1 it loses ~|x-1|^-1 ulps; it returns
    the limit 2/3 within 1e-6 of x = 1).

    Examples
    --------
    >>> round(nfw_sigma_closed(1.0), 12)
    0.666666666667
    """
    x = abs(float(x))
    if abs(x - 1.0) < 1e-6:
        return 2.0 / 3.0 - 0.8 * (x - 1.0)   # first-order expansion about x = 1
    return float(2.0 / (x * x - 1.0) * (1.0 - _nfw_F(x)))


def nfw_m2_closed(x):
    """Closed-form dimensionless NFW (g = 1) projected mass M2d/(4 pi rho0 rs^3).

    Parameters
    ----------
    x : float
        Projected radius in units of rs.

    Returns
    -------
    float
        ln(x/2) + F(x), F as in :func:`nfw_sigma_closed`.

    Precision
    ---------
    ~1e-15 relative: for x < 1 the form is rearranged to avoid the cancellation of
    ln(x/2) + F(x) ~ x^2 ln(2/x)/2 at small x.

    Examples
    --------
    >>> round(nfw_m2_closed(1.0), 12)    # 1 - ln 2
    0.30685281944
    """
    x = abs(float(x))
    if x < 1.0:
        # ln(x/2) + arccosh(1/x)/q with q = sqrt(1 - x^2), rearranged so that the
        # O(x^2) result is not the difference of two O(ln x) numbers:
        # m2 = L x^2 / (q (1 + q)) + log1p(-x^2 / (2 (1 + q))),  L = ln((1 + q)/x)
        q = math.sqrt(1.0 - x * x)
        L = math.log((1.0 + q) / x)
        return float(L * x * x / (q * (1.0 + q)) + math.log1p(-x * x / (2.0 * (1.0 + q))))
    return float(math.log(x / 2.0) + _nfw_F(x))


# ---------------------------------------------------------------------------------------
# Lens model with direct quadrature
# ---------------------------------------------------------------------------------------
class RefLens:
    """Spherical deV + gNFW lens evaluated by direct quadrature (accuracy path).

    Parameters
    ----------
    logM_star : float
        log10 of the stellar mass M* [Msun].
    logM_halo : float
        log10 of M200 [Msun] w.r.t. 200 rho_c(zl).
    logRe : float
        log10 of the effective radius [kpc].
    gamma_in : float, optional
        Inner slope of the gNFW halo (default 1, NFW).
    c_halo : float, optional
        Concentration r200/rs (default 5).
    zl, zs : float, optional
        Lens and source redshifts (default 0.3, 2.0).
    cosmo : RefCosmology, optional

    Attributes
    ----------
    Mstar, Re, M200, r200, rs, rho0, Sigma_cr : float
        Stellar mass [Msun], Re [kpc], M200 [Msun], r200 [kpc], rs [kpc],
        rho0 [Msun/kpc^3], Sigma_cr [Msun/kpc^2].

    Notes
    -----
    ``x`` is a signed position in kpc.  alpha is odd, kappa is even in x, mu is signed.
    Every call to a halo quantity runs fresh quadratures (a few ms each); nothing is cached
    apart from the Einstein radius and radial critical curve of the instance.

    Precision
    ---------
    alpha, kappa ~1e-12 relative; roots with ``xtol = 1e-12`` kpc.

    Examples
    --------
    >>> lens = RefLens(11.5, 13.0, 0.9)
    >>> round(lens.einstein_radius(), 6)
    4.849775
    """

    def __init__(self, logM_star, logM_halo, logRe, gamma_in=1.0, c_halo=5.0, zl=0.3, zs=2.0,
                 cosmo=DEFAULT_COSMO):
        self.logM_star = float(logM_star)
        self.logM_halo = float(logM_halo)
        self.logRe = float(logRe)
        self.gamma_in = float(gamma_in)
        self.c_halo = float(c_halo)
        self.zl = float(zl)
        self.zs = float(zs)
        self.cosmo = cosmo

        self.Mstar = 10.0 ** self.logM_star
        self.Re = 10.0 ** self.logRe
        self.Sigma_cr = sigma_cr(self.zl, self.zs, cosmo)
        self.M200 = 10.0 ** self.logM_halo
        rhoc_kpc = rhoc(self.zl, cosmo) / 1.0e9                    # Msun / kpc^3
        self.r200 = (3.0 * self.M200 / (4.0 * math.pi * 200.0 * rhoc_kpc)) ** (1.0 / 3.0)
        self.rs = self.r200 / self.c_halo
        self.rho0 = self.M200 / (4.0 * math.pi * self.rs ** 3 * gnfw_m3(self.c_halo, self.gamma_in))
        self._thetaE = None
        self._xr = None

    def __repr__(self):
        return (f"RefLens(logM_star={self.logM_star}, logM_halo={self.logM_halo}, "
                f"logRe={self.logRe}, gamma_in={self.gamma_in}, c_halo={self.c_halo}, "
                f"zl={self.zl}, zs={self.zs})")

    # -- projected masses and densities ------------------------------------------------
    def m2d_halo(self, x):
        """Projected halo mass inside |x| [Msun]."""
        return 4.0 * math.pi * self.rho0 * self.rs ** 3 * gnfw_m2(abs(x) / self.rs, self.gamma_in)

    def sigma_halo(self, x):
        """Halo surface density at |x| [Msun/kpc^2]."""
        return self.rho0 * self.rs * gnfw_sigma(abs(x) / self.rs, self.gamma_in)

    # -- deflection ----------------------------------------------------------------------
    def alpha_star_unit(self, x):
        """Deflection [kpc] of the stars per unit stellar mass (M* = 1 Msun); odd in x."""
        x = float(x)
        if x == 0.0:
            return 0.0
        return devauc_m2d(abs(x), 1.0, self.Re) / (math.pi * x * self.Sigma_cr)

    def alpha_halo(self, x):
        """Deflection [kpc] of the halo; odd in x."""
        x = float(x)
        if x == 0.0:
            return 0.0       # odd function (the limit for gamma_in < 2)
        return self.m2d_halo(x) / (math.pi * x * self.Sigma_cr)

    def alpha(self, x):
        """Total deflection alpha(x) = M2d(|x|) / (pi x Sigma_cr) [kpc]; odd in x."""
        return self.Mstar * self.alpha_star_unit(x) + self.alpha_halo(x)

    # -- convergence, shear, magnification ------------------------------------------------
    def kappa_star(self, x):
        """Convergence of the stars alone."""
        return devauc_sigma(abs(x), self.Mstar, self.Re) / self.Sigma_cr

    def kappa_halo(self, x):
        """Convergence of the halo alone."""
        return self.sigma_halo(x) / self.Sigma_cr

    def kappa(self, x):
        """Total convergence Sigma(|x|)/Sigma_cr; even in x."""
        return self.kappa_star(x) + self.kappa_halo(x)

    def kappa_bar(self, x):
        """Mean convergence inside |x|, alpha/x (kappa(0) at x = 0)."""
        x = float(x)
        if x == 0.0:
            return self.kappa(0.0)
        return self.alpha(x) / x

    def shear(self, x):
        """Tangential shear gamma_s = kbar - kappa."""
        return self.kappa_bar(x) - self.kappa(x)

    def inv_mu_t(self, x):
        """Inverse tangential magnification 1 - alpha/x."""
        return 1.0 - self.kappa_bar(x)

    def inv_mu_r(self, x):
        """Inverse radial magnification 1 + alpha/x - 2 kappa (= 1 - d alpha/dx)."""
        return 1.0 + self.kappa_bar(x) - 2.0 * self.kappa(x)

    def mu(self, x):
        """Signed magnification 1 / (mu_t^-1 mu_r^-1)."""
        return 1.0 / (self.inv_mu_t(x) * self.inv_mu_r(x))

    # -- critical curves and images ----------------------------------------------------
    def einstein_radius(self):
        """Einstein radius thetaE > 0 [kpc] with alpha(thetaE) = thetaE (nan if none)."""
        if self._thetaE is None:
            self._thetaE = _einstein_radius(self.alpha, self.Re)
        return self._thetaE

    def xradcrit(self):
        """Radius [kpc] of the radial critical curve, outermost root of 1/mu_r below thetaE.

        nan when there is none (no Einstein radius) and, following DESIGN.md, for
        gamma_in >= 2: the halo deflection then does not vanish at the centre, the lens
        is not a two-image lens of this model and x_r, y_c and the images are reported as nan.
        """
        if self._xr is None:
            if self.gamma_in >= 2.0:
                self._xr = float("nan")          # not a two-image lens of this model
            else:
                self._xr = _radial_critical(self.inv_mu_r, self.einstein_radius())
        return self._xr

    def ycaustic(self):
        """Radial caustic y_c = alpha(x_r) - x_r [kpc] (nan without radial critical curve)."""
        xr = self.xradcrit()
        if not np.isfinite(xr):
            return float("nan")
        return self.alpha(xr) - xr

    def images(self, beta_unit):
        """Image positions for a source at beta = beta_unit * y_c.

        Parameters
        ----------
        beta_unit : float
            Source position in units of the radial caustic, 0 <= beta_unit < 1.

        Returns
        -------
        (xA, xB) : tuple of float
            x_A > thetaE and -thetaE < x_B < -x_r [kpc], roots of x - alpha(x) = beta.
        """
        return _solve_images(self.alpha, self.einstein_radius(), self.xradcrit(),
                             self.ycaustic(), beta_unit)


# ---------------------------------------------------------------------------------------
# Root finding shared by the quadrature and the spline paths
# ---------------------------------------------------------------------------------------
_XTOL = 1e-12
_MAXITER = 200
_RTOL = 4.0 * np.finfo(float).eps      # smallest rtol brentq accepts


def _einstein_radius(alpha, Re):
    """Root of alpha(x) = x for x > 0, bracketed by [1e-6 kpc, doubling upper bound]."""
    x_lo = 1e-6
    if alpha(x_lo) <= x_lo:
        return float("nan")                      # mean convergence below 1 everywhere
    x_hi = max(Re, 1.0)
    for _ in range(60):
        if alpha(x_hi) < x_hi:
            break
        x_lo, x_hi = x_hi, 2.0 * x_hi
    else:
        return float("nan")
    return float(optimize.brentq(lambda x: alpha(x) - x, x_lo, x_hi, xtol=_XTOL, rtol=_RTOL,
                                 maxiter=_MAXITER))


def _radial_critical(inv_mu_r, thetaE, x_min_frac=1e-6, step=0.9):
    """Outermost root of 1/mu_r in (0, thetaE): step down geometrically from thetaE.

    1/mu_r(thetaE) = 2 (1 - kappa) > 0 for a decreasing profile; walking inwards by a
    factor ``step`` the first sign change brackets the outermost root.  Returns nan when
    1/mu_r stays positive down to ``x_min_frac * thetaE`` (no radial critical curve, e.g.
    gamma_in >= 2 or a cored, sub-critical centre).
    """
    if not np.isfinite(thetaE):
        return float("nan")
    x_hi = thetaE
    f_hi = inv_mu_r(x_hi)
    x_min = x_min_frac * thetaE
    while x_hi > x_min:
        x_lo = x_hi * step
        f_lo = inv_mu_r(x_lo)
        if f_lo <= 0.0 < f_hi:
            return float(optimize.brentq(inv_mu_r, x_lo, x_hi, xtol=_XTOL, rtol=_RTOL,
                                         maxiter=_MAXITER))
        x_hi, f_hi = x_lo, f_lo
    return float("nan")


def _solve_images(alpha, thetaE, xr, yc, beta_unit):
    """Images of x - alpha(x) = beta on both sides, beta = beta_unit * yc."""
    nan = float("nan")
    if not (np.isfinite(thetaE) and np.isfinite(xr) and np.isfinite(yc)):
        return nan, nan
    if not (0.0 <= beta_unit < 1.0):
        return nan, nan
    beta = beta_unit * yc
    if beta == 0.0:
        return float(thetaE), float(-thetaE)
    f = lambda x: x - alpha(x) - beta
    # image A: f(thetaE) = -beta < 0, f grows like x at large x
    x_hi = 2.0 * thetaE
    for _ in range(60):
        if f(x_hi) > 0.0:
            break
        x_hi *= 2.0
    xA = optimize.brentq(f, thetaE, x_hi, xtol=_XTOL, rtol=_RTOL, maxiter=_MAXITER)
    # image B: f(-thetaE) = -beta < 0, f(-xr) = yc - beta > 0
    xB = optimize.brentq(f, -thetaE, -xr, xtol=_XTOL, rtol=_RTOL, maxiter=_MAXITER)
    return float(xA), float(xB)


# ---------------------------------------------------------------------------------------
# Forward solve with a per-lens spline of the halo (the benchmark baseline)
# ---------------------------------------------------------------------------------------
_SPLINE_NODES = 100
_SPLINE_XMIN = 1e-6     # in units of rs
_SPLINE_XMAX = 1e2


class RefHaloSpline:
    """Cubic splines of ln m2 and ln sigma against ln x for one gNFW slope.

    The 100 nodes (x = R/rs log-spaced on [1e-6, 1e2]) are computed by quadrature
    (:func:`gnfw_m2`, :func:`gnfw_sigma`); building one costs ~0.1 s.

    Parameters
    ----------
    g : float
        Inner slope gamma_in.
    nodes : int, optional
        Number of log-spaced nodes (default 100).
    xmin, xmax : float, optional
        Grid range in units of rs (default 1e-6, 1e2).  Outside it the splines are
        continued as power laws (linear in ln-ln), the asymptotic form of both functions.

    Precision
    ---------
    <= 1e-6 relative for m2 and sigma with the default grid (worst for gamma_in = 0,
    ~1e-7 for gamma_in = 2.4).

    Examples
    --------
    >>> h = RefHaloSpline(1.0)
    >>> abs(h.m2(0.3) / nfw_m2_closed(0.3) - 1) < 1e-6
    True
    """

    def __init__(self, g, nodes=_SPLINE_NODES, xmin=_SPLINE_XMIN, xmax=_SPLINE_XMAX):
        self.g = float(g)
        self.lnx = np.linspace(math.log(xmin), math.log(xmax), nodes)
        xs = np.exp(self.lnx)
        self.xmin, self.xmax = xmin, xmax
        self.ln_m2 = CubicSpline(self.lnx, np.log([gnfw_m2(x, g) for x in xs]))
        self.ln_sig = CubicSpline(self.lnx, np.log([gnfw_sigma(x, g) for x in xs]))

    def _eval(self, spline, x):
        """exp(spline(ln x)); linear in ln-ln (power law) outside the grid."""
        lnx = math.log(x)
        if lnx < self.lnx[0]:
            x0 = self.lnx[0]
        elif lnx > self.lnx[-1]:
            x0 = self.lnx[-1]
        else:
            return math.exp(float(spline(lnx)))
        return math.exp(float(spline(x0)) + float(spline(x0, 1)) * (lnx - x0))

    def m2(self, x):
        """Interpolated m2(x) = M2d/(4 pi rho0 rs^3)."""
        return self._eval(self.ln_m2, x)

    def sigma(self, x):
        """Interpolated sigma(x) = Sigma/(rho0 rs)."""
        return self._eval(self.ln_sig, x)


def ref_forward_solve(logM_star, logM_halo, logRe, gamma_in=1.0, c_halo=5.0, zl=0.3, zs=2.0,
                      beta_unit=0.5, cosmo=DEFAULT_COSMO, *, halo_spline=None):
    """Plain SciPy forward lens solve: thetaE, radial caustic, both images and magnifications.

    The way a straightforward script does it: the halo's dimensionless m2 and sigma are
    tabulated for this lens by quadrature on a log grid of 100 nodes (x/rs in [1e-6, 1e2])
    and interpolated with ``scipy.interpolate.CubicSpline``; roots are found with
    ``scipy.optimize.brentq`` on the spline model.  This is the baseline that the benchmarks
    time the compiled core against; use :class:`RefLens` for accuracy tests.

    Building the spline dominates the cost (~0.1 s; the solve on the spline ~3 ms).  Pass a
    pre-built ``halo_spline`` (a :class:`RefHaloSpline` for the same ``gamma_in``) to time
    the solve alone, the way the original code used pre-computed profile tables.

    Parameters
    ----------
    logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs : float
        Lens parameters, as in :class:`RefLens`.
    beta_unit : float
        Source position in units of the radial caustic, beta = beta_unit * y_c, 0 <= beta_unit < 1.
    cosmo : RefCosmology, optional
    halo_spline : RefHaloSpline, optional (keyword only)
        Pre-built halo table for ``gamma_in``; built here when omitted.

    Returns
    -------
    dict
        ``thetaE, xr, ycaustic, xA, xB`` [kpc] and signed magnifications ``muA`` (> 0) and
        ``muB`` (< 0).  nan when the lens has no Einstein radius or no radial critical curve
        (or gamma_in >= 2), and images/magnifications nan unless 0 <= beta_unit < 1.

    Precision
    ---------
    Spline interpolation error <= 1e-6 relative in the halo m2 and sigma; against the
    quadrature path (:class:`RefLens`) thetaE, x_r, y_c, the images and the magnifications
    agree to ~1e-7 relative (<= 1e-6 worst seen over random lenses).

    Examples
    --------
    >>> out = ref_forward_solve(11.5, 13.0, 0.9, 1.0, 5.0, 0.3, 2.0, 0.5)
    >>> round(out["xA"], 5), round(out["xB"], 5)
    (6.62063, -3.07241)
    """
    Mstar = 10.0 ** logM_star
    Re = 10.0 ** logRe
    Scr = sigma_cr(zl, zs, cosmo)
    M200 = 10.0 ** logM_halo
    rhoc_kpc = rhoc(zl, cosmo) / 1.0e9
    r200 = (3.0 * M200 / (4.0 * math.pi * 200.0 * rhoc_kpc)) ** (1.0 / 3.0)
    rs = r200 / c_halo
    rho0 = M200 / (4.0 * math.pi * rs ** 3 * gnfw_m3_hyp2f1(c_halo, gamma_in))
    if halo_spline is None:
        halo = RefHaloSpline(gamma_in)
    else:
        if halo_spline.g != float(gamma_in):
            raise ValueError("halo_spline was built for gamma_in=%g, not %g" % (halo_spline.g, gamma_in))
        halo = halo_spline
    m2_norm = 4.0 * math.pi * rho0 * rs ** 3

    def alpha(x):
        R = abs(x)
        m2d = Mstar * special.gammainc(8.0, devauc_b(4) * (R / Re) ** 0.25) + m2_norm * halo.m2(R / rs)
        return m2d / (math.pi * x * Scr)

    def kappa(x):
        R = abs(x)
        return (devauc_sigma(R, Mstar, Re) + rho0 * rs * halo.sigma(R / rs)) / Scr

    def inv_mu_r(x):
        return 1.0 + alpha(x) / x - 2.0 * kappa(x)

    def mu(x):
        return 1.0 / ((1.0 - alpha(x) / x) * inv_mu_r(x))

    thetaE = _einstein_radius(alpha, Re)
    xr = _radial_critical(inv_mu_r, thetaE) if gamma_in < 2.0 else float("nan")
    yc = alpha(xr) - xr if np.isfinite(xr) else float("nan")
    xA, xB = _solve_images(alpha, thetaE, xr, yc, beta_unit)
    nan = float("nan")
    return dict(thetaE=float(thetaE), xr=float(xr), ycaustic=float(yc), xA=xA, xB=xB,
                muA=float(mu(xA)) if np.isfinite(xA) else nan,
                muB=float(mu(xB)) if np.isfinite(xB) else nan)


# ---------------------------------------------------------------------------------------
# Inversion: (xA, xB) -> (logM*, beta) and its Jacobian
# ---------------------------------------------------------------------------------------
def _invert_positions(lens, xA, xB):
    """M* and beta reproducing images at xA, xB, from alpha = M* a*(x) + a_h(x).

    The stellar mass of ``lens`` is not used (only a* and a_h enter).
    """
    aA, aB = lens.alpha_star_unit(xA), lens.alpha_star_unit(xB)
    hA, hB = lens.alpha_halo(xA), lens.alpha_halo(xB)
    Mstar = ((xA - xB) - hA + hB) / (aA - aB)
    beta = xA - Mstar * aA - hA
    return Mstar, beta


def detJ_analytic(lens, xA, xB):
    """Analytic |det d(logM*, beta)/d(xA, xB)| for a lens whose M* solves the inversion.

    Parameters
    ----------
    lens : RefLens
        Lens with the stellar mass returned by the inversion.
    xA, xB : float
        Image positions [kpc].

    Returns
    -------
    float
        |mu_r^-1(xA) mu_r^-1(xB)| / (M* ln10 |a*(xA) - a*(xB)|)  [1/kpc].

    Precision
    ---------
    That of alpha and kappa (~1e-12).
    """
    da = lens.alpha_star_unit(xA) - lens.alpha_star_unit(xB)
    return abs(lens.inv_mu_r(xA) * lens.inv_mu_r(xB)) / (lens.Mstar * math.log(10.0) * abs(da))


def detJ_finite_difference(lens, xA, xB, rel_step=1e-4):
    """|det d(logM*, beta)/d(xA, xB)| by central finite differences of the inversion.

    Parameters
    ----------
    lens : RefLens
        Any lens with the right halo, Re and redshifts (its M* is not used).
    xA, xB : float
        Image positions [kpc].
    rel_step : float
        Step as a fraction of |xA| and |xB| respectively.

    Returns
    -------
    float
        |J| [1/kpc] from the 2x2 matrix of central differences.

    Precision
    ---------
    ~1e-8 relative (truncation ~rel_step^2, round-off ~1e-12/rel_step); a few 1e-6 when
    an image sits close to the radial critical curve (1/mu_r small, beta near y_c).
    """
    def fwd(a, b):
        m, beta = _invert_positions(lens, a, b)
        return math.log10(m), beta

    hA, hB = rel_step * abs(xA), rel_step * abs(xB)
    lp, bp = fwd(xA + hA, xB)
    lm, bm = fwd(xA - hA, xB)
    dl_dA, db_dA = (lp - lm) / (2 * hA), (bp - bm) / (2 * hA)
    lp, bp = fwd(xA, xB + hB)
    lm, bm = fwd(xA, xB - hB)
    dl_dB, db_dB = (lp - lm) / (2 * hB), (bp - bm) / (2 * hB)
    return abs(dl_dA * db_dB - dl_dB * db_dA)


def ref_invert(xA, xB, logRe, logM_halo, gamma_in=1.0, c_halo=5.0, zl=0.3, zs=2.0,
               cosmo=DEFAULT_COSMO):
    """Invert two observed image positions for (logM*, beta) at a given halo.

    With alpha = M* a*(x) + a_h(x) the lens equation at both images is linear in M*:
    M* = [(xA - xB) - a_h(xA) + a_h(xB)] / [a*(xA) - a*(xB)],
    beta = xA - M* a*(xA) - a_h(xA).

    Parameters
    ----------
    xA, xB : float
        Image positions [kpc], xA > 0 > xB.
    logRe, logM_halo, gamma_in, c_halo, zl, zs : float
        Lens parameters other than M*, as in :class:`RefLens`.
    cosmo : RefCosmology, optional

    Returns
    -------
    dict
        ``logM_star``, ``beta`` [kpc], ``ycaustic`` [kpc] of the inverted lens, ``muA_abs``,
        ``muB_abs`` (absolute magnifications), ``detJ_analytic`` and ``detJ_fd``
        (|det d(logM*, beta)/d(xA, xB)|, analytic and central finite differences).
        All nan when M* <= 0.  The caller decides whether 0 <= beta < ycaustic.

    Precision
    ---------
    Direct quadrature (RefLens): ~1e-12 relative; ``detJ_fd`` ~1e-8 (a few 1e-6 with
    beta close to the caustic).

    Examples
    --------
    >>> out = ref_invert(6.620631957929381, -3.072406570798928, 0.9, 13.0)
    >>> round(out["logM_star"], 8)
    11.5
    """
    xA, xB = float(xA), float(xB)
    probe = RefLens(0.0, logM_halo, logRe, gamma_in, c_halo, zl, zs, cosmo)
    Mstar, beta = _invert_positions(probe, xA, xB)
    keys = ("logM_star", "beta", "ycaustic", "muA_abs", "muB_abs", "detJ_analytic", "detJ_fd")
    if not (np.isfinite(Mstar) and Mstar > 0.0):
        return {k: float("nan") for k in keys}
    logM = math.log10(Mstar)
    lens = RefLens(logM, logM_halo, logRe, gamma_in, c_halo, zl, zs, cosmo)
    return dict(
        logM_star=float(logM),
        beta=float(beta),
        ycaustic=float(lens.ycaustic()),
        muA_abs=float(abs(lens.mu(xA))),
        muB_abs=float(abs(lens.mu(xB))),
        detJ_analytic=float(detJ_analytic(lens, xA, xB)),
        detJ_fd=float(detJ_finite_difference(probe, xA, xB)),
    )


# ---------------------------------------------------------------------------------------
# The adaptive column rule in Python (reference for the compiled sl_cy._tabulate)
# ---------------------------------------------------------------------------------------
def ref_adaptive_columns(xA, xB, logRe, m_obs, gamma_axis, logMh_axis, *, c_halo=5.0, zl=0.3, zs=2.0,
                         cosmo=None, step=1.0, scales=None, window=None, n_nodes=None, max_rounds=30):
    """The adaptive per-lens column rule of :func:`sl_cy.grids.adaptive_columns`, as it was
    written in Python before it was compiled (``csrc/tabulate.pyx``); kept verbatim as the
    reference the compiled rule is tested and benchmarked against.

    Unlike the rest of this module it is not an independent computation of the physics: each
    point is solved by the compiled :func:`sl_cy.lensing.invert_images`. The rule itself is
    plain NumPy: all gamma columns are refined together, breadth first, one bisection round at
    a time (a ``lexsort`` of all points per round), and each contiguous valid piece is mapped
    s -> logMh with a ``scipy.interpolate.PchipInterpolator``.

    Parameters
    ----------
    xA, xB, logRe, m_obs, gamma_axis, logMh_axis, c_halo, zl, zs, cosmo, step, n_nodes, max_rounds :
        As in :func:`sl_cy.grids.adaptive_columns`.
    scales, window : tuple, optional
        Default ``sl_cy.grids.ADAPTIVE_SCALES`` and ``ADAPTIVE_MSTAR_WINDOW``.

    Returns
    -------
    logMh, wq : ndarray, shape (n_nodes, n_gamma)
        Nodes (NaN in unused slots) and weights (0 in unused slots).

    Performance
    -----------
    About 14 ms per lens on the default grids on one core (~2700 inversions, ~8 ms of them in C).

    Examples
    --------
    >>> mh, w = ref_adaptive_columns(6.62, -3.07, 0.9, 11.5, np.array([1.0]), np.arange(11.0, 15.0, 0.05))
    >>> mh.shape[1], bool(np.nansum(w) > 0)
    (1, True)
    """
    from sl_cy.grids import ADAPTIVE_MSTAR_WINDOW, ADAPTIVE_SCALES, adaptive_n_nodes, trapezoid_weights
    from sl_cy.lensing import invert_images

    scales = ADAPTIVE_SCALES if scales is None else scales
    window = ADAPTIVE_MSTAR_WINDOW if window is None else window

    gamma_axis = np.asarray(gamma_axis, float)
    m0 = np.asarray(logMh_axis, float)
    ng = len(gamma_axis)
    a, b = float(scales[0]), float(scales[1])
    l_lo, l_hi = m_obs + window[0], m_obs + window[1]
    n_nodes = int(n_nodes or adaptive_n_nodes(m0, step, scales=scales, window=window))
    wg = trapezoid_weights(gamma_axis)

    def solve(mh, g):
        r = invert_images(xA, xB, logRe, logM_halo=mh, gamma_in=g, c_halo=c_halo, zl=zl, zs=zs, cosmo=cosmo)
        ok = r["status"] == 0
        return np.where(ok, r["logM_star"], np.nan), ok

    L0, ok0 = solve(m0[:, None], gamma_axis[None, :])
    # all columns in one flat array sorted by (column, logMh): each round bisects, in every column
    # at once, the intervals whose logM* change is too large or that straddle a validity edge
    kc = np.repeat(np.arange(ng), len(m0))
    m = np.tile(m0, ng)
    L = L0.T.ravel()
    ok = ok0.T.ravel()
    for _ in range(max_rounds):
        same = kc[:-1] == kc[1:]
        dm = np.diff(m)
        inwin = ~(((L[:-1] < l_lo) & (L[1:] < l_lo)) | ((L[:-1] > l_hi) & (L[1:] > l_hi)))
        need = ok[:-1] & ok[1:] & inwin & (np.abs(np.diff(L)) > 0.25 * b * step) & (dm > 1e-7)
        need |= (ok[:-1] != ok[1:]) & (dm > 1e-4)
        idx = np.nonzero(need & same)[0]
        if not len(idx):
            break
        mm, kk = 0.5 * (m[idx] + m[idx + 1]), kc[idx]
        Ln, okn = solve(mm, gamma_axis[kk])
        kc = np.concatenate([kc, kk])
        m = np.concatenate([m, mm])
        o = np.lexsort((m, kc))
        kc, m = kc[o], m[o]
        L = np.concatenate([L, Ln])[o]
        ok = np.concatenate([ok, okn])[o]
    bounds = np.searchsorted(kc, np.arange(ng + 1))
    cols = [(m[bounds[k]:bounds[k + 1]], L[bounds[k]:bounds[k + 1]], ok[bounds[k]:bounds[k + 1]]) for k in range(ng)]

    out_m = np.full((n_nodes, ng), np.nan)
    out_w = np.zeros((n_nodes, ng))
    for k, (m, L, ok) in enumerate(cols):
        out_m[:, k], out_w[:, k] = ref_place_column(m, L, ok, l_lo, l_hi, a, b, step, n_nodes, wg[k])
    return out_m, out_w


def ref_place_column(m, L, ok, l_lo, l_hi, a, b, step, n_nodes, wg=1.0):
    """Placement step of :func:`ref_adaptive_columns` for one traced column: points ``m``
    (increasing logMh), ``L`` (logM*), ``ok`` (validity); window [l_lo, l_hi]; scales (a, b).

    Returns
    -------
    logMh, wq : ndarray, shape (n_nodes,)
    """
    from scipy.interpolate import PchipInterpolator

    out_m = np.full(n_nodes, np.nan)
    out_w = np.zeros(n_nodes)
    use = ok & (L >= l_lo) & (L <= l_hi)
    edges = np.diff(np.concatenate([[0], use.astype(np.int8), [0]]))
    pieces = []
    for s0, e0 in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
        if e0 - s0 < 2:
            continue        # a piece narrower than the bisection tolerance: weight ~0
        mv, Lv = m[s0:e0], L[s0:e0]
        sv = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(mv) / a, np.diff(Lv) / b))])
        pieces.append((sv, mv))
    if not pieces:
        return out_m, out_w
    need = np.array([int(np.ceil(p[0][-1] / step)) + 1 for p in pieces])
    if need.sum() > n_nodes:   # too long a column: coarser spacing, same slots
        need = np.maximum(2, np.floor(need * (n_nodes - 2 * len(pieces)) / need.sum()).astype(int))
    j = 0
    for (sv, mv), n in zip(pieces, need):
        st = np.linspace(0.0, sv[-1], n)
        pm = PchipInterpolator(sv, mv)
        w = np.full(n, sv[-1] / (n - 1))
        w[[0, -1]] *= 0.5
        out_m[j:j + n] = pm(st)
        out_w[j:j + n] = w * pm.derivative()(st) * wg
        j += n
    return out_m, out_w


# ---------------------------------------------------------------------------------------
# Slow reference forms of compiled product functions
# ---------------------------------------------------------------------------------------
from sl_cy._profiles import gnfw_quadrature  # noqa: E402  (compiled adaptive quadrature; reference of gnfw_dimensionless)
from sl_cy import _photometry  # noqa: E402
from sl_cy._validate import as_float_array  # noqa: E402
from sl_cy.forward import ForwardModel  # noqa: E402
from sl_cy.likelihood import _default_selection, _log_first_source_factor, _stacked  # noqa: E402
from sl_cy.photometry import (DEFAULT_ALPHA_S, DEFAULT_M_LIM, DEFAULT_M_MAX, DEFAULT_M_MIN,  # noqa: E402
                              DEFAULT_M_STAR, DEFAULT_SIGMA_M, _broadcast, _law_params, _out, _scalar, _sigma)
from sl_cy.population import gamma_logpdf, logMh_logpdf, logRe_logpdf, mstar_logpdf  # noqa: E402


def K_direct(mu1, mu2, *, m_lim=DEFAULT_M_LIM, sigma_m=DEFAULT_SIGMA_M, m_star=DEFAULT_M_STAR,
             alpha_s=DEFAULT_ALPHA_S, m_min=DEFAULT_M_MIN, m_max=DEFAULT_M_MAX):
    """K(mu1, mu2) by direct quadrature at each point (reference for the table; arrays broadcast).

    Parameters
    ----------
    mu1, mu2 : float or array
        Magnifications (|mu| used; mu = 0 gives 0).
    m_lim, sigma_m, m_star, alpha_s, m_min, m_max : float
        As in :func:`build_K_table`.

    Returns
    -------
    float or ndarray

    Performance
    -----------
    ~50 µs per point (1600-node composite Gauss-Legendre in C).

    Precision
    ---------
    ~1e-13 relative against ``scipy.integrate.quad``.

    Examples
    --------
    >>> round(K_direct(1.5, 0.8), 10)
    0.1402230511
    """
    m_lim = _scalar("m_lim", m_lim)
    sigma_m = _sigma(sigma_m)
    law = _law_params(m_star, alpha_s, m_min, m_max)
    (a, b), shape = _broadcast(as_float_array("mu1", mu1), as_float_array("mu2", mu2))
    return _out(_photometry.k_direct_array(a, b, m_lim, sigma_m, *law).reshape(shape))


def source_law_log_norm_quadrature(m_star, alpha_s, m_min, m_max, *, panel=0.05, nodes=8):
    """log int_{m_min}^{m_max} L^(alpha_s+1) e^(-L) dm, L = 10^(-0.4 (m - m_star)), by composite
    Gauss-Legendre quadrature (panels <= ``panel`` mag, ``nodes`` per panel, summed relative to the
    largest term): the former compiled normalisation, kept as the reference of the analytic one
    (``sl_cy._photometry.source_law_log_norm``, incomplete gamma functions in log space).

    Parameters
    ----------
    m_star, alpha_s, m_min, m_max : float
        The source magnitude law (m_min < m_max).
    panel : float
        Largest panel width (mag).
    nodes : int
        Gauss-Legendre nodes per panel.

    Returns
    -------
    float

    Performance
    -----------
    ~0.1 ms for a 10-mag range (200 panels).

    Precision
    ---------
    ~1e-15 relative where the integrand is resolved by the panels (L(m_min) <~ 100, i.e. m_min
    fainter than m_star - 5); it degrades where the law is a narrow spike at a bright m_min (a width
    1 / (0.4 ln10 L) mag), which the analytic form handles exactly.

    Examples
    --------
    >>> round(source_law_log_norm_quadrature(24.5, -1.3, 20.0, 30.0), 12)
    2.475649693919
    """
    k = 0.4 * math.log(10.0)
    npan = max(1, math.ceil((m_max - m_min) / panel))
    x, w = np.polynomial.legendre.leggauss(int(nodes))
    hw = 0.5 * (m_max - m_min) / npan
    c = m_min + (2 * np.arange(npan) + 1)[:, None] * hw
    t = -k * (c + hw * x[None, :] - m_star)
    v = (alpha_s + 1.0) * t - np.exp(t)
    vmax = v.max()
    return float(vmax + np.log(np.sum(w[None, :] * np.exp(v - vmax)) * hw))


def log_likelihood_numpy(eta, grids, per_lens: bool = False, selection: bool = False):
    """Plain NumPy evaluation of sum_i log p(d_i | eta) from the :mod:`sl_cy.population`
    log-densities (the reference for :class:`LikelihoodKernel`; one eta, slow). ``selection``
    adds the one-entry-per-galaxy factor (1 - exp(-T)) / T per point, as the kernel does.

    It implements the plain column rule only (the grid's points with their weights): the kernel
    equals it where its eta-adaptive column rule is rule 1 (``LikelihoodKernel.column_rule_of``:
    in and around the posterior of realistic populations, sigma_h >~ 0.16 at beta_h = 2); where
    the halo ridge is narrower than the node spacing (small sigma_h, large beta_h) the kernel
    sub-samples the columns and differs from it by the plain rule's quadrature error. Compare
    with ``LikelihoodKernel.column_rule = False`` there.

    Examples
    --------
    >>> from sl_cy.grids import LensGrid
    >>> g = LensGrid.empty(np.linspace(12, 14, 3), np.array([1.0]), observed=dict(logRe=1.0,
    ...                    logM_star_sps_observed=11.5))
    >>> float(log_likelihood_numpy([0, 12.9, 2, 0.4, 1, 0.2], [g]))
    -inf
    """
    from scipy.special import logsumexp
    from scipy.stats import norm

    st = _stacked(grids)
    fm = ForwardModel.from_dict(st["forward_model"]) if st.get("forward_model") else ForwardModel()
    model, sig = fm.model, fm.sigma_star
    e = np.asarray(eta, dtype=float)
    g_ax = np.asarray(st["gamma_axis"], float)
    obs = st["observed"]
    out = np.empty(len(st["valid"]))
    rate_engine = _default_selection(fm, len(out)) if selection else None   # as LikelihoodKernel's default
    for i in range(len(out)):
        ok = (st["valid"][i] == 0) & np.isfinite(st["logMh"][i])
        mh = st["logMh"][i]
        g = np.broadcast_to(g_ax[None, :], mh.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            lw = np.log(2 * np.pi * st["nbkg_kpc2"][i] * st["beta"][i] * st["detJ"][i] * st["F_phot"][i] * st["wq"][i])
        ok &= np.isfinite(lw)
        if not ok.any():
            out[i] = -np.inf
            continue
        M = st["logM_star"][i][ok] - e[0]
        re = float(obs["logRe"].iloc[i])
        lp = (lw[ok] + logMh_logpdf(mh[ok], M, re, eta=tuple(e), model=model) + mstar_logpdf(M, model)
              + logRe_logpdf(re, M, model) + norm.logpdf(float(obs["logM_star_sps_observed"].iloc[i]), M, sig))
        if selection:
            lp = lp + _log_first_source_factor(fm, st["logM_star"][i][ok], np.full(ok.sum(), re), mh[ok], g[ok],
                                               None, rate_engine)
        if len(g_ax) > 1:
            lp = lp + gamma_logpdf(g[ok], e[4], e[5])
        out[i] = logsumexp(lp)
    return out if per_lens else float(out.sum())
