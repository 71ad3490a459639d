"""What a model trained on a calibration recording was validated on, in words and figures.

:func:`validated_on` reads a recording (``calibration.jsonl`` and ``plan.json``) and says
where it was measured: how many CPUs, whether the node was a VM (the ``hypervisor`` CPU
flag, kept in the plan's ``machine`` block), whether it had hardware counters (did any row
measure ``llc_miss_ratio``), which victims, how many rows, when. Training puts it in the
model's metadata (``validated_on``); ``kubeattention model show``, ``/v1/nodes`` and the
README repeat its ``text`` — e.g. "validated on a 2-vCPU VM without a PMU (1 190 rows, 5
victims, 2026-12-03); not validated on nodes with hardware counters" — so nobody mistakes a
model for more than what it was checked against.
"""

from __future__ import annotations

import json
from pathlib import Path

from scorer.calibration.rows import load_rows, rows_path
from wire.schema import METRIC_BY_NAME

#: The metric whose measurement says a node had a hardware PMU (perf counters).
PMU_METRIC = "llc_miss_ratio"


def machine_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The facts the plan keeps about the recording machine: virtualised (the ``hypervisor`` flag), CPU model."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), None)
    return {"virtualised": "hypervisor" in flags, "cpu_model": model}


def validated_on(path: str | Path) -> dict:
    """Figures and a sentence about the recording at ``path`` (a directory or its calibration.jsonl)."""
    rows_file = rows_path(path)
    rows = [r for r in load_rows(rows_file) if r.get("status") == "ok"]
    plan_file = rows_file.parent / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    machine = plan.get("machine") or {}
    cores = sorted({int(r["cores"]) for r in rows if r.get("cores")})
    pmu_index = METRIC_BY_NAME[PMU_METRIC].index
    pmu = any(bool(r["mask"][pmu_index]) for r in rows)
    dates = sorted(r["measured_at"] for r in rows if r.get("measured_at"))
    victims = sorted({r["profile"] for r in rows})
    hosts = sorted({r["hostname"] for r in rows if r.get("hostname")})
    virtual = machine.get("virtualised")
    cpu_word = "vCPU" if virtual else "CPU"
    node_word = "VM" if virtual else "node" if virtual is False else "node (VM or not: not recorded)"
    core_text = "/".join(map(str, cores)) or "?"
    when = dates[0][:10] if dates else "?"
    if dates and dates[-1][:10] != when:
        when += f" – {dates[-1][:10]}"
    text = (
        f"validated on a {core_text}-{cpu_word} {node_word} {'with' if pmu else 'without'} a PMU "
        f"({len(rows)} rows, {len(victims)} victims, {when})"
    )
    if not pmu:
        text += "; not validated on nodes with hardware counters"
    return {
        "text": text,
        "cores": cores,
        "pmu": pmu,
        "virtualised": virtual,
        "cpu_model": machine.get("cpu_model"),
        "hosts": hosts,
        "victims": victims,
        "rows": len(rows),
        "first_row": dates[0] if dates else None,
        "last_row": dates[-1] if dates else None,
        "victim_conditions": {k: plan.get(k) for k in ("pm_qos", "idle_pollers", "latency_critical_load") if k in plan},
    }


#: What a model trained on synthetic rows only says about itself.
SYNTHETIC_ONLY = {
    "text": "not validated on any measured node: trained and checked on synthetic rows of the prior contention model",
    "rows": 0,
}
