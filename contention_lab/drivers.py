"""Drivers that start each profile's victim and return its measured per-op latency.

A driver's :meth:`run` returns ``{"ops", "seconds", "p50_ms", "p99_ms", "command"}`` or
raises :class:`VictimError` (failed or exceeded its hard timeout; the process group is
killed either way). Binaries are looked up before anything starts, so a missing one is
reported with the Debian package that provides it.

The session may give a victim a pod-like cgroup (``victim.group``, a
``contention_lab.cgroups.VictimGroup``): the victim's processes start inside it (the Redis
*server* for the latency-critical victim — its load generator stands for clients on other
nodes and stays outside), so the victim's own PSI and cpu.stat can be read over each run.
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
#: Our own compiled open-loop load generator (loadgen/, Go standard library only).
LOADGEN = "ka-loadgen"
LOADGEN_HINT = "build it with `make loadgen` (Go; installs .venv/bin/ka-loadgen), or set KA_LOADGEN to its path"
#: The latency-critical victim's load: GETs of a 64-byte value at a fixed rate over four
#: connections, open loop. 5 000/s keeps redis-server at about a tenth of one vCPU here, a
#: service with headroom, as latency-critical services are run; requests arrive whether or
#: not the server kept up, so a server that gets less CPU queues them and its p99 shows it.
REDIS_RATE_PER_S = 5000
REDIS_CONNECTIONS = 4
REDIS_VALUE_BYTES = 64
FIO_FILE_SIZE = "128M"


class VictimError(RuntimeError):
    pass


class MissingBinary(RuntimeError):
    pass


def loadgen_path(which=shutil.which) -> str | None:
    """``$KA_LOADGEN``, else ``ka-loadgen`` beside this Python (the venv's bin), else on PATH."""
    env = os.environ.get("KA_LOADGEN")
    if env:
        return env if os.access(env, os.X_OK) else None
    beside = Path(sys.executable).parent / LOADGEN
    if os.access(beside, os.X_OK):
        return str(beside)
    return which(LOADGEN)


def require(binaries: list[str], which=shutil.which) -> None:
    """Raise MissingBinary naming every absent binary and its Debian package (or how to build ours)."""
    if LOADGEN in binaries and loadgen_path(which) is None:
        where = os.environ.get("KA_LOADGEN") or f"{Path(sys.executable).parent / LOADGEN} or PATH"
        raise MissingBinary(f"missing {LOADGEN} (looked in {where}): {LOADGEN_HINT}")
    binaries = [b for b in binaries if b != LOADGEN]
    missing = [b for b in binaries if which(b) is None]
    if missing:
        pkgs = sorted({DEBIAN_PACKAGE.get(b, b) for b in missing})
        raise MissingBinary(
            "missing "
            + ", ".join(f"{b} (Debian package {DEBIAN_PACKAGE.get(b, b)})" for b in missing)
            + f": install with `apt-get install {' '.join(pkgs)}` (or `make setup`)"
        )


def _run(cmd: list[str], timeout_s: float, env: dict | None = None, group=None) -> str:
    """Run in its own process group (and in ``group``'s cgroup, if given); kill the whole group on
    timeout. Returns stdout."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        preexec_fn=group.preexec if group is not None else None,
    )
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
        self.group = None

    def describe(self) -> str:
        return f"python -m contention_lab.victims {self.kind}"

    def start(self, work_dir: Path, seconds: float) -> None:
        pass

    def run(self, seconds: float, timeout_s: float) -> dict:
        out = _run(
            [sys.executable, "-m", "contention_lab.victims", self.kind, "--seconds", str(seconds)],
            timeout_s,
            group=self.group,
        )
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
    """redis-server (started once, on a free loopback port, in the victim's cgroup) under an
    open-loop load of GETs at :data:`REDIS_RATE_PER_S` from ``ka-loadgen`` (outside the cgroup)."""

    binaries = ["redis-server", LOADGEN]

    def __init__(self, rate_per_s: float = REDIS_RATE_PER_S, connections: int = REDIS_CONNECTIONS):
        self.rate, self.connections = rate_per_s, connections
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.group = None

    def describe(self) -> str:
        return (
            f"ka-loadgen --rate {self.rate:g} --connections {self.connections} --value-bytes {REDIS_VALUE_BYTES} "
            "(open loop) against redis-server --save '' --appendonly no"
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
            preexec_fn=self.group.preexec if self.group is not None else None,
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

    def run(self, seconds: float, timeout_s: float) -> dict:
        binary = loadgen_path()
        if binary is None:
            raise VictimError(f"{LOADGEN} not found: {LOADGEN_HINT}")
        out = _run(
            [
                binary,
                "--addr",
                f"127.0.0.1:{self.port}",
                "--rate",
                f"{self.rate:g}",
                "--connections",
                str(self.connections),
                "--seconds",
                f"{seconds:g}",
                "--value-bytes",
                str(REDIS_VALUE_BYTES),
            ],
            timeout_s,
        )
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise VictimError(f"{LOADGEN} printed no JSON result: {out[-200:]!r}") from None
        if r["completed"] < r["sent"]:
            raise VictimError(f"{LOADGEN}: {r['sent'] - r['completed']} of {r['sent']} requests got no reply")
        return {
            "ops": r["completed"],
            "seconds": r["seconds"],
            "mean_ms": r["mean_ms"],
            "p50_ms": r["p50_ms"],
            "p90_ms": r["p90_ms"],
            "p99_ms": r["p99_ms"],
            "p999_ms": r["p999_ms"],
            "due_p99_ms": r["due_p99_ms"],
            "send_lag_p99_ms": r["send_lag_p99_ms"],
            "achieved_per_s": r["achieved_per_s"],
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
        self.group = None

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
        out = _run(self._cmd(seconds), timeout_s, group=self.group)
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


def make_victims(profiles: list[Profile], latency_critical_load: dict | None = None) -> dict[Profile, object]:
    """One victim per profile; ``latency_critical_load`` is a plan's ``{"rate_per_s", "connections"}``."""
    load = latency_critical_load or {}
    table = {
        Profile.LATENCY_CRITICAL: lambda: RedisVictim(
            load.get("rate_per_s", REDIS_RATE_PER_S), load.get("connections", REDIS_CONNECTIONS)
        ),
        Profile.CACHE_SENSITIVE: lambda: InProcessVictim("cache"),
        Profile.MEMORY_BANDWIDTH_BOUND: lambda: InProcessVictim("stream"),
        Profile.IO_BOUND: FioVictim,
        Profile.BATCH: lambda: InProcessVictim("hash"),
    }
    return {p: table[p]() for p in profiles}
