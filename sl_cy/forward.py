"""The forward model: everything the mock, the grids, the likelihood and A(eta) must share.

One frozen, hashable object (:class:`ForwardModel`) holds the population model and its
constants, the survey (source density, magnitude limit, photometric and stellar-mass scatter,
source-magnitude law, detection rule), the redshifts, the halo concentration, the cosmology and
the halo-mass support of the model. The mock, the per-lens grids, the likelihood kernel and every
A(eta) engine are built from it alone; each writes its ``to_dict()`` into its files, and
:meth:`ForwardModel.check_same` refuses to combine two parts whose forward models differ, naming
the differing field (DESIGN section 3).

**Halo-mass support.** Galaxies whose halo mass lies outside ``halo_support`` (log10 M200,
default [10, 17]) are not galaxy-scale lenses of this model: the mock never makes a lens of
them, the grids integrate logMh over exactly this range, and A(eta) integrates the selection rate
over it. The same truncation everywhere makes numerator and normaliser see the same support
whatever eta is (a galaxy-scale lens sample excludes cluster-scale haloes by construction).

Examples
--------
>>> fm = ForwardModel()
>>> fm.model, fm.zl, fm.zs, fm.halo_support
('deVauc', 0.3, 2.0, (10.0, 17.0))
>>> fm.hash == ForwardModel.from_dict(fm.to_dict()).hash
True
>>> ForwardModel(survey=SurveyConfig(m_lim=25.0)).diff(fm)
['survey.m_lim: 25.0 != 26.5']

Redshifts are one number each (stored as floats: the default model's hash is that of earlier
versions) or the parent distributions of the sample (:mod:`sl_cy.redshifts`), which the mock
draws from and A(eta) integrates over:

>>> fz = ForwardModel(zl="uniform:0.2:0.6", zs="uniform:1:3", survey=SurveyConfig(nbkg_per_arcsec2=0.008))
>>> fz.fixed_redshifts, fz.to_dict()["zs"], fz.median_redshifts
(False, {'kind': 'uniform', 'lo': 1.0, 'hi': 3.0}, (0.4, 2.0))
"""
from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field, replace

from sl_cy.config import DEFAULT_C_HALO, DEFAULT_ZL, DEFAULT_ZS, SurveyConfig
from sl_cy.cosmology import Cosmology, get_cosmology
from sl_cy.io import config_hash
from sl_cy.population import GAMMA_HI, GAMMA_LO, model_params
from sl_cy.redshifts import RedshiftDistribution, as_distribution, as_redshift, redshift_from_json, redshift_to_json

__all__ = ["ForwardModel", "ForwardModelMismatch", "HALO_SUPPORT", "as_forward_model"]

#: Default halo-mass support (log10 M200 / Msun) of a galaxy-scale lens.
HALO_SUPPORT = (10.0, 17.0)


class ForwardModelMismatch(ValueError):
    """Two parts of an analysis (mock, grids, likelihood, A(eta)) were built from different
    forward models."""


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@dataclass(frozen=True)
class ForwardModel:
    """Population, survey, redshifts, halo and cosmology of one analysis (frozen, hashable).

    Parameters
    ----------
    model : {"deVauc", "SerExp", "Sersic"}
        Population model (:data:`sl_cy.population.MODEL_PARAMS`).
    survey : SurveyConfig
        Source density, magnitude limit, scatters (``sigma_m``, ``sigma_star``), source law and
        detection rule.
    zl, zs : float or RedshiftDistribution
        Lens and source redshift: one number for every lens (stored as a float, the default
        0.3 and 2.0), or the parent distributions p(zl), p(zs) of the sample
        (:mod:`sl_cy.redshifts`; a spec string such as ``"uniform:0.2:0.6"`` is parsed). Then
        the observed lenses carry their own zl, zs and A(eta) integrates over the distributions;
        a varying zl needs the source density per arcsec^2 (``SurveyConfig(nbkg_per_arcsec2=...)``).
    c_halo : float
        Halo concentration.
    cosmology : Cosmology, astropy cosmology or None
        Background cosmology (default flat LCDM, H0 = 70, Om = 0.3).
    halo_support : (float, float)
        log10 M200 range of galaxy-scale lenses (module notes).

    Attributes
    ----------
    hash : str
        sha256 of :meth:`to_dict` (canonical JSON).

    Examples
    --------
    >>> ForwardModel(model="SerExp").params["mu_h0"]
    12.83
    """

    model: str = "deVauc"
    _: KW_ONLY
    survey: SurveyConfig = field(default_factory=SurveyConfig)
    zl: float | RedshiftDistribution = DEFAULT_ZL
    zs: float | RedshiftDistribution = DEFAULT_ZS
    c_halo: float = DEFAULT_C_HALO
    cosmology: Cosmology = None
    halo_support: tuple = HALO_SUPPORT

    def __post_init__(self):
        model_params(self.model)                       # validates the name
        if not isinstance(self.survey, SurveyConfig):
            raise ValueError(f"survey must be a SurveyConfig, got {type(self.survey).__name__}")
        object.__setattr__(self, "cosmology", get_cosmology(self.cosmology))
        for name in ("zl", "zs"):
            try:
                object.__setattr__(self, name, as_redshift(getattr(self, name), f"ForwardModel.{name}"))
            except ValueError as err:
                raise ValueError(f"{err} (per-lens redshifts go in the catalogue's zl/zs columns; a distribution "
                                 "is a sl_cy.redshifts object or a spec such as 'uniform:0.2:0.6')") from None
        v = self.c_halo
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"ForwardModel.c_halo must be one number, got {v!r}") from None
        if not (math.isfinite(fv) and fv > 0):
            raise ValueError(f"ForwardModel.c_halo must be finite and > 0, got {v!r}")
        object.__setattr__(self, "c_halo", fv)
        zl_lo, zs_hi = self.zl_dist.support[0], self.zs_dist.support[1]
        if self.fixed_redshifts and not self.zs > self.zl:
            raise ValueError(f"the source redshift zs={self.zs} must exceed the lens redshift zl={self.zl}")
        if not zs_hi > zl_lo:
            raise ValueError(f"no source can lie behind a lens: p(zs) ends at {zs_hi:g}, at or below the start of "
                             f"p(zl) at {zl_lo:g}")
        if not self.zl_dist.is_fixed and not self.survey.per_arcsec2:
            raise ValueError("zl varies (a distribution): give the source density per arcsec^2 "
                             "(SurveyConfig(nbkg_per_arcsec2=...), --nbkg-arcsec2), converted per lens with its zl; "
                             "nbkg per kpc^2 holds at one fixed lens redshift only")
        lo, hi = (float(v) for v in self.halo_support)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"halo_support must be finite (lo, hi) with lo < hi, got {self.halo_support!r}")
        object.__setattr__(self, "halo_support", (lo, hi))

    # --- derived ------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """Fixed parameters of the population model."""
        return model_params(self.model)

    @property
    def sigma_star(self) -> float:
        return self.survey.sigma_star

    @property
    def nbkg_kpc2(self) -> float:
        """Source density per kpc^2 of the lens plane at the fixed ``zl`` (ValueError when zl is a
        distribution: use :meth:`nbkg_at`)."""
        if not self.zl_dist.is_fixed:
            raise ValueError("zl is a distribution: the source density per kpc^2 depends on each lens's zl "
                             "(ForwardModel.nbkg_at(zl))")
        return float(self.survey.nbkg_kpc2(self.zl, self.cosmology))

    def nbkg_at(self, zl):
        """Source density per kpc^2 of the lens plane at lens redshift(s) ``zl``."""
        return self.survey.nbkg_kpc2(zl, self.cosmology)

    @property
    def zl_dist(self) -> RedshiftDistribution:
        """p(zl) as a distribution (a :class:`sl_cy.redshifts.FixedRedshift` for a fixed zl)."""
        return as_distribution(self.zl)

    @property
    def zs_dist(self) -> RedshiftDistribution:
        """p(zs) as a distribution (a :class:`sl_cy.redshifts.FixedRedshift` for a fixed zs)."""
        return as_distribution(self.zs)

    @property
    def fixed_redshifts(self) -> bool:
        """True when both zl and zs are single numbers (the default)."""
        return not isinstance(self.zl, RedshiftDistribution) and not isinstance(self.zs, RedshiftDistribution)

    @property
    def median_redshifts(self) -> tuple:
        """(median of p(zl), median of p(zs)): the redshifts of a fixed-redshift approximation."""
        return float(self.zl_dist.median()), float(self.zs_dist.median())

    @property
    def gamma_support(self) -> tuple:
        return (GAMMA_LO, GAMMA_HI)

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON (written into every file that depends on the forward model)."""
        c = self.cosmology
        return dict(model=self.model, model_params=self.params, survey=self.survey.to_dict(),
                    zl=redshift_to_json(self.zl), zs=redshift_to_json(self.zs), c_halo=self.c_halo, cosmology=dict(H0=float(c.H0), Om=float(c.Om), Ode=float(c.Ode)),
                    halo_support=list(self.halo_support), gamma_support=list(self.gamma_support))

    @classmethod
    def from_dict(cls, d: dict) -> "ForwardModel":
        """Inverse of :meth:`to_dict` (``model_params`` and ``gamma_support`` are checked, not read)."""
        fm = cls(model=d["model"], survey=SurveyConfig.from_dict(d["survey"]), zl=redshift_from_json(d["zl"]),
                 zs=redshift_from_json(d["zs"]), c_halo=d["c_halo"], cosmology=Cosmology(**d["cosmology"]),
                 halo_support=tuple(d.get("halo_support", HALO_SUPPORT)))
        stored = d.get("model_params")
        if stored is not None and dict(stored) != fm.params:
            raise ForwardModelMismatch(f"the stored parameters of model {fm.model!r} differ from this sl_cy's: "
                                       f"{stored} != {fm.params}")
        return fm

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())

    def replace(self, **changes) -> "ForwardModel":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    # --- comparison ---------------------------------------------------------------------------
    def diff(self, other: "ForwardModel") -> list:
        """Human-readable list of the fields that differ (``[]`` when equal)."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

    def check_same(self, other: "ForwardModel", what: str = "this", other_what: str = "the other part") -> None:
        """Raise :class:`ForwardModelMismatch` naming the differing fields unless equal."""
        d = self.diff(other)
        if d:
            raise ForwardModelMismatch(f"{what} and {other_what} were built from different forward models: "
                                       + "; ".join(d))


def as_forward_model(fm=None, **overrides) -> ForwardModel:
    """Normalise ``fm`` (None, a ForwardModel or its dict) and apply keyword overrides that are
    not None.

    Examples
    --------
    >>> as_forward_model(None, zl=0.5).zl
    0.5
    """
    if fm is None:
        fm = ForwardModel()
    elif isinstance(fm, dict):
        fm = ForwardModel.from_dict(fm)
    elif not isinstance(fm, ForwardModel):
        raise TypeError(f"forward_model must be a ForwardModel or its dict, got {type(fm).__name__}")
    ov = {k: v for k, v in overrides.items() if v is not None}
    return fm.replace(**ov) if ov else fm
