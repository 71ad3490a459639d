"""What a collector asks the loader for: a ``bpf/*.bpf.c`` file, its cflags, tracepoints and maps.

:class:`ProgramSpec` is plain data; :func:`render_source` shows the program as bcc will
compile it (the ``--ebpf`` of bcc's tools). The sources are found with ``bpf.source_dir()``
unless a directory is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bpf
from agent.ebpf.histogram import HIST_SLOTS


@dataclass(frozen=True)
class Attach:
    tracepoint: str
    """``category:event``."""
    function: str
    """The C function (at most 15 characters: the kernel's program name)."""
    fields: tuple[str, ...] = ()
    """Tracepoint fields the function reads; probed before compiling."""
    required: bool = True
    """An optional tracepoint absent from this kernel is skipped (and noted), not fatal."""


@dataclass(frozen=True)
class ProgramSpec:
    source: str
    """File name under bpf/."""
    cflags: Mapping[str, int | str]
    attach: tuple[Attach, ...]
    maps: Mapping[str, tuple[int, int]]
    """Map name -> (key size, value size of one CPU) the Python side decodes."""

    def cflag_list(self, bpf_dir: Path | None = None) -> list[str]:
        return base_cflags(bpf_dir) + [f"-D{k}={v}" for k, v in sorted(self.cflags.items())]


def base_cflags(bpf_dir: Path | None = None) -> list[str]:
    """The cflags of every program: the shared header's directory and the histogram size."""
    return [f"-I{bpf_dir or bpf.source_dir()}", f"-DKA_HIST_SLOTS={HIST_SLOTS}"]


def render_source(spec_or_source: ProgramSpec | str, cflags: Sequence[str] = (), bpf_dir: Path | None = None) -> str:
    """The program as bcc compiles it: cflags, the shared header, then the source."""
    bpf_dir = bpf_dir or bpf.source_dir()
    if isinstance(spec_or_source, ProgramSpec):
        source, flags = spec_or_source.source, [*spec_or_source.cflag_list(bpf_dir), *cflags]
    else:
        source, flags = spec_or_source, [*base_cflags(bpf_dir), *cflags]
    parts = [f"// cflags: {' '.join(flags)}"]
    for name in (bpf.COMMON_HEADER, source):
        parts += [f"// ---- bpf/{name}", (bpf_dir / name).read_text()]
    return "\n".join(parts)
