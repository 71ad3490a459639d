"""Loading a ``bpf/*.bpf.c`` program: probe, compile and attach in a helper process, check the maps.

:func:`load`:

1. runs the probes (agent.ebpf.probes) and raises the first problem as
   :class:`~agent.ebpf.probes.BpfUnavailable`: privileges, tracefs, every tracepoint and
   the fields the program reads, its sources, bcc, kernel headers;
2. compiles and attaches in a **short-lived helper process** (agent/ebpf/compile_helper.py,
   run as a script) that imports bcc, hands the program, map and tracepoint-link file
   descriptors back over a Unix socket (SCM_RIGHTS) and exits without detaching. The agent
   keeps only the descriptors and reads the maps with the plain bpf(2) syscall
   (agent.ebpf.maps), so its own footprint stays that of a Python process;
3. verifies every map's key and value sizes against what the Python side expects.

``python agent/ebpf/loader.py --print runqlat.bpf.c -DMAX_CGROUPS=64`` prints a program as it
would be compiled (the ``--ebpf`` of bcc's tools; agent.ebpf.debug_cli).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.ebpf import compile_helper
from agent.ebpf.maps import BpfMap
from agent.ebpf.probes import INSTALL_BCC, BpfUnavailable, check_host, check_program, first_problem
from agent.ebpf.prog_stats import ProgStats, prog_stats_of_fd
from agent.ebpf.program import ProgramSpec

#: How long compiling and attaching one program may take before the helper is killed.
DEFAULT_LOAD_TIMEOUT_S = 60.0


@dataclass
class LoadedProgram:
    """A compiled, attached program: its maps, program fds and attachment (link) fds."""

    spec: ProgramSpec
    maps: dict[str, BpfMap]
    progs: dict[str, int]
    links: dict[str, int]
    """Tracepoint -> perf-event fd; closing it detaches."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Optional tracepoints not attached, with why."""
    notes: dict[str, str] = field(default_factory=dict)
    """What the probes found (headers, tracefs, interpreter), for logs and debugging."""
    load_seconds: float = 0.0
    helper_peak_rss_kb: int | None = None
    """VmHWM of the compiling helper process (bcc + LLVM): transient, not the agent's."""

    def prog_stats(self) -> dict[str, ProgStats]:
        return {name: prog_stats_of_fd(fd) for name, fd in self.progs.items()}

    def close(self) -> None:
        for group in (self.links, self.progs):
            for fd in group.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            group.clear()
        for m in self.maps.values():
            with contextlib.suppress(OSError):
                os.close(m.fd)
        self.maps.clear()

    @property
    def closed(self) -> bool:
        return not self.maps

    def __del__(self) -> None:  # an unclosed program must not stay attached for the process's life
        with contextlib.suppress(Exception):
            self.close()


def load(
    spec: ProgramSpec,
    sys_root: str | Path = "/sys",
    bpf_dir: Path | None = None,
    timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
    proc_root: str | Path = "/proc",
) -> LoadedProgram:
    """Probe, compile, attach; raises BpfUnavailable with the first problem found.

    ``bpf_dir``: where the C sources are (default ``bpf.source_dir()``).
    """
    started = time.monotonic()
    host = check_host(sys_root, proc_root)
    program_checks = check_program(spec, host.tracefs_path, bpf_dir)
    if (problem := first_problem(host, program_checks)) is not None:
        raise BpfUnavailable(problem)
    path = program_checks.source
    request = {
        "path": str(path),
        "cflags": spec.cflag_list(path.parent),
        "attach": [[a.tracepoint, a.function] for a in program_checks.attach],
        "maps": list(spec.maps),
    }
    reply, fds = _run_helper(host.python, request, timeout_s, spec.source)
    names = reply.get("fds", [])
    if len(names) != len(fds):
        for fd in fds:
            os.close(fd)
        raise BpfUnavailable(f"the eBPF compile helper sent {len(fds)} descriptors for {len(names)} names")
    by_name = dict(zip(names, fds, strict=True))
    program = LoadedProgram(
        spec,
        maps={},
        progs={n[len("prog:") :]: fd for n, fd in by_name.items() if n.startswith("prog:")},
        links={n[len("link:") :]: fd for n, fd in by_name.items() if n.startswith("link:")},
        skipped=dict(program_checks.skipped),
        notes={"tracefs": str(host.tracefs_path), "headers": str(host.headers), "python": host.python},
        helper_peak_rss_kb=reply.get("peak_rss_kb"),
    )
    try:
        for name, (key_size, value_size) in spec.maps.items():
            m = BpfMap(name, by_name[f"map:{name}"])
            program.maps[name] = m
            if (m.key_size, m.value_size) != (key_size, value_size):
                raise BpfUnavailable(
                    f"bpf/{spec.source} map {name}: kernel has key/value sizes "
                    f"{m.key_size}/{m.value_size} bytes, the agent expects {key_size}/{value_size} "
                    f"(bpf/ and agent/ out of step)"
                )
    except OSError as err:
        program.close()
        raise BpfUnavailable(f"bpf/{spec.source}: cannot inspect its maps: {err.strerror or err}") from None
    except BaseException:
        program.close()
        raise
    program.load_seconds = time.monotonic() - started
    return program


def _run_helper(python: str, request: dict, timeout_s: float, source: str) -> tuple[dict, list[int]]:
    """Run agent/ebpf/compile_helper.py (``-I``: it imports nothing of this project) and take its fds."""
    helper = str(Path(compile_helper.__file__).resolve())
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent, tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                [python, "-I", helper, "--serve", str(child.fileno()), json.dumps(request)],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                close_fds=True,
            )
        except OSError as err:
            raise BpfUnavailable(f"cannot start the eBPF compile helper {python}: {err.strerror or err}") from None
        finally:
            child.close()
        parent.settimeout(timeout_s)
        try:
            data, fds, _, _ = socket.recv_fds(parent, 1 << 16, 64)
        except TimeoutError:
            proc.kill()
            proc.wait()
            raise BpfUnavailable(f"compiling bpf/{source} took longer than {timeout_s:g} s; gave up") from None
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        log_tail = stderr.read().decode(errors="replace")
    if not data:
        raise BpfUnavailable(
            f"the eBPF compile helper exited with {proc.returncode} before answering: "
            f"{_first_error(log_tail) or 'no output'}"
        )
    try:
        reply = json.loads(data)
    except ValueError:
        reply = {"ok": False, "error": f"unreadable answer {data[:200]!r}"}
    if not reply.get("ok"):
        for fd in fds:
            os.close(fd)
        raise BpfUnavailable(explain_failure(source, reply.get("error", ""), log_tail))
    return reply, fds


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln
    return lines[-1] if lines else ""


def explain_failure(source: str, error: str, log: str) -> str:
    """A human reason for a failed compile or attach (from bcc's exception and stderr)."""
    text = f"{error}\n{log}"
    if "Unable to find kernel headers" in text:
        return (
            f"kernel headers not found at /lib/modules/{platform.release()}/build: "
            f"apt-get install linux-headers-{platform.release()} (or make ebpf-deps)"
        )
    if "Operation not permitted" in text or "Permission denied" in text:
        return f"loading bpf/{source} was refused (needs CAP_BPF/root): {error.strip()}"
    if "No module named 'bcc'" in text or "No module named bcc" in text:
        return INSTALL_BCC
    if "Failed to compile BPF" in text or "error:" in log:
        return f"compiling bpf/{source} failed: {_first_error(log) or error.strip()}"
    if "attach" in error.lower():
        return f"attaching bpf/{source} failed: {error.strip()}"
    return f"loading bpf/{source} failed: {error.strip() or _first_error(log)}"


if __name__ == "__main__":
    from agent.ebpf.debug_cli import print_main

    sys.exit(print_main())
