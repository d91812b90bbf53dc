"""Mock generator: physics of the mock through the core, noise laws, determinism, cache/resume, CLI."""
import json
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sl_cy
from sl_cy import LensModel
from sl_cy.lensing import Status
from sl_cy.config import SourceLaw, SurveyConfig
from sl_cy.cosmology import kpc_to_arcsec
from sl_cy.mock import (GALAXY_COLUMNS, LENS_COLUMNS, OBSERVED_COLUMNS, SAMPLE_COLUMNS, load_mock, mock_config,
                        run_mock_simulation, simulate_mock)
from sl_cy.population import DEFAULT_ETA

QUIET = dict(show_progress=False)
#: Broad sanity band for the detected-lens fraction at the default eta and survey (measured 0.36-0.45 %).
LENS_FRACTION_BAND = (0.0025, 0.0065)


@pytest.fixture(scope="module")
def default_mock():
    return simulate_mock(100_000, seed=11, **QUIET)


@pytest.fixture(scope="module")
def independent_mock():
    # a denser source field gives more lenses for the noise tests
    return simulate_mock(60_000, seed=12, detection="independent", nbkg=2e-3, **QUIET)


def _models(lenses):
    for r in lenses.itertuples():
        yield r, LensModel(r.logM_star, r.logM_halo, r.logRe, zl=r.zl, zs=r.zs, gamma_in=r.gamma_in, c_halo=r.c_halo)


# --- tables ------------------------------------------------------------------------------------
def test_tables_columns_and_consistency(default_mock):
    r = default_mock
    gal, lens, obs = r.galaxies, r.lenses, r.observed
    assert list(gal.columns) == GALAXY_COLUMNS and list(lens.columns) == LENS_COLUMNS
    assert list(obs.columns) == OBSERVED_COLUMNS and list(r.samples.columns) == SAMPLE_COLUMNS
    assert len(gal) == 100_000 and (gal.galaxy_id.to_numpy() == np.arange(100_000)).all()
    assert gal.is_lensed.sum() == len(lens) == len(obs) == r.stats["n_lenses"]
    assert r.stats["n_sources"] == gal.n_sources.sum()
    assert lens.is_lensed.all() and (lens.xA > 0).all() and (lens.xB < 0).all()
    assert ((lens.beta_unit >= 0) & (lens.beta_unit < 1)).all()
    assert ((lens.source_rank >= 0) & (lens.source_rank < lens.n_sources)).all()
    np.testing.assert_allclose(lens.logM_star, lens.logM_star_sps + DEFAULT_ETA.alpha_sps)
    # truth in the lens table is the galaxy's row
    g = gal.set_index("galaxy_id").loc[lens.galaxy_id]
    for c in ("logM_star_sps", "logRe", "logM_halo", "gamma_in", "m_s", "beta_unit", "ycaustic_kpc",
              "logM_star_sps_observed"):
        np.testing.assert_array_equal(g[c].to_numpy(), lens[c].to_numpy())
    for c in OBSERVED_COLUMNS:
        np.testing.assert_array_equal(obs[c].to_numpy(), lens[c].to_numpy())
    # galaxies that are not lenses carry no source
    nl = gal[~gal.is_lensed]
    assert nl.m_s.isna().all() and nl.beta_unit.isna().all() and (nl.source_rank == -1).all()
    # observed-mode detection: both reported magnitudes are within the limit
    assert (lens.magnitude_observedA <= 26.5).all() and (lens.magnitude_observedB <= 26.5).all()


def test_images_satisfy_lens_equation_of_the_true_lens(default_mock):
    lens = default_mock.lenses
    assert len(lens) > 100
    worst = 0.0
    for r, m in _models(lens.head(150)):
        beta = r.beta_unit * r.ycaustic_kpc
        assert r.beta_kpc == pytest.approx(beta, rel=1e-12)
        for x in (r.xA, r.xB):
            worst = max(worst, abs(x - m.alpha(x) - beta))
        assert m.solve_ycaustic() == pytest.approx(r.ycaustic_kpc, rel=1e-10)
        assert m.einstein_radius() == pytest.approx(r.einstein_radius_kpc, rel=1e-10)
        assert m.mu_from_rt(r.xA) == pytest.approx(r.magnificationA, rel=1e-8)
        assert m.mu_from_rt(r.xB) == pytest.approx(r.magnificationB, rel=1e-8)
        assert abs(r.xB) > r.xradcrit_kpc and r.xA > r.einstein_radius_kpc > -r.xB
    assert worst < 1e-8
    np.testing.assert_allclose(lens.xA_arcsec, lens.xA * kpc_to_arcsec(1.0, 0.3), rtol=1e-12)


def test_reported_magnitudes_follow_magnification_and_noise(independent_mock):
    """With independent detection, reported magnitudes are unselected: residuals are N(0, 0.1)."""
    lens = independent_mock.lenses
    assert len(lens) > 500
    res = np.concatenate([lens.magnitude_observedA - (lens.m_s - 2.5 * np.log10(np.abs(lens.magnificationA))),
                          lens.magnitude_observedB - (lens.m_s - 2.5 * np.log10(np.abs(lens.magnificationB)))])
    n = len(res)
    print(f"\nmagnitude residuals: n={n} mean={res.mean():+.4f} std={res.std():.4f}")
    assert abs(res.mean()) < 4 * 0.1 / np.sqrt(n)
    assert abs(res.std() / 0.1 - 1) < 4 / np.sqrt(2 * n)
    assert stats.kstest(res / 0.1, "norm").pvalue > 1e-3
    # and some detected lenses have a reported magnitude beyond the limit (detection used its own noise)
    assert ((lens.magnitude_observedA > 26.5) | (lens.magnitude_observedB > 26.5)).any()


def test_observed_mode_residuals_of_bright_lenses(default_mock):
    """Far above the limit the observed-mode selection does not bias the noise either."""
    lens = default_mock.lenses
    tA = lens.m_s - 2.5 * np.log10(np.abs(lens.magnificationA))
    tB = lens.m_s - 2.5 * np.log10(np.abs(lens.magnificationB))
    bright = (tA < 26.0) & (tB < 26.0)
    res = np.concatenate([(lens.magnitude_observedA - tA)[bright], (lens.magnitude_observedB - tB)[bright]])
    assert len(res) > 200
    assert abs(res.mean()) < 4 * 0.1 / np.sqrt(len(res)) + 0.005
    assert 0.09 < res.std() < 0.11


def test_observed_mass_scatter_and_source_counts(default_mock):
    gal = default_mock.galaxies
    d = (gal.logM_star_sps_observed - gal.logM_star_sps) / 0.1
    assert stats.kstest(d, "norm").pvalue > 1e-3
    ok = gal.lens_status == Status.OK
    lam = np.pi * gal.ycaustic_kpc[ok] ** 2 * 4e-4
    n_src = gal.n_sources.sum()
    assert abs(n_src - lam.sum()) < 5 * np.sqrt(lam.sum())
    assert (gal.n_sources[~ok] == 0).all()


def test_source_positions_area_uniform_and_magnitudes():
    # a dense source field so that nearly every galaxy has detected sources, and a bright limit
    # irrelevant: m_lim = 40 detects everything, so the kept (first) source is unselected
    r = simulate_mock(6_000, seed=13, nbkg=0.05, maximum_magnitude=40.0, **QUIET)
    lens = r.lenses
    assert len(lens) > 1000 and (lens.source_rank == 0).all()
    assert stats.kstest(lens.beta_unit ** 2, "uniform").pvalue > 1e-3          # area-uniform in the caustic
    assert stats.kstest(lens.m_s, SourceLaw().cdf).pvalue > 1e-3


def test_first_detected_source_is_kept():
    r = simulate_mock(6_000, seed=14, nbkg=0.05, **QUIET)
    lens = r.lenses
    assert (lens.source_rank > 0).any() and (lens.n_sources > 1).any()
    assert (lens.source_rank < lens.n_sources).all()


# --- lens fraction ------------------------------------------------------------------------------
def test_lens_fraction_stable_across_seeds():
    fr = np.array([simulate_mock(50_000, seed=s, **QUIET).lens_fraction for s in (101, 102, 103, 104)])
    mean = fr.mean()
    print(f"\nlens fraction at default eta (4 x 50000 galaxies): {np.round(100 * fr, 3)} %, mean {100 * mean:.3f} %")
    assert LENS_FRACTION_BAND[0] < mean < LENS_FRACTION_BAND[1]
    sigma = np.sqrt(mean * (1 - mean) / 50_000)
    assert np.all(np.abs(fr - mean) < 5 * sigma)


def test_galaxies_outside_the_halo_support_never_lens():
    from sl_cy.forward import ForwardModel

    r = simulate_mock(20_000, seed=18, **QUIET)
    assert r.forward_model == ForwardModel() and r.forward_model.halo_support == (10.0, 17.0)
    gal = r.galaxies
    assert r.lenses.logM_halo.between(10.0, 17.0).all()
    fm = ForwardModel(halo_support=(10.0, 13.0))
    n = simulate_mock(20_000, seed=18, forward_model=fm, **QUIET)
    assert n.forward_model == fm
    g = n.galaxies
    out = ~g.logM_halo.between(10.0, 13.0)
    # the same population; above the support there are galaxies with a caustic (lenses of the
    # default support), but none has a source or becomes a lens
    np.testing.assert_array_equal(g.logM_halo, gal.logM_halo)
    assert (gal.is_lensed & (gal.logM_halo > 13.0)).any()
    assert ((g.lens_status == Status.OK) & out).any()
    assert (g.n_sources[out] == 0).all() and not g.is_lensed[out].any()
    assert len(n.lenses) > 0 and (n.lenses.logM_halo <= 13.0).all()


# --- determinism --------------------------------------------------------------------------------
def test_same_seed_same_result_for_any_n_jobs():
    kw = dict(seed=7, chunk_size=5_000, **QUIET)
    a = simulate_mock(20_000, n_jobs=1, **kw)
    b = simulate_mock(20_000, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(a.galaxies, b.galaxies)
    pd.testing.assert_frame_equal(a.lenses, b.lenses)
    pd.testing.assert_frame_equal(a.observed, b.observed)
    assert a.config_hash == b.config_hash
    c = simulate_mock(20_000, n_jobs=1, **dict(kw, seed=8))
    assert not np.array_equal(a.galaxies.logM_halo, c.galaxies.logM_halo)


def test_seed_sequence_prefix_stability():
    """Chunk i only depends on (seed, i): a longer run starts with the shorter one."""
    a = simulate_mock(10_000, seed=9, chunk_size=5_000, **QUIET)
    b = simulate_mock(15_000, seed=9, chunk_size=5_000, **QUIET)
    pd.testing.assert_frame_equal(a.galaxies, b.galaxies.iloc[:10_000])


# --- cache and resume ---------------------------------------------------------------------------
def test_cache_resume_after_interruption(tmp_path):
    kw = dict(seed=5, chunk_size=5_000, nbkg=1e-3, **QUIET)
    ref = simulate_mock(20_000, **kw)
    first = simulate_mock(20_000, cache_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(ref.galaxies, first.galaxies)
    pd.testing.assert_frame_equal(ref.lenses, first.lenses)
    files = sorted(first.cache_path.glob("chunks_*.h5"))
    assert len(files) == 4 and first.stats["chunks_computed"] == 4
    assert json.loads((first.cache_path / "config.json").read_text())["config_hash"] == first.config_hash

    # interruption: the last block never got written, another was left truncated, a temp file remains
    files[-1].unlink()
    files[1].write_bytes(b"not an hdf5 file")
    (first.cache_path / ".chunks_000002_000002.h5.abc.tmp").write_bytes(b"partial")
    mtime0 = files[0].stat().st_mtime_ns
    with pytest.warns(UserWarning, match="ignoring cache file"):
        resumed = simulate_mock(20_000, cache_dir=tmp_path, **kw)
    assert resumed.stats["chunks_from_cache"] == 2 and resumed.stats["chunks_computed"] == 2
    assert files[0].stat().st_mtime_ns == mtime0
    pd.testing.assert_frame_equal(ref.galaxies, resumed.galaxies)
    pd.testing.assert_frame_equal(ref.lenses, resumed.lenses)
    pd.testing.assert_frame_equal(ref.observed, resumed.observed)

    # everything cached now: nothing recomputed, same answer, and galaxies need not be loaded
    again = simulate_mock(20_000, cache_dir=tmp_path, keep_galaxies=False, **kw)
    assert again.stats["chunks_from_cache"] == 4 and again.galaxies is None
    pd.testing.assert_frame_equal(ref.lenses, again.lenses)
    pd.testing.assert_frame_equal(ref.galaxies, pd.concat(list(again.iter_galaxy_blocks()), ignore_index=True))


def test_cache_for_another_configuration_is_not_used(tmp_path):
    kw = dict(chunk_size=5_000, **QUIET)
    a = simulate_mock(10_000, seed=1, cache_dir=tmp_path, **kw)
    b_ref = simulate_mock(10_000, seed=2, **kw)
    # plant config A's files under config B's cache folder: they must be refused (hash mismatch)
    b_dir = tmp_path / f"mock_{mock_config(10_000, seed=2, chunk_size=5_000)[1][:16]}"
    b_dir.mkdir()
    for f in a.cache_path.glob("chunks_*.h5"):
        (b_dir / f.name).write_bytes(f.read_bytes())
    with pytest.warns(UserWarning, match="another configuration"):
        b = simulate_mock(10_000, seed=2, cache_dir=tmp_path, **kw)
    assert b.cache_path == b_dir and b.stats["chunks_from_cache"] == 0
    pd.testing.assert_frame_equal(b_ref.galaxies, b.galaxies)


def test_cache_every_blocks_and_temporary_cache(tmp_path):
    kw = dict(seed=3, chunk_size=4_000, **QUIET)
    ref = simulate_mock(20_000, **kw)
    blocks = simulate_mock(20_000, cache_every=8_000, cache_dir=tmp_path, **kw)
    assert sorted(p.name for p in blocks.cache_path.glob("chunks_*.h5")) == [
        "chunks_000000_000001.h5", "chunks_000002_000003.h5", "chunks_000004_000004.h5"]
    pd.testing.assert_frame_equal(ref.galaxies, blocks.galaxies)
    tmp = simulate_mock(20_000, cache_every=4_000, n_jobs=2, **kw)
    assert tmp.cache_path is None
    pd.testing.assert_frame_equal(ref.lenses, tmp.lenses)
    pd.testing.assert_frame_equal(ref.galaxies, tmp.galaxies)


def test_save_and_load_round_trip(tmp_path, default_mock):
    p = default_mock.save(tmp_path / "m.h5", extra_attrs=dict(sim_id="abc"))
    back = load_mock(p)
    pd.testing.assert_frame_equal(back.galaxies, default_mock.galaxies)
    pd.testing.assert_frame_equal(back.lenses, default_mock.lenses)
    pd.testing.assert_frame_equal(back.observed, default_mock.observed)
    assert back.config == json.loads(json.dumps(default_mock.config)) and back.config_hash == default_mock.config_hash
    with h5py.File(p) as f:
        assert f.attrs["sim_id"] == "abc" and f.attrs["detection"] == "observed"
        np.testing.assert_array_equal(f.attrs["eta"], np.array(DEFAULT_ETA))
    p2 = back.save(tmp_path / "m2.h5")                     # a loaded mock saves the same way
    with h5py.File(p2) as f:
        np.testing.assert_array_equal(f.attrs["eta"], np.array(DEFAULT_ETA))
        assert f.attrs["eta_names"] == ", ".join(DEFAULT_ETA._fields)
    assert not list(tmp_path.glob("*.tmp"))


# --- redshift distributions -------------------------------------------------------------------
def zl_draw(rng, n):
    return rng.uniform(0.2, 0.7, n)


def zs_draw(rng, n):
    return rng.uniform(0.6, 3.0, n)


def test_per_lens_redshifts_and_density_per_arcsec2():
    r = simulate_mock(30_000, seed=15, zl=zl_draw, zs=zs_draw, nbkg_per_arcsec2=0.05, **QUIET)
    gal, lens = r.galaxies, r.lenses
    assert len(lens) > 50
    behind = gal.zs > gal.zl
    assert (gal.lens_status[~behind] == Status.BAD_INPUT).all() and not gal.is_lensed[~behind].any()
    zl = np.array(lens.zl)     # writable copy: pandas (copy-on-write) hands out read-only arrays
    np.testing.assert_allclose(lens.nbkg_kpc2, 0.05 * np.asarray(kpc_to_arcsec(1.0, zl)) ** 2, rtol=1e-12)
    np.testing.assert_allclose(lens.nbkg_kpc2, SurveyConfig(nbkg_per_arcsec2=0.05).nbkg_kpc2(lens.zl), rtol=1e-12)
    for row, m in _models(lens.head(40)):
        beta = row.beta_unit * row.ycaustic_kpc
        assert abs(row.xA - m.alpha(row.xA) - beta) < 1e-8 and abs(row.xB - m.alpha(row.xB) - beta) < 1e-8
    assert r.config["zl"]["callable"] == f"{__name__}.zl_draw"
    # callables are keyed by their code, not only their name: two lambdas differ
    h1 = mock_config(10, seed=1, zs=lambda rng, n: rng.uniform(1, 2, n))[1]
    h2 = mock_config(10, seed=1, zs=lambda rng, n: rng.uniform(1, 3, n))[1]
    assert h1 != h2 and mock_config(10, seed=1, zs=zs_draw)[1] == mock_config(10, seed=1, zs=zs_draw)[1]
    arr = simulate_mock(1_000, seed=15, zl=np.full(1_000, 0.3), nbkg_per_arcsec2=0.05, **QUIET)
    assert arr.config["zl"]["n"] == 1_000


# --- API shapes and bad input ------------------------------------------------------------------
def test_run_mock_simulation_return_shapes():
    lenses, observed = run_mock_simulation(20_000, seed=16, show_progress=False)
    df_lens, lenses2, observed2, samples = run_mock_simulation(20_000, seed=16, show_progress=False, if_source=True)
    pd.testing.assert_frame_equal(lenses, lenses2)
    pd.testing.assert_frame_equal(observed, observed2)
    assert len(df_lens) == len(samples) == 20_000 and df_lens.is_lensed.sum() == len(lenses)
    assert {"m_s", "beta_unit", "logM_halo", "gamma_in"} <= set(samples.columns)
    empty_l, empty_o = run_mock_simulation(0, seed=1, show_progress=False)
    assert len(empty_l) == 0 and list(empty_o.columns) == OBSERVED_COLUMNS
    none_l, _ = run_mock_simulation(5_000, seed=1, nbkg=0.0, show_progress=False)
    assert len(none_l) == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=-5), "n_samples must be a non-negative integer, got -5"),
    (dict(n_samples=10.5), "n_samples must be a non-negative integer"),
    (dict(model="NFW"), "unknown model 'NFW'; choose one of deVauc, SerExp, Sersic"),
    (dict(detection="both"), "detection must be one of \\('observed', 'independent'\\), got 'both'"),
    (dict(eta=[0.0, np.nan, 2.04, 0.37, 1.0, 0.2]), "eta.mu_h must be finite"),
    (dict(eta=DEFAULT_ETA._replace(sigma_gamma=0.0)), "eta.sigma_gamma must be > 0"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(chunk_size=0), "chunk_size must be a positive integer"),
    (dict(cache_every=0), "cache_every must be a positive integer"),
    (dict(n_jobs=0), "n_jobs must be a positive integer or -1"),
    (dict(zl=2.5, zs=2.0), "must exceed the lens redshift"),
    (dict(zl=zl_draw), "zl varies per lens: give the source density per arcsec"),
    (dict(nbkg=-1.0), "nbkg must be finite and >= 0"),
    (dict(survey=SurveyConfig(), detection="independent"), "either survey"),
    (dict(zs=np.ones(3)), "zs must be a number, a callable or an array of length n_samples=10"),
])
def test_bad_input_raises_clear_valueerror(kwargs, match):
    kw = dict(n_samples=10, seed=1, show_progress=False)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_mock_simulation(**kw)


# --- CLI ---------------------------------------------------------------------------------------
def test_cli_simulate_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(sl_cy.__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "sl_cy", "simulate", "--n-galaxy", "20000", "--seed", "17", "--out", str(tmp_path),
           "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    print("\n" + out.stdout)
    _, chash = mock_config(20_000, seed=17)
    path = tmp_path / "data" / "tables" / f"sim_{chash[:8]}" / "mock.h5"
    assert path.exists() and str(path) in out.stdout
    for word in ("galaxies", "lenses", "lens fraction", "wall time"):
        assert word in out.stdout
    ref = simulate_mock(20_000, seed=17, **QUIET)
    back = load_mock(path)
    pd.testing.assert_frame_equal(back.observed, ref.observed)
    pd.testing.assert_frame_equal(back.galaxies, ref.galaxies)
    with h5py.File(path) as f:
        assert {"galaxies", "lenses", "observed"} <= set(f)
        assert f.attrs["package_version"] == sl_cy.__version__ and f.attrs["sim_id"] == f"sim_{chash[:8]}"
        assert f.attrs["config_hash"] == chash and "eta" in f.attrs
    # same configuration again: nothing to do; bad input: exit code 2 with a message
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    bad = subprocess.run(cmd[:4] + ["--n-galaxy", "-3"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert bad.returncode == 2 and "n_samples must be a non-negative integer" in bad.stderr
    # cached + parallel CLI run gives the same file content
    cached = subprocess.run(cmd + ["--sim-id", "cached", "--cache-every", "5000", "--chunk-size", "5000",
                                   "--n-jobs", "2"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert cached.returncode == 0, cached.stderr
    c = load_mock(tmp_path / "data" / "tables" / "cached" / "mock.h5")
    pd.testing.assert_frame_equal(c.galaxies, simulate_mock(20_000, seed=17, chunk_size=5_000, **QUIET).galaxies)
    assert not (tmp_path / "data" / "tables" / "cached" / "cache").exists()
