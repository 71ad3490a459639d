"""The rebalancer's answer: the round's plan as JSON (``--json``) or as a table."""

from __future__ import annotations

from controllers.rebalance_config import RebalanceConfig
from controllers.rebalance_rules import Plan


def as_json(plan: Plan, cfg: RebalanceConfig) -> dict:
    return {
        "dry_run": not cfg.evict,
        "gap": cfg.gap,
        "floor": cfg.floor,
        "max_moves": cfg.max_moves,
        "model_version": plan.model_version,
        "examined": plan.examined,
        "moves": [m.to_json() for m in plan.moves],
        "deferred": [m.to_json() for m in plan.deferred],
        "skipped": dict(sorted(plan.skipped.items())),
    }


def format_table(plan: Plan, cfg: RebalanceConfig) -> str:
    mode = "evicting" if cfg.evict else "dry run"
    lines = [
        f"rebalance ({mode}): {plan.examined} running pods examined, "
        f"{len(plan.moves) + len(plan.deferred)} qualify, {len(plan.moves)} selected "
        f"(max {cfg.max_moves}, gap {cfg.gap:g}, floor {cfg.floor:g})"
        + (f" · model {plan.model_version}" if plan.model_version else "")
    ]
    rows = plan.moves + plan.deferred
    if rows:
        wp = max(len("POD"), *(len(m.key) for m in rows))
        ww = max(len("WORKLOAD"), *(len(m.workload) for m in rows))
        wn = max(len("NODE"), *(len(m.node) for m in rows))
        wt = max(len("TARGET"), *(len(m.target) for m in rows))
        lines.append(
            f"{'POD':<{wp}}  {'WORKLOAD':<{ww}}  {'NODE':<{wn}}  {'SCORE':>5}  {'TARGET':<{wt}}  "
            f"{'SCORE':>5}  {'GAIN':>5}  ACTION"
        )
        for m in rows:
            action = m.action + (f": {m.detail}" if m.detail and m.action != "recommended" else "")
            if m.event:
                action += f" [event {m.event}]"
            lines.append(
                f"{m.key:<{wp}}  {m.workload:<{ww}}  {m.node:<{wn}}  {m.node_score:5.1f}  {m.target:<{wt}}  "
                f"{m.target_score:5.1f}  {m.gain:5.1f}  {action}"
            )
        lines.append("why the current nodes score low:")
        for node, reason in dict.fromkeys((m.node, m.node_reason) for m in plan.moves):
            lines.append(f"  {node}: {reason}")
    else:
        lines.append("no pod qualifies for a move")
    if plan.skipped:
        lines.append("not moved: " + ", ".join(f"{n} {why}" for why, n in sorted(plan.skipped.items())))
    return "\n".join(lines)
