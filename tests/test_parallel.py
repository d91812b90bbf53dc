"""The executor interface: serial, a real spawn process pool, any Executor and a real dask LocalCluster."""
import concurrent.futures as cf
import os

import numpy as np
import pandas as pd
import pytest

from sl_cy import _photometry, _profiles
from sl_cy.grids import DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, adaptive_columns_batch
from sl_cy.ktable import build_K_table
from sl_cy.mock import simulate_mock
from sl_cy.parallel import available_cores, iter_chunks, map_chunks, resolve_n_jobs, resolve_n_threads


def square_with_pid(x):
    """Top-level (picklable) worker: result and the process that computed it."""
    return x * x, os.getpid()


def fail_on_three(x):
    if x == 3:
        raise ValueError("task 3 failed")
    return x


def test_serial_keeps_order_and_runs_here():
    out = map_chunks(square_with_pid, range(6))
    assert [r for r, _ in out] == [0, 1, 4, 9, 16, 25]
    assert {p for _, p in out} == {os.getpid()}
    assert list(iter_chunks(abs, [-1, -2])) == [(0, 1), (1, 2)]
    assert map_chunks(abs, []) == []


def test_process_pool_results_in_task_order():
    out = map_chunks(square_with_pid, range(12), n_jobs=2)
    assert [r for r, _ in out] == [i * i for i in range(12)]
    pids = {p for _, p in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_errors_propagate_serial_and_pool():
    with pytest.raises(ValueError, match="task 3 failed"):
        map_chunks(fail_on_three, range(5))
    with pytest.raises(ValueError, match="task 3 failed"):
        map_chunks(fail_on_three, range(5), n_jobs=2)


def test_given_executor_and_bounded_window():
    with cf.ThreadPoolExecutor(max_workers=3) as ex:
        got = dict(iter_chunks(square_with_pid, range(20), executor=ex, max_in_flight=2))
        assert sorted(got) == list(range(20)) and all(got[i][0] == i * i for i in got)
        assert [r for r, _ in map_chunks(square_with_pid, range(5), executor=ex)] == [0, 1, 4, 9, 16]


def test_n_jobs_validation():
    assert resolve_n_jobs(-1) == available_cores() and resolve_n_jobs(3) == 3
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_jobs must be a positive integer or -1"):
            resolve_n_jobs(bad)
    with pytest.raises(ValueError, match="executor must be None"):
        map_chunks(abs, [1], executor=object())


def _columns(n_threads):
    return adaptive_columns_batch([7.0, 6.0], [-4.0, -3.0], [0.8, 0.7], [11.5, 11.4], DEFAULT_GAMMA_GRID[::8],
                                  DEFAULT_LOGMH_GRID, n_threads=n_threads)


def test_n_threads_has_one_meaning_everywhere():
    """n_threads: a positive integer, or -1 / None for all cores (as n_jobs); 0 and the rest are
    refused with the same message by the Python layer and by every compiled entry point."""
    assert resolve_n_threads(None) == resolve_n_threads(-1) == available_cores()
    assert resolve_n_threads(3) == 3 and resolve_n_threads(np.int64(2)) == 2
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_threads must be a positive integer or -1"):
            resolve_n_threads(bad)
    u = np.linspace(-1.0, 1.0, 9)
    law = (26.5, 0.1, 24.5, -1.3, 20.0, 30.0)
    one = _photometry.k_grid(u, *law, n_threads=1)
    for nt in (None, -1, 2):                               # results never depend on the count
        assert np.array_equal(_photometry.k_grid(u, *law, n_threads=nt), one)
    calls = [lambda nt: _photometry.k_grid(u, *law, n_threads=nt),
             lambda nt: _profiles.build_gnfw_table(0.0, 0.1, 1, -3.0, 0.5, 4, nt),
             lambda nt: build_K_table(0.5, 5.0, 8, n_threads=nt),
             lambda nt: _columns(nt)]
    for call in calls:
        for bad in (0, -3, 2.5):
            with pytest.raises(ValueError, match="n_threads must be a positive integer or -1"):
                call(bad)
    a, b = _columns(1), _columns(None)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def test_progress_bar_only_on_request(capsys):
    map_chunks(abs, range(3), progress=False, desc="quiet-job")
    assert "quiet-job" not in capsys.readouterr().err
    map_chunks(abs, range(3), progress=True, desc="loud-job")
    assert "loud-job" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_local_cluster(dask_client):
    out = map_chunks(square_with_pid, range(10), executor=dask_client)
    assert [r for r, _ in out] == [i * i for i in range(10)]
    assert os.getpid() not in {p for _, p in out}
    with pytest.raises(ValueError, match="task 3 failed"):
        map_chunks(fail_on_three, range(5), executor=dask_client)


def test_mock_identical_on_dask_pool_and_serial(dask_client):
    kw = dict(seed=21, chunk_size=4_000, show_progress=False)
    serial = simulate_mock(16_000, **kw)
    on_dask = simulate_mock(16_000, executor=dask_client, **kw)
    pd.testing.assert_frame_equal(serial.galaxies, on_dask.galaxies)
    pd.testing.assert_frame_equal(serial.lenses, on_dask.lenses)
    assert serial.config_hash == on_dask.config_hash
