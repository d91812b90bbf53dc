"""Mock lens generator: galaxies, background sources, detection, truth and observed tables.

For each galaxy of a population (:mod:`sl_cy.population`) the compiled core gives the radial
caustic y_c; background sources inside it are Poisson with mean pi y_c^2 n_bkg, placed
uniformly in area (beta = y_c sqrt(U)), with magnitudes from the source law of
:class:`sl_cy.config.SourceLaw`. Each source gives two images (x_A, x_B, mu_A, mu_B) with
observed magnitudes m_obs = m_s - 2.5 log10|mu| + N(0, sigma_m); a galaxy is a detected lens when
one of its sources is detected (``"observed"``: both reported magnitudes <= m_lim;
``"independent"``: a separate noise realisation decides, i.e. P_det = Phi((m_lim - m_s +
2.5 log10|mu|)/sigma_m) per image), and it keeps the *first* detected source in draw order.
Observed SPS masses scatter by ``SCATTER.star``.

Randomness and scale-out: the galaxies are cut into chunks of a fixed ``chunk_size``; chunk i
draws everything from ``SeedSequence(seed).spawn(n_chunks)[i]``, so one seed gives identical
tables for any ``n_jobs``, executor or cache setting. Chunks run through
:func:`sl_cy.parallel.iter_chunks` (serial, process pool or dask). With ``cache_dir`` /
``cache_every`` the results are flushed to atomically written HDF5 block files keyed by the
configuration hash; an interrupted run resumes from the completed blocks.

Redshifts: ``zl`` and ``zs`` may be numbers, redshift distributions (:mod:`sl_cy.redshifts`,
or their spec strings such as ``"uniform:0.2:0.6"``), arrays with one value per galaxy, or
callables ``f(rng, n) -> array`` called once per chunk with the chunk's Generator (top-level
functions when ``n_jobs > 1``). When zl is not a single number the background density must be
given per arcsec^2 (``nbkg_per_arcsec2``): each lens uses n_kpc2 = nbkg_per_arcsec2 *
(kpc_to_arcsec(1 kpc, zl))^2 (column ``nbkg_kpc2``).

* A distribution p(zl) gives each galaxy its zl ~ p(zl) (drawn after gamma_in).
* A distribution p(zs) gives each *source* its own zs ~ p(zs) (the Poisson process of
  :mod:`sl_cy.redshifts` with intensity n_bkg p(zs) phi(m_s); phi does not depend on zs). The
  radial caustic grows with zs (Sigma_cr falls; y_c = max_x (alpha(x) Sigma_cr,ref / Sigma_cr - x)
  increases with 1/Sigma_cr), so sources are drawn uniformly in the disc of radius y_c(zl, zs_hi)
  (zs_hi: upper end of p(zs)); each source gets its zs after its other draws, and counts only when
  zs > zl and it lies inside its own caustic y_c(zl, zs) (thinning: exact). Every kept lens has
  its own Sigma_cr, caustic and magnifications from its (zl, zs) pair. In the galaxy table the
  columns ``zs``, ``einstein_radius_kpc``, ``ycaustic_kpc`` then describe the kept source (NaN
  for a galaxy that is not a lens) and ``lens_status`` the caustic at zs_hi.
* Per-galaxy arrays or callables for zs (one zs for all sources of a galaxy) are kept for
  compatibility; their mocks have no single forward model.

A fixed redshift draws no random number, so fixed-redshift mocks are those of earlier versions.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from sl_cy._validate import as_float_array
from sl_cy._version import __version__
from sl_cy.forward import HALO_SUPPORT, ForwardModel, as_forward_model
from sl_cy.config import DEFAULT_C_HALO, DEFAULT_ZL, DEFAULT_ZS, SCATTER, SourceLaw, SurveyConfig
from sl_cy.cosmology import get_cosmology, kpc_to_arcsec
from sl_cy.io import (array_digest, atomic_h5, config_hash, git_commit, read_attrs, read_dataframe,
                      to_jsonable, write_attrs, write_dataframe, write_json_atomic)
from sl_cy.lensing import Status, forward_solve
from sl_cy.parallel import iter_chunks, resolve_n_jobs, show_progress_default
from sl_cy.population import ETA_NAMES, GAMMA_HI, GAMMA_LO, _check_n, as_eta, draw_population, model_params
from sl_cy.redshifts import RedshiftDistribution, as_redshift

#: Galaxies per chunk. Part of the random stream: changing it changes the mock of a given seed.
DEFAULT_CHUNK_SIZE = 25_000

SCHEMA = "sl_cy.mock/1"

#: Columns of the per-galaxy table (``df_lens``).
GALAXY_COLUMNS = [
    "galaxy_id", "logM_star_sps", "logM_star", "logRe", "logM_halo", "gamma_in", "c_halo", "zl", "zs",
    "logM_star_sps_observed", "einstein_radius_kpc", "ycaustic_kpc", "lens_status", "n_sources",
    "is_lensed", "source_rank", "m_s", "beta_unit",
]
#: Truth columns returned as ``samples``.
SAMPLE_COLUMNS = ["galaxy_id", "logM_star_sps", "logM_star", "logRe", "logM_halo", "gamma_in", "c_halo",
                  "zl", "zs", "m_s", "beta_unit"]
#: Columns of the detected-lens table (``mock_lens_data``).
LENS_COLUMNS = [
    "galaxy_id", "logM_star_sps", "logM_star", "logM_halo", "logRe", "gamma_in", "c_halo", "zl", "zs",
    "beta_unit", "beta_kpc", "m_s", "xA", "xB", "magnificationA", "magnificationB", "ycaustic_kpc",
    "einstein_radius_kpc", "xradcrit_kpc", "logM_star_sps_observed", "magnitude_observedA",
    "magnitude_observedB", "xA_arcsec", "xB_arcsec", "einstein_radius_arcsec", "nbkg_kpc2", "n_sources",
    "source_rank", "is_lensed",
]
#: Columns of the observed table (``mock_observed_data``), the input of the inference.
OBSERVED_COLUMNS = ["xA", "xB", "logM_star_sps_observed", "logRe", "magnitude_observedA",
                    "magnitude_observedB", "zl", "zs"]


# --------------------------------------------------------------------------------------------
# one chunk (top-level, picklable: runs in workers)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to simulate one chunk (picklable)."""

    index: int
    start: int
    n: int
    seed: np.random.SeedSequence
    model: str
    eta: Any
    survey: SurveyConfig
    zl: Any
    zs: Any
    c_halo: Any
    cosmo: Any
    halo_support: tuple = HALO_SUPPORT


def _empty_lenses() -> pd.DataFrame:
    df = pd.DataFrame({c: np.empty(0) for c in LENS_COLUMNS})
    return df.astype({"galaxy_id": np.int64, "n_sources": np.int32, "source_rank": np.int32, "is_lensed": bool})


def simulate_chunk(task: ChunkTask) -> dict:
    """Simulate one chunk of galaxies (the worker function of :func:`simulate_mock`).

    Draw order from the chunk's Generator (fixed, so a seed defines the mock): population
    (logM*_sps, logRe, logMh, gamma_in, zl, zs), observed-mass noise, Poisson source counts, then
    per source: beta_unit, m_s, reported-magnitude noise (2 images), detection noise (2 images).

    Returns
    -------
    dict
        ``galaxies`` (DataFrame, :data:`GALAXY_COLUMNS`), ``lenses`` (:data:`LENS_COLUMNS`),
        ``stats`` (counts).
    """
    rng = np.random.default_rng(task.seed)
    n = task.n
    survey = task.survey
    zs_dist = task.zs if isinstance(task.zs, RedshiftDistribution) else None
    # with p(zs): critical curves at its upper end zs_hi, whose caustic contains every source's
    pop = draw_population(n, task.model, eta=task.eta, rng=rng, zl=task.zl, zs=zs_dist.support[1] if zs_dist else task.zs,
                          c_halo=task.c_halo)
    ms, ms_star, re, mh, g, c, zl, zs = (pop[k] for k in ("logM_star_sps", "logM_star", "logRe", "logM_halo",
                                                            "gamma_in", "c_halo", "zl", "zs"))
    ms_obs = ms + survey.sigma_star * rng.standard_normal(n)

    # critical curves of every galaxy that can lens (zs > zl)
    theta_e = np.full(n, np.nan)
    x_rad = np.full(n, np.nan)
    y_c = np.full(n, np.nan)
    status = np.full(n, int(Status.BAD_INPUT), dtype=np.int8)
    can = zs > zl
    if can.any():
        sel = can if not can.all() else slice(None)
        crit = forward_solve(ms_star[sel], mh[sel], re[sel], gamma_in=g[sel], c_halo=c[sel], zl=zl[sel], zs=zs[sel],
                             cosmo=task.cosmo)
        theta_e[sel], x_rad[sel], y_c[sel], status[sel] = crit["theta_e"], crit["x_rad"], crit["y_caustic"], \
            crit["status"]
    # galaxies outside the halo support are not galaxy-scale lenses of the model (no sources
    # counted), exactly as the grids and A(eta) assume (sl_cy.forward)
    ok = (status == Status.OK) & (mh >= task.halo_support[0]) & (mh <= task.halo_support[1])
    nbkg = np.asarray(survey.nbkg_kpc2(zl, task.cosmo), dtype=float) * np.ones(n)
    lam = np.where(ok, math.pi * np.where(ok, y_c, 0.0) ** 2 * nbkg, 0.0)
    n_src = rng.poisson(lam).astype(np.int32)

    # sources, flattened in (galaxy, rank) order
    n_tot = int(n_src.sum())
    gal = np.repeat(np.arange(n), n_src)
    rank = (np.arange(n_tot) - np.repeat(np.cumsum(n_src) - n_src, n_src)).astype(np.int32)
    beta_unit = np.sqrt(rng.random(n_tot))
    m_s = survey.source.ppf(rng.random(n_tot)) if n_tot else np.empty(0)
    noise_rep = survey.sigma_m * rng.standard_normal((n_tot, 2))
    noise_det = survey.sigma_m * rng.standard_normal((n_tot, 2))
    src_zs, src_bu, inside = zs[gal], beta_unit, np.ones(n_tot, dtype=bool)
    src_te, src_xr, src_yc = theta_e[gal], x_rad[gal], y_c[gal]
    if zs_dist is not None and n_tot:
        src_zs = zs_dist.sample(n_tot, rng)                 # drawn last: the other draws keep their order
        src_te, src_xr, src_yc = np.full(n_tot, np.nan), np.full(n_tot, np.nan), np.full(n_tot, np.nan)
        behind = src_zs > zl[gal]
        if behind.any():
            gb = gal[behind]
            crit = forward_solve(ms_star[gb], mh[gb], re[gb], gamma_in=g[gb], c_halo=c[gb], zl=zl[gb], zs=src_zs[behind],
                                 cosmo=task.cosmo)
            okc = crit["status"] == Status.OK
            src_te[behind] = np.where(okc, crit["theta_e"], np.nan)
            src_xr[behind] = np.where(okc, crit["x_rad"], np.nan)
            src_yc[behind] = np.where(okc, crit["y_caustic"], np.nan)
        with np.errstate(invalid="ignore"):
            too_big = src_yc > y_c[gal] * (1.0 + 1e-9)
        if too_big.any():          # cannot happen: the caustic grows with zs (module notes)
            raise RuntimeError(f"{int(too_big.sum())} source(s) have a caustic larger than at the upper end of p(zs)")
        with np.errstate(invalid="ignore", divide="ignore"):
            src_bu = beta_unit * y_c[gal] / src_yc
            inside = np.isfinite(src_bu) & (src_bu < 1.0)
        src_bu = np.where(inside, src_bu, np.nan)

    n_fail = 0
    chosen = np.empty(0, dtype=np.intp)
    if n_tot:
        img = forward_solve(ms_star[gal], mh[gal], re[gal], gamma_in=g[gal], c_halo=c[gal], zl=zl[gal],
                            zs=np.where(inside, src_zs, zs[gal]), beta_unit=np.where(inside, src_bu, 0.5),
                            cosmo=task.cosmo)
        good = (img["status"] == Status.OK) & inside
        n_fail = int((~good & inside).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            dmA = -2.5 * np.log10(np.abs(img["mu_A"]))
            dmB = -2.5 * np.log10(np.abs(img["mu_B"]))
        mA = m_s + dmA + noise_rep[:, 0]
        mB = m_s + dmB + noise_rep[:, 1]
        if survey.detection == "observed":
            det = good & (mA <= survey.m_lim) & (mB <= survey.m_lim)
        else:
            det = good & (m_s + dmA + noise_det[:, 0] <= survey.m_lim) & (m_s + dmB + noise_det[:, 1] <= survey.m_lim)
        idx = np.flatnonzero(det)
        _, first = np.unique(gal[idx], return_index=True)   # gal is sorted: first = lowest rank
        chosen = idx[first]

    lensed_gal = gal[chosen]
    is_lensed = np.zeros(n, dtype=bool)
    is_lensed[lensed_gal] = True
    g_rank = np.full(n, -1, dtype=np.int32)
    g_ms = np.full(n, np.nan)
    g_bu = np.full(n, np.nan)
    g_rank[lensed_gal] = rank[chosen]
    g_ms[lensed_gal] = m_s[chosen]
    g_bu[lensed_gal] = src_bu[chosen]
    if zs_dist is not None:          # per-source redshifts: the galaxy row describes its kept source
        zs, theta_e, y_c = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        zs[lensed_gal], theta_e[lensed_gal], y_c[lensed_gal] = src_zs[chosen], src_te[chosen], src_yc[chosen]
        x_rad = np.full(n, np.nan)
        x_rad[lensed_gal] = src_xr[chosen]
    gid = task.start + np.arange(n, dtype=np.int64)

    galaxies = pd.DataFrame({
        "galaxy_id": gid, "logM_star_sps": ms, "logM_star": ms_star, "logRe": re, "logM_halo": mh,
        "gamma_in": g, "c_halo": c, "zl": zl, "zs": zs, "logM_star_sps_observed": ms_obs,
        "einstein_radius_kpc": theta_e, "ycaustic_kpc": y_c, "lens_status": status, "n_sources": n_src,
        "is_lensed": is_lensed, "source_rank": g_rank, "m_s": g_ms, "beta_unit": g_bu,
    }, columns=GALAXY_COLUMNS)

    if len(chosen):
        L = lensed_gal
        xA, xB = img["x_A"][chosen], img["x_B"][chosen]
        zl_L = zl[L]
        arcsec_per_kpc = np.asarray(kpc_to_arcsec(np.ones(len(L)), zl_L, cosmo=task.cosmo))
        lenses = pd.DataFrame({
            "galaxy_id": gid[L], "logM_star_sps": ms[L], "logM_star": ms_star[L], "logM_halo": mh[L],
            "logRe": re[L], "gamma_in": g[L], "c_halo": c[L], "zl": zl_L, "zs": zs[L],
            "beta_unit": src_bu[chosen], "beta_kpc": img["beta"][chosen], "m_s": m_s[chosen],
            "xA": xA, "xB": xB, "magnificationA": img["mu_A"][chosen], "magnificationB": img["mu_B"][chosen],
            "ycaustic_kpc": y_c[L], "einstein_radius_kpc": theta_e[L], "xradcrit_kpc": x_rad[L],
            "logM_star_sps_observed": ms_obs[L], "magnitude_observedA": mA[chosen],
            "magnitude_observedB": mB[chosen], "xA_arcsec": xA * arcsec_per_kpc, "xB_arcsec": xB * arcsec_per_kpc,
            "einstein_radius_arcsec": theta_e[L] * arcsec_per_kpc, "nbkg_kpc2": nbkg[L], "n_sources": n_src[L],
            "source_rank": rank[chosen], "is_lensed": np.ones(len(L), dtype=bool),
        }, columns=LENS_COLUMNS)
    else:
        lenses = _empty_lenses()
    stats = dict(n_galaxies=n, n_caustic=int(ok.sum()), n_sources=n_tot, n_image_failures=n_fail,
                 n_lenses=int(len(chosen)))
    return dict(index=task.index, galaxies=galaxies, lenses=lenses, stats=stats)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
def _code_parts(code) -> list:
    parts = [code.co_code.hex(), repr(code.co_names)]
    for c in code.co_consts:
        parts.extend(_code_parts(c) if hasattr(c, "co_code") else [repr(c)])
    return parts


def _callable_fingerprint(f) -> dict:
    """Name and a digest of the bytecode, constants, defaults and closure of a callable input.

    Two different lambdas (same name) get different keys; a callable without ``__code__`` (an
    object with ``__call__``) is keyed by its ``repr``, which is stable only if the object
    defines one (otherwise caches are simply never reused).
    """
    import hashlib

    func = getattr(f, "__func__", f)
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(f).__qualname__)}"
    code = getattr(func, "__code__", None)
    if code is None:
        return {"callable": name, "repr": repr(f)}
    parts = _code_parts(code) + [repr(getattr(func, "__defaults__", None)), repr(getattr(func, "__kwdefaults__", None))]
    if getattr(func, "__closure__", None):
        parts.append(repr([c.cell_contents for c in func.__closure__]))
    return {"callable": name, "code_sha256": hashlib.sha256("\x1f".join(parts).encode()).hexdigest()}


def _spec_for_config(name: str, spec, n: int):
    """JSON description of a number / per-galaxy array / callable input (for the cache key)."""
    if isinstance(spec, RedshiftDistribution):
        return spec.to_dict()
    if callable(spec):
        return _callable_fingerprint(spec)
    arr = as_float_array(name, spec, lo=0.0, lo_open=True)
    if arr.ndim == 0:
        return float(arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a number, a callable or an array of length n_samples={n}, "
                         f"got shape {arr.shape}")
    return {"array_sha256": array_digest(arr), "n": int(n), "min": float(arr.min()), "max": float(arr.max())}


def _chunk_slice(spec, start: int, stop: int):
    if callable(spec) or np.ndim(spec) == 0:
        return spec
    return np.asarray(spec, dtype=float)[start:stop]


def _check_seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, np.random.SeedSequence):
        if seed.spawn_key:
            raise ValueError("pass an integer seed or a root SeedSequence (without spawn_key)")
        return int(seed.entropy)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


@dataclass
class MockResult:
    """Outcome of :func:`simulate_mock`.

    Attributes
    ----------
    config : dict
        The full configuration (JSON-able; enough to re-run), incl. seed entropy and eta.
    config_hash : str
        sha256 of ``config`` (the cache key).
    galaxies : DataFrame or None
        One row per galaxy (:data:`GALAXY_COLUMNS`); None when not kept (large cached runs).
    lenses : DataFrame
        Detected lenses with truth and observables (:data:`LENS_COLUMNS`).
    observed : DataFrame
        The observed table (:data:`OBSERVED_COLUMNS`), rows aligned with ``lenses``.
    stats : dict
        Counts (galaxies, lenses, lens_fraction, sources, image failures), wall time, chunks
        computed / read from cache.
    """

    config: dict
    config_hash: str
    galaxies: pd.DataFrame | None
    lenses: pd.DataFrame
    observed: pd.DataFrame
    stats: dict = field(default_factory=dict)
    cache_path: Path | None = None
    _block_files: list = field(default_factory=list, repr=False)

    @property
    def samples(self) -> pd.DataFrame | None:
        """Per-galaxy truth (:data:`SAMPLE_COLUMNS`, incl. m_s and beta_unit of the kept source)."""
        return None if self.galaxies is None else self.galaxies[SAMPLE_COLUMNS]

    @property
    def forward_model(self) -> ForwardModel:
        """The forward model of the mock (ValueError when redshifts vary per galaxy)."""
        d = self.config.get("forward_model")
        if d is None:
            raise ValueError("this mock has per-galaxy redshifts or concentrations: no single forward model")
        return ForwardModel.from_dict(d)

    @property
    def n_galaxies(self) -> int:
        return int(self.stats["n_galaxies"])

    @property
    def n_lenses(self) -> int:
        return int(len(self.lenses))

    @property
    def lens_fraction(self) -> float:
        return self.n_lenses / self.n_galaxies if self.n_galaxies else float("nan")

    def iter_galaxy_blocks(self) -> Iterator[pd.DataFrame]:
        """The galaxy table block by block (from memory, or from the cache files)."""
        if self.galaxies is not None:
            yield self.galaxies
            return
        import h5py

        for p in self._block_files:
            with h5py.File(p, "r") as f:
                yield read_dataframe(f["galaxies"])

    def save(self, path, extra_attrs: dict | None = None) -> Path:
        """Write to one HDF5 file; see :func:`save_mock`."""
        return save_mock(path, self, extra_attrs)


# --------------------------------------------------------------------------------------------
# cache blocks
# --------------------------------------------------------------------------------------------
def _block_name(first: int, last: int) -> str:
    return f"chunks_{first:06d}_{last:06d}.h5"


def _valid_block(path: Path, chash: str, first: int, last: int) -> bool:
    import h5py

    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            good = (a.get("config_hash") == chash and int(a.get("first_chunk", -1)) == first
                    and int(a.get("last_chunk", -1)) == last and bool(a.get("complete", False))
                    and "galaxies" in f and "lenses" in f)
    except (OSError, KeyError, ValueError):
        good = False
    if not good:
        warnings.warn(f"ignoring cache file {path} (incomplete, unreadable or for another configuration); "
                      "recomputing it", stacklevel=3)
    return good


def _write_block(path: Path, chash: str, first: int, last: int, results: list[dict]) -> None:
    gal = pd.concat([r["galaxies"] for r in results], ignore_index=True)
    lens = pd.concat([r["lenses"] for r in results], ignore_index=True) if results else _empty_lenses()
    stats = [r["stats"] for r in results]
    with atomic_h5(path) as f:
        write_dataframe(f, "galaxies", gal, compression="gzip")
        write_dataframe(f, "lenses", lens, compression=None)
        write_attrs(f, dict(config_hash=chash, first_chunk=first, last_chunk=last, chunk_stats=stats,
                            schema=SCHEMA, complete=True))


def _read_block(path: Path, keep_galaxies: bool) -> tuple[pd.DataFrame | None, pd.DataFrame, list]:
    import h5py

    with h5py.File(path, "r") as f:
        lens = read_dataframe(f["lenses"])
        gal = read_dataframe(f["galaxies"]) if keep_galaxies else None
        stats = read_attrs(f)["chunk_stats"]
    return gal, lens, stats


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def _resolve(n_samples, maximum_magnitude, zl, zs, model, seed, nbkg, eta, detection, cache_every, chunk_size,
             nbkg_per_arcsec2, sigma_m, sigma_star, source_law, survey, c_halo, cosmo, forward_model=None) -> dict:
    """Validate the inputs of a mock and build its configuration (dict) and hash."""
    n = _check_n(n_samples, "n_samples")
    halo_support = HALO_SUPPORT
    if forward_model is not None:
        fm = as_forward_model(forward_model)
        if (survey is not None or model != "deVauc" or not (np.ndim(zl) == 0 and zl == DEFAULT_ZL)
                or not (np.ndim(zs) == 0 and zs == DEFAULT_ZS) or cosmo is not None
                or not (np.ndim(c_halo) == 0 and c_halo == DEFAULT_C_HALO)):
            raise ValueError("pass either forward_model=... or the individual model, survey, redshift, c_halo and "
                             "cosmology settings, not both")
        survey, zl, zs, model, c_halo, cosmo = fm.survey, fm.zl, fm.zs, fm.model, fm.c_halo, fm.cosmology
        halo_support = fm.halo_support
    model_params(model)                                      # validates the name
    zl, zs = (as_redshift(v, k) if isinstance(v, (str, dict, RedshiftDistribution)) else v
              for k, v in (("zl", zl), ("zs", zs)))
    e = as_eta(eta, model)
    if np.ndim(e.alpha_sps) != 0:
        raise ValueError("simulate_mock needs one eta, not a batch")
    if isinstance(chunk_size, (bool, np.bool_)) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = int(chunk_size)
    if survey is None:
        survey = SurveyConfig(nbkg=nbkg, nbkg_per_arcsec2=nbkg_per_arcsec2, m_lim=maximum_magnitude,
                              sigma_m=sigma_m, sigma_star=sigma_star, detection=detection,
                              source=source_law if source_law is not None else SourceLaw())
    else:
        if not isinstance(survey, SurveyConfig):
            raise ValueError(f"survey must be a SurveyConfig, got {type(survey).__name__}")
        if (maximum_magnitude != 26.5 or nbkg is not None or nbkg_per_arcsec2 is not None or detection != "observed"
                or sigma_m != SCATTER.mag or sigma_star != SCATTER.star or source_law is not None):
            raise ValueError("pass either survey=SurveyConfig(...) or the individual survey settings, not both")
    zl_single = not callable(zl) and np.ndim(zl) == 0
    if not zl_single and not survey.per_arcsec2:
        raise ValueError("zl varies per lens: give the source density per arcsec^2 (nbkg_per_arcsec2=...), "
                         "which is converted per lens; nbkg is per kpc^2 at one fixed lens redshift")
    if zl_single and np.ndim(zs) == 0 and not callable(zs):
        if not float(as_float_array("zs", zs)) > float(as_float_array("zl", zl)):
            raise ValueError(f"the source redshift zs={zs!r} must exceed the lens redshift zl={zl!r}")
    if isinstance(zs, RedshiftDistribution) and not (callable(zl) or np.ndim(zl)) \
            and not zs.support[1] > float(as_float_array("zl", zl)):
        raise ValueError(f"p(zs) ends at {zs.support[1]:g}, not behind the lens redshift zl={zl!r}")
    if cache_every is not None:
        if isinstance(cache_every, (bool, np.bool_)) or not isinstance(cache_every, (int, np.integer)) \
                or cache_every < 1:
            raise ValueError(f"cache_every must be a positive integer (galaxies), got {cache_every!r}")
    cosmo_ = get_cosmology(cosmo)
    entropy = _check_seed(seed)

    config = dict(
        schema=SCHEMA, package_version=__version__, n_samples=n, seed=entropy, chunk_size=chunk_size,
        model=model, model_params=model_params(model), eta=e.to_dict(), gamma_support=[GAMMA_LO, GAMMA_HI],
        survey=survey.to_dict(), zl=_spec_for_config("zl", zl, n), zs=_spec_for_config("zs", zs, n),
        c_halo=_spec_for_config("c_halo", c_halo, n),
        cosmology=dict(H0=cosmo_.H0, Om=cosmo_.Om, Ode=cosmo_.Ode), halo_support=list(halo_support),
    )
    one_model = all(isinstance(v, RedshiftDistribution) or (not callable(v) and np.ndim(v) == 0) for v in (zl, zs)) \
        and not callable(c_halo) and np.ndim(c_halo) == 0
    config["forward_model"] = ForwardModel(model, survey=survey, zl=zl if callable(zl) else float(zl),
                                           zs=zs if callable(zs) else float(zs), c_halo=float(c_halo),
                                           cosmology=cosmo_, halo_support=halo_support).to_dict() if one_model else None
    chash = config_hash(config)

    return dict(n=n, eta=e, survey=survey, cosmo=cosmo_, chunk_size=chunk_size, config=config, config_hash=chash,
                model=model, zl=zl, zs=zs, c_halo=c_halo, halo_support=halo_support)


def mock_config(n_samples, *, maximum_magnitude: float = 26.5, zl=DEFAULT_ZL, zs=DEFAULT_ZS, model: str = "deVauc",
                seed=None, nbkg=None, eta=None, detection: str = "observed", chunk_size: int = DEFAULT_CHUNK_SIZE, nbkg_per_arcsec2=None, sigma_m: float = SCATTER.mag, sigma_star: float = SCATTER.star,
                source_law: SourceLaw | None = None, survey: SurveyConfig | None = None, c_halo=DEFAULT_C_HALO,
                cosmo=None, forward_model=None) -> tuple[dict, str]:
    """The configuration dict and its sha256 hash that :func:`simulate_mock` would use (nothing is simulated).

    Same arguments as :func:`simulate_mock` (execution options excluded: they do not change the
    result). With ``seed=None`` fresh entropy is drawn, so pass a seed for a stable hash.

    Examples
    --------
    >>> mock_config(1000, seed=1)[1] == mock_config(1000, seed=1)[1]
    True
    """
    plan = _resolve(n_samples, maximum_magnitude, zl, zs, model, seed, nbkg, eta, detection, None, chunk_size,
                    nbkg_per_arcsec2, sigma_m, sigma_star, source_law, survey, c_halo, cosmo, forward_model)
    return plan["config"], plan["config_hash"]


def simulate_mock(n_samples, *, maximum_magnitude: float = 26.5, zl=DEFAULT_ZL, zs=DEFAULT_ZS, model: str = "deVauc",
                  seed=None, nbkg=None, eta=None, detection: str = "observed", n_jobs=1, cache_every=None,
                  cache_dir=None, show_progress=None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                  nbkg_per_arcsec2=None, sigma_m: float = SCATTER.mag, sigma_star: float = SCATTER.star,
                  source_law: SourceLaw | None = None, survey: SurveyConfig | None = None,
                  c_halo=DEFAULT_C_HALO, cosmo=None, executor=None, keep_galaxies: bool = True,
                  forward_model=None) -> MockResult:
    """Simulate a mock lens survey; the engine behind :func:`run_mock_simulation` and ``sl-cy simulate``.

    Parameters
    ----------
    n_samples : int
        Number of galaxies (>= 0).
    maximum_magnitude : float, default 26.5
        Limiting magnitude m_lim of both images.
    zl, zs : float, array of length n_samples, or callable ``f(rng, n) -> array``
        Lens and source redshifts (module notes). Galaxies with zs <= zl cannot lens.
    model : {"deVauc", "SerExp", "Sersic"}
        Population model (:data:`sl_cy.population.MODEL_PARAMS`).
    seed : int, optional
        Root seed; None draws fresh entropy (recorded in ``config["seed"]``).
    nbkg : float, optional
        Sources per kpc^2 of the lens plane (default 4e-4); only with a single zl.
    eta : Eta, dict or 6 numbers, optional
        Hyper-parameters; default :meth:`sl_cy.population.Eta.from_model`.
    detection : {"observed", "independent"}
        Detection rule (see :class:`sl_cy.config.SurveyConfig`).
    n_jobs : int, default 1
        Worker processes (-1: all cores). Results do not depend on it.
    cache_every : int, optional
        Flush results to an HDF5 block file every ``cache_every`` galaxies (rounded up to whole
        chunks). Without ``cache_dir`` a temporary directory is used (bounded memory, no resume).
    cache_dir : path, optional
        Directory of resumable cache files (``<cache_dir>/mock_<hash16>/chunks_*.h5``); one
        block per chunk unless ``cache_every`` says otherwise. Kept after the run.
    show_progress : bool, optional
        tqdm bar over chunks; default on when stderr is a terminal.
    chunk_size : int, default 25000
        Galaxies per chunk: part of the random stream (and of the cache key).
    nbkg_per_arcsec2 : float, optional
        Source density per arcsec^2 (converted per lens with its zl); required when zl varies.
    sigma_m, sigma_star : float
        Magnitude and SPS-mass scatter (default ``SCATTER.mag``, ``SCATTER.star``).
    source_law : SourceLaw, optional
        Source-magnitude law (default alpha_s = -1.3, m* = 24.5 on [20, 30]).
    survey : SurveyConfig, optional
        All of the survey settings at once (then leave maximum_magnitude, nbkg,
        nbkg_per_arcsec2, detection, sigma_m, sigma_star and source_law at their defaults).
    c_halo : float or array
        Halo concentration (default 5).
    cosmo : Cosmology or astropy cosmology, optional
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Run chunks there instead of a local pool.
    keep_galaxies : bool, default True
        Return the per-galaxy table (set False for huge cached runs: only lenses are loaded).
    forward_model : ForwardModel, optional
        Model, survey, redshifts, c_halo, cosmology and halo support at once (then leave those
        arguments at their defaults). Otherwise one is assembled from them; either way it is
        recorded in ``config["forward_model"]`` (None when redshifts vary per galaxy) and the
        grids, likelihood and A(eta) of the mock are built from it. Galaxies whose halo lies
        outside its ``halo_support`` are never lenses.

    Returns
    -------
    MockResult

    Raises
    ------
    ValueError
        for a negative or non-integer n_samples, unknown model, bad detection string, NaN or
        non-positive-sigma eta, inconsistent redshift/density inputs.

    Performance
    -----------
    About 4-5 microseconds per galaxy on one core (>= 200 000 galaxies/s), dominated by the
    compiled critical-curve solve; memory ~150 bytes per galaxy kept.

    Examples
    --------
    >>> r = simulate_mock(20_000, seed=1, show_progress=False)
    >>> r.n_galaxies, list(r.observed.columns) == OBSERVED_COLUMNS
    (20000, True)
    """
    t0 = time.perf_counter()
    plan = _resolve(n_samples, maximum_magnitude, zl, zs, model, seed, nbkg, eta, detection, cache_every, chunk_size,
                    nbkg_per_arcsec2, sigma_m, sigma_star, source_law, survey, c_halo, cosmo, forward_model)
    zl, zs, model, c_halo = plan["zl"], plan["zs"], plan["model"], plan["c_halo"]
    n, e, survey, cosmo_, chunk_size = plan["n"], plan["eta"], plan["survey"], plan["cosmo"], plan["chunk_size"]
    config, chash, entropy = plan["config"], plan["config_hash"], plan["config"]["seed"]
    if executor is None:
        resolve_n_jobs(n_jobs)                                   # validate before any work

    n_chunks = -(-n // chunk_size) if n else 0
    seeds = np.random.SeedSequence(entropy).spawn(n_chunks)
    tasks = [ChunkTask(i, i * chunk_size, min(chunk_size, n - i * chunk_size), seeds[i], model, e, survey,
                       _chunk_slice(zl, i * chunk_size, min(n, (i + 1) * chunk_size)),
                       _chunk_slice(zs, i * chunk_size, min(n, (i + 1) * chunk_size)),
                       _chunk_slice(c_halo, i * chunk_size, min(n, (i + 1) * chunk_size)), cosmo_,
                       plan["halo_support"])
             for i in range(n_chunks)]
    progress = show_progress_default(show_progress, n_chunks)

    use_cache = cache_dir is not None or cache_every is not None
    tmp_root = None
    cache_path = None
    block_files: list[Path] = []
    n_from_cache = 0
    try:
        if not use_cache:
            results: list = [None] * n_chunks
            for i, r in iter_chunks(simulate_chunk, tasks, n_jobs=n_jobs, executor=executor, progress=progress,
                                    desc="mock chunks"):
                if not keep_galaxies:
                    r["galaxies"] = None          # only the (few) lenses are kept
                results[i] = r
            galaxies = None
            if keep_galaxies:
                galaxies = pd.concat([r["galaxies"] for r in results], ignore_index=True) if results \
                    else pd.DataFrame({c: [] for c in GALAXY_COLUMNS})
            lens_parts = [r["lenses"] for r in results]
            chunk_stats = [r["stats"] for r in results]
        else:
            if cache_dir is None:
                tmp_root = Path(tempfile.mkdtemp(prefix="sl_cy_mock_"))
                base = tmp_root
            else:
                base = Path(cache_dir)
            cache_path = base / f"mock_{chash[:16]}"
            cache_path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cache_path / "config.json", dict(config=config, config_hash=chash))
            per_block = max(1, -(-int(cache_every) // chunk_size)) if cache_every else 1
            blocks = [(b, min(b + per_block, n_chunks) - 1) for b in range(0, n_chunks, per_block)]
            block_files = [cache_path / _block_name(a, b) for a, b in blocks]
            todo_blocks = {k for k, (a, b) in enumerate(blocks) if not _valid_block(block_files[k], chash, a, b)}
            n_from_cache = sum(blocks[k][1] - blocks[k][0] + 1 for k in range(len(blocks)) if k not in todo_blocks)
            chunk_block = {c: k for k, (a, b) in enumerate(blocks) for c in range(a, b + 1)}
            todo_tasks = [t for t in tasks if chunk_block[t.index] in todo_blocks]
            pending: dict[int, dict[int, dict]] = {}
            for _, r in iter_chunks(simulate_chunk, todo_tasks, n_jobs=n_jobs, executor=executor,
                                    progress=progress, desc="mock chunks"):
                k = chunk_block[r["index"]]
                a, b = blocks[k]
                pending.setdefault(k, {})[r["index"]] = r
                if len(pending[k]) == b - a + 1:
                    _write_block(block_files[k], chash, a, b, [pending[k][c] for c in range(a, b + 1)])
                    del pending[k]
            gal_parts, lens_parts, chunk_stats = [], [], []
            for p in block_files:
                gal, lens, st = _read_block(p, keep_galaxies)
                if keep_galaxies:
                    gal_parts.append(gal)
                lens_parts.append(lens)
                chunk_stats.extend(st)
            galaxies = None
            if keep_galaxies:
                galaxies = pd.concat(gal_parts, ignore_index=True) if gal_parts \
                    else pd.DataFrame({c: [] for c in GALAXY_COLUMNS})
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    if tmp_root is not None:
        cache_path, block_files = None, []

    lenses = pd.concat(lens_parts, ignore_index=True) if lens_parts else _empty_lenses()
    observed = lenses[OBSERVED_COLUMNS].reset_index(drop=True)
    tot = {k: int(sum(s[k] for s in chunk_stats)) for k in ("n_galaxies", "n_caustic", "n_sources",
                                                            "n_image_failures", "n_lenses")}
    stats = dict(tot, lens_fraction=tot["n_lenses"] / n if n else float("nan"), n_chunks=n_chunks,
                 chunks_from_cache=n_from_cache, chunks_computed=n_chunks - n_from_cache,
                 wall_time_s=time.perf_counter() - t0)
    if tot["n_image_failures"]:
        warnings.warn(f"{tot['n_image_failures']} source(s) had no two-image solution and were treated as "
                      "undetected", stacklevel=2)
    return MockResult(config, chash, galaxies, lenses, observed, stats, cache_path, block_files)


def run_mock_simulation(n_samples, *, maximum_magnitude: float = 26.5, zl=DEFAULT_ZL, zs=DEFAULT_ZS,
                        model: str = "deVauc", seed=None, nbkg=None, eta=None, detection: str = "observed", n_jobs=1,
                        cache_every=None, cache_dir=None, if_source: bool = False, show_progress=None,
                        chunk_size: int = DEFAULT_CHUNK_SIZE, **kwargs):
    """Simulate a mock lens sample (the original package's entry point).

    Parameters
    ----------
    n_samples, maximum_magnitude, zl, zs, model, seed, nbkg, eta, detection, n_jobs, cache_every, cache_dir,
    show_progress, chunk_size
        As in :func:`simulate_mock` (``nbkg`` default 4e-4 per kpc^2).
    if_source : bool, default False
        Also return the per-galaxy table and the truth samples.
    **kwargs
        Further keywords of :func:`simulate_mock` (``nbkg_per_arcsec2``, ``survey``, ``c_halo``,
        ``cosmo``, ``executor``, ...).

    Returns
    -------
    (mock_lens_data, mock_observed_data)
        if ``if_source`` is False: the detected lenses (truth + observables,
        :data:`LENS_COLUMNS`) and the observed table (:data:`OBSERVED_COLUMNS`).
    (df_lens, mock_lens_data, mock_observed_data, samples)
        if ``if_source`` is True; ``df_lens`` has one row per galaxy with ``is_lensed``
        (:data:`GALAXY_COLUMNS`), ``samples`` the per-galaxy truth incl. ``m_s`` and
        ``beta_unit`` of the kept source (NaN for galaxies that are not lenses).

    Performance
    -----------
    >= 200 000 galaxies/s on one core (``benchmarks/bench_mock.py``).

    Precision
    ---------
    Image positions satisfy the lens equation of the true lens to < 1e-10 kpc.

    Examples
    --------
    >>> lenses, observed = run_mock_simulation(20_000, seed=3, show_progress=False)
    >>> bool((observed.xA > 0).all() and (observed.xB < 0).all())
    True
    """
    res = simulate_mock(n_samples, maximum_magnitude=maximum_magnitude, zl=zl, zs=zs, model=model, seed=seed,
                        nbkg=nbkg, eta=eta, detection=detection, n_jobs=n_jobs, cache_every=cache_every,
                        cache_dir=cache_dir, show_progress=show_progress, chunk_size=chunk_size,
                        keep_galaxies=bool(if_source), **kwargs)
    if if_source:
        return res.galaxies, res.lenses, res.observed, res.samples
    return res.lenses, res.observed


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def save_mock(path, result: MockResult, extra_attrs: dict | None = None) -> Path:
    """Write a mock to one HDF5 file, atomically.

    Layout: groups ``galaxies`` (per-galaxy truth, written block by block), ``lenses`` (detected
    lenses with truth) and ``observed`` (the inference input), each one dataset per column;
    root attributes ``config`` (JSON: everything needed to re-run, incl. seed and eta),
    ``config_hash``, ``package_version``, ``eta`` / ``eta_names``, ``detection``, ``stats``,
    ``created_utc``, ``git_commit`` and ``extra_attrs`` (e.g. ``sim_id``). No pickle.
    """
    import datetime

    from sl_cy.io import append_dataframe

    path = Path(path)
    eta = result.config["eta"]
    with atomic_h5(path) as f:
        n_written = 0
        for block in result.iter_galaxy_blocks():
            append_dataframe(f, "galaxies", block)
            n_written += len(block)
        if "galaxies" not in f:
            write_dataframe(f, "galaxies", pd.DataFrame({c: np.empty(0) for c in GALAXY_COLUMNS}))
        write_dataframe(f, "lenses", result.lenses, compression=None)
        write_dataframe(f, "observed", result.observed, compression=None)
        f["galaxies"].attrs["description"] = "one row per galaxy: population truth, caustic, sources, is_lensed"
        f["lenses"].attrs["description"] = "detected lenses: truth, images, magnifications and observables"
        f["observed"].attrs["description"] = "observed table of the detected lenses (inference input)"
        write_attrs(f, dict(
            schema=SCHEMA, config=result.config, config_hash=result.config_hash, package_version=__version__,
            eta=np.array([eta[k] for k in ETA_NAMES], dtype=float), eta_names=", ".join(ETA_NAMES),
            detection=result.config["survey"]["detection"], seed=result.config["seed"],
            stats=to_jsonable(result.stats), created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(),
            git_commit=git_commit() or "", n_galaxies_written=n_written, **(extra_attrs or {})))
    return path


def load_mock(path) -> MockResult:
    """Read a file written by :func:`save_mock` back into a :class:`MockResult`."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        if attrs.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not an sl_cy mock file (schema {attrs.get('schema')!r})")
        res = MockResult(attrs["config"], attrs["config_hash"], read_dataframe(f["galaxies"]),
                         read_dataframe(f["lenses"]), read_dataframe(f["observed"]), attrs.get("stats", {}))
    return res
