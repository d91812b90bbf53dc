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


def _add_simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-galaxy", type=int, default=100_000, help="number of galaxies (default 100000)")
    p.add_argument("--seed", type=int, default=None, help="root random seed (default: fresh entropy, recorded)")
    p.add_argument("--sim-id", default=None, help="table folder name (default sim_<hash8> of the configuration)")
    p.add_argument("--out", default=".", help="root folder; writes <out>/data/tables/<sim_id>/mock.h5 (default .)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes, -1 = all cores (default 1)")
    p.add_argument("--detection", choices=["observed", "independent"], default="observed",
                   help="detection rule (default observed: both noisy reported magnitudes <= m_lim)")
    p.add_argument("--nbkg", type=float, default=None, help="background sources per kpc^2 of the lens plane (4e-4)")
    p.add_argument("--nbkg-per-arcsec2", type=float, default=None, help="source density per arcsec^2 instead")
    p.add_argument("--m-lim", type=float, default=26.5, help="limiting magnitude of both images (26.5)")
    p.add_argument("--model", choices=["deVauc", "SerExp", "Sersic"], default="deVauc", help="population model")
    p.add_argument("--zl", type=float, default=0.3, help="lens redshift (0.3)")
    p.add_argument("--zs", type=float, default=2.0, help="source redshift (2.0)")
    p.add_argument("--eta", default=None,
                   help="6 comma-separated values alpha_sps,mu_h,beta_h,sigma_h,mu_gamma,sigma_gamma "
                        "(default: the model's, 0,12.91,2.04,0.37,1,0.2 for deVauc)")
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
    eta = None
    if args.eta is not None:
        try:
            eta = [float(v) for v in args.eta.split(",")]
        except ValueError:
            raise SystemExit(f"sl-cy simulate: --eta must be 6 comma-separated numbers, got {args.eta!r}")
    kw = dict(maximum_magnitude=args.m_lim, zl=args.zl, zs=args.zs, model=args.model, seed=seed, nbkg=args.nbkg,
              eta=eta, detection=args.detection, chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE,
              nbkg_per_arcsec2=args.nbkg_per_arcsec2)
    try:
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
    import numpy as np

    try:
        start, stop, step = (float(v) for v in spec.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected start:stop:step, got {spec!r}") from None
    if not step > 0 or stop < start:
        raise argparse.ArgumentTypeError(f"need step > 0 and stop >= start in {spec!r}")
    return np.round(start + step * np.arange(int(np.floor((stop - start) / step + 1e-9)) + 1), 10)


def _add_tabulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim-id", required=True, help="simulation folder data/tables/<sim_id> holding mock.h5")
    p.add_argument("--out", default=".", help="root folder (default .)")
    p.add_argument("--logMh", type=_axis, default=None, help="halo-mass axis start:stop:step (default 10.5:15.5:0.1)")
    p.add_argument("--gamma", type=_axis, default=None, help="gamma_in axis start:stop:step (default 0:2:0.1)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes, -1 = all cores (default 1)")
    p.add_argument("--cache-every", type=int, default=256, help="lenses per resumable cache chunk (default 256)")
    p.add_argument("--overwrite", action="store_true", help="recompute even if grids.h5 is up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_tabulate(args) -> int:
    import time

    from sl_cy.tables import tabulate_sim

    t0 = time.perf_counter()
    try:
        path = tabulate_sim(args.sim_id, args.out, args.logMh, args.gamma, n_jobs=args.n_jobs,
                            cache_every=args.cache_every, show_progress=False if args.no_progress else None,
                            overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        print(f"sl-cy tabulate: error: {exc}", file=sys.stderr)
        return 2
    import h5py

    with h5py.File(path, "r") as f:
        n, shape, valid = f["valid"].shape[0], f["valid"].shape[1:], float((f["valid"][()] == 0).mean())
    print(f"sl-cy tabulate: {n} lenses on a {shape[0]} x {shape[1]} (logMh, gamma_in) grid, "
          f"{100 * valid:.1f} % valid points, {time.perf_counter() - t0:.2f} s -> {path}")
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
                   help="comma-separated name:lo:hi:n eta axes (n points incl. ends), names alpha_sps, mu_h, "
                        "beta_h, sigma_h, mu_gamma, sigma_gamma (e.g. alpha_sps:-0.5:0.5:11,mu_h:12:14:11)")
    p.add_argument("--fixed", default=None,
                   help="name=value,... values of the non-tabulated eta components (default the mock truth "
                        "0,12.91,2.04,0.37,1.0,0.2)")
    p.add_argument("--out", required=True,
                   help="output file, or a folder (then <out>/Aeta_<axes>_<sizes>.h5)")
    p.add_argument("--bank-out", default=None, help="also save the bank to this HDF5 file")
    p.add_argument("--n-beta", type=int, default=1, help="source positions per bank galaxy (default 1)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes for the bank, -1 = all cores (default 1)")
    p.add_argument("--n-threads", type=int, default=1, help="OpenMP threads over the table points (default 1)")
    p.add_argument("--nbkg", type=float, default=None, help="background sources per kpc^2 of the lens plane (4e-4)")
    p.add_argument("--m-lim", type=float, default=26.5, help="limiting magnitude of both images (26.5)")
    p.add_argument("--detection", choices=["observed", "independent"], default="observed",
                   help="detection rule recorded with the table (same K for both)")
    p.add_argument("--model", choices=["deVauc", "SerExp", "Sersic"], default="deVauc", help="population model")
    p.add_argument("--zl", type=float, default=0.3, help="lens redshift (0.3)")
    p.add_argument("--zs", type=float, default=2.0, help="source redshift (2.0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_aeta(args) -> int:
    import time

    import numpy as np

    from sl_cy.config import SurveyConfig
    from sl_cy.selection import build_selection_bank, compute_Aeta_grid, parse_axes, write_A_eta_hdf5

    t0 = time.perf_counter()
    try:
        axes = parse_axes(args.axes)
        fixed = {}
        if args.fixed:
            for item in args.fixed.split(","):
                k, _, v = item.partition("=")
                fixed[k.strip()] = float(v)
        survey = SurveyConfig(nbkg=args.nbkg, m_lim=args.m_lim, detection=args.detection)
        bank = build_selection_bank(args.n_bank, args.seed, survey=survey, zl=args.zl, zs=args.zs, model=args.model,
                                    n_jobs=args.n_jobs, n_beta=args.n_beta, progress=not args.no_progress)
        t1 = time.perf_counter()
        if args.bank_out:
            bank.save(args.bank_out)
        table = compute_Aeta_grid(bank, axes, fixed=fixed or None, n_threads=args.n_threads)
        path = write_A_eta_hdf5(args.out, table)
    except ValueError as exc:
        print(f"sl-cy aeta: error: {exc}", file=sys.stderr)
        return 2
    t2 = time.perf_counter()
    print(f"sl-cy aeta: bank of {bank.n} galaxies (hash {bank.config_hash[:12]}) in {t1 - t0:.2f} s; "
          f"{table.values.size} table points {table.values.shape} in {t2 - t1:.2f} s")
    print(f"  A in [{table.values.min():.4g}, {table.values.max():.4g}], ESS min {np.min(table.ess):.0f} "
          f"median {np.median(table.ess):.0f} -> {path}")
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
    return int(COMMANDS[args.command][2](args) or 0)


if __name__ == "__main__":
    sys.exit(main())
