"""The interference model at inference: an ONNX Runtime session behind a small adapter.

The aggregator calls :meth:`InterferenceModel.predict_slowdown` on its hot path with one
(n, 26) float32 batch per BatchScore request. Everything that can be decided once is
decided in :meth:`InterferenceModel.load`: the metadata is parsed and checked against
``wire.schema``, the input and output names are looked up, and the session is tuned
for small batches. A call is then one input check, one ``session.run`` and one ``exp``.

The model file contract (written by ``scorer.export``):

* input ``features``: float32, shape ``[None, 26]``, ``schema.FEATURE_NAMES`` order,
  built by ``schema.model_input`` (missing metrics are ``schema.MISSING``);
* one float32 output, shape ``[None, 1]``, named after what it holds — metadata
  ``output`` says ``log_slowdown`` (exponentiated here) or ``slowdown``;
* ``metadata_props``: ``model_version``, ``schema_version``, ``feature_names`` (a JSON
  list) and ``output`` are required; training provenance and validation figures ride
  along (see ``scorer.training``).

This module needs only NumPy and ONNX Runtime — no scikit-learn — so the aggregator does
not pay for the training stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wire import schema

INPUT_NAME = "features"
OUTPUT_LOG_SLOWDOWN = "log_slowdown"
OUTPUT_SLOWDOWN = "slowdown"
OUTPUT_KINDS = (OUTPUT_LOG_SLOWDOWN, OUTPUT_SLOWDOWN)
REQUIRED_METADATA = ("model_version", "schema_version", "feature_names", "output")
#: metadata_props values are strings; these keys hold JSON and are decoded on load.
JSON_METADATA = frozenset(
    {
        "schema_version",
        "feature_names",
        "rows",
        "seed",
        "validation",
        "hyperparameters",
        "calibration",
        "contention_fit",
        "validated_on",
        "gate",
    }
)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default.onnx"


def validated_on_text(metadata: dict) -> str:
    """The model's own statement of what it was validated on (``validated_on.text`` in its metadata)."""
    v = metadata.get("validated_on")
    if isinstance(v, dict) and isinstance(v.get("text"), str):
        return v["text"]
    return "not stated: this model file predates the validated_on metadata (retrain it to say)"


class ModelError(Exception):
    """The model file or the input given to it is not usable; the message says why."""


def session_options() -> ort.SessionOptions:
    """Low latency for small batches on a shared control-plane node: one thread, no pools."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


class InterferenceModel:
    """A loaded, validated interference model. Build it with :meth:`load` or :meth:`from_bytes`."""

    def __init__(self, session: ort.InferenceSession, source: str):
        self._session = session
        self._source = source
        self._metadata = validate_session(session, source)
        self._version = self._metadata["model_version"]
        self._log_output = self._metadata["output"] == OUTPUT_LOG_SLOWDOWN
        self._input_name = session.get_inputs()[0].name
        self._output_names = [session.get_outputs()[0].name]

    # ----------------------------------------------------------------- construction

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> InterferenceModel:
        """Load and validate an ONNX model; ``None`` loads the packaged default model."""
        p = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not p.is_file():
            raise ModelError(f"model file {p}: not found (or not a regular file)")
        try:
            session = ort.InferenceSession(str(p), sess_options=session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"model file {p}: ONNX Runtime cannot load it: {exc}") from exc
        return cls(session, str(p))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> InterferenceModel:
        """Load from serialized ONNX bytes (e.g. the active model shared through Redis)."""
        try:
            session = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"model {source}: ONNX Runtime cannot load it: {exc}") from exc
        return cls(session, source)

    # ------------------------------------------------------------------ properties

    @property
    def version(self) -> str:
        return self._version

    @property
    def metadata(self) -> dict:
        """Parsed metadata: JSON-valued entries decoded, the rest as strings. A copy."""
        return dict(self._metadata)

    @property
    def source(self) -> str:
        """Where the model was loaded from (a path, or the name given to from_bytes)."""
        return self._source

    # -------------------------------------------------------------------- hot path

    def predict_slowdown(self, X: np.ndarray) -> np.ndarray:
        """Predicted tail-latency slowdown (>= 1.0) for each row of an (n, 26) float32 batch."""
        if not isinstance(X, np.ndarray) or X.dtype != np.float32:
            raise ModelError(f"features: expected a float32 numpy array, got {getattr(X, 'dtype', type(X).__name__)}")
        if X.ndim != 2 or X.shape[1] != schema.NUM_FEATURES:
            raise ModelError(f"features: expected shape (n, {schema.NUM_FEATURES}), got {X.shape}")
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if not np.isfinite(X).all():
            rows = np.unique(np.nonzero(~np.isfinite(X))[0])
            raise ModelError(
                f"features: NaN or infinite values in row(s) {rows[:10].tolist()}; "
                f"missing metrics must be schema.MISSING ({schema.MISSING})"
            )
        out = self._session.run(self._output_names, {self._input_name: np.ascontiguousarray(X)})[0]
        pred = out.reshape(-1).astype(np.float64)
        if self._log_output:
            np.exp(pred, out=pred)
        return np.maximum(pred, 1.0, out=pred)

    def __repr__(self) -> str:
        return f"InterferenceModel(version={self._version!r}, source={self._source!r})"


def validate_session(session: ort.InferenceSession, source: str) -> dict:
    """Check a session against the schema; return its parsed metadata or raise ModelError."""
    problems = []
    raw = dict(session.get_modelmeta().custom_metadata_map)
    missing = [k for k in REQUIRED_METADATA if k not in raw]
    if missing:
        raise ModelError(
            f"model {source}: metadata lacks {', '.join(missing)}; was it exported by `kubeattention train`?"
        )
    meta = {k: _decode(k, v) for k, v in raw.items()}

    if str(meta["schema_version"]) != str(schema.SCHEMA_VERSION):
        problems.append(f"schema_version is {meta['schema_version']!r}, this code speaks {schema.SCHEMA_VERSION}")
    names = meta["feature_names"]
    if not isinstance(names, list) or tuple(names) != schema.FEATURE_NAMES:
        problems.append(_feature_names_problem(names))
    if meta["output"] not in OUTPUT_KINDS:
        problems.append(f"output is {meta['output']!r}, expected one of {', '.join(OUTPUT_KINDS)}")

    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        problems.append(f"has {len(inputs)} inputs, expected 1 ({INPUT_NAME!r})")
    else:
        inp = inputs[0]
        if inp.type != "tensor(float)":
            problems.append(f"input {inp.name!r} is {inp.type}, expected tensor(float)")
        if len(inp.shape) != 2 or inp.shape[1] != schema.NUM_FEATURES:
            problems.append(f"input {inp.name!r} has shape {inp.shape}, expected [None, {schema.NUM_FEATURES}]")
    if len(outputs) < 1 or outputs[0].type != "tensor(float)":
        problems.append(f"first output must be tensor(float), got {outputs[0].type if outputs else 'no outputs'}")
    if problems:
        raise ModelError(f"model {source}: " + "; ".join(problems))
    return meta


def _decode(key: str, value: str) -> object:
    if key not in JSON_METADATA:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # reported by the checks that need it, naming the key


def _feature_names_problem(names: object) -> str:
    if not isinstance(names, list):
        return f"feature_names is not a JSON list: {names!r}"
    if len(names) != schema.NUM_FEATURES:
        return f"feature_names has {len(names)} names, expected {schema.NUM_FEATURES}"
    i = next(i for i, (a, b) in enumerate(zip(names, schema.FEATURE_NAMES)) if a != b)
    return f"feature_names differ from schema.FEATURE_NAMES at column {i}: {names[i]!r} != {schema.FEATURE_NAMES[i]!r}"
