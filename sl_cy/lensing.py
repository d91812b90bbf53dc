"""Spherical lens model (de Vaucouleurs stars + gNFW halo): forward solves and inversion.

The compiled kernels live in ``sl_cy._lensing``; this module validates inputs, names things
as the original package did (``LensModel``, ``solve_single_lens``,
``solve_lens_parameters_from_obs``, ``compute_detJ``, ``lens_properties``) and offers batched
entry points (:func:`forward_solve`, :func:`invert_images`) that return status codes instead
of raising for lenses without a solution.

Conventions
-----------
Positions x are signed, in kpc, along the line through the lens centre and both images:
image A at x_A > theta_E, image B at -theta_E < x_B < -x_r. Magnifications are signed
(mu_B < 0) except where a name says ``abs``. ``beta_unit`` = beta / y_caustic in [0, 1).

When a two-image configuration exists
-------------------------------------
A two-image lens needs an Einstein radius (mean convergence above 1 somewhere) and a radial
critical curve inside it. The radial caustic exists for gamma_in < 2 whenever the lens is
supercritical: for gamma_in >= 2 the halo deflection no longer vanishes at the centre
(gamma_in = 2) or diverges there (gamma_in > 2), there is no radial critical curve and every
source inside the tangential caustic has more images, so the model is not a two-image lens.
The batched API returns status ``Status.NO_RADIAL_CAUSTIC`` (or ``NO_EINSTEIN_RADIUS`` for a
subcritical lens); the scalar API returns NaN and emits a :class:`LensingWarning` naming the
reason. Profiles (alpha, kappa, shear) remain available for gamma_in up to 2.4.

Scalar API
----------
The seed's one-lens-at-a-time functions (:class:`LensModel` and its methods,
:func:`solve_single_lens`, :func:`lens_properties`, :func:`solve_lens_parameters_from_obs`,
:func:`compute_detJ`) take a fast path for Python/NumPy floats: inputs are checked as scalars;
Sigma_cr and rho_c are cached per (zl, zs, cosmology) (D(zl), for the arcsec conversions, by
:mod:`sl_cy.cosmology`); a :class:`LensModel` sets its lens up once in C and solves its
critical curves only when first asked; each method computes only what it returns. The C
routines are those of the batch API, so the scalar results equal :func:`forward_solve` /
:func:`invert_images` to the last bit. Each call costs a few microseconds
(``benchmarks/bench_core.py``).
"""
from __future__ import annotations

import enum
import math
import operator
import warnings
from functools import lru_cache

import numpy as np

from sl_cy import _lensing
from sl_cy._validate import as_float_array
from sl_cy.cosmology import _finite_float, get_cosmology, kpc_to_arcsec
from sl_cy.profiles import GAMMA_IN_MAX

LN10 = np.log(10.0)


class Status(enum.IntEnum):
    """Outcome of a forward solve or of an inversion at one grid point (0 = valid)."""

    OK = 0
    NO_EINSTEIN_RADIUS = 1
    NO_RADIAL_CAUSTIC = 2
    BETA_NEGATIVE = 3
    BEYOND_CAUSTIC = 4
    MSTAR_NONPOSITIVE = 5
    XB_CENTRAL_IMAGE = 6
    ROOT_FAILED = 7
    BAD_INPUT = 8

    @property
    def reason(self) -> str:
        return _lensing.STATUS_NAMES[int(self)]


class LensingWarning(UserWarning):
    """A scalar lensing call had no physical solution and returned NaN."""


def _warn(status) -> None:
    warnings.warn(f"no two-image solution: {Status(int(status)).reason}", LensingWarning, stacklevel=3)


@lru_cache(maxsize=4096)
def _plane(zl, zs, H0, Om, Ode):
    """(Sigma_cr [Msun/kpc^2], rho_c(zl) [Msun/kpc^3]) of one lens plane, cached per
    (zl, zs, cosmology); the values the batch kernels compute."""
    return _lensing.plane_constants(zl, zs, H0, Om, Ode)


def _fast_lens(logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs):
    """The lens parameters as Python floats if all are valid plain scalars, else None (the
    caller then runs :func:`_check_lens`, which raises the informative error)."""
    ms = _finite_float(logM_star)
    mh = _finite_float(logM_halo)
    re = _finite_float(logRe)
    g = _finite_float(gamma_in)
    c = _finite_float(c_halo)
    a = _finite_float(zl)
    b = _finite_float(zs)
    if (ms is None or mh is None or re is None or g is None or c is None or a is None or b is None
            or not (0.0 <= g <= GAMMA_IN_MAX and c > 0.0 and 0.0 < a < b)):
        return None
    return ms, mh, re, g, c, a, b


def _scalar_lens(logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs):
    """Validated scalar lens parameters (ms, mh, re, g, c, zl, zs) as floats; ValueError otherwise."""
    p = _fast_lens(logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs)
    if p is not None:
        return p
    ms, mh, re, g, c, zl_, zs_ = _check_lens(logM_halo, logRe, gamma_in, c_halo, zl, zs, logM_star)
    vals = dict(logM_star=ms, logM_halo=mh, logRe=re, gamma_in=g, c_halo=c, zl=zl_, zs=zs_)
    for name, v in vals.items():
        if np.ndim(v) != 0:
            raise ValueError(f"LensModel takes scalars; {name} has shape {np.shape(v)} "
                             "(use forward_solve for batches)")
    return tuple(float(v) for v in vals.values())


def _unit(beta_unit):
    """beta_unit as a float in [0, 1) (ValueError naming it otherwise)."""
    b = _finite_float(beta_unit)
    if b is not None and 0.0 <= b < 1.0:
        return b
    return float(as_float_array("beta_unit", beta_unit, lo=0.0, hi=1.0, hi_open=True))


def _check_lens(logM_halo, logRe, gamma_in, c_halo, zl, zs, logM_star=0.0):
    """Validate lens parameters (scalars or arrays); return them as float arrays."""
    ms = as_float_array("logM_star", logM_star)
    mh = as_float_array("logM_halo", logM_halo)
    re = as_float_array("logRe", logRe)
    g = as_float_array("gamma_in", gamma_in, lo=0.0, hi=GAMMA_IN_MAX)
    c = as_float_array("c_halo", c_halo, lo=0.0, lo_open=True)
    zl = as_float_array("zl", zl, lo=0.0, lo_open=True)
    zs = as_float_array("zs", zs, lo=0.0, lo_open=True)
    if np.any(np.broadcast_to(zs, np.broadcast(zl, zs).shape) <= np.broadcast_to(zl, np.broadcast(zl, zs).shape)):
        raise ValueError("the source redshift zs must exceed the lens redshift zl")
    return ms, mh, re, g, c, zl, zs


def forward_solve(logM_star, logM_halo, logRe, *, gamma_in=1.0, c_halo=5.0, zl=0.3, zs=2.0,
                  beta_unit=None, cosmo=None):
    """Critical curves and, given ``beta_unit``, both images for a batch of lenses.

    Parameters
    ----------
    logM_star, logM_halo, logRe : float or array
        log10 of stellar mass (Msun), halo M200 (Msun) and effective radius (kpc).
    gamma_in, c_halo : float or array
        gNFW inner slope in [0, 2.4] and concentration.
    zl, zs : float or array
        Lens and source redshifts (zs > zl).
    beta_unit : float or array, optional
        Source position in units of the radial caustic, in [0, 1). Omit for critical curves only.
    cosmo : Cosmology or astropy cosmology, optional

    Returns
    -------
    dict of ndarray
        ``theta_e``, ``x_rad``, ``y_caustic`` (kpc); with ``beta_unit`` also ``beta``, ``x_A``,
        ``x_B`` (kpc), signed ``mu_A``, ``mu_B``, ``kappa_A``, ``kappa_B``, ``shear_A``,
        ``shear_B`` at the images and ``detJ`` = |d(logM*, beta)/d(x_A, x_B)| (1/kpc);
        ``status`` (int8, :class:`Status`).
        Quantities of lenses without a solution are NaN.

    Performance
    -----------
    About 4 microseconds per lens on one core (critical curves ~3 us, both images ~1 us).

    Precision
    ---------
    Lens-equation residual <= 1e-12 kpc; quantities agree with adaptive quadrature to ~1e-8.

    Examples
    --------
    >>> out = forward_solve(11.5, 13.0, 0.9, beta_unit=0.5)
    >>> int(out["status"]), round(float(out["x_A"]), 6)
    (0, 6.620632)
    """
    ms, mh, re, g, c, zl, zs = _check_lens(logM_halo, logRe, gamma_in, c_halo, zl, zs, logM_star)
    images = beta_unit is not None
    if images:
        bu = as_float_array("beta_unit", beta_unit, lo=0.0, hi=1.0, hi_open=True)
    else:
        bu = 0.0
    out = _lensing.forward_batch(ms, mh, re, g, c, zl, zs, bu, *get_cosmology(cosmo).params, images=images)
    if images:
        out["beta"] = bu * out["y_caustic"]
    else:
        for k in ("x_A", "x_B", "mu_A", "mu_B", "kappa_A", "kappa_B", "shear_A", "shear_B", "detJ"):
            del out[k]
    return out


def invert_images(x_A, x_B, logRe, *, logM_halo, gamma_in=1.0, c_halo=5.0, zl=0.3, zs=2.0, cosmo=None):
    """Invert image positions for the stellar mass and source position at given halos.

    Parameters
    ----------
    x_A, x_B : float or array
        Image positions in kpc, x_A > 0 > x_B (use :func:`orient_images` for raw data).
    logRe : float or array
        log10 effective radius (kpc).
    logM_halo, gamma_in, c_halo : float or array
        Halo at which to invert (broadcast against the images: a grid is fine).
    zl, zs : float or array
    cosmo : optional

    Returns
    -------
    dict of ndarray
        ``logM_star``, ``beta`` (kpc), ``y_caustic``, ``theta_e``, ``x_rad`` (kpc),
        ``mu_A``, ``mu_B`` (absolute), ``detJ`` = |d(logM*, beta)/d(x_A, x_B)| (1/kpc), and
        ``status``: 0 where the point is a valid two-image lens (M* > 0, 0 <= beta < y_c,
        |x_B| > x_r), otherwise the :class:`Status` reason. Invalid points keep the values
        that could be computed (NaN otherwise) so they can be inspected, and must be given
        zero weight.

    Performance
    -----------
    About 2.5 microseconds per point on one core.

    Examples
    --------
    >>> r = invert_images(6.620631957929381, -3.072406570798928, 0.9, logM_halo=13.0)
    >>> round(float(r["logM_star"]), 9), int(r["status"])
    (11.5, 0)
    """
    xa = as_float_array("x_A", x_A, lo=0.0, lo_open=True)
    xb = as_float_array("x_B", x_B, hi=0.0, hi_open=True)
    _, mh, re, g, c, zl, zs = _check_lens(logM_halo, logRe, gamma_in, c_halo, zl, zs)
    return _lensing.invert_batch(xa, xb, re, mh, g, c, zl, zs, *get_cosmology(cosmo).params)


def orient_images(xA_obs, xB_obs):
    """Put two observed image positions in the convention x_A > 0 > x_B.

    The images must lie on opposite sides of the lens centre; if ``xA_obs`` is negative both
    are reflected (the lens is axisymmetric).

    Raises
    ------
    ValueError
        if a position is non-finite or zero, or both lie on the same side.
    """
    xa = as_float_array("xA_obs", xA_obs)
    xb = as_float_array("xB_obs", xB_obs)
    prod = xa * xb
    if np.any(prod >= 0):
        i = int(np.argmax(np.ravel(np.broadcast_to(prod, np.broadcast(xa, xb).shape)) >= 0))
        raise ValueError(f"xA_obs and xB_obs must lie on opposite sides of the lens centre "
                         f"(got xA={np.ravel(np.broadcast_to(xa, prod.shape))[i]!r}, "
                         f"xB={np.ravel(np.broadcast_to(xb, prod.shape))[i]!r} at index {i})")
    sign = np.sign(xa)
    return xa * sign, xb * sign


def _param(name, doc):
    return property(operator.attrgetter("_" + name), doc=doc)


class LensModel:
    """One lens: de Vaucouleurs stars plus a gNFW halo.

    Parameters
    ----------
    logM_star : float
        log10 stellar mass (Msun) entering the lens (SPS mass + alpha_sps).
    logM_halo : float
        log10 M200 of the halo (Msun).
    logRe : float
        log10 effective radius (kpc).
    zl, zs : float
        Lens and source redshift.
    gamma_in : float, default 1.0
        gNFW inner slope in [0, 2.4] (two-image lensing needs < 2, see module notes).
    c_halo : float, default 5
        Concentration r200/rs.
    cosmo : optional
        Cosmology (default flat LCDM, H0 = 70, Om = 0.3).

    Attributes
    ----------
    logM_star, logM_halo, logRe, zl, zs, gamma_in, c_halo : float
        The parameters (read-only: build a new model to change them).
    Sigma_cr : float
        Critical surface density (Msun/kpc^2).
    rs, Re : float
        gNFW scale radius and effective radius (kpc).
    M200, M_star : float
        Halo and stellar mass (Msun).

    Methods taking a position ``x`` (kpc, signed, x != 0) accept a float (returned as a float)
    or an array (returned with its shape).

    Performance
    -----------
    Construction ~2 microseconds (Sigma_cr and rho_c cached per (zl, zs, cosmology)); the
    critical curves are solved on the first call that needs them (~3 microseconds) and kept;
    a local quantity at one float position ~0.5 microseconds.

    Precision
    ---------
    Identical, to the last bit, to :func:`forward_solve` for the same lens (the same compiled
    routines run on the same inputs).

    Examples
    --------
    >>> m = LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    >>> round(m.einstein_radius(), 6), round(m.solve_ycaustic(), 6)
    (4.849775, 3.50252)
    """

    logM_star = _param("logM_star", "log10 stellar mass (Msun).")
    logM_halo = _param("logM_halo", "log10 halo M200 (Msun).")
    logRe = _param("logRe", "log10 effective radius (kpc).")
    gamma_in = _param("gamma_in", "gNFW inner slope.")
    c_halo = _param("c_halo", "gNFW concentration r200/rs.")
    zl = _param("zl", "Lens redshift.")
    zs = _param("zs", "Source redshift.")

    def __init__(self, logM_star, logM_halo, logRe, *, zl=0.3, zs=2.0, gamma_in=1.0, c_halo=5.0, cosmo=None):
        ms, mh, re, g, c, a, b = _scalar_lens(logM_star, logM_halo, logRe, gamma_in, c_halo, zl, zs)
        self._logM_star = ms
        self._logM_halo = mh
        self._logRe = re
        self._gamma_in = g
        self._c_halo = c
        self._zl = a
        self._zs = b
        self.cosmo = cosmo = get_cosmology(cosmo)
        cp = cosmo.params
        self._plane = plane = _plane(a, b, *cp)
        self._core = _lensing.ScalarLens(ms, mh, re, g, c, plane[0], plane[1], *cp)
        self._crit = None

    def __repr__(self):
        return (f"LensModel(logM_star={self.logM_star}, logM_halo={self.logM_halo}, logRe={self.logRe}, "
                f"zl={self.zl}, zs={self.zs}, gamma_in={self.gamma_in}, c_halo={self.c_halo})")

    def __reduce__(self):
        return (_rebuild_lens_model, (self._logM_star, self._logM_halo, self._logRe, self._zl, self._zs,
                                      self._gamma_in, self._c_halo, self.cosmo))

    @property
    def Sigma_cr(self):
        """Critical surface density c^2/(4 pi G) Ds/(Dd Dds) in Msun/kpc^2."""
        return self._plane[0]

    @property
    def rs(self):
        """gNFW scale radius r200 / c_halo (kpc)."""
        return self._core.rs

    @property
    def M200(self):
        """Halo mass M200 (Msun)."""
        return 10.0 ** self._logM_halo

    @property
    def M_star(self):
        """Stellar mass (Msun)."""
        return 10.0 ** self._logM_star

    @property
    def Re(self):
        """Effective radius (kpc)."""
        return 10.0 ** self._logRe

    # --- local quantities -------------------------------------------------------------------
    def _profile(self, x):
        """The ten local quantities (rows, see ``_lensing.POINT_NAMES``) at positions x."""
        x = as_float_array("x", x)
        if np.any(x == 0):
            raise ValueError("x = 0 is the lens centre: alpha/x and mu are undefined there")
        return self._core.profile(x.ravel()).reshape((len(_lensing.POINT_NAMES),) + x.shape)

    def _local(self, x, i):
        xf = _finite_float(x)
        if xf is not None and xf != 0.0:
            return self._core.local_one(xf, i)
        v = self._profile(x)[i]
        return float(v) if v.ndim == 0 else v

    def alpha(self, x):
        """Deflection alpha(x) in kpc (signed, odd in x)."""
        return self._local(x, 0)

    def alpha_star(self, x):
        """Stellar part of the deflection (kpc)."""
        return self._local(x, 1)

    def alpha_halo(self, x):
        """Halo part of the deflection (kpc)."""
        return self._local(x, 2)

    def kappa(self, x):
        """Convergence Sigma(|x|)/Sigma_cr."""
        return self._local(x, 3)

    def kappa_star(self, x):
        """Stellar convergence."""
        return self._local(x, 4)

    def kappa_halo(self, x):
        """Halo convergence."""
        return self._local(x, 5)

    def inv_mu_r(self, x):
        """Radial eigenvalue 1/mu_r = 1 + alpha/x - 2 kappa = 1 - d alpha/dx."""
        return self._local(x, 6)

    def inv_mu_t(self, x):
        """Tangential eigenvalue 1/mu_t = 1 - alpha/x."""
        return self._local(x, 7)

    def gamma(self, x):
        """Shear gamma_s = mean kappa - kappa = alpha/x - kappa."""
        return self._local(x, 8)

    def mu_from_rt(self, x):
        """Signed magnification 1 / (mu_t^-1 mu_r^-1).

        Parameters
        ----------
        x : float or array
            Signed position(s) in kpc, x != 0.

        Returns
        -------
        float or ndarray
            mu (negative between the critical curves); at an image of :func:`forward_solve`
            it equals that function's ``mu_A`` / ``mu_B`` bit for bit.

        Performance
        -----------
        ~0.4 microseconds for a float x.

        Examples
        --------
        >>> round(LensModel(11.5, 13.0, 0.9).mu_from_rt(6.620631957976534), 6)
        3.834575
        """
        return self._local(x, 9)

    def mu_from_kg(self, x):
        """Signed magnification 1 / ((1 - kappa)^2 - gamma_s^2)."""
        xf = _finite_float(x)
        if xf is not None and xf != 0.0:
            o = self._core.local(xf)
            k, g = o[3], o[8]
            return 1.0 / ((1.0 - k) ** 2 - g ** 2)
        k = self.kappa(x)
        g = self.gamma(x)
        return 1.0 / ((1.0 - k) ** 2 - g ** 2)

    # --- critical curves ----------------------------------------------------------------------
    def critical(self):
        """Dict with theta_e, x_rad, y_caustic (kpc) and status (solved once, then cached)."""
        if self._crit is None:
            te, xr, yc, st = self._core.critical()
            self._crit = dict(theta_e=te, x_rad=xr, y_caustic=yc, status=st)
        return self._crit

    def einstein_radius(self):
        """Einstein radius theta_E in kpc (alpha(theta_E) = theta_E).

        Returns
        -------
        float
            theta_E; NaN with a :class:`LensingWarning` for a subcritical lens.

        Performance
        -----------
        ~3 microseconds on the first call of a model (critical curves solved), ~0.3 after.

        Examples
        --------
        >>> round(LensModel(11.5, 13.0, 0.9).einstein_radius(), 6)
        4.849775
        """
        te, _, _, st = self._core.critical()
        if st and not math.isfinite(te):
            _warn(st)
        return te

    def solve_xradcrit(self):
        """Radial critical curve x_r in kpc (1/mu_r = 0, outermost root inside theta_E).

        NaN with a :class:`LensingWarning` when the lens has no radial critical curve.
        """
        _, xr, _, st = self._core.critical()
        if st and not math.isfinite(xr):
            _warn(st)
        return xr

    def solve_ycaustic(self):
        """Radial caustic y_c = alpha(x_r) - x_r in kpc.

        Returns
        -------
        float
            y_c; NaN with a :class:`LensingWarning` when the lens is not a two-image lens.

        Performance
        -----------
        ~3 microseconds on the first call of a model, ~0.3 after.

        Examples
        --------
        >>> round(LensModel(11.5, 13.0, 0.9).solve_ycaustic(), 6)
        3.50252
        """
        _, _, yc, st = self._core.critical()
        if st and not math.isfinite(yc):
            _warn(st)
        return yc

    def solve_ycaustic_arcsec(self):
        """Radial caustic in arcsec at the lens redshift (NaN, with a warning, if there is none)."""
        _, _, yc, st = self._core.critical()
        if not math.isfinite(yc):
            _warn(st)
            return math.nan
        return kpc_to_arcsec(yc, self._zl, cosmo=self.cosmo)

    def Mh5(self, R=5.0):
        """Projected halo mass inside R kpc (default 5 kpc), in Msun."""
        r = _finite_float(R)
        if r is None or not r > 0.0:
            r = float(as_float_array("R", R, lo=0.0, lo_open=True))
        return self._core.local_one(r, 2) * np.pi * r * self.Sigma_cr

    def logMh5(self, R=5.0):
        """log10 of :meth:`Mh5`."""
        return float(np.log10(self.Mh5(R)))


def solve_single_lens(model: LensModel, beta_unit):
    """Image positions (x_A, x_B) in kpc of a source at beta = beta_unit * y_caustic.

    Parameters
    ----------
    model : LensModel
    beta_unit : float
        Source position in units of the radial caustic, in [0, 1).

    Returns
    -------
    xA, xB : float
        x_A > theta_E and -theta_E < x_B < -x_r (kpc). ``(nan, nan)`` with a
        :class:`LensingWarning` when the lens has no two-image configuration.

    Performance
    -----------
    ~1.5 microseconds once the model's critical curves are known, ~4 on a fresh model.

    Precision
    ---------
    Equal to ``forward_solve(...)["x_A"], ["x_B"]`` to the last bit; lens-equation residual
    <= 1e-12 kpc.

    Examples
    --------
    >>> xA, xB = solve_single_lens(LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0), 0.5)
    >>> round(xA, 6), round(xB, 6)
    (6.620632, -3.072407)
    """
    xA, xB, st = model._core.images(_unit(beta_unit))
    if st:
        _warn(st)
    return xA, xB


def _rebuild_lens_model(logM_star, logM_halo, logRe, zl, zs, gamma_in, c_halo, cosmo) -> LensModel:
    """Unpickle a :class:`LensModel` (its optional arguments are keyword-only)."""
    return LensModel(logM_star, logM_halo, logRe, zl=zl, zs=zs, gamma_in=gamma_in, c_halo=c_halo, cosmo=cosmo)


def lens_properties(model: LensModel, beta_unit):
    """All lensing properties of one lens and source.

    Parameters
    ----------
    model : LensModel
    beta_unit : float
        Source position in units of the radial caustic, in [0, 1).

    Returns
    -------
    dict
        xA, xB (kpc), beta (kpc), beta_unit, magnificationA, magnificationB (signed),
        kappaA, kappaB, gammaA, gammaB (shear), einstein_radius_kpc, xradcrit_kpc,
        ycaustic_kpc, ycaustic_arcsec, xA_arcsec, xB_arcsec, Sigma_cr, status.
        Image quantities are NaN (with a :class:`LensingWarning`) when status != 0.

    Performance
    -----------
    ~10 microseconds on a fresh model (critical curves, images, three arcsec conversions).

    Precision
    ---------
    Equal to the corresponding :func:`forward_solve` outputs to the last bit.

    Examples
    --------
    >>> p = lens_properties(LensModel(11.5, 13.0, 0.9), 0.5)
    >>> round(p["magnificationA"], 6), round(p["kappaB"], 6)
    (3.834575, 0.800331)
    """
    bu = _unit(beta_unit)
    st, xA, xB, muA, muB, kA, kB, shA, shB, _ = model._core.image_properties(bu)
    te, xr, yc, _ = model._core.critical()
    if st:
        _warn(st)
    zl, cosmo = model._zl, model.cosmo
    ok = st == Status.OK
    return dict(xA=xA, xB=xB, beta=bu * yc, beta_unit=bu, magnificationA=muA, magnificationB=muB,
                einstein_radius_kpc=te, xradcrit_kpc=xr, ycaustic_kpc=yc, Sigma_cr=model.Sigma_cr,
                status=st, kappaA=kA, kappaB=kB, gammaA=shA, gammaB=shB,
                xA_arcsec=kpc_to_arcsec(xA, zl, cosmo) if ok else np.nan,
                xB_arcsec=kpc_to_arcsec(xB, zl, cosmo) if ok else np.nan,
                ycaustic_arcsec=kpc_to_arcsec(yc, zl, cosmo) if math.isfinite(yc) else np.nan)


def _invert_one(xA_obs, xB_obs, logRe_obs, logM_halo, zl, zs, gamma_in, c_halo, cosmo):
    """Scalar fast path of the inversion: the 9-tuple of ``_lensing.invert_one``, or None when
    an input is not a valid plain scalar (the caller then takes the array path)."""
    xa = _finite_float(xA_obs)
    xb = _finite_float(xB_obs)
    if xa is None or xb is None or not xa * xb < 0.0:
        return None
    p = _fast_lens(0.0, logM_halo, logRe_obs, gamma_in, c_halo, zl, zs)
    if p is None:
        return None
    if xa < 0.0:
        xa = xa * -1.0
        xb = xb * -1.0
    cp = get_cosmology(cosmo).params
    plane = _plane(p[5], p[6], *cp)
    return _lensing.invert_one(xa, xb, p[2], p[1], p[3], p[4], plane[0], plane[1], *cp)


def solve_lens_parameters_from_obs(xA_obs, xB_obs, logRe_obs, logM_halo, *, zl=0.3, zs=2.0,
                                   gamma_in=1.0, c_halo=5.0, cosmo=None):
    """Stellar mass and source position that reproduce two observed images, at a given halo.

    Parameters
    ----------
    xA_obs, xB_obs : float
        Observed image positions in kpc on opposite sides of the centre.
    logRe_obs, logM_halo : float
    zl, zs, gamma_in, c_halo : float
    cosmo : optional

    Returns
    -------
    logM_star, beta_unit, ycaustic_kpc, muA, muB : float
        muA, muB are absolute magnifications. All NaN (with a :class:`LensingWarning`) when
        the point is not a valid two-image lens.

    Raises
    ------
    ValueError
        for non-finite input, gamma_in outside [0, 2.4], or images on the same side.

    Performance
    -----------
    ~4 microseconds per call for float inputs (Sigma_cr, rho_c cached per (zl, zs, cosmo)).

    Precision
    ---------
    Equal to :func:`invert_images` (``logM_star``, ``beta / y_caustic``, ``y_caustic``,
    ``mu_A``, ``mu_B``) to the last bit.

    Examples
    --------
    >>> r = solve_lens_parameters_from_obs(6.620631957929381, -3.072406570798928, 0.9, 13.0)
    >>> [round(v, 6) for v in r]
    [11.5, 0.5, 3.50252, 3.834575, 1.809901]
    """
    f = _invert_one(xA_obs, xB_obs, logRe_obs, logM_halo, zl, zs, gamma_in, c_halo, cosmo)
    if f is not None:
        st, lm, beta, yc, _, _, muA, muB, _ = f
        if st:
            _warn(st)
            return (np.nan,) * 5
        return lm, beta / yc, yc, muA, muB
    xa, xb = orient_images(xA_obs, xB_obs)
    r = invert_images(xa, xb, logRe_obs, logM_halo=logM_halo, gamma_in=gamma_in, c_halo=c_halo, zl=zl, zs=zs, cosmo=cosmo)
    if np.ndim(r["status"]) != 0:
        raise ValueError("solve_lens_parameters_from_obs takes scalars (use invert_images for arrays)")
    if int(r["status"]) != Status.OK:
        _warn(r["status"])
        return (np.nan,) * 5
    yc = float(r["y_caustic"])
    return float(r["logM_star"]), float(r["beta"]) / yc, yc, float(r["mu_A"]), float(r["mu_B"])


def compute_detJ(xA_obs, xB_obs, logRe_obs, logMh, *, zl=0.3, zs=2.0, gamma_in=1.0, c_halo=5.0, cosmo=None):
    """Analytic Jacobian |det d(logM*, beta)/d(x_A, x_B)| (1/kpc) of the inversion.

    |J| = |mu_r^-1(x_A) mu_r^-1(x_B)| / (M* ln10 |a*(x_A) - a*(x_B)|), no finite differences.

    Parameters
    ----------
    xA_obs, xB_obs : float or array
        Image positions in kpc on opposite sides of the centre.
    logRe_obs, logMh : float or array
    zl, zs, gamma_in, c_halo : float or array
    cosmo : optional

    Returns
    -------
    float or ndarray
        |J| in 1/kpc (arrays broadcast); NaN where M* <= 0 (no inversion exists).

    Performance
    -----------
    ~4 microseconds per call for float inputs; arrays ~2.5 microseconds per point.

    Precision
    ---------
    Equal to ``invert_images(...)["detJ"]`` to the last bit.

    Examples
    --------
    >>> round(compute_detJ(6.620631957929381, -3.072406570798928, 0.9, 13.0), 8)
    0.06320163
    """
    f = _invert_one(xA_obs, xB_obs, logRe_obs, logMh, zl, zs, gamma_in, c_halo, cosmo)
    if f is not None:
        return np.nan if f[0] == Status.MSTAR_NONPOSITIVE else f[8]
    xa, xb = orient_images(xA_obs, xB_obs)
    r = invert_images(xa, xb, logRe_obs, logM_halo=logMh, gamma_in=gamma_in, c_halo=c_halo, zl=zl, zs=zs, cosmo=cosmo)
    d = np.where(r["status"] == Status.MSTAR_NONPOSITIVE, np.nan, r["detJ"])
    return float(d) if np.ndim(d) == 0 else d
