import math

import numpy as np
import pytest
from telemetry_factory import batch, telemetry

from aggregator.errors import InvalidInput
from aggregator.validate import validate_batch, validate_telemetry
from wire.v1 import scoring_pb2

NOW = 1_700_000_000_500


def test_valid_telemetry_becomes_a_record_with_nan_for_missing():
    rec = validate_telemetry(telemetry(), NOW)
    assert rec.node_name == "node-a" and rec.received_at_ms == NOW
    assert rec.mask.sum() == 8
    assert np.isnan(rec.values[~rec.mask]).all()
    assert rec.missing_reasons["llc_mpki"] == "not collected in this test"


def test_value_sent_for_a_missing_metric_is_not_kept():
    msg = telemetry()
    msg.values[9] = 0.0  # llc_miss_ratio, mask says missing
    assert math.isnan(validate_telemetry(msg, NOW).values[9])


def _broken(mutate):
    msg = telemetry()
    mutate(msg)
    return msg


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda m: setattr(m, "schema_version", 99), "schema_version"),
        (lambda m: setattr(m, "node_name", ""), "node_name"),
        (lambda m: setattr(m, "node_name", "Node_A"), "node_name"),
        (lambda m: setattr(m, "node_name", "a" * 254), "node_name"),
        (lambda m: setattr(m, "node_name", "n{x}"), "node_name"),
        (lambda m: m.values.append(0.1), "values"),
        (lambda m: m.available.pop(), "available"),
        (lambda m: setattr(m, "collected_at_unix_ms", 0), "collected_at_unix_ms"),
        (lambda m: m.values.__setitem__(0, math.nan), "values[0] (cpu_utilization)"),
        (lambda m: m.values.__setitem__(2, math.inf), "values[2] (cpu_psi_some)"),
        (lambda m: m.values.__setitem__(8, -0.1), "values[8] (memory_utilization)"),
        (lambda m: m.values.__setitem__(1, 1.5), "values[1] (cpu_iowait_ratio)"),
        (lambda m: m.values.__setitem__(14, 1e9), "values[14] (process_churn_per_s)"),
        (lambda m: m.missing_reasons.__setitem__("bogus", "x"), "missing_reasons"),
        (lambda m: setattr(m, "agent_version", "v" * 100), "agent_version"),
    ],
)
def test_bad_telemetry_is_rejected_naming_the_field(mutate, field):
    with pytest.raises(InvalidInput) as e:
        validate_telemetry(_broken(mutate), NOW)
    assert e.value.field == field
    assert str(e.value).startswith(field + ": ")


def test_batch_accepts_and_resolves_pod():
    pod, names = validate_batch(batch("a", "b"), 5000)
    assert names == ["a", "b"] and pod.cpu_request_cores == 0.5


@pytest.mark.parametrize(
    "req,field,words",
    [
        (batch(), "node_names", "empty"),
        (batch(*[f"n{i}" for i in range(5001)]), "node_names", "5001 candidates exceed the limit of 5000"),
        (batch(*[f"n{i}" for i in range(100_000)]), "node_names", "100000 candidates"),
        (batch("a", "b", "a"), "node_names", "'a' appears more than once"),
        (batch("a", ""), "node_names[1]", "empty"),
        (batch("a", cpu=math.nan), "pod.cpu_request_cores", "finite"),
        (batch("a", cpu=-1), "pod.cpu_request_cores", ">= 0"),
        (batch("a", profile=42), "pod.profile", "unknown"),
    ],
)
def test_bad_batch_is_rejected_naming_the_field(req, field, words):
    with pytest.raises(InvalidInput) as e:
        validate_batch(req, 5000)
    assert e.value.field == field and words in str(e.value)


def test_batch_rejects_negative_memory_and_unknown_qos():
    req = batch("a")
    req.pod.memory_request_bytes = -5
    with pytest.raises(InvalidInput, match="pod.memory_request_bytes"):
        validate_batch(req, 10)
    req = batch("a")
    req.pod.qos_class = 9
    with pytest.raises(InvalidInput, match="pod.qos_class"):
        validate_batch(req, 10)
    assert scoring_pb2.QOS_CLASS_GUARANTEED == 1


def _with_offender(**kw):
    msg = telemetry()
    o = msg.top_offenders.add()
    o.namespace, o.name, o.metric, o.value = (
        kw.get("ns", "batch"),
        kw.get("name", "ffmpeg-7c9d"),
        kw.get("metric", "cpu_utilization"),
        kw.get("value", 0.4),
    )
    return msg


def test_offenders_are_kept():
    rec = validate_telemetry(_with_offender(), NOW)
    assert rec.offenders[0].pod == "batch/ffmpeg-7c9d" and rec.offenders[0].value == 0.4


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"ns": ""}, "top_offenders[0].namespace"),
        ({"name": "Bad_Name"}, "top_offenders[0].name"),
        ({"metric": "joules"}, "top_offenders[0].metric"),
        ({"value": math.nan}, "top_offenders[0].value"),
        ({"value": -1.0}, "top_offenders[0].value"),
        ({"value": 2.0}, "top_offenders[0].value"),
    ],
)
def test_bad_offenders_are_rejected_naming_the_field(kw, field):
    with pytest.raises(InvalidInput) as e:
        validate_telemetry(_with_offender(**kw), NOW)
    assert e.value.field == field


def test_too_many_offenders():
    msg = _with_offender()
    for _ in range(40):
        msg.top_offenders.add(namespace="a", name="b", metric="cpu_utilization", value=0.1)
    with pytest.raises(InvalidInput, match="more than the 32"):
        validate_telemetry(msg, NOW)
