"""Test doubles. Live here, never in shipped packages.

``FormulaModel`` stands in for the ONNX model in *unit* tests of the aggregator's plumbing
(statuses, budget, fallback), where what matters is that a model is called, not what it
learned. Integration tests use the real packaged ONNX model through ONNX Runtime.

``RecordedPodResolver`` names pods from a recorded kubelet ``/pods`` response (no kubelet
runs here), where the agent asks the kubelet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from agent.pods.resolver import PodInfo, PodListError, pods_from_podlist


class FormulaModel:
    """slowdown = 1 + 3 * normalised cpu_psi_some (missing counts as 0.5)."""

    version = "formula-test"

    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None):
        self.delay_s, self.fail, self.calls = delay_s, fail, 0

    def predict_slowdown(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.delay_s:
            time.sleep(self.delay_s)
        psi = np.where(x[:, 2] < 0, 0.5, x[:, 2])
        return 1.0 + 3.0 * psi.astype(np.float64)


class ManualClock:
    def __init__(self, now_ms: int = 1_700_000_000_000):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


class FakeClock:
    """The agent's Clock protocol on a hand-moved time: monotonic seconds ``t``, and a wall
    clock ``wall0_ms`` + t in ms."""

    def __init__(self, t: float, wall0_ms: int = 0):
        self.t = t
        self.wall0_ms = wall0_ms

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return self.wall0_ms + int(self.t * 1000)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class RecordedPodResolver:
    """The agent's PodResolver over a fixed PodList (a recorded kubelet ``/pods``, or a test's)."""

    def __init__(self, pods: Mapping[str, PodInfo]):
        self.pods = dict(pods)

    @classmethod
    def from_file(cls, path: str | Path) -> RecordedPodResolver:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise PodListError(f"{path}: not JSON: {err}") from err
        return cls(pods_from_podlist(data))

    def resolve(self, uid: str) -> PodInfo | None:
        return self.pods.get(uid.lower())
