"""Export a fitted regressor to ONNX and write it with its metadata (and a JSON sidecar).

The file contract is documented in ``inference.model``: one float32 input ``features``
``[None, 26]``, one float32 output ``log_slowdown`` ``[None, 1]``, metadata in
``metadata_props``. The sidecar ``<stem>.json`` holds the same metadata, decoded, for
humans and tools that do not want to parse ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from inference.model import INPUT_NAME, JSON_METADATA, OUTPUT_LOG_SLOWDOWN
from wire import schema

#: ONNX opsets: the default opset 17 runs on every ONNX Runtime >= 1.13 (pyproject asks
#: for >= 1.17); onnxmltools' XGBoost converter supports at most 15 (its pipeline's
#: imputer and tree ensemble are ``ai.onnx.ml`` operators).
MLP_OPSET = {"": 17, "ai.onnx.ml": 3}
XGBOOST_OPSET = 15


def mlp_to_onnx(estimator) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, schema.NUM_FEATURES]))],
        final_types=[(OUTPUT_LOG_SLOWDOWN, FloatTensorType([None, 1]))],
        target_opset=MLP_OPSET,
    )


def xgboost_to_onnx(estimator) -> onnx.ModelProto:
    """A scikit-learn pipeline ending in an ``XGBRegressor`` (``scorer.regressors.xgboost_estimator``)."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
    from xgboost import XGBRegressor

    # skl2onnx's documented way to convert a pipeline that holds an XGBoost model.
    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
    )
    model = convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, schema.NUM_FEATURES]))],
        target_opset={"": XGBOOST_OPSET, "ai.onnx.ml": MLP_OPSET["ai.onnx.ml"]},
    )
    rename_output(model, OUTPUT_LOG_SLOWDOWN)
    return model


def rename_output(model: onnx.ModelProto, name: str) -> None:
    """Rename the graph's single output (converters call it e.g. ``variable``)."""
    old = model.graph.output[0].name
    if old == name:
        return
    for node in model.graph.node:
        for i, out in enumerate(node.output):
            if out == old:
                node.output[i] = name
        for i, inp in enumerate(node.input):
            if inp == old:
                node.input[i] = name
    model.graph.output[0].name = name


def set_metadata(model: onnx.ModelProto, metadata: dict) -> None:
    """Replace metadata_props with ``metadata``; JSON_METADATA keys are JSON-encoded."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        text = json.dumps(value, sort_keys=True) if key in JSON_METADATA else str(value)
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text


def sidecar_path(onnx_path: Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def write(model: onnx.ModelProto, metadata: dict, path: Path) -> tuple[Path, Path]:
    """Write ``path`` (.onnx with metadata_props) and its sidecar JSON; return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.producer_name = "kubeattention"
    model.doc_string = (
        "KubeAttention interference model: predicts log tail-latency slowdown of a pod "
        "on a node from 15 node metrics + 11 pod features (wire/schema.py)"
    )
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    side = sidecar_path(path)
    side.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path, side
