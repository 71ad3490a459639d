"""Flag values that the scorer's commands and the contention lab's (which sits above the
scorer) parse alike: a comma-separated list of known names (``--model mlp,xgboost``,
``--victims batch,latency-critical``).
"""

from __future__ import annotations

from collections.abc import Collection


class FlagError(ValueError):
    """A flag value that cannot be used; the message names the flag and the value."""


def parse_names(text: str, known: Collection[str], flag: str) -> list[str]:
    """The names of a comma-separated ``text`` in their order, each once; blanks are ignored.

    Raises :class:`FlagError` naming ``flag`` when a name is not in ``known`` or none is given.
    """
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    expected = f"expected a comma-separated list of {', '.join(known)}"
    unknown = [n for n in names if n not in known]
    if unknown:
        raise FlagError(f"{flag}: unknown {', '.join(map(repr, unknown))}; {expected}")
    if not names:
        raise FlagError(f"{flag}: empty list; {expected}")
    return names


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,3,7`` -> [0, 3, 7]; ranges and lists mix (``0-2,9``).

    Raises :class:`FlagError` naming ``flag`` for anything else, or more than 100 seeds.
    """
    seeds: list[int] = []
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise FlagError(f"{flag}: {part!r} is not a seed or a range like 0-4") from None
        if first < 0 or last < first:
            raise FlagError(f"{flag}: {part!r}: seeds are integers >= 0 and a range goes upwards")
        seeds.extend(range(first, last + 1))
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise FlagError(f"{flag}: no seed given; expected e.g. 0-4 or 0,1,2")
    if len(seeds) > 100:
        raise FlagError(f"{flag}: {len(seeds)} seeds; at most 100")
    return seeds
