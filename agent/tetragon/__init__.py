"""Tetragon as the first-choice source of metric 14, process_churn_per_s (exec + exit events/s).

Data flows one way: a source (the JSON export file, :mod:`.file_source`, or the gRPC
API, :mod:`.grpc_source`) turns Tetragon's events into small records (:mod:`.events`,
:mod:`.parse`) and counts them per interval (:mod:`.tally`); the collector
(:mod:`.collector`) turns one interval's counts into the node's rate and the per-pod
rates; :class:`.fallback.PreferTetragon` stands in for the /proc/stat collector and uses
its fork rate whenever Tetragon cannot give a value it stands by.

Wiring: the agent builds ``tetragon_collector(export_file, grpc_address, clock)`` (None when
Tetragon is not configured) and ``default_collectors`` puts ``with_tetragon(procstat,
tetragon)`` where the /proc/stat collector was. agent.collectors must import this package
inside the function, not at its top: this package imports agent.collectors.base.

``api_pb2`` is generated from proto/tetragon/api.proto, a vendored subset of Tetragon's API.
"""

from __future__ import annotations

from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.collectors.base import Collector
from agent.tetragon.collector import ChurnReading, PodChurn, TetragonChurnCollector
from agent.tetragon.events import EventKind, PodRef, ProcessEvent, RateLimited
from agent.tetragon.fallback import PreferTetragon
from agent.tetragon.file_source import DEFAULT_EXPORT_FILE, ExportFileSource
from agent.tetragon.grpc_source import DEFAULT_GRPC_ADDRESS, GrpcEventSource, grpc_address_problem

__all__ = [
    "ChurnReading",
    "DEFAULT_EXPORT_FILE",
    "DEFAULT_GRPC_ADDRESS",
    "EventKind",
    "ExportFileSource",
    "GrpcEventSource",
    "PodChurn",
    "PodRef",
    "PreferTetragon",
    "ProcessEvent",
    "RateLimited",
    "TetragonChurnCollector",
    "tetragon_collector",
    "tetragon_problems",
    "with_tetragon",
]


def tetragon_problems(export_file: str | Path | None, grpc_address: str | None) -> list[str]:
    """Configuration errors of the two Tetragon flags (for the agent's one-place validation)."""
    problems = []
    if export_file is not None and grpc_address is not None:
        problems.append("--tetragon-export and --tetragon-grpc: choose one Tetragon source, not both")
    if export_file is not None and not Path(export_file).is_absolute():
        problems.append(f"--tetragon-export: must be an absolute path, got {str(export_file)!r}")
    if grpc_address is not None and (problem := grpc_address_problem(grpc_address)) is not None:
        problems.append(f"--tetragon-grpc: {problem}")
    return problems


def tetragon_collector(
    export_file: str | Path | None = None, grpc_address: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> TetragonChurnCollector | None:
    """The churn collector for the configured source, or None when Tetragon is not configured.

    A gRPC source starts its stream thread here; a missing file or dead socket is not an
    error (the source reports itself not live and keeps trying). ``close()`` stops it.
    """
    if problems := tetragon_problems(export_file, grpc_address):
        raise ValueError("; ".join(problems))
    if export_file is not None:
        return TetragonChurnCollector(ExportFileSource(export_file, clock=clock), clock)
    if grpc_address is not None:
        return TetragonChurnCollector(GrpcEventSource(grpc_address, clock=clock).start(), clock)
    return None


def with_tetragon(procstat: Collector, tetragon: TetragonChurnCollector | None) -> Collector:
    """``procstat`` itself when Tetragon is not configured, else both with Tetragon preferred for churn."""
    return procstat if tetragon is None else PreferTetragon(tetragon, procstat)
