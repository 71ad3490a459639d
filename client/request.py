"""The BatchScore request for a pod and its candidate nodes, refused here only for what
protobuf cannot carry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from client.errors import InvalidRequest
from wire.schema import PodContext, Profile, QoS
from wire.v1 import scoring_pb2


def build_request(pod: PodContext, nodes: Sequence[str]) -> scoring_pb2.BatchScoreRequest:
    """The BatchScore request for ``pod`` and ``nodes``; InvalidRequest names what cannot be sent.

    Only what protobuf cannot carry is checked here; the aggregator owns every other rule
    (empty list, duplicates, limits, NaN) and answers INVALID_ARGUMENT naming the field.
    """
    if not isinstance(pod, PodContext):
        raise InvalidRequest("pod", f"must be a wire.schema.PodContext, got {type(pod).__name__} {pod!r:.60}")
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise InvalidRequest("nodes", f"must be a list of node names, got {type(nodes).__name__} {nodes!r:.60}")
    names = list(nodes)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise InvalidRequest(f"nodes[{i}]", f"must be a str, got {type(n).__name__} {n!r:.60}")
    msg = scoring_pb2.PodContext()
    for field in ("namespace", "name", "cpu_request_cores", "memory_request_bytes", "priority"):
        value = getattr(pod, field)
        try:
            setattr(msg, field, value)
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"pod.{field}", f"{value!r} cannot be sent: {e}") from None
    for field, enum_type, proto_field in (("qos", QoS, "qos_class"), ("profile", Profile, "profile")):
        value = getattr(pod, field)
        try:
            setattr(msg, proto_field, 0 if value is None else int(enum_type(value)))
        except (TypeError, ValueError):
            raise InvalidRequest(
                f"pod.{field}",
                f"{value!r} is not a {enum_type.__name__} ({', '.join(m.name for m in enum_type)}) or None",
            ) from None
    return scoring_pb2.BatchScoreRequest(pod=msg, node_names=names)
