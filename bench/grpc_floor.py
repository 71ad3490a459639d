#!/usr/bin/env python3
"""The gRPC floor: how many unary Push calls a Python gRPC server that does nothing answers here.

Starts a server for ``kubeattention.v1.TelemetryService`` whose Push decodes the request and
returns an empty PushAck — no validation, no Redis, no snapshot — once as ``grpc.aio`` (what
the aggregator runs) and once on the thread-pool server (what it ran before), and drives each
with ``h2load`` (nghttp2's HTTP/2 load generator, written in C: Debian ``nghttp2-client``) as
fast as it goes, so the client costs little and the figure is the server's ceiling on this
machine. The body is a real push (a recorded node vector, gRPC-framed).

It is the floor for ``bench/soak.py``: no aggregator built on Python gRPC can take more pushes
per second on this machine than this do-nothing server, and the load generator, Redis and the
real work all need their share of the same cores. Prints a table; ``--json`` one JSON object.

    .venv/bin/python bench/grpc_floor.py [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import psutil

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [BENCH, os.path.join(os.path.dirname(BENCH), "tests")]  # stack and procs (tests/procs.py)
from procs import REPO, free_port, wait_for_port  # noqa: E402
from stack import recorded_vectors  # noqa: E402

H2LOAD = "h2load"
H2LOAD_PACKAGE = "nghttp2-client"
#: h2load clients (connections) and concurrent streams per connection: 64 calls in flight.
CLIENTS, STREAMS = 8, 8
DEFAULT_SECONDS = 8.0
SERVERS = ("aio", "threadpool")

_SERVER = r"""
import asyncio, sys
from concurrent import futures
import grpc
sys.path.insert(0, sys.argv[3])
from wire.v1 import telemetry_pb2, telemetry_pb2_grpc

ACK = telemetry_pb2.PushAck()

class Sync(telemetry_pb2_grpc.TelemetryServiceServicer):
    def Push(self, request, context):
        return ACK

class Aio(telemetry_pb2_grpc.TelemetryServiceServicer):
    async def Push(self, request, context):
        return ACK

kind, listen = sys.argv[1], "127.0.0.1:" + sys.argv[2]
if kind == "threadpool":
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(Sync(), s)
    s.add_insecure_port(listen)
    s.start()
    s.wait_for_termination()
else:
    async def main():
        s = grpc.aio.server()
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(Aio(), s)
        s.add_insecure_port(listen)
        await s.start()
        await s.wait_for_termination()
    asyncio.run(main())
"""


def push_body() -> bytes:
    """One recorded node vector as a gRPC message frame (uncompressed flag, length, bytes)."""
    msg = recorded_vectors()[0].to_proto()
    msg.node_name = "floor-node-00001"
    msg.collected_at_unix_ms = int(time.time() * 1000)
    raw = msg.SerializeToString()
    return b"\x00" + struct.pack(">I", len(raw)) + raw


def measure(kind: str, seconds: float, body_path: str) -> dict:
    """h2load against a do-nothing server of ``kind`` for ``seconds``: calls/s, server CPU."""
    port = free_port()
    srv = subprocess.Popen(
        [sys.executable, "-c", _SERVER, kind, str(port), str(REPO)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc=srv, timeout=20)
        ps = psutil.Process(srv.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        t0 = time.monotonic()
        r = subprocess.run(
            [
                H2LOAD,
                "-c",
                str(CLIENTS),
                "-m",
                str(STREAMS),
                "-D",
                f"{seconds:g}",
                "-d",
                body_path,
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                f"http://127.0.0.1:{port}/kubeattention.v1.TelemetryService/Push",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        wall = time.monotonic() - t0
        cpu = sum(ps.cpu_times()[:2]) - cpu0
    finally:
        srv.kill()
        srv.wait(10)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", r.stdout)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", r.stdout)
    if r.returncode != 0 or not done:
        return {"error": f"h2load failed ({r.returncode}): {(r.stderr or r.stdout)[-300:]}"}
    succeeded = int(done.group(2))
    return {
        "calls_per_s": succeeded / seconds,
        "succeeded": succeeded,
        "server_cpu_percent_of_one_core": 100 * cpu / wall,
        "server_cpu_us_per_call": 1e6 * cpu / succeeded if succeeded else None,
        "mean_latency": mean.group(1) if mean else None,
    }


def run(seconds: float = DEFAULT_SECONDS, kinds: tuple[str, ...] = SERVERS) -> dict:
    if shutil.which(H2LOAD) is None:
        return {"error": f"{H2LOAD} not found: apt-get install {H2LOAD_PACKAGE} (make setup installs it)"}
    with tempfile.NamedTemporaryFile(suffix=".grpc") as f:
        f.write(push_body())
        f.flush()
        out = {
            "client": f"{H2LOAD}, {CLIENTS} connections x {STREAMS} streams, closed loop",
            "seconds": seconds,
            "cpus": os.cpu_count(),
        }
        for kind in kinds:
            out[kind] = measure(kind, seconds, f.name)
    return out


def print_table(d: dict, indent: str = "") -> None:
    if "error" in d:
        print(f"{indent}gRPC floor not measured: {d['error']}")
        return
    print(f"{indent}gRPC floor: a do-nothing Python Push server driven by {d['client']}, {d['seconds']:g} s each:")
    for kind in SERVERS:
        v = d.get(kind)
        if v is None:
            continue
        if "error" in v:
            print(f"{indent}  {kind:<11} failed: {v['error']}")
            continue
        print(
            f"{indent}  {kind:<11} {v['calls_per_s']:>7.0f} calls/s  "
            f"server CPU {v['server_cpu_percent_of_one_core']:.0f} % "
            f"of a core ({v['server_cpu_us_per_call']:.0f} us per call), mean latency {v['mean_latency']}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help=f"per server (default {DEFAULT_SECONDS:g})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()
    d = run(args.seconds)
    if args.json:
        print(json.dumps(d))
    else:
        print_table(d)
    if "error" in d:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
