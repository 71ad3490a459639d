"""/proc/meminfo: memory utilisation = 1 - MemAvailable / MemTotal.

MemAvailable (kernel >= 3.14) is the kernel's own estimate of memory that can be given to
new work without swapping, so page cache does not count as used.
"""

from __future__ import annotations

from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Measurement, Reading, clamp_ratio, describe_os_error, read_text

MEMORY_UTILIZATION = "memory_utilization"


def parse_meminfo(text: str) -> dict[str, int]:
    """Field -> value in kB (or pages/counts for fields without a unit)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and rest.split():
            try:
                out[key.strip()] = int(rest.split()[0])
            except ValueError:
                continue
    return out


class MeminfoCollector:
    name = "meminfo"
    metrics = (MEMORY_UTILIZATION,)

    def __init__(self, proc_root: str | Path = "/proc", clock: Clock = SYSTEM_CLOCK):
        self.path = Path(proc_root) / "meminfo"
        self.clock = clock

    def read(self) -> Reading:
        now = self.clock.monotonic()
        return Reading(self.name, now, (self._measure(),))

    def _measure(self) -> Measurement:
        try:
            fields = parse_meminfo(read_text(self.path))
        except OSError as err:
            return Measurement.missing(MEMORY_UTILIZATION, describe_os_error(self.path, err))
        total, available = fields.get("MemTotal"), fields.get("MemAvailable")
        if not total:
            return Measurement.missing(MEMORY_UTILIZATION, f"no MemTotal in {self.path}")
        if available is None:
            return Measurement.missing(MEMORY_UTILIZATION, f"no MemAvailable in {self.path} (kernel older than 3.14)")
        return Measurement.measured(MEMORY_UTILIZATION, clamp_ratio(1.0 - available / total))
