"""Command-line interface: ``sl-cy <command> [options]`` (also ``python -m sl_cy``).

Each sub-command lives in a small ``_cmd_<name>(args)`` function registered in
:data:`COMMANDS` together with an ``_add_<name>(parser)`` function declaring its options.
"""
from __future__ import annotations

import argparse
import sys

from sl_cy._version import __version__


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build-table", action="store_true",
                   help="build (or load) the gNFW interpolation table and report its cache path")


def _cmd_info(args) -> int:
    import numpy as np

    from sl_cy import _profiles
    from sl_cy.cosmology import DEFAULT_COSMOLOGY

    print(f"sl_cy {__version__}")
    print(f"default cosmology: {DEFAULT_COSMOLOGY}")
    print(f"gNFW table cache: {_profiles.table_cache_path()}")
    if args.build_table:
        import time

        t0 = time.perf_counter()
        _profiles.ensure_gnfw_table()
        g0, dg, ng, u0, du, nx = _profiles.table_grid()
        print(f"gNFW table ready ({ng} x {nx} nodes, gamma_in in [{g0}, {g0 + (ng - 1) * dg:.2f}], "
              f"x in [{np.exp(u0):.0e}, {np.exp(u0 + (nx - 1) * du):.0e}]) in {time.perf_counter() - t0:.2f} s")
    return 0


def _add_forward_model_options(p: argparse.ArgumentParser, eta: bool = True, redshift_help: str = "") -> None:
    """The forward-model options shared by simulate, run, aeta and infer --observed."""
    p.add_argument("--model", choices=["deVauc", "SerExp", "Sersic"], default="deVauc", help="population model")
    p.add_argument("--detection", choices=["observed", "independent"], default="observed",
                   help="detection rule (default observed: both noisy reported magnitudes <= m_lim)")
    p.add_argument("--nbkg", type=float, default=None, help="background sources per kpc^2 of the lens plane (4e-4)")
    p.add_argument("--nbkg-per-arcsec2", type=float, default=None, help="source density per arcsec^2 instead")
    p.add_argument("--m-lim", type=float, default=26.5, help="limiting magnitude of both images (26.5)")
    p.add_argument("--sigma-m", type=float, default=0.1, help="photometric scatter of each image, mag (0.1)")
    p.add_argument("--sigma-star", type=float, default=0.1, help="scatter of the observed SPS mass, dex (0.1)")
    p.add_argument("--zl", type=float, default=None, help=f"lens redshift (0.3){redshift_help}")
    p.add_argument("--zs", type=float, default=None, help=f"source redshift (2.0){redshift_help}")
    p.add_argument("--zl-dist", default=None, metavar="SPEC",
                   help="lens-redshift distribution p(zl) instead of --zl: uniform:lo:hi, normal:mu:sigma[:lo:hi] or "
                        "a CSV histogram (columns z_lo,z_hi,weight); needs --nbkg-per-arcsec2")
    p.add_argument("--zs-dist", default=None, metavar="SPEC",
                   help="source-redshift distribution p(zs) instead of --zs (same forms); each source gets its zs")
    if eta:
        p.add_argument("--eta", default=None,
                       help="the truth: 6 comma-separated values alpha_sps,mu_h,beta_h,sigma_h,mu_gamma,sigma_gamma "
                            "(default: the model's, 0,12.91,2.04,0.37,1,0.2 for deVauc)")


def _redshifts(args) -> tuple:
    """(zl, zs) of the forward-model options: a number (--zl/--zs, default 0.3/2.0) or a
    distribution (--zl-dist/--zs-dist)."""
    from sl_cy.config import DEFAULT_ZL, DEFAULT_ZS
    from sl_cy.redshifts import parse_redshift

    out = []
    for k, default in (("zl", DEFAULT_ZL), ("zs", DEFAULT_ZS)):
        fixed, dist = getattr(args, k, None), getattr(args, f"{k}_dist", None)
        if fixed is not None and dist is not None:
            raise ValueError(f"give either --{k} or --{k}-dist, not both")
        out.append(parse_redshift(dist, f"--{k}-dist") if dist is not None else (default if fixed is None else fixed))
    return tuple(out)


def _mock_kwargs(args) -> dict:
    """Keywords of sl_cy.mock.simulate_mock from the forward-model options (plain JSON values)."""
    eta = None
    if getattr(args, "eta", None) is not None:
        try:
            eta = [float(v) for v in args.eta.split(",")]
        except ValueError:
            raise ValueError(f"--eta must be 6 comma-separated numbers, got {args.eta!r}") from None
        if len(eta) != 6:
            raise ValueError(f"--eta must be 6 comma-separated numbers, got {len(eta)}")
    from sl_cy.redshifts import redshift_to_json

    zl, zs = (redshift_to_json(z) for z in _redshifts(args))       # a distribution as its dict
    return dict(maximum_magnitude=args.m_lim, zl=zl, zs=zs, model=args.model, nbkg=args.nbkg, eta=eta,
                detection=args.detection, nbkg_per_arcsec2=args.nbkg_per_arcsec2, sigma_m=args.sigma_m,
                sigma_star=args.sigma_star)


def _forward_model(args):
    """The ForwardModel of the forward-model options."""
    from sl_cy.config import SurveyConfig
    from sl_cy.forward import ForwardModel

    survey = SurveyConfig(nbkg=args.nbkg, nbkg_per_arcsec2=args.nbkg_per_arcsec2, m_lim=args.m_lim,
                          sigma_m=args.sigma_m, sigma_star=args.sigma_star, detection=args.detection)
    zl, zs = _redshifts(args)
    return ForwardModel(model=args.model, survey=survey, zl=zl, zs=zs)


def _add_simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-galaxy", type=int, default=100_000, help="number of galaxies (default 100000)")
    p.add_argument("--seed", type=int, default=None, help="root random seed (default: fresh entropy, recorded)")
    p.add_argument("--sim-id", default=None, help="table folder name (default sim_<hash8> of the configuration)")
    p.add_argument("--out", default=".", help="root folder; writes <out>/data/tables/<sim_id>/mock.h5 (default .)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes, -1 = all cores (default 1)")
    _add_forward_model_options(p, eta=True)
    p.add_argument("--chunk-size", type=int, default=None, help="galaxies per random chunk (default 25000)")
    p.add_argument("--cache-every", type=int, default=None,
                   help="flush to resumable cache files every N galaxies (kept in <sim dir>/cache until done)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing mock.h5 of another configuration")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_simulate(args) -> int:
    import shutil
    import time
    from pathlib import Path

    import numpy as np

    from sl_cy.io import read_attrs
    from sl_cy.mock import DEFAULT_CHUNK_SIZE, mock_config, simulate_mock

    t0 = time.perf_counter()
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy)
    try:
        kw = dict(_mock_kwargs(args), seed=seed, chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE)
        config, chash = mock_config(args.n_galaxy, **kw)
    except ValueError as exc:
        print(f"sl-cy simulate: error: {exc}", file=sys.stderr)
        return 2
    sim_id = args.sim_id or f"sim_{chash[:8]}"
    sim_dir = Path(args.out) / "data" / "tables" / sim_id
    path = sim_dir / "mock.h5"
    if path.exists() and not args.overwrite:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                old = read_attrs(f)
        except OSError:
            old = {}
        if old.get("config_hash") == chash:
            st = old.get("stats", {})
            print(f"sl-cy simulate: {path} already holds this configuration (config hash {chash[:12]}); nothing to do")
            print(f"  galaxies       {st.get('n_galaxies')}\n  lenses         {st.get('n_lenses')}")
            return 0
        print(f"sl-cy simulate: error: {path} exists with another configuration; use --overwrite or another "
              "--sim-id", file=sys.stderr)
        return 2
    cache_dir = sim_dir / "cache" if args.cache_every else None
    res = simulate_mock(args.n_galaxy, n_jobs=args.n_jobs, cache_every=args.cache_every, cache_dir=cache_dir,
                        show_progress=False if args.no_progress else None, keep_galaxies=cache_dir is None, **kw)
    res.save(path, extra_attrs=dict(sim_id=sim_id))
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
    st = res.stats
    print(f"sl-cy simulate: sim_id {sim_id} (seed {seed}, config hash {chash[:12]})")
    print(f"  galaxies       {st['n_galaxies']}")
    print(f"  lenses         {st['n_lenses']}")
    print(f"  lens fraction  {100 * st['lens_fraction']:.4f} %")
    print(f"  detection      {args.detection}")
    print(f"  wall time      {time.perf_counter() - t0:.2f} s (simulation {st['wall_time_s']:.2f} s, "
          f"{st['n_galaxies'] / max(st['wall_time_s'], 1e-9):,.0f} galaxies/s)")
    print(f"  file           {path}")
    return 0


def _add_grid(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axes", required=True,
                   help="comma-separated name:start:stop:step axes or name=value fixed parameters; names: "
                        "logMh, logMstar, logRe, beta, gamma, c, zl, zs "
                        "(e.g. logMh:10:16:0.1,logMstar:11:13:0.05,logRe:0:2:0.05,beta:0:1:0.01)")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--n-proc", type=int, default=1, help="worker processes (default 1, -1 = all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_grid(args) -> int:
    from sl_cy.grid_generator import generate_grid

    try:
        s = generate_grid(args.axes, args.out, n_jobs=args.n_proc, overwrite=args.overwrite,
                          progress=False if args.no_progress else None)
    except (ValueError, FileExistsError) as exc:
        print(f"sl-cy grid: error: {exc}", file=sys.stderr)
        return 2
    print(f"sl-cy grid: {s['n_points']} lenses {s['shape']}, {s['n_ok']} two-image solutions, "
          f"{s['seconds']:.2f} s -> {s['path']}")
    return 0


def _axis(spec: str):
    from sl_cy._validate import axis_range

    try:
        return axis_range(*spec.split(":"), name=spec) if spec.count(":") == 2 else axis_range(0, -1, 0, name=spec)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"expected start:stop:step with step > 0 and stop >= start, "
                                         f"got {spec!r}") from None


def _add_tabulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim-id", required=True, help="simulation folder data/tables/<sim_id> holding mock.h5")
    p.add_argument("--out", default=".", help="root folder (default .)")
    p.add_argument("--logMh", type=_axis, default=None, help="halo-mass scan axis start:stop:step (default 10:17:0.1, the halo support)")
    p.add_argument("--gamma", type=_axis, default=None, help="gamma_in axis start:stop:step (default 0:2:0.1)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes, -1 = all cores (default 1)")
    p.add_argument("--cache-every", type=int, default=256, help="lenses per resumable cache chunk (default 256)")
    p.add_argument("--overwrite", action="store_true", help="recompute even if grids.h5 is up to date")
    p.add_argument("--uniform", action="store_true",
                   help="regular (logMh x gamma) grid instead of the default adaptive per-column nodes")
    p.add_argument("--adaptive-step", type=float, default=1.0,
                   help="node spacing of the adaptive rule in units of 0.1 dex of logMh and logM* (1.0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_tabulate(args) -> int:
    import time

    from sl_cy.tables import tabulate_sim

    t0 = time.perf_counter()
    try:
        path = tabulate_sim(args.sim_id, args.out, logMh_grid=args.logMh, gamma_grid=args.gamma, n_jobs=args.n_jobs,
                            cache_every=args.cache_every, show_progress=False if args.no_progress else None,
                            overwrite=args.overwrite, adaptive=not args.uniform, adaptive_step=args.adaptive_step)
    except (ValueError, FileNotFoundError) as exc:
        print(f"sl-cy tabulate: error: {exc}", file=sys.stderr)
        return 2
    import h5py

    with h5py.File(path, "r") as f:
        n, shape = f["valid"].shape[0], f["valid"].shape[1:]
        n_valid = float((f["valid"][()] == 0).sum()) / n
    kind = "uniform" if args.uniform else f"adaptive (step {args.adaptive_step:g}; {shape[0]} node slots per column)"
    print(f"sl-cy tabulate: {n} lenses on a {shape[0]} x {shape[1]} (logMh, gamma_in) {kind} grid, "
          f"{n_valid:.0f} valid points per lens, {time.perf_counter() - t0:.2f} s -> {path}")
    return 0


def _add_ktable(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--m-lim", type=float, default=26.5, help="limiting magnitude (26.5)")
    p.add_argument("--sigma-m", type=float, default=0.1, help="magnitude noise (0.1)")
    p.add_argument("--mu-min", type=float, default=1e-3, help="smallest |mu| of the grid (1e-3)")
    p.add_argument("--mu-max", type=float, default=1e3, help="largest |mu| of the grid (1e3)")
    p.add_argument("--n-mu", type=int, default=601, help="grid points per axis, log-spaced (601)")


def _cmd_ktable(args) -> int:
    import time

    from sl_cy.ktable import build_K_table, save_K_table_hdf5

    t0 = time.perf_counter()
    try:
        table = build_K_table(mu_min=args.mu_min, mu_max=args.mu_max, n_mu=args.n_mu, m_lim=args.m_lim,
                              sigma_m=args.sigma_m)
        path = save_K_table_hdf5(table, args.out)
    except ValueError as exc:
        print(f"sl-cy ktable: error: {exc}", file=sys.stderr)
        return 2
    print(f"sl-cy ktable: K(mu1, mu2) on {args.n_mu} x {args.n_mu} log|mu| nodes in [{args.mu_min:g}, "
          f"{args.mu_max:g}], m_lim={args.m_lim}, sigma_m={args.sigma_m}, {time.perf_counter() - t0:.2f} s -> {path}")
    return 0


def _add_aeta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-bank", type=int, default=200_000, help="galaxies in the Monte-Carlo bank (default 200000)")
    p.add_argument("--seed", type=int, default=None, help="root random seed of the bank (default: fresh, recorded)")
    p.add_argument("--axes", required=True,
                   help="comma-separated name:start:stop:step eta axes (stop included), names alpha_sps, mu_h, "
                        "beta_h, sigma_h, mu_gamma, sigma_gamma (e.g. alpha_sps:-0.5:0.5:0.1,mu_h:12:14:0.2)")
    p.add_argument("--fixed", default=None,
                   help="name=value,... values of the non-tabulated eta components (default the mock truth "
                        "0,12.91,2.04,0.37,1.0,0.2)")
    p.add_argument("--out", required=True,
                   help="output file, or a folder (then <out>/Aeta_<axes>_<sizes>.h5)")
    p.add_argument("--bank-out", default=None, help="also save the bank to this HDF5 file")
    p.add_argument("--n-beta", type=int, default=1, help="source positions per bank galaxy (default 1)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes for the bank, -1 = all cores (default 1)")
    p.add_argument("--n-threads", type=int, default=1, help="OpenMP threads over the table points (default 1; -1: all cores)")
    p.add_argument("--engine", choices=["quadrature", "bank"], default="quadrature",
                   help="A(eta) engine: the deterministic quadrature (default) or a Monte-Carlo bank of --n-bank")
    _add_forward_model_options(p, eta=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_aeta(args) -> int:
    import time

    import numpy as np

    from sl_cy.selection import build_selection_bank, compute_Aeta_grid, parse_axes, selection_for, write_A_eta_hdf5

    t0 = time.perf_counter()
    try:
        axes = parse_axes(args.axes)
        fixed = {}
        if args.fixed:
            for item in args.fixed.split(","):
                k, _, v = item.partition("=")
                fixed[k.strip()] = float(v)
        fm = _forward_model(args)
        if args.engine == "bank":
            engine = build_selection_bank(args.n_bank, args.seed, forward_model=fm, n_jobs=args.n_jobs,
                                          n_beta=args.n_beta, progress=not args.no_progress)
            if args.bank_out:
                engine.save(args.bank_out)
        else:
            engine = selection_for(fm, n_jobs=args.n_jobs, progress=not args.no_progress)
        t1 = time.perf_counter()
        table = compute_Aeta_grid(engine, axes, fixed=fixed or None, n_threads=args.n_threads)
        path = write_A_eta_hdf5(args.out, table)
    except ValueError as exc:
        print(f"sl-cy aeta: error: {exc}", file=sys.stderr)
        return 2
    t2 = time.perf_counter()
    print(f"sl-cy aeta: {args.engine} engine (hash {engine.config_hash[:12]}) in {t1 - t0:.2f} s; "
          f"{table.values.size} table points {table.values.shape} in {t2 - t1:.2f} s")
    ess = f", ESS min {np.min(table.ess):.0f} median {np.median(table.ess):.0f}" if args.engine == "bank" else ""
    print(f"  A (lens fraction) in [{table.values.min():.4g}, {table.values.max():.4g}]{ess} -> {path}")
    return 0


# --------------------------------------------------------------------------------------------
# pipeline: run, infer, report, rerun (sl_cy.pipeline)
# --------------------------------------------------------------------------------------------
def _add_mcmc_options(p: argparse.ArgumentParser) -> None:
    from sl_cy.pipeline import DEFAULT_BANK_SIZE, DEFAULT_NSTEPS, DEFAULT_NWALKERS
    from sl_cy.inference import DEFAULT_MOVES, DEFAULT_START, MOVES, STARTS

    p.add_argument("--nwalkers", type=int, default=DEFAULT_NWALKERS,
                   help=f"emcee walkers, >= 2 x free parameters (default {DEFAULT_NWALKERS})")
    p.add_argument("--nsteps", type=int, default=DEFAULT_NSTEPS, help=f"MCMC steps (default {DEFAULT_NSTEPS})")
    p.add_argument("--discard", type=int, default=None,
                   help="burn-in steps left out of the summaries (default nsteps/10 with --start map, nsteps/4 "
                        "with --start ball)")
    p.add_argument("--start", default=DEFAULT_START, choices=STARTS,
                   help="walkers drawn from the Laplace approximation at the MAP (default; recorded in params.json) "
                        "or a small ball around the default-mock truth")
    p.add_argument("--moves", default=DEFAULT_MOVES, choices=MOVES,
                   help="emcee moves: differential evolution (DEMove 0.8 + DESnookerMove 0.2, default) or the "
                        "stretch move")
    p.add_argument("--seed", type=int, default=None,
                   help="root random seed (default: fresh entropy, recorded in params.json)")
    p.add_argument("--sim-id", default=None, help="table folder data/tables/<sim_id>")
    p.add_argument("--run-id", default=None, help="run folder name (default run_<UTC time>)")
    p.add_argument("--out", default=".", help="root folder for data/ and inference/ (default: current folder)")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="worker processes / threads, -1 = all cores (default -1; results do not depend on it)")
    p.add_argument("--no-eta", action="store_true", help="switch the selection term -N log A(eta) off")
    p.add_argument("--bank-size", type=int, default=DEFAULT_BANK_SIZE,
                   help=f"galaxies in the A(eta) Monte-Carlo bank with --selection bank (default "
                        f"{DEFAULT_BANK_SIZE}); cached in data/banks/ by configuration hash")
    p.add_argument("--selection", default="quadrature", choices=["quadrature", "bank"],
                   help="A(eta) engine: the deterministic quadrature table (default; built once, cached in "
                        "~/.cache/sl_cy) or the Monte-Carlo bank of --bank-size galaxies (data/banks/)")
    p.add_argument("--fixed", default=None,
                   help="name=value,... eta parameters held fixed (names alpha_sps, mu_h, beta_h, sigma_h, "
                        "mu_gamma, sigma_gamma)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--save-plots", dest="save_plots", action="store_true", default=True,
                   help="write corner.png, traces.png, log_prob.png (default)")
    g.add_argument("--no-plots", dest="save_plots", action="store_false", help="no plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_dask_options(p)


def _add_dask_options(p: argparse.ArgumentParser) -> None:
    d = p.add_mutually_exclusive_group()
    d.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on this dask cluster (tcp://host:8786, or a scheduler file *.json): each worker reads its "
                        "shard of the lenses' grids itself (sl_cy.distributed)")
    d.add_argument("--dask-workers", type=int, default=None, metavar="N",
                   help="start a dask LocalCluster of N worker processes for this command (closed at the end)")


def _dask(args):
    """The dask client of --scheduler / --dask-workers (a context manager; yields None without them)."""
    import contextlib

    if args.scheduler is None and args.dask_workers is None:
        return contextlib.nullcontext()
    try:
        from sl_cy.distributed import dask_client
    except ImportError as exc:
        raise ValueError(f"--scheduler / --dask-workers need dask.distributed ({exc}): pip install 'sl_cy[dask]'") \
            from None
    return dask_client(args.scheduler, args.dask_workers)


def _run_config(args):
    """The :class:`sl_cy.pipeline.RunConfig` of the MCMC options (validated: a bad value is a user error)."""
    from sl_cy.pipeline import RunConfig

    return RunConfig(nwalkers=args.nwalkers, nsteps=args.nsteps, seed=args.seed, discard=args.discard,
                     start=args.start, moves=args.moves, use_selection=not args.no_eta, selection=args.selection, bank_size=args.bank_size,
                     fixed=_parse_fixed(args.fixed), n_jobs=args.n_jobs, save_plots=args.save_plots)


def _parse_fixed(spec):
    if not spec:
        return None
    out = {}
    for item in spec.split(","):
        k, sep, v = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"--fixed expects name=value,..., got {item!r}") from None
    return out


def _fail(prog: str, exc: BaseException) -> int:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    for note in getattr(exc, "__notes__", None) or ():      # e.g. "the run folder ... is kept"
        msg += "; " + " ".join(str(note).split())
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------
# signals: handled here only (the library sees a KeyboardInterrupt)
# --------------------------------------------------------------------------------------------
_SIGNALS = ("SIGINT", "SIGTERM")


class _SignalState:
    """The signals received while a command runs (names, in order)."""

    def __init__(self):
        self.received: list[str] = []
        self.redeliver = False          # the next handler call re-raises a lost interrupt
        self.old_hook = None


def _install_signal_handlers(state: _SignalState):
    """SIGINT and SIGTERM raise ``KeyboardInterrupt("SIGINT"/"SIGTERM")`` in the main thread, so that
    every stage stops at its next Python instruction and a run folder is marked interrupted. A
    second signal while that cleanup runs exits at once (the run stays resumable: the chain is
    crash-safe). Returns the previous handlers (None when not in the main thread)."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if state.redeliver:
            state.redeliver = False
            raise KeyboardInterrupt(name)
        state.received.append(name)
        if len(state.received) > 1:
            print(f"sl-cy: second signal ({name}) while stopping; exiting at once", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        raise KeyboardInterrupt(name)

    def unraisable(u):
        # The interrupt was raised inside a garbage-collection callback or a __del__, where Python
        # prints and drops exceptions: deliver it again shortly, from outside that callback.
        exc = u.exc_value
        if isinstance(exc, KeyboardInterrupt) and str(exc) in _SIGNALS and state.received:
            import _thread

            state.redeliver = True
            t = threading.Timer(0.02, _thread.interrupt_main, args=(int(getattr(signal, str(exc))),))
            t.daemon = True
            t.start()
            return
        state.old_hook(u)

    state.old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable
    old = {}
    for name in _SIGNALS:
        sig = getattr(signal, name)
        if signal.getsignal(sig) is signal.SIG_IGN:      # e.g. SIGINT of a background job: keep ignoring it
            continue
        old[sig] = signal.signal(sig, handler)
    return old


def _restore_signal_handlers(old, state: _SignalState) -> None:
    import signal

    for sig, h in (old or {}).items():
        signal.signal(sig, h if h is not None else signal.SIG_DFL)
    if state.old_hook is not None:
        sys.unraisablehook = state.old_hook


def _interrupted(prog: str, exc: KeyboardInterrupt, state: _SignalState) -> int:
    """One line on stderr for an interruption; exit status 128 + signal number."""
    import signal

    name = state.received[0] if state.received else (str(exc) if str(exc).startswith("SIG") else "SIGINT")
    code = 128 + int(getattr(signal, name, signal.SIGINT))
    run_dir = getattr(exc, "run_dir", None)
    if getattr(exc, "continue_with", None):
        print(f"{prog}: interrupted by {name}; {exc.continue_with}", file=sys.stderr, flush=True)
    elif run_dir is not None:
        step = "?" if exc.step is None else exc.step
        print(f"{prog}: interrupted by {name} at step {step} of {exc.nsteps}; the run folder is kept, continue it "
              f"with: sl-cy resume {run_dir}", file=sys.stderr, flush=True)
    else:
        print(f"{prog}: interrupted by {name}; no run folder was made (finished tables and cache files are kept and "
              "re-used by the same command; no partial file is left)", file=sys.stderr, flush=True)
    return code


_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, OSError)


def _add_run(p: argparse.ArgumentParser) -> None:
    from sl_cy.pipeline import DEFAULT_N_GALAXY

    p.add_argument("--n-galaxy", type=int, default=DEFAULT_N_GALAXY,
                   help=f"galaxies of the mock (default {DEFAULT_N_GALAXY})")
    _add_mcmc_options(p)
    _add_forward_model_options(p, eta=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing mock of another configuration under the same --sim-id")
    p.add_argument("--interact", action="store_true",
                   help="ask before re-using or overwriting existing tables (default: re-use matching tables, "
                        "refuse mismatching ones)")


def _ask(question: str) -> bool:
    """Ask a yes/no question on the terminal: re-using is the default answer, overwriting is not."""
    default = "re-use" in question
    try:
        ans = input(f"{question} [{'Y/n' if default else 'y/N'}] ").strip().lower()
    except EOFError:
        return default
    return default if not ans else ans in ("y", "yes")


def _cmd_run(args, prog: str = "sl-cy run") -> int:
    from sl_cy.pipeline import run_pipeline

    try:
        mock_kwargs = _mock_kwargs(args)
        config = _run_config(args)
        with _dask(args) as client:
            run_pipeline(args.n_galaxy, config=config, sim_id=args.sim_id, root=args.out, progress=not args.no_progress,
                         overwrite=args.overwrite, confirm=_ask if args.interact else None, run_id=args.run_id,
                         mock_kwargs=mock_kwargs, verbose=True, client=client)
    except _USER_ERRORS as exc:
        return _fail(prog, exc)
    return 0


def _add_infer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--observed", default=None, metavar="FILE",
                   help="your lens catalogue (CSV or HDF5; columns xA, xB, logRe, logM_star_sps_observed, "
                        "magnitude_observedA, magnitude_observedB, optional zl, zs); its grids are tabulated first")
    p.add_argument("--unit", default="kpc", help="unit of xA, xB in the catalogue: kpc (default) or arcsec")
    _add_mcmc_options(p)
    _add_forward_model_options(p, eta=False, redshift_help="; with --observed, of every lens of a catalogue without "
                                                           "zl/zs columns (required then); a catalogue whose redshifts "
                                                           "vary needs --zl-dist/--zs-dist, the parent distributions "
                                                           "of the selection term")


_FM_DEFAULTS = dict(model="deVauc", detection="observed", nbkg=None, nbkg_per_arcsec2=None, m_lim=26.5, sigma_m=0.1,
                    sigma_star=0.1, zl=None, zs=None, zl_dist=None, zs_dist=None)


def _cmd_infer(args) -> int:
    from sl_cy.pipeline import infer

    try:
        if args.observed is None and any(getattr(args, k) != d for k, d in _FM_DEFAULTS.items()):
            raise ValueError("the forward-model options (--model, --m-lim, --nbkg, ...) go with --observed; a "
                             "simulation's grids carry the forward model of its mock")
        config = _run_config(args)
        with _dask(args) as client:
            infer(args.sim_id, config=config, observed=args.observed, unit=args.unit, root=args.out,
                  progress=not args.no_progress, run_id=args.run_id, zl=args.zl, zs=args.zs,
                  forward_model=_forward_model(args) if args.observed else None, verbose=True, client=client)
    except _USER_ERRORS as exc:
        return _fail("sl-cy infer", exc)
    return 0


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run folder inference/<sim_id>/<run_id>")
    p.add_argument("--no-plots", dest="save_plots", action="store_false", help="only the summaries")


def _cmd_report(args) -> int:
    from sl_cy.pipeline import report

    try:
        report(args.path, save_plots=args.save_plots, verbose=True)
    except _USER_ERRORS as exc:
        return _fail("sl-cy report", exc)
    return 0


def _add_rerun(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run folder inference/<sim_id>/<run_id> whose params.json is re-run")
    p.add_argument("--out", default=None, help="root folder of the new run folder (default: the original root)")
    p.add_argument("--run-id", default=None, help="name of the new run folder (default run_<UTC time>)")
    p.add_argument("--n-jobs", type=int, default=None, help="override the recorded worker count")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_dask_options(p)


def _add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run folder inference/<sim_id>/<run_id> that was interrupted or killed")
    p.add_argument("--nsteps", type=int, default=None,
                   help="new total number of MCMC steps (default the recorded one; larger extends the run)")
    p.add_argument("--n-jobs", type=int, default=None, help="override the recorded worker count")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_dask_options(p)


def _cmd_resume(args) -> int:
    from sl_cy.pipeline import resume
    from sl_cy.runs import RunLockedError

    try:
        with _dask(args) as client:
            resume(args.path, nsteps=args.nsteps, n_jobs=args.n_jobs, progress=not args.no_progress, verbose=True,
                   client=client)
    except _USER_ERRORS + (RunLockedError,) as exc:
        return _fail("sl-cy resume", exc)
    return 0


def _cmd_rerun(args) -> int:
    from sl_cy.pipeline import rerun

    try:
        with _dask(args) as client:
            rerun(args.path, out=args.out, run_id=args.run_id, progress=not args.no_progress, n_jobs=args.n_jobs,
                  verbose=True, client=client)
    except _USER_ERRORS as exc:
        return _fail("sl-cy rerun", exc)
    return 0


def _add_validate(p: argparse.ArgumentParser) -> None:
    from sl_cy.sbc import FULL, QUICK

    p.add_argument("--replicates", type=int, default=None,
                   help=f"replicates (default {FULL['replicates']}, --quick {QUICK['replicates']}); a folder holding fewer "
                        "is continued up to this number")
    p.add_argument("--n-galaxy", type=int, default=None,
                   help=f"galaxies per mock (default {FULL['n_galaxy']}, --quick {QUICK['n_galaxy']})")
    p.add_argument("--seed", type=int, default=None,
                   help="root seed (default: the folder's recorded seed when continuing, else fresh entropy, recorded)")
    p.add_argument("--out", default="validation",
                   help="validation folder (default ./validation); rerunning the same command continues it")
    p.add_argument("--quick", action="store_true",
                   help=f"cheaper settings: {QUICK['replicates']} replicates of {QUICK['n_galaxy']} galaxies, "
                        f"{QUICK['nwalkers']} walkers x {QUICK['nsteps']} steps, L = {QUICK['n_draws']}")
    p.add_argument("--n-draws", type=int, default=None, help="posterior draws L ranked per replicate "
                                                             f"(default {FULL['n_draws']}, --quick {QUICK['n_draws']})")
    p.add_argument("--nwalkers", type=int, default=None, help="emcee walkers per replicate")
    p.add_argument("--nsteps", type=int, default=None, help="emcee steps per replicate")
    p.add_argument("--discard", type=int, default=None, help="burn-in steps per replicate")
    p.add_argument("--fixed", default=None, help="name=value,... eta parameters held fixed (not drawn, not sampled)")
    _add_forward_model_options(p, eta=False)
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="replicates run at once in worker processes, -1 = all cores (default; results do not depend on it)")
    _add_dask_options(p)
    p.add_argument("--no-plots", dest="save_plots", action="store_false", help="no ranks.png / coverage.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_validate(args) -> int:
    from sl_cy.runs import RunLockedError
    from sl_cy.sbc import validate

    try:
        mk = {k: v for k, v in _mock_kwargs(args).items() if k != "eta"}
        with _dask(args) as client:          # --scheduler / --dask-workers: the replicates run on dask
            validate(args.replicates, n_galaxy=args.n_galaxy, seed=args.seed, out=args.out, quick=args.quick,
                     fixed=_parse_fixed(args.fixed), n_draws=args.n_draws, nwalkers=args.nwalkers, nsteps=args.nsteps,
                     discard=args.discard, mock_kwargs=mk, n_jobs=args.n_jobs, executor=client,
                     progress=False if args.no_progress else None, save_plots=args.save_plots, verbose=True)
    except _USER_ERRORS + (RunLockedError,) as exc:
        return _fail("sl-cy validate", exc)
    return 0


# name -> (help, add_arguments, run)
COMMANDS = {
    "info": ("print version, configuration and table cache location", _add_info, _cmd_info),
    "simulate": ("simulate a mock lens survey; write data/tables/<sim_id>/mock.h5", _add_simulate, _cmd_simulate),
    "tabulate": ("tabulate per-lens likelihood grids of a simulation; write data/tables/<sim_id>/grids.h5",
                 _add_tabulate, _cmd_tabulate),
    "ktable": ("build the K(mu1, mu2) detection table and write it to HDF5", _add_ktable, _cmd_ktable),
    "grid": ("forward-solve a lens bank on a parameter grid and stream it to HDF5", _add_grid, _cmd_grid),
    "aeta": ("build a Monte-Carlo bank and tabulate the selection normaliser A(eta) into Aeta_*.h5",
             _add_aeta, _cmd_aeta),
    "run": ("the main job: simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots, run folder "
            "inference/<sim_id>/<run_id>/", _add_run, _cmd_run),
    "infer": ("MCMC inference of eta on the grids of a simulation (--sim-id) or of your catalogue (--observed) "
              "into a run folder", _add_infer, _cmd_infer),
    "report": ("re-create summaries and plots of a run folder from its stored chain", _add_report, _cmd_report),
    "rerun": ("run an inference again from a run folder's params.json (same seed -> identical chain)",
              _add_rerun, _cmd_rerun),
    "resume": ("continue an interrupted or killed run to its total steps (identical chain) and finish it",
               _add_resume, _cmd_resume),
    "validate": ("simulation-based calibration: replicates with eta drawn from a prior, rank histograms, coverage, "
                 "verdict; resumable", _add_validate, _cmd_validate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sl-cy", description="Statistical strong lensing with a compiled core.")
    parser.add_argument("--version", action="version", version=f"sl_cy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    from sl_cy.parallel import WorkerPoolError

    state = _SignalState()
    old = _install_signal_handlers(state)
    try:
        return int(COMMANDS[args.command][2](args) or 0)
    except KeyboardInterrupt as exc:
        return _interrupted(f"sl-cy {args.command}", exc, state)
    except Exception as exc:
        if state.received:          # a consequence of the signal (e.g. pool workers killed by it)
            return _interrupted(f"sl-cy {args.command}", KeyboardInterrupt(state.received[0]), state)
        if isinstance(exc, WorkerPoolError):      # the process pool broke: its cause and remedy, no traceback
            return _fail(f"sl-cy {args.command}", exc)
        raise
    finally:
        _restore_signal_handlers(old, state)


if __name__ == "__main__":
    sys.exit(main())
