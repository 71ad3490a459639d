"""The recording format: JSONL, a header object then one ``NodeVector.to_json()`` per line.

Written by ``kubeattention record`` and read by replay agents (``kubeattention agent
--replay FILE``) and calibration. The header says where and how it was recorded.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from agent.vector import NodeVector, VectorError
from wire import __version__
from wire.schema import SCHEMA_VERSION

#: Value of the header's "kind" field; a line with it is the header, not a vector.
HEADER_KIND = "kubeattention.recording"
FORMAT_VERSION = 1


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Recording:
    header: dict[str, Any]
    vectors: tuple[NodeVector, ...]


def make_header(*, label: str, note: str, interval_s: float, started_at_ms: int) -> dict[str, Any]:
    return {
        "kind": HEADER_KIND,
        "format": FORMAT_VERSION,
        "label": label,
        "note": note,
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "interval_s": interval_s,
        "started_at": datetime.fromtimestamp(started_at_ms / 1000, UTC).isoformat(),
        "started_at_ms": started_at_ms,
        "agent_version": __version__,
        "schema_version": SCHEMA_VERSION,
    }


def write_line(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    out.flush()


def read_recording(path: str | Path) -> Recording:
    """Parse a recording; the header line is optional, at least one vector is required."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise RecordingError(f"{path}: cannot read ({err.strerror or err})") from err
    header: dict[str, Any] = {}
    vectors = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordingError(f"{path}:{lineno}: not JSON ({err.msg})") from err
        if isinstance(obj, dict) and obj.get("kind") == HEADER_KIND:
            header = obj
            continue
        try:
            vectors.append(NodeVector.from_json(obj))
        except VectorError as err:
            raise RecordingError(f"{path}:{lineno}: {err}") from err
    if not vectors:
        raise RecordingError(f"{path}: no vectors in the recording")
    return Recording(header, tuple(vectors))
