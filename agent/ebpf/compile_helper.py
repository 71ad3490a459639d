"""The short-lived compile helper: ``python -I compile_helper.py --serve FD REQUEST``.

agent.ebpf.loader starts this file as a script in its own process, under whichever
interpreter can import bcc (this venv's, or Debian's ``/usr/bin/python3`` with
python3-bpfcc). It compiles one ``bpf/*.bpf.c`` with bcc, attaches its tracepoints, sends
the program, tracepoint-link and map file descriptors back over the Unix socket ``FD``
(SCM_RIGHTS), and exits without detaching. bcc pulls LLVM and clang into the process
that compiles (~60 MB resident just to import, ~120 MB more at compile time); only this
process ever holds them.

**Self-contained on purpose.** ``-I`` (isolated mode) keeps the script's directory, the
user site and ``PYTHON*`` variables off ``sys.path``, and Debian's interpreter has none of
this project installed: this file may import only the standard library and bcc. Nothing
of agent/ or bpf/ can be imported here; all it needs arrives in REQUEST.

REQUEST is JSON: ``{"path": C file, "cflags": [...], "attach": [[tracepoint, function],
...], "maps": [name, ...]}``. The answer is one datagram of JSON, ``{"ok": true, "fds":
["prog:FUNCTION", "link:TRACEPOINT", "map:NAME", ...], "peak_rss_kb": VmHWM}`` with the
descriptors in that order, or ``{"ok": false, "error": "Type: message"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import Sequence


def serve(sock_fd: int, request_json: str) -> None:
    """Compile and attach with bcc, send the fds back, exit without detaching."""
    sock = socket.socket(fileno=sock_fd)
    try:
        request = json.loads(request_json)
        from bcc import BPF  # noqa: PLC0415 (only the helper imports bcc)

        bpf = BPF(src_file=request["path"].encode(), cflags=request["cflags"])
        names, fds = [], []
        for tracepoint, function in request["attach"]:
            bpf.attach_tracepoint(tp=tracepoint.encode(), fn_name=function.encode())
            names += [f"prog:{function}", f"link:{tracepoint}"]
            fds += [bpf.funcs[function.encode()].fd, bpf.tracepoint_fds[tracepoint.encode()]]
        for name in request["maps"]:
            names.append(f"map:{name}")
            fds.append(bpf.get_table(name).map_fd)
        peak = None
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
        socket.send_fds(sock, [json.dumps({"ok": True, "fds": names, "peak_rss_kb": peak}).encode()], fds)
    except BaseException as err:  # noqa: BLE001 - everything goes back to the agent as a reason
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}).encode())
    finally:
        sys.stderr.flush()
        os._exit(0)  # no atexit: bcc's cleanup would disable the tracepoints the agent now holds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The eBPF compile helper; agent.ebpf.loader starts it.")
    parser.add_argument("--serve", nargs=2, metavar=("FD", "REQUEST"), required=True, help="socket fd, JSON request")
    args = parser.parse_args(argv)
    serve(int(args.serve[0]), args.serve[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
