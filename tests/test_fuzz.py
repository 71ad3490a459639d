"""Property-based fuzzing of everything that decodes outside input.

Push and BatchScore validation (aggregator/validate.py), the extender's JSON over the real
FastAPI app, Tetragon's JSON export lines (agent/tetragon/parse.py) and node hashes read
back from Redis (aggregator/store.py). The property is the same everywhere: the input is
either accepted into a well-formed value or rejected with the module's own exception and a
message that says what is wrong; no other exception escapes.

Deterministic and bounded for ``make test``: ``derandomize=True`` (examples derive from the
test, not a random seed), no example database, a fixed ``max_examples`` per test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telemetry_factory import telemetry

from agent.tetragon.parse import REJECTION_REASONS, Ignored, LineParser, MalformedLine, parse_line
from aggregator.batch import BatchScorer
from aggregator.errors import InvalidInput
from aggregator.http_app import build_app
from aggregator.metrics import AggregatorMetrics
from aggregator.node_record import NodeRecord
from aggregator.snapshot import Snapshot
from aggregator.store import CorruptRecord, decode_record, encode_record
from aggregator.validate import validate_batch, validate_telemetry
from kubeapi.pods import pod_context
from scheduling.extender import Extender
from wire.schema import METRICS, NUM_METRICS, SCHEMA_VERSION, PodContext
from wire.v1 import scoring_pb2, telemetry_pb2

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW_MS = 1_700_000_000_000

# protobuf string fields take any Unicode except lone surrogates
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
names = st.one_of(texts, st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?", fullmatch=True))
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
int64 = st.integers(-(2**63), 2**63 - 1)


def metric_values():
    near_range = st.one_of(*[st.floats(m.lo - 1, m.hi + 1) for m in METRICS[:3]], floats)
    return st.lists(near_range, max_size=NUM_METRICS + 3)


@st.composite
def node_telemetry(draw) -> telemetry_pb2.NodeTelemetry:
    base = telemetry(draw(names), collected_ms=NOW_MS)
    if draw(st.booleans()):
        base.schema_version = draw(st.sampled_from([SCHEMA_VERSION, 0, SCHEMA_VERSION + 1, 2**32 - 1]))
    if draw(st.booleans()):
        del base.values[:]
        base.values.extend(draw(metric_values()))
    else:  # a valid vector with one value moved
        i = draw(st.integers(0, NUM_METRICS - 1))
        base.values[i] = draw(floats)
    if draw(st.booleans()):
        del base.available[:]
        base.available.extend(draw(st.lists(st.booleans(), max_size=NUM_METRICS + 3)))
    base.collected_at_unix_ms = draw(st.one_of(st.just(NOW_MS), int64))
    base.agent_version = draw(texts)
    if draw(st.booleans()):
        base.missing_reasons.clear()
        base.missing_reasons.update(
            draw(st.dictionaries(st.one_of(texts, st.sampled_from([m.name for m in METRICS])), texts, max_size=5))
        )
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        base.top_offenders.add(
            namespace=draw(names),
            name=draw(names),
            metric=draw(st.one_of(texts, st.sampled_from([m.name for m in METRICS]))),
            value=draw(floats),
        )
    return base


def assert_invalid_input_says_what(e: InvalidInput) -> None:
    assert e.field and e.problem and str(e).startswith(e.field)


@FUZZ
@given(node_telemetry())
def test_push_validation_accepts_a_well_formed_vector_or_names_the_field(msg):
    try:
        rec = validate_telemetry(msg, NOW_MS)
    except InvalidInput as e:
        assert_invalid_input_says_what(e)
        return
    assert rec.values.shape == (NUM_METRICS,) and rec.mask.shape == (NUM_METRICS,)
    for m in METRICS:
        v = rec.values[m.index]
        assert (m.lo <= v <= m.hi) if rec.mask[m.index] else math.isnan(v)
    # what was accepted round-trips through the Redis encoding
    back = decode_record(rec.node_name, encode_record(rec))
    assert np.array_equal(back.mask, rec.mask)
    assert np.allclose(back.values, rec.values, equal_nan=True)
    assert back.offenders == rec.offenders and back.missing_reasons == rec.missing_reasons


@FUZZ
@given(st.binary(max_size=600))
def test_push_bytes_that_decode_as_protobuf_are_validated_like_any_push(raw):
    try:
        msg = telemetry_pb2.NodeTelemetry.FromString(raw)
    except Exception:  # undecodable protobuf is rejected by gRPC before the handler runs
        return
    try:
        validate_telemetry(msg, NOW_MS)
    except InvalidInput as e:
        assert_invalid_input_says_what(e)


@st.composite
def batch_requests(draw) -> scoring_pb2.BatchScoreRequest:
    pod = scoring_pb2.PodContext(
        cpu_request_cores=draw(floats),
        memory_request_bytes=draw(int64),
        qos_class=draw(st.integers(-3, 6)),
        profile=draw(st.integers(-3, 8)),
        priority=draw(int64),
        namespace=draw(texts),
        name=draw(texts),
    )
    return scoring_pb2.BatchScoreRequest(pod=pod, node_names=draw(st.lists(names, max_size=12)))


@FUZZ
@given(batch_requests())
def test_batchscore_validation_accepts_or_names_the_field(req):
    try:
        pod, nodes = validate_batch(req, max_candidates=8)
    except InvalidInput as e:
        assert_invalid_input_says_what(e)
        return
    assert isinstance(pod, PodContext) and 0 < len(nodes) <= 8 and len(set(nodes)) == len(nodes)
    assert math.isfinite(pod.cpu_request_cores) and pod.cpu_request_cores >= 0 and pod.memory_request_bytes >= 0
    pod.resolved_profile()  # every accepted pod resolves to a profile


# --- the extender over the real HTTP app, real snapshot and real ONNX model ---------------

_app: dict = {}


def extender_client() -> TestClient:
    if not _app:
        from inference.model import InterferenceModel

        snapshot = Snapshot()
        for i in range(3):
            snapshot.upsert(validate_telemetry(telemetry(f"node-{i}", collected_ms=NOW_MS, cpu_psi_some=i / 4), NOW_MS))
        model = InterferenceModel.load()
        metrics = AggregatorMetrics()
        scorer = BatchScorer(
            snapshot, model, max_staleness_ms=10_000, budget_ms=1000, clock_ms=lambda: NOW_MS, metrics=metrics
        )
        ext = Extender(scorer, pod_context, shadow=False, max_candidates=20, clock_ms=lambda: NOW_MS)
        app = build_app(
            snapshot,
            metrics.registry,
            lambda: NOW_MS,
            10_000,
            lambda: (True, "ok"),
            model.version,
            extender=ext,
            metrics=metrics,
        )
        _app["client"] = TestClient(app)
    return _app["client"]


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), texts)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(texts, kids, max_size=4)),
    max_leaves=20,
)
quantities = st.one_of(
    st.sampled_from(["100m", "1", "2.5", "512Mi", "1Gi", "-1", "1e3", "0.1m", "abc", "", "1E"]),
    texts,
    st.integers(-10, 10**12),
    st.floats(),
)
containers = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": texts,
            "resources": st.fixed_dictionaries(
                {},
                optional={
                    "requests": st.dictionaries(
                        st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantities, max_size=3
                    ),
                    "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2),
                },
            ),
        },
    ),
    max_size=3,
)
pods = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "name": texts,
                "namespace": texts,
                "uid": json_values,
                "annotations": st.dictionaries(
                    st.sampled_from(["kubeattention.io/profile", "kubeattention.io/max-slowdown", "other"]),
                    st.one_of(texts, json_values),
                    max_size=3,
                ),
            },
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": containers,
                "initContainers": containers,
                "priority": json_values,
                "overhead": json_values,
            },
        ),
        "status": json_values,
    },
)
node_lists = st.one_of(
    st.lists(st.one_of(st.sampled_from(["node-0", "node-1", "node-2", "ghost"]), texts), max_size=6), json_values
)
extender_args = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"Pod": st.one_of(pods, json_values)},
        optional={
            "NodeNames": node_lists,
            "nodenames": node_lists,
            "Nodes": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {
                        "items": st.lists(
                            st.one_of(
                                json_values,
                                st.fixed_dictionaries(
                                    {"metadata": st.fixed_dictionaries({"name": st.one_of(texts, json_values)})}
                                ),
                            ),
                            max_size=4,
                        )
                    }
                ),
            ),
        },
    ),
)


def _answer(verb: str, body: bytes):
    r = extender_client().post(f"/scheduler/{verb}", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), f"{verb} answered {r.status_code}: {r.text[:300]}"
    doc = r.json()
    if r.status_code == 400:
        assert doc["Error"] and doc["Error"].split(":")[0], doc
    return r.status_code, doc


@FUZZ
@given(st.sampled_from(["prioritize", "filter"]), extender_args)
def test_extender_answers_any_json_with_a_result_or_a_400_that_says_why(verb, body):
    status, doc = _answer(verb, json.dumps(body).encode())
    if status == 200 and verb == "prioritize":
        assert all(0 <= e["Score"] <= 10 for e in doc)
    if status == 200 and verb == "filter":
        assert doc["Error"] == ""


@FUZZ
@given(st.sampled_from(["prioritize", "filter"]), st.binary(max_size=200))
def test_extender_answers_any_bytes_with_a_400_that_says_why(verb, raw):
    _answer(verb, raw)


# --- Tetragon's JSON export ------------------------------------------------------------

tetragon_events = st.fixed_dictionaries(
    {},
    optional={
        "process_exec": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "process": st.fixed_dictionaries(
                        {},
                        optional={
                            "pid": st.one_of(st.integers(-1, 2**33), json_values),
                            "binary": st.one_of(texts, json_values),
                            "pod": st.one_of(
                                json_values,
                                st.fixed_dictionaries(
                                    {}, optional={"namespace": json_values, "name": st.one_of(texts, json_values)}
                                ),
                            ),
                        },
                    )
                }
            ),
        ),
        "process_exit": json_values,
        "process_kprobe": json_values,
        "rate_limit_info": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"number_of_dropped_process_events": st.one_of(st.integers(-1, 2**65), texts, json_values)}
            ),
        ),
        "node_name": st.one_of(texts, json_values),
        "time": st.one_of(
            st.sampled_from(["2024-05-01T10:00:00.123456789Z", "2024-13-01T00:00:00Z", "yesterday"]), texts, json_values
        ),
    },
)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        tetragon_events.map(lambda d: json.dumps(d).encode()),
        texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    )
)
def test_tetragon_line_is_an_event_ignored_or_rejected_with_a_known_reason(line):
    try:
        parsed = parse_line(line)
    except MalformedLine as e:
        assert e.reason in REJECTION_REASONS and str(e)
        return
    assert parsed is not None
    if isinstance(parsed, Ignored):
        assert parsed.kind


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_tetragon_line_parser_never_raises_and_counts_every_line(lines):
    parser = LineParser()
    for line in lines:
        parser.feed(line)
    assert parser.counts().total == len(lines)


# --- node hashes read back from Redis -----------------------------------------------------


def _valid_fields() -> dict[str, str]:
    msg = telemetry("node-a", collected_ms=NOW_MS, cpu_psi_some=0.4)
    msg.top_offenders.add(namespace="ns", name="pod-1", metric="cpu_utilization", value=0.5)
    return encode_record(validate_telemetry(msg, NOW_MS))


field_names = st.sampled_from(sorted(_valid_fields()) + ["extra"])
field_texts = st.one_of(
    texts,
    st.sampled_from(
        [
            "",
            "nan",
            "inf",
            "-1",
            "1e309",
            "0x10",
            "[]",
            "{}",
            "[[1,2,3,4]]",
            '[["a","b","c","x"]]',
            "111111111111111",
            "1" * 16,
            "null",
            "1.5",
            "99999999999999999999999",
        ]
    ),
)


@FUZZ
@given(
    st.lists(st.tuples(field_names, st.one_of(st.none(), field_texts)), max_size=5),
    st.dictionaries(texts, texts, max_size=3),
)
def test_node_hash_decodes_or_is_reported_corrupt_with_the_node_and_field(edits, junk):
    fields = _valid_fields()
    for key, value in edits:  # None deletes the field
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    fields.update({k: v for k, v in junk.items() if k not in fields})
    try:
        rec = decode_record("node-a", fields)
    except CorruptRecord as e:
        assert str(e).startswith("node-a: ") and len(str(e)) > len("node-a: ")
        return
    assert isinstance(rec, NodeRecord)
    for m in METRICS:
        v = rec.values[m.index]
        assert (m.lo <= v <= m.hi) if rec.mask[m.index] else math.isnan(v)


@FUZZ
@given(st.dictionaries(texts, texts, max_size=25))
def test_any_hash_decodes_or_is_reported_corrupt(fields):
    try:
        decode_record("n", fields)
    except CorruptRecord as e:
        assert str(e).startswith("n: ")


@pytest.mark.parametrize("fields", [{"mask": "1" * NUM_METRICS}, {}])
def test_decode_failures_name_the_node(fields):
    with pytest.raises(CorruptRecord, match="^n: "):
        decode_record("n", fields)
