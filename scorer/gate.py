"""``kubeattention promote``: a model becomes the default only when the held-out evaluation says it earned it.

    kubeattention promote CANDIDATE.onnx --report scorer/data/evaluation/report.json \
        [--data scorer/data/calibration] [--to inference/models/default.onnx]

The gate reads the evaluation of ``kubeattention evaluate --seeds`` (``report.json``) and
checks, for the candidate's model kind, over the evaluated fold seeds:

1. **regret**: its median mean top-1 regret is below the load-aware CPU baseline's and
   the naive formula's;
2. **SLO**: its median share of SLO-breaking choices is below theirs;
3. **ranking**: its median Spearman is not below theirs;
4. **speed**: the candidate file predicts 1 000 candidate nodes in at most
   :data:`MAX_INFERENCE_MS` (median of :data:`SPEED_REPEATS` calls after a warm-up, the
   production session options — ``bench/models.py`` measures the same thing with more care);
5. **invariants**: ``scorer.invariants`` finds no violation on the calibration states;
6. **provenance**: the candidate was trained on the evaluated data (same data hash and
   label), so the figures are about this recipe on this data.

All passed: the candidate is copied to ``--to`` with the gate's figures in its metadata
(``gate``) and its JSON sidecar, and the command prints them. Any failed: nothing is
written, the figures are printed with what failed, exit status 1. Bad input: exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from inference.model import DEFAULT_MODEL_PATH, InterferenceModel, ModelError
from scorer import export, invariants, placement
from scorer.calibration.data import DEFAULT_DATA
from scorer.calibration.data import load as load_calibration
from scorer.calibration.rows import CalibrationError
from scorer.evaluation_report import fmt, model_name

#: The default must score 1 000 candidate nodes within this (issue 14).
MAX_INFERENCE_MS = 0.5
SPEED_NODES = 1000
SPEED_REPEATS = 300
BASELINES = (placement.TRIMARAN, placement.NAIVE)
EXIT_PASSED, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2


class GateError(Exception):
    """The report or the candidate cannot be judged; the message says why."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "candidate", type=Path, metavar="CANDIDATE", help="ONNX model from `kubeattention train --data`"
    )
    parser.add_argument(
        "--report",
        type=Path,
        required=True,
        metavar="FILE",
        help="report.json of `kubeattention evaluate --seeds ...` on the same data",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help="calibration rows for the invariants (default: the committed scorer/data/calibration)",
    )
    parser.add_argument(
        "--max-inference-ms",
        type=float,
        default=MAX_INFERENCE_MS,
        metavar="MS",
        help=f"speed check: 1 000 nodes in at most this (default: {MAX_INFERENCE_MS}, issue 14's target)",
    )
    parser.add_argument(
        "--to",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        metavar="FILE",
        help="where the promoted model goes (default: the packaged inference/models/default.onnx)",
    )


def inference_ms(model: InterferenceModel, X: np.ndarray) -> float:
    """Median milliseconds of one prediction of ``X`` (after a warm-up)."""
    for _ in range(20):
        model.predict_slowdown(X)
    times = []
    for _ in range(SPEED_REPEATS):
        t0 = time.perf_counter()
        model.predict_slowdown(X)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def judge(
    candidate: Path, report: dict, cal, max_ms: float = MAX_INFERENCE_MS
) -> tuple[bool, list[tuple[str, bool, str]], dict]:
    """(passed, [(check, ok, figures)], gate metadata). Raises GateError, ModelError."""
    model = InterferenceModel.load(candidate)
    meta = model.metadata
    kind = meta.get("model_kind")
    info = report.get("info", {})
    seeds = info.get("across_seeds")
    if not seeds:
        raise GateError(
            "the report has no figures over fold seeds: run `kubeattention evaluate --seeds 0-4 --report DIR` first"
        )
    name = model_name(kind) if kind else None
    if name not in seeds:
        raise GateError(
            f"the report evaluated {', '.join(k for k in seeds if k.startswith('KubeAttention'))}, "
            f"not the candidate's kind {kind!r}: add it to `evaluate --model`"
        )
    trained_on = meta.get("calibration") or {}
    checks: list[tuple[str, bool, str]] = [
        (
            "trained on the evaluated data",
            trained_on.get("data_hash") == info.get("data_hash") and trained_on.get("label") == info.get("label"),
            f"candidate data {str(trained_on.get('data_hash'))[:12]} label {trained_on.get('label')}, "
            f"evaluation data {str(info.get('data_hash'))[:12]} label {info.get('label')}",
        )
    ]
    m = seeds[name]
    for fig, better, text in (
        ("mean_regret", "lower", "mean top-1 regret"),
        ("slo_breach_share", "lower", "SLO-breaking choices"),
        ("spearman", "not lower", "Spearman"),
    ):
        for b in BASELINES:
            mine, theirs = m[fig]["median"], seeds[b][fig]["median"]
            ok = (mine < theirs) if better == "lower" else (mine >= theirs)
            pct = fig != "spearman"
            checks.append(
                (
                    f"{text} {better} than {b} (median over seeds {info['seeds'][0]}–{info['seeds'][-1]})",
                    bool(ok and math.isfinite(mine)),
                    f"{fmt(mine, pct)} vs {fmt(theirs, pct)}",
                )
            )
    X = np.ascontiguousarray(np.resize(cal.X, (SPEED_NODES, cal.X.shape[1])), dtype=np.float32)
    ms = inference_ms(model, X)
    checks.append((f"{SPEED_NODES} nodes in <= {max_ms:g} ms", ms <= max_ms, f"{ms:.3f} ms (median)"))
    violations = invariants.check(model, cal)
    checks.append(
        (
            "invariants (scorer.invariants)",
            not violations,
            "none violated" if not violations else "; ".join(str(v) for v in violations[:5]),
        )
    )
    passed = all(ok for _, ok, _ in checks)
    gate = {
        "passed": passed,
        "judged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "report_command": info.get("command"),
        "seeds": info.get("seeds"),
        "checks": [{"check": c, "ok": ok, "figures": f} for c, ok, f in checks],
        "held_out": {name: {fig: m[fig]["median"] for fig in ("spearman", "mean_regret", "slo_breach_share")}},
        "baselines": {b: {fig: seeds[b][fig]["median"] for fig in ("spearman", "mean_regret")} for b in BASELINES},
        "inference_ms_1000_nodes": round(ms, 4),
    }
    return passed, checks, gate


def promote(candidate: Path, to: Path, gate: dict) -> Path:
    """Write ``candidate`` to ``to`` with ``gate`` in its metadata and sidecar; the written path."""
    sidecar = export.sidecar_path(candidate)
    # The sidecar keeps every entry's JSON type; without one, the metadata as the aggregator decodes it.
    full = json.loads(sidecar.read_text()) if sidecar.exists() else dict(InterferenceModel.load(candidate).metadata)
    full["gate"] = gate
    onnx_path, _ = export.write(onnx.load(str(candidate)), full, to)
    return onnx_path


def run(args: argparse.Namespace) -> int:
    try:
        try:
            report = json.loads(args.report.read_text())
        except OSError as err:
            raise GateError(f"--report {args.report}: {err.strerror or err}") from None
        except json.JSONDecodeError as err:
            raise GateError(f"--report {args.report}: not JSON ({err.msg})") from None
        cal = load_calibration(args.data, (report.get("info") or {}).get("label", "config-median"))
        if not (math.isfinite(args.max_inference_ms) and args.max_inference_ms > 0):
            raise GateError(f"--max-inference-ms: must be > 0, got {args.max_inference_ms}")
        passed, checks, gate = judge(args.candidate, report, cal, args.max_inference_ms)
    except (GateError, ModelError, CalibrationError) as err:
        print(f"kubeattention promote: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for check, ok, figures in checks:
        print(f"{'pass' if ok else 'FAIL'}  {check}: {figures}")
    if not passed:
        print(
            f"kubeattention promote: {args.candidate} does not pass the gate; {args.to} is unchanged",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    written = promote(args.candidate, args.to, gate)
    print(f"promoted {args.candidate} to {written} (gate figures in its metadata under 'gate')")
    return EXIT_PASSED
