"""The sharded likelihood on a real dask LocalCluster (2 worker processes): equal to the in-process
posterior, shard boundaries, workers read their own shards, errors, a lost worker."""
import json
import os
import pickle

import h5py
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from sl_cy.distributed import DistributedPosterior, LensShard, shard_bounds  # noqa: E402
from sl_cy.grids import load_grids_hdf5, save_grids_hdf5  # noqa: E402
from sl_cy.inference import run_mcmc  # noqa: E402
from sl_cy.likelihood import LikelihoodKernel, Posterior  # noqa: E402
from sl_cy.tables import generate_and_save_mock_tabulate  # noqa: E402

TRUTH = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])


@pytest.fixture(scope="module")
def grids_file(tmp_path_factory):
    _, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=tmp_path_factory.mktemp("dist"),
                                               show_progress=False)
    return gp


@pytest.fixture(scope="module")
def small_file(grids_file, tmp_path_factory):
    """Seven lenses: not divisible by 2, 3 or 4 shards."""
    p = tmp_path_factory.mktemp("dist7") / "grids.h5"
    save_grids_hdf5(p, load_grids_hdf5(grids_file, lenses=np.arange(7)))
    return p


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def reference(grids_file):
    return Posterior(load_grids_hdf5(grids_file))


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return TRUTH + np.array([0.05, 0.05, 0.2, 0.05, 0.1, 0.05]) * rng.standard_normal((n, 6))


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    f = np.isfinite(b)
    return float(np.max(np.abs(a[f] - b[f]) / np.abs(b[f]))) if f.any() else 0.0


def test_equal_to_in_process_posterior(client, grids_file, reference):
    with DistributedPosterior(grids_file, client) as post:
        assert post.n_lenses == reference.n_lenses == 75
        assert len(post.kernel.shards) == 2
        batch = _batch()
        batch[3, 3] = -0.1                          # sigma_h < 0: -inf on both, not sent to the shards
        assert _rel(post(batch), reference(batch)) < 1e-10
        assert np.isneginf(post(batch)[3])
        for e in (TRUTH, batch[0], batch[5]):           # one eta at a time -> float
            v = post(e)
            assert isinstance(v, float) and abs(v - reference(e)) < 1e-10 * abs(v)
        assert _rel(post.log_likelihood(batch[:3]), reference.log_likelihood(batch[:3])) < 1e-10
        assert _rel(post.kernel.per_lens(batch[:2]), reference.kernel.per_lens(batch[:2])) < 1e-12
        assert post.explain(TRUTH) == reference.explain(TRUTH) == ""


def test_fixed_parameters_and_no_selection(client, grids_file):
    fixed = {"mu_gamma": 1.0, "sigma_gamma": 0.2}
    ref = Posterior(load_grids_hdf5(grids_file), fixed=fixed, use_selection=False)
    with DistributedPosterior(grids_file, client, fixed=fixed, use_selection=False) as post:
        assert post.free_names == ref.free_names and post.ndim == 4
        th = post.free_theta(_batch(5, seed=1))
        assert _rel(post(th), ref(th)) < 1e-10


@pytest.mark.parametrize("n_shards, block", [(4, 1), (3, 2), (9, 256)])
def test_shard_boundaries(client, small_file, n_shards, block):
    ref = LikelihoodKernel(load_grids_hdf5(small_file))
    with DistributedPosterior(small_file, client, n_shards=n_shards, block=block) as post:
        shards = post.kernel.shards
        assert [(s["start"], s["stop"]) for s in shards] == shard_bounds(7, n_shards)
        assert shards[0]["start"] == 0 and shards[-1]["stop"] == 7
        assert all(a["stop"] == b["start"] for a, b in zip(shards, shards[1:]))
        assert sum(s["n_lenses"] for s in shards) == 7 and post.kernel.n_points == ref.n_points
        batch = _batch(4, seed=2)
        assert _rel(post.kernel.per_lens(batch), ref.per_lens(batch)) < 1e-12
        assert _rel(post.kernel(batch), ref(batch)) < 1e-12
    if n_shards >= 4:
        assert min(s["n_lenses"] for s in shards) == 1        # a shard of one lens


def test_shard_bounds_cover_every_lens_once():
    for n in (1, 2, 7, 100):
        for k in (1, 2, 3, 7, 150):
            b = shard_bounds(n, k)
            assert np.array_equal(np.concatenate([np.arange(s, e) for s, e in b]), np.arange(n))
            sizes = [e - s for s, e in b]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="n_shards"):
        shard_bounds(5, 0)


def test_workers_read_their_own_shards(client, grids_file, reference, monkeypatch):
    """The client never opens the grids file (h5py refuses it here) and sends only the path and lens
    ranges; each worker process read its own shard."""
    target = os.path.realpath(grids_file)
    real_file = h5py.File

    def guarded(name, *a, **kw):
        if isinstance(name, (str, os.PathLike)) and os.path.realpath(name) == target:
            raise AssertionError("the client opened the grids file")
        return real_file(name, *a, **kw)

    monkeypatch.setattr(h5py, "File", guarded)
    sent = []
    real_submit = client.submit

    def recording_submit(func, *args, **kw):
        sent.append((func, args, kw))
        return real_submit(func, *args, **kw)

    monkeypatch.setattr(client, "submit", recording_submit)
    with DistributedPosterior(grids_file, client) as post:
        batch = _batch()
        assert _rel(post(batch), reference(batch)) < 1e-10
        where = {s["where"] for s in post.kernel.shards}
        assert len(where) == 2 and all(w.startswith("dask worker tcp://") for w in where)
        assert post.kernel.nbytes > 24 * post.kernel.n_points            # held on the workers
    assert sent, "nothing was submitted"
    for func, args, kw in sent:
        payload = [*args, *(v for k, v in kw.items() if k not in ("workers", "key"))]
        assert not any(isinstance(v, np.ndarray) for v in payload), func
        assert len(pickle.dumps(payload)) < 1000, func                   # a path, a lens range, a token


def test_unreadable_grids_file_is_named(client, tmp_path):
    missing = tmp_path / "nowhere" / "grids.h5"
    with pytest.raises(FileNotFoundError, match=r"cannot be read by dask worker tcp://.*every worker sees"):
        DistributedPosterior(missing, client)
    text = tmp_path / "grids.h5"
    text.write_text("not hdf5")
    with pytest.raises(OSError, match=str(text)):
        DistributedPosterior(text, client)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1]
    with pytest.raises(ValueError, match="not an sl_cy grids file"):
        DistributedPosterior(other, client)


def test_run_mcmc_gives_the_in_process_chain(client, small_file):
    # a ball start: the chains are compared to 1e-12 (a MAP start equals the in-process one to the
    # optimiser's tolerance: test_infer_on_the_cluster_gives_the_in_process_run)
    kw = dict(nwalkers=12, nsteps=4, progress=False, seed=5, start="ball")
    ref = run_mcmc(load_grids_hdf5(small_file), **kw)
    with DistributedPosterior(small_file, client) as post:
        s = run_mcmc(post, **kw)
    assert np.allclose(s.get_chain(), ref.get_chain(), rtol=0, atol=1e-12)
    assert _rel(s.get_log_prob(), ref.get_log_prob()) < 1e-10


def test_closed_and_not_picklable(client, small_file):
    post = DistributedPosterior(small_file, client)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(post)
    post.close()
    with pytest.raises(RuntimeError, match="closed"):
        post(TRUTH)


def test_a_lost_worker_is_replaced(client, small_file):
    """A killed worker process: its shard is read again on the remaining worker, same values."""
    try:
        with DistributedPosterior(small_file, client) as post:
            v0 = post(_batch(3))
            w = post.kernel._actor_workers[0]
            with pytest.raises(Exception):
                client.run(os._exit, 1, workers=[w])
            assert _rel(post(_batch(3)), v0) < 1e-12
            assert w not in post.kernel._actor_workers
    finally:
        client.wait_for_workers(2, timeout=60)       # the nanny restarts the killed worker for the next tests


def test_lens_shard_in_process_equals_the_kernel(small_file):
    ref = LikelihoodKernel(load_grids_hdf5(small_file))
    s = LensShard(small_file, 0, 7, block=3)
    assert [k.n_lenses for k in s.kernels] == [3, 3, 1]
    assert _rel(s.per_lens(_batch(2)), ref.per_lens(_batch(2))) < 1e-12
    full = LensShard(small_file, block=2)                       # the whole file, as an in-process kernel
    assert full.n_lenses == 7 and full.observed.equals(ref.observed)
    full.n_threads = 1
    assert all(k.n_threads == 1 for k in full.kernels)
    post, post_ref = Posterior(full), Posterior(load_grids_hdf5(small_file))
    assert _rel(post(_batch(5)), post_ref(_batch(5))) < 1e-12
    assert _rel(pickle.loads(pickle.dumps(full))(_batch(2)), ref(_batch(2))) < 1e-12
    with pytest.raises(ValueError, match=r"lens range \[5, 9\)"):
        LensShard(small_file, 5, 9)
    with pytest.raises(RuntimeError, match="has changed"):
        LensShard(small_file, 0, 7, token=(1, 2))


def _shard_keys(c):
    return [k for k in c.who_has() if str(k).startswith("sl_cy-lens-shard")]


def test_infer_on_the_cluster_gives_the_in_process_run(client, grids_file, tmp_path):
    """sl_cy.pipeline.infer(client=...): the same chain and run file as in one process; the shards are
    released at the end."""
    import time

    from sl_cy.io import read_dataframe
    from sl_cy.pipeline import infer

    sid, root = grids_file.parent.name, grids_file.parents[3]
    kw = dict(root=root, out=tmp_path, nwalkers=14, nsteps=4, seed=1, n_jobs=1, progress=False, save_plots=False)
    local = infer(sid, run_id="local", **kw)
    # its own MAP start (L-BFGS on the workers' summed gradients): the in-process start to the
    # optimiser's tolerance (the sums differ in their last bits), so the same chain to ~1e-5
    own = infer(sid, run_id="dask_own_start", client=client, **kw)
    start = json.loads((local.run_dir / "params.json").read_text())["initial_state"]
    assert np.allclose(json.loads((own.run_dir / "params.json").read_text())["initial_state"], start, rtol=1e-5,
                       atol=1e-6)
    with h5py.File(local.run_dir / "run.h5", "r") as a, h5py.File(own.run_dir / "run.h5", "r") as b:
        assert np.allclose(a["mcmc/chain"][()], b["mcmc/chain"][()], rtol=1e-5, atol=1e-6)
    # from the same start, the identical chain
    dist = infer(sid, run_id="dask", client=client, initial_state=start, **kw)
    with h5py.File(local.run_dir / "run.h5", "r") as a, h5py.File(dist.run_dir / "run.h5", "r") as b:
        assert np.array_equal(a["mcmc/chain"][()], b["mcmc/chain"][()])
        assert _rel(b["mcmc/log_prob"][()], a["mcmc/log_prob"][()]) < 1e-12
        assert read_dataframe(a["observed"]).equals(read_dataframe(b["observed"]))
    for _ in range(50):
        if not _shard_keys(client):
            break
        time.sleep(0.1)
    assert not _shard_keys(client)


def test_cli_scheduler_and_dask_workers(client, grids_file, tmp_path, cli):
    sid, root = grids_file.parent.name, grids_file.parents[3]
    r = cli("infer", "--sim-id", sid, "--out", root, "--run-id", "cli_dask", "--scheduler", client.scheduler.address,
            "--nwalkers", 14, "--nsteps", 3, "--seed", 1, "--no-plots", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = root / "inference" / sid / "cli_dask"
    assert (run / "run.h5").exists()
    r = cli("resume", run, "--nsteps", 5, "--scheduler", client.scheduler.address, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with h5py.File(run / "chain.h5", "r") as f:
        assert f["mcmc/chain"].shape[0] == 5
    r = cli("infer", "--sim-id", sid, "--out", root, "--dask-workers", 0, cwd=tmp_path)
    assert r.returncode == 2 and "--dask-workers must be >= 1, got 0" in r.stderr
    r = cli("infer", "--sim-id", sid, "--out", root, "--dask-workers", 1, "--scheduler", "tcp://x:1", cwd=tmp_path)
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


@pytest.mark.skipif(not hasattr(LikelihoodKernel, "value_and_grad"), reason="needs the kernel's eta-gradients")
def test_gradients_summed_on_the_workers(client, grids_file, reference):
    batch = _batch(3, seed=4)
    with DistributedPosterior(grids_file, client, n_shards=3) as post:
        v, g = post.kernel.value_and_grad(batch)
        rv, rg = reference.kernel.value_and_grad(batch)
        assert _rel(v, rv) < 1e-12 and np.allclose(g, rg, rtol=1e-11, atol=1e-9 * np.abs(rg).max())
        lp, gl = post.kernel.per_lens_and_grad(batch[0])
        rlp, rgl = reference.kernel.per_lens_and_grad(batch[0])
        assert lp.shape == rlp.shape and gl.shape == rgl.shape == (75, 6) and np.allclose(gl, rgl, rtol=1e-12)
        # the posterior's gradient comes from the sums the workers made: no per-lens array is gathered
        assert post.has_grad
        gathered = []
        per_lens = type(post.kernel).per_lens_and_grad
        try:
            type(post.kernel).per_lens_and_grad = lambda self, e: gathered.append(e) or per_lens(self, e)
            a, ga = post.log_prob_and_grad(batch)
        finally:
            type(post.kernel).per_lens_and_grad = per_lens
        assert not gathered
        b, gb = reference.log_prob_and_grad(batch)
        assert _rel(a, b) < 1e-10 and np.allclose(ga, gb, rtol=1e-9, atol=1e-9 * np.abs(gb).max())
        # so the gradient-based MAP runs on the cluster, and finds the in-process MAP
        from sl_cy.inference import find_map

        m, r = find_map(post, batch[0, post._free_idx]), find_map(reference, batch[0, reference._free_idx])
        assert m["method"] == "L-BFGS-B" and np.allclose(m["x"], r["x"], rtol=0, atol=1e-5)
