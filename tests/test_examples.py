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


def _example(name):
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip("examples/ not shipped with this copy")
    return runpy.run_path(str(path))["main"]


def test_custom_prior(tmp_path):
    res = _example("custom_prior.py")(tmp_path)
    assert list(res.summary.index) == ["alpha_sps", "mu_h", "beta_h", "sigma_h", "mu_gamma"]
    assert (res.run_dir / "corner.png").stat().st_size > 10_000
    import json

    params = json.loads((res.run_dir / "params.json").read_text())
    assert params["prior"]["alpha_sps"]["type"] == "gaussian" and params["fixed"]["sigma_gamma"] == 0.2


def test_own_catalogue(tmp_path):
    res = _example("own_catalogue.py")(tmp_path)
    assert (tmp_path / "my_lenses.csv").exists()
    assert res.sim_id.startswith("obs_") and (res.run_dir / "run.h5").exists()
    import json

    cat = json.loads((res.run_dir / "params.json").read_text())["catalogue"]
    assert cat["unit"] == "arcsec" and len(cat["sha256"]) == 64
    assert abs(res.summary.loc["mu_h", "median"] - 12.91) < 0.5


def test_grid_inference(tmp_path):
    gp = _example("grid_inference.py")(tmp_path)
    assert (tmp_path / "grid_marginals.png").stat().st_size > 10_000
    assert (tmp_path / "grid_posterior.h5").exists()
    assert abs(float(gp.weights.sum()) - 1.0) < 1e-9
    assert abs(gp.mean()["mu_h"] - 12.91) < 0.3


def test_resume_chain(tmp_path):
    assert _example("resume_chain.py")(tmp_path, n=20) is True
