"""Benchmark of the sharded likelihood on a dask LocalCluster (issue 16 items 4-5).

1. Memory: bytes per lens the likelihood holds (the compacted kernel arrays, summed over the
   shards; the target is <= 32 kB per lens), the workers' resident-memory growth, and what the
   client allocates while the shards are built (it reads no grid: nothing but the selection
   table it needs for A(eta) anyway).
2. Streaming: the peak memory (tracemalloc) of building one shard in this process from the
   HDF5 file ``block`` lenses at a time, for several blocks, versus loading all grids at once.
3. Overhead: wall time of one posterior evaluation (32 walkers, and 1 walker) in-process
   (:class:`sl_cy.likelihood.Posterior`, 2 OpenMP threads) versus :class:`DistributedPosterior`
   on a 2-worker LocalCluster (processes, 1 thread each): the difference is the cost of the round
   trip through dask, the summation of the shards and any imbalance between them.

Run:  python benchmarks/bench_distributed.py [--galaxies 540000] [--workdir DIR] [--repeat 7]
(the mock and its grids are made once in DIR, default ./bench_distributed_data, then reused).

Recorded 2026-11-30 on the project's 2-core machine **while other jobs loaded it (load average
11-15 on 2 cores)**, mock of 540 000 galaxies (seed 1): 2154 lenses, 1132 valid points per lens;
2 worker processes x 1 thread vs in-process with 2 OpenMP threads:

* memory held by the likelihood: 31.8 kB per lens (28.1 bytes per valid point: logM*, logMh,
  logw0 as float64 and the gamma-node index as int32; plus per-lens inputs and observed table);
  the workers' resident memory grew by 43 MiB each for 1077 lenses (42 kB per lens with the
  allocator's slack); the client allocated 35.6 MiB while the shards were built, 22.6 of them the
  selection table A(eta) needs anyway: it loads no grid (the grids file is 159 MiB).
* streaming, building the kernel of all 2154 lenses in one process: all grids loaded then one
  LikelihoodKernel (the former path of ``sl-cy infer``): peak 929 MiB (452 kB per lens, ~4.4 GB at
  10^4 lenses); ``LensShard`` block 256: peak 192 MiB, block 64: 124 MiB (65 MiB held; the rest
  one block of grids and the selection table).
* overhead per evaluation (median; min in brackets), two runs: at load ~12, 32 walkers in-process
  5.19 s (4.93), LocalCluster 5.78 s (5.59): +0.59 s (+11 %); at load ~8.5 (median of 7),
  5.58 s (4.96) vs 5.70 s (5.12): +0.12 s (+2 %); 1 walker 0.24 s vs 0.23 s; the round trip
  alone (2 lenses, 1 walker) 62-66 ms (min 12-20 ms) vs 79-83 ms (min 31-48 ms) in-process: on
  this overloaded machine the difference is noise of the order of the load. On the same machine at load 3,
  a dask Actor call round trip (what a shard call costs beyond its kernel) took 2.7 ms, a task
  round trip (submit + gather) 12-17 ms; values equal the in-process ones to 8e-16 relative.
"""
from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _rss(pid=None) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def _worker_rss() -> int:
    """RSS after returning freed heap pages to the OS (glibc keeps them otherwise)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return _rss()


def _warm(path) -> int:
    from sl_cy.distributed import LensShard

    return LensShard(path, 0, 1).n_lenses


def _median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def grids_file(galaxies: int, workdir: Path) -> Path:
    from sl_cy.tables import generate_and_save_mock_tabulate

    marker = workdir / f"grids_{galaxies}.txt"
    if marker.exists() and Path(marker.read_text()).exists():
        return Path(marker.read_text())
    t0 = time.perf_counter()
    _, _, gp = generate_and_save_mock_tabulate(galaxies, seed=1, root=workdir, n_jobs=-1, show_progress=False)
    print(f"mock + tabulation of {galaxies} galaxies: {time.perf_counter() - t0:.1f} s")
    marker.write_text(str(gp))
    return Path(gp)


def streaming(gp: Path, n: int):
    from sl_cy.distributed import LensShard
    from sl_cy.grids import load_grids_hdf5
    from sl_cy.likelihood import LikelihoodKernel

    print(f"\n2. peak memory (tracemalloc) of building the kernel of all {n} lenses in this process:")
    for block in (64, 256):
        tracemalloc.start()
        t0 = time.perf_counter()
        s = LensShard(gp, block=block)
        dt = time.perf_counter() - t0
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"   LensShard(block={block:3d}): peak {peak / 2**20:7.1f} MiB, held {s.nbytes / 2**20:6.1f} MiB "
              f"({s.nbytes / n / 1e3:.1f} kB/lens), {dt:.1f} s")
        del s
    tracemalloc.start()
    t0 = time.perf_counter()
    k = LikelihoodKernel(load_grids_hdf5(gp))
    dt = time.perf_counter() - t0
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"   all grids loaded, then one LikelihoodKernel: peak {peak / 2**20:7.1f} MiB "
          f"({peak / n / 1e3:.0f} kB/lens), {dt:.1f} s")
    del k


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--galaxies", type=int, default=540_000, help="mock size (~2000 lenses at 540000)")
    ap.add_argument("--workdir", default="bench_distributed_data")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--walkers", type=int, default=32)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from sl_cy.distributed import DistributedPosterior
    from sl_cy.grids import load_grids_hdf5, save_grids_hdf5
    from sl_cy.likelihood import Posterior
    from sl_cy.selection import selection_for

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    gp = grids_file(args.galaxies, workdir)
    print(f"load average at start: {os.getloadavg()}, cores: {os.cpu_count()}")

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(_warm, str(gp))                  # imports, gNFW and selection tables loaded once
        table = selection_for(None)
        rss0 = client.run(_worker_rss)
        client_rss0 = _rss()
        tracemalloc.start()
        t0 = time.perf_counter()
        post = DistributedPosterior(gp, client)
        t_build = time.perf_counter() - t0
        _, client_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = client.run(_worker_rss)
        k = post.kernel
        n = k.n_lenses
        print(f"\n1. memory, {n} lenses, {k.n_points} valid points ({k.n_points / n:.0f} per lens), "
              f"{len(k.shards)} shards of {[s['n_lenses'] for s in k.shards]} lenses; built in {t_build:.1f} s")
        print(f"   likelihood arrays held on the workers: {k.nbytes / n:.0f} bytes per lens "
              f"({k.nbytes / k.n_points:.1f} per valid point)")
        grow = {w: (rss1[w] - rss0[w]) / 2**20 for w in rss0}
        print(f"   workers' RSS growth: " + ", ".join(f"{v:.0f} MiB" for v in grow.values())
              + f" (= {sum(grow.values()) * 2**20 / n / 1e3:.1f} kB per lens incl. allocator slack)")
        print(f"   client: tracemalloc peak while building {client_peak / 2**20:.1f} MiB (the selection table "
              f"A(eta) needs: {(table.T.nbytes + table._logT.nbytes) / 2**20:.1f} MiB), RSS growth {(_rss() - client_rss0) / 2**20:.0f} MiB; "
              f"grids file {gp.stat().st_size / 2**20:.0f} MiB")

        print("\n3. overhead per posterior evaluation (median of "
              f"{args.repeat}; load average {os.getloadavg()[0]:.2f})")
        ref = Posterior(load_grids_hdf5(gp), n_threads=2)
        rng = np.random.default_rng(0)
        truth = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
        for nw in (args.walkers, 1):
            th = truth + 0.02 * rng.standard_normal((nw, 6))
            a, b = post(th), ref(th)
            diff = float(np.max(np.abs(a - b) / np.abs(b)))
            post(th)
            ref(th)
            td, td_min = _median_time(lambda: post(th), args.repeat)
            tr, tr_min = _median_time(lambda: ref(th), args.repeat)
            print(f"   {nw:3d} walkers: in-process {tr * 1e3:8.1f} ms (min {tr_min * 1e3:.1f}), 2-worker LocalCluster "
                  f"{td * 1e3:8.1f} ms (min {td_min * 1e3:.1f}); difference {1e3 * (td - tr):+.1f} ms; "
                  f"max rel. diff of values {diff:.1e}")
        post.close()
        tiny = workdir / "grids_2lenses.h5"
        save_grids_hdf5(tiny, load_grids_hdf5(gp, lenses=np.arange(2)))
        with DistributedPosterior(tiny, client) as p2:
            r2 = Posterior(load_grids_hdf5(tiny), n_threads=2)
            th = truth[None, :]
            p2(th)
            td, td_min = _median_time(lambda: p2(th), 5 * args.repeat)
            tr, tr_min = _median_time(lambda: r2(th), 5 * args.repeat)
            print(f"   round trip alone (2 lenses, 1 walker): in-process {tr * 1e3:.2f} ms (min {tr_min * 1e3:.2f}), "
                  f"LocalCluster {td * 1e3:.2f} ms (min {td_min * 1e3:.2f})")
        print(f"load average at end: {os.getloadavg()}")
    streaming(gp, n)


if __name__ == "__main__":
    main()
