"""Antagonists: named ``stress-ng`` configurations and the node state each one stands for.

Each configuration records its exact stress-ng arguments and its *latent intensities* in
the units of the contention model (``scorer.contention.Latent``: 0 = absent, 1 = saturating
the resource on this node), so calibration rows can be fitted with the same pressure
function the synthetic generator uses. The mapping, per stress-ng worker on a node of
``cores`` CPUs:

* every busy worker is CPU demand: ``cpu += load / cores`` (``--cpu-load`` percent, else 1;
  ``--hdd`` workers mostly wait for the disk: 0.2 each);
* ``--cache N``: ``cache = N / cores`` (each worker thrashes the caches of the core it runs on);
* ``--stream N``: ``membw = N / cores`` (one streaming core saturates roughly its share of the
  memory bandwidth on this machine);
* ``--hdd N``: ``io = N / 2`` (two writers saturate this VM's virtio disk; 4 is over-saturated);
* ``--fork N``: ``fork = N / cores``.

These are the experimenter's statement of *what was run*, not measurements: the metric
vector is what the agent measured, and the slowdown is what the victim measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

STRESS_NG = "stress-ng"
#: Extra seconds stress-ng's own --timeout is given past the planned end, as a backstop.
TIMEOUT_MARGIN_S = 30
#: STREAM arrays: stress-ng sizes them from the L3 it detects (480 MiB on this VM); pin it.
STREAM_L3 = "16M"
HDD_BYTES = "256M"


@dataclass(frozen=True)
class Antagonist:
    name: str
    kind: str
    workers: dict[str, int] = field(default_factory=dict)
    """stress-ng stressor -> worker count, e.g. {"cpu": 2}."""
    cpu_load: int = 100
    """--cpu-load percent for cpu workers."""

    def args(self, temp_dir: Path) -> list[str]:
        out: list[str] = []
        for stressor, n in self.workers.items():
            out += [f"--{stressor}", str(n)]
            if stressor == "cpu" and self.cpu_load != 100:
                out += ["--cpu-load", str(self.cpu_load)]
            if stressor == "stream":
                out += ["--stream-l3-size", STREAM_L3]
            if stressor == "hdd":
                out += ["--hdd-bytes", HDD_BYTES]
        if "hdd" in self.workers:
            out += ["--temp-path", str(temp_dir)]
        return out

    def intensity(self, cores: int) -> dict[str, float]:
        """Latent intensities (scorer.contention.ANTAGONISTS keys) on a node of ``cores`` CPUs."""
        w = self.workers
        cpu = (w.get("cpu", 0) * self.cpu_load / 100.0 + w.get("cache", 0) + w.get("stream", 0)
               + w.get("fork", 0) + 0.2 * w.get("hdd", 0)) / cores
        return {
            "cpu": round(cpu, 4),
            "cache": round(w.get("cache", 0) / cores, 4),
            "membw": round(w.get("stream", 0) / cores, 4),
            "io": round(w.get("hdd", 0) / 2.0, 4),
            "fork": round(w.get("fork", 0) / cores, 4),
        }

    def describe(self, temp_dir: Path | str = "<tmpdir>") -> str:
        return " ".join([STRESS_NG, *self.args(Path(temp_dir))]) if self.workers else "none"


ALONE = Antagonist("none", "none")

#: Every configuration calibration knows, in the order they are run within a repetition.
CONFIGS: tuple[Antagonist, ...] = (
    ALONE,
    Antagonist("cpu-1x30", "cpu", {"cpu": 1}, cpu_load=30),
    Antagonist("cpu-2", "cpu", {"cpu": 2}),
    Antagonist("cpu-4", "cpu", {"cpu": 4}),
    Antagonist("cache-1", "cache", {"cache": 1}),
    Antagonist("cache-2", "cache", {"cache": 2}),
    Antagonist("membw-1", "membw", {"stream": 1}),
    Antagonist("membw-2", "membw", {"stream": 2}),
    Antagonist("io-1", "io", {"hdd": 1}),
    Antagonist("io-2", "io", {"hdd": 2}),
    Antagonist("io-4", "io", {"hdd": 4}),
    Antagonist("fork-1", "fork", {"fork": 1}),
    Antagonist("fork-2", "fork", {"fork": 2}),
    Antagonist("mixed-low", "mixed", {"cpu": 1, "stream": 1, "hdd": 1}, cpu_load=30),
    Antagonist("mixed-high", "mixed", {"cpu": 1, "cache": 1, "hdd": 2, "fork": 1}),
)
BY_NAME = {a.name: a for a in CONFIGS}


class RunningAntagonist:
    """A stress-ng process group, started with a hard --timeout and stopped on exit."""

    def __init__(self, antagonist: Antagonist, temp_dir: Path, max_seconds: float):
        self.antagonist = antagonist
        self.proc: subprocess.Popen | None = None
        if antagonist.workers:
            cmd = [STRESS_NG, *antagonist.args(temp_dir), "--timeout", f"{int(max_seconds + TIMEOUT_MARGIN_S)}s"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)

    def failed(self) -> str | None:
        """stress-ng's complaint if it exited already (a bad option, no space), else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        return f"stress-ng exited with {self.proc.returncode}: {err[-300:] or 'no message'}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> "RunningAntagonist":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
