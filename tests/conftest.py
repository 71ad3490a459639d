from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import RedisServer  # noqa: E402


@pytest.fixture
def redis_server():
    """A real redis-server on a free loopback port, stopped after the test."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()
