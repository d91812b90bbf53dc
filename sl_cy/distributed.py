"""The likelihood of many lenses on a dask.distributed cluster: lens shards live on the workers.

A ``grids.h5`` (:func:`sl_cy.grids.save_grids_hdf5`) is cut into contiguous lens ranges, the
*shards*. Each shard is a :class:`LensShard`, built by a task on one worker from the file path and
its lens range only: the worker opens the HDF5 file itself and reads its lenses ``block`` at a
time, so no grid array ever passes through the client or the scheduler, and a worker's peak
memory is its shard plus one block. The shard stays in the worker's memory as the result of that
task (a dask future the client holds); if its worker dies, dask rebuilds it on another worker from
the same (path, range) -- refused, with a message, when the file has changed meanwhile.

A posterior evaluation sends the eta batch (n, 6) to every shard and gathers, per shard, the sums
over its lenses of log p(d_i | eta) and its number of lenses. The selection term -N log A(eta) and
the prior are added once, on the client, by the same :class:`sl_cy.likelihood.Posterior` code as
in-process: :class:`DistributedPosterior` is a ``Posterior`` whose kernel is a
:class:`ShardedKernel` (the sums over the shards) instead of an in-process
:class:`sl_cy.likelihood.LikelihoodKernel`; it works with :func:`sl_cy.inference.run_mcmc`
(vectorised walkers: one round trip per step).

Requirements of the cluster: every worker sees the grids file at the same absolute path (a
shared filesystem), runs the same sl_cy, and finds the selection-rate table of the forward model
in its cache (``$SL_CY_CACHE_DIR``, default ``~/.cache/sl_cy``; the client builds it there first:
share that folder too, or each worker builds it once, ~50 s on one core). ``dask[distributed]``
is an optional dependency (``pip install "sl_cy[dask]"``).
"""
from __future__ import annotations

import contextlib
import os
import socket

import numpy as np

from sl_cy.likelihood import LikelihoodKernel, Posterior, _eta2d

__all__ = ["shard_bounds", "LensShard", "ShardedKernel", "DistributedPosterior", "dask_client",
           "DEFAULT_BLOCK"]

#: Lenses read from the HDF5 file (and compacted into one kernel) at a time when a shard is built:
#: bounds the transient memory of a worker to ~block x 160 kB on the default adaptive grids.
DEFAULT_BLOCK = 256


def shard_bounds(n_lenses: int, n_shards: int) -> list:
    """Contiguous lens ranges [start, stop) of ``n_shards`` shards as equal as possible (sizes
    differ by at most one, the larger ones first; never an empty shard).

    Parameters
    ----------
    n_lenses : int
        >= 1.
    n_shards : int
        >= 1; more shards than lenses gives one lens per shard.

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> shard_bounds(7, 3)
    [(0, 3), (3, 5), (5, 7)]
    >>> shard_bounds(2, 5)
    [(0, 1), (1, 2)]
    """
    n_lenses, n_shards = int(n_lenses), int(n_shards)
    if n_lenses < 1:
        raise ValueError(f"n_lenses must be >= 1, got {n_lenses}")
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    n_shards = min(n_shards, n_lenses)
    size, extra = divmod(n_lenses, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + size + (i < extra)
        out.append((start, stop))
        start = stop
    return out


# --------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------
def _where() -> str:
    """'dask worker ADDRESS on host H' inside a worker, 'host H' elsewhere (for messages)."""
    try:
        from distributed import get_worker

        return f"dask worker {get_worker().address} on host {socket.gethostname()}"
    except (ImportError, ValueError):
        return f"host {socket.gethostname()}"


def _worker_threads() -> int | None:
    """The threads dask gave this worker (the shard's kernel uses that many), None outside a worker."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _file_token(path: str) -> tuple:
    """(size, mtime_ns) of the file: a shard rebuilt after a worker died must read the same file."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _grids_header(path: str) -> dict:
    """Read the small header of a grids file where this runs (a worker): number of lenses, forward
    model, gamma axis and the file token. Raises a message naming the path and the worker when
    the file cannot be read there."""
    from sl_cy.pipeline.inputs import grids_attrs

    try:
        token = _file_token(path)
        a = grids_attrs(path)
    except OSError as err:       # FileNotFoundError, PermissionError, or h5py's OSError for a non-HDF5 file
        raise type(err)(f"the grids file {path} cannot be read by {_where()} ({err}). Each dask worker opens the "
                        "grids file itself: it must be on a filesystem every worker sees, at the same absolute path, "
                        "readable by the workers' user, and be an HDF5 file written by "
                        "sl_cy.grids.save_grids_hdf5") from None
    except KeyError as err:
        a = {"kind": f"(none: {err})"}
    if a.get("kind") != "sl_cy.grids":
        raise ValueError(f"{path} is not an sl_cy grids file (written by sl_cy.grids.save_grids_hdf5; its 'kind' "
                         f"attribute is {a.get('kind')!r}), as read by {_where()}")
    return dict(n_lenses=a["_n_lenses"], forward_model=a.get("config", {}).get("forward_model"),
                gamma_axis=a["_gamma_axis"], token=token)


class LensShard(LikelihoodKernel):
    """The likelihood kernel of the lenses [start, stop) of a grids file, read from HDF5 ``block``
    lenses at a time: what one dask worker holds, and, in one process, a
    :class:`sl_cy.likelihood.LikelihoodKernel` built with the memory of one block of grids instead
    of all of them (pass it to :class:`sl_cy.likelihood.Posterior`).

    Parameters
    ----------
    path : str or Path
        A grids file (:func:`sl_cy.grids.save_grids_hdf5`).
    start, stop : int, optional
        Lens range (0 <= start < stop <= number of lenses); default all lenses.
    selection : bool
        As :class:`sl_cy.likelihood.LikelihoodKernel` (the one-entry-per-galaxy factor).
    block : int
        Lenses read and compacted at a time (peak memory while building: one block of grids).
    n_threads : int, optional
        OpenMP threads of the kernels (default: the dask worker's threads inside a worker, else all
        cores).
    token : tuple, optional
        Expected (size, mtime_ns) of the file: a file changed since the shards were planned is refused.

    Attributes
    ----------
    n_lenses, n_points : int
    nbytes : int
        Bytes the shard holds (compacted valid points, per-lens inputs and observed table).
    kernels : list of LikelihoodKernel
        One per block.

    Performance
    -----------
    Building: ~4 ms per lens (reading, compacting, the selection-rate factor; the rate table loaded
    once), peak memory one block of grids (~450 kB per lens) on top of what is held.
    Holding: 24 bytes per valid grid point and 4 (n_gamma + 1) per lens (31.5 kB per lens on the
    default adaptive grids, ~1310 points per lens).
    Evaluating: the kernel's cost (~5 us per lens per eta per core for batches of eta). Measured in
    ``benchmarks/bench_distributed.py``.

    Precision
    ---------
    ``shard(eta)`` equals the sum of :meth:`LikelihoodKernel.per_lens` over the same lenses up to
    rounding of the summation order (~1e-16 relative).

    Examples
    --------
    >>> import tempfile
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> _, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=tempfile.mkdtemp(), show_progress=False)
    >>> s = LensShard(gp, 2, 9, block=3)
    >>> s.n_lenses, len(s.kernels)
    (7, 3)
    >>> s([0.0, 12.91, 2.04, 0.37, 1.0, 0.2]).shape
    (1,)
    """

    def __init__(self, path, start: int = 0, stop: int | None = None, *, selection: bool = True,
                 block: int = DEFAULT_BLOCK, n_threads: int | None = None, token: tuple | None = None):
        # no super().__init__: the arrays are those of one LikelihoodKernel per block
        from sl_cy.grids import load_grids_hdf5

        path = os.fspath(path)
        head = _grids_header(path)
        start, stop, block = int(start), int(head["n_lenses"] if stop is None else stop), int(block)
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        if token is not None and tuple(head["token"]) != tuple(token):
            raise RuntimeError(f"the grids file {path} has changed (size, mtime) since the shards were planned "
                               f"({tuple(token)} -> {head['token']}, seen by {_where()}); build the "
                               "DistributedPosterior again")
        if not (0 <= start < stop <= head["n_lenses"]):
            raise ValueError(f"lens range [{start}, {stop}) is not inside the {head['n_lenses']} lenses of {path}")
        self.path, self.start, self.stop, self.selection = path, start, stop, bool(selection)
        self.token = head["token"]
        worker_threads = _worker_threads()
        n_threads = worker_threads if n_threads is None else n_threads
        engine = None
        if self.selection and head["forward_model"] is not None:
            from sl_cy.selection import selection_for

            # loaded once for all blocks (cached on disk, or built here: serially in a dask worker,
            # which has no process pool)
            engine = selection_for(head["forward_model"], n_lenses=head["n_lenses"],
                                   n_jobs=1 if worker_threads is not None else -1, progress=False)
        self.kernels = []
        for s in range(start, stop, block):
            grids = load_grids_hdf5(path, lenses=np.arange(s, min(s + block, stop)))
            self.kernels.append(LikelihoodKernel(grids, selection=self.selection, n_threads=n_threads,
                                                 rate_engine=engine))
            del grids
        self.rate_engine = engine
        k0 = self.kernels[0]
        self.forward_model = k0.forward_model
        self.logMh_axis, self.gamma_axis, self.grid_shape = k0.logMh_axis, k0.gamma_axis, k0.grid_shape
        self.use_gamma = k0.use_gamma
        self.n_lenses = sum(k.n_lenses for k in self.kernels)
        self.n_points = sum(k.n_points for k in self.kernels)

    @property
    def n_threads(self) -> int:
        """OpenMP threads of the blocks' kernels (settable, as LikelihoodKernel.n_threads)."""
        return self.kernels[0].n_threads

    @n_threads.setter
    def n_threads(self, value) -> None:
        for k in self.kernels:
            k.n_threads = int(value)

    @property
    def observed(self):
        """The lenses' observed table (the blocks' tables, concatenated on access)."""
        import pandas as pd

        return pd.concat([k.observed for k in self.kernels], ignore_index=True)

    @property
    def nbytes(self) -> int:
        """Bytes the shard's kernels hold: their numpy arrays and their lenses' observed table."""
        return int(sum(v.nbytes for k in self.kernels for v in vars(k).values() if isinstance(v, np.ndarray))
                   + sum(int(k.observed.memory_usage(deep=True).sum()) for k in self.kernels))

    def per_lens(self, eta) -> np.ndarray:
        """log p(d_i | eta) of the shard's lenses: (n, 6) -> (n, n_lenses)."""
        e = np.atleast_2d(np.asarray(eta, dtype=float))
        return np.concatenate([k.per_lens(e) for k in self.kernels], axis=1)

    def __call__(self, eta) -> np.ndarray:
        """Sum over the shard's lenses of log p(d_i | eta): (6,) or (n, 6) -> (n,)."""
        e = np.atleast_2d(np.asarray(eta, dtype=float))
        out = np.zeros(len(e))
        with np.errstate(invalid="ignore"):
            for k in self.kernels:
                out += k(e)
        return out

    def per_lens_and_grad(self, eta) -> tuple:
        """log p(d_i | eta) and its eta-gradient for the shard's lenses: (n, 6) -> ((n, n_lenses), (n, n_lenses, 6))
        (:meth:`sl_cy.likelihood.LikelihoodKernel.per_lens_and_grad` of each block)."""
        e = np.atleast_2d(np.asarray(eta, dtype=float))
        parts = [k.per_lens_and_grad(e) for k in self.kernels]
        return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1)

    def value_and_grad(self, eta) -> tuple:
        """Sum over the shard's lenses of log p(d_i | eta) and of its gradient: (n, 6) -> ((n,), (n, 6))."""
        e = np.atleast_2d(np.asarray(eta, dtype=float))
        v, g = np.zeros(len(e)), np.zeros((len(e), 6))
        with np.errstate(invalid="ignore"):
            for k in self.kernels:
                vk, gk = k.value_and_grad(e)
                v += vk
                g += gk
        return v, g

    def summary(self) -> dict:
        """What the client needs to know of the shard (small): counts, bytes, forward model, gamma
        axis, and the extremes of the lenses' redshift columns."""
        z = {}
        for col in ("zl", "zs"):
            vals = [np.asarray(k.observed[col], float) for k in self.kernels if col in k.observed]
            if vals:
                v = np.concatenate(vals)
                z[col] = (float(v.min()), float(v.max()))
        return dict(start=self.start, stop=self.stop, n_lenses=self.n_lenses, n_points=self.n_points,
                    nbytes=self.nbytes, forward_model=self.forward_model.to_dict(), gamma_axis=self.gamma_axis,
                    redshift_range=z, where=_where())


class _ShardActor:
    """The dask Actor holding one :class:`LensShard` on its worker: method calls go straight to the
    object (no task per call), so a round trip costs ~ms."""

    def __init__(self, *args, **kwargs):
        self.shard = LensShard(*args, **kwargs)

    def loglike(self, eta) -> tuple:
        """(sum over the shard's lenses of log p(d_i | eta) (n,), the shard's lens count)."""
        return self.shard(eta), self.shard.n_lenses

    def per_lens(self, eta) -> np.ndarray:
        return self.shard.per_lens(eta)

    def value_and_grad(self, eta) -> tuple:
        return (*self.shard.value_and_grad(eta), self.shard.n_lenses)

    def per_lens_and_grad(self, eta) -> tuple:
        return self.shard.per_lens_and_grad(eta)

    def summary(self) -> dict:
        return self.shard.summary()


# --------------------------------------------------------------------------------------------
# client side
# --------------------------------------------------------------------------------------------
def _worker_lost(exc: BaseException) -> bool:
    """Whether an actor call failed because its worker went away (connection closed, actor lost)."""
    return isinstance(exc, OSError) or "Actor was lost" in str(exc) or type(exc).__name__ in (
        "CommClosedError", "KilledWorker", "FutureCancelledError")


def _is_client(obj) -> bool:
    from sl_cy.parallel import _is_dask_client

    return _is_dask_client(obj)


class ShardedKernel(LikelihoodKernel):
    """A :class:`sl_cy.likelihood.LikelihoodKernel` whose lenses live on the workers of a dask
    cluster, in shards each worker read from the grids file itself (module notes).

    Parameters
    ----------
    grids_path : str or Path
        A grids file (:func:`sl_cy.grids.save_grids_hdf5`) at a path every worker can read (made
        absolute here; the client itself does not need to see it).
    client : distributed.Client
    selection : bool
        As :class:`sl_cy.likelihood.LikelihoodKernel`.
    n_shards : int, optional
        Default: one per worker (each uses its worker's threads). More shards than workers are
        spread round-robin.
    block : int
        Lenses read at a time while a shard is built (:class:`LensShard`).
    worker_timeout : float
        Seconds to wait for a first worker (a batch-queue cluster may start empty).

    Attributes
    ----------
    n_lenses, n_points : int
    nbytes : int
        Bytes the shards hold together (on the workers).
    shards : list of dict
        Per shard: ``start``, ``stop``, ``n_lenses``, ``n_points``, ``nbytes``, ``where``.
    observed : pandas.DataFrame
        Only the extremes of the lenses' ``zl``/``zs`` per shard (what the client-side checks
        use; the lenses' table stays on the workers).

    Raises
    ------
    OSError
        The workers cannot read the file (the message names the path and the worker).
    ValueError
        Not a grids file; a lens without a valid grid point (as LikelihoodKernel).

    Performance
    -----------
    Per call: one dask Actor call per shard, in parallel (a round trip of ~3 ms on a local
    cluster; ``benchmarks/bench_distributed.py``), on top of the kernels' n_lens x n_eta x ~20 us
    divided among the workers' cores. Building: each worker reads its shard (~10 ms per lens with
    the selection-rate factor).

    Precision
    ---------
    Equal to the in-process kernel's sum up to the summation order (~1e-16 relative).
    """

    def __init__(self, grids_path, client, *, selection: bool = True, n_shards: int | None = None,
                 block: int = DEFAULT_BLOCK, worker_timeout: float = 120.0):
        # no super().__init__: the arrays of the base class are on the workers, only its interface is shared
        import pandas as pd

        from sl_cy.forward import ForwardModel

        if not _is_client(client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        self.client = client
        self.path = os.path.abspath(os.fspath(grids_path))
        self.selection = bool(selection)
        self.block = int(block)
        self.n_threads = None                 # each shard uses its worker's threads
        self._actors: list = []
        self._actor_futures: list = []
        self._actor_workers: list = []
        client.wait_for_workers(1, timeout=worker_timeout)
        head = client.submit(_grids_header, self.path, pure=False).result()
        if head["forward_model"] is None:
            raise ValueError(f"{self.path} carries no forward model (tabulated by an older sl_cy): tabulate it again")
        fm = ForwardModel.from_dict(head["forward_model"])
        self.rate_engine = None
        if self.selection:
            from sl_cy.selection import selection_for

            # the rate table the shards need (that of the whole sample): built here (in parallel) if missing
            self.rate_engine = selection_for(fm, n_lenses=head["n_lenses"])
        self._token = head["token"]
        workers = sorted(client.nthreads())
        self.bounds = shard_bounds(head["n_lenses"], len(workers) if n_shards is None else int(n_shards))
        try:
            self._start(range(len(self.bounds)), workers)
            summaries = [f.result() for f in [a.summary() for a in self._actors]]
        except BaseException:
            self.close()
            raise
        for s in summaries:
            fm.check_same(ForwardModel.from_dict(s.pop("forward_model")), "the grids file's header",
                          f"the shard of lenses [{s['start']}, {s['stop']})")
        self.forward_model = fm
        self.gamma_axis = np.asarray(summaries[0]["gamma_axis"], dtype=float)
        self.use_gamma = len(self.gamma_axis) > 1
        self.n_lenses = sum(s["n_lenses"] for s in summaries)
        self.n_points = sum(s["n_points"] for s in summaries)
        if self.n_lenses != head["n_lenses"]:
            raise RuntimeError(f"the shards hold {self.n_lenses} lenses, the file {head['n_lenses']}")
        z: dict = {}
        for s in summaries:
            for col, (lo, hi) in s.pop("redshift_range").items():
                z.setdefault(col, []).extend([lo, hi])
        self.observed = pd.DataFrame(z)
        self.shards = [{k: s[k] for k in ("start", "stop", "n_lenses", "n_points", "nbytes", "where")}
                       for s in summaries]

    def _start(self, which, workers) -> None:
        """Create (or re-create) the actors of the shards ``which``, round-robin over ``workers``;
        wait until every one has read its shard (an error of any is raised here)."""
        from distributed import wait

        n = len(self.bounds)
        if not self._actors:
            self._actors, self._actor_futures, self._actor_workers = [None] * n, [None] * n, [None] * n
        new = {}
        for j, i in enumerate(which):
            a, b = self.bounds[i]
            new[i] = self.client.submit(_ShardActor, self.path, a, b, selection=self.selection, block=self.block,
                                        token=self._token, workers=[workers[j % len(workers)]],
                                        allow_other_workers=True, actor=True, pure=False,
                                        key=f"sl_cy-lens-shard-{a}-{b}-{os.urandom(4).hex()}")
        wait(list(new.values()))
        where = self.client.who_has(list(new.values()))
        for i, f in new.items():
            self._actors[i] = f.result()                    # raises the shard's error (unreadable file, ...)
            self._actor_futures[i] = f
            self._actor_workers[i] = (where.get(f.key) or [None])[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the shards hold on the workers."""
        return int(sum(s["nbytes"] for s in self.shards))

    def _map(self, method: str, e: np.ndarray) -> list:
        """Call ``method(e)`` on every shard's actor and gather the answers. A shard whose worker was
        lost (killed, out of memory, end of a batch job) is read again on a remaining worker and
        asked again; any other error is raised as it is."""
        if not self._actors:
            raise RuntimeError("this ShardedKernel is closed")
        for attempt in range(3):
            calls, out, lost = [], [], []
            for i, a in enumerate(self._actors):
                try:
                    calls.append(getattr(a, method)(e))
                except RuntimeError as exc:           # the actor's future already knows its worker is gone
                    if not _worker_lost(exc):
                        raise
                    calls.append(None)
            for i, c in enumerate(calls):
                try:
                    if c is None:
                        raise RuntimeError("Worker holding Actor was lost")
                    out.append(c.result())
                except Exception as exc:              # noqa: BLE001 - only a lost worker is handled here
                    if not _worker_lost(exc) or attempt == 2:
                        raise
                    lost.append(i)
            if not lost:
                return out
            gone = {self._actor_workers[i] for i in lost}
            alive = sorted(self.client.nthreads())
            self.client.cancel([self._actor_futures[i] for i in lost])
            self._start(lost, [w for w in alive if w not in gone] or alive)
        raise AssertionError("unreachable")         # pragma: no cover

    def per_lens(self, eta) -> np.ndarray:
        """log p(d_i | eta) per lens, gathered from the shards: (6,) -> (n_lens,), (n, 6) -> (n, n_lens)."""
        one, e = _eta2d(eta)
        out = np.concatenate(self._map("per_lens", np.ascontiguousarray(e)), axis=1)
        return out[0] if one else out

    def __call__(self, eta) -> np.ndarray:
        """Sum over all lenses of log p(d_i | eta): the per-shard sums added here. (6,) or (n, 6) -> (n,)."""
        _, e = _eta2d(eta)
        res = self._map("loglike", np.ascontiguousarray(e))
        n = sum(c for _, c in res)
        if n != self.n_lenses:
            raise RuntimeError(f"the shards answered for {n} lenses, expected {self.n_lenses}")
        out = np.zeros(len(e))
        with np.errstate(invalid="ignore"):
            for s, _ in res:
                out += s
        return out

    def value_and_grad(self, eta) -> tuple:
        """Sum over all lenses of log p(d_i | eta) and its eta-gradient, summed on each shard's worker and
        added here: (6,) -> (float, (6,)); (n, 6) -> ((n,), (n, 6)) (as LikelihoodKernel.value_and_grad)."""
        one, e = _eta2d(eta)
        res = self._map("value_and_grad", np.ascontiguousarray(e))
        n = sum(c for _, _, c in res)
        if n != self.n_lenses:
            raise RuntimeError(f"the shards answered for {n} lenses, expected {self.n_lenses}")
        v, g = np.zeros(len(e)), np.zeros((len(e), 6))
        with np.errstate(invalid="ignore"):
            for vs, gs, _ in res:
                v += vs
                g += gs
        return (float(v[0]), g[0]) if one else (v, g)

    def per_lens_and_grad(self, eta) -> tuple:
        """Per-lens values and gradients gathered from the shards (n x n_lens x 6 numbers come back:
        prefer :meth:`value_and_grad`)."""
        one, e = _eta2d(eta)
        res = self._map("per_lens_and_grad", np.ascontiguousarray(e))
        lp, g = np.concatenate([r[0] for r in res], axis=1), np.concatenate([r[1] for r in res], axis=1)
        return (lp[0], g[0]) if one else (lp, g)

    def close(self) -> None:
        """Release the shards (their workers free the memory); the kernel cannot be called afterwards."""
        futs = [f for f in getattr(self, "_actor_futures", ()) if f is not None]
        self._actors, self._actor_futures, self._actor_workers = [], [], []
        if futs and self.client.status == "running":
            self.client.cancel(futs)          # deletes the actors now (their proxies may live on until collected)

    def __getstate__(self):
        raise TypeError("a ShardedKernel (DistributedPosterior) lives on its dask client and cannot be pickled: "
                        "evaluate it with vectorised walkers (run_mcmc(vectorize=True), the default) instead of a "
                        "process pool")

    def __getattr__(self, name):
        # a method of LikelihoodKernel that works on the in-process arrays (not available here)
        if name in ("L", "logMh", "nodes", "logw0", "offsets", "logRe", "m_obs"):
            raise AttributeError(f"{name!r}: the per-point arrays of a ShardedKernel are on the dask workers")
        raise AttributeError(name)


class DistributedPosterior(Posterior):
    """:class:`sl_cy.likelihood.Posterior` of a grids file whose lenses are evaluated in shards on a
    dask cluster (module notes): same call, same values, prior and -N log A(eta) added once here.

    Parameters
    ----------
    grids_path : str or Path
        A grids file every worker can read at the same absolute path (``data/tables/<sim_id>/grids.h5``).
    client : distributed.Client
        The cluster (a ``LocalCluster``, an existing scheduler, a dask-jobqueue cluster).
    A, prior, fixed, use_selection, model :
        As :class:`sl_cy.likelihood.Posterior`.
    n_shards, block, worker_timeout :
        As :class:`ShardedKernel` (default: one shard per worker).

    Call
    ----
    As :class:`sl_cy.likelihood.Posterior`: theta (n_free,) -> float, (n_walkers, n_free) ->
    (n_walkers,); one round trip to the shards per call. Use it with
    :func:`sl_cy.inference.run_mcmc` (vectorised walkers, the default). :meth:`close` (or a
    ``with`` block) frees the workers' memory.

    Performance
    -----------
    The in-process cost divided among the workers plus ~ms per call
    (``benchmarks/bench_distributed.py``). Workers hold ~32 kB per lens; the client holds no grid.

    Precision
    ---------
    Equal to the in-process Posterior to ~1e-13 relative (summation order).

    Examples
    --------
    >>> import tempfile
    >>> from distributed import Client, LocalCluster
    >>> from sl_cy.grids import load_grids_hdf5
    >>> from sl_cy.tables import generate_and_save_mock_tabulate
    >>> _, _, gp = generate_and_save_mock_tabulate(20_000, seed=3, root=tempfile.mkdtemp(), show_progress=False)
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \\
    ...         Client(cluster) as client, DistributedPosterior(gp, client) as post:
    ...     theta = np.array([[0.0, 12.91, 2.04, 0.37, 1.0, 0.2], [0.1, 12.9, 2.0, 0.4, 1.0, 0.2]])
    ...     bool(np.allclose(post(theta), Posterior(load_grids_hdf5(gp))(theta), rtol=1e-12))
    True
    """

    def __init__(self, grids_path, client, *, A=None, prior=None, fixed=None, use_selection: bool = True,
                 model=None, n_shards: int | None = None, block: int = DEFAULT_BLOCK, worker_timeout: float = 120.0):
        kernel = ShardedKernel(grids_path, client, selection=use_selection, n_shards=n_shards, block=block,
                               worker_timeout=worker_timeout)
        if A is None and use_selection:
            A = kernel.rate_engine            # the default normaliser, already loaded for the shards
        try:
            super().__init__(kernel, A=A, prior=prior, fixed=fixed, use_selection=use_selection, model=model)
        except BaseException:
            kernel.close()
            raise

    def close(self) -> None:
        """Free the shards on the workers (the posterior cannot be evaluated afterwards)."""
        self.kernel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None, *, threads_per_worker: int | None = None,
                processes: bool = True):
    """A ``distributed.Client`` for the CLI's ``--scheduler`` / ``--dask-workers``: connect to an
    existing scheduler, or start a ``LocalCluster`` of ``n_workers`` processes (closed on exit;
    an existing cluster is left running).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``, or a scheduler file path ending in ``.json``).
    n_workers : int, optional
        Workers of a new LocalCluster (when no scheduler is given).
    threads_per_worker : int, optional
        Default: the available cores divided among the workers (at least 1).
    processes : bool
        Worker processes (default) or threads of this process.

    Yields
    ------
    distributed.Client

    Examples
    --------
    >>> with dask_client(n_workers=1, processes=False) as c:
    ...     len(c.nthreads())
    1
    """
    from distributed import Client, LocalCluster

    from sl_cy.parallel import available_cores

    if (scheduler is None) == (n_workers is None):
        raise ValueError("give either a scheduler address (--scheduler) or a number of local workers (--dask-workers)")
    if scheduler is not None:
        kw = dict(scheduler_file=scheduler) if str(scheduler).endswith(".json") else dict(address=scheduler)
        try:
            client = Client(**kw)
        except OSError as err:                # TimeoutError, ConnectionRefusedError, a missing scheduler file
            raise type(err)(f"cannot connect to the dask scheduler {scheduler} ({err}); start one (`dask scheduler`) "
                            "or give --dask-workers N for a local cluster") from None
        with client:
            yield client
        return
    n_workers = int(n_workers)
    if n_workers < 1:
        raise ValueError(f"--dask-workers must be >= 1, got {n_workers}")
    tpw = threads_per_worker or max(1, available_cores() // n_workers)
    with LocalCluster(n_workers=n_workers, threads_per_worker=tpw, processes=processes, dashboard_address=None) \
            as cluster, Client(cluster) as client:
        yield client
