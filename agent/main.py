"""``kubeattention agent``: the node agent (one per node, as a DaemonSet).

Collects the 15-metric vector every ``--interval`` seconds, serves /metrics, /v1/node,
/healthz and /readyz on ``--http-listen``, and pushes to ``--aggregator`` over gRPC.
With ``--replay FILE`` it plays a recorded node state instead of measuring this machine.
SIGTERM or SIGINT stops it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from agent.config import (
    DEFAULT_AGGREGATOR,
    DEFAULT_HTTP_LISTEN,
    DEFAULT_INTERVAL_S,
    DEFAULT_PROC_ROOT,
    DEFAULT_SYS_ROOT,
    NODE_NAME_ENV,
    POD_SOURCES,
    AgentConfig,
    ConfigError,
    default_node_name,
)
from agent.pods.source import PodSourceSettings, probe_pod_source
from agent.recording_file import RecordingError
from agent.runtime import Agent, AgentStartError
from agent.tetragon import DEFAULT_EXPORT_FILE, DEFAULT_GRPC_ADDRESS
from wire.client_security import TokenFileError
from wire.client_security import add_arguments as add_transport_arguments

log = logging.getLogger("agent")

EXIT_CONFIG = 2
EXIT_START = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--aggregator",
        default=DEFAULT_AGGREGATOR,
        metavar="HOST:PORT",
        help=f"aggregator gRPC address; 'none' serves HTTP only (default: {DEFAULT_AGGREGATOR})",
    )
    parser.add_argument(
        "--node-name",
        default=None,
        metavar="NAME",
        help=f"Kubernetes node name (default: ${NODE_NAME_ENV}, else the hostname)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"collection interval (default: {DEFAULT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--http-listen",
        default=DEFAULT_HTTP_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve /metrics, /v1/node, /healthz, /readyz (default: {DEFAULT_HTTP_LISTEN})",
    )
    parser.add_argument(
        "--proc-root",
        default=DEFAULT_PROC_ROOT,
        metavar="DIR",
        help=f"procfs mount, e.g. /host/proc in a container (default: {DEFAULT_PROC_ROOT})",
    )
    parser.add_argument(
        "--sys-root",
        default=DEFAULT_SYS_ROOT,
        metavar="DIR",
        help=f"sysfs mount, e.g. /host/sys in a container (default: {DEFAULT_SYS_ROOT})",
    )
    parser.add_argument(
        "--cgroup-root",
        default=None,
        metavar="DIR",
        help="Kubernetes pod cgroup root (default: auto-detect kubepods(.slice) under --sys-root, cgroup v2 then v1)",
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="FILE",
        help="replay the vectors of a recording (JSONL from 'kubeattention record') instead of measuring this machine",
    )
    parser.add_argument(
        "--tetragon-grpc",
        nargs="?",
        const=DEFAULT_GRPC_ADDRESS,
        default=None,
        metavar="ADDRESS",
        help="count process churn (exec+exit/s, per pod) from Tetragon's gRPC API; bare flag: "
        f"{DEFAULT_GRPC_ADDRESS} (default: off, churn from /proc/stat forks)",
    )
    parser.add_argument(
        "--pods-from",
        choices=POD_SOURCES,
        default=None,
        help="where to name the pods behind per-pod figures: 'apiserver' lists and watches this node's pods "
        "(needs get,list,watch on pods; the shipped DaemonSet), 'kubelet' reads --kubelet-pods-url, 'none' "
        "names none (default: kubelet when --kubelet-pods-url is given, else none - so existing command lines "
        "keep their behaviour and nothing reaches the API server unasked)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="kubeconfig for --pods-from apiserver outside a cluster (default: in-cluster config)",
    )
    parser.add_argument(
        "--kubelet-pods-url",
        default=None,
        metavar="URL",
        help="the kubelet's /pods, to name the pods behind per-pod figures (e.g. "
        "https://$NODE_IP:10250/pods; default: off, offenders only where Tetragon names them)",
    )
    parser.add_argument(
        "--kubelet-token-file",
        default=None,
        metavar="FILE",
        help="bearer token for --kubelet-pods-url (e.g. the pod's service account token)",
    )
    parser.add_argument("--kubelet-ca-file", default=None, metavar="FILE", help="CA bundle for --kubelet-pods-url")
    parser.add_argument(
        "--check",
        action="store_true",
        help="print, for each of the 15 metrics, whether this node can measure it and what is missing, then exit",
    )
    parser.add_argument(
        "--tetragon-export",
        nargs="?",
        const=str(DEFAULT_EXPORT_FILE),
        default=None,
        metavar="FILE",
        help="count process churn from Tetragon's JSON export file instead of its gRPC API; "
        f"bare flag: {DEFAULT_EXPORT_FILE}",
    )
    add_transport_arguments(parser, "this node (identity spiffe://kubeattention/node/NODE_NAME)")


def pod_source_from_args(args: argparse.Namespace, environ) -> PodSourceSettings:
    """The --pods-from settings straight from the flags (``--check`` runs without a full config)."""
    url = args.kubelet_pods_url or None
    return PodSourceSettings(
        args.pods_from or ("kubelet" if url else "none"),
        args.node_name or default_node_name(environ),
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        kubelet_pods_url=url,
        kubelet_token_file=Path(args.kubelet_token_file) if args.kubelet_token_file else None,
        kubelet_ca_file=Path(args.kubelet_ca_file) if args.kubelet_ca_file else None,
    )


def run(args: argparse.Namespace) -> int:
    if args.check:
        from agent.capabilities import check_capabilities

        tetragon = [p for p in (args.tetragon_export, args.tetragon_grpc) if p]
        options: dict = {"tetragon_paths": [p.removeprefix("unix://") for p in tetragon]} if tetragon else {}
        options["pod_names"] = probe_pod_source(pod_source_from_args(args, os.environ))
        print(
            check_capabilities(args.proc_root, args.sys_root, cgroup_root=args.cgroup_root, **options).render_table(),
            end="",
        )
        return 0
    try:
        config = AgentConfig.from_args(args, os.environ)
    except ConfigError as err:
        print("kubeattention agent: invalid configuration:", file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        agent = Agent(config)
    except RecordingError as err:
        print(f"kubeattention agent: --replay: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except TokenFileError as err:
        print(f"kubeattention agent: {err}", file=sys.stderr)
        return EXIT_CONFIG

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        agent.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.start()
        agent.run_loop()
    except AgentStartError as err:
        log.error("%s", err)
        return EXIT_START
    finally:
        agent.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
