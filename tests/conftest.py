"""Shared test helpers."""
import os
import pathlib
import subprocess
import sys

import pytest

import sl_cy


def run_cli(*args, cwd, timeout=300):
    """Run ``python -m sl_cy ARGS`` in ``cwd`` against the sl_cy under test (installed or in-tree)."""
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(sl_cy.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "sl_cy", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
