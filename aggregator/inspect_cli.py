"""``kubeattention inspect``: what Redis holds for each node, read straight from Redis."""

from __future__ import annotations

import argparse
import json
import sys
import time

from aggregator.config import DEFAULT_MAX_STALENESS_MS, add_redis_arguments
from aggregator.errors import StoreUnavailable
from aggregator.store import CorruptRecord, RedisStore
from wire.schema import METRICS


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_redis_arguments(p, "Redis to read", cluster=True)
    p.add_argument(
        "--max-staleness-ms",
        type=int,
        default=DEFAULT_MAX_STALENESS_MS,
        help="age above which a node is marked stale (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("node", nargs="?", help="one node (default: every node)")


def format_node(doc: dict) -> str:
    state = "STALE" if doc["stale"] else "fresh"
    lines = [
        f"{doc['node']}  age {doc['age_ms'] / 1000:.1f} s ({state})  agent {doc['agent_version'] or '?'}  "
        f"schema {doc['schema_version']}"
    ]
    for m in doc["metrics"]:
        shown = m["display"] if m["value"] is not None else f"missing: {m.get('reason', 'not measured')}"
        lines.append(f"  {m['name']:<32} {shown}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    now = time.time_ns() // 1_000_000
    try:
        store = RedisStore(args.redis_url, args.key_prefix)
        if args.node:
            rec = store.read_node(args.node)
            if rec is None:
                print(
                    f"kubeattention inspect: no telemetry for node {args.node!r} in Redis at {store.where} "
                    f"(never reported, or expired)",
                    file=sys.stderr,
                )
                return 1
            records, problems = [rec], []
        else:
            records, problems = store.read_all()
    except (StoreUnavailable, CorruptRecord) as e:
        print(f"kubeattention inspect: {e}", file=sys.stderr)
        return 1
    docs = [r.to_json(now, args.max_staleness_ms) for r in sorted(records, key=lambda r: r.node_name)]
    if args.json:
        print(json.dumps({"redis": store.where, "nodes": docs, "problems": problems}, indent=2))
    else:
        print(f"{len(docs)} node(s) in Redis at {store.where}; {len(METRICS)} metrics each")
        for d in docs:
            print(format_node(d))
        for p in problems:
            print(f"undecodable: {p}")
    return 0
