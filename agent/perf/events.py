"""The hardware events the agent counts, named as perf(1) names them."""

from __future__ import annotations

CACHE_MISSES = "cache-misses"
CACHE_REFERENCES = "cache-references"
INSTRUCTIONS = "instructions"
CYCLES = "cycles"
#: The events, in group order (the first one leads the group), named as perf(1) names them.
EVENTS: tuple[str, ...] = (CYCLES, INSTRUCTIONS, CACHE_REFERENCES, CACHE_MISSES)
