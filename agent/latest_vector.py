"""The latest vector, shared by the collection loop (writer), HTTP and the pusher (readers).

Only the latest vector is kept: a reader that falls behind skips to the newest one, so
nothing ever replays a backlog.
"""

from __future__ import annotations

import threading

from agent.vector import NodeVector


class LatestVector:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._vector: NodeVector | None = None
        self._seq = 0

    def publish(self, vector: NodeVector) -> int:
        with self._cond:
            self._vector = vector
            self._seq += 1
            self._cond.notify_all()
            return self._seq

    def latest(self) -> tuple[NodeVector | None, int]:
        """(vector, sequence number); (None, 0) before the first publish."""
        with self._cond:
            return self._vector, self._seq

    def wait_newer(self, seq: int, timeout: float) -> tuple[NodeVector | None, int]:
        """Block until a vector newer than ``seq`` is published or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq, timeout)
            return self._vector, self._seq

    def wake_all(self) -> None:
        """Wake blocked readers (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()
