"""Calibration rows as model input: ``load(path) -> CalibrationSet``.

* **Node side**: each row's measured metric values and mask go through
  ``schema.normalise_matrix`` exactly as at inference (missing -> ``schema.MISSING``).
* **Pod side**: a calibration victim is a plain process with the default CFS weight
  (nice 0 = ``cpu.shares`` 1024, what a 1-core request gets) and no limits, so its pod
  context is :data:`VICTIM_POD` with the row's profile: Burstable, 1 core, 1 GiB,
  priority 0.
* **Run slowdown**: ``p99 / p99_alone`` where ``p99_alone`` is the *median* of the
  victim's alone runs (all of them: several per repetition; robust to one noisy alone
  run; each row's own ``slowdown_p99`` uses only its latest alone run and is kept for
  reference).
* **Label** (``label=``):

  - ``"config-median"`` (default, :data:`DEFAULT_LABEL`): the median run slowdown of the
    row's (antagonist configuration, victim profile) over the repetitions — the best
    estimate of the slowdown *beside this neighbour* that the measurements allow, since one
    5-s run's p99 of a sub-millisecond operation depends on where the scheduler happened to
    place the victim and the antagonist (repetitions of one configuration differ by several
    × for some victims; ``scorer/data/README.md`` gives the test-retest figures). Alone rows
    get 1.0 (the median of all alone runs over itself). Every row keeps its own node-state
    vector, so repetitions are still separate training and evaluation rows.
  - ``"run"``: each row's own run slowdown.

  Either way the model is fitted on ``log(max(label, 1))``: a ratio below 1 is run-to-run
  noise (or a VM's idle vCPUs waking slower than busy ones) and counts as 1.0 ("as if alone").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from inference.scoring import TYPICAL_POD
from scorer import dataset
from scorer.calibration.rows import CalibrationError, load_rows, rows_path, usable
from wire import schema
from wire.schema import Profile, QoS

#: The committed recording (``scorer/data/calibration``), the default of every command that reads one.
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "calibration"
ALONE = "none"
LABELS = ("config-median", "run")
DEFAULT_LABEL = "config-median"
#: How a calibration victim is described to the model: inference.scoring's typical pod (1 core, 1 GiB, Burstable).
VICTIM_POD = TYPICAL_POD


@dataclass(frozen=True)
class CalibrationSet:
    X: np.ndarray
    """(n, 26) float32 model input."""
    y: np.ndarray
    """(n,) float64 log slowdown (>= 0) against the median alone p99."""
    slowdown: np.ndarray
    """(n,) the label: measured p99 slowdown against the median alone p99 (may be < 1), per ``label``."""
    run_slowdown: np.ndarray
    """(n,) each row's own run's p99 slowdown against the median alone p99 (may be < 1)."""
    profile: np.ndarray
    qos: np.ndarray
    values: np.ndarray
    """(n, 15) raw metric values, NaN where missing."""
    mask: np.ndarray
    config: np.ndarray
    """(n,) antagonist configuration names (the held-out grouping)."""
    kind: np.ndarray
    rep: np.ndarray
    intensity: dict[str, np.ndarray]
    """Latent intensity per antagonist kind (scorer.contention.ANTAGONISTS), each (n,)."""
    samples_cpu_std: np.ndarray
    """(n,) std of cpu_utilization over the state vectors (for load-variation baselines; NaN if missing)."""
    data_hash: str
    path: str = ""
    label: str = DEFAULT_LABEL

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def groups(self) -> np.ndarray:
        """Hold-out groups: the antagonist configuration; the alone state by repetition.

        Held-out evaluation holds out whole groups. Every antagonist configuration (all its
        repetitions and victims) is one group, so a prediction is always for a neighbour the
        model never saw. The alone state (no neighbour) is split by repetition instead: a
        quiet node is something every model has seen, but each held-out quiet row is a
        different measurement from the quiet rows trained on.
        """
        return np.array([f"{ALONE}#r{r}" if c == ALONE else c for c, r in zip(self.config, self.rep)])

    @property
    def kind_groups(self) -> np.ndarray:
        """Coarser hold-out groups: the antagonist *kind* (all intensities of ``cpu``, of ``io``, ...);
        the alone state by repetition as in :attr:`groups`. Holding these out asks for a
        prediction beside a kind of neighbour the model never saw at any intensity."""
        return np.array([f"{ALONE}#r{r}" if c == ALONE else k for c, k, r in zip(self.config, self.kind, self.rep)])

    def subset(self, index: np.ndarray) -> CalibrationSet:
        idx = np.asarray(index)
        return replace(
            self,
            X=self.X[idx],
            y=self.y[idx],
            slowdown=self.slowdown[idx],
            run_slowdown=self.run_slowdown[idx],
            profile=self.profile[idx],
            qos=self.qos[idx],
            values=self.values[idx],
            mask=self.mask[idx],
            config=self.config[idx],
            kind=self.kind[idx],
            rep=self.rep[idx],
            intensity={k: v[idx] for k, v in self.intensity.items()},
            samples_cpu_std=self.samples_cpu_std[idx],
            data_hash=dataset.data_hash(self.X[idx], self.y[idx]),
        )


def from_rows(rows: list[dict], where: str = "calibration rows", label: str = DEFAULT_LABEL) -> CalibrationSet:
    if label not in LABELS:
        raise CalibrationError(f"label: {label!r} is not one of {', '.join(LABELS)}")
    rows = usable(rows)
    if not rows:
        raise CalibrationError(f"{where}: no measured rows (status ok with a slowdown)")
    alone: dict[str, list[float]] = {}
    for r in rows:
        if r["config"] == ALONE:
            alone.setdefault(r["profile"], []).append(r["victim"]["p99_ms"])
    ref = {p: float(np.median(v)) for p, v in alone.items()}
    rows = [r for r in rows if r["profile"] in ref]
    if not rows:
        raise CalibrationError(f"{where}: no alone ('none') runs to compute slowdowns against")
    n = len(rows)
    values = np.array([[np.nan if v is None else float(v) for v in r["values"]] for r in rows])
    mask = np.array([[bool(m) for m in r["mask"]] for r in rows])
    values = np.where(mask, values, np.nan)
    profile = np.array([int(Profile.parse(r["profile"])) for r in rows])
    pods = {p: schema.pod_features(replace(VICTIM_POD, profile=p)) for p in Profile}
    X = np.concatenate(
        [schema.normalise_matrix(np.nan_to_num(values), mask), np.stack([pods[Profile(p)] for p in profile])], axis=1
    ).astype(np.float32)
    run_slowdown = np.array([r["victim"]["p99_ms"] / ref[r["profile"]] for r in rows])
    if label == "run":
        slowdown = run_slowdown
    else:
        cells: dict[tuple[str, str], list[float]] = {}
        for r, sd in zip(rows, run_slowdown):
            cells.setdefault((r["config"], r["profile"]), []).append(float(sd))
        slowdown = np.array(
            [1.0 if r["config"] == ALONE else float(np.median(cells[(r["config"], r["profile"])])) for r in rows]
        )
    y = np.log(np.maximum(slowdown, 1.0))
    kinds = ("cpu", "cache", "membw", "io", "fork")
    intensity = {k: np.array([float(r["antagonist"]["intensity"].get(k, 0.0)) for r in rows]) for k in kinds}
    cpu_std = []
    for r in rows:
        s = [v[0] for v in r.get("samples") or [] if v[0] is not None]
        cpu_std.append(float(np.std(s)) if len(s) >= 2 else math.nan)
    return CalibrationSet(
        X=X,
        y=y,
        slowdown=slowdown,
        run_slowdown=run_slowdown,
        profile=profile,
        qos=np.full(n, int(QoS.BURSTABLE)),
        values=values,
        mask=mask,
        config=np.array([r["config"] for r in rows]),
        kind=np.array([r["antagonist"]["kind"] for r in rows]),
        rep=np.array([int(r["rep"]) for r in rows]),
        intensity=intensity,
        samples_cpu_std=np.array(cpu_std),
        data_hash=dataset.data_hash(X, y),
        path=where,
        label=label,
    )


def load(path: str | Path, label: str = DEFAULT_LABEL, repeats: int | None = None) -> CalibrationSet:
    """Calibration rows from a ``calibration.jsonl`` (or a directory holding one); ``repeats``:
    only the first N repetitions (alone runs and labels computed from those alone)."""
    path = rows_path(path)
    if not path.exists():
        raise CalibrationError(f"--data: {path} does not exist (record one with `kubeattention calibrate --out DIR`)")
    rows = load_rows(path)
    if repeats is not None:
        if repeats < 1:
            raise CalibrationError(f"--repeats: must be >= 1, got {repeats}")
        rows = [r for r in rows if int(r["rep"]) <= repeats]
    if not rows:
        raise CalibrationError(
            f"--data: {path} holds no calibration rows"
            + (f" in its first {repeats} repetitions" if repeats is not None else "")
        )
    return from_rows(rows, str(path), label)
