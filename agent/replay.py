"""Replay source: plays a recorded node state instead of measuring this machine.

Each tick returns the next recorded vector (looping at the end), restamped with the
current time and this agent's node name, so a demo can run several "nodes" with the
contention profiles recorded on real machines.
"""

from __future__ import annotations

from pathlib import Path

from agent.clock import SYSTEM_CLOCK, Clock
from agent.recording_file import Recording, read_recording
from agent.vector import NodeVector


class ReplaySource:
    def __init__(self, path: str | Path, node_name: str, clock: Clock = SYSTEM_CLOCK):
        self.path = Path(path)
        self.recording: Recording = read_recording(self.path)
        self.node_name = node_name
        self.clock = clock
        self._next = 0

    @property
    def label(self) -> str:
        return str(self.recording.header.get("label") or self.path.stem)

    def __len__(self) -> int:
        return len(self.recording.vectors)

    def collect(self) -> NodeVector:
        vector = self.recording.vectors[self._next]
        self._next = (self._next + 1) % len(self.recording.vectors)
        return vector.restamped(node_name=self.node_name, collected_at_ms=self.clock.wall_ms())
