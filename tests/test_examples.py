"""The scripts in examples/ run and produce what they say."""
import pathlib
import runpy

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.skipif(not (EXAMPLES / "quickstart.py").exists(), reason="examples/ not shipped with this copy")
def test_quickstart(tmp_path):
    table = runpy.run_path(str(EXAMPLES / "quickstart.py"))["main"](tmp_path)
    assert (tmp_path / "quickstart_corner.png").stat().st_size > 10_000
    assert (tmp_path / "quickstart_chain.h5").exists()
    pulls = (table["median"] - table["truth"]) / table["std"]
    assert np.all(np.abs(pulls) < 4), table
