"""``kubeattention evaluate --seeds`` and ``kubeattention promote`` (the gate), end to end on real rows.

The evaluation runs on tests/fixtures/calibration-small.jsonl (170 measured rows) with small
settings; the candidate is a real xgboost-fast model trained on the same rows. Whether that
candidate beats the baselines on 170 rows is not the question here, so the refusal and the
promotion are each forced by editing the baselines' figures in a copy of the report: what is
tested is that the gate reads the figures, checks the provenance, the speed and the
invariants on the real file, and writes (or does not write) the default accordingly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from procs import REPO

from scorer import placement
from scorer.flags import FlagError, parse_seeds

FIXTURE = Path(__file__).parent / "fixtures" / "calibration-small.jsonl"
KA = [sys.executable, "-m", "kubeattention.cli"]


def ka(*args, timeout=300):
    return subprocess.run([*KA, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate")
    proc = ka(
        "evaluate",
        "--data",
        str(FIXTURE),
        "--model",
        "xgboost-fast",
        "--seeds",
        "0-1",
        "--folds",
        "3",
        "--rows",
        "500",
        "--trials",
        "300",
        "--no-kind-holdout",
        "--report",
        str(out / "report"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = ka(
        "train", "--model", "xgboost-fast", "--data", str(FIXTURE), "--rows", "500", "--out", str(out / "c.onnx")
    )
    assert train.returncode == 0, train.stderr[-3000:]
    return out, json.loads((out / "report" / "report.json").read_text())


def test_seeds_are_parsed_as_ranges_and_lists():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,9, 1") == [0, 1, 2, 9]
    for bad in ("", "a", "3-1", "-1", "0-200"):
        with pytest.raises(FlagError, match="--seeds"):
            parse_seeds(bad)


def test_evaluation_over_seeds_reports_median_and_range(evaluated):
    out, report = evaluated
    info = report["info"]
    assert info["seeds"] == [0, 1]
    assert set(report["per_seed_figures"]) == {"0", "1"}
    m = info["across_seeds"]["KubeAttention xgboost-fast (held-out)"]
    for fig in ("spearman", "mean_regret", "slo_breach_share"):
        lo, med, hi = m[fig]["min"], m[fig]["median"], m[fig]["max"]
        assert lo <= med <= hi and len(m[fig]["per_seed"]) == 2
        assert m[fig]["per_seed"][0] == pytest.approx(
            report["per_seed_figures"]["0"]["KubeAttention xgboost-fast (held-out)"][fig]
        )
    # Each seed draws its own folds and candidate sets: the two seeds' figures differ.
    assert m["mean_regret"]["per_seed"][0] != m["mean_regret"]["per_seed"][1]
    assert info["across_seeds"][placement.ORACLE]["mean_regret"]["max"] == 0.0
    # Where each scorer chooses well or badly, profile by profile (the oracle never regrets).
    bp = info["placement_by_profile"]
    assert sum(f["sets"] for f in bp.values()) == 300
    assert all(f[placement.ORACLE]["mean_regret"] == 0.0 for f in bp.values())
    text = (out / "report" / "report.md").read_text()
    assert "Placement per victim profile" in text
    assert "Over fold seeds 0–1" in text and "Targets (issue 14), over fold seeds 0–1" in text
    assert "latency-critical" in text


def promote(out, report: Path, to: Path):
    """The gate on the real candidate; the speed target is bench/models.py's to measure, so a
    generous bound here checks the logic."""
    return ka(
        "promote",
        str(out / "c.onnx"),
        "--report",
        str(report),
        "--data",
        str(FIXTURE),
        "--to",
        str(to),
        "--max-inference-ms",
        "50",
    )


def _rigged(report: dict, better: bool) -> dict:
    """A copy of the report whose baselines are made clearly worse (better=True) or better than the model."""
    r = json.loads(json.dumps(report))
    for b in (placement.TRIMARAN, placement.NAIVE):
        f = r["info"]["across_seeds"][b]
        f["mean_regret"]["median"] = 10.0 if better else 0.0
        f["slo_breach_share"]["median"] = 10.0 if better else 0.0
        f["spearman"]["median"] = -1.0 if better else 1.0
    return r


def test_the_gate_refuses_a_model_that_does_not_beat_the_baselines(evaluated, tmp_path):
    out, report = evaluated
    (tmp_path / "report.json").write_text(json.dumps(_rigged(report, better=False)))
    default = tmp_path / "default.onnx"
    default.write_bytes(b"the old default")
    proc = promote(out, tmp_path / "report.json", default)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  mean top-1 regret lower than load-aware CPU (Trimaran LVRB)" in proc.stdout
    assert "pass  trained on the evaluated data" in proc.stdout
    assert "does not pass the gate" in proc.stderr and default.read_bytes() == b"the old default"


def test_the_gate_promotes_a_model_that_earned_it_and_records_the_figures(evaluated, tmp_path):
    out, report = evaluated
    (tmp_path / "report.json").write_text(json.dumps(_rigged(report, better=True)))
    default = tmp_path / "default.onnx"
    proc = promote(out, tmp_path / "report.json", default)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass  invariants (scorer.invariants): none violated" in proc.stdout
    from inference.model import InterferenceModel

    promoted = InterferenceModel.load(default)
    gate = promoted.metadata["gate"]
    assert gate["passed"] is True and gate["seeds"] == [0, 1]
    assert promoted.metadata["validated_on"]["rows"] == 170
    assert "without a PMU" in promoted.metadata["validated_on"]["text"]


def test_the_gate_refuses_figures_about_other_data(evaluated, tmp_path):
    out, report = evaluated
    r = _rigged(report, better=True)
    r["info"]["data_hash"] = "0" * 64
    (tmp_path / "report.json").write_text(json.dumps(r))
    proc = promote(out, tmp_path / "report.json", tmp_path / "d.onnx")
    assert proc.returncode == 1 and "FAIL  trained on the evaluated data" in proc.stdout
    assert not (tmp_path / "d.onnx").exists()


def test_the_gate_needs_an_evaluation_over_seeds(evaluated, tmp_path):
    out, report = evaluated
    r = json.loads(json.dumps(report))
    del r["info"]["across_seeds"]
    (tmp_path / "report.json").write_text(json.dumps(r))
    proc = ka("promote", str(out / "c.onnx"), "--report", str(tmp_path / "report.json"), "--data", str(FIXTURE))
    assert proc.returncode == 2 and "kubeattention evaluate --seeds 0-4" in proc.stderr
    (tmp_path / "bad.json").write_text("{")
    proc = ka("promote", str(out / "c.onnx"), "--report", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "not JSON" in proc.stderr
