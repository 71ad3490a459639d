"""``kubeattention model``: publish a scoring model to every aggregator through Redis.

    kubeattention model publish FILE [--redis-url URL] [--key-prefix ka:]
    kubeattention model show [--json]
    kubeattention model list [--json]
    kubeattention model rollback [--to VERSION]

``publish`` checks the file exactly as an aggregator will (ONNX Runtime loads it, its
metadata matches ``wire.schema``, a warm-up batch predicts finite slowdowns) and refuses
it with the reason otherwise; then it writes ``ka:model:{active}`` and announces it on
``ka:model:updates``. Aggregators running with ``--model-source redis`` (the default) swap it
in without a restart. ``rollback`` re-activates one of the last kept versions.
Exit codes: 0 done, 1 Redis unreachable, 2 the model or the request was refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from aggregator.config import add_redis_arguments
from aggregator.errors import StoreUnavailable
from aggregator.model_store import KEEP_VERSIONS, ModelConflict, ModelRefused, ModelStore, PublishedModel, check_model
from aggregator.store import RedisStore
from inference.model import validated_on_text

log = logging.getLogger(__name__)

EXIT_OK, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_redis_arguments(common, "the aggregators' Redis")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "publish", parents=[common], help="check an ONNX model and make it the one every aggregator serves"
    )
    p.add_argument("file", type=Path, metavar="FILE", help="ONNX model exported by `kubeattention train`")
    p = sub.add_parser("show", parents=[common], help="the model aggregators serve from Redis, with its metadata")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("list", parents=[common], help=f"the versions kept in Redis for rollback (last {KEEP_VERSIONS})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("rollback", parents=[common], help="make a kept version the active model again")
    p.add_argument(
        "--to",
        metavar="VERSION",
        default=None,
        help="version to re-activate (default: the one active before the current)",
    )


def _when(ms: int) -> str:
    if not ms:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _store(args) -> ModelStore:
    store = RedisStore(args.redis_url, args.key_prefix)
    return ModelStore(store.client, args.key_prefix, store.where)


def run(args: argparse.Namespace) -> int:
    action = {"publish": publish, "show": show, "list": list_versions, "rollback": rollback}[args.model_command]
    try:
        return action(args)
    except StoreUnavailable as e:
        print(f"error: {str(e).rstrip('.')}; nothing changed", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ModelConflict as e:
        print(f"error: {e}; nothing changed", file=sys.stderr)
        return EXIT_REFUSED


def publish(args) -> int:
    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"error: model file {path}: cannot read it ({e.strerror or e}); nothing published", file=sys.stderr)
        return EXIT_REFUSED
    try:
        model = check_model(data, str(path))
    except ModelRefused as e:
        print(f"error: refused ({e.reason}): {e}; nothing published", file=sys.stderr)
        return EXIT_REFUSED
    models = _store(args)
    published, changed = models.publish(data, model.version, path.name)
    if not changed:
        print(
            f"model {published.version} (sha256 {published.sha256[:12]}…) is already the active model in "
            f"{models.keys.active} at {models.where}; nothing changed"
        )
        return EXIT_OK
    print(
        f"published model {published.version} (sha256 {published.sha256[:12]}…, {published.size_bytes} bytes) "
        f"as {models.keys.active} at {models.where}, replacing {published.previous or 'no model'}; "
        f"aggregators with --model-source redis switch to it without a restart "
        f"(announced on {models.keys.updates})"
    )
    return EXIT_OK


def show(args) -> int:
    models = _store(args)
    try:
        active = models.read_active()
    except ModelRefused as e:
        print(
            f"error: the active model in Redis is unusable ({e.reason}): {e}; aggregators keep serving their "
            "previous model: publish a good one",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if active is None:
        print(
            f"no model published in {models.keys.active} at {models.where}: aggregators serve their --model file",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    try:
        meta = check_model(active.data, f"{models.keys.active} (version {active.version})").metadata
        problem = None
    except ModelRefused as e:
        meta, problem = {}, f"refused by this version of KubeAttention ({e.reason}): {e}"
    info = {
        **active.describe(),
        "key": models.keys.active,
        "metadata": {k: v for k, v in meta.items() if k != "feature_names"},
    }
    if problem:
        info["problem"] = problem
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
        return EXIT_OK if not problem else EXIT_REFUSED
    print(f"{'active model':<19} {active.version}  ({models.keys.active} at {models.where})")
    print(f"{'sha256':<19} {active.sha256}")
    print(f"{'size':<19} {active.size_bytes} bytes")
    print(
        f"{'published':<19} {_when(active.published_at_ms)} by {active.published_by or '?'} from "
        f"{active.source or '?'} (replaced {active.previous or 'nothing'})"
    )
    for key in ("model_kind", "schema_version", "training_data_hash", "created_at", "rows", "seed"):
        if key in meta:
            print(f"{key:<19} {meta[key]}")
    if meta:
        print(f"{'validated on':<19} {validated_on_text(meta)}")
        gate = meta.get("gate")
        if isinstance(gate, dict):
            print(f"{'gate':<19} {'passed' if gate.get('passed') else 'NOT passed'} {gate.get('judged_at', '')}")
    if problem:
        print(f"{'PROBLEM':<19} {problem}")
        return EXIT_REFUSED
    return EXIT_OK


def list_versions(args) -> int:
    models = _store(args)
    head = models.active_head()
    rows = models.history()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **(m.describe() if isinstance(m, PublishedModel) else {"problem": m}),
                        "activated_at_ms": at,
                        "active": isinstance(m, PublishedModel) and head is not None and m.sha256 == head[1],
                    }
                    for m, at in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print(f"no model published in {models.keys.active} at {models.where}")
        return EXIT_OK
    print(f"{'':2}{'VERSION':<28}{'LAST ACTIVATED (UTC)':<27}{'SIZE':>10}  {'SHA256':<14}PUBLISHED BY")
    for m, at in rows:
        if not isinstance(m, PublishedModel):
            print(f"  {m}")
            continue
        mark = "* " if head is not None and m.sha256 == head[1] else "  "
        print(f"{mark}{m.version:<28}{_when(at):<27}{m.size_bytes:>10}  {m.sha256[:12]:<14}{m.published_by}")
    return EXIT_OK


def rollback(args) -> int:
    models = _store(args)
    head = models.active_head()
    target_version = args.to
    # check the target as an aggregator will before it becomes active
    if target_version is None:
        earlier = [
            m for m, _ in models.history() if isinstance(m, PublishedModel) and (head is None or m.sha256 != head[1])
        ]
        if not earlier:
            print(
                f"error: nothing to roll back to: no kept version other than {head[0] if head else 'none'}",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        target_version = earlier[0].version
    try:
        target = models.read_version(target_version)
        if target is not None:
            check_model(target.data, f"{models.keys.version(target_version)}")
    except ModelRefused as e:
        print(f"error: refused ({e.reason}): {e}; nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    now, replaced = models.rollback(target_version)
    if replaced is not None and replaced.sha256 == now.sha256:
        print(f"model {now.version} is already active; nothing changed")
        return EXIT_OK
    print(
        f"rolled back to model {now.version} (sha256 {now.sha256[:12]}…) in {models.keys.active} at "
        f"{models.where}, replacing {replaced.version if replaced else 'no model'}; aggregators with "
        f"--model-source redis switch without a restart"
    )
    return EXIT_OK
