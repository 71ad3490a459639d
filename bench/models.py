#!/usr/bin/env python3
"""MLP vs XGBoost vs the fast XGBoost: training time, ONNX file size, inference latency — in one run.

Trains both models exactly as ``kubeattention train --data`` does (the committed calibration
rows, widened by synthetic rows from the fitted contention model), exports both to ONNX,
then times ONNX Runtime inference (production session options, ``inference.model``) for 10
and 1 000 candidate nodes from this process, and checks the 1 000-node p50 of each against
the default model's target (:data:`TARGET_MS_1000`, issue 14; ``kubeattention promote``
refuses a default slower than it). Beside each figure stands the original
design's published one (MLP: 0.064 ms mean inference for 10 nodes, 17.3 KB; XGBoost:
0.342 ms, 494 KB), which was measured on other hardware.

    .venv/bin/python bench/models.py [--data scorer/data/calibration] [--iterations 2000] [--json]

Run it under ``flock /tmp/ka-heavy.lock`` on a shared machine: training and timing are CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inference.model import OUTPUT_LOG_SLOWDOWN, InterferenceModel  # noqa: E402
from scorer import export  # noqa: E402
from scorer.calibration.data import DEFAULT_DATA, load  # noqa: E402
from scorer.training import DEFAULT_CALIBRATED_ROWS, fit_calibrated  # noqa: E402
from wire import schema

SIZES = (10, 1000)
#: The original design's published figures: mean inference for 10 nodes (ms), file size (KB).
PUBLISHED = {"mlp": {"mean_ms_10": 0.064, "size_kb": 17.3}, "xgboost": {"mean_ms_10": 0.342, "size_kb": 494.0}}
#: The default model must score 1 000 candidate nodes within this (scorer.gate.MAX_INFERENCE_MS).
TARGET_MS_1000 = 0.5
KINDS = ("mlp", "xgboost", "xgboost-fast")


def time_inference(model: InterferenceModel, X: np.ndarray, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        model.predict_slowdown(X)
    t = np.empty(iterations)
    clock = time.perf_counter
    for i in range(iterations):
        t0 = clock()
        model.predict_slowdown(X)
        t[i] = clock() - t0
    t *= 1000.0
    return {"mean_ms": float(t.mean()), "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="calibration rows (default: the committed set)")
    p.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_CALIBRATED_ROWS,
        help=f"synthetic rows (default {DEFAULT_CALIBRATED_ROWS}, as `train --data`)",
    )
    p.add_argument("--iterations", type=int, default=2000, help="timed inference calls per case (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed calls first (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()

    cal = load(args.data)
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ka-bench-models-") as tmp:
        for kind in KINDS:
            t0 = time.monotonic()
            got = fit_calibrated(kind, cal, args.rows, seed=0)
            total_s = time.monotonic() - t0
            meta = {
                "model_version": f"bench-{kind}",
                "model_kind": kind,
                "schema_version": schema.SCHEMA_VERSION,
                "feature_names": list(schema.FEATURE_NAMES),
                "output": OUTPUT_LOG_SLOWDOWN,
            }
            path, _ = export.write(got.onnx_model, meta, Path(tmp) / f"{kind}.onnx")
            model = InterferenceModel.load(path)
            entry = {
                "train_seconds": round(total_s, 2),
                "fit_seconds": round(got.fit_seconds, 2),
                "size_kb": round(path.stat().st_size / 1000.0, 1),
                "published": PUBLISHED.get(kind),
            }
            for n in SIZES:
                X = cal.X[rng.integers(0, len(cal), n)]
                entry[f"infer_{n}"] = time_inference(model, np.ascontiguousarray(X), args.iterations, args.warmup)
            entry["meets_default_target"] = entry["infer_1000"]["p50_ms"] <= TARGET_MS_1000
            results[kind] = entry
    summary = {
        "bench": "models",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "calibration_rows": len(cal),
        "synthetic_rows": args.rows,
        "iterations": args.iterations,
        "target_ms_1000": TARGET_MS_1000,
        "models": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"models trained on {len(cal)} calibration rows + {args.rows} synthetic rows; "
        f"{args.iterations} timed calls per case; {os.cpu_count()} CPUs ({platform.node()})"
    )
    head = (
        f"{'model':<14}{'train s':>9}{'fit s':>7}{'size KB':>9}{'(orig)':>8}"
        f"{'10: mean':>10}{'p50':>8}{'p99':>8}{'(orig mean)':>12}{'1000: p50':>11}{'p99':>8}"
        f"{'<= ' + format(TARGET_MS_1000, 'g') + ' ms':>10}"
    )
    print(head)
    for kind, e in results.items():
        a, b, pub = e["infer_10"], e["infer_1000"], e["published"] or {}
        orig_kb = f"{pub['size_kb']:.1f}" if pub else "-"
        orig_ms = f"{pub['mean_ms_10']:.3f}" if pub else "-"
        print(
            f"{kind:<14}{e['train_seconds']:>9.1f}{e['fit_seconds']:>7.1f}{e['size_kb']:>9.1f}"
            f"{orig_kb:>8}{a['mean_ms']:>10.3f}{a['p50_ms']:>8.3f}{a['p99_ms']:>8.3f}"
            f"{orig_ms:>12}{b['p50_ms']:>11.3f}{b['p99_ms']:>8.3f}{'yes' if e['meets_default_target'] else 'NO':>10}"
        )
    print(
        "times in ms; (orig) = the original design's published figures, measured on other hardware; "
        f"last column: 1 000-node p50 within the default model's {TARGET_MS_1000:g} ms target"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
