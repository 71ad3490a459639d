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
