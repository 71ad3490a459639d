"""Reading an API object's JSON dict (the API's own camelCase shape, as kube-apiserver returns
it and kube-scheduler sends it to an extender): its metadata, spec and status.

Absent, null or empty parts read as empty; a part of the wrong type raises ValueError naming
the field, because a pod body from a scheduler is JSON of any shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime


def mapping(value, field: str) -> Mapping:
    """``value`` as an object; absent/null/empty -> {}. Raises ValueError naming the field otherwise."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected an object, got {type(value).__name__}")
    return value


def sequence(value, field: str) -> list:
    if not value:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: expected a list, got {type(value).__name__}")
    return value


def meta(obj: Mapping) -> Mapping:
    return mapping(obj.get("metadata"), "metadata")


def spec(obj: Mapping) -> Mapping:
    return mapping(obj.get("spec"), "spec")


def status(obj: Mapping) -> Mapping:
    return mapping(obj.get("status"), "status")


def parse_time(text: str | None) -> float | None:
    """RFC 3339 time as the API writes it ("2026-11-29T10:00:00Z") -> Unix seconds; None if absent/bad."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
