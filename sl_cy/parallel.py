"""One executor interface for every embarrassingly-parallel job of sl_cy.

Mock chunks, per-lens tabulation and the A(eta) bank all call :func:`map_chunks` (ordered list
of results) or :func:`iter_chunks` (results as they complete, with a bounded number of tasks in
flight, so a consumer that writes each result to disk keeps memory bounded). The same call runs

* serially (``n_jobs=1``, the default; no pool, no pickling),
* on a local :class:`concurrent.futures.ProcessPoolExecutor` (``n_jobs > 1`` or ``-1`` for all
  available cores; ``spawn`` start method, so it is safe with threads and on every platform),
* on any :class:`concurrent.futures.Executor` you pass as ``executor`` (not shut down here),
* on a ``dask.distributed.Client`` passed as ``executor`` (dask is optional and imported only
  then; a cluster from dask-jobqueue on PBS/SLURM works the same way).

Rules for callers: ``func`` must be a top-level (importable, picklable) function and each task
a picklable object; randomness must come from the task (e.g. a ``SeedSequence`` child per task),
never from worker state, so results do not depend on where a task runs.

Failures of the pool itself are explained, never a bare ``BrokenProcessPool`` and never a hang:

* a program whose ``__main__`` spawned workers cannot re-import (read from standard input, or
  ``func`` defined in a ``python -c`` command or an interactive session) runs serially with a
  :class:`ParallelWarning` instead of starting a pool that would break;
* workers that cannot start (e.g. a script without an ``if __name__ == "__main__":`` guard) or that
  die during a task (killed by the out-of-memory killer, a crash in compiled code) raise
  :class:`WorkerPoolError`, which names the cause, the worker's exit code or signal, and the remedy.

Counts of workers and threads have one meaning everywhere: ``n_jobs`` (processes) and
``n_threads`` (OpenMP threads of the compiled kernels) are a positive integer, or None / ``-1`` for
all the cores this process may use (:func:`available_cores`, affinity-aware); 0, other negative
values and non-integers raise ``ValueError``. :func:`resolve_n_jobs` and :func:`resolve_n_threads`
are the only readers; every compiled entry point resolves its ``n_threads`` through the latter
(``sl_cy/_numerics.pxd: resolve_threads``).

Interruption: local pool workers start with SIGINT blocked, so a Ctrl-C (which the terminal sends to
the whole process group) reaches only the parent; when the consumer stops early (KeyboardInterrupt,
any exception, or closing the iterator) the workers are killed at once instead of finishing their
running tasks. Workers therefore never print a traceback of their own, and the answer comes within
a task's Python-level granularity in the parent.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import operator
import os
import signal
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

__all__ = ["available_cores", "resolve_n_jobs", "resolve_n_threads", "show_progress_default", "iter_chunks", "map_chunks",
           "ParallelWarning", "WorkerPoolError"]


class ParallelWarning(RuntimeWarning):
    """A process pool was asked for but the work ran serially (the reason is in the message)."""


class WorkerPoolError(BrokenProcessPool):
    """The process pool broke: its workers could not start or one died; the message says why and
    what to do. A subclass of :class:`concurrent.futures.process.BrokenProcessPool`."""


def available_cores() -> int:
    """Number of CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _resolve_count(name: str, value) -> int:
    """The one reading of a worker/thread count: None or -1 -> all available cores, a positive
    integer (Python or numpy) -> itself, anything else -> ValueError naming ``name``."""
    if value is None:
        return available_cores()
    if not isinstance(value, bool):
        try:
            v = operator.index(value)
        except TypeError:
            v = None
        if v == -1:
            return available_cores()
        if v is not None and v >= 1:
            return v
    raise ValueError(f"{name} must be a positive integer or -1 (or None) for all cores, got {value!r}")


def resolve_n_jobs(n_jobs) -> int:
    """``n_jobs`` as a positive worker count: ``-1`` (or None) means all available cores.

    Raises
    ------
    ValueError
        for 0, other negative values or non-integers.
    """
    return _resolve_count("n_jobs", n_jobs)


def resolve_n_threads(n_threads) -> int:
    """``n_threads`` as a positive OpenMP thread count: ``-1`` (or None) means all available cores.

    The same rule as :func:`resolve_n_jobs`; every compiled kernel (likelihood, A(eta), adaptive
    tabulation, K table, gNFW table) reads its ``n_threads`` through this function. Results never
    depend on the thread count.

    Parameters
    ----------
    n_threads : int or None
        Positive integer, or -1 / None for all cores this process may use.

    Returns
    -------
    int
        The thread count (>= 1).

    Raises
    ------
    ValueError
        for 0, other negative values or non-integers (the message names the value).

    Examples
    --------
    >>> resolve_n_threads(3), resolve_n_threads(-1) == resolve_n_threads(None) == available_cores()
    (3, True)
    """
    return _resolve_count("n_threads", n_threads)


def show_progress_default(progress, n_tasks: int) -> bool:
    """Resolve a ``progress`` argument: None means 'on when stderr is a terminal and there is more
    than one task'."""
    if progress is None:
        try:
            return bool(sys.stderr.isatty()) and n_tasks > 1
        except (AttributeError, ValueError):
            return False
    return bool(progress)


def _is_dask_client(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "submit") \
        and hasattr(obj, "gather")


def _progress_bar(show: bool, total: int, desc: str | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, leave=False, dynamic_ncols=True)


def iter_chunks(func: Callable[[Any], Any], tasks: Iterable, *, n_jobs=1, executor=None, progress=None,
                desc: str | None = None, max_in_flight: int | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``func(task)`` for every task and yield ``(index, result)`` as tasks complete.

    Parameters
    ----------
    func : callable
        Top-level function of one argument.
    tasks : iterable
        Task objects (materialised into a list).
    n_jobs : int, default 1
        1: serial in this process; k > 1: a local spawn process pool of k workers;
        -1: all available cores. Ignored when ``executor`` is given.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Use this instead of creating a pool (it is not shut down).
    progress : bool, optional
        tqdm progress bar; default on when stderr is a terminal and there are >= 2 tasks.
    desc : str, optional
        Progress-bar label.
    max_in_flight : int, optional
        Tasks submitted but not yet consumed (default 2 x workers): bounds the memory held by
        finished-but-unconsumed results.

    Yields
    ------
    (int, object)
        Task index and its result, in completion order (task order when serial).

    Raises
    ------
    Exception
        The first exception raised by a task; pending tasks are cancelled.
    """
    tasks = list(tasks)
    n = len(tasks)
    show = show_progress_default(progress, n)
    if n == 0:
        return
    if executor is None and resolve_n_jobs(n_jobs) == 1:
        with _progress_bar(show, n, desc) as bar:
            for i, t in enumerate(tasks):
                r = func(t)
                bar.update(1)
                yield i, r
        return

    if executor is None:
        workers = min(resolve_n_jobs(n_jobs), n)
        problem = _spawn_problem(func)
        if problem is not None:
            warnings.warn(f"n_jobs={n_jobs} asks for a process pool, but {problem}; running the {n} tasks serially "
                          "in this process instead. To run in parallel, save the code to a .py file, put its "
                          "top-level code under `if __name__ == \"__main__\":` and run it as `python file.py`.",
                          ParallelWarning, stacklevel=3)
            yield from iter_chunks(func, tasks, n_jobs=1, progress=show, desc=desc)
            return
        ctx = _spawn_context()
        started = ctx.Event()                 # set by the first worker that gets as far as running Python code
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_started,
                                      initargs=(started,))
        procs: dict = {}
        finished = False
        try:
            yield from _iter_futures(pool, func, tasks, max_in_flight or 2 * workers, show, desc, procs)
            finished = True
        except BrokenProcessPool as exc:
            pool.shutdown(wait=True, cancel_futures=True)      # reaps the workers: their exit codes are final
            raise WorkerPoolError(_explain_broken_pool(procs, started.is_set())) from exc
        finally:
            if not finished:          # interrupted (Ctrl-C, SIGTERM) or failed: do not wait for running tasks
                _stop_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
        return
    if _is_dask_client(executor):
        workers = max(1, sum(executor.nthreads().values()))
        yield from _iter_dask(executor, func, tasks, max_in_flight or 2 * workers, show, desc)
        return
    if isinstance(executor, cf.Executor):
        workers = getattr(executor, "_max_workers", None) or available_cores()
        procs = {}
        try:
            yield from _iter_futures(executor, func, tasks, max_in_flight or 2 * workers, show, desc, procs)
        except BrokenProcessPool as exc:
            if isinstance(exc, WorkerPoolError):
                raise
            manager = getattr(executor, "_executor_manager_thread", None)
            if manager is not None:          # it reaps the workers; wait (bounded) for their exit codes
                manager.join(timeout=10)
            raise WorkerPoolError(_explain_broken_pool(procs, None)) from exc
        return
    raise ValueError(f"executor must be None, a concurrent.futures.Executor or a dask.distributed.Client, "
                     f"got {type(executor).__name__}")


class _NoSigintSpawnProcess(multiprocessing.get_context("spawn").Process):
    """A spawn process started with SIGINT blocked: the mask is inherited across fork and exec and
    nothing in a worker unblocks it, so a Ctrl-C sent to the whole process group (the terminal
    does that) reaches only the parent, which stops the workers (:func:`_stop_workers`), instead
    of printing a KeyboardInterrupt traceback from every worker."""

    def start(self):
        if not hasattr(signal, "pthread_sigmask"):          # pragma: no cover - not POSIX
            return super().start()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _NoSigintSpawnContext(type(multiprocessing.get_context("spawn"))):
    Process = _NoSigintSpawnProcess


def _spawn_context():
    """The start method of every local pool: spawn, with workers that leave Ctrl-C to the parent."""
    return _NoSigintSpawnContext()


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Kill the worker processes of a local pool now (their running tasks are abandoned): a
    Ctrl-C must not wait for a compiled loop in a worker to finish."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):      # already gone
            pass
    # A worker killed while it was sending a result leaves the pool's manager thread blocked for ever
    # in recv() on a half-written message (the pipe never reports EOF, because this process holds
    # its other write end), and shutdown() would wait for that thread. Closing our write end lets the
    # dead workers' pipe end in EOF: the manager thread marks the pool broken and exits.
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()


def _main_not_reimportable() -> str | None:
    """Why spawned workers could not re-import this program's ``__main__`` (None if they can)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return None                                  # python -m module: re-imported by name
    path = getattr(main, "__file__", None)
    if path is None:
        return None                                  # python -c / interactive: nothing to re-import
    if not os.path.isabs(path):
        path = os.path.join(multiprocessing.process.ORIGINAL_DIR or os.getcwd(), path)
    if not os.path.isfile(path):
        return (f"this program was read from {getattr(main, '__file__', path)!s} (standard input), "
                "which spawned worker processes cannot re-import")
    return None


def _spawn_problem(func) -> str | None:
    """A reason why a spawn pool could not run ``func`` here, found before starting one, or None."""
    reason = _main_not_reimportable()
    if reason is not None:
        return reason
    main = sys.modules.get("__main__")
    mod = getattr(func, "__module__", None) or getattr(getattr(func, "func", None), "__module__", None)
    if mod == "__main__" and getattr(main, "__file__", None) is None \
            and getattr(getattr(main, "__spec__", None), "name", None) is None:
        name = getattr(func, "__qualname__", None) or repr(func)
        return (f"{name} is defined in the __main__ of a `python -c` command or an interactive session, "
                "which spawned worker processes cannot import")
    return None


def _worker_started(event) -> None:
    """Pool initializer: record that a worker started (spawn bootstrap and imports succeeded)."""
    event.set()


def _describe_exit(code) -> str:
    if code is None:
        return "an unknown exit status"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{name} (signal {-code})"
    return f"exit code {code}"


def _explain_broken_pool(procs: dict, started: bool | None) -> str:
    """The message of :class:`WorkerPoolError`: which workers died, how, and what to do."""
    dead = {pid: p.exitcode for pid, p in procs.items() if p.exitcode not in (0, None, -signal.SIGTERM)}
    deaths = ", ".join(f"worker {pid}: {_describe_exit(c)}" for pid, c in sorted(dead.items())) or "worker exit status unknown"
    codes = set(dead.values())
    if started is False:
        return ("The process pool's worker processes could not start ("
                f"{deaths}; their tracebacks, if any, are above on stderr). Spawned workers re-import the main "
                "program: a script must put its top-level code under `if __name__ == \"__main__\":`, and code "
                "read from standard input cannot be re-imported at all (save it to a .py file). "
                "Or run serially with n_jobs=1.")
    if -signal.SIGKILL in codes:
        return ("A worker process of the pool was killed by SIGKILL while running tasks "
                f"({deaths}). On Linux this is usually the out-of-memory (OOM) killer: the "
                "workers together needed more memory than the machine or the batch job allows (check `dmesg` "
                "or the scheduler's memory report). Use fewer workers (a smaller n_jobs), smaller chunks, or "
                "more memory; n_jobs=1 runs serially.")
    if any(c is not None and c < 0 for c in codes):
        return ("A worker process of the pool was killed by a signal while running tasks "
                f"({deaths}). A crash such as SIGSEGV is a bug in compiled code: rerun with "
                "n_jobs=1 to get the error in this process, and please report it with the inputs.")
    return ("A worker process of the pool died while running tasks "
            f"({deaths}; its traceback, if any, is above on stderr). Typical causes: a "
            "task or function that cannot be unpickled in the worker (defined in the __main__ of `python -c` "
            "or an interactive session), or a task that calls sys.exit/os._exit. Rerun with n_jobs=1 to get the "
            "error in this process.")


def _iter_futures(pool: cf.Executor, func, tasks, window: int, show: bool, desc, procs: dict | None = None):
    """``procs`` (optional) collects the pool's worker processes (pid -> Process) as they are started,
    so that their exit codes can be read if the pool breaks."""
    n = len(tasks)
    pending = {}
    nxt = 0

    def submit(i):
        fut = pool.submit(func, tasks[i])
        if procs is not None:
            procs.update(getattr(pool, "_processes", None) or {})
        return fut

    with _progress_bar(show, n, desc) as bar:
        try:
            while nxt < n and len(pending) < window:
                pending[submit(nxt)] = nxt
                nxt += 1
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    r = fut.result()
                    bar.update(1)
                    yield i, r
                    if nxt < n:
                        pending[submit(nxt)] = nxt
                        nxt += 1
        finally:
            for fut in pending:
                fut.cancel()


def _iter_dask(client, func, tasks, window: int, show: bool, desc):
    from distributed import as_completed

    n = len(tasks)
    pending = {}                      # future key -> (future, task index)
    nxt = 0

    def submit(i):
        f = client.submit(func, tasks[i], pure=False)
        pending[f.key] = (f, i)
        return f

    ac = as_completed([submit(i) for i in range(min(n, window))])
    nxt = min(n, window)
    with _progress_bar(show, n, desc) as bar:
        try:
            for fut in ac:
                _, i = pending.pop(fut.key)
                r = fut.result()
                fut.release()
                bar.update(1)
                yield i, r
                if nxt < n:
                    ac.add(submit(nxt))
                    nxt += 1
        finally:
            if pending:
                client.cancel([f for f, _ in pending.values()])


def map_chunks(func: Callable[[Any], Any], tasks: Iterable, *, n_jobs=1, executor=None, progress=None,
               desc: str | None = None) -> list:
    """Run ``func(task)`` for every task (serially, on a process pool or on dask); results in task order.

    Parameters
    ----------
    func, tasks, n_jobs, executor, progress, desc
        As in :func:`iter_chunks`.

    Returns
    -------
    list
        ``[func(t) for t in tasks]``, whatever ran them.

    Performance
    -----------
    Serial: no overhead. Process pool: ~1 s to start spawn workers (they import sl_cy), then
    per-task pickling of the task and result; use tasks of >= 0.1 s of work.

    Examples
    --------
    >>> map_chunks(abs, [-1, -2, 3])
    [1, 2, 3]
    """
    tasks = list(tasks)
    out: list = [None] * len(tasks)
    for i, r in iter_chunks(func, tasks, n_jobs=n_jobs, executor=executor, progress=progress, desc=desc):
        out[i] = r
    return out


def process_pool(n_jobs, func=None):
    """A local process pool under the package's one policy (the spawn context of every local
    pool, :func:`_spawn_context`; ``n_jobs`` as in :func:`resolve_n_jobs`), for callers that need
    a pool object with ``map`` -- emcee's ``pool=`` argument (:func:`sl_cy.inference.run_mcmc`
    with ``vectorize=False, parallel=True``).

    Returns None (run serially) for one worker, and, with a :class:`ParallelWarning` that says why,
    when spawned workers could not run ``func`` here (a program read from standard input, a
    function defined in an interactive ``__main__``, an object that cannot be pickled). The
    caller owns the pool: ``pool.shutdown(wait=True, cancel_futures=True)`` when done.

    Examples
    --------
    >>> process_pool(1) is None
    True
    """
    import concurrent.futures as cf
    import pickle

    workers = resolve_n_jobs(n_jobs)
    if workers <= 1:
        return None
    problem = _spawn_problem(func)
    if problem is None and func is not None:
        try:
            pickle.dumps(func)
        except Exception as exc:                       # noqa: BLE001 - any pickling failure means "not shippable"
            problem = f"{getattr(func, '__qualname__', type(func).__name__)} cannot be pickled ({exc})"
    if problem is not None:
        warnings.warn(f"n_jobs={n_jobs} asks for a process pool, but {problem}; running serially in this "
                      "process instead.", ParallelWarning, stacklevel=3)
        return None
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=_spawn_context())   # the one local-pool policy


__all__ += ["process_pool"]
