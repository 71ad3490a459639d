"""Debugging entries: a collector module's ``python -m`` (readings, or ``--ebpf``: its C source)
and ``--print FILE`` (any bpf/ file as it would be compiled; ``python agent/ebpf/loader.py --print``)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

from agent.ebpf.program import ProgramSpec, render_source


def debug_main(argv: list[str] | None, description: str, spec: ProgramSpec, make_collector, describe) -> int:
    """A collector module's ``python -m`` entry: ``--ebpf`` prints the C source with its cflags
    (bcc tools' hidden flag); otherwise print ``describe(reading)`` every ``--interval``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0, help="readings to print (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    if args.ebpf:
        print(render_source(spec))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    collector = make_collector()
    try:
        n = 0
        while args.count == 0 or n < args.count:
            time.sleep(args.interval)
            print(describe(collector.read()))
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
    return 0


def print_main(argv: Sequence[str] | None = None) -> int:
    """``--print FILE [-DNAME=VALUE ...]``: bpf/FILE with the shared header and cflags."""
    parser = argparse.ArgumentParser(description="Print a bpf/ program as bcc would compile it.")
    parser.add_argument("--print", metavar="FILE", help="print bpf/FILE with the shared header and cflags")
    args, cflags = parser.parse_known_args(argv)
    if args.print:
        print(render_source(args.print, cflags))
        return 0
    parser.print_help()
    return 2
