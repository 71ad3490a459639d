"""Feature probes: can this host load a ``bpf/`` program, and if not, why in words an operator can act on.

Each probe answers with a :class:`Check` (what was found, or the problem). The host's
checks do not depend on the program (:func:`check_host`): privileges (CAP_BPF +
CAP_PERFMON, or CAP_SYS_ADMIN), tracefs (``/sys/kernel/tracing`` then
``/sys/kernel/debug/tracing``), bcc (this interpreter, then Debian's ``/usr/bin/python3``),
kernel headers (``$BCC_KERNEL_SOURCE``, ``/lib/modules/$(uname -r)/build``, then
``/sys/kernel/kheaders.tar.xz``). A program's check (:func:`check_program`) reads every
tracepoint's format and the fields the program reads, and finds its C file and the shared
header where ``bpf.source_dir()`` says.

:func:`first_problem` is the reason a collector reports: the first failed check in the
order :func:`agent.ebpf.loader.load` meets them. ``agent --check`` (agent.capabilities)
shows the same checks, so the report and the collectors cannot disagree.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bpf
from agent.ebpf.program import Attach, ProgramSpec

TRACEFS_CANDIDATES = ("kernel/tracing", "kernel/debug/tracing")
DEBIAN_PYTHON = Path("/usr/bin/python3")
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc/__init__.py")
INSTALL_BCC = "bcc not installed: apt-get install python3-bpfcc (then `make venv-bcc` links it into the venv)"
DEFAULT_MODULES_ROOT = "/lib/modules"

# Linux capability numbers (include/uapi/linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
_CAPS = (("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON))


class BpfUnavailable(Exception):
    """eBPF cannot be used here; ``reason`` says why in words an operator can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Check:
    """One probe's answer: ``problem`` None when it passed, with what was ``found``."""

    name: str
    problem: str | None
    found: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def detail(self) -> str:
        return self.found if self.problem is None else self.problem


# ----------------------------------------------------------------------------- privileges


def effective_capabilities(proc_root: str | Path = "/proc") -> int | None:
    """The CapEff bit mask of this process (``proc_root/self/status``), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in (Path(proc_root) / "self" / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return None


def privilege_problem(euid: int, cap_eff: int | None) -> str | None:
    """Why a process with this uid and effective capability mask cannot load tracing BPF.

    The kernel checks capabilities, not the uid: root counts only when the mask is unknown.
    """
    if cap_eff is None:
        if euid == 0:
            return None
        held = "CapEff unreadable"
    else:
        if cap_eff >> CAP_SYS_ADMIN & 1 or (cap_eff >> CAP_BPF & 1 and cap_eff >> CAP_PERFMON & 1):
            return None
        held = f"CapEff=0x{cap_eff:x}"
    return (
        f"needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, or root) to load eBPF tracing programs; "
        f"running as uid {euid} with {held}"
    )


def check_privileges(proc_root: str | Path = "/proc") -> Check:
    cap_eff = effective_capabilities(proc_root)
    problem = privilege_problem(os.geteuid(), cap_eff)
    if cap_eff is None:
        return Check("bpf_privileges", problem, "root (capabilities unknown)")
    held = ", ".join(name for name, bit in _CAPS if cap_eff >> bit & 1)
    return Check("bpf_privileges", problem, f"effective: {held}")


# ----------------------------------------------------------------------------- tracefs


def find_tracefs(sys_root: str | Path = "/sys") -> Path:
    """The tracefs events directory: /sys/kernel/tracing, then the debugfs location."""
    looked = []
    for rel in TRACEFS_CANDIDATES:
        path = Path(sys_root) / rel
        looked.append(str(path))
        if (path / "events").is_dir():
            return path
    raise BpfUnavailable(f"tracefs not mounted (looked at {', '.join(looked)}): mount -t tracefs nodev {looked[0]}")


@dataclass(frozen=True)
class TracepointFormat:
    """A tracepoint's record layout as the running kernel describes it in tracefs."""

    name: str
    fields: Mapping[str, str]
    """Field name -> C declaration (``long prev_state``)."""
    print_fmt: str

    @classmethod
    def parse(cls, name: str, text: str) -> TracepointFormat:
        fields = {}
        print_fmt = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("field:"):
                decl = line[len("field:") :].split(";", 1)[0].strip()
                match = re.search(r"(\w+)\s*(\[[^\]]*\])?$", decl)
                if match:
                    fields[match.group(1)] = decl
            elif line.startswith("print fmt:"):
                print_fmt = line[len("print fmt:") :].strip()
        return cls(name, fields, print_fmt)


def read_tracepoint(tracefs: Path, tracepoint: str) -> TracepointFormat:
    """Read ``category:event``'s format; BpfUnavailable when the kernel has no such tracepoint."""
    category, _, event = tracepoint.partition(":")
    path = tracefs / "events" / category / event / "format"
    try:
        return TracepointFormat.parse(tracepoint, path.read_text())
    except FileNotFoundError:
        raise BpfUnavailable(f"tracepoint {tracepoint} not in this kernel (no {path})") from None
    except OSError as err:
        raise BpfUnavailable(f"cannot read {path}: {err.strerror or err}") from None


def require_fields(fmt: TracepointFormat, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in fmt.fields]
    if missing:
        raise BpfUnavailable(
            f"tracepoint {fmt.name} has no field {', '.join(missing)} in this kernel (it has: {', '.join(fmt.fields)})"
        )


# ----------------------------------------------------------------------------- bcc and headers


def bcc_python(spec_finder=None, debian_python: Path = DEBIAN_PYTHON, debian_bcc: Path = DEBIAN_BCC) -> str:
    """An interpreter that can import bcc: this one, else Debian's python3 with python3-bpfcc.

    Only looks (find_spec): bcc itself is imported by the compile helper, never here.
    """
    if spec_finder is None:
        import importlib.util

        spec_finder = importlib.util.find_spec
    with contextlib.suppress(ImportError, ValueError):
        if spec_finder("bcc") is not None:
            return sys.executable
    if debian_python.exists() and debian_bcc.exists():
        return str(debian_python)
    raise BpfUnavailable(INSTALL_BCC)


def kernel_release(proc_root: str | Path = "/proc") -> str:
    """The running kernel's release (``proc_root/sys/kernel/osrelease``, else uname)."""
    try:
        return (Path(proc_root) / "sys" / "kernel" / "osrelease").read_text().strip()
    except OSError:
        return platform.release()


def find_kernel_headers(
    release: str | None = None,
    environ: Mapping[str, str] | None = None,
    modules_root: str | Path = DEFAULT_MODULES_ROOT,
    sys_root: str | Path = "/sys",
) -> Path:
    """Where bcc will find kernel headers, in bcc's own order of preference."""
    release = release or platform.release()
    env = os.environ if environ is None else environ
    if env.get("BCC_KERNEL_SOURCE"):
        return Path(env["BCC_KERNEL_SOURCE"])
    build = Path(modules_root) / release / "build"
    if (build / "include").is_dir():
        return build
    kheaders = Path(sys_root) / "kernel" / "kheaders.tar.xz"
    if kheaders.exists():
        return kheaders
    raise BpfUnavailable(
        f"kernel headers not found at {build}: apt-get install linux-headers-{release} "
        f"(or link matching headers there: make ebpf-deps), or load the kheaders module"
    )


# ----------------------------------------------------------------------------- sources


def find_sources(source: str, bpf_dir: Path | None = None) -> Path:
    """The program's C file, next to the shared header in ``bpf_dir`` (default: ``bpf.source_dir()``)."""
    bpf_dir = bpf.source_dir() if bpf_dir is None else Path(bpf_dir)
    path = bpf_dir / source
    if not path.is_file() or not (bpf_dir / bpf.COMMON_HEADER).is_file():
        raise BpfUnavailable(f"eBPF sources not found: {path} (the agent ships bpf/ next to agent/)")
    return path


# ----------------------------------------------------------------------------- the checks


def _check(name: str, probe: Callable[[], object], found: Callable[[object], str]) -> tuple[Check, object]:
    try:
        value = probe()
    except BpfUnavailable as err:
        return Check(name, err.reason), None
    return Check(name, None, found(value)), value


@dataclass(frozen=True)
class HostChecks:
    """The checks every program needs, and what they found for the loader."""

    privileges: Check
    tracefs: Check
    bcc: Check
    kernel_headers: Check
    tracefs_path: Path | None = None
    python: str | None = None
    """The interpreter that runs the compile helper."""
    headers: Path | None = None


def check_host(
    sys_root: str | Path = "/sys",
    proc_root: str | Path = "/proc",
    *,
    modules_root: str | Path = DEFAULT_MODULES_ROOT,
    environ: Mapping[str, str] | None = None,
    find_bcc: Callable[[], str] = bcc_python,
) -> HostChecks:
    """Privileges, tracefs, bcc and kernel headers (``find_bcc``: an interpreter or BpfUnavailable)."""
    release = kernel_release(proc_root)
    tracefs, tracefs_path = _check("tracefs", lambda: find_tracefs(sys_root), lambda p: f"mounted at {p}")
    bcc, python = _check("bcc", find_bcc, lambda p: f"bcc importable by {p}")
    headers, headers_path = _check(
        "kernel_headers",
        lambda: find_kernel_headers(release, environ, modules_root, sys_root),
        lambda p: f"{p} (kernel {release})",
    )
    return HostChecks(check_privileges(proc_root), tracefs, bcc, headers, tracefs_path, python, headers_path)


@dataclass(frozen=True)
class ProgramChecks:
    """A program's tracepoints and sources: the check, and what the loader attaches."""

    check: Check
    source: Path | None = None
    """The C file; its directory is the ``-I`` of the shared header."""
    attach: tuple[Attach, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    """Optional tracepoints absent from this kernel, with why."""


def program_check_name(source: str) -> str:
    """``bpf_runqlat`` for ``runqlat.bpf.c``."""
    return "bpf_" + source.removesuffix(".bpf.c")


def check_program(spec: ProgramSpec, tracefs: Path | None, bpf_dir: Path | None = None) -> ProgramChecks:
    """Every tracepoint and field ``spec`` reads (not checked without tracefs), then its sources."""
    problem, attach, skipped = None, [], {}
    for a in spec.attach if tracefs is not None else ():
        try:
            require_fields(read_tracepoint(tracefs, a.tracepoint), a.fields)
            attach.append(a)
        except BpfUnavailable as err:
            if a.required:
                problem = err.reason
                break
            skipped[a.tracepoint] = err.reason
    source = None
    try:
        source = find_sources(spec.source, bpf_dir)
    except BpfUnavailable as err:
        problem = problem or err.reason
    name = program_check_name(spec.source)
    if problem is not None:
        return ProgramChecks(Check(name, problem), source)
    if tracefs is None:
        tracepoints = "tracepoints not checked (no tracefs)"
    else:
        tracepoints = "tracepoints " + ", ".join(a.tracepoint for a in attach)
        tracepoints += "".join(f"; skips {tp}: {why}" for tp, why in skipped.items())
    return ProgramChecks(Check(name, None, f"{source}; {tracepoints}"), source, tuple(attach), skipped)


def first_problem(host: HostChecks, program: ProgramChecks) -> str | None:
    """The reason a collector of this program reports: the first failed check, in the loader's order."""
    for check in (host.privileges, host.tracefs, program.check, host.bcc, host.kernel_headers):
        if check.problem is not None:
            return check.problem
    return None
