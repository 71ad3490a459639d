"""``python -m scorer.calibration.noise``: the noise table of scorer/data/README.md, on real rows
(tests/fixtures/calibration-small.jsonl, repetition 1 of the committed recording)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from procs import REPO

from scorer.calibration import noise
from scorer.calibration.rows import load_rows

FIXTURE = Path(__file__).parent / "fixtures" / "calibration-small.jsonl"


def noise_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scorer.calibration.noise", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_one_repetition_has_no_pairs_and_no_made_up_figure():
    s = noise.summarise(load_rows(FIXTURE))
    assert s["pairs"] == 0 and np.isnan(s["retest_spearman"])
    batch = s["profiles"]["batch"]
    alone = [r["victim"]["p99_ms"] for r in load_rows(FIXTURE) if r["config"] == "none" and r["profile"] == "batch"]
    assert batch["alone_runs"] == len(alone) and batch["alone_p99_max_ms"] == max(alone)


def test_pairs_compare_each_configuration_with_its_own_repeat(tmp_path):
    rows = load_rows(FIXTURE)
    second = []
    for r in rows:  # repetition 2: every run beside a neighbour twice as slow, alone runs unchanged
        r = json.loads(json.dumps(r))
        r["rep"], r["key"] = 2, r["key"].replace("r1/", "r2/", 1)
        if r["config"] != "none":
            r["victim"]["p99_ms"] *= 2
        second.append(r)
    s = noise.summarise(rows + second)
    cells = {(r["config"], r["profile"]) for r in rows if r["config"] != "none"}
    assert s["pairs"] == len(cells)
    assert s["retest_spearman"] > 0.9  # the repeat is a monotone copy (clamping at 1 adds ties)
    path = tmp_path / "calibration.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + second))
    out = noise_command(str(tmp_path), "--repeats", "1")
    assert out.returncode == 0 and "| all rows | | | nan | | 0 |" in out.stdout, out.stderr
    bad = noise_command(str(tmp_path), "--repeats", "0")
    assert bad.returncode == 2 and "--repeats: must be >= 1, got 0" in bad.stderr
