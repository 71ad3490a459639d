"""Group commit: writes that arrive together share one round trip to Redis.

Each caller hands its item to ``submit`` and waits; one writer thread takes everything
pending, flushes it in one call (a pipeline), and wakes every caller with the outcome. A
caller returns only after its item's flush returned, so "acknowledged" keeps its meaning:
Redis replied to this write. Under load this turns thousands of small round trips into a
few hundred larger ones; alone, a write pays one thread hand-off (tens of microseconds).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from aggregator.errors import StoreUnavailable


class _Job:
    __slots__ = ("item", "done", "error")

    def __init__(self, item) -> None:
        self.item = item
        self.done = threading.Event()
        self.error: BaseException | None = None


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
            for j in batch:
                j.error = error
                j.done.set()
