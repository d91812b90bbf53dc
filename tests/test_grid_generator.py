"""Lens banks on parameter grids (the seed's grid_generator) and the `sl-cy grid` command."""
import h5py
import numpy as np
import pytest

import sl_cy
from sl_cy.grid_generator import generate_grid, parse_axes


def test_parse_axes():
    ax = parse_axes("logMh:12:13:0.25,beta:0:1:0.5,gamma=1.3")
    assert ax["logMh"].tolist() == [12.0, 12.25, 12.5, 12.75, 13.0]
    assert ax["beta"].tolist() == [0.0, 0.5]          # beta_unit < 1 only
    assert ax["gamma"] == 1.3
    for bad, match in [("foo:0:1:0.1", "unknown axis"), ("logMh:0:1", "name:start:stop:step"),
                       ("logMh:1:0:0.1", "stop >= start"), ("logMh:0:1:x", "not a number"), ("zl=0.4", "no grid axis"),
                       ("logMh:0:1:0.5,logMh:0:1:0.5", "twice")]:
        with pytest.raises(ValueError, match=match):
            parse_axes(bad)


def test_bank_matches_forward_solve(tmp_path):
    out = tmp_path / "bank.h5"
    s = generate_grid("logMh:12.5:13.5:0.25,logMstar:11:11.6:0.3,beta:0:0.9:0.3,zl=0.4", out, block_points=7)
    assert s["shape"] == (5, 3, 4) and s["n_points"] == 60
    with h5py.File(out, "r") as f:
        mh, ms, bu = (f["axes"][k][()] for k in ("logMh", "logMstar", "beta"))
        xA, det, st = f["x_A"][()], f["detJ"][()], f["status"][()]
    M, S, B = np.meshgrid(mh, ms, bu, indexing="ij")
    ref = sl_cy.forward_solve(S, M, 0.8, gamma_in=1.0, c_halo=5.0, zl=0.4, zs=2.0, beta_unit=B)
    np.testing.assert_array_equal(st, ref["status"])
    np.testing.assert_array_equal(xA, ref["x_A"])
    np.testing.assert_array_equal(det, ref["detJ"])
    assert s["n_ok"] == int((st == 0).sum())


def test_bank_parallel_identical_and_overwrite(tmp_path):
    spec = "logMh:12:14:0.5,logRe:0.5:1:0.25,beta:0.1:0.9:0.4"
    a = generate_grid(spec, tmp_path / "a.h5", block_points=9)
    b = generate_grid(spec, tmp_path / "b.h5", block_points=9, n_jobs=2)
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        for k in ("x_A", "mu_B", "kappa_A", "shear_B", "status"):
            np.testing.assert_array_equal(fa[k][()], fb[k][()])
    with pytest.raises(FileExistsError):
        generate_grid(spec, tmp_path / "a.h5")
    assert a["shape"] == b["shape"]


def test_grid_cli(tmp_path, cli):
    out = tmp_path / "bank.h5"
    cmd = ["grid", "--axes", "logMh:12:13:0.5,beta:0:0.5:0.25", "--out", out, "--no-progress"]
    r = cli(*cmd, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "two-image solutions" in r.stdout and out.exists()
    r2 = cli(*cmd, cwd=tmp_path)
    assert r2.returncode == 2 and "overwrite" in r2.stderr
