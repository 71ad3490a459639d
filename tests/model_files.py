"""ONNX model files for the model-serving tests: real ONNX graphs, built here, run by ONNX Runtime.

* :func:`linear_model` — a one-layer graph honouring the model file contract
  (``inference.model``): log slowdown = features · w + b. Valid by default; its arguments break
  one thing at a time (input width, metadata, NaN weights).
* :func:`default_with` — the shipped model with some metadata replaced (e.g. a schema version
  this code does not speak).
* :func:`trained_model` — a small model from scorer's own training and export code (a few
  thousand rows), for a second *real* model without retraining the shipped one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.model import DEFAULT_MODEL_PATH
from wire import schema


def linear_model(
    version: str, *, width: int = schema.NUM_FEATURES, bias: float = 0.0, weight: float = 0.0, **metadata: str
) -> bytes:
    w = np.full((width, 1), weight, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["wx"]), helper.make_node("Add", ["wx", "b"], ["log_slowdown"])],
        "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("log_slowdown", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([bias], dtype=np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "model_version": version,
        "schema_version": str(schema.SCHEMA_VERSION),
        "feature_names": json.dumps(list(schema.FEATURE_NAMES)),
        "output": "log_slowdown",
        **metadata,
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def default_with(**props: str) -> bytes:
    """The packaged model with some metadata_props replaced or added."""
    m = onnx.load(str(DEFAULT_MODEL_PATH))
    for entry in m.metadata_props:
        if entry.key in props:
            entry.value = props.pop(entry.key)
    for key, value in props.items():
        e = m.metadata_props.add()
        e.key, e.value = key, value
    return m.SerializeToString()


def trained_model(path: Path, seed: int = 7, rows: int = 2000) -> Path:
    """A real MLP from scorer.training + scorer.export on ``rows`` synthetic rows (a few seconds)."""
    from scorer import export, training

    result = training.train(kind="mlp", rows=rows, seed=seed)
    export.write(result.onnx_model, result.metadata, path)
    return path
