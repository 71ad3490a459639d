"""Tetragon's JSON export format: the project's shared sample as it is, every event shape
churn cares about, every kind of rejection, and a fuzz of the line parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.tetragon.events import EventKind, PodRef, ProcessEvent, RateLimited, parse_rfc3339
from agent.tetragon.parse import (
    BAD_FIELD,
    EMPTY,
    NO_EVENT,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    REJECTION_REASONS,
    SEVERAL_EVENTS,
    Ignored,
    LineParser,
    MalformedLine,
    parse_line,
)

REPO = Path(__file__).resolve().parent.parent
SHARED_EVENTS = REPO.parent / "shared" / "fixtures" / "tetragon" / "events.json"


def exec_line(pid=1, pod=("default", "web-0"), time="2024-05-01T10:00:00.5Z", binary="/bin/sh", **extra) -> str:
    process = {"exec_id": f"id-{pid}", "pid": pid, "binary": binary}
    if pod is not None:
        process["pod"] = {"namespace": pod[0], "name": pod[1], "container": {"id": "containerd://x", "name": "c"}}
    obj = {"process_exec": {"process": process, "parent": {"pid": 1}}, "node_name": "node-a", **extra}
    if time is not None:
        obj["time"] = time
    return json.dumps(obj)


# ------------------------------------------------------------------ the shared sample


def test_shared_sample_parses_as_is():
    parser = LineParser()
    with open(SHARED_EVENTS, "rb") as f:
        records = [parser.feed(line.rstrip(b"\n")) for line in f]
    assert parser.counts().parsed == {"exec": 3}
    assert parser.counts().ignored == {} and parser.counts().rejected == {}
    assert [r.kind for r in records] == [EventKind.EXEC] * 3
    assert [r.pod for r in records] == [
        PodRef("default", "tiefighter"),
        PodRef("default", "deathstar-6f87496b94-qdlh8"),
        PodRef("default", "deathstar-6f87496b94-gjf74"),
    ]
    assert [r.pid for r in records] == [68790, 68862, 68920]
    assert records[0].binary == "/usr/bin/netserver" and records[0].node_name == "my-node"
    # The first sample event carries no time; the others do, with nanoseconds.
    assert records[0].time is None
    assert records[1].time == pytest.approx(datetime(2022, 10, 18, 3, 16, 21, 373328, tzinfo=UTC).timestamp(), abs=1e-6)


# ------------------------------------------------------------------ event shapes


def test_exec_exit_and_host_processes():
    e = parse_line(exec_line(pid=42, pod=("shop", "cart-1")))
    assert e == ProcessEvent(
        EventKind.EXEC, parse_rfc3339("2024-05-01T10:00:00.5Z"), 42, "/bin/sh", PodRef("shop", "cart-1"), "node-a"
    )
    host = parse_line(exec_line(pod=None))
    assert host.pod is None
    # A pod object without a name (Tetragon could not associate one) counts as a host process.
    assert parse_line(json.dumps({"process_exec": {"process": {"pid": 3, "pod": {"namespace": "x"}}}})).pod is None
    # Newer Tetragon puts the exit time inside process_exit; the envelope time wins when both exist.
    exit_ = parse_line(
        json.dumps(
            {
                "process_exit": {
                    "process": {"pid": 7, "binary": "/usr/bin/true"},
                    "signal": "SIGKILL",
                    "status": 0,
                    "time": "2024-05-01T10:00:01Z",
                }
            }
        )
    )
    assert exit_.kind is EventKind.EXIT and exit_.time == parse_rfc3339("2024-05-01T10:00:01Z")
    assert exit_.node_name is None and exit_.pod is None
    # Whitespace in the encoding (protojson may add it) and a CRLF line end are fine.
    assert parse_line(' { "process_exit" : {"process": {"pid": 9}} }\r').kind is EventKind.EXIT


def test_rate_limit_and_other_kinds():
    # protojson encodes uint64 as a string.
    assert parse_line(
        '{"rate_limit_info":{"number_of_dropped_process_events":"1234"},"time":"2024-05-01T10:00:00Z"}'
    ) == RateLimited(1234, parse_rfc3339("2024-05-01T10:00:00Z"))
    assert parse_line('{"rate_limit_info":{}}') == RateLimited(0)
    assert parse_line(
        '{"process_kprobe":{"process":{"pid":1},"function_name":"tcp_connect"},"node_name":"n"}'
    ) == Ignored("process_kprobe")
    # Known other kinds are not decoded at all (their volume can be high)...
    assert parse_line('{"process_tracepoint": not even json') == Ignored("process_tracepoint")
    # ...but an unknown, well-formed kind (a newer Tetragon) is decoded, then ignored by name.
    assert parse_line('{"process_future":{"x":1},"time":"2024-05-01T10:00:00Z"}') == Ignored("process_future")


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"", EMPTY),
        (b"   ", EMPTY),
        (b"\xff\xfe{}", NOT_UTF8),
        (b'{"process_exec": ', NOT_JSON),
        (b"[" * 100_000, NOT_JSON),  # nesting deeper than the recursion limit
        (b'"process_exec"', NOT_OBJECT),
        (b"[1, 2]", NOT_OBJECT),
        (b'{"node_name": "n", "time": "2024-05-01T10:00:00Z"}', NO_EVENT),
        (b'{"process_exec": {"process": {}}, "process_exit": {"process": {}}}', SEVERAL_EVENTS),
        (b'{"": {}}', NO_EVENT),
        (b'{"Process Exec": {}}', NO_EVENT),
        (b'{"process_future": 3}', BAD_FIELD),
        (b'{"process_exec": []}', BAD_FIELD),
        (b'{"process_exec": {}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pid": "12"}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pid": -1}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pid": 4294967296}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pid": true}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pid": 1.5}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"binary": 5}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pod": "web"}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {"pod": {"name": 3}}}}', BAD_FIELD),
        (b'{"process_exec": {"process": {}}, "time": "yesterday"}', BAD_FIELD),
        (b'{"process_exec": {"process": {}}, "time": "2024-02-30T00:00:00Z"}', BAD_FIELD),
        (b'{"process_exec": {"process": {}}, "time": 1714557600}', BAD_FIELD),
        (b'{"process_exec": {"process": {}}, "node_name": 7}', BAD_FIELD),
        (b'{"rate_limit_info": {"number_of_dropped_process_events": "-3"}}', BAD_FIELD),
        (b'{"rate_limit_info": 12}', BAD_FIELD),
    ],
)
def test_malformed_lines_are_rejected_with_their_reason(line, reason):
    with pytest.raises(MalformedLine) as err:
        parse_line(line)
    assert err.value.reason == reason
    parser = LineParser()
    assert parser.feed(line) is None
    assert parser.counts().rejected == {reason: 1}
    assert parser.last_rejection.startswith(reason)


def test_rfc3339():
    assert parse_rfc3339("1970-01-01T00:00:00Z") == 0.0
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_rfc3339("1970-01-01T00:00:00.000000001Z") == pytest.approx(1e-9)
    assert parse_rfc3339("2016-12-31T23:59:60Z") == parse_rfc3339("2017-01-01T00:00:00Z")  # leap second
    for bad in (
        "1970-01-01 00:00:00Z",
        "1970-01-01T00:00:00",
        "1970-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "1970-01-01T00:00:00+24:00",
        "1970-01-01T00:00:61Z",
        "١٩٧٠-01-01T00:00:00Z",
    ):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_counts_stay_bounded():
    parser = LineParser()
    for i in range(100):
        parser.feed(f'{{"kind_{i}": {{}}}}')
    ignored = parser.counts().ignored
    assert len(ignored) == 33 and ignored["other"] == 100 - 32 and sum(ignored.values()) == 100


# ------------------------------------------------------------------ fuzz

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)

_payload = (
    st.fixed_dictionaries(
        {},
        optional={
            "process": st.fixed_dictionaries(
                {},
                optional={
                    "pid": _json_values | st.integers(-1, 2**33),
                    "binary": _json_values,
                    "pod": st.fixed_dictionaries({}, optional={"namespace": _json_values, "name": _json_values})
                    | _json_values,
                },
            ),
            "number_of_dropped_process_events": _json_values | st.integers(0, 2**65).map(str),
            "time": _json_values,
        },
    )
    | _json_values
)

_event_like = st.tuples(
    st.sampled_from(["process_exec", "process_exit", "rate_limit_info", "process_kprobe", "bogus"]),
    _payload,
    st.fixed_dictionaries(
        {}, optional={"time": _json_values | st.just("2024-05-01T10:00:00Z"), "node_name": _json_values}
    ),
).map(lambda t: {t[0]: t[1], **t[2]})

_lines = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _json_values.map(lambda v: json.dumps(v).encode()),
    _event_like.map(lambda v: json.dumps(v).encode()),
    # A valid line cut short or with a byte flipped, as a torn write would leave it.
    st.tuples(
        st.sampled_from([exec_line().encode(), SHARED_EVENTS.read_bytes().split(b"\n")[0]]),
        st.integers(0, 400),
        st.integers(0, 255),
    ).map(lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_lines, min_size=1, max_size=8))
def test_fuzz_no_exception_escapes_and_every_line_is_counted(lines):
    parser = LineParser()
    for line in lines:
        record = parser.feed(line)
        assert record is None or isinstance(record, (ProcessEvent, RateLimited))
        if isinstance(record, ProcessEvent):
            assert record.pid is None or 0 <= record.pid < 2**32
            assert record.pod is None or (isinstance(record.pod.name, str) and record.pod.name)
    counts = parser.counts()
    assert counts.total == len(lines)
    assert set(counts.rejected) <= set(REJECTION_REASONS)
