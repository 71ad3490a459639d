"""``kubeattention rebalance``'s settings: one frozen object, defaults named once, every
problem reported at once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wire.address import AddressError, parse_dial

DEFAULT_AGGREGATOR = "127.0.0.1:50051"
DEFAULT_GAP = 20.0
DEFAULT_FLOOR = 40.0
DEFAULT_MAX_MOVES = 5
DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RebalanceConfig:
    aggregator: str = DEFAULT_AGGREGATOR
    gap: float = DEFAULT_GAP
    floor: float = DEFAULT_FLOOR
    max_moves: int = DEFAULT_MAX_MOVES
    evict: bool = False
    events: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.gap) and 0 < self.gap <= 100):
            problems.append(f"--gap: must be in (0, 100], got {self.gap}")
        if not (math.isfinite(self.floor) and 0 < self.floor <= 100):
            problems.append(f"--floor: must be in (0, 100], got {self.floor}")
        if self.max_moves < 1:
            problems.append(f"--max-moves: must be >= 1, got {self.max_moves}")
        if not self.timeout_s > 0:
            problems.append(f"--timeout: must be > 0, got {self.timeout_s}")
        try:
            parse_dial(self.aggregator, "--aggregator")
        except AddressError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("invalid rebalance configuration:\n  " + "\n  ".join(problems))
