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


# name -> (help, add_arguments, run)
COMMANDS = {
    "info": ("print version, configuration and table cache location", _add_info, _cmd_info),
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
