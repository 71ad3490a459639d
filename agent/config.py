"""The agent's configuration: one frozen value object, every default named once.

Layering is: named defaults, then the ``NODE_NAME`` environment variable (read when the
agent starts, never at import), then command-line flags. Validation runs once and
reports every problem together.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.tetragon import tetragon_problems
from wire.address import AddressError, parse_dial
from wire.client_security import ClientSecurity
from wire.schema import k8s_name_problem

DEFAULT_AGGREGATOR = "127.0.0.1:50051"
DEFAULT_INTERVAL_S = 1.0
DEFAULT_HTTP_LISTEN = "0.0.0.0:9101"
DEFAULT_PROC_ROOT = "/proc"
DEFAULT_SYS_ROOT = "/sys"
NODE_NAME_ENV = "NODE_NAME"
#: Values of --aggregator that turn pushing off (serve HTTP only).
NO_AGGREGATOR = ("", "none")
HTTP_LISTEN_FLAG = "--http-listen"
#: Where the pods behind per-pod figures are named (--pods-from).
POD_SOURCES = ("apiserver", "kubelet", "none")
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 3600.0


class ConfigError(ValueError):
    """Every configuration problem at once, one per line of ``errors``."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def node_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Kubernetes node name (RFC 1123 subdomain), or None."""
    return k8s_name_problem(name)


def default_node_name(environ: Mapping[str, str]) -> str:
    """$NODE_NAME (set by the DaemonSet from spec.nodeName), else this host's name lower-cased."""
    return environ.get(NODE_NAME_ENV) or socket.gethostname().lower()


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    aggregator: str = DEFAULT_AGGREGATOR
    """HOST:PORT of the aggregator's gRPC port; "" or "none" disables pushing."""
    interval_s: float = DEFAULT_INTERVAL_S
    http_listen: str = DEFAULT_HTTP_LISTEN
    proc_root: Path = Path(DEFAULT_PROC_ROOT)
    sys_root: Path = Path(DEFAULT_SYS_ROOT)
    cgroup_root: Path | None = None
    """Pod cgroup root; None = auto-detect under sys_root."""
    replay: Path | None = None
    """Recording to play instead of measuring this machine."""
    tetragon_export: Path | None = None
    """Tetragon JSON export file to follow for process churn (None: not this source)."""
    tetragon_grpc: str | None = None
    """Tetragon gRPC address for process churn, e.g. unix:///var/run/tetragon/tetragon.sock (None: not this source)."""
    kubelet_pods_url: str | None = None
    """The kubelet's /pods (names pods for per-pod attribution); None: offenders only where Tetragon names them."""
    kubelet_token_file: Path | None = None
    kubelet_ca_file: Path | None = None
    pods_from: str | None = None
    """apiserver | kubelet | none; None (the default): kubelet when kubelet_pods_url is set, else none."""
    kubeconfig: Path | None = None
    """Kubeconfig for --pods-from apiserver outside a cluster; None: in-cluster config."""
    security: ClientSecurity = ClientSecurity()
    """How pushes reach the aggregator: --tls-ca/--tls-cert/--tls-key/--token-file, or --insecure."""

    def __post_init__(self) -> None:
        errors = []
        if (problem := node_name_problem(self.node_name)) is not None:
            errors.append(f"--node-name: {problem}")
        if self.push_enabled:
            try:
                parse_dial(self.aggregator, "--aggregator")
            except AddressError as err:
                errors.append(f"{err} (or 'none' to disable pushing)")
            errors.extend(self.security.problems())
        if not (
            isinstance(self.interval_s, (int, float))
            and math.isfinite(self.interval_s)
            and MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S
        ):
            errors.append(
                f"--interval: must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds, "
                f"got {self.interval_s!r}"
            )
        try:
            # HOST:PORT with port 1-65535 (dial rules): port 0, any free port, stays refused here,
            # since probes and scrapes must know where the agent listens
            parse_dial(self.http_listen, HTTP_LISTEN_FLAG)
        except AddressError as err:
            errors.append(str(err))
        if self.replay is not None:
            if not self.replay.is_file():
                errors.append(f"--replay: no such file {str(self.replay)!r}")
        else:
            for flag, path in (("--proc-root", self.proc_root), ("--sys-root", self.sys_root)):
                if not path.is_dir():
                    errors.append(f"{flag}: no such directory {str(path)!r}")
            if self.cgroup_root is not None and not self.cgroup_root.is_absolute():
                errors.append(f"--cgroup-root: must be an absolute path, got {str(self.cgroup_root)!r}")
        errors.extend(tetragon_problems(self.tetragon_export, self.tetragon_grpc))
        if self.kubelet_pods_url is not None and not self.kubelet_pods_url.startswith(("http://", "https://")):
            errors.append(f"--kubelet-pods-url: expected an http:// or https:// URL, got {self.kubelet_pods_url!r}")
        errors.extend(self._pod_source_problems())
        for flag, path in (
            ("--kubelet-token-file", self.kubelet_token_file),
            ("--kubelet-ca-file", self.kubelet_ca_file),
            ("--kubeconfig", self.kubeconfig),
        ):
            if path is not None and not path.is_file():
                errors.append(f"{flag}: no such file {str(path)!r}")
        if errors:
            raise ConfigError(errors)

    def _pod_source_problems(self) -> list[str]:
        if self.pods_from is not None and self.pods_from not in POD_SOURCES:
            return [f"--pods-from: expected one of {', '.join(POD_SOURCES)}, got {self.pods_from!r}"]
        problems = []
        source = self.pod_source
        if source != "kubelet":
            # Without --pods-from, a kubelet token or CA file without a URL stays the no-op it was.
            for flag, value in (
                ("--kubelet-pods-url", self.kubelet_pods_url),
                ("--kubelet-token-file", self.kubelet_token_file if self.pods_from else None),
                ("--kubelet-ca-file", self.kubelet_ca_file if self.pods_from else None),
            ):
                if value is not None:
                    problems.append(f"{flag}: only used with --pods-from kubelet, not --pods-from {source}")
        if source != "apiserver" and self.kubeconfig is not None:
            problems.append(f"--kubeconfig: only used with --pods-from apiserver, not --pods-from {source}")
        return problems

    @property
    def pod_source(self) -> str:
        """Which source names pods: --pods-from, else kubelet when --kubelet-pods-url is given, else none."""
        if self.pods_from is not None:
            return self.pods_from
        return "kubelet" if self.kubelet_pods_url else "none"

    @property
    def push_enabled(self) -> bool:
        return self.aggregator.strip().lower() not in NO_AGGREGATOR

    @property
    def http_host(self) -> str:
        return parse_dial(self.http_listen, HTTP_LISTEN_FLAG)[0]

    @property
    def http_port(self) -> int:
        return parse_dial(self.http_listen, HTTP_LISTEN_FLAG)[1]

    @classmethod
    def from_args(cls, args, environ: Mapping[str, str]) -> AgentConfig:
        """Layer flags over the environment over the defaults."""
        return cls(
            node_name=args.node_name if args.node_name is not None else default_node_name(environ),
            aggregator=args.aggregator,
            interval_s=args.interval,
            http_listen=args.http_listen,
            proc_root=Path(args.proc_root),
            sys_root=Path(args.sys_root),
            cgroup_root=Path(args.cgroup_root) if args.cgroup_root else None,
            replay=Path(args.replay) if args.replay else None,
            tetragon_export=Path(args.tetragon_export) if args.tetragon_export else None,
            tetragon_grpc=args.tetragon_grpc or None,
            kubelet_pods_url=getattr(args, "kubelet_pods_url", None) or None,
            kubelet_token_file=Path(args.kubelet_token_file) if getattr(args, "kubelet_token_file", None) else None,
            kubelet_ca_file=Path(args.kubelet_ca_file) if getattr(args, "kubelet_ca_file", None) else None,
            pods_from=getattr(args, "pods_from", None) or None,
            kubeconfig=Path(args.kubeconfig) if getattr(args, "kubeconfig", None) else None,
            security=ClientSecurity.from_args(args),
        )
