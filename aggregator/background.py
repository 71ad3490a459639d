"""What the aggregator's background loops share (the snapshot refresher and the model reloader
each run two): named daemon threads started and joined together, and the loop that follows a
Redis pub/sub channel, subscribing again whenever the subscription is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Loops:
    """Daemon threads named ``{prefix}-{name}``, one per loop, started together and joined on stop."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._threads: list[threading.Thread] = []

    def start(self, *loops: tuple[Callable[[], None], str]) -> None:
        for target, name in loops:
            t = threading.Thread(target=target, name=f"{self.prefix}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout_s: float = 3.0) -> None:
        for t in self._threads:
            t.join(timeout=timeout_s)


def follow_channel(
    open_pubsub: Callable[[], Any],
    channel: str,
    on_message: Callable[[Any], None],
    stop: threading.Event,
    *,
    poll_s: float,
    errors: tuple[type[BaseException], ...],
    on_subscribed: Callable[[], None],
    on_lost: Callable[[BaseException], float],
) -> None:
    """Subscribe to ``channel`` and hand each message's data to ``on_message`` until ``stop`` is
    set, polling every ``poll_s`` so that a stop is prompt. When the subscription fails with one
    of ``errors``, ``on_lost(error)`` says so and returns how long to wait before subscribing
    again; ``on_subscribed()`` runs after every (re)subscription."""
    while not stop.is_set():
        ps = None
        try:
            ps = open_pubsub()
            ps.subscribe(channel)
            on_subscribed()
            while not stop.is_set():
                msg = ps.get_message(timeout=poll_s)
                if msg and msg.get("type") == "message":
                    on_message(msg["data"])
        except errors as e:
            if stop.is_set():
                return
            stop.wait(on_lost(e))
        finally:
            if ps is not None:
                try:
                    ps.close()
                except Exception:
                    pass
