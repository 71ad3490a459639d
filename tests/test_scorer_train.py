"""Training and export: small real fits, real skl2onnx / onnxmltools, real ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from inference.model import InterferenceModel
from kubeattention import cli
from scorer import contention, evaluate, export, regressors, training
from wire import schema

SMALL_ROWS = 3000


@pytest.fixture(scope="module")
def mlp_result():
    return training.train(kind="mlp", rows=SMALL_ROWS, seed=1)


def test_mlp_onnx_matches_scikit_learn(mlp_result):
    X = mlp_result.data.X[mlp_result.holdout_index]
    sk = mlp_result.estimator.predict(X)
    ox = regressors.onnx_predict_log(mlp_result.onnx_model, X)
    np.testing.assert_allclose(ox, sk, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def xgb_result():
    return training.train(kind="xgboost", rows=SMALL_ROWS, seed=1)


def test_xgboost_onnx_matches_xgboost(xgb_result):
    X = xgb_result.data.X[xgb_result.holdout_index]
    np.testing.assert_allclose(
        regressors.onnx_predict_log(xgb_result.onnx_model, X), xgb_result.estimator.predict(X), atol=1e-4, rtol=0
    )
    assert xgb_result.metadata["model_version"].startswith("xgb-")
    assert xgb_result.metadata["hyperparameters"]["monotone_increasing"] == list(regressors.MONOTONE_METRICS)


def test_xgboost_never_scores_more_contention_as_better(xgb_result):
    # Sweep each constrained metric from 0 to 1 on real hold-out rows (where it is measured):
    # the exported model's predicted slowdown never goes down.
    X = xgb_result.data.X[xgb_result.holdout_index][:200]
    for name in regressors.MONOTONE_METRICS:
        i = schema.FEATURE_NAMES.index(name)
        rows = X[X[:, i] != schema.MISSING]
        grid = np.linspace(0.0, 1.0, 11, dtype=np.float32)
        preds = []
        for v in grid:
            Z = rows.copy()
            Z[:, i] = v
            preds.append(regressors.onnx_predict_log(xgb_result.onnx_model, Z))
        steps = np.diff(np.stack(preds), axis=0)
        assert (steps >= -1e-6).all(), f"{name}: more of it lowered a prediction by {-steps.min():.4f}"


def test_xgboost_reads_a_missing_metric_as_busy_never_as_zero(xgb_result):
    # The pipeline imputes a contention metric at the 90th percentile of the training rows
    # (scorer.regressors.missing_fill): a node that cannot measure cpu_psi_some is predicted
    # exactly like one that measured that, not like one that measured 0.
    i = schema.FEATURE_NAMES.index("cpu_psi_some")
    train_X = xgb_result.data.X[xgb_result.train_index]
    p90 = np.quantile(train_X[train_X[:, i] != schema.MISSING, i], regressors.MISSING_QUANTILE)
    rows = xgb_result.data.X[xgb_result.holdout_index][:100].copy()
    rows[:, i] = schema.MISSING
    missing = regressors.onnx_predict_log(xgb_result.onnx_model, rows)
    rows[:, i] = p90
    np.testing.assert_allclose(missing, regressors.onnx_predict_log(xgb_result.onnx_model, rows), atol=1e-5)
    rows[:, i] = 0.0
    assert not np.allclose(missing, regressors.onnx_predict_log(xgb_result.onnx_model, rows), atol=1e-3)


def test_onnx_graph_contract(mlp_result):
    g = mlp_result.onnx_model.graph
    assert [i.name for i in g.input] == ["features"]
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = g.input[0].type.tensor_type.shape.dim
    assert len(dims) == 2 and dims[1].dim_value == schema.NUM_FEATURES and not dims[0].dim_value
    assert [o.name for o in g.output] == ["log_slowdown"]


def test_metadata_records_provenance_and_validation(mlp_result):
    m = mlp_result.metadata
    assert m["model_version"] == f"mlp-{mlp_result.data.data_hash[:12]}"
    assert m["feature_names"] == list(schema.FEATURE_NAMES)
    assert m["schema_version"] == schema.SCHEMA_VERSION
    assert m["output"] == "log_slowdown"
    assert m["training_data_hash"] == mlp_result.data.data_hash
    assert (m["rows"], m["seed"]) == (SMALL_ROWS, 1)
    assert m["generator"] == contention.GENERATOR
    for key in ("created_at", "sklearn_version", "skl2onnx_version"):
        assert m[key]
    v = m["validation"]
    assert v["all"]["rows"] == len(mlp_result.holdout_index) == round(SMALL_ROWS * training.DEFAULT_HOLDOUT)
    assert set(v["per_profile"]) == {p.annotation for p in schema.Profile}
    assert set(v["per_pattern"]) == set(contention.PATTERN_NAMES)
    # Even a small model ranks held-out nodes far better than chance and beats the median.
    assert v["all"]["spearman"] > 0.5
    assert v["all"]["mae"] < v["all"]["baseline_mae"]


def test_holdout_is_disjoint_and_seeded():
    tr, ho = training.holdout_split(1000, 0.2, seed=4)
    assert len(ho) == 200 and len(tr) == 800 and not set(tr) & set(ho)
    tr2, ho2 = training.holdout_split(1000, 0.2, seed=4)
    np.testing.assert_array_equal(ho, ho2)
    with pytest.raises(training.TrainError, match="holdout"):
        training.holdout_split(1000, 1.5, seed=0)


def test_write_and_reload(mlp_result, tmp_path):
    onnx_path, side = export.write(mlp_result.onnx_model, mlp_result.metadata, tmp_path / "m.onnx")
    assert side == tmp_path / "m.json"
    model = InterferenceModel.load(onnx_path)
    assert model.version == mlp_result.metadata["model_version"]
    assert json.loads(side.read_text()) == json.loads(json.dumps(mlp_result.metadata))
    assert model.metadata["validation"] == json.loads(side.read_text())["validation"]
    X = mlp_result.data.X[mlp_result.holdout_index]
    expected = np.maximum(np.exp(mlp_result.estimator.predict(X)), 1.0)
    np.testing.assert_allclose(model.predict_slowdown(X), expected, rtol=1e-4)


def test_cli_train_writes_model_and_prints_figures(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert cli.main(["train", "--rows", "2000", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Spearman" in printed and "profile latency-critical" in printed and "metrics proc-only" in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rows"] == 2000 and meta["seed"] == 3
    assert InterferenceModel.load(out).version == meta["model_version"]


def test_cli_train_rejects_bad_arguments(tmp_path):
    assert cli.main(["train", "--rows", "10", "--out", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_spearman_matches_definition():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert evaluate.spearman(a, a * 10) == pytest.approx(1.0)
    assert evaluate.spearman(a, -a) == pytest.approx(-1.0)
    # ties get average ranks: ranks of b are [1.5, 1.5, 3, 4, 5]
    b = np.array([1.0, 1.0, 2.0, 3.0, 4.0])
    ra = a - a.mean()
    rb = np.array([1.5, 1.5, 3, 4, 5]) - 3.0
    assert evaluate.spearman(a, b) == pytest.approx((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))
    assert np.isnan(evaluate.spearman(a, np.ones(5)))
