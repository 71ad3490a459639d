"""Drivers that start each profile's victim and return its measured per-op latency.

A driver's :meth:`run` returns ``{"ops", "seconds", "p50_ms", "p99_ms", "command"}`` or
raises :class:`VictimError` (failed or exceeded its hard timeout; the process group is
killed either way). Binaries are looked up before anything starts, so a missing one is
reported with the Debian package that provides it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wire.schema import Profile

#: binary -> Debian package that ships it.
DEBIAN_PACKAGE = {
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "fio": "fio",
    "stress-ng": "stress-ng",
}
#: redis-benchmark: parallel clients, value size. One client: request, reply, next request —
#: a lightly loaded service whose every GET waits for both processes to be woken; ten clients
#: kept redis-server and redis-benchmark busy on both vCPUs even alone.
REDIS_CLIENTS = 1
REDIS_VALUE_BYTES = 64
#: Requests of the probe that sizes a redis run to --run-seconds on the quiet machine.
REDIS_PROBE_REQUESTS = 20_000
FIO_FILE_SIZE = "128M"


class VictimError(RuntimeError):
    pass


class MissingBinary(RuntimeError):
    pass


def require(binaries: list[str], which=shutil.which) -> None:
    """Raise MissingBinary naming every absent binary and its Debian package."""
    missing = [b for b in binaries if which(b) is None]
    if missing:
        pkgs = sorted({DEBIAN_PACKAGE.get(b, b) for b in missing})
        raise MissingBinary(
            "missing "
            + ", ".join(f"{b} (Debian package {DEBIAN_PACKAGE.get(b, b)})" for b in missing)
            + f": install with `apt-get install {' '.join(pkgs)}` (or `make setup`)"
        )


def _run(cmd: list[str], timeout_s: float, env: dict | None = None) -> str:
    """Run in its own process group; kill the whole group on timeout. Returns stdout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise VictimError(f"{cmd[0]} did not finish within its {timeout_s:.0f} s bound (killed)") from None
    if proc.returncode != 0:
        raise VictimError(
            f"{' '.join(cmd[:3])} ... exited with {proc.returncode}: "
            f"{err.decode(errors='replace').strip()[-300:] or 'no message'}"
        )
    return out.decode(errors="replace")


class InProcessVictim:
    """One of contention_lab.victims' NumPy/hashlib kernels, in a fresh Python process."""

    binaries: list[str] = []

    def __init__(self, kind: str):
        self.kind = kind

    def describe(self) -> str:
        return f"python -m contention_lab.victims {self.kind}"

    def start(self, work_dir: Path, seconds: float) -> None:
        pass

    def run(self, seconds: float, timeout_s: float) -> dict:
        out = _run([sys.executable, "-m", "contention_lab.victims", self.kind, "--seconds", str(seconds)], timeout_s)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise VictimError(f"victim {self.kind} printed no JSON result: {out[-200:]!r}") from None
        return {**result, "command": self.describe()}

    def stop(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisVictim:
    """redis-server (started once, on a free loopback port) measured by redis-benchmark GETs."""

    binaries = ["redis-server", "redis-benchmark"]

    def __init__(self, requests: int | None = None):
        self.requests = requests
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def describe(self) -> str:
        return (
            f"redis-benchmark -t get -n {self.requests} -c {REDIS_CLIENTS} -d {REDIS_VALUE_BYTES} --csv "
            "against redis-server --save '' --appendonly no"
        )

    def start(self, work_dir: Path, seconds: float) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work_dir),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise VictimError(f"redis-server did not listen on 127.0.0.1:{self.port}") from None
                time.sleep(0.05)
        if self.requests is None:  # size the run to `seconds` on the machine as it is now
            probe = self._bench(REDIS_PROBE_REQUESTS, 60)
            self.requests = max(1000, int(probe["rps"] * seconds))

    def _bench(self, n: int, timeout_s: float) -> dict:
        out = _run(
            [
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                "get",
                "-n",
                str(n),
                "-c",
                str(REDIS_CLIENTS),
                "-d",
                str(REDIS_VALUE_BYTES),
                "--csv",
            ],
            timeout_s,
        )
        lines = [ln for ln in out.splitlines() if ln.startswith('"GET"')]
        if not lines:
            raise VictimError(f"redis-benchmark printed no GET line: {out[-200:]!r}")
        fields = [f.strip('"') for f in lines[-1].split(",")]
        # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",...
        return {
            "rps": float(fields[1]),
            "mean_ms": float(fields[2]),
            "p50_ms": float(fields[4]),
            "p99_ms": float(fields[6]),
        }

    def run(self, seconds: float, timeout_s: float) -> dict:
        t0 = time.monotonic()
        r = self._bench(self.requests, timeout_s)
        return {
            "ops": self.requests,
            "seconds": round(time.monotonic() - t0, 3),
            "mean_ms": r["mean_ms"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "command": self.describe(),
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class FioVictim:
    """fio 4 KiB random reads with O_DIRECT at queue depth 1 on a file in the work directory."""

    binaries = ["fio"]

    def __init__(self):
        self.file: Path | None = None

    def _cmd(self, seconds: float) -> list[str]:
        return [
            "fio",
            "--name=victim",
            f"--filename={self.file}",
            f"--size={FIO_FILE_SIZE}",
            "--rw=randread",
            "--bs=4k",
            "--direct=1",
            "--ioengine=psync",
            "--iodepth=1",
            "--time_based",
            f"--runtime={max(1, round(seconds))}s",
            "--output-format=json",
        ]

    def describe(self) -> str:
        return f"fio --rw=randread --bs=4k --direct=1 --ioengine=psync --iodepth=1 --size={FIO_FILE_SIZE}"

    def start(self, work_dir: Path, seconds: float) -> None:
        self.file = work_dir / "fio-victim.dat"
        # Lay the file out once (fio writes it on first use), so runs measure reads only.
        _run(
            [
                "fio",
                "--name=layout",
                f"--filename={self.file}",
                f"--size={FIO_FILE_SIZE}",
                "--rw=write",
                "--bs=1M",
                "--end_fsync=1",
                "--output-format=json",
            ],
            120,
        )

    def run(self, seconds: float, timeout_s: float) -> dict:
        out = _run(self._cmd(seconds), timeout_s)
        try:
            read = json.loads(out[out.index("{") :])["jobs"][0]["read"]
            pct = read["clat_ns"]["percentile"]
            return {
                "ops": int(read["total_ios"]),
                "seconds": round(read["runtime"] / 1000.0, 3),
                "mean_ms": read["clat_ns"]["mean"] / 1e6,
                "p50_ms": pct["50.000000"] / 1e6,
                "p99_ms": pct["99.000000"] / 1e6,
                "command": self.describe(),
            }
        except (ValueError, KeyError, IndexError) as err:
            raise VictimError(f"fio output without read latency percentiles ({err})") from None

    def stop(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)


def make_victims(profiles: list[Profile], redis_requests: int | None = None) -> dict[Profile, object]:
    table = {
        Profile.LATENCY_CRITICAL: lambda: RedisVictim(redis_requests),
        Profile.CACHE_SENSITIVE: lambda: InProcessVictim("cache"),
        Profile.MEMORY_BANDWIDTH_BOUND: lambda: InProcessVictim("stream"),
        Profile.IO_BOUND: FioVictim,
        Profile.BATCH: lambda: InProcessVictim("hash"),
    }
    return {p: table[p]() for p in profiles}
