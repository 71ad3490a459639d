"""Training on calibration rows: curve fitting, bad input, ONNX exports with metadata.

``tests/fixtures/calibration-small.jsonl`` is repetition 1 of the committed, measured
``scorer/data/calibration/calibration.jsonl`` (75 real rows of this project's machine, see
``scorer/data/README.md``); nothing in it is synthetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from procs import REPO

from inference.model import InterferenceModel
from scorer import contention
from scorer.calibration import fit
from scorer.calibration.data import from_rows, load
from scorer.calibration.rows import CalibrationError
from wire import schema

FIXTURE = Path(__file__).parent / "fixtures" / "calibration-small.jsonl"
KA = [sys.executable, "-m", "kubeattention.cli"]


@pytest.fixture(scope="module")
def cal():
    return load(FIXTURE)


def ka(*args, timeout=300):
    return subprocess.run([*KA, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_fixture_rows_become_model_input(cal):
    assert cal.X.shape == (len(cal), schema.NUM_FEATURES) and cal.X.dtype == np.float32
    # Metrics this VM cannot measure are the MISSING sentinel, never 0.
    llc = schema.METRIC_NAMES.index("llc_miss_ratio")
    assert not cal.mask[:, llc].any() and (cal.X[:, llc] == schema.MISSING).all()
    alone = cal.config == "none"
    assert alone.any() and np.median(cal.slowdown[alone]) == pytest.approx(1.0, abs=0.15)
    assert (cal.y >= 0).all() and np.allclose(np.exp(cal.y), np.maximum(cal.slowdown, 1.0))


def test_fit_recovers_known_curves_from_generated_slowdowns(cal):
    # Labels made by the contention model itself with known curves: the fit must find them.
    truth = fit._unpack(
        np.concatenate([[0.6, 0.5, 0.7, 0.3, 0.5], [3.0, 2.0, 2.5, 2.0, 2.0], np.linspace(0.2, 2.0, 25)]),
        contention.PRIOR,
    )
    z, pods = fit.latent_of(cal), fit.pods_of(cal)
    y = contention.log_slowdown(z, pods, None, truth)
    synthetic = type(cal)(**{**cal.__dict__, "y": y})
    got = fit.fit(synthetic)
    assert got.rmse < 0.02 < got.prior_rmse
    assert got.summary["rows"] == len(cal) and set(got.summary["sources"]) == set(fit.FITTED_SOURCES)


def test_fit_beats_the_prior_on_measured_rows(cal):
    got = fit.fit(cal)
    assert got.rmse < got.prior_rmse
    assert "fitted to calibration" in got.params.name


@pytest.mark.parametrize("kind", ["mlp", "xgboost"])
def test_calibrated_model_exports_to_onnx_with_metadata(cal, kind, tmp_path):
    out = tmp_path / f"{kind}.onnx"
    proc = ka("train", "--data", str(FIXTURE), "--model", kind, "--rows", "2000", "--holdout", "0.3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held out configurations:" in proc.stdout
    model = InterferenceModel.load(out)
    m = model.metadata
    assert m["schema_version"] == schema.SCHEMA_VERSION and m["feature_names"] == list(schema.FEATURE_NAMES)
    assert m["model_kind"] == kind and m["training_data_hash"]
    assert m["calibration"]["data_hash"] == cal.data_hash
    assert set(m["calibration"]["holdout_configs"]).isdisjoint(m["calibration"]["train_configs"])
    assert m["validation"]["holdout"] == "antagonist configurations"
    assert m["validation"]["all"]["rows"] > 0 and np.isfinite(m["validation"]["all"]["mae"])
    assert set(m["contention_fit"]["sources"]) == set(fit.FITTED_SOURCES)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["feature_names"]) == list(schema.FEATURE_NAMES)
    pred = model.predict_slowdown(cal.X)
    assert pred.shape == (len(cal),) and (pred >= 1.0).all()
    assert json.loads(out.with_suffix(".json").read_text())["model_version"] == model.version


def test_empty_dataset_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = ka("train", "--data", str(empty), "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2 and "holds no calibration rows" in proc.stderr
    proc = ka("train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_malformed_and_mismatched_rows_are_refused_naming_the_line(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "[1, 2, 3]", *lines[1:]]) + "\n")
    proc = ka("train", "--data", str(bad), "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2 and "bad.jsonl:2: expected a JSON object" in proc.stderr
    row = json.loads(lines[1])
    row["schema_version"] = schema.SCHEMA_VERSION + 1
    bad.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    proc = ka("train", "--data", str(bad), "--out", str(tmp_path / "m.onnx"))
    assert (
        proc.returncode == 2
        and f"bad.jsonl:2: schema_version {schema.SCHEMA_VERSION + 1} does not match" in proc.stderr
    )
    row = json.loads(lines[1])
    row["values"] = row["values"][:14]
    bad.write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    with pytest.raises(CalibrationError, match="lists of 15"):
        load(bad)


def test_rows_without_an_alone_run_cannot_give_slowdowns():
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    with pytest.raises(CalibrationError, match="no alone"):
        from_rows([r for r in rows if r["config"] != "none"])
