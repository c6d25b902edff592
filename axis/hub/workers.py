"""The hub's worker processes: where intake, verification and receipt signing run.

The hub's own process moves messages (the intake queue, the dead-letter feed); the
CPU work runs here, in spawned processes that die with the hub. Each worker
builds once what it needs (the `Verifier`, its own connection to the store)
and then takes whole batches, so inter-process
traffic is one round trip per batch and the Python work of a batch (checks,
registry decisions, receipts, the transaction) runs in parallel with the
other worker's batch instead of queueing for the hub process's one
interpreter lock.

The workers parse hostile XML, so they never hold the axis key: they sign
receipts and seal packets through the `AxisSigner` they are given, a
`SignerClient` of the signer process (one request per batch for the receipts,
one for the seals). Nothing a worker is given names the key's file.

What a caller may rely on:
- `intake(batch)` runs `Intake.process` on one batch in one worker: when it
  returns, the batch's transaction has committed (its outcomes say what each
  submission became); when it raises, nothing of it was committed or the
  commit is complete and a second pass finds every submission a duplicate;
  a signer that does not answer raises `SignerUnavailable` before the
  transaction (the retry policy waits for the signer to be back);
- a worker process that dies (killed, out of memory, a crash in a C library)
  breaks Python's process pool for good; the call that meets the broken pool
  raises `BrokenProcessPool`, and the pool is replaced by a new one, so the
  batch delivered again (the hub's consumer) or the next call finds working
  workers. A packet that kills its worker every time is dead-lettered by the
  broker's redelivery limit, like any message that never settles;
- `workers=0` runs the same code in one thread of the hub's process (tests,
  debugging, `axis demo`), with any `AxisSigner`: a `LocalSigner` there puts
  the axis key in the hub's process, which only such uses accept; worker
  processes take only a `SignerClient` (TypeError otherwise). A new CRL file
  is picked up within 5 seconds either way.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process  # its BrokenProcessPool is caught even when no process pool was made
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from axis.hub.verification import Checked, Refused, TrustSettings, check_packet
from axis.lifetime import die_with_parent
from axis.signer import AxisSigner, SignerClient

log = logging.getLogger("axis.hub")


class _Worker:
    """Everything one worker process (or the thread, with workers=0) holds."""

    def __init__(self, settings: TrustSettings, store_url: str | None, signer: AxisSigner) -> None:
        from axis.hub.intake import Intake
        from axis.store import open_store
        from axis.trust import Verifier

        self.settings = settings
        self.verifier = Verifier.from_files(settings.trust_roots, settings.crl,
                                            allow_sha1_for=settings.allow_sha1_for,
                                            lenient_codes=settings.lenient_codes)
        self.signer = signer  # in a worker process: a SignerClient (a socket path), never the key
        self._crl_mtime = _mtime(settings.crl)
        self._crl_checked = time.monotonic()
        # The hub migrated the store before starting its workers.
        self.store = open_store(store_url, migrate=False) if store_url is not None else None
        self._intake = Intake(self.store, self.check, self.signer) if self.store is not None else None

    def refresh_crl(self) -> None:
        """Pick up a re-published CRL within seconds, without restarting the hub."""
        if self.settings.crl is None or time.monotonic() - self._crl_checked < 5:
            return
        self._crl_checked = time.monotonic()
        mtime = _mtime(self.settings.crl)
        if mtime != self._crl_mtime:
            from axis.trust import keys
            self.verifier.replace_crls(keys.load_crls(self.settings.crl))
            self._crl_mtime = mtime

    def check(self, datas: Sequence[bytes | Path]) -> list[Checked | Refused]:
        self.refresh_crl()
        return [check_packet(self.verifier, data, self.settings) for data in datas]

    def ready(self, _: Sequence) -> list:
        return [os.getpid()]

    def intake(self, batch: Sequence) -> list:
        if self._intake is None or self.store is None:
            raise RuntimeError("this worker pool was started without a store; give WorkerPool a store_url")
        if not self.store.sealed:
            # This process's own log key, made before its first write (not at start: a signer away then
            # must cost a retried batch, as a receipt it cannot sign does, not a pool that cannot start).
            from axis.audit.logkeys import seal_store
            seal_store(self.store, self.signer, "intake-worker")
        return self._intake.process(batch)


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path else None
    except OSError:
        return None


_worker: _Worker | None = None


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a hub killed with SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the hub, which stops its workers
    die_with_parent(parent)


def _init(settings: TrustSettings, store_url: str | None, signer: SignerClient, parent: int | None = None) -> None:
    global _worker
    if parent is not None:
        _die_with_parent(parent)
    _worker = _Worker(settings, store_url, signer)


def _call(method: str, argument: Sequence) -> list:
    """The one entry point of a worker process: module-level, so the process pool pickles it by name."""
    return getattr(_worker, method)(argument)


class WorkerPool:
    """The hub's worker processes (one per core by default); `workers=0` runs them as one thread."""

    def __init__(self, settings: TrustSettings, workers: int | None = None, *, signer: AxisSigner,
                 store_url: str | None = None) -> None:
        """`signer`: how the workers sign (see the module docstring)."""
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._local: _Worker | None = None
        self._settings, self._store_url = settings, store_url
        if self.workers > 0:
            if not isinstance(signer, SignerClient):
                raise TypeError(f"worker processes sign through the signer process: give a SignerClient, not "
                                f"{type(signer).__name__} (an in-process signer is for workers=0 only)")
            self._signer = signer
            self._executor: concurrent.futures.Executor = self._processes()
            self._target = _call
        else:
            def start() -> None:
                self._local = _Worker(settings, store_url, signer)
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=start)
            self._target = self._call_local

    def _processes(self) -> concurrent.futures.ProcessPoolExecutor:
        # Spawned, not forked: a fork would copy the hub's event loop, signal handlers and threads.
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init, initargs=(self._settings, self._store_url, self._signer, os.getpid()))

    async def _run(self, method: str, argument: Sequence) -> list:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, self._target, method, argument)
        except concurrent.futures.process.BrokenProcessPool:
            if self._executor is executor:  # the first caller to meet it replaces it; the others find the new one
                log.warning("a worker process died (the pool is broken); starting %d new worker process(es)",
                            self.workers)
                self._executor = self._processes()
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def _call_local(self, method: str, argument: Sequence) -> list:
        return getattr(self._local, method)(argument)

    async def start(self) -> list[int]:
        """Start every worker now (the pool would otherwise spawn them one by one as work arrives, and
        the first burst would wait for their start-up); returns their process ids."""
        pids: set[int] = set()
        for _ in range(3):  # a worker that answers twice leaves another unstarted: ask again
            answers = await asyncio.gather(*(self._run("ready", ()) for _ in range(max(1, self.workers))))
            pids.update(pid for answer in answers for pid in answer)
            if len(pids) >= max(1, self.workers):
                break
        return sorted(pids)

    async def intake(self, batch: Sequence) -> list:
        """One batch through `Intake.process` in one worker (see the module docstring)."""
        return await self._run("intake", list(batch))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._local is not None and self._local.store is not None:
            self._local.store.close()  # a worker process's connection ends with its process
