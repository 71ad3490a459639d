"""The ONNX Runtime wrapper and the packaged default model (real ONNX Runtime, no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from model_files import default_with

from inference.model import DEFAULT_MODEL_PATH, InterferenceModel, ModelError
from wire import schema
from wire.schema import Profile, QoS

LC_POD = schema.PodContext(
    cpu_request_cores=1.0, memory_request_bytes=2 * schema.GIB, qos=QoS.BURSTABLE, profile=Profile.LATENCY_CRITICAL
)
ALL = np.ones(schema.NUM_METRICS, dtype=bool)
PROC_ONLY = ALL.copy()
PROC_ONLY[[5, 6, 9, 10, 11, 12, 13]] = False

#            cpu  iow  cpsi mpsi iopsi rq(us) xcg/s thr  mem  llcr mpki cpi  GB/s disk(ms) churn/s
QUIET = [0.10, 0.00, 0.00, 0.00, 0.00, 20.0, 50.0, 0.00, 0.30, 0.10, 0.5, 0.8, 2.0, 0.2, 5.0]
CPU_CONTENDED = [0.99, 0.00, 0.70, 0.00, 0.00, 20_000.0, 20_000.0, 0.30, 0.30, 0.10, 0.5, 0.8, 2.0, 0.2, 200.0]


def features(rows, mask=ALL, pod=LC_POD) -> np.ndarray:
    values = np.array(rows, dtype=np.float64)
    return schema.model_input(values, np.broadcast_to(mask, values.shape), pod)


@pytest.fixture(scope="module")
def model() -> InterferenceModel:
    return InterferenceModel.load()


def modified_copy(tmp_path, **props) -> str:
    """The packaged model with some metadata_props replaced, written to tmp_path."""
    path = tmp_path / "modified.onnx"
    path.write_bytes(default_with(**props))
    return str(path)


# -------------------------------------------------------------------- the packaged model


def test_loads_the_packaged_default(model):
    assert model.source == str(DEFAULT_MODEL_PATH)
    sidecar = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    assert model.version == sidecar["model_version"]
    assert model.version.startswith("mlp-")
    assert model.metadata["feature_names"] == list(schema.FEATURE_NAMES) == sidecar["feature_names"]
    assert model.metadata["schema_version"] == schema.SCHEMA_VERSION
    assert model.metadata["output"] == "log_slowdown"
    assert model.metadata["validation"]["all"]["rows"] > 0


def test_packaged_model_is_small():
    assert DEFAULT_MODEL_PATH.stat().st_size < 1_000_000


def test_quiet_node_beats_a_cpu_contended_one_for_a_latency_critical_pod(model):
    for mask in (ALL, PROC_ONLY):
        quiet, busy = model.predict_slowdown(features([QUIET, CPU_CONTENDED], mask))
        assert 1.0 <= quiet < 1.3
        assert busy > 1.5 * quiet


def test_missing_llc_is_not_scored_as_measured_zero(model):
    zero_llc = list(QUIET)
    zero_llc[9] = zero_llc[10] = 0.0
    no_llc = ALL.copy()
    no_llc[[9, 10]] = False
    measured = model.predict_slowdown(features([zero_llc], ALL))[0]
    missing = model.predict_slowdown(features([zero_llc], no_llc))[0]
    assert measured != missing


def test_predictions_are_slowdowns_and_batch_independent(model):
    X = features([QUIET, CPU_CONTENDED] * 50)
    out = model.predict_slowdown(X)
    assert out.shape == (100,) and out.dtype == np.float64
    assert np.all(out >= 1.0) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:2], model.predict_slowdown(X[:2]), rtol=1e-6)
    assert model.predict_slowdown(np.empty((0, schema.NUM_FEATURES), np.float32)).shape == (0,)


def test_profile_matters(model):
    io_heavy = list(QUIET)
    io_heavy[1], io_heavy[4], io_heavy[13] = 0.3, 0.7, 200.0
    io_pod = schema.PodContext(
        cpu_request_cores=1.0, memory_request_bytes=schema.GIB, qos=QoS.BURSTABLE, profile=Profile.IO_BOUND
    )
    cache_pod = schema.PodContext(
        cpu_request_cores=1.0, memory_request_bytes=schema.GIB, qos=QoS.BURSTABLE, profile=Profile.CACHE_SENSITIVE
    )
    io_s = model.predict_slowdown(features([io_heavy], pod=io_pod))[0]
    cache_s = model.predict_slowdown(features([io_heavy], pod=cache_pod))[0]
    assert io_s > cache_s


def test_from_bytes(model):
    m = InterferenceModel.from_bytes(DEFAULT_MODEL_PATH.read_bytes(), source="redis ka:model:bytes")
    assert m.version == model.version
    X = features([QUIET, CPU_CONTENDED])
    np.testing.assert_array_equal(m.predict_slowdown(X), model.predict_slowdown(X))


def test_inference_does_not_import_the_training_stack():
    code = (
        "import sys; from inference.model import InterferenceModel; InterferenceModel.load(); "
        "bad = [m for m in ('sklearn', 'skl2onnx', 'xgboost', 'onnxmltools') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((3, 25), np.float32), r"shape \(n, 26\)"),
        (np.zeros((26,), np.float32), r"shape \(n, 26\)"),
        (np.zeros((3, 26), np.float64), "float32"),
        ([[0.0] * 26], "float32"),
    ],
)
def test_rejects_wrong_shape_or_dtype(model, X, match):
    with pytest.raises(ModelError, match=match):
        model.predict_slowdown(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_nan_and_inf(model, bad):
    X = features([QUIET, QUIET, QUIET])
    X[1, 9] = bad
    with pytest.raises(ModelError, match=r"NaN or infinite values in row\(s\) \[1\]"):
        model.predict_slowdown(X)


# -------------------------------------------------------------------- bad model files


def test_wrong_schema_version_is_named(tmp_path):
    path = modified_copy(tmp_path, schema_version="99")
    with pytest.raises(ModelError, match="schema_version is 99") as err:
        InterferenceModel.load(path)
    assert path in str(err.value)


def test_wrong_feature_names_are_named(tmp_path):
    names = list(schema.FEATURE_NAMES)
    names[9], names[10] = names[10], names[9]
    path = modified_copy(tmp_path, feature_names=json.dumps(names))
    with pytest.raises(ModelError, match=r"feature_names differ .* column 9: 'llc_mpki' != 'llc_miss_ratio'") as err:
        InterferenceModel.load(path)
    assert path in str(err.value)


def test_wrong_feature_count_is_named(tmp_path):
    path = modified_copy(tmp_path, feature_names=json.dumps(list(schema.FEATURE_NAMES[:-1])))
    with pytest.raises(ModelError, match="feature_names has 25 names, expected 26"):
        InterferenceModel.load(path)


def test_unknown_output_kind_is_named(tmp_path):
    path = modified_copy(tmp_path, output="latency_ms")
    with pytest.raises(ModelError, match="output is 'latency_ms'"):
        InterferenceModel.load(path)


def test_missing_metadata_is_named(tmp_path):
    m = onnx.load(str(DEFAULT_MODEL_PATH))
    keep = [(e.key, e.value) for e in m.metadata_props if e.key != "feature_names"]
    del m.metadata_props[:]
    for k, v in keep:
        e = m.metadata_props.add()
        e.key, e.value = k, v
    path = tmp_path / "nometa.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="metadata lacks feature_names"):
        InterferenceModel.load(path)


def tiny_model(width: int) -> onnx.ModelProto:
    """A valid linear ONNX model over `width` float inputs, with the packaged metadata."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((width, 1), 0.01, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["log_slowdown"])],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("log_slowdown", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for e in onnx.load(str(DEFAULT_MODEL_PATH)).metadata_props:
        m.metadata_props.add().CopyFrom(e)
    return m


def test_wrong_input_width_is_named(tmp_path):
    path = tmp_path / "narrow.onnx"
    onnx.save(tiny_model(25), str(path))
    with pytest.raises(ModelError, match=r"input 'features' has shape \[None, 25\], expected \[None, 26\]"):
        InterferenceModel.load(path)


def test_a_minimal_conforming_model_loads_and_predicts(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(schema.NUM_FEATURES), str(path))
    model = InterferenceModel.load(path)
    X = np.ones((2, schema.NUM_FEATURES), np.float32)
    np.testing.assert_allclose(model.predict_slowdown(X), np.exp(0.26), rtol=1e-6)


def test_corrupt_graph_is_reported(tmp_path):
    m = onnx.load(str(DEFAULT_MODEL_PATH))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 25  # disagrees with the weights
    path = tmp_path / "broken.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="cannot load"):
        InterferenceModel.load(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        InterferenceModel.load(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelError, match="cannot load"):
        InterferenceModel.load(junk)
