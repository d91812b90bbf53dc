"""Lens and source redshift distributions p(zl), p(zs) of the forward model (DESIGN section 3).

**Statistics.** Lens galaxies are drawn with zl ~ p(zl); their properties g = (logM*, logRe,
logMh, gamma_in) do not depend on zl (none of the population models says they do). Background
sources form a Poisson process in (beta, m_s, zs) with intensity

    n_bkg * p(zs) * phi(m_s)

per unit source-plane area (n_bkg per arcsec^2 when zl varies, converted per lens to kpc^2 of
its lens plane with its zl). The magnitude law phi(m_s) (:class:`sl_cy.config.SourceLaw`) does
**not** depend on zs: :class:`sl_cy.config.SurveyConfig` defines one law for all source
redshifts. Only sources behind the lens (zs > zl) can be lensed.

For a galaxy at zl with properties g the expected number of detectable multiply-imaged sources
is the zs-mixed rate

    T(g, zl) = ∫ dzs p(zs) [zs > zl] T(g; zl, zs),

with T(g; zl, zs) the fixed-redshift rate (:class:`sl_cy.selection.SelectionQuadrature`). The
galaxy is a catalogued lens with probability 1 - exp(-T(g, zl)), so

    A(eta) = ∫ dzl p(zl) E_g[1 - exp(-T(g, zl))]

(1 - exp of the zs-mixed rate, not the zs-mix of 1 - exp). The likelihood of an observed lens i
(source at zs_i) is the source intensity at its observed (beta, m, zs_i) -- its grid tabulated at
its own (zl_i, zs_i) -- times (1 - exp(-T)) / T with T the zs-mixed rate at its zl_i; p(zs_i) and
p(zl_i) do not depend on eta and drop out. With fixed redshifts every formula reduces to the
fixed-redshift one.

**Distributions** (all with a bounded support, which the mock and the quadrature use):
:class:`FixedRedshift`, :class:`UniformRedshift`, :class:`NormalRedshift` (truncated normal) and
:class:`HistogramRedshift` (piecewise-constant density, e.g. from a CSV file). The pdf, cdf and
ppf are those of :mod:`scipy.stats` (``uniform``, ``truncnorm``, ``rv_histogram``); samples are
drawn by inverse CDF; :meth:`RedshiftDistribution.nodes` gives an n-point quadrature rule
(Gauss-Legendre in the quantile u = cdf(z), so ``sum(w * f(z)) -> ∫ f p dz`` for any p).
:func:`parse_redshift` reads the command-line forms ``0.3``, ``uniform:0.2:0.6``,
``normal:0.5:0.1`` (``normal:mu:sigma:lo:hi``) and a CSV path.

Examples
--------
>>> d = parse_redshift("uniform:0.2:0.6")
>>> d.support, round(float(d.mean()), 10)
((0.2, 0.6), 0.4)
>>> z, w = d.nodes(3)
>>> round(float(w @ z), 12)
0.4
>>> as_redshift("0.3")
0.3
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

__all__ = ["RedshiftDistribution", "FixedRedshift", "UniformRedshift", "NormalRedshift", "HistogramRedshift",
           "parse_redshift", "as_redshift", "as_distribution", "redshift_to_json", "redshift_from_json"]

#: Default truncation of :class:`NormalRedshift`: mu +- this many sigma (the mass beyond is < 1e-23).
NORMAL_TRUNCATION = 10.0
#: Lowest redshift a distribution may reach (the lens plane must lie at a positive distance).
Z_MIN = 1e-3


def _num(name, v, *, positive=False):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f) or (positive and f <= 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {v!r}")
    return f


class RedshiftDistribution:
    """Base class: a redshift distribution with bounded support (see the module notes).

    Subclasses define ``support`` and ``_frozen`` (a frozen :mod:`scipy.stats` distribution) and
    ``to_dict``; the rest is shared.
    """

    kind = "?"

    @property
    def is_fixed(self) -> bool:
        return False

    @property
    def support(self) -> tuple:
        raise NotImplementedError

    def pdf(self, z):
        """Probability density (0 outside the support)."""
        return self._frozen.pdf(np.asarray(z, dtype=float))

    def cdf(self, z):
        return self._frozen.cdf(np.asarray(z, dtype=float))

    def ppf(self, u):
        """Inverse CDF on u in [0, 1]."""
        u = np.asarray(u, dtype=float)
        if np.any(~np.isfinite(u)) or np.any((u < 0) | (u > 1)):
            raise ValueError("ppf needs u in [0, 1]")
        lo, hi = self.support
        return np.clip(self._frozen.ppf(u), lo, hi)

    def mean(self) -> float:
        return float(self._frozen.mean())

    def median(self) -> float:
        return float(self.ppf(0.5))

    def sample(self, n: int, rng=None) -> np.ndarray:
        """``n`` redshifts by inverse CDF: ``ppf(rng.random(n))`` (one uniform per value).

        Examples
        --------
        >>> UniformRedshift(1.0, 3.0).sample(2, rng=1).shape
        (2,)
        """
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return self.ppf(np.random.default_rng(rng).random(int(n)))

    def nodes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n-point quadrature rule (z_k, w_k) with sum_k w_k f(z_k) ≈ ∫ f(z) p(z) dz: Gauss-Legendre
        in the quantile u (z_k = ppf(u_k), weights summing to 1), exact for f polynomial in u of
        degree 2n - 1."""
        n = int(n)
        if n < 1:
            raise ValueError(f"the number of redshift nodes must be >= 1, got {n}")
        t, w = np.polynomial.legendre.leggauss(n)
        return self.ppf(0.5 * (t + 1.0)), 0.5 * w

    def __call__(self, rng, n):
        """``dist(rng, n)``: the callable form of :func:`sl_cy.population.resolve_redshift`."""
        return self.ppf(rng.random(int(n)))

    def to_dict(self) -> dict:
        raise NotImplementedError

    def __str__(self):
        return self.spec


@dataclass(frozen=True)
class FixedRedshift(RedshiftDistribution):
    """One redshift (a delta distribution). The forward model stores it as the plain number."""

    z: float
    kind = "fixed"

    def __post_init__(self):
        object.__setattr__(self, "z", _num("z", self.z, positive=True))

    @property
    def is_fixed(self) -> bool:
        return True

    @property
    def support(self):
        return (self.z, self.z)

    def pdf(self, z):
        raise ValueError("a fixed redshift has no density")

    def cdf(self, z):
        return np.where(np.asarray(z, dtype=float) >= self.z, 1.0, 0.0)

    def ppf(self, u):
        return np.full(np.shape(u), self.z)

    def mean(self):
        return self.z

    def sample(self, n, rng=None):
        """``n`` copies of z (no random number is drawn, so a fixed redshift leaves a random stream
        untouched)."""
        return np.full(int(n), self.z)

    def nodes(self, n=1):
        return np.array([self.z]), np.array([1.0])

    def __call__(self, rng, n):
        return np.full(int(n), self.z)

    @property
    def spec(self):
        return repr(self.z)

    def to_dict(self):
        return self.z


@dataclass(frozen=True)
class UniformRedshift(RedshiftDistribution):
    """Uniform on [lo, hi] (``uniform:lo:hi``)."""

    lo: float
    hi: float
    kind = "uniform"

    def __post_init__(self):
        lo, hi = _num("lo", self.lo), _num("hi", self.hi)
        if not (lo >= Z_MIN and hi > lo):
            raise ValueError(f"uniform redshift needs {Z_MIN:g} <= lo < hi, got [{self.lo!r}, {self.hi!r}]")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def support(self):
        return (self.lo, self.hi)

    @cached_property
    def _frozen(self):
        from scipy import stats

        return stats.uniform(loc=self.lo, scale=self.hi - self.lo)

    @property
    def spec(self):
        return f"uniform:{self.lo!r}:{self.hi!r}"

    def to_dict(self):
        return dict(kind=self.kind, lo=self.lo, hi=self.hi)


@dataclass(frozen=True)
class NormalRedshift(RedshiftDistribution):
    """Normal N(mu, sigma) truncated to [lo, hi] (``normal:mu:sigma`` or ``normal:mu:sigma:lo:hi``);
    by default lo = max(mu - 10 sigma, 1e-3), hi = mu + 10 sigma."""

    mu: float
    sigma: float
    lo: float | None = None
    hi: float | None = None
    kind = "normal"

    def __post_init__(self):
        mu, sg = _num("mu", self.mu), _num("sigma", self.sigma, positive=True)
        lo = max(mu - NORMAL_TRUNCATION * sg, Z_MIN) if self.lo is None else _num("lo", self.lo)
        hi = mu + NORMAL_TRUNCATION * sg if self.hi is None else _num("hi", self.hi)
        if not (lo >= Z_MIN and hi > lo):
            raise ValueError(f"normal redshift: need {Z_MIN:g} <= lo < hi, got lo={lo!r}, hi={hi!r} "
                             f"(mu={mu!r}, sigma={sg!r})")
        if not (self._cdf_mass(mu, sg, lo, hi) > 1e-12):
            raise ValueError(f"normal redshift N({mu!r}, {sg!r}) has no mass on [{lo!r}, {hi!r}]")
        for k, v in (("mu", mu), ("sigma", sg), ("lo", lo), ("hi", hi)):
            object.__setattr__(self, k, v)

    @staticmethod
    def _cdf_mass(mu, sg, lo, hi):
        from scipy.special import ndtr

        return float(ndtr((hi - mu) / sg) - ndtr((lo - mu) / sg))

    @property
    def support(self):
        return (self.lo, self.hi)

    @cached_property
    def _frozen(self):
        from scipy import stats

        return stats.truncnorm((self.lo - self.mu) / self.sigma, (self.hi - self.mu) / self.sigma, loc=self.mu,
                               scale=self.sigma)

    @property
    def spec(self):
        return f"normal:{self.mu!r}:{self.sigma!r}:{self.lo!r}:{self.hi!r}"

    def to_dict(self):
        return dict(kind=self.kind, mu=self.mu, sigma=self.sigma, lo=self.lo, hi=self.hi)


@dataclass(frozen=True, eq=False)
class HistogramRedshift(RedshiftDistribution):
    """Piecewise-constant density on contiguous bins ``edges`` (n + 1 increasing values) with
    relative ``weights`` (n values >= 0, e.g. counts); read from a CSV by :meth:`from_csv`."""

    edges: tuple
    weights: tuple
    source: str = field(default="", compare=False)
    kind = "histogram"

    def __post_init__(self):
        e = np.asarray(self.edges, dtype=float).ravel()
        w = np.asarray(self.weights, dtype=float).ravel()
        if len(e) < 2 or len(w) != len(e) - 1:
            raise ValueError(f"histogram redshift needs n + 1 edges for n weights, got {len(e)} edges and {len(w)} "
                             "weights")
        if not (np.all(np.isfinite(e)) and np.all(np.diff(e) > 0) and e[0] >= Z_MIN):
            raise ValueError(f"histogram redshift edges must be finite, strictly increasing and >= {Z_MIN:g}, got "
                             f"{e.tolist()}")
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
            raise ValueError(f"histogram redshift weights must be finite, >= 0 and not all 0, got {w.tolist()}")
        object.__setattr__(self, "edges", tuple(float(v) for v in e))
        object.__setattr__(self, "weights", tuple(float(v) for v in w))

    def __eq__(self, other):
        return isinstance(other, HistogramRedshift) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((self.edges, self.weights))

    @property
    def support(self):
        # the occupied range: strip empty bins at both ends
        w = np.asarray(self.weights)
        nz = np.flatnonzero(w > 0)
        return (self.edges[nz[0]], self.edges[nz[-1] + 1])

    @cached_property
    def _frozen(self):
        from scipy import stats

        return stats.rv_histogram((np.asarray(self.weights), np.asarray(self.edges)), density=False)

    @classmethod
    def from_csv(cls, path) -> "HistogramRedshift":
        """Read a histogram from a CSV file with a header: columns ``z_lo, z_hi, weight``
        (contiguous bins) or ``z, weight`` (bin centres; edges half-way between them).

        Examples
        --------
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "nz.csv")
        >>> _ = open(p, "w").write("z_lo,z_hi,weight\\n1.0,2.0,3\\n2.0,3.0,1\\n")
        >>> HistogramRedshift.from_csv(p).support
        (1.0, 3.0)
        """
        import pandas as pd

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"redshift histogram file {p} does not exist")
        df = pd.read_csv(p, comment="#", sep=None, engine="python")
        df.columns = [str(c).strip() for c in df.columns]
        for c in df.columns:
            v = pd.to_numeric(df[c], errors="coerce")
            if v.isna().any():
                i = int(np.argmax(v.isna().to_numpy()))
                raise ValueError(f"{p}: column {c!r} has a non-numeric value {df[c].iloc[i]!r} in data row {i + 1}")
            df[c] = v.astype(float)
        if {"z_lo", "z_hi", "weight"} <= set(df.columns):
            lo, hi = df["z_lo"].to_numpy(), df["z_hi"].to_numpy()
            gap = np.flatnonzero(np.abs(lo[1:] - hi[:-1]) > 1e-12 * np.maximum(1.0, hi[:-1]))
            if gap.size:
                raise ValueError(f"{p}: bins must be contiguous: z_hi={hi[gap[0]]!r} in data row {gap[0] + 1} but "
                                 f"z_lo={lo[gap[0] + 1]!r} in row {gap[0] + 2}")
            edges = np.append(lo, hi[-1])
        elif {"z", "weight"} <= set(df.columns):
            z = df["z"].to_numpy()
            if len(z) < 2 or np.any(np.diff(z) <= 0):
                raise ValueError(f"{p}: column 'z' (bin centres) must hold >= 2 strictly increasing values")
            mid = 0.5 * (z[1:] + z[:-1])
            edges = np.concatenate([[z[0] - (mid[0] - z[0])], mid, [z[-1] + (z[-1] - mid[-1])]])
        else:
            raise ValueError(f"{p}: a redshift histogram needs columns z_lo, z_hi, weight (bins) or z, weight "
                             f"(bin centres); it has {list(df.columns)}")
        return cls(tuple(edges), tuple(df["weight"].to_numpy()), source=str(p))

    @property
    def spec(self):
        return self.source or f"histogram({len(self.weights)} bins on [{self.edges[0]:g}, {self.edges[-1]:g}])"

    def to_dict(self):
        return dict(kind=self.kind, edges=list(self.edges), weights=list(self.weights))


_KINDS = {"uniform": UniformRedshift, "normal": NormalRedshift, "histogram": HistogramRedshift}


def redshift_from_json(d):
    """Inverse of ``to_dict`` (a number is a fixed redshift and stays a float)."""
    if isinstance(d, dict):
        d = dict(d)
        kind = d.pop("kind", None)
        if kind not in _KINDS:
            raise ValueError(f"unknown redshift distribution kind {kind!r}; kinds: {sorted(_KINDS)}")
        if kind == "histogram":
            return HistogramRedshift(tuple(d["edges"]), tuple(d["weights"]))
        return _KINDS[kind](**d)
    return _num("redshift", d, positive=True)


def redshift_to_json(z):
    """A float for a fixed redshift, the distribution's dict otherwise."""
    return z.to_dict() if isinstance(z, RedshiftDistribution) else float(z)


def parse_redshift(spec: str, name: str = "redshift"):
    """Parse a command-line redshift: a number (fixed), ``uniform:lo:hi``, ``normal:mu:sigma``,
    ``normal:mu:sigma:lo:hi`` or the path of a CSV histogram (:meth:`HistogramRedshift.from_csv`).

    Returns
    -------
    float or RedshiftDistribution

    Examples
    --------
    >>> parse_redshift("normal:0.5:0.1").support
    (0.001, 1.5)
    >>> parse_redshift("uniform:0.6:0.2", "zl")
    Traceback (most recent call last):
    ...
    ValueError: zl: uniform redshift needs 0.001 <= lo < hi, got [0.6, 0.2]
    """
    if isinstance(spec, (RedshiftDistribution, int, float, dict)):
        return as_redshift(spec, name)
    s = str(spec).strip()
    try:
        return _num(name, s, positive=True)
    except ValueError:
        pass
    head, _, rest = s.partition(":")
    try:
        if head in ("uniform", "normal", "fixed"):
            vals = [_num(f"{name} ({head})", v) for v in rest.split(":")] if rest else []
            if head == "fixed" and len(vals) == 1:
                return _num(name, vals[0], positive=True)
            if head == "uniform" and len(vals) == 2:
                return UniformRedshift(*vals)
            if head == "normal" and len(vals) in (2, 4):
                return NormalRedshift(*vals)
            raise ValueError(f"bad {head} redshift spec {s!r}: use uniform:lo:hi, normal:mu:sigma, "
                             "normal:mu:sigma:lo:hi or fixed:z")
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(f"{name}") else f"{name}: {msg}") from None
    p = Path(s)
    if p.suffix.lower() in (".csv", ".txt", ".dat") or p.exists():
        return HistogramRedshift.from_csv(p)
    raise ValueError(f"{name}: cannot read redshift spec {s!r}: give a number, uniform:lo:hi, normal:mu:sigma "
                     "or a CSV histogram file")


def as_redshift(value, name: str = "redshift"):
    """Normalise a redshift input: a number or :class:`FixedRedshift` -> float; a distribution
    stays; a dict (``to_dict``) or a spec string is parsed."""
    if isinstance(value, FixedRedshift):
        return value.z
    if isinstance(value, RedshiftDistribution):
        return value
    if isinstance(value, dict):
        return redshift_from_json(value)
    if isinstance(value, str):
        return parse_redshift(value, name)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a redshift distribution, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def as_distribution(value, name: str = "redshift") -> RedshiftDistribution:
    """Like :func:`as_redshift` but a number becomes a :class:`FixedRedshift`."""
    v = as_redshift(value, name)
    return FixedRedshift(v) if not isinstance(v, RedshiftDistribution) else v
