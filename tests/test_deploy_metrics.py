"""Every metric the alert rules and the Grafana dashboard use exists on the real endpoints.

A real redis-server, the real aggregator and a real agent measuring this machine are
started; the agent pushes over gRPC, one BatchScore and one extender call go through, and
then both /metrics endpoints are scraped. A name in deploy/monitoring/ that neither
exposes fails the test. The one allowance: a node metric this machine cannot measure
(no PMU, no resctrl here) is absent from /metrics by design, so it counts as existing when
the real agent reports it in kubeattention_node_metric_available with 0.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import grpc
import pytest
import yaml
from deploy_render import DEPLOY, cli_help, help_flags
from procs import Kubeattention, free_ports, wait_for_port
from prometheus_client.parser import text_string_to_metric_families
from telemetry_factory import batch

from wire.schema import METRICS
from wire.v1 import scoring_pb2_grpc

pytestmark = pytest.mark.integration

#: Series Prometheus itself adds to every target.
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Labels the ServiceMonitor/PodMonitor and Prometheus attach at scrape time (target labels).
TARGET_LABELS = {"node", "job", "instance", "namespace", "pod", "container", "service", "endpoint", "le"}
#: PromQL words that look like identifiers but are functions, keywords or aggregations.
PROMQL_WORDS = {
    "sum",
    "rate",
    "by",
    "and",
    "or",
    "unless",
    "max",
    "min",
    "count",
    "histogram_quantile",
    "time",
    "increase",
    "clamp_min",
    "label_values",
    "without",
    "on",
    "ignoring",
    "avg",
    "bool",
    "offset",
}


def plaintext_flag(sub: str) -> list[str]:
    """`--insecure` where the CLI has it (it refuses to start without a security mode then)."""
    return ["--insecure"] if "--insecure" in help_flags(cli_help(sub)) else []


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def families(text: str) -> dict[str, dict]:
    """name -> {"type", "labels"} for every family, with the names PromQL sees (counter _total,
    histogram _bucket/_sum/_count)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        labels = {k for s in fam.samples for k in s.labels}
        names = {s.name for s in fam.samples} | {fam.name}
        if fam.type == "counter":
            names |= {fam.name + "_total"}
        if fam.type == "histogram":
            names |= {fam.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        for n in names:
            out[n] = {"type": fam.type, "labels": labels - {"le"}}
    return out


@pytest.fixture(scope="module")
def scraped():
    from procs import RedisServer

    redis = RedisServer().start()
    grpc_port, http_port, agent_port = free_ports(3)
    agg = Kubeattention(
        "aggregator",
        "--redis-url",
        redis.url,
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        *plaintext_flag("aggregator"),
    ).start()
    agent = None
    try:
        wait_for_port(http_port, proc=agg.proc, timeout=30)
        wait_for_port(grpc_port, proc=agg.proc, timeout=30)
        agent = Kubeattention(
            "agent",
            "--aggregator",
            f"127.0.0.1:{grpc_port}",
            "--node-name",
            "deploy-test",
            "--interval",
            "0.5",
            "--http-listen",
            f"127.0.0.1:{agent_port}",
            *plaintext_flag("agent"),
        ).start()
        wait_for_port(agent_port, proc=agent.proc, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            agg_nodes = get(f"http://127.0.0.1:{http_port}/v1/nodes")
            if get(f"http://127.0.0.1:{agent_port}/readyz")[0] == 200 and "deploy-test" in agg_nodes[1]:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the agent never got ready and pushed:\n{agent.output()[-2000:]}")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore(batch("deploy-test"), timeout=5)
        body = json.dumps(
            {
                "Pod": {
                    "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                    "spec": {"containers": [{"name": "c"}]},
                },
                "NodeNames": ["deploy-test"],
            }
        ).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/scheduler/prioritize",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        # One more collection interval so the agent's push counter has moved.
        time.sleep(1.0)
        status_a, agg_text = get(f"http://127.0.0.1:{http_port}/metrics")
        status_b, agent_text = get(f"http://127.0.0.1:{agent_port}/metrics")
        assert status_a == 200 and status_b == 200
        yield families(agg_text), families(agent_text), agent_text
    finally:
        if agent is not None:
            agent.stop()
        agg.stop()
        redis.cleanup()


def monitoring_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every alert rule and dashboard target."""
    out = []
    rules = yaml.safe_load((DEPLOY / "monitoring" / "alerts.yaml").read_text())
    for group in rules["spec"]["groups"]:
        for r in group["rules"]:
            out.append((f"alert {r['alert']}", r["expr"]))
    dash = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r}", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']}", v["query"]["query"]))
    return out


def selectors(expr: str):
    """(metric name, {label names}) for each metric selector in a PromQL expression."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values and strings
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(\{[^}]*\})?", expr):
        name, matchers = m.group(1), m.group(2) or ""
        if name in PROMQL_WORDS or name.startswith("$") or expr[m.end() : m.end() + 1] == "(":
            continue
        if not (name.startswith("kubeattention_") or name in PROMETHEUS_BUILTINS):
            continue
        yield name, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", matchers))


def test_the_expression_parser_finds_names_and_labels():
    found = list(
        selectors(
            'sum by (le) (rate(kubeattention_x_bucket{node=~"$node", result="error"}[5m])) '
            '/ clamp_min(kubeattention_y_total, 1) and up{job="a/b"} == 0'
        )
    )
    assert found == [("kubeattention_x_bucket", {"node", "result"}), ("kubeattention_y_total", set()), ("up", {"job"})]


def test_every_monitored_metric_exists_on_the_real_endpoints(scraped):
    agg, agent, agent_text = scraped
    exposed = {**agg, **agent}
    unavailable = set(re.findall(r'kubeattention_node_metric_available\{metric="([a-z0-9_]+)"\} 0\.0', agent_text))
    prom_names = {m.prom_name: m.name for m in METRICS}
    problems, used = [], set()
    for where, expr in monitoring_expressions():
        for name, labels in selectors(expr):
            used.add(name)
            if name in PROMETHEUS_BUILTINS:
                continue
            if name not in exposed:
                if name in prom_names and prom_names[name] in unavailable:
                    continue  # measured where the hardware allows; this VM reports it missing
                problems.append(f"{where}: {name} is not on the aggregator's or the agent's /metrics")
                continue
            unknown = labels - TARGET_LABELS - exposed[name]["labels"]
            if unknown and exposed[name]["labels"]:
                problems.append(
                    f"{where}: {name} has no label {sorted(unknown)} (it has {sorted(exposed[name]['labels'])})"
                )
    assert not problems, "\n".join(problems)
    # The dashboard covers the scoring path and every node metric, measured here or not.
    for needed in (
        "kubeattention_aggregator_batchscore_duration_seconds_bucket",
        "kubeattention_aggregator_fallbacks_total",
        "kubeattention_aggregator_nodes",
        "kubeattention_extender_requests_total",
        "kubeattention_agent_pushes_total",
    ):
        assert needed in used
    assert set(prom_names) <= used, f"node metrics without a panel: {sorted(set(prom_names) - used)}"


def test_the_unavailable_allowance_is_real(scraped):
    """The allowance above only covers metrics this agent says it cannot measure."""
    _, agent, agent_text = scraped
    reported = dict(re.findall(r'kubeattention_node_metric_available\{metric="([a-z0-9_]+)"\} ([01])\.0', agent_text))
    assert len(reported) == len(METRICS)
    for m in METRICS:
        assert (m.prom_name in agent) == (reported[m.name] == "1"), m.name
