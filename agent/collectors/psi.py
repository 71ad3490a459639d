"""Pressure stall information: the share of the last 10 s some task waited on a resource.

``/proc/pressure/{cpu,memory,io}`` line ``some avg10=P`` gives P percent; the metric is
P / 100. No delta is needed, so PSI is available from the first reading.
"""

from __future__ import annotations

import errno
from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Measurement, Reading, clamp_ratio, describe_os_error, read_text

#: PSI resource file -> schema metric.
RESOURCES = {"cpu": "cpu_psi_some", "memory": "memory_psi_some", "io": "io_psi_some"}

NO_PSI = (
    "{path} does not exist: this kernel has no pressure stall information "
    "(build with CONFIG_PSI=y; if CONFIG_PSI_DEFAULT_DISABLED=y, also boot with psi=1)"
)
PSI_DISABLED = "{path} exists but PSI is disabled at boot: add psi=1 to the kernel command line"


def parse_some_avg10(text: str) -> float:
    """The ``some avg10`` percentage; raises ValueError when absent."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "some":
            for field in parts[1:]:
                key, _, value = field.partition("=")
                if key == "avg10":
                    return float(value)
    raise ValueError("no 'some avg10=' field")


class PsiCollector:
    name = "psi"
    metrics = tuple(RESOURCES.values())

    def __init__(self, proc_root: str | Path = "/proc", clock: Clock = SYSTEM_CLOCK):
        self.dir = Path(proc_root) / "pressure"
        self.clock = clock

    def read(self) -> Reading:
        now = self.clock.monotonic()
        return Reading(self.name, now, tuple(self._one(res, metric) for res, metric in RESOURCES.items()))

    def _one(self, resource: str, metric: str) -> Measurement:
        path = self.dir / resource
        try:
            percent = parse_some_avg10(read_text(path))
        except FileNotFoundError:
            return Measurement.missing(metric, NO_PSI.format(path=path))
        except OSError as err:
            if err.errno == errno.EOPNOTSUPP:
                return Measurement.missing(metric, PSI_DISABLED.format(path=path))
            return Measurement.missing(metric, describe_os_error(path, err))
        except ValueError as err:
            return Measurement.missing(metric, f"unexpected format in {path}: {err}")
        return Measurement.measured(metric, clamp_ratio(percent / 100.0))
