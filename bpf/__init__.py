"""The agent's eBPF C programs, shipped as package data (``*.bpf.c`` and the shared ``ka_common.h``).

The agent (``agent.ebpf``) finds them with ``importlib.resources``, so a wheel installed
anywhere carries them; bcc compiles them from a real directory, which an unzipped install is.
See ``bpf/README.md`` for what each program measures.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: The header every program includes (``-I`` of the source directory).
COMMON_HEADER = "ka_common.h"


def source_dir() -> Path:
    """The directory that holds the C sources of this installed package."""
    return Path(str(files(__name__)))


def program_names() -> list[str]:
    """The programs shipped here, by file name (``runqlat.bpf.c``, ...)."""
    return sorted(p.name for p in source_dir().glob("*.bpf.c"))
