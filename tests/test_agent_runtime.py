"""The agent's HTTP server loop: no idle wakeups, a Date header on every answer, shutdown at once.

A real uvicorn server on a free loopback port, a real HTTP client."""

from __future__ import annotations

import threading
import time
import urllib.request
from email.utils import parsedate_to_datetime

import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from procs import free_port

from agent.runtime import DateHeader, QuietServer


class CountingServer(QuietServer):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


def test_idle_server_does_not_wake_dates_answers_and_stops_at_once():
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    port = free_port()
    server = CountingServer(
        uvicorn.Config(
            DateHeader(app),
            date_header=False,
            host="127.0.0.1",
            port=port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        assert resp.read() == b"ok\n"
        dates = resp.headers.get_all("date")
    assert len(dates) == 1, dates  # ours, not also uvicorn's
    assert abs(parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 5

    ticks = server.ticks
    time.sleep(1.5)  # uvicorn's own loop would have woken 15 times
    assert server.ticks == ticks

    stopped = time.monotonic()
    server.request_exit()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - stopped < 1.0
