"""Run folders and the run HDF5 file."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from sl_cy.io import read_attrs, read_dataframe
from sl_cy.runs import (new_run_id, read_params, run_dir, utc_now, write_metadata, write_params,
                        write_run_hdf5)


def test_run_folder_files(tmp_path):
    d = run_dir("sim_a", new_run_id(), tmp_path)
    assert d.parts[-3] == "inference"
    write_params(d, dict(seed=3, eta=np.array([0.0, 12.9]), nwalkers=16))
    assert read_params(d) == dict(seed=3, eta=[0.0, 12.9], nwalkers=16)
    t0 = utc_now()
    write_metadata(d, sim_id="sim_a", started_utc=t0, finished_utc=utc_now(), tables=dict(grids_key="abc"))
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["sim_id"] == "sim_a" and meta["started_utc"] == t0 and meta["package_version"]
    assert meta["precomputed_table_version"] == {"grids_key": "abc"}
    with pytest.raises(FileNotFoundError):
        read_params(tmp_path)
    with pytest.raises(ValueError):
        run_dir("a/b", "r", tmp_path)


def test_write_run_hdf5_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    chain = rng.normal(size=(20, 8, 3))
    obs = pd.DataFrame(dict(xA=[1.0, 2.0], xB=[-1.0, -0.5]))
    p = write_run_hdf5(tmp_path / "run.h5", metadata=dict(sim_id="s"), params=dict(seed=1), truth=[0.0, 1.0, 2.0],
                       observed=obs, grids_path="data/tables/s/grids.h5", chain=chain,
                       log_prob=rng.normal(size=(20, 8)), acceptance=np.full(8, 0.3),
                       exports=dict(median=np.zeros(3), verdict="converged"))
    with h5py.File(p, "r") as f:
        a = read_attrs(f)
        assert a["metadata"] == {"sim_id": "s"} and a["grids_path"].endswith("grids.h5")
        np.testing.assert_array_equal(f["mcmc/chain"][()], chain)
        assert read_dataframe(f["observed"]).equals(obs)
        assert json.loads(f["exports"].attrs["verdict"]) == "converged"
        np.testing.assert_array_equal(f["exports/median"][()], np.zeros(3))
