"""A crash-safe MCMC chain: emcee's HDF5 backend plus an append-only journal.

emcee's :class:`~emcee.backends.HDFBackend` rewrites ``chain.h5`` in place at every step. A process
killed in the middle of that write (SIGKILL, the out-of-memory killer, a power cut) can leave a
file whose last step is half written or that HDF5 cannot open at all. So every step is first
appended to a journal next to it (``chain.journal``): one fixed-size binary record per step with
the walkers' positions, log-probabilities, the cumulative acceptance counts, the sampler's random
state after the step and a CRC32 of all of it. A record is one ``write`` call on a file opened for
appending, so a kill leaves at most one torn record at the end, which the CRC (or the file length)
exposes.

:func:`recover_chain` then restores a consistent pair: it keeps the longest prefix of valid
records, drops a torn tail, and rewrites ``chain.h5`` from the journal (atomically) whenever the
two disagree or ``chain.h5`` cannot be read. The sampler continues from the last valid step with
the random state recorded in it, so the continued chain is bit for bit the chain an uninterrupted
run would have produced.

Layout of the journal: a 24-byte header (magic ``SLCYJRN1``, nwalkers, ndim, record size, CRC32 of
the header) followed by records of :func:`record_dtype`. Records rebuilt from an ``chain.h5``
without a journal carry a random state only on the last one (``has_rng``).
"""
from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import emcee
import numpy as np

__all__ = ["JOURNAL_SUFFIX", "ChainUnreadableError", "JournaledHDFBackend", "Recovery", "read_journal",
           "recover_chain", "record_dtype", "write_backend_h5"]

JOURNAL_SUFFIX = ".journal"
_MAGIC = b"SLCYJRN1"
_HEAD = struct.Struct("<8sIIII")          # magic, nwalkers, ndim, record size, crc32 of the first 20 bytes
_MT_N = 624
#: Seconds between fsyncs of the journal (a SIGKILL loses nothing written; fsync guards power cuts).
FSYNC_INTERVAL_S = 1.0


class ChainUnreadableError(ValueError):
    """The stored chain cannot be read and there is nothing to rebuild it from."""


def record_dtype(nwalkers: int, ndim: int) -> np.dtype:
    """The packed record of one step (the last field, ``crc``, is the CRC32 of all bytes before it)."""
    return np.dtype([("iteration", "<u8"), ("coords", "<f8", (nwalkers, ndim)), ("log_prob", "<f8", (nwalkers,)),
                     ("accepted", "<f8", (nwalkers,)), ("has_rng", "u1"), ("rng_key", "<u4", (_MT_N,)),
                     ("rng_pos", "<i8"), ("rng_has_gauss", "<i8"), ("rng_gauss", "<f8"), ("crc", "<u4")])


def journal_path(chain_path) -> Path:
    """``chain.h5`` -> ``chain.journal``."""
    p = Path(chain_path)
    return p.with_suffix(JOURNAL_SUFFIX)


def _header(nwalkers: int, ndim: int) -> bytes:
    rec = record_dtype(nwalkers, ndim).itemsize
    body = _HEAD.pack(_MAGIC, nwalkers, ndim, rec, 0)[:20]
    return body + struct.pack("<I", zlib.crc32(body))


def _make_record(dt: np.dtype, iteration: int, coords, log_prob, accepted, random_state) -> bytes:
    r = np.zeros((), dtype=dt)
    r["iteration"] = iteration
    r["coords"] = coords
    r["log_prob"] = log_prob
    r["accepted"] = accepted
    if random_state is not None:
        name, key, pos, has_gauss, gauss = random_state[:5]
        if str(name) != "MT19937" or np.shape(key) != (_MT_N,):
            raise ValueError(f"cannot journal a random state of kind {name!r}")
        r["has_rng"] = 1
        r["rng_key"] = key
        r["rng_pos"] = int(pos)
        r["rng_has_gauss"] = int(has_gauss)
        r["rng_gauss"] = float(gauss)
    b = bytearray(r.tobytes())
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    return bytes(b)


def _rng_of(rec) -> tuple:
    return ("MT19937", np.array(rec["rng_key"], dtype=np.uint32), int(rec["rng_pos"]), int(rec["rng_has_gauss"]),
            float(rec["rng_gauss"]))


def write_journal(path, nwalkers: int, ndim: int, *, records: bytes = b"") -> Path:
    """Write a journal (header + records) atomically."""
    from sl_cy.io import write_bytes_atomic

    return write_bytes_atomic(path, _header(nwalkers, ndim) + records)


@dataclass
class Journal:
    """What :func:`read_journal` found: the valid records and how many bytes were torn or invalid."""

    nwalkers: int
    ndim: int
    records: np.ndarray
    dropped_bytes: int = 0

    @property
    def steps(self) -> int:
        return len(self.records)


def read_journal(path) -> Journal:
    """Read a journal, keeping the longest prefix of valid records (CRC and step number checked).

    Raises
    ------
    ChainUnreadableError
        When the header itself is missing or damaged.
    """
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size:
        raise ChainUnreadableError(f"{path}: journal header is torn ({len(data)} bytes)")
    magic, nw, nd, rec, crc = _HEAD.unpack(data[:_HEAD.size])
    if magic != _MAGIC or zlib.crc32(data[:20]) != crc or nw < 1 or nd < 1:
        raise ChainUnreadableError(f"{path}: not an sl_cy chain journal or its header is damaged")
    dt = record_dtype(nw, nd)
    if rec != dt.itemsize:
        raise ChainUnreadableError(f"{path}: record size {rec} does not match {dt.itemsize}")
    body = data[_HEAD.size:]
    n_full = len(body) // rec
    arr = np.frombuffer(body[:n_full * rec], dtype=dt)
    good = 0
    for i in range(n_full):
        chunk = body[i * rec:(i + 1) * rec]
        if zlib.crc32(chunk[:-4]) != struct.unpack("<I", chunk[-4:])[0] or int(arr[i]["iteration"]) != i + 1:
            break
        good = i + 1
    return Journal(nw, nd, arr[:good].copy(), len(body) - good * rec)


def write_backend_h5(path, *, chain, log_prob, accepted, random_state, name: str = "mcmc") -> Path:
    """Write a file in emcee's HDFBackend layout (group ``name``) atomically (a rebuilt ``chain.h5``)."""
    from sl_cy.io import atomic_h5

    chain = np.asarray(chain, dtype=float)
    n, nw, nd = chain.shape
    with atomic_h5(path) as f:
        g = f.create_group(name)
        g.attrs["version"] = emcee.__version__
        g.attrs["nwalkers"] = nw
        g.attrs["ndim"] = nd
        g.attrs["has_blobs"] = False
        g.create_dataset("accepted", data=np.asarray(accepted, dtype=float))
        g.create_dataset("chain", data=chain, maxshape=(None, nw, nd), chunks=(max(1, min(n, 64)), nw, nd))
        g.create_dataset("log_prob", data=np.asarray(log_prob, dtype=float), maxshape=(None, nw),
                         chunks=(max(1, min(n, 64)), nw))
        if random_state is not None:
            for i, v in enumerate(random_state):
                g.attrs[f"random_state_{i}"] = v
        g.attrs["iteration"] = n
    return Path(path)


def _read_h5(path, name: str):
    """The chain in an HDFBackend file (arrays up to ``iteration``), or raise OSError/KeyError/ValueError."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f[name]
        it = int(g.attrs["iteration"])
        nw, nd = int(g.attrs["nwalkers"]), int(g.attrs["ndim"])
        chain = g["chain"]
        if it < 0 or chain.shape[0] < it or chain.shape[1:] != (nw, nd) or g["log_prob"].shape[0] < it:
            raise ValueError(f"iteration {it} does not fit the datasets {chain.shape}")
        out = dict(iteration=it, nwalkers=nw, ndim=nd, chain=chain[:it], log_prob=g["log_prob"][:it],
                   accepted=g["accepted"][()])
        rs = [v for k, v in sorted(g.attrs.items()) if k.startswith("random_state_")]
        out["random_state"] = rs or None
    if it > 0 and (out["random_state"] is None or len(out["random_state"]) < 5):
        raise ValueError("the random state of the last step is missing")
    if it > 0 and not np.all(np.isfinite(out["chain"])):
        raise ValueError("non-finite walker positions in the stored steps")
    return out


@dataclass
class Recovery:
    """Result of :func:`recover_chain`.

    Attributes
    ----------
    steps : int
        Finished steps now held consistently by ``chain.h5`` and the journal (0: start afresh).
    actions : list of str
        What was repaired (empty when everything was consistent).
    """

    steps: int
    nwalkers: int | None = None
    ndim: int | None = None
    actions: list = field(default_factory=list)


def _same(h5: dict, j: Journal, k: int) -> bool:
    if h5["iteration"] != k or (h5["nwalkers"], h5["ndim"]) != (j.nwalkers, j.ndim):
        return False
    if k == 0:
        return True
    last = j.records[k - 1]
    rs = h5["random_state"]
    recs = j.records[:k]
    return (np.array_equal(h5["chain"], recs["coords"]) and np.array_equal(h5["log_prob"], recs["log_prob"])
            and np.array_equal(h5["accepted"], last["accepted"]) and bool(last["has_rng"])
            and np.array_equal(np.asarray(rs[1], dtype=np.uint32), last["rng_key"])
            and int(rs[2]) == int(last["rng_pos"]) and int(rs[3]) == int(last["rng_has_gauss"])
            and float(rs[4]) == float(last["rng_gauss"]))


def recover_chain(chain_path, name: str = "mcmc", *, dry_run: bool = False) -> Recovery:
    """Make ``chain.h5`` and its journal consistent at the last step that was completely written.

    * Journal present: its valid prefix is the truth (a torn or damaged tail is dropped, and the
      file truncated); ``chain.h5`` is rewritten from it when it differs or cannot be read.
    * No journal (a finished run, or a run written without one): ``chain.h5`` is validated
      (iteration against the datasets, random state present) and the journal rebuilt from it.
    * Neither readable: :class:`ChainUnreadableError` (with a clear message); neither present:
      0 steps.

    Parameters
    ----------
    chain_path : str or Path
        ``chain.h5`` (the journal is ``chain.journal`` beside it).
    name : str
        HDF5 group of the backend.
    dry_run : bool
        Only report what would be done.

    Returns
    -------
    Recovery

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "chain.h5"
    >>> b = JournaledHDFBackend(p)
    >>> s = emcee.EnsembleSampler(4, 1, lambda x: -0.5 * float(x @ x), backend=b)
    >>> _ = s.run_mcmc(np.random.default_rng(0).normal(size=(4, 1)), 5)
    >>> b.close()
    >>> with open(journal_path(p), "ab") as f:       # a torn step at the end
    ...     _ = f.write(b"half a record")
    >>> r = recover_chain(p)
    >>> r.steps, r.actions
    (5, ['dropped 13 torn bytes at the end of chain.journal'])
    """
    chain_path = Path(chain_path)
    jpath = journal_path(chain_path)
    actions: list = []
    h5, h5_err = None, None
    if chain_path.exists():
        try:
            h5 = _read_h5(chain_path, name)
        except (OSError, KeyError, ValueError, TypeError) as err:
            h5_err = f"{type(err).__name__}: {' '.join(str(err).split())}"
    journal, j_err = None, None
    if jpath.exists():
        try:
            journal = read_journal(jpath)
        except (OSError, ChainUnreadableError) as err:
            j_err = str(err)
    if journal is not None:
        k = journal.steps
        while k > 0 and not journal.records[k - 1]["has_rng"]:      # can only continue from a step with its state
            k -= 1
        dropped = journal.dropped_bytes + (journal.steps - k) * journal.records.dtype.itemsize
        if dropped:
            actions.append(f"dropped {dropped} torn bytes at the end of {jpath.name}")
            if not dry_run:
                with open(jpath, "r+b") as f:
                    f.truncate(_HEAD.size + k * journal.records.dtype.itemsize)
                    f.flush()
                    os.fsync(f.fileno())
        recs = journal.records[:k]
        if h5 is not None and _same(h5, journal, k):
            return Recovery(k, journal.nwalkers, journal.ndim, actions)
        if k == 0:
            actions.append(f"{chain_path.name} reset (no finished step)" if chain_path.exists() else "nothing stored")
            if not dry_run:
                chain_path.unlink(missing_ok=True)
            return Recovery(0, journal.nwalkers, journal.ndim, actions)
        why = h5_err or ("missing" if h5 is None else f"holds {h5['iteration']} steps, the journal {k}")
        actions.append(f"{chain_path.name} rebuilt from {jpath.name} ({why})")
        if not dry_run:
            write_backend_h5(chain_path, chain=recs["coords"], log_prob=recs["log_prob"], accepted=recs[-1]["accepted"],
                             random_state=_rng_of(recs[-1]), name=name)
        return Recovery(k, journal.nwalkers, journal.ndim, actions)
    if h5 is not None:
        k = h5["iteration"]
        if not dry_run:
            dt = record_dtype(h5["nwalkers"], h5["ndim"])
            body = b"".join(_make_record(dt, i + 1, h5["chain"][i], h5["log_prob"][i],
                                         h5["accepted"] if i == k - 1 else np.zeros(h5["nwalkers"]),
                                         h5["random_state"] if i == k - 1 else None) for i in range(k))
            write_journal(jpath, h5["nwalkers"], h5["ndim"], records=body)
        actions.append(f"{jpath.name} " + (f"damaged ({j_err}); " if j_err else "") + f"rebuilt from {chain_path.name}")
        return Recovery(k, h5["nwalkers"], h5["ndim"], actions)
    if h5_err is not None:
        extra = f" and its journal is damaged ({j_err})" if j_err else " and there is no journal to rebuild it from"
        raise ChainUnreadableError(f"{chain_path} cannot be read ({h5_err}){extra}; the chain is lost: start the run "
                                   "again (`sl-cy rerun` on the run folder gives the same chain)")
    if j_err is not None:
        raise ChainUnreadableError(f"{jpath} is damaged ({j_err}) and {chain_path.name} is missing; start the run "
                                   "again (`sl-cy rerun` on the run folder gives the same chain)")
    return Recovery(0, None, None, ["nothing stored"])


class JournaledHDFBackend(emcee.backends.HDFBackend):
    """emcee's HDF5 backend that first appends every step to a journal (``<name>.journal``).

    Parameters
    ----------
    filename : str or Path
        ``chain.h5``.
    name : str
        HDF5 group.
    read_only : bool

    Notes
    -----
    Blobs are not supported. The journal is fsynced at most once per :data:`FSYNC_INTERVAL_S`
    (a SIGKILL loses nothing that was written; the interval bounds what a power cut can lose) and
    on :meth:`close`. Before continuing a chain that may have been torn, call
    :func:`recover_chain`.
    """

    def __init__(self, filename, name: str = "mcmc", read_only: bool = False):
        super().__init__(str(filename), name=name, read_only=read_only)
        self.journal = journal_path(filename)
        self._fd = None
        self._dtype = None
        self._count = None
        self._acc = None
        self._last_sync = 0.0

    def reset(self, nwalkers, ndim):
        self.close()
        super().reset(nwalkers, ndim)
        write_journal(self.journal, int(nwalkers), int(ndim))

    def _open_journal(self):
        if self._fd is not None:
            return
        if not self.journal.exists():
            recover_chain(self.filename, self.name)          # rebuild it from chain.h5
        j = read_journal(self.journal)
        if j.dropped_bytes:
            raise ChainUnreadableError(f"{self.journal} has a torn tail; call sl_cy.chainstore.recover_chain first")
        self._dtype = record_dtype(j.nwalkers, j.ndim)
        self._count = j.steps
        self._acc = np.array(j.records[-1]["accepted"]) if j.steps else np.zeros(j.nwalkers)
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)

    def save_step(self, state, accepted):
        self._check(state, accepted)
        if state.blobs is not None:
            raise ValueError("the journaled backend does not store blobs")
        self._journal_step(state, accepted)
        super().save_step(state, accepted)

    def _journal_step(self, state, accepted):
        """Append the step to the journal (one ``write``)."""
        self._open_journal()
        acc = self._acc + accepted
        rec = _make_record(self._dtype, self._count + 1, state.coords, state.log_prob, acc, state.random_state)
        n = os.write(self._fd, rec)
        if n != len(rec):                     # disk full: the torn record is dropped on recovery
            raise OSError(f"short write to {self.journal} ({n} of {len(rec)} bytes): is the disk full?")
        self._count += 1
        self._acc = acc
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_INTERVAL_S:
            os.fsync(self._fd)
            self._last_sync = now

    def close(self):
        """Flush and close the journal (the backend can still be used: it is reopened on the next step)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
