"""Real processes for integration tests: redis-server and kubeattention subcommands.

Nothing here is mocked: redis-server is Debian's binary on a free loopback port, and the
aggregator and agents are the real ``kubeattention`` command started as subprocesses.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

REPO = Path(__file__).resolve().parent.parent


def cpu_cgroups_or_skip():
    """The cgroup hierarchy calibration puts antagonists in (contention_lab.cgroups.detect), or skip saying why."""
    import pytest

    from contention_lab import cgroups

    try:
        h = cgroups.detect()
    except cgroups.CgroupError as err:
        pytest.skip(str(err))
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    return h


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets stay bound until every port is picked, so the
    kernel cannot hand the same port out twice (as back-to-back free_port() calls can)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 15.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass(frozen=True)
class RedisTLS:
    """TLS for a test redis-server: it serves ``cert``/``key``; with ``client_auth`` it also
    demands a client certificate from ``ca`` (the URL then carries ``client_cert``/``client_key``)."""

    cert: Path
    key: Path
    ca: Path
    client_auth: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None


class RedisServer:
    """A throw-away redis-server on a loopback port; stop() and start() keep the port.

    Optional, for the security tests: ``password`` (``requirepass``, the ``default`` user),
    ``users`` (ACL rules as ``ACL SETUSER`` takes them, e.g. ``"ka on >pw ~ka:* &ka:* +@all"``)
    and ``tls`` (serve only TLS on the port: the URLs become ``rediss://``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        users: tuple[str, ...] = (),
        tls: RedisTLS | None = None,
    ):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server (make test does)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ka-redis-")
        self.proc: subprocess.Popen | None = None
        self.password, self.users, self.tls = password, tuple(users), tls

    @property
    def url(self) -> str:
        return self.url_for(None, self.password)

    def url_for(self, username: str | None, password: str | None) -> str:
        """The URL a client uses as ``username`` (None: the default user) with ``password``."""
        auth = ""
        if username is not None or password is not None:
            auth = f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = {"ssl_ca_certs": str(self.tls.ca)}
        if self.tls.client_cert is not None:
            query.update(ssl_certfile=str(self.tls.client_cert), ssl_keyfile=str(self.tls.client_key))
        return f"rediss://{auth}127.0.0.1:{self.port}/0?{urlencode(query)}"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes" if self.tls.client_auth else "no",
            ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for rule in self.users:
            args += ["--user", *rule.split()]
        return args

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Kubeattention:
    """``kubeattention SUBCOMMAND ...`` as a subprocess with its output kept in a file."""

    def __init__(self, *args: str, env: dict | None = None):
        self.args = [sys.executable, "-m", "kubeattention.cli", *args]
        self.log = tempfile.NamedTemporaryFile(prefix="ka-proc-", suffix=".log", delete=False)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Kubeattention:
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env)
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
