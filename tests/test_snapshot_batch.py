"""Snapshot and BatchScorer: statuses, staleness, budget and failure, on a test-double model."""

import numpy as np
import pytest
from doubles import FormulaModel, ManualClock
from telemetry_factory import telemetry

from aggregator.batch import BatchScorer
from aggregator.metrics import AggregatorMetrics
from aggregator.snapshot import Snapshot
from aggregator.validate import validate_telemetry
from inference import scoring
from wire.schema import PodContext, Profile
from wire.status import Status

POD = PodContext(cpu_request_cores=0.5, profile=Profile.LATENCY_CRITICAL)


def _snapshot(clock, **nodes):
    snap = Snapshot()
    for name, psi in nodes.items():
        snap.upsert(validate_telemetry(telemetry(name, collected_ms=clock(), cpu_psi_some=psi), clock()))
    snap.recompute_fleet_median(clock(), 10_000)
    return snap


def test_snapshot_grows_and_gathers_in_request_order():
    clock = ManualClock()
    snap = _snapshot(clock, **{f"n{i}": i / 1000 for i in range(600)})
    g = snap.gather(["n599", "ghost", "n0"])
    assert list(g.known) == [True, False, True]
    assert g.records[0].values[2] == pytest.approx(0.599) and g.records[2].values[2] == 0.0
    assert g.records[1] is None and g.oldest_ms[1] == 0
    assert g.x[0, 2] == pytest.approx(0.599) and g.x[0, 9] == -1.0  # normalised, LLC missing
    assert g.conf[0] == pytest.approx(scoring.confidence_table(g.records[0].mask[None, :])[0])


def test_older_copy_does_not_replace_newer_data():
    clock = ManualClock()
    snap = Snapshot()
    snap.upsert(validate_telemetry(telemetry("a", cpu_psi_some=0.5), clock() + 1000))
    snap.upsert(validate_telemetry(telemetry("a", cpu_psi_some=0.1), clock()))
    assert snap.get("a").values[2] == 0.5


def test_replace_all_drops_expired_nodes():
    clock = ManualClock()
    snap = _snapshot(clock, a=0.1, b=0.2, c=0.3)
    clock.advance(60_000)
    assert snap.sync({"c": clock()}, [], clock(), ttl_ms=30_000) == []
    assert snap.get("a") is None and snap.get("b") is None and len(snap) == 1
    g = snap.gather(["c", "a"])  # rows stay dense and correct after removals
    assert list(g.known) == [True, False] and g.x[0, 2] == pytest.approx(0.3)


def test_replace_all_keeps_and_returns_what_redis_lost_before_its_ttl():
    clock = ManualClock()
    snap = _snapshot(clock, a=0.1, b=0.2)
    clock.advance(1_000)
    lost = snap.sync({"b": clock()}, [], clock(), ttl_ms=30_000)
    assert [r.node_name for r in lost] == ["a"] and len(snap) == 2


def test_fleet_median_ignores_stale_and_missing():
    clock = ManualClock()
    snap = _snapshot(clock, a=0.1, b=0.3)
    clock.advance(20_000)
    snap.upsert(validate_telemetry(telemetry("c", collected_ms=clock(), cpu_psi_some=0.9), clock()))
    snap.recompute_fleet_median(clock(), 10_000)
    assert snap.fleet_median[2] == pytest.approx(0.9)
    assert np.isnan(snap.fleet_median[9])


def test_statuses_scored_stale_unknown_and_others_still_scored():
    clock = ManualClock()
    snap = _snapshot(clock, old=0.1)
    clock.advance(11_000)
    snap.upsert(validate_telemetry(telemetry("calm", collected_ms=clock(), cpu_psi_some=0.0), clock()))
    snap.upsert(validate_telemetry(telemetry("busy", collected_ms=clock(), cpu_psi_some=0.5), clock()))
    metrics = AggregatorMetrics()
    scorer = BatchScorer(snap, FormulaModel(), max_staleness_ms=10_000, budget_ms=45, clock_ms=clock, metrics=metrics)
    r = scorer.score(POD, ["calm", "old", "ghost", "busy"])
    assert list(r.status) == [Status.SCORED, Status.STALE, Status.UNKNOWN_NODE, Status.SCORED]
    assert r.scores[0] == pytest.approx(100.0) and r.scores[3] == pytest.approx(40.0)
    assert r.scores[1] == r.scores[2] == 50.0
    assert "11.0 s old, over the 10 s limit" in r.reasons[1]
    assert "never reported" in r.reasons[2]
    assert "CPU pressure 50%" in r.reasons[3]
    assert r.age_ms[2] == -1 and r.age_ms[1] == 11_000
    assert np.isnan(r.slowdown[1]) and r.slowdown[3] == pytest.approx(2.5)
    assert r.model_version == "formula-test"
    assert metrics.node_scores[Status.STALE]._value.get() == 1


def test_over_budget_every_node_falls_back_and_is_counted():
    clock = ManualClock()
    snap = _snapshot(clock, a=0.1, b=0.2)
    metrics = AggregatorMetrics()
    scorer = BatchScorer(
        snap, FormulaModel(delay_s=0.02), max_staleness_ms=10_000, budget_ms=5, clock_ms=clock, metrics=metrics
    )
    r = scorer.score(POD, ["a", "b"])
    assert set(r.status) == {Status.FALLBACK} and set(r.scores) == {50.0}
    assert "over the 5 ms budget" in r.reasons[0]
    assert metrics.fallback_budget._value.get() == 1


def test_model_failure_falls_back_with_the_error_in_the_reason():
    clock = ManualClock()
    snap = _snapshot(clock, a=0.1)
    metrics = AggregatorMetrics()
    scorer = BatchScorer(
        snap,
        FormulaModel(fail=RuntimeError("onnx exploded")),
        max_staleness_ms=10_000,
        budget_ms=45,
        clock_ms=clock,
        metrics=metrics,
    )
    r = scorer.score(POD, ["a"])
    assert r.status[0] == Status.FALLBACK and "onnx exploded" in r.reasons[0]
    assert metrics.fallback_error._value.get() == 1


def test_no_model_call_when_nothing_is_fresh():
    clock = ManualClock()
    model = FormulaModel()
    scorer = BatchScorer(Snapshot(), model, max_staleness_ms=10_000, budget_ms=45, clock_ms=clock)
    r = scorer.score(POD, ["x", "y"])
    assert model.calls == 0 and set(r.status) == {Status.UNKNOWN_NODE}


def test_reasons_for_a_wave_of_new_nodes_are_spread_over_answers():
    from aggregator.batch import ReasonCache

    clock = ManualClock()
    snap = Snapshot()
    for i in range(5):
        snap.upsert(validate_telemetry(telemetry(f"n{i}", collected_ms=clock(), cpu_psi_some=0.1 * i), clock()))
    cache = ReasonCache(max_per_call=2)
    model = FormulaModel()
    records = [snap.get(f"n{i}") for i in range(5)]
    first = cache.texts(model, records, Profile.LATENCY_CRITICAL, snap.fleet_median)
    assert sum(t.startswith("reason not computed yet: 5 nodes pushed new telemetry") for t in first) == 3
    second = cache.texts(model, records, Profile.LATENCY_CRITICAL, snap.fleet_median)
    third = cache.texts(model, records, Profile.LATENCY_CRITICAL, snap.fleet_median)
    assert sum(t.startswith("reason not computed yet") for t in second) == 1
    assert not any(t.startswith("reason not computed yet") for t in third)
    assert model.calls == 3  # one batched model call per answer
