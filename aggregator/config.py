"""The aggregator's configuration: one frozen object, defaults named once, validated at once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from aggregator.errors import ConfigError
from aggregator.security import options as security
from aggregator.security.auth import DEFAULT_AGENT_SERVICEACCOUNT
from aggregator.store import DEFAULT_HISTORY_MAXLEN, DEFAULT_NODE_TTL_S, DEFAULT_PREFIX, cluster_nodes, is_cluster_url
from wire.address import AddressError, parse_listen

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GRPC_LISTEN = "0.0.0.0:50051"
DEFAULT_HTTP_LISTEN = "0.0.0.0:8080"
DEFAULT_MAX_STALENESS_MS = 10_000
DEFAULT_BUDGET_MS = 45.0
DEFAULT_MAX_CANDIDATES = 5_000
DEFAULT_RESYNC_INTERVAL_S = 2.0
#: Pushes handled at once (``--max-inflight-pushes``): running, or waiting for Redis. Past that
#: a push is refused at once with RESOURCE_EXHAUSTED (the agent pushes its next vector at its
#: next interval) instead of queueing until its deadline: an overloaded aggregator sheds pushes
#: and keeps its latency, and BatchScore, which is not counted here, is never starved by a push
#: flood. 64 is ~50 ms of work at the ~1 200 pushes/s one aggregator process takes on a core.
DEFAULT_MAX_INFLIGHT_PUSHES = 64
#: Where the served model comes from: "redis" follows ka:model:{active} (kubeattention model
#: publish) with --model as the fallback until one is published; "file" pins --model.
MODEL_SOURCES = ("redis", "file")
DEFAULT_MODEL_SOURCE = "redis"
DEFAULT_MODEL_CHECK_INTERVAL_S = 5.0


@dataclass(frozen=True)
class AggregatorConfig:
    redis_url: str = DEFAULT_REDIS_URL
    grpc_listen: str = DEFAULT_GRPC_LISTEN
    http_listen: str = DEFAULT_HTTP_LISTEN
    model_path: str | None = None
    model_source: str = DEFAULT_MODEL_SOURCE
    model_check_interval_s: float = DEFAULT_MODEL_CHECK_INTERVAL_S
    max_staleness_ms: int = DEFAULT_MAX_STALENESS_MS
    budget_ms: float = DEFAULT_BUDGET_MS
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    key_prefix: str = DEFAULT_PREFIX
    node_ttl_s: int = DEFAULT_NODE_TTL_S
    history_maxlen: int = DEFAULT_HISTORY_MAXLEN
    resync_interval_s: float = DEFAULT_RESYNC_INTERVAL_S
    max_inflight_pushes: int = DEFAULT_MAX_INFLIGHT_PUSHES
    shadow: bool = False
    annotate_pods: bool = False
    kubeconfig: str | None = None
    # transport security and authentication (aggregator/security/options.py)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    auth_token_file: str | None = None
    auth_tokenreview: bool = False
    auth_agent_serviceaccount: str = DEFAULT_AGENT_SERVICEACCOUNT
    insecure: bool = False

    def __post_init__(self) -> None:
        problems = []
        for name, value in (("grpc_listen", self.grpc_listen), ("http_listen", self.http_listen)):
            try:
                parse_listen(value, f"--{name.replace('_', '-')}")
            except AddressError as e:
                problems.append(str(e))
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")):
            problems.append(
                f"--redis-url: {self.redis_url!r} must start with redis://, rediss://, unix:// or "
                "(Redis Cluster) redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
        elif is_cluster_url(self.redis_url):
            try:
                cluster_nodes(self.redis_url)
            except ValueError as e:
                problems.append(str(e))
        positive = {
            "max_staleness_ms": self.max_staleness_ms,
            "budget_ms": self.budget_ms,
            "max_candidates": self.max_candidates,
            "node_ttl_s": self.node_ttl_s,
            "history_maxlen": self.history_maxlen,
            "resync_interval_s": self.resync_interval_s,
            "max_inflight_pushes": self.max_inflight_pushes,
            "model_check_interval_s": self.model_check_interval_s,
        }
        for name, value in positive.items():
            if not value > 0:
                problems.append(f"--{name.replace('_', '-')}: must be > 0, got {value}")
        if self.model_source not in MODEL_SOURCES:
            problems.append(f"--model-source: {self.model_source!r} is not one of {', '.join(MODEL_SOURCES)}")
        if self.node_ttl_s * 1000 < self.max_staleness_ms:
            problems.append(
                f"--node-ttl-s: {self.node_ttl_s} s expires telemetry before it turns stale "
                f"(--max-staleness-ms {self.max_staleness_ms}); stale nodes would look unknown"
            )
        if self.annotate_pods and not self.shadow:
            problems.append("--annotate-pods: only with --shadow (in active mode the scheduler acts on the scores)")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} "):
            problems.append(f"--key-prefix: {self.key_prefix!r} must be non-empty, without braces or spaces")
        problems.extend(security.problems(self))
        if problems:
            raise ConfigError("invalid aggregator configuration:\n  " + "\n  ".join(problems))


#: The Redis Cluster form of ``--redis-url``, for the help of every command that accepts one.
REDIS_CLUSTER_HELP = "a Redis Cluster as redis+cluster://HOST:PORT[,HOST:PORT...]"


def add_redis_url_argument(p: argparse.ArgumentParser, what: str, *, cluster: bool = False) -> None:
    """``--redis-url``: ``what`` the Redis is for the command, and (``cluster``) that a cluster URL works."""
    forms = f"; {REDIS_CLUSTER_HELP}" if cluster else ""
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"{what} (default {DEFAULT_REDIS_URL}){forms}")


def add_key_prefix_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-prefix", default=DEFAULT_PREFIX, help=f"Redis key prefix (default {DEFAULT_PREFIX})")


def add_redis_arguments(p: argparse.ArgumentParser, what: str, *, cluster: bool = False) -> None:
    """``--redis-url`` and ``--key-prefix``, as every command that reads the aggregators' Redis takes them."""
    add_redis_url_argument(p, what, cluster=cluster)
    add_key_prefix_argument(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_redis_url_argument(p, "Redis to keep telemetry in", cluster=True)
    p.add_argument(
        "--grpc-listen",
        default=DEFAULT_GRPC_LISTEN,
        help=f"gRPC Push/BatchScore address (default {DEFAULT_GRPC_LISTEN})",
    )
    p.add_argument(
        "--http-listen",
        default=DEFAULT_HTTP_LISTEN,
        help=f"HTTP /metrics, /v1/nodes, probes (default {DEFAULT_HTTP_LISTEN})",
    )
    p.add_argument(
        "--model",
        dest="model_path",
        default=None,
        help="ONNX model file (default: the model shipped in inference/models/); "
        "with --model-source redis, served until a model is published in Redis",
    )
    p.add_argument(
        "--model-source",
        choices=MODEL_SOURCES,
        default=DEFAULT_MODEL_SOURCE,
        help=f"redis: serve the model published with `kubeattention model publish` (ka:model:{{active}}) and "
        f"switch to each new one without a restart; file: serve --model only "
        f"(default {DEFAULT_MODEL_SOURCE})",
    )
    p.add_argument(
        "--model-check-interval-s",
        type=float,
        default=DEFAULT_MODEL_CHECK_INTERVAL_S,
        help=f"with --model-source redis: how often to look for a new model besides pub/sub "
        f"(default {DEFAULT_MODEL_CHECK_INTERVAL_S:g})",
    )
    p.add_argument(
        "--max-staleness-ms",
        type=int,
        default=DEFAULT_MAX_STALENESS_MS,
        help=f"telemetry older than this is never scored (default {DEFAULT_MAX_STALENESS_MS})",
    )
    p.add_argument(
        "--budget-ms",
        type=float,
        default=DEFAULT_BUDGET_MS,
        help=f"BatchScore latency budget; over it every node gets the fallback (default {DEFAULT_BUDGET_MS:g})",
    )
    p.add_argument(
        "--max-candidates",
        type=int,
        default=DEFAULT_MAX_CANDIDATES,
        help=f"largest candidate list accepted in one BatchScore (default {DEFAULT_MAX_CANDIDATES})",
    )
    add_key_prefix_argument(p)
    p.add_argument(
        "--node-ttl-s",
        type=int,
        default=DEFAULT_NODE_TTL_S,
        help=f"Redis expiry of a node's telemetry (default {DEFAULT_NODE_TTL_S})",
    )
    p.add_argument(
        "--history-maxlen",
        type=int,
        default=DEFAULT_HISTORY_MAXLEN,
        help=f"vectors kept per node in ka:history:{{node}} (default {DEFAULT_HISTORY_MAXLEN})",
    )
    p.add_argument(
        "--resync-interval-s",
        type=float,
        default=DEFAULT_RESYNC_INTERVAL_S,
        help=f"full snapshot refresh from Redis, besides pub/sub updates (default {DEFAULT_RESYNC_INTERVAL_S:g})",
    )
    p.add_argument(
        "--max-inflight-pushes",
        type=int,
        default=DEFAULT_MAX_INFLIGHT_PUSHES,
        help=f"pushes handled at once, running or waiting on Redis; past that a push is refused at "
        f"once with RESOURCE_EXHAUSTED and the agent pushes again at its next interval; "
        f"BatchScore is not counted (default {DEFAULT_MAX_INFLIGHT_PUSHES})",
    )
    p.add_argument(
        "--shadow",
        action="store_true",
        help="extender shadow mode: prioritize answers equal scores and filter removes nothing; "
        "every recommendation is still recorded in ka:decisions",
    )
    p.add_argument(
        "--annotate-pods",
        action="store_true",
        help="with --shadow: also write kubeattention.io/recommended-node, /score, /reason on the pod "
        "through the Kubernetes API",
    )
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="for --annotate-pods and --auth-tokenreview outside a cluster (default: in-cluster config)",
    )
    security.add_arguments(p)


def from_args(args: argparse.Namespace) -> AggregatorConfig:
    names = {f.name for f in fields(AggregatorConfig)}
    return AggregatorConfig(**{k: v for k, v in vars(args).items() if k in names})
