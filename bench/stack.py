"""What the benchmarks share: a real redis-server and aggregator, filled with recorded nodes,
and the timing helpers. Not a test double: every process here is the real one."""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from procs import Kubeattention, RedisServer, free_ports, wait_for_port  # noqa: E402

from agent.recording_file import read_recording  # noqa: E402
from kubeattention import certs  # noqa: E402
from wire.v1 import telemetry_pb2_grpc  # noqa: E402

RECORDINGS = REPO / "agent" / "recordings"


def percentiles(samples_ns: list[int]) -> dict:
    a = np.array(samples_ns) / 1e6
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": len(a),
    }


def timed(fn, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return percentiles(out)


def print_latency_table(results: dict, targets: dict) -> None:
    """The benchmarks' table: one row per case (p50/p99/mean ms, calls), then each target, MET or MISSED."""
    width = max((len(k) for k in results), default=4)
    print(f"{'case':<{width}} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls':>6}")
    for key, r in results.items():
        print(f"{key:<{width}} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['mean_ms']:8.3f} {r['n']:6d}")
    for key, t in targets.items():
        print(f"target {key}: {t['value']:.3f} (<= {t['target']:g}) {'MET' if t['met'] else 'MISSED'}")


def recorded_vectors(folder: Path = RECORDINGS) -> list:
    vectors = []
    for path in sorted(folder.glob("*.jsonl")):
        vectors.extend(read_recording(path).vectors)
    if not vectors:
        raise SystemExit(f"no recordings in {folder}: nothing real to push")
    return vectors


def start_aggregator(redis_url: str, *flags: str) -> tuple[Kubeattention, int, int]:
    """``kubeattention aggregator`` on free loopback ports, serving; returns (process, gRPC port,
    HTTP port). ``flags`` must choose the transport (``--insecure`` or TLS/token flags)."""
    grpc_port, http_port = free_ports(2)
    proc = Kubeattention(
        "--log-level",
        "WARNING",
        "aggregator",
        "--redis-url",
        redis_url,
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        *flags,
    ).start()
    try:
        wait_for_port(grpc_port, proc=proc.proc, timeout=30)
        wait_for_port(http_port, proc=proc.proc, timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, grpc_port, http_port


class Stack:
    """redis-server + ``kubeattention aggregator`` on free loopback ports, ``nodes`` pushed.

    Plaintext (``--insecure``) by default; ``secure=True`` serves TLS and authenticates every
    call with a bearer token (one per node for pushes, a scheduler token in ``metadata`` for
    scoring), to measure what transport security costs."""

    def __init__(self, nodes: int, recordings: Path = RECORDINGS, *aggregator_flags: str, secure: bool = False):
        self.redis = RedisServer().start()
        self.names = [f"node-{i:04d}" for i in range(nodes)]
        self.tmp = Path(tempfile.mkdtemp(prefix="ka-bench-"))
        self.metadata = None
        node_tokens = {}
        if secure:
            pki = certs.create(self.tmp / "certs", [], ["bench"])
            node_tokens = {n: secrets.token_hex(16) for n in self.names}
            scheduler_token = secrets.token_hex(16)
            (self.tmp / "tokens").write_text(
                "".join(f"{t} node:{n}\n" for n, t in node_tokens.items()) + f"{scheduler_token} scheduler:bench\n"
            )
            security = [
                "--tls-cert",
                str(pki.server.cert),
                "--tls-key",
                str(pki.server.key),
                "--auth-token-file",
                str(self.tmp / "tokens"),
            ]
            self.metadata = (("authorization", f"Bearer {scheduler_token}"),)
        else:
            security = ["--insecure"]
        try:
            self.aggregator, self.grpc_port, self.http_port = start_aggregator(
                self.redis.url, "--max-staleness-ms", "600000", *security, *aggregator_flags
            )
        except BaseException:
            self.redis.cleanup()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        try:
            target = f"127.0.0.1:{self.grpc_port}"
            self.channel = (
                grpc.secure_channel(target, grpc.ssl_channel_credentials(pki.ca.read_bytes()))
                if secure
                else grpc.insecure_channel(target)
            )
            grpc.channel_ready_future(self.channel).result(timeout=10)
            self.vectors = recorded_vectors(recordings)
            push = telemetry_pb2_grpc.TelemetryServiceStub(self.channel).Push
            now = time.time_ns() // 1_000_000
            for i, name in enumerate(self.names):
                msg = self.vectors[i % len(self.vectors)].to_proto()
                msg.node_name = name
                msg.collected_at_unix_ms = now
                push(msg, timeout=5, metadata=(("authorization", f"Bearer {node_tokens[name]}"),) if secure else None)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        self.aggregator.stop()
        self.redis.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)
