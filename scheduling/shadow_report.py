"""``kubeattention shadow-report``: what would have changed had KubeAttention been placing pods.

Reads the decisions recorded in ``ka:decisions`` (shadow mode records one per scheduled
pod), asks the Kubernetes API where each pod actually landed, and reports how often the
default placement matched KubeAttention's recommendation and, where it did not, the
predicted slowdown the default placement incurred compared with the recommended node.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass

from aggregator.config import add_redis_arguments
from aggregator.errors import StoreUnavailable
from aggregator.store import RedisStore
from scheduling.decisions import Decision, DecisionLog

#: A placement whose predicted slowdown exceeds this breaks a latency SLO (as in the evaluation).
SLO_SLOWDOWN = 1.5
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Report:
    decisions: int
    landed: int
    not_found: int
    pending: int
    matched: int
    match_rate: float | None
    mean_slowdown_landed: float | None
    mean_slowdown_recommended: float | None
    mean_excess_slowdown: float | None
    slo_breaches_landed: int
    slo_breaches_recommended: int
    unscored_landings: int


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(decisions: list[Decision], landed_on: dict[str, str | None]) -> Report:
    """``landed_on``: pod key (uid, else namespace/name) -> node name, None while pending.

    Only the newest decision per pod counts (kube-scheduler retries produce several).
    """
    latest: dict[str, Decision] = {}
    for d in decisions:
        key = d.pod_uid or f"{d.pod_namespace}/{d.pod_name}"
        if key not in latest or d.ts_ms >= latest[key].ts_ms:
            latest[key] = d
    landed = not_found = pending = matched = unscored = 0
    s_landed, s_rec, excess = [], [], []
    breach_landed = breach_rec = 0
    for key, d in latest.items():
        if key not in landed_on:
            not_found += 1
            continue
        node = landed_on[key]
        if not node:
            pending += 1
            continue
        landed += 1
        matched += node == d.recommended
        sl, sr = d.slowdown_of(node), d.slowdown_of(d.recommended) if d.recommended else None
        if sl is None or sr is None:
            unscored += 1
            continue
        s_landed.append(sl)
        s_rec.append(sr)
        excess.append(sl - sr)
        breach_landed += sl > SLO_SLOWDOWN
        breach_rec += sr > SLO_SLOWDOWN
    return Report(
        decisions=len(latest),
        landed=landed,
        not_found=not_found,
        pending=pending,
        matched=matched,
        match_rate=matched / landed if landed else None,
        mean_slowdown_landed=_mean(s_landed),
        mean_slowdown_recommended=_mean(s_rec),
        mean_excess_slowdown=_mean(excess),
        slo_breaches_landed=breach_landed,
        slo_breaches_recommended=breach_rec,
        unscored_landings=unscored,
    )


def format_report(r: Report) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    return "\n".join(
        [
            f"pods with a decision          {r.decisions}",
            f"  landed on a node            {r.landed}   (pending {r.pending}, gone {r.not_found})",
            f"  landed where recommended    {r.matched}   match rate {f(r.match_rate, '.1%')}",
            f"mean predicted slowdown       landed {f(r.mean_slowdown_landed, '.2f')}x   "
            f"recommended {f(r.mean_slowdown_recommended, '.2f')}x   excess {f(r.mean_excess_slowdown, '+.2f')}x",
            f"placements over {SLO_SLOWDOWN}x (SLO)     landed {r.slo_breaches_landed}   "
            f"recommended {r.slo_breaches_recommended}",
            f"landings on unscored nodes    {r.unscored_landings} (stale or unknown telemetry at decision time)",
        ]
    )


def parse_since(text: str) -> int:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"--since: {text!r} is not a duration like 30m, 6h or 7d")
    return int(m.group(1)) * _UNIT_S[m.group(2)] * 1000


def landed_from_api(api) -> dict[str, str | None]:
    """pod uid and namespace/name -> spec.nodeName (None while unscheduled), from one list call."""
    out: dict[str, str | None] = {}
    for pod in api.list_pod_for_all_namespaces(watch=False).items:
        node = pod.spec.node_name if pod.spec else None
        out[pod.metadata.uid] = node
        out[f"{pod.metadata.namespace}/{pod.metadata.name}"] = node
    return out


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_redis_arguments(p, "where ka:decisions is")
    p.add_argument("--kubeconfig", default=None, help="outside a cluster (default: in-cluster config)")
    p.add_argument("--since", default="24h", help="how far back to look (default 24h)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    try:
        since_ms = parse_since(args.since)
    except ValueError as e:
        print(f"kubeattention shadow-report: {e}", file=sys.stderr)
        return 2
    store = RedisStore(args.redis_url, args.key_prefix)
    start_id = str(time.time_ns() // 1_000_000 - since_ms)
    try:
        decisions = [
            d for _id, d in DecisionLog(store.client, args.key_prefix).read(since_id=start_id, count=1_000_000)
        ]
    except StoreUnavailable as e:
        print(f"kubeattention shadow-report: {e}", file=sys.stderr)
        return 1
    from kubernetes import client

    from kubeapi.api_client import api_client

    try:
        landed = landed_from_api(client.CoreV1Api(api_client(args.kubeconfig)))
    except Exception as e:  # kubeconfig missing, API unreachable, 403...
        print(f"kubeattention shadow-report: cannot list pods from the Kubernetes API: {e}", file=sys.stderr)
        return 1
    report = summarize(decisions, landed)
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    return 0
