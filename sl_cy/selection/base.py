"""The interface every A(eta) engine implements (DESIGN section 3).

A(eta) is the **lens fraction**: the probability that a galaxy of the population is catalogued
as a lens, i.e. has at least one detected source,

    A(eta) = E_eta[1 - exp(-T)],   T = ∫_0^{y_c} 2 pi n_bkg beta dbeta K(mu_A(beta), mu_B(beta)),
    K(mu1, mu2) = ∫ p(m_s) P_det(mu1, m_s) P_det(mu2, m_s) dm_s,

where T(galaxy) is the expected number of detected sources behind it (a catalogue lists each
lens galaxy once, with one of its detected sources). Every engine is built from one
:class:`sl_cy.forward.ForwardModel` and offers:

* ``engine(eta)`` -- A(eta) for eta (6,) -> float or (n, 6) -> array (eta always ordered
  :data:`sl_cy.population.ETA_NAMES`);
* ``engine.lens_fraction(eta)`` -- the same number (the name says what it is);
* ``engine.expected_sources(eta)`` -- E[T] (the normaliser of the all-sources counting; equal to
  A only for T << 1), where the engine can give it;
* ``engine.forward_model`` -- the forward model it was built from;
* ``engine.bounds`` -- {eta name: (lo, hi)}: the support of A; outside it the posterior is -inf.

Engines: :class:`sl_cy.selection.SelectionQuadrature` (deterministic, the default),
:class:`sl_cy.selection.SelectionBank` (importance sampling, for validation) and
:class:`sl_cy.selection.AEtaTable` (A tabulated over some eta components from either).
"""
from __future__ import annotations

import numpy as np

from sl_cy._validate import as_float_array
from sl_cy.population import ETA_BOX, ETA_NAMES, GAMMA_HI, GAMMA_LO, Eta

__all__ = ["Selection", "SelectionWarning", "ESS_WARN_THRESHOLD", "eta_batch"]

#: mu_gamma may lie at most this many sigma_gamma outside the gamma support (as in sl_cy._likelihood).
GAMMA_Z_MAX = 1e4

#: Effective sample size below which :class:`SelectionBank` warns (relative MC error ~ 1/sqrt(ESS)).
ESS_WARN_THRESHOLD = 100.0


class SelectionWarning(UserWarning):
    """The A(eta) estimate is unreliable (effective sample size of the bank below the threshold)."""


def eta_batch(eta) -> tuple[np.ndarray, bool]:
    """Normalise eta (Eta, dict, (6,) or (n, 6)) to a C-contiguous (n, 6) array and a flag "was
    one eta"; ValueError for a wrong shape, a non-finite value, a sigma <= 0 or a mu_gamma more
    than :data:`GAMMA_Z_MAX` sigma_gamma outside the gamma support.

    Examples
    --------
    >>> eta_batch([0, 12.9, 2, 0.4, 1, 0.2])[0].shape
    (1, 6)
    """
    if isinstance(eta, Eta):
        eta = eta.to_array()
    elif isinstance(eta, dict):
        unknown = set(eta) - set(ETA_NAMES)
        if unknown:
            raise ValueError(f"unknown eta field(s) {sorted(unknown)}; fields are {ETA_NAMES}")
        eta = Eta(**eta).to_array()
    e = as_float_array("eta", eta)
    if e.ndim == 0 or e.shape[-1] != 6 or e.ndim > 2:
        raise ValueError(f"eta must have shape (6,) or (n, 6) in the order {ETA_NAMES}, got shape {e.shape}")
    scalar = e.ndim == 1
    e = np.ascontiguousarray(np.atleast_2d(e), dtype=float)
    for j in (3, 5):
        if np.any(e[:, j] <= 0):
            raise ValueError(f"eta.{ETA_NAMES[j]} must be > 0; got {e[e[:, j] <= 0, j][0]!r}")
    # the truncated gamma law must be representable: beyond 1e4 sigma from its support its
    # log-density is a difference of two huge terms that cancel to nothing (the bank gave A = inf)
    with np.errstate(over="ignore"):
        far = np.maximum(GAMMA_LO - e[:, 4], e[:, 4] - GAMMA_HI) > GAMMA_Z_MAX * e[:, 5]
    if np.any(far):
        i = int(np.argmax(far))
        raise ValueError(f"eta.{ETA_NAMES[4]} = {e[i, 4]!r} lies more than {GAMMA_Z_MAX:g} x eta.{ETA_NAMES[5]} "
                         f"(= {e[i, 5]!r}) outside the gamma support [{GAMMA_LO}, {GAMMA_HI}]: the truncated "
                         "gamma law is not representable in double precision")
    return e, scalar


class Selection:
    """Base class of the A(eta) engines (see the module docstring).

    Subclasses set ``forward_model`` and implement :meth:`lens_fraction`; ``bounds`` defaults to
    :data:`sl_cy.population.ETA_BOX`.
    """

    forward_model = None

    @property
    def bounds(self) -> dict:
        """{eta name: (lo, hi)}: where A(eta) is defined (the posterior is -inf outside)."""
        return dict(ETA_BOX)

    def in_bounds(self, eta) -> np.ndarray:
        """Boolean per row of an (n, 6) eta batch: inside :attr:`bounds`."""
        e = np.atleast_2d(np.asarray(eta, dtype=float))
        ok = np.all(np.isfinite(e), axis=1)
        for name, (lo, hi) in self.bounds.items():
            v = e[:, ETA_NAMES.index(name)]
            ok &= (v >= lo) & (v <= hi)
        return ok

    def lens_fraction(self, eta):
        raise NotImplementedError

    def __call__(self, eta):
        """A(eta) = the lens fraction E[1 - exp(-T)]: float for eta (6,), array for (n, 6)."""
        return self.lens_fraction(eta)
