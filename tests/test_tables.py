"""Simulation folders: mock + grids on disk, subsets, and the simulate -> tabulate CLI."""
import numpy as np
import pytest

from sl_cy.forward import ForwardModel
from sl_cy.grids import tabulate_likelihood_grids
from sl_cy.mock import load_mock
from sl_cy.tables import generate_and_save_mock_tabulate, load_mock_and_grids, save_subset, sim_dir, tabulate_sim

MH = np.linspace(11.5, 14.5, 16)
GAM = np.linspace(0.2, 1.8, 5)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    sim_id, mock_path, grids_path = generate_and_save_mock_tabulate(20_000, seed=5, sim_id="t1", root=root,
                                                                    logMh_grid=MH, gamma_grid=GAM,
                                                                    show_progress=False)
    return root, sim_id


def test_layout_and_load(sim):
    root, sim_id = sim
    d = sim_dir(sim_id, root)
    assert (d / "mock.h5").exists() and (d / "grids.h5").exists() and not (d / "grid_cache").exists()
    lenses, observed, grids = load_mock_and_grids(sim_id, root)
    assert len(lenses) == len(observed) == len(grids) > 10
    again = tabulate_likelihood_grids(observed, MH, GAM, adaptive=True)
    assert all(a.equals(b) for a, b in zip(again, grids))
    # the grids carry the mock's forward model
    fm = load_mock(d / "mock.h5").forward_model
    assert fm == ForwardModel() and all(g.config["forward_model"] == fm.to_dict() for g in grids)
    sub_l, sub_o, sub_g = load_mock_and_grids(sim_id, root, indices=[3, 1])
    assert sub_l.galaxy_id.tolist() == lenses.galaxy_id.iloc[[3, 1]].tolist()
    assert sub_g[0].equals(grids[3])
    with pytest.raises(ValueError, match="lens indices"):
        load_mock_and_grids(sim_id, root, indices=[len(lenses)])


def test_save_subset(sim):
    root, sim_id = sim
    dst = save_subset(sim_id, [0, 2, 4], "t1_sub", root=root)
    lenses, observed, grids = load_mock_and_grids("t1_sub", root)
    full = load_mock_and_grids(sim_id, root, indices=[0, 2, 4])
    assert lenses.equals(full[0]) and all(a.equals(b) for a, b in zip(grids, full[2]))
    with pytest.raises(FileExistsError):
        save_subset(sim_id, [0], "t1_sub", root=root)
    assert dst.name == "t1_sub"


def test_grids_take_the_forward_model_of_the_mock(tmp_path):
    # a non-default model and sigma_star reach the grids (hence the likelihood and A(eta)) unchanged
    sim_id, mock_path, _ = generate_and_save_mock_tabulate(8_000, seed=6, sim_id="serexp", root=tmp_path,
                                                           logMh_grid=MH, gamma_grid=GAM, model="SerExp",
                                                           sigma_star=0.2, show_progress=False)
    fm = load_mock(mock_path).forward_model
    assert fm.model == "SerExp" and fm.sigma_star == 0.2
    _, _, grids = load_mock_and_grids(sim_id, tmp_path)
    assert len(grids) > 0 and all(ForwardModel.from_dict(g.config["forward_model"]) == fm for g in grids)


def test_tabulate_missing_mock(tmp_path):
    with pytest.raises(FileNotFoundError, match="sl-cy simulate"):
        tabulate_sim("nothing", tmp_path)
    with pytest.raises(ValueError, match="sim_id"):
        sim_dir("../x")


def test_simulate_then_tabulate_cli(tmp_path, cli):
    run = lambda *a: cli(*a, "--out", tmp_path, "--no-progress", cwd=tmp_path)
    r = run("simulate", "--n-galaxy", "20000", "--seed", "2", "--sim-id", "c1")
    assert r.returncode == 0, r.stderr
    r = run("tabulate", "--sim-id", "c1", "--logMh", "11.5:14.5:0.25", "--gamma", "0.5:1.5:0.5", "--uniform")
    assert r.returncode == 0, r.stderr
    assert "13 x 3" in r.stdout and "uniform" in r.stdout and (tmp_path / "data/tables/c1/grids.h5").exists()
    r = run("tabulate", "--sim-id", "c1", "--logMh", "11.5:14.5:0.25", "--gamma", "0.5:1.5:0.5")
    assert r.returncode == 0, r.stderr
    assert "adaptive" in r.stdout and " x 3 " in r.stdout
    r = run("tabulate", "--sim-id", "nope")
    assert r.returncode == 2 and "simulate" in r.stderr
