"""Entry point of the original scripts: ``python -m sl_cy.main --n-galaxy N --save-plots --no-eta --interact``.

The same job and options as ``sl-cy run`` (:func:`sl_cy.pipeline.run_pipeline`): simulate a mock,
tabulate its grids, build A(eta), sample eta and write the run folder. ``--interact`` asks before
re-using or overwriting existing tables under ``data/tables/<sim_id>/``; without it (the
default) matching tables are re-used and mismatching ones refused.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The ``sl-cy run`` options under the program name ``python -m sl_cy.main``."""
    from sl_cy.cli import _add_run

    p = argparse.ArgumentParser(prog="python -m sl_cy.main",
                                description="simulate -> tabulate -> A(eta) -> MCMC -> summaries, plots and run "
                                            "folder (same as `sl-cy run`)")
    _add_run(p)
    return p


def main(argv=None) -> int:
    """Parse ``argv`` and run the pipeline; returns the exit code."""
    from sl_cy.cli import _cmd_run

    args = build_parser().parse_args(argv)
    return _cmd_run(args, prog="python -m sl_cy.main")


if __name__ == "__main__":
    sys.exit(main())
