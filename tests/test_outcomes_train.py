"""The collector's JSONL export read by ``kubeattention train --outcomes`` (real redis-server, real fit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures.k8s.apiserver import load, pod
from test_outcomes import BIND_MS, Clock, push_history, record_decision

from aggregator.store import RedisStore
from controllers import outcome_collector as outcomes
from kubeapi.fields import parse_time
from kubeattention import cli
from scorer import dataset
from scorer.outcome_rows import load_outcomes
from scorer.training import TrainError
from wire import schema

pytestmark = pytest.mark.integration


@pytest.fixture
def export(redis_server, tmp_path):
    """An export written by the collector: running (with telemetry), oom_killed, evicted (no telemetry), pending."""
    store = RedisStore(redis_server.url)
    web, oom, evicted = load("pod-deployment-running.json"), load("pod-oomkilled.json"), load("pod-evicted.json")
    stuck = pod(
        name="web-7d4b9c8f6d-zz9yy",
        uid="uid-stuck",
        edit=lambda d: d["status"].update(phase="Pending", containerStatuses=[]),
    )
    for p in (web, oom, evicted, stuck):
        record_decision(store, p, BIND_MS)
    push_history(store, "node-a", BIND_MS - 500, cpu_utilization=0.95, cpu_psi_some=0.6)
    path = tmp_path / "outcomes.jsonl"
    collector = outcomes.OutcomeCollector(
        store, settle_s=60, export_path=path, clock=Clock(parse_time("2026-11-29T10:30:00Z"))
    )
    collector.relist([web, oom, evicted, stuck])
    assert collector.tick() == 4
    store.close()
    return path


def with_slowdowns(path, slowdowns: dict[str, float]):
    """What a latency source would do: fill observed_slowdown in for the pods it measured."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in lines:
        if rec["pod_name"] in slowdowns:
            rec["observed_slowdown"] = slowdowns[rec["pod_name"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_export_is_accepted_and_only_rows_with_a_slowdown_are_used(export):
    rows = load_outcomes(export)
    assert rows.lines == 4 and len(rows.y) == 0
    assert rows.skipped == {"no observed_slowdown": 4}

    with_slowdowns(
        export,
        {
            "web-7d4b9c8f6d-x2x9k": 2.5,
            "ingest-84c5d6e7f-m2n3b": 0.9,
            "thumbnails-5d6e7f809-kk4lm": 4.0,
            "web-7d4b9c8f6d-zz9yy": 1.1,
        },
    )
    rows = load_outcomes(export)
    # evicted ran on node-b (no history: no telemetry); the stuck pod weighs 0
    assert rows.skipped == {"no telemetry at decision time": 1, "weight 0": 1}
    assert len(rows.y) == 2 and rows.X.shape == (2, schema.NUM_FEATURES)
    assert sorted(rows.weight.tolist()) == [1.0, 3.0]  # running 1x, oom_killed 3x
    assert sorted(np.exp(rows.y).tolist()) == pytest.approx([1.0, 2.5])  # 0.9 is clipped to 1.0, as synthetic labels
    cpu = schema.METRIC_BY_NAME["cpu_utilization"].index
    llc = schema.METRIC_BY_NAME["llc_mpki"].index
    assert rows.X[0, cpu] == pytest.approx(0.95) and rows.X[0, llc] == schema.MISSING


def test_malformed_lines_are_errors_naming_the_line(tmp_path, export):
    good = export.read_text().splitlines()[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + json.dumps({"kind": "something-else"}) + "\n")
    with pytest.raises(TrainError, match=r"line 2: not an outcome record: kind"):
        load_outcomes(bad)
    rec = json.loads(good)
    rec["observed_slowdown"] = 2.0
    rec["telemetry"]["mask"] = "101"
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(TrainError, match=r"line 1: .*telemetry.mask"):
        load_outcomes(bad)
    del rec["pod"]
    bad.write_text("\n" + json.dumps(rec) + "\n")
    with pytest.raises(TrainError, match=r"line 2: .*field 'pod' absent"):
        load_outcomes(bad)
    with pytest.raises(TrainError, match="cannot read"):
        load_outcomes(tmp_path / "missing.jsonl")


def test_cli_train_with_outcomes(export, tmp_path, capsys):
    with_slowdowns(export, {"web-7d4b9c8f6d-x2x9k": 2.5, "ingest-84c5d6e7f-m2n3b": 3.0})
    out = tmp_path / "m.onnx"
    assert cli.main(["train", "--rows", "2000", "--seed", "3", "--outcomes", str(export), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"outcomes {export}: 2 of 4 rows used; skipped: 2 no observed_slowdown" in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["outcomes"]["rows_used"] == 2 and meta["outcomes"]["lines"] == 4
    # the training data differs from the synthetic-only run, and the version says so
    assert meta["model_version"] != f"mlp-{dataset.generate(2000, 3).data_hash[:12]}"
    assert (
        cli.main(
            ["train", "--rows", "2000", "--outcomes", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x.onnx")]
        )
        == 2
    )
