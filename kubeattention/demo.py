"""``kubeattention demo``: the whole data path on this machine, for real.

Starts a real redis-server, the aggregator, a real agent measuring this machine, and one
replay agent per recorded node state in ``agent/recordings/`` (states recorded on a real
machine beside real stress-ng antagonists). Then asks the aggregator's BatchScore for a
latency-critical pod and an io-bound pod and prints the ranked tables; repeats every
``--every`` seconds until Ctrl-C, or once with ``--once``. Everything it started is stopped
on the way out. Process logs go to ``.demo/`` in the working directory.

Every connection is authenticated as in production: the demo makes a development CA and
certificates in ``.demo/certs/`` (``kubeattention certs``), the aggregator serves gRPC and
HTTP over TLS and requires client certificates (mTLS), each agent pushes with its own
node certificate (it may push only for its own node), and the tables are asked for with a
scheduler certificate.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

from client import score_cli
from kubeattention import certs
from wire.client_security import ClientSecurity

RECORDINGS = Path(__file__).resolve().parent.parent / "agent" / "recordings"
DEFAULT_REDIS_PORT = 6399
DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8080
DEFAULT_AGENT_HTTP_PORT = 9101
DEFAULT_EVERY_S = 5.0
STARTUP_TIMEOUT_S = 30.0
PODS = (
    ("latency-critical", "500m", "512Mi"),
    ("io-bound", "1", "1Gi"),
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="print the tables once, stop everything, exit")
    p.add_argument("--every", type=float, default=DEFAULT_EVERY_S, help="seconds between tables (default 5)")
    p.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT, help=f"default {DEFAULT_REDIS_PORT}")
    p.add_argument(
        "--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help=f"aggregator gRPC, default {DEFAULT_GRPC_PORT}"
    )
    p.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help=f"aggregator HTTP, default {DEFAULT_HTTP_PORT}"
    )
    p.add_argument(
        "--agent-http-port",
        type=int,
        default=DEFAULT_AGENT_HTTP_PORT,
        help=f"first agent HTTP port; replay agents take the next ones (default {DEFAULT_AGENT_HTTP_PORT})",
    )
    p.add_argument("--log-dir", default=".demo", help="where process logs go (default .demo)")


class Stack:
    """The processes the demo started, stopped in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited with code {proc.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def port_free(port: int) -> bool:
    """Can a server bind it? (SO_REUSEADDR as servers set it: TIME_WAIT leftovers don't count.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(what: str, ok, stack: Stack, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            if ok():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; see the logs in {stack.log_dir}/")


def http_json(url: str, ca: Path | None = None):
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    with urllib.request.urlopen(url, timeout=2, context=context) as r:
        return json.load(r)


def this_node_name() -> str:
    raw = socket.gethostname().lower()
    clean = "".join(c if c.isalnum() or c in "-." else "-" for c in raw).strip("-.") or "localhost"
    return f"live-{clean}"[:63].rstrip("-.")


def run(args: argparse.Namespace) -> int:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("kubeattention demo: redis-server not found; `make demo` installs Debian's redis-server", file=sys.stderr)
        return 2
    recordings = sorted(RECORDINGS.glob("*.jsonl"))
    if not recordings:
        print(f"kubeattention demo: no recorded node states in {RECORDINGS}", file=sys.stderr)
        return 2
    agent_ports = [args.agent_http_port + i for i in range(len(recordings) + 1)]
    wanted = {"--redis-port": args.redis_port, "--grpc-port": args.grpc_port, "--http-port": args.http_port}
    wanted.update({f"agent HTTP port ({p}, from --agent-http-port)": p for p in agent_ports})
    busy = [f"{flag} {port}" if flag.startswith("--") else flag for flag, port in wanted.items() if not port_free(port)]
    if busy:
        print(
            "kubeattention demo: ports in use: " + ", ".join(busy) + "; pick others with the flags named",
            file=sys.stderr,
        )
        return 2

    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(log_dir)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    ka = [sys.executable, "-m", "kubeattention.cli"]
    grpc_addr = f"127.0.0.1:{args.grpc_port}"
    http = f"https://127.0.0.1:{args.http_port}"
    nodes = [this_node_name()] + [f"replay-{rec.stem}" for rec in recordings]
    pki = certs.create(log_dir / "certs", nodes, ["demo"])
    scheduler = ClientSecurity(tls_ca=pki.ca, tls_cert=pki.schedulers["demo"].cert, tls_key=pki.schedulers["demo"].key)

    def agent_tls(node: str) -> list[str]:
        return ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.nodes[node].cert), "--tls-key", str(pki.nodes[node].key)]

    try:
        redis_dir = log_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        stack.start(
            "redis",
            [
                redis_bin,
                "--port",
                str(args.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir.resolve()),
            ],
        )
        stack.start(
            "aggregator",
            ka
            + [
                "aggregator",
                "--redis-url",
                f"redis://127.0.0.1:{args.redis_port}/0",
                "--grpc-listen",
                grpc_addr,
                "--http-listen",
                f"127.0.0.1:{args.http_port}",
                "--tls-cert",
                str(pki.server.cert),
                "--tls-key",
                str(pki.server.key),
                "--tls-client-ca",
                str(pki.ca),
            ],
        )
        wait_until("aggregator /readyz", lambda: http_json(f"{http}/readyz", pki.ca)["ready"], stack)

        stack.start(
            "agent-live",
            ka
            + [
                "agent",
                "--aggregator",
                grpc_addr,
                "--node-name",
                nodes[0],
                "--interval",
                "1",
                "--http-listen",
                f"127.0.0.1:{agent_ports[0]}",
                *agent_tls(nodes[0]),
            ],
        )
        for rec, name, port in zip(recordings, nodes[1:], agent_ports[1:]):
            stack.start(
                f"agent-{name}",
                ka
                + [
                    "agent",
                    "--aggregator",
                    grpc_addr,
                    "--node-name",
                    name,
                    "--replay",
                    str(rec),
                    "--interval",
                    "1",
                    "--http-listen",
                    f"127.0.0.1:{port}",
                    *agent_tls(name),
                ],
            )

        def all_reported() -> bool:
            doc = http_json(f"{http}/v1/nodes", pki.ca)
            have = {n["node"]: n for n in doc["nodes"]}
            # the live agent needs two /proc/stat readings before CPU busy exists
            return set(nodes) <= set(have) and "cpu_utilization" not in have[nodes[0]]["missing"]

        wait_until("telemetry from every agent", all_reported, stack)
        print(
            f"KubeAttention demo: redis :{args.redis_port}, aggregator gRPC {grpc_addr}, HTTP {http} "
            f"(/v1/nodes, /metrics), agents on :{agent_ports[0]}-{agent_ports[-1]}; logs in {log_dir}/"
        )
        print(
            f"mTLS: every agent pushes with its own node certificate, the tables are asked for with a scheduler "
            f"certificate (development CA in {pki.ca.parent}/)"
        )
        print(
            f"nodes: {nodes[0]} measures this machine live; "
            + ", ".join(nodes[1:])
            + " replay states recorded beside real stress-ng antagonists\n"
        )
        while True:
            stack.check_alive()
            for profile, cpu, mem in PODS:
                req = score_cli.build_request(
                    argparse.Namespace(cpu=cpu, memory=mem, priority=0, profile=profile, qos=None, nodes=nodes)
                )
                resp = score_cli.call(grpc_addr, req, 2.0, scheduler)
                article = "an" if profile[0] in "aeiou" else "a"
                print(f"BatchScore for {article} {profile} pod (cpu {cpu}, memory {mem}):")
                print(score_cli.format_table(resp))
                print()
            if args.once or stop["now"]:
                return 0
            deadline = time.monotonic() + args.every
            while time.monotonic() < deadline and not stop["now"]:
                time.sleep(0.2)
            if stop["now"]:
                return 0
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, grpc.RpcError) as e:
        detail = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.RpcError) else str(e)
        print(f"kubeattention demo: {detail}", file=sys.stderr)
        return 1
    finally:
        print("stopping the demo's processes…", file=sys.stderr)
        stack.stop()
