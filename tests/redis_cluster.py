"""A real Redis Cluster on loopback ports, for the cluster and failover tests.

Three masters and three replicas: six ``redis-server --cluster-enabled yes`` processes,
joined with ``redis-cli --cluster create ... --cluster-replicas 1``. Nothing is simulated;
killing a master (SIGKILL) makes its replica take over after ``cluster-node-timeout``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time

from procs import wait_for_port

#: How long a master may be unreachable before its replica is promoted (ms). Low, for tests.
NODE_TIMEOUT_MS = 1000


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port + 10000 > 65535:
                port -= 20000  # ephemeral ports are high; the bus needs room above
                try:
                    b.bind(("127.0.0.1", port))
                except OSError:
                    continue
                b.close()
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port pair (port, port + 10000) for a Redis Cluster node")


class RedisClusterProcs:
    def __init__(self, masters: int = 3, replicas_per_master: int = 1):
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                raise RuntimeError(
                    f"{binary} not found: install Debian's redis-server and redis-tools (make test does)"
                )
        self.masters, self.replicas = masters, replicas_per_master
        self.ports = [free_cluster_port() for _ in range(masters * (1 + replicas_per_master))]
        self.dir = tempfile.mkdtemp(prefix="ka-redis-cluster-")
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """The aggregator's --redis-url for this cluster: every node as a start-up node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _start_node(self, port: int) -> None:
        node_dir = f"{self.dir}/{port}"
        subprocess.run(["mkdir", "-p", node_dir], check=True)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{node_dir}/nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--appendonly",
                "no",
                "--save",
                "",
                "--dir",
                node_dir,
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
                "--logfile",
                f"{node_dir}/redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, proc=self.procs[port])

    def start(self) -> RedisClusterProcs:
        for port in self.ports:
            self._start_node(port)
        out = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        self.wait_ok()
        self.wait_replicas_synced()
        return self

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """A replica that has not finished its first sync refuses to take over: wait for every link."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [self.cli(p, "info", "replication") for p in self.alive_ports()]
            replicas = [i for i in infos if "role:slave" in i]
            if len(replicas) == self.masters * self.replicas and all("master_link_status:up" in i for i in replicas):
                return
            time.sleep(0.1)
        raise TimeoutError(f"Redis Cluster replicas not in sync after {timeout} s")

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10).stdout

    def alive_ports(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def wait_ok(self, timeout: float = 30.0) -> float:
        """Wait until every live node reports cluster_state:ok; returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if all("cluster_state:ok" in self.cli(p, "cluster", "info") for p in self.alive_ports()):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(f"Redis Cluster not ok after {timeout} s")

    def wait_failover(self, dead_port: int, timeout: float = 30.0) -> float:
        """Wait until the cluster has marked ``dead_port`` failed and a replica serves its slots
        (cluster_state:ok again everywhere); returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            live = self.alive_ports()
            view = self.cli(live[0], "cluster", "nodes")
            dead = [ln for ln in view.splitlines() if f":{dead_port}@" in ln]
            if (
                dead
                and "fail" in dead[0].split()[2]
                and "fail?" not in dead[0].split()[2]
                and all("cluster_state:ok" in self.cli(p, "cluster", "info") for p in live)
            ):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"no replica took over from {dead_port} within {timeout} s")

    def role(self, port: int) -> str:
        return self.cli(port, "role").split("\n", 1)[0].strip()

    def master_for_key(self, key: str) -> int:
        slot = int(self.cli(self.ports[0], "cluster", "keyslot", key).strip())
        for line in self.cli(self.alive_ports()[0], "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                for rng in parts[8:]:
                    lo, _, hi = rng.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        return int(parts[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no master serves the slot of {key!r}")

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
