"""The model at run time: the ONNX Runtime wrapper (``inference.model``), the pure scoring
math (``inference.scoring``: slowdown to score, confidence, human reasons) and the packaged
models (``inference/models/``, written by ``kubeattention train``).

Imports only ``wire``. The aggregator serves with it, the scorer exports and evaluates
with it, the client library uses its neutral fallback score; the agent never loads it.
"""
