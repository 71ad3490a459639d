"""The scorer: how the interference model is made and judged, offline.

Synthetic contention (``contention``, ``dataset``), training and ONNX export (``train``,
``export``), the calibration data set (``scorer.calibration``), held-out evaluation
against scheduler baselines (``evaluate``, ``evaluate_cli``, ``placement``). It writes
models into ``inference/models/`` and checks them with ``inference.model``; it imports
``wire`` and ``inference`` only, and the data lives in ``scorer/data/``.
"""
