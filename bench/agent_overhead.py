#!/usr/bin/env python3
"""The node agent's own cost, with its eBPF programs loaded, idle and under a context-switch storm.

Starts the real ``kubeattention agent --aggregator none --interval 1`` on a free loopback
port, waits for its first vector, then measures two phases of ``--seconds`` each (default
60): ``idle``, and ``storm`` under ``stress-ng --switch N --switch-freq F`` (by default about
100 000 context switches/s on a 2-core machine; the achieved rate is measured from
/proc/stat ``ctxt``, not assumed). ``--unthrottled`` adds a ``storm-max`` phase without
``--switch-freq``. Per phase:

* agent CPU, % of one core (run time of all its threads, /proc/PID/task/*/schedstat: exact,
  where utime + stime are sampled at the tick);
* context switches/s on the node;
* per BPF program the agent holds: events (run_cnt), events/s and cost per event in ns
  (run_time_ns / run_cnt, the kernel's own accounting, switched on for the run with
  BPF_ENABLE_STATS or kernel.bpf_stats_enabled), and the CPU all BPF runs took, % of
  one core (charged to whichever tasks were switching, not to the agent).

And the agent's peak RSS (VmHWM) at the end; the compile helper's transient peak RSS as
the agent logged it. Targets: agent CPU <= 1 % of a core idle, <= 3 % under ~100 000
context switches/s, RSS <= 160 MB. Prints a table; ``--json`` prints the same figures as one
JSON object. Needs root (eBPF, stats); everything it starts is stopped at the end.

While the eBPF collectors are still placeholders in ``default_collectors()``, the bench
starts the agent through a launcher that puts the real ones in their place (and says so).

    .venv/bin/python bench/agent_overhead.py [--seconds 60] [--switch-freq 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from procs import free_port  # noqa: E402

from agent.ebpf import prog_stats  # noqa: E402

TARGET_IDLE_CPU_PCT = 1.0
TARGET_STORM_CPU_PCT = 3.0
TARGET_RSS_MB = 160.0
READY_TIMEOUT_S = 60.0
EBPF_METRICS = ("runqueue_latency_p99_us", "cross_cgroup_preemptions_per_s", "disk_io_latency_p99_ms")

#: Runs the agent; for the baseline, with eBPF loading refused (same agent otherwise).
LAUNCHER = """
import sys
from agent.ebpf import loader
from agent.ebpf.probes import BpfUnavailable
if sys.argv[1] == "baseline":
    def refuse(*args, **kwargs):
        raise BpfUnavailable("eBPF disabled for the overhead baseline")
    loader.load = refuse
    print("agent_overhead: eBPF disabled (baseline)", flush=True)
from kubeattention.cli import main
sys.exit(main(sys.argv[2:]))
"""


class AgentProcess:
    """``kubeattention agent`` through LAUNCHER, on a free port, its output in a temp file."""

    def __init__(self, mode: str):
        self.mode = mode
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix=f"ka-agent-overhead-{mode}-", suffix=".log")[1])
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LAUNCHER,
                    mode,
                    "agent",
                    "--aggregator",
                    "none",
                    "--interval",
                    "1",
                    "--http-listen",
                    f"127.0.0.1:{self.port}",
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def node(self) -> dict:
        """The agent's latest vector (/v1/node), waiting for the first one."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.mode} agent exited with {self.proc.returncode}:\n{self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/node", timeout=1) as resp:
                    return json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.mode} agent gave no vector within {READY_TIMEOUT_S:g} s:\n{self.output()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc)
        self.log.unlink(missing_ok=True)


def cpu_ns(pid: int) -> int:
    """CPU time of all the process's live threads, ns (schedstat: exact, not tick-sampled like utime)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # thread ended between listing and reading
    return total


def node_ctxt() -> int:
    return int(re.search(r"^ctxt (\d+)", Path("/proc/stat").read_text(), re.M).group(1))


def status_kb(pid: int, key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def snapshot(agents: dict[str, AgentProcess]) -> dict:
    return {
        "wall": time.monotonic(),
        "ctxt": node_ctxt(),
        "cpu": {m: cpu_ns(a.pid) for m, a in agents.items()},
        "progs": prog_stats.prog_stats_of_pid(agents["ebpf"].pid),
    }


def phase(name: str, agents: dict[str, AgentProcess], seconds: float) -> dict:
    a = snapshot(agents)
    time.sleep(seconds)
    b = snapshot(agents)
    wall = b["wall"] - a["wall"]
    programs, bpf_ns = {}, 0
    for prog, after in sorted(b["progs"].items()):
        d = after - a["progs"][prog] if prog in a["progs"] else after
        bpf_ns += d.run_time_ns
        programs[prog] = {"events": d.run_cnt, "events_per_s": d.run_cnt / wall, "ns_per_event": d.ns_per_event}
    cpu = {m: 100.0 * (b["cpu"][m] - a["cpu"][m]) / 1e9 / wall for m in agents}
    return {
        "name": name,
        "seconds": wall,
        "context_switches_per_s": (b["ctxt"] - a["ctxt"]) / wall,
        "agent_cpu_pct": cpu["ebpf"],
        "baseline_agent_cpu_pct": cpu.get("baseline"),
        "bpf_cpu_pct": 100.0 * bpf_ns / 1e9 / wall,
        "programs": programs,
    }


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run(args: argparse.Namespace) -> dict:
    stress_ng = shutil.which("stress-ng")
    if stress_ng is None:
        raise SystemExit("stress-ng not found: apt-get install stress-ng (make system-deps does)")
    if os.geteuid() != 0:
        raise SystemExit("needs root: loading eBPF programs and switching BPF run-time stats on")
    load_average = os.getloadavg()[0]
    agents: dict[str, AgentProcess] = {}
    storm = None
    phases = []
    try:
        agents["ebpf"] = AgentProcess("ebpf")
        if args.baseline:
            agents["baseline"] = AgentProcess("baseline")
        for agent in agents.values():
            agent.node()
        time.sleep(2.0)  # let start-up settle (imports, first ticks)
        with prog_stats.bpf_stats_enabled() as stats_how:
            phases.append(phase("idle", agents, args.seconds))
            storms = [("storm", ["--switch-freq", str(args.switch_freq)])]
            if args.unthrottled:
                storms.append(("storm-max", []))
            for name, extra in storms:
                storm = subprocess.Popen(
                    [
                        stress_ng,
                        "--switch",
                        str(args.switch_workers),
                        *extra,
                        "--timeout",
                        f"{int(args.seconds) + 10}s",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
                phases.append(phase(name, agents, args.seconds))
                stop(storm, signal.SIGINT)
                storm = None
        node = agents["ebpf"].node()
        rss = {m: (status_kb(a.pid, "VmHWM") / 1024, status_kb(a.pid, "VmRSS") / 1024) for m, a in agents.items()}
        text = agents["ebpf"].output()
    finally:
        stop(storm, signal.SIGINT)
        for agent in agents.values():
            agent.stop()
    helper = [int(mb) for mb in re.findall(r"compile helper peak RSS (\d+) MB", text)]
    return {
        "seconds_per_phase": args.seconds,
        "switch_workers": args.switch_workers,
        "switch_freq": args.switch_freq,
        "load_average_at_start": load_average,
        "bpf_stats": stats_how,
        "wired_by_bench": "wired in by the bench launcher" in text,
        "phases": phases,
        "agent_peak_rss_mb": rss["ebpf"][0],
        "agent_rss_mb": rss["ebpf"][1],
        "baseline_agent_peak_rss_mb": rss["baseline"][0] if "baseline" in rss else None,
        "compile_helper_peak_rss_mb": max(helper) if helper else None,
        "ebpf_metrics_missing": {
            m: node["missing_reasons"][m] for m in EBPF_METRICS if m in node.get("missing_reasons", {})
        },
        "targets": {
            "idle_cpu_pct": TARGET_IDLE_CPU_PCT,
            "storm_cpu_pct": TARGET_STORM_CPU_PCT,
            "rss_mb": TARGET_RSS_MB,
        },
    }


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER"


def table(r: dict) -> str:
    lines = [
        f"agent overhead: {r['seconds_per_phase']:g} s per phase, BPF stats via {r['bpf_stats']}, "
        f"load average {r['load_average_at_start']:.2f} at start"
        + (" (eBPF collectors wired in by the bench)" if r["wired_by_bench"] else ""),
        "",
    ]
    base = r["baseline_agent_peak_rss_mb"] is not None
    lines.append(
        f"{'phase':<10} {'ctx sw/s':>10} {'agent CPU %':>12} {'no-eBPF agent CPU %':>20} {'BPF CPU %':>10}"
        "  target (agent CPU)"
    )
    for p in r["phases"]:
        target = TARGET_IDLE_CPU_PCT if p["name"] == "idle" else TARGET_STORM_CPU_PCT
        mark = f"<= {target:g} % {verdict(p['agent_cpu_pct'] <= target)}" if p["name"] != "storm-max" else "-"
        b = f"{p['baseline_agent_cpu_pct']:.2f}" if base else "-"
        lines.append(
            f"{p['name']:<10} {p['context_switches_per_s']:>10,.0f} {p['agent_cpu_pct']:>12.2f} "
            f"{b:>20} {p['bpf_cpu_pct']:>10.2f}  {mark}"
        )
    lines += ["", f"{'phase':<10} {'program':<16} {'events':>12} {'events/s':>11} {'ns/event':>9}"]
    for p in r["phases"]:
        for name, s in p["programs"].items():
            ns = f"{s['ns_per_event']:.0f}" if s["ns_per_event"] is not None else "-"
            lines.append(f"{p['name']:<10} {name:<16} {s['events']:>12,} {s['events_per_s']:>11,.0f} {ns:>9}")
    if not any(p["programs"] for p in r["phases"]):
        lines.append("(no BPF programs held by the agent)")
    lines += [
        "",
        f"agent peak RSS (VmHWM) {r['agent_peak_rss_mb']:.0f} MB, now {r['agent_rss_mb']:.0f} MB: "
        f"<= {TARGET_RSS_MB:g} MB {verdict(r['agent_peak_rss_mb'] <= TARGET_RSS_MB)}"
        + (f" (no-eBPF agent: {r['baseline_agent_peak_rss_mb']:.0f} MB)" if base else ""),
    ]
    if r["compile_helper_peak_rss_mb"] is not None:
        lines.append(f"compile helper (bcc + LLVM, exits after loading) peak RSS {r['compile_helper_peak_rss_mb']} MB")
    for metric, reason in r["ebpf_metrics_missing"].items():
        lines.append(f"note: {metric} missing in the last vector: {reason}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of each phase (default 60)")
    p.add_argument("--switch-workers", type=int, default=2, help="stress-ng --switch N (default 2)")
    p.add_argument(
        "--switch-freq",
        type=int,
        default=20000,
        help="stress-ng --switch-freq per worker (default 20000: ~100 000 switches/s on 2 cores)",
    )
    p.add_argument("--unthrottled", action="store_true", help="add a phase without --switch-freq")
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not run the comparison agent (same agent, eBPF loading refused) alongside",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()
    if args.seconds <= 0 or args.switch_workers < 1 or args.switch_freq < 1:
        p.error("--seconds, --switch-workers and --switch-freq must be positive")
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
