"""NodeVector: the contract checks, the gRPC message and the JSON round trip."""

from __future__ import annotations

import json
import math

import pytest

from agent.vector import NodeVector, VectorError
from wire import __version__
from wire.schema import METRIC_NAMES, METRICS, NUM_METRICS, SCHEMA_VERSION

MISSING = {"runqueue_latency_p99_us": "not collected yet: eBPF", "llc_mpki": "no perf counters in this VM"}


def make_vector(**overrides) -> NodeVector:
    values = [0.25] * NUM_METRICS
    available = [True] * NUM_METRICS
    for name in MISSING:
        i = METRIC_NAMES.index(name)
        values[i], available[i] = math.nan, False
    values[METRIC_NAMES.index("process_churn_per_s")] = 12.5
    fields = dict(
        node_name="node-a",
        collected_at_ms=1_700_000_000_123,
        values=tuple(values),
        available=tuple(available),
        missing_reasons=dict(MISSING),
        sources={"process_churn_per_s": "fallback: /proc/stat forks, Tetragon not configured"},
    )
    fields.update(overrides)
    return NodeVector(**fields)


def test_defaults_carry_schema_and_agent_version():
    v = make_vector()
    assert v.schema_version == SCHEMA_VERSION
    assert v.agent_version == __version__
    assert v.available_count == NUM_METRICS - len(MISSING)
    assert v.value("llc_mpki") is None
    assert v.value("process_churn_per_s") == 12.5


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(values=(0.1,) * 14), "values"),
        (dict(available=(True,) * 16), "available"),
        (dict(node_name=""), "node_name"),
        (dict(collected_at_ms=0), "collected_at_ms"),
        (dict(collected_at_ms=1.5), "collected_at_ms"),
        (dict(schema_version=SCHEMA_VERSION + 1), "schema_version"),
    ],
)
def test_shape_errors_name_the_field(overrides, field):
    with pytest.raises(VectorError, match=field):
        make_vector(**overrides)


def test_available_must_match_finiteness():
    values = list(make_vector().values)
    values[0] = math.nan  # cpu_utilization is marked available
    with pytest.raises(VectorError, match=r"values\[0\] \(cpu_utilization\).*available"):
        make_vector(values=tuple(values))
    values = list(make_vector().values)
    values[METRIC_NAMES.index("llc_mpki")] = 0.0  # missing must be NaN, never 0
    with pytest.raises(VectorError, match="llc_mpki.*must be NaN"):
        make_vector(values=tuple(values))


def test_missing_metric_needs_a_reason_and_available_one_must_not_have_one():
    with pytest.raises(VectorError, match="missing_reasons.*llc_mpki"):
        make_vector(missing_reasons={"runqueue_latency_p99_us": "x"})
    with pytest.raises(VectorError, match="missing_reasons.*cpu_utilization"):
        make_vector(missing_reasons={**MISSING, "cpu_utilization": "x"})


def test_out_of_range_value_is_refused():
    values = list(make_vector().values)
    values[0] = 1.5
    with pytest.raises(VectorError, match=r"cpu_utilization.*outside the valid range"):
        make_vector(values=tuple(values))


def test_to_proto_keeps_nan_mask_and_reasons():
    msg = make_vector().to_proto()
    assert msg.schema_version == SCHEMA_VERSION
    assert msg.node_name == "node-a"
    assert msg.collected_at_unix_ms == 1_700_000_000_123
    assert len(msg.values) == len(msg.available) == NUM_METRICS
    i = METRIC_NAMES.index("llc_mpki")
    assert math.isnan(msg.values[i]) and msg.available[i] is False
    assert msg.values[0] == 0.25 and msg.available[0] is True
    assert dict(msg.missing_reasons) == MISSING
    assert msg.agent_version == __version__


def test_json_shape_and_round_trip():
    v = make_vector()
    data = json.loads(json.dumps(v.to_json(), allow_nan=False))  # strict JSON: no NaN leaks
    assert [m["name"] for m in data["metrics"]] == list(METRIC_NAMES)
    assert [m["unit"] for m in data["metrics"]] == [m.unit for m in METRICS]
    mpki = data["metrics"][METRIC_NAMES.index("llc_mpki")]
    assert mpki == {
        "name": "llc_mpki",
        "unit": "mpki",
        "value": None,
        "available": False,
        "reason": "no perf counters in this VM",
    }
    churn = data["metrics"][METRIC_NAMES.index("process_churn_per_s")]
    assert churn["source"].startswith("fallback: /proc/stat forks")
    back = NodeVector.from_json(data)
    assert back.to_json() == v.to_json()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("node_name"), "node_name"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["metrics"].pop(), "metrics"),
        (lambda d: d["metrics"].reverse(), r"metrics\[0\].name"),
        (lambda d: d["metrics"][0].update(value="high"), r"metrics\[0\].value"),
    ],
)
def test_from_json_errors_name_the_field(mutate, field):
    data = make_vector().to_json()
    mutate(data)
    with pytest.raises(VectorError, match=field):
        NodeVector.from_json(data)


def test_restamped_changes_only_name_and_time():
    v = make_vector().restamped(node_name="replay-1", collected_at_ms=1_800_000_000_000)
    assert v.node_name == "replay-1" and v.collected_at_ms == 1_800_000_000_000
    assert v.to_json()["metrics"] == make_vector().to_json()["metrics"]
