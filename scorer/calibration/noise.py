"""How noisy a calibration recording is: the table of ``scorer/data/README.md``.

    python -m scorer.calibration.noise [DIR|FILE] [--repeats N]

For each victim profile: the range and spread (coefficient of variation) of its p99 over
the alone runs, and the **test-retest** Spearman of run slowdowns — for every antagonist
configuration, every pair of its repetitions, one run's slowdown against the other's
(slowdowns against the median alone p99, below 1 counted as 1, as in training). Also how
many alone runs passed the quiet check. ``--repeats N`` looks at the first N repetitions
only.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from scorer.calibration.data import ALONE, DEFAULT_DATA
from scorer.calibration.rows import CalibrationError, load_rows, rows_path, usable
from scorer.evaluate import spearman


def summarise(rows: list[dict]) -> dict:
    rows = usable(rows)
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    alone = {p: [r["victim"]["p99_ms"] for r in rows if r["config"] == ALONE and r["profile"] == p] for p in profiles}
    out, pooled = {}, ([], [])
    for p in profiles:
        if not alone[p]:
            continue
        ref = float(np.median(alone[p]))
        cells: dict[str, dict[int, float]] = {}
        for r in rows:
            if r["profile"] == p and r["config"] != ALONE:
                cells.setdefault(r["config"], {})[int(r["rep"])] = max(r["victim"]["p99_ms"] / ref, 1.0)
        a, b = [], []
        for reps in cells.values():
            for x, y in itertools.combinations(sorted(reps), 2):
                a.append(reps[x])
                b.append(reps[y])
        pooled[0].extend(a)
        pooled[1].extend(b)
        v = np.array(alone[p])
        out[p] = {
            "alone_runs": len(v),
            "alone_p99_min_ms": float(v.min()),
            "alone_p99_max_ms": float(v.max()),
            "alone_cv": float(v.std() / v.mean()),
            "pairs": len(a),
            "retest_spearman": spearman(np.array(a), np.array(b)) if len(a) >= 2 else float("nan"),
        }
    quiet = [
        bool(r["antagonist"].get("quiet_before"))
        for r in rows
        if r["config"] == ALONE and profiles and r["profile"] == profiles[0]
    ]
    return {
        "profiles": out,
        "pairs": len(pooled[0]),
        "retest_spearman": spearman(np.array(pooled[0]), np.array(pooled[1])) if len(pooled[0]) >= 2 else float("nan"),
        "quiet_before": sum(quiet),
        "alone_checks": len(quiet),
    }


def render(s: dict) -> str:
    lines = [
        "| victim | alone p99 (ms) | spread (CV) | test-retest Spearman | alone runs | pairs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p, f in s["profiles"].items():
        lines.append(
            f"| {p} | {f['alone_p99_min_ms']:.3f} – {f['alone_p99_max_ms']:.3f} | {100 * f['alone_cv']:.0f} % | "
            f"{f['retest_spearman']:.2f} | {f['alone_runs']} | {f['pairs']} |"
        )
    lines.append(f"| all rows | | | {s['retest_spearman']:.3f} | | {s['pairs']} |")
    lines.append(f"\nquiet check passed before {s['quiet_before']} of {s['alone_checks']} alone runs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorer.calibration.noise", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR|FILE",
        help="calibration.jsonl or its directory (default: the committed recording)",
    )
    parser.add_argument("--repeats", type=int, default=None, metavar="N", help="the first N repetitions only")
    args = parser.parse_args(argv)
    path = rows_path(args.data)
    try:
        if not path.exists():
            raise CalibrationError(f"{path} does not exist")
        if args.repeats is not None and args.repeats < 1:
            raise CalibrationError(f"--repeats: must be >= 1, got {args.repeats}")
        rows = [r for r in load_rows(path) if args.repeats is None or int(r["rep"]) <= args.repeats]
        if not rows:
            raise CalibrationError(f"{path}: no calibration rows")
    except CalibrationError as err:
        print(f"scorer.calibration.noise: {err}", file=sys.stderr)
        return 2
    print(render(summarise(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
