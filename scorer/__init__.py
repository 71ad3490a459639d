"""The scorer: how the interference model is made and judged, offline.

Synthetic contention (``contention``, ``dataset``); training (``training`` the pipelines,
``regressors`` the MLP and XGBoost models, ``outcome_rows`` observed rows, ``export`` the
ONNX file, ``train`` the command); the calibration data set (``scorer.calibration``);
held-out evaluation against scheduler baselines (``evaluate`` the figures, ``placement``
the baselines and candidate sets, ``held_out`` the predictions, ``evaluation_report`` the
report, ``evaluate_cli`` the command); ``flags`` parses the list flags its commands and
the contention lab's share. It writes models into ``inference/models/`` and checks them
with ``inference.model``; it imports ``wire`` and ``inference`` only, and the data lives in
``scorer/data/``.
"""
