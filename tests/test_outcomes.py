"""The outcome collector: real redis-server, real kubernetes client, simulated API server.

The Kubernetes API server is simulated (tests/fixtures/k8s/apiserver.py: recorded Pod,
PodList, Status and watch-event objects served over HTTP on 127.0.0.1) because none can
run on this machine. The collector's real ``kubernetes`` client lists and watches it, so
URL building, watch-stream parsing, the 410 ERROR event and error Statuses go through the
client's own code. Redis is a real redis-server; time is an injected clock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fixtures.k8s.apiserver import FakeApiServer, Reply, Stream, event, load, pod, pod_list, wait_until
from kubernetes import client
from procs import REPO

from aggregator.node_record import NodeRecord, empty_values
from aggregator.store import RedisStore, encode_record
from controllers import outcome_collector as outcomes
from controllers.decision_index import DecisionIndex
from controllers.pod_outcome import OUTCOME_WEIGHTS, Observed
from controllers.pod_watch import PodWatcher
from kubeapi.fields import parse_time
from scheduling.decisions import Decision, DecisionLog
from wire.backoff import Backoff, Retry
from wire.schema import METRIC_BY_NAME, NUM_METRICS

pytestmark = pytest.mark.integration

WEB_UID = "0f3c2a51-8d7e-4c1b-9a2f-5e6d7c8b9a01"
BIND_S = parse_time("2026-11-29T10:00:00Z")  # the web pod's PodScheduled time
BIND_MS = int(BIND_S * 1000)


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def apiserver():
    server = FakeApiServer(idle_watch_s=0.1).start()
    yield server
    server.stop()


@pytest.fixture
def store(redis_server):
    s = RedisStore(redis_server.url)
    yield s
    s.close()


def record_decision(
    store,
    p: dict,
    ts_ms: int,
    candidates=("node-a", "node-b", "node-e"),
    scores=(62.0, 48.0, 30.0),
    recommended="node-a",
    uid: bool = True,
) -> Decision:
    m = p["metadata"]
    d = Decision(
        ts_ms=ts_ms,
        pod_uid=m["uid"] if uid else "",
        pod_namespace=m["namespace"],
        pod_name=m["name"],
        pod={
            "cpu_request_cores": 0.25,
            "memory_request_bytes": 268435456,
            "qos": "BURSTABLE",
            "profile": "latency-critical",
            "priority": 0,
        },
        candidates=list(candidates),
        scores=list(scores),
        statuses=["SCORED"] * len(candidates),
        slowdowns=[round(100 / s, 4) for s in scores],
        recommended=recommended,
        model_version="mlp-test",
        mode="shadow",
    )
    DecisionLog(store.client, "ka:").append(d)
    return d


def push_history(store, node: str, ms: int, **metrics) -> None:
    """One ka:history entry with the stream id a push at ``ms`` gets."""
    values, mask = empty_values(), np.zeros(NUM_METRICS, dtype=bool)
    for name, v in {"cpu_utilization": 0.3, "cpu_psi_some": 0.05, "memory_utilization": 0.4, **metrics}.items():
        values[METRIC_BY_NAME[name].index] = v
        mask[METRIC_BY_NAME[name].index] = True
    rec = NodeRecord(
        node_name=node,
        values=values,
        mask=mask,
        collected_at_ms=ms - 40,
        received_at_ms=ms,
        schema_version=1,
        agent_version="test",
    )
    store.client.xadd(store.keys.history(node), encode_record(rec), id=f"{ms}-0")


def watcher_for(server: FakeApiServer) -> PodWatcher:
    return PodWatcher(
        client.CoreV1Api(server.api_client()),
        watch_timeout_s=5,
        request_timeout_s=5,
        retry=Retry(Backoff(0.05, 0.2), rand=lambda: 0.0),
    )


class Running:
    """outcomes.serve() in a thread, as `kubeattention collector` runs it."""

    def __init__(self, collector, watcher):
        self.collector, self.watcher, self.stop = collector, watcher, threading.Event()
        self.thread = threading.Thread(
            target=outcomes.serve, args=(collector, watcher, self.stop), kwargs={"tick_s": 0.05}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def stream_records(store) -> list[dict]:
    return [json.loads(f["record"]) for _id, f in store.client.xrange("ka:outcomes")]


# ---------------------------------------------------------------------- the happy path, once


def test_bound_pod_recorded_once_after_settle(apiserver, store, tmp_path):
    web = load("pod-deployment-running.json")
    other = pod(name="web-7d4b9c8f6d-h7j6k", uid="uid-no-decision", node="node-b")
    apiserver.pods = [web, other, load("pod-unbound-pending.json")]
    ts = BIND_MS - 200
    record_decision(store, web, ts)
    push_history(store, "node-a", ts - 3000, cpu_utilization=0.2)
    push_history(store, "node-a", ts - 1000, cpu_utilization=0.4)  # the one at or before the decision
    push_history(store, "node-a", ts + 500, cpu_utilization=0.9)  # after it: must not be used
    clock = Clock(BIND_S + 10)
    export = tmp_path / "outcomes.jsonl"
    collector = outcomes.OutcomeCollector(store, settle_s=300, export_path=export, clock=clock)

    with Running(collector, watcher_for(apiserver)):
        assert wait_until(lambda: WEB_UID in collector.tracked and collector.tracked[WEB_UID].decision is not None)
        assert "a6b7c8d9-e0f1-4a2b-8c3d-4e5f6a7b8c9d" not in collector.tracked  # unbound: not tracked
        assert store.client.xlen("ka:outcomes") == 0  # not settled yet
        clock.t = BIND_S + 301
        assert wait_until(lambda: store.client.xlen("ka:outcomes") == 1 and collector.stats["skipped_no_decision"] == 1)

    [rec] = stream_records(store)
    assert rec["kind"] == "kubeattention.io/outcome" and rec["version"] == 1
    assert (rec["pod_uid"], rec["pod_namespace"], rec["pod_name"], rec["node"]) == (
        WEB_UID,
        "shop",
        "web-7d4b9c8f6d-x2x9k",
        "node-a",
    )
    assert rec["outcome"] == "running" and rec["weight"] == 1.0
    assert rec["workload"] == "Deployment shop/web"
    assert rec["observed_after_s"] == pytest.approx(301)
    assert rec["decision"] == {
        "ts_ms": ts,
        "mode": "shadow",
        "model_version": "mlp-test",
        "recommended": "node-a",
        "followed": True,
        "node_was_candidate": True,
        "score_on_node": 62.0,
        "status_on_node": "SCORED",
        "predicted_slowdown_on_node": pytest.approx(1.6129),
    }
    assert rec["pod"]["profile"] == "latency-critical" and rec["pod"]["qos"] == "BURSTABLE"
    tel = rec["telemetry"]
    assert tel["entry_id"] == f"{ts - 1000}-0"
    assert tel["values"]["cpu_utilization"] == 0.4 and tel["values"]["llc_mpki"] is None
    assert tel["mask"][METRIC_BY_NAME["cpu_utilization"].index] == "1" and len(tel["mask"]) == NUM_METRICS
    assert tel["age_ms"] == 1040  # the decision's ts minus the older of collected/received
    assert rec["observed_slowdown"] is None
    fields = store.client.xrange("ka:outcomes")[0][1]
    assert (fields["outcome"], fields["weight"], fields["decision_ts_ms"]) == ("running", "1.0", str(ts))
    assert [json.loads(line) for line in export.read_text().splitlines()] == [rec]
    assert store.client.zscore("ka:outcomes:seen", WEB_UID) is not None

    # A restarted collector (new object, same Redis) lists the same pods and records nothing again.
    lists_before = len(apiserver.lists())
    export2 = tmp_path / "again.jsonl"
    again = outcomes.OutcomeCollector(store, settle_s=300, export_path=export2, clock=clock)
    with Running(again, watcher_for(apiserver)):
        assert wait_until(lambda: len(apiserver.lists()) > lists_before and again.stats["skipped_no_decision"] == 1)
        clock.t += 600
        assert wait_until(lambda: len(apiserver.watches()) >= 3)
    assert store.client.xlen("ka:outcomes") == 1
    assert not any(k.startswith("recorded_") for k in again.stats)
    assert not export2.exists()


def test_two_collectors_never_record_one_pod_twice(store):
    """The claim in ka:outcomes:seen holds even when two replicas track the same pod."""
    web = load("pod-deployment-running.json")
    record_decision(store, web, BIND_MS - 100)
    clock = Clock(BIND_S + 1)
    a = outcomes.OutcomeCollector(store, settle_s=60, clock=clock)
    b = outcomes.OutcomeCollector(store, settle_s=60, clock=clock)
    a.relist([web])
    b.relist([web])
    a.tick(), b.tick()
    clock.t = BIND_S + 61
    assert (a.tick(), b.tick()) == (1, 0)
    assert b.stats["skipped_already_recorded"] == 1
    assert store.client.xlen("ka:outcomes") == 1


def test_an_early_outcome_waits_for_a_late_decision(store):
    """The extender writes decisions asynchronously: a pod deleted right after binding is not
    given up on before its decision had a chance to arrive."""
    web = load("pod-deployment-running.json")
    clock = Clock(BIND_S + 2)
    collector = outcomes.OutcomeCollector(store, settle_s=300, clock=clock)
    collector.relist([web])
    collector.on_event("DELETED", web)
    assert collector.tick() == 0 and collector.stats["skipped_no_decision"] == 0
    record_decision(store, web, BIND_MS - 50)
    clock.t = BIND_S + 3
    assert collector.tick() == 1
    assert stream_records(store)[0]["outcome"] == "deleted"
    # without any decision, the pod is skipped (and counted) once the grace is over
    other = pod(name="web-7d4b9c8f6d-n0n0n", uid="uid-never-decided")
    collector.relist([other])
    collector.on_event("DELETED", other)
    clock.t = BIND_S + outcomes.DECISION_GRACE_S + 1
    assert collector.tick() == 0 and collector.stats["skipped_no_decision"] == 1 and not collector.tracked


# ---------------------------------------------------------------------- watch expiry and API errors


def test_the_pod_watch_backs_off_from_half_a_second_to_thirty_with_downward_jitter():
    retry = PodWatcher(None).retry
    assert retry.backoff == Backoff(0.5, 30.0, jitter=0.2)
    retry.rand = lambda: 0.0
    assert [retry.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    retry.reset()
    assert retry.next() == 0.5
    retry.rand = lambda: 1.0
    assert retry.next() == pytest.approx(0.8)  # at most 20 % less, never more


def test_watch_410_gone_relists_and_resumes_from_the_right_resource_version(apiserver, store):
    web = load("pod-deployment-running.json")
    record_decision(store, web, BIND_MS - 100)
    moved = pod(rv="483392", edit=lambda d: d["status"]["containerStatuses"][0].update(restartCount=0))
    apiserver.script(
        "pods", Reply(200, pod_list([web], "483391")), Reply(200, pod_list([], "483600"))
    )  # the relist: the pod was deleted during the gap
    apiserver.script(
        "pods-watch",
        Stream([event("MODIFIED", moved), load("watch-bookmark.json")]),  # ends; resume from 483500
        Stream([load("watch-error-410.json")]),
    )  # expired -> relist
    clock = Clock(BIND_S + 5)
    collector = outcomes.OutcomeCollector(store, settle_s=300, clock=clock)
    watcher = watcher_for(apiserver)
    with Running(collector, watcher):
        assert wait_until(lambda: store.client.xlen("ka:outcomes") == 1)
        assert wait_until(lambda: len(apiserver.watches()) >= 3)

    assert watcher.stats["expired"] == 1 and watcher.stats["lists"] == 2 and watcher.stats["errors"] == 0
    rvs = [w.query["resourceVersion"][0] for w in apiserver.watches()[:3]]
    assert rvs == ["483391", "483500", "483600"]  # list rv, bookmark rv, relist rv
    assert all(w.query["allowWatchBookmarks"] == ["true"] for w in apiserver.watches())
    [rec] = stream_records(store)
    assert rec["outcome"] == "deleted" and rec["weight"] == 0.5  # vanished before settling


def test_api_500_backs_off_and_recovers(apiserver, store):
    oom = load("pod-oomkilled.json")
    record_decision(store, oom, int(parse_time("2026-11-29T10:03:00Z") * 1000) - 100)
    apiserver.pods = [oom]
    apiserver.script("pods", Reply(500, load("status-500.json")), Reply(500, load("status-500.json")))
    apiserver.script("pods-watch", Reply(500, load("status-500.json")))  # the first watch fails too
    clock = Clock(parse_time("2026-11-29T10:05:00Z"))
    collector = outcomes.OutcomeCollector(store, settle_s=300, clock=clock)
    watcher = watcher_for(apiserver)
    with Running(collector, watcher):
        assert wait_until(lambda: store.client.xlen("ka:outcomes") == 1)
        assert wait_until(lambda: len(apiserver.watches()) >= 2)

    lists, watches = apiserver.lists(), apiserver.watches()
    assert len(lists) == 3 and watcher.stats["errors"] == 3
    # capped exponential backoff (jitter pinned to 0): 0.05 s, then 0.1 s between the list attempts
    assert lists[1].at - lists[0].at >= 0.05 and lists[2].at - lists[1].at >= 0.1
    # a failed watch is retried from the same resourceVersion, without a relist
    assert [w.query["resourceVersion"][0] for w in watches[:2]] == ["483391", "483391"]
    assert watches[1].at - watches[0].at >= 0.05  # the backoff was reset by the successful list
    assert stream_records(store)[0]["outcome"] == "oom_killed"


# ---------------------------------------------------------------------- outcome detection


def test_oomkilled_and_evicted_recorded_at_once_deleted_on_the_event(apiserver, store):
    oom, evicted, web = load("pod-oomkilled.json"), load("pod-evicted.json"), load("pod-deployment-running.json")
    for p in (oom, evicted, web):
        record_decision(store, p, BIND_MS)
    apiserver.pods = [oom, evicted, web]
    apiserver.script("pods-watch", Stream([0.3, event("DELETED", web)]))
    clock = Clock(parse_time("2026-11-29T10:05:30Z"))  # before any of them settles
    collector = outcomes.OutcomeCollector(store, settle_s=3600, clock=clock)
    with Running(collector, watcher_for(apiserver)):
        assert wait_until(lambda: store.client.xlen("ka:outcomes") == 3)

    by_pod = {r["pod_name"]: r for r in stream_records(store)}
    assert by_pod["ingest-84c5d6e7f-m2n3b"]["outcome"] == "oom_killed"
    assert by_pod["ingest-84c5d6e7f-m2n3b"]["weight"] == 3.0
    assert by_pod["ingest-84c5d6e7f-m2n3b"]["restart_count"] == 2
    assert by_pod["thumbnails-5d6e7f809-kk4lm"]["outcome"] == "evicted"
    assert by_pod["thumbnails-5d6e7f809-kk4lm"]["weight"] == 3.0
    assert by_pod["thumbnails-5d6e7f809-kk4lm"]["disruption"] == "TerminationByKubelet"
    assert by_pod["web-7d4b9c8f6d-x2x9k"]["outcome"] == "deleted"
    # node-b had no history at all: recorded, with the reason
    assert by_pod["thumbnails-5d6e7f809-kk4lm"]["telemetry"] is None
    assert "ka:history:{node-b}" in by_pod["thumbnails-5d6e7f809-kk4lm"]["telemetry_problem"]


@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("pod-deployment-running.json", "running"),
        ("pod-oomkilled.json", "oom_killed"),
        ("pod-evicted.json", "evicted"),
        ("pod-job-besteffort.json", "running"),
        ("pod-unbound-pending.json", "pending"),
    ],
)
def test_classification_of_recorded_pods(fixture, expected):
    obs = Observed()
    obs.update(load(fixture))
    assert obs.outcome() == expected


def test_classification_rules():
    def observed(*edits) -> Observed:
        obs = Observed()
        for e in edits:
            obs.update(pod(edit=e))
        return obs

    def restarted(d):
        d["status"]["containerStatuses"][0].update(
            restartCount=1, lastState={"terminated": {"exitCode": 1, "reason": "Error"}}
        )

    def oom(d):
        d["status"]["containerStatuses"][0].update(
            restartCount=1, lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        )

    def crashed_again(d):
        d["status"]["containerStatuses"][0].update(
            restartCount=2, lastState={"terminated": {"exitCode": 1, "reason": "Error"}}
        )

    def failed(d):
        d["status"]["phase"] = "Failed"

    def succeeded(d):
        d["status"]["phase"] = "Succeeded"

    assert observed(restarted).outcome() == "restarted"
    assert observed(oom, crashed_again).outcome() == "oom_killed"  # sticky
    assert observed(failed).outcome() == "failed"
    assert observed(succeeded).outcome() == "succeeded"
    gone = observed()
    gone.deleted = True
    assert gone.outcome() == "deleted"
    gone_after_restart = observed(restarted)
    gone_after_restart.deleted = True
    assert gone_after_restart.outcome() == "restarted"
    assert set(OUTCOME_WEIGHTS) == {
        "running",
        "succeeded",
        "restarted",
        "failed",
        "oom_killed",
        "evicted",
        "deleted",
        "pending",
    }


def test_decision_by_namespace_and_name_when_it_has_no_uid(store):
    web = load("pod-deployment-running.json")
    record_decision(store, web, BIND_MS - 5000, scores=(10.0, 20.0, 30.0), uid=False)
    record_decision(store, web, BIND_MS - 100, scores=(70.0, 20.0, 30.0), uid=False)  # newest wins
    index = DecisionIndex(DecisionLog(store.client, "ka:"))
    assert index.refresh() == 2 and index.refresh() == 0
    d = index.lookup(WEB_UID, "shop", "web-7d4b9c8f6d-x2x9k")
    assert d is not None and d.scores[0] == 70.0
    assert index.lookup("other-uid", "shop", "other") is None


# ---------------------------------------------------------------------- Redis outage


def test_redis_outage_keeps_outcomes_pending_until_it_returns(redis_server, tmp_path):
    store = RedisStore(redis_server.url)
    web = load("pod-deployment-running.json")
    record_decision(store, web, BIND_MS - 100)
    clock = Clock(BIND_S + 5)
    export = tmp_path / "o.jsonl"
    collector = outcomes.OutcomeCollector(store, settle_s=60, export_path=export, clock=clock)
    collector.relist([web])
    collector.tick()
    assert collector.tracked[WEB_UID].decision is not None  # joined while Redis was up

    redis_server.stop()
    clock.t = BIND_S + 61
    assert collector.tick() == 0
    assert collector.stats["redis_errors"] == 1 and WEB_UID in collector.tracked

    redis_server.start()  # back empty (no persistence): the claim and the record are written now
    assert wait_until(store.ping)
    assert collector.tick() == 1
    assert store.client.xlen("ka:outcomes") == 1 and len(export.read_text().splitlines()) == 1
    store.close()


# ---------------------------------------------------------------------- the command


COLLECTOR = (
    "import argparse, sys; from controllers import outcome_collector as outcomes; p = argparse.ArgumentParser(); "
    "outcomes.configure_parser(p); sys.exit(outcomes.run(p.parse_args(sys.argv[1:])))"
)


def test_collector_command_records_exports_dumps_and_stops_on_sigterm(apiserver, redis_server, store, tmp_path):
    bound = datetime.now(UTC) - timedelta(seconds=1)

    def bound_now(d):
        for c in d["status"]["conditions"]:
            if c["type"] == "PodScheduled":
                c["lastTransitionTime"] = bound.strftime("%Y-%m-%dT%H:%M:%SZ")

    web = pod(edit=bound_now)
    apiserver.pods = [web]
    record_decision(store, web, int(bound.timestamp() * 1000) - 100)
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    export, dump, log = tmp_path / "export.jsonl", tmp_path / "dump.jsonl", tmp_path / "collector.log"
    args = [
        "--redis-url",
        redis_server.url,
        "--kubeconfig",
        str(kubeconfig),
        "--settle-s",
        "2",
        "--export",
        str(export),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            assert wait_until(lambda: store.client.xlen("ka:outcomes") == 1, timeout=20), log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
    assert [json.loads(line)["outcome"] for line in export.read_text().splitlines()] == ["running"]
    assert apiserver.watches() and all(
        w.headers.get("authorization") == "Bearer test-token" for w in apiserver.watches()
    )

    done = subprocess.run(
        [sys.executable, "-c", COLLECTOR, "--redis-url", redis_server.url, "--dump", str(dump)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "wrote 1 outcomes" in done.stdout
    assert dump.read_text() == export.read_text()

    bad = subprocess.run(
        [sys.executable, "-c", COLLECTOR, "--settle-s", "0", "--kubeconfig", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--settle-s" in bad.stderr and "nope" in bad.stderr
