"""The outcome collector's join index: each pod's newest entry in ``ka:decisions``, kept by
tailing the stream, so joining a pod costs one dictionary lookup and one read by id instead
of a scan of the stream per pod."""

from __future__ import annotations

from collections import OrderedDict

import redis

from aggregator.errors import StoreUnavailable
from scheduling.decisions import DEFAULT_DECISIONS_MAXLEN, Decision, DecisionLog

DECISIONS_PAGE = 10_000


class DecisionIndex:
    """Tails ``ka:decisions`` and remembers each pod's newest entry id (bounded, oldest dropped)."""

    def __init__(self, decisions: DecisionLog, capacity: int = DEFAULT_DECISIONS_MAXLEN):
        self.log = decisions
        self.capacity = capacity
        self.by_uid: OrderedDict[str, str] = OrderedDict()
        self.by_name: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.last_id = "-"

    def refresh(self) -> int:
        """Read decisions appended since the last refresh; returns how many. Raises StoreUnavailable."""
        total = 0
        while True:
            entries = self.log.read(self.last_id, count=DECISIONS_PAGE)
            for entry_id, d in entries:
                index, key = (self.by_uid, d.pod_uid) if d.pod_uid else (self.by_name, (d.pod_namespace, d.pod_name))
                index[key] = entry_id
                index.move_to_end(key)
                if len(index) > self.capacity:
                    index.popitem(last=False)
                self.last_id = entry_id
            total += len(entries)
            if len(entries) < DECISIONS_PAGE:
                return total

    def lookup(self, uid: str, namespace: str, name: str) -> Decision | None:
        """The newest decision for the pod (by uid, else by namespace/name). Raises StoreUnavailable."""
        entry_id = self.by_uid.get(uid) if uid else None
        if entry_id is None:
            entry_id = self.by_name.get((namespace, name))
        if entry_id is None:
            return None
        try:
            entries = self.log.client.xrange(self.log.key, min=entry_id, max=entry_id)
        except redis.RedisError as e:
            raise StoreUnavailable(f"cannot read {self.log.key}: {e}") from e
        if not entries:
            return None  # trimmed away since it was indexed
        try:
            return Decision.from_fields(entries[0][1])
        except ValueError:
            return None
