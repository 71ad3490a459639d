"""Group commit: writes that arrive together share one round trip to Redis.

Each caller hands its item to ``submit`` (a thread, which blocks) or ``submit_async`` (an
asyncio task, which awaits) and waits; one writer thread takes everything
pending, flushes it in one call (a pipeline), and wakes every caller with the outcome. A
caller returns only after its item's flush returned, so "acknowledged" keeps its meaning:
Redis replied to this write. Under load this turns thousands of small round trips into a
few hundred larger ones; alone, a write pays one thread hand-off (tens of microseconds).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from aggregator.errors import StoreUnavailable


class _Job:
    __slots__ = ("item", "done", "error", "future")

    def __init__(self, item, future: asyncio.Future | None = None) -> None:
        self.item = item
        self.future = future  # an asyncio caller's; a thread caller waits on ``done``
        self.done = threading.Event() if future is None else None
        self.error: BaseException | None = None


def _settle(jobs: list[_Job]) -> None:
    """On the callers' event loop: hand each asyncio caller its outcome."""
    for j in jobs:
        if j.future.done():  # the caller gave up (its deadline passed, it was cancelled)
            continue
        if j.error is None:
            j.future.set_result(None)
        else:
            j.future.set_exception(j.error)


class GroupCommit:
    def __init__(self, flush: Callable[[list], None], wait_s: float, name: str = "redis-writer"):
        """``flush(items)`` writes them all or raises; ``wait_s`` bounds how long ``submit`` waits."""
        self._flush = flush
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._closed = False
        self._flush_started: float | None = None  # monotonic start of the flush in progress
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        """Returns once ``item`` is written; raises what its flush raised, or StoreUnavailable."""
        job = _Job(item)
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the Redis writer is shut down")
            self._pending.append(job)
            self._cond.notify()
        if not job.done.wait(self.wait_s):
            raise StoreUnavailable(f"no answer from Redis within {self.wait_s:g} s")
        if job.error is not None:
            raise job.error

    def submit_async(self, item) -> asyncio.Future:
        """For a caller on an event loop: a future that resolves once ``item`` is written, or
        raises what its flush raised (StoreUnavailable when the writer is shut down). It always
        resolves: every flush ends, within the Redis socket timeout, in a result or an error."""
        loop = asyncio.get_running_loop()
        job = _Job(item, loop.create_future())
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the Redis writer is shut down")
            self._pending.append(job)
            self._cond.notify()
        return job.future

    def busy_for_s(self) -> float:
        """How long the flush in progress has been running (0 when none is)."""
        started = self._flush_started
        return 0.0 if started is None else time.monotonic() - started

    def close(self, timeout: float = 3.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            error: BaseException | None = None
            self._flush_started = time.monotonic()
            try:
                self._flush([j.item for j in batch])
            except BaseException as e:  # every waiter hears of it; the writer lives on
                error = e
            finally:
                self._flush_started = None
            waiting: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
            for j in batch:
                j.error = error
                if j.future is None:
                    j.done.set()
                else:
                    waiting.setdefault(j.future.get_loop(), []).append(j)
            for loop, jobs in waiting.items():  # one wake-up per loop and flush, not per caller
                try:
                    loop.call_soon_threadsafe(_settle, jobs)
                except RuntimeError:  # that loop is closed: nobody is waiting any more
                    pass
