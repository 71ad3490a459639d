"""The calibration row format: reading, repairing and summarising ``calibration.jsonl``.

One JSON object per line, one line per (repetition, antagonist configuration, victim
profile)::

    {"kind": "kubeattention.calibration", "schema_version": 1, "key": "r1/cpu-q50/batch",
     "rep": 1, "config": "cpu-q50",
     "antagonist": {"kind": "cpu", "command": "stress-ng --cpu 2 (cgroup CPU quota 50 % of one core)",
                    "workers": {"cpu": 2}, "cpu_load": 100, "quota_pct": 50,
                    "cgroup_limit": "cpu.cfs_quota_us=50000 cpu.cfs_period_us=100000 cpu.shares=512",
                    "intensity": {"cpu": 0.25, "cache": 0, ...}},
     "profile": "batch", "cores": 2, "hostname": ..., "measured_at": ISO-8601,
     "values": [15 numbers or null], "mask": [15 booleans], "missing_reasons": {...},
     "samples": [[15 numbers or null] per state vector],
     "status": "ok" | "victim-failed" | "antagonist-failed", "error": (when failed),
     "victim": {"ops", "seconds", "mean_ms", "p50_ms", "p99_ms", ["p90_ms", "p999_ms"], "command"},
     "antagonist_throttled_ratio": (share of CFS periods the antagonist was throttled in while
                                    the victim ran; quota configurations only),
     "alone_key", "alone_p50_ms", "alone_p99_ms", "slowdown_p50", "slowdown_p99"}

Alone rows (``config`` "none") also carry ``alone_slot`` (0 = the repetition's first alone
run, keyed ``r1/none/...``; k > 0 keyed ``r1/none.k/...``) and ``antagonist.quiet_before``
(whether the machine passed the quiet check before it; None when not checked).

``values``/``mask`` are the node state the agent measured *before* the victim started
(median of ``samples``; a metric is measured only if every sample measured it).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from wire import schema

log = logging.getLogger(__name__)

ROW_KIND = "kubeattention.calibration"
#: The rows file of a recording directory (``kubeattention calibrate --out DIR``).
ROWS_FILE = "calibration.jsonl"
REQUIRED = ("key", "rep", "config", "antagonist", "profile", "values", "mask", "status")


class CalibrationError(ValueError):
    """Unusable calibration input; the message names the file, line and field."""


def check_row(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise CalibrationError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if row.get("kind") != ROW_KIND:
        raise CalibrationError(f"{where}: kind is {row.get('kind')!r}, not {ROW_KIND!r}")
    if row.get("schema_version") != schema.SCHEMA_VERSION:
        raise CalibrationError(
            f"{where}: schema_version {row.get('schema_version')!r} does not match this "
            f"scorer's metric schema {schema.SCHEMA_VERSION}; re-record with this version"
        )
    for key in REQUIRED:
        if key not in row:
            raise CalibrationError(f"{where}: required field {key!r} is absent")
    if not (
        isinstance(row["values"], list)
        and len(row["values"]) == schema.NUM_METRICS
        and isinstance(row["mask"], list)
        and len(row["mask"]) == schema.NUM_METRICS
    ):
        raise CalibrationError(f"{where}: values and mask must be lists of {schema.NUM_METRICS}")
    for i, (v, ok) in enumerate(zip(row["values"], row["mask"])):
        if ok and not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise CalibrationError(
                f"{where}: values[{i}] ({schema.METRICS[i].name}) is {v!r} but its mask says measured"
            )
    try:
        schema.Profile.parse(row["profile"])
    except ValueError as err:
        raise CalibrationError(f"{where}: {err}") from None
    if row["status"] == "ok":
        sd = row.get("slowdown_p99")
        if sd is not None and not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd > 0):
            raise CalibrationError(f"{where}: slowdown_p99 {sd!r} is not a positive number")
    return row


def rows_path(path: str | Path) -> Path:
    """The rows file: ``path`` itself, or :data:`ROWS_FILE` inside it when it is a recording directory."""
    path = Path(path)
    return path / ROWS_FILE if path.is_dir() else path


def load_rows(path: Path, repair: bool = False) -> list[dict]:
    """Rows of ``path`` (none if it does not exist).

    A last line that is not complete JSON is a half-written row from an interrupted run:
    with ``repair`` it is dropped from the file (and re-measured), else ignored. Any other
    bad line is an error naming the line. Failed rows are returned too (``status`` says so),
    so a resumed run re-measures them; when a key appears twice the last row wins.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows: dict[str, dict] = {}
    keep = len(text)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            if lineno == len(lines):  # no newline after it: the write was cut short
                log.warning(
                    "%s:%d: dropping a half-written last line (%s); it will be re-measured", path, lineno, err.msg
                )
                keep = len(text) - len(line)
                break
            raise CalibrationError(f"{path}:{lineno}: not JSON ({err.msg})") from None
        row = check_row(obj, f"{path}:{lineno}")
        rows[row["key"]] = row
    if repair and keep < len(text):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text[:keep])
        tmp.replace(path)
    return list(rows.values())


def usable(rows: list[dict]) -> list[dict]:
    """Rows with a measured slowdown."""
    return [r for r in rows if r["status"] == "ok" and r.get("slowdown_p99") is not None]


def summarise(rows: list[dict], plan: dict | None = None) -> dict:
    ok = usable(rows)
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ok:
        table[r["config"]][r["profile"]].append(r["slowdown_p99"])
    times = sorted(r["measured_at"] for r in rows if r.get("measured_at"))
    return {
        "rows": len(rows),
        "ok": len(ok),
        "status": dict(Counter(r["status"] for r in rows)),
        "configs": sorted({r["config"] for r in rows}),
        "profiles": sorted({r["profile"] for r in rows}),
        "first_measured_at": times[0] if times else None,
        "last_measured_at": times[-1] if times else None,
        "hostname": sorted({r.get("hostname", "?") for r in rows}),
        "plan": plan or {},
        "median_slowdown_p99": {
            c: {p: float(np.median(v)) for p, v in sorted(ps.items())} for c, ps in sorted(table.items())
        },
        "measured": [schema.METRICS[i].name for i in range(schema.NUM_METRICS) if ok and all(r["mask"][i] for r in ok)],
    }


def write_summary(out: Path, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    profiles = [p.annotation for p in schema.Profile]
    lines = [
        "# Calibration summary",
        "",
        f"{summary['ok']} of {summary['rows']} runs measured ({summary['status']}); "
        f"{summary['first_measured_at']} to {summary['last_measured_at']} on {', '.join(summary['hostname'])}.",
        f"Metrics measured on every row: {', '.join(summary['measured']) or 'none'}.",
        "",
        "Median p99 slowdown (p99 beside the antagonist / p99 alone) per configuration and victim profile:",
        "",
        "| configuration | " + " | ".join(profiles) + " |",
        "|---|" + "---:|" * len(profiles),
    ]
    for config, per in summary["median_slowdown_p99"].items():
        lines.append(f"| {config} | " + " | ".join(f"{per[p]:.2f}" if p in per else "-" for p in profiles) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
