"""Pods named from the API server (``--pods-from apiserver``): list + watch of this node's pods.

Against the simulated API server (tests/fixtures/k8s/apiserver.py: recorded Pod objects and
watch events over real HTTP) with the real ``kubernetes`` client, so the field selector,
resourceVersions, watch-line parsing and the 410 Status all run unmodified; the last test
starts the real agent against it and names the owner of a real pod cgroup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures.k8s.apiserver import FakeApiServer, Reply, Stream, event, load, pod, pod_list, wait_until
from procs import Kubeattention, free_port, wait_for_port

from agent.config import AgentConfig, ConfigError
from agent.main import configure_parser, pod_source_from_args
from agent.pods.apiserver_resolver import NOT_LISTED_YET, ApiServerPodResolver
from agent.pods.source import PodSourceSettings, probe_pod_source
from wire.backoff import Backoff, Retry

NODE = "node-a"
WEB_UID = "0f3c2a51-8d7e-4c1b-9a2f-5e6d7c8b9a01"  # pod-deployment-running.json, on node-a
NEW_UID = "11111111-2222-4333-8444-555555555555"
ELSEWHERE_UID = "99999999-8888-4777-8666-555555555555"
MIRROR_HASH = "5f0e1d2c3b4a59687766554433221100"  # pod-mirror-static.json's kubernetes.io/config.mirror


@pytest.fixture
def apiserver():
    server = FakeApiServer(idle_watch_s=0.1).start()
    try:
        yield server
    finally:
        server.stop()


def fast_retry() -> Retry:
    return Retry(Backoff(0.05, 0.2), rand=lambda: 0.0)


def resolver_for(server: FakeApiServer, node: str = NODE) -> ApiServerPodResolver:
    return ApiServerPodResolver(node, client_factory=server.api_client, watch_timeout_s=1, retry=fast_retry())


def named(r: ApiServerPodResolver, uid: str) -> tuple[str, str] | None:
    info = r.resolve(uid)
    return None if info is None else (info.namespace, info.name)


def test_lists_only_this_nodes_pods_and_watches_with_the_same_selector(apiserver):
    mirror = load("pod-mirror-static.json")
    mirror["spec"]["nodeName"] = NODE
    apiserver.pods = [
        load("pod-deployment-running.json"),
        pod(name="db-0", uid=ELSEWHERE_UID, node="node-b"),
        mirror,
        pod(name="pending", uid=NEW_UID, node=None),
    ]
    r = resolver_for(apiserver)
    assert r.unresolved_reason == NOT_LISTED_YET and r.resolve(WEB_UID) is None
    r.start()
    try:
        assert wait_until(lambda: r.synced and len(apiserver.watches()) >= 1)
    finally:
        r.stop()
    assert named(r, WEB_UID) == ("shop", "web-7d4b9c8f6d-x2x9k")
    assert named(r, WEB_UID.upper()) == ("shop", "web-7d4b9c8f6d-x2x9k")  # UIDs compare case-insensitively
    assert r.resolve(ELSEWHERE_UID) is None, "a pod on another node is not listed"
    assert r.resolve(NEW_UID) is None, "an unbound pod is not on this node"
    static = mirror["metadata"]
    assert named(r, static["uid"]) == named(r, MIRROR_HASH) == (static["namespace"], static["name"])
    assert r.unresolved_reason is None
    for request in [apiserver.lists()[0], apiserver.watches()[0]]:
        assert request.path == "/api/v1/pods"  # all namespaces
        assert request.query["fieldSelector"] == [f"spec.nodeName={NODE}"]
    assert apiserver.watches()[0].query["resourceVersion"] == ["483391"]  # from the list


def test_field_selector_of_the_fixture_is_the_api_servers():
    """The fixture's own selector rules (so the test above proves the resolver asks, not the fixture)."""
    from fixtures.k8s.apiserver import field_selector

    a, b = pod(node="node-a"), pod(node="node-b")
    assert [field_selector("spec.nodeName=node-a")(p) for p in (a, b)] == [True, False]
    assert [field_selector("spec.nodeName!=node-a")(p) for p in (a, b)] == [False, True]
    assert field_selector("")(a) and field_selector("spec.nodeName==node-a,metadata.namespace=shop")(a)
    with pytest.raises(ValueError, match="field label not supported: spec.hostname"):
        field_selector("spec.hostname=x")


def test_watch_adds_a_new_pod_drops_a_deleted_one_and_resumes_where_it_left_off(apiserver):
    web = load("pod-deployment-running.json")
    apiserver.pods = [web]
    new = pod(name="api-5f9c-q7w2e", uid=NEW_UID, node=NODE, rv="483400")
    elsewhere = pod(name="db-0", uid=ELSEWHERE_UID, node="node-b", rv="483401")
    gone = pod(rv="483402")
    apiserver.script(
        "pods-watch",
        Stream([event("ADDED", new), event("ADDED", elsewhere), 0.3, event("DELETED", gone)]),
    )
    r = resolver_for(apiserver)
    r.start()
    try:
        assert wait_until(lambda: named(r, NEW_UID) == ("shop", "api-5f9c-q7w2e"))
        assert wait_until(lambda: r.resolve(WEB_UID) is None), "a deleted pod is dropped"
        assert wait_until(lambda: len(apiserver.watches()) >= 2)
    finally:
        r.stop()
    assert r.resolve(ELSEWHERE_UID) is None, "the server sends this watch only node-a's pods"
    assert r.lists == 1 and r.events == 2
    assert apiserver.watches()[1].query["resourceVersion"] == ["483402"]  # the last event seen


def test_410_gone_relists(apiserver):
    web = load("pod-deployment-running.json")
    new = pod(name="api-5f9c-q7w2e", uid=NEW_UID, node=NODE)
    apiserver.script("pods", Reply(200, pod_list([web], "483391")), Reply(200, pod_list([new], "483600")))
    apiserver.script("pods-watch", Stream([load("watch-error-410.json")]))
    r = resolver_for(apiserver)
    r.start()
    try:
        assert wait_until(lambda: r.lists == 2 and len(apiserver.watches()) >= 2)
    finally:
        r.stop()
    assert named(r, NEW_UID) == ("shop", "api-5f9c-q7w2e")
    assert r.resolve(WEB_UID) is None, "the relist replaces the map: the pod deleted in the gap is gone"
    assert [w.query["resourceVersion"][0] for w in apiserver.watches()[:2]] == ["483391", "483600"]
    assert r.last_error is None and r.retry.failures == 0


def test_an_api_error_is_the_reason_and_it_recovers(apiserver):
    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods is forbidden: User "system:serviceaccount:kubeattention-system:kubeattention-agent" '
        'cannot list resource "pods" in API group "" at the cluster scope',
        "reason": "Forbidden",
        "code": 403,
    }
    apiserver.pods = [load("pod-deployment-running.json")]
    apiserver.script("pods", Reply(403, forbidden), Reply(403, forbidden))
    r = resolver_for(apiserver)
    r.start()
    try:
        assert wait_until(lambda: r.last_error is not None)
        assert r.resolve(WEB_UID) is None, "nothing is guessed while the API refuses"
        assert "HTTP 403" in r.unresolved_reason and "cannot list resource" in r.unresolved_reason
        assert wait_until(lambda: r.synced)
    finally:
        r.stop()
    assert r.unresolved_reason is None and named(r, WEB_UID) == ("shop", "web-7d4b9c8f6d-x2x9k")


def test_a_server_that_goes_away_is_the_reason_and_the_last_list_is_kept(apiserver, caplog):
    apiserver.pods = [load("pod-deployment-running.json")]
    r = resolver_for(apiserver)
    r.start()
    try:
        assert wait_until(lambda: r.synced)
        apiserver.stop()
        assert wait_until(lambda: r.last_error is not None)
        reason = r.unresolved_reason
        assert reason.startswith(f"Kubernetes API server unreachable for pods on node {NODE}: ")
        assert "refused" in reason or "MaxRetryError" in reason, reason
        started = time.monotonic()
        assert named(r, WEB_UID) == ("shop", "web-7d4b9c8f6d-x2x9k")  # the last good list, not a guess
        assert r.resolve(NEW_UID) is None
        assert time.monotonic() - started < 0.05, "a lookup never waits on the network"
    finally:
        r.stop()
    warnings = [rec for rec in caplog.records if "cannot list/watch pods" in rec.getMessage()]
    assert len(warnings) == 1, "one warning per distinct error, not one per retry"


def test_stop_does_not_wait_for_an_idle_watch():
    server = FakeApiServer(idle_watch_s=30).start()  # a watch with nothing to say, held open
    try:
        r = resolver_for(server)
        r.start()
        assert wait_until(lambda: len(server.watches()) == 1)
        started = time.monotonic()
        r.stop()
        assert time.monotonic() - started < 2.0
    finally:
        server.stop()


def test_no_configuration_is_the_reason_not_a_crash(tmp_path):
    r = ApiServerPodResolver(NODE, kubeconfig=str(tmp_path / "missing"), retry=fast_retry())
    r.start()
    try:
        assert wait_until(lambda: r.last_error is not None)
    finally:
        r.stop()
    assert "KubeConfigError" in r.unresolved_reason and r.resolve(WEB_UID) is None


# ------------------------------------------------------------------ flags, config, --check


def parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


def config_of(*argv: str) -> AgentConfig:
    return AgentConfig.from_args(parse("--node-name", NODE, "--aggregator", "none", *argv), {})


def test_pods_from_defaults_keep_existing_command_lines(tmp_path):
    assert config_of().pod_source == "none"
    assert config_of("--kubelet-pods-url", "http://127.0.0.1:10255/pods").pod_source == "kubelet"
    assert config_of("--pods-from", "kubelet").pod_source == "kubelet"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    cfg = config_of("--pods-from", "apiserver", "--kubeconfig", str(kubeconfig))
    assert cfg.pod_source == "apiserver" and cfg.kubeconfig == kubeconfig


def test_pods_from_conflicts_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_of(
            "--pods-from", "apiserver", "--kubelet-pods-url", "http://x/pods", "--kubeconfig", str(tmp_path / "no")
        )
    assert err.value.errors == [
        "--kubelet-pods-url: only used with --pods-from kubelet, not --pods-from apiserver",
        f"--kubeconfig: no such file {str(tmp_path / 'no')!r}",
    ]
    with pytest.raises(ConfigError, match="--kubeconfig: only used with --pods-from apiserver, not --pods-from none"):
        config_of("--kubeconfig", str(tmp_path))
    with pytest.raises(SystemExit):
        parse("--pods-from", "etcd")


def test_check_line_says_which_source_and_whether_it_works(apiserver, tmp_path):
    apiserver.pods = [load("pod-deployment-running.json"), pod(name="db-0", uid=ELSEWHERE_UID, node="node-b")]
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    args = parse("--pods-from", "apiserver", "--kubeconfig", str(kubeconfig), "--node-name", NODE)
    assert probe_pod_source(pod_source_from_args(args, {})) == (True, f"API server, spec.nodeName={NODE}: 1 pods")
    ok, detail = probe_pod_source(PodSourceSettings("apiserver", NODE, kubeconfig=tmp_path / "missing"))
    assert not ok and detail.startswith(f"API server, spec.nodeName={NODE}: KubeConfigError: ")
    ok, detail = probe_pod_source(pod_source_from_args(parse(), {"NODE_NAME": NODE}))
    assert not ok and detail.startswith("--pods-from none: ")
    dead = f"http://127.0.0.1:{free_port()}/pods"
    ok, detail = probe_pod_source(pod_source_from_args(parse("--kubelet-pods-url", dead), {}))
    assert not ok and detail.startswith(f"kubelet {dead}: ")


def test_agent_check_prints_the_pod_names_line(apiserver, tmp_path):
    apiserver.pods = [load("pod-deployment-running.json")]
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    out = subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", "agent", "--check", "--pods-from", "apiserver"]
        + ["--kubeconfig", str(kubeconfig), "--node-name", NODE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [line] = [line for line in out.splitlines() if line.startswith("pod_names ")]
    assert line.split() == ["pod_names", "yes", "API", "server,", f"spec.nodeName={NODE}:", "1", "pods"]


# ------------------------------------------------------------------ end to end


@pytest.fixture
def throttled_pod_cgroup():
    """(kubepods-shaped v1 cpu root, the pod's container cgroup) with a 10 % quota, removed after."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    cpu = next(
        (
            Path("/sys/fs/cgroup") / h
            for h in ("cpu,cpuacct", "cpu")
            if (Path("/sys/fs/cgroup") / h / "cpu.cfs_quota_us").exists()
        ),
        None,
    )
    if cpu is None:
        pytest.skip("no cgroup v1 cpu controller here")
    root = cpu / f"ka-test-apiserver-pods-{os.getpid()}"
    leaf = root / "burstable" / f"pod{NEW_UID}" / ("c" * 64)
    leaf.mkdir(parents=True)
    (leaf / "cpu.cfs_period_us").write_text("10000")
    (leaf / "cpu.cfs_quota_us").write_text("1000")
    try:
        yield root, leaf
    finally:
        for p in (leaf, leaf.parent, leaf.parent.parent, root):
            p.rmdir()


def test_agent_names_a_real_pod_cgroups_owner_from_the_api_server(apiserver, tmp_path, throttled_pod_cgroup):
    root, leaf = throttled_pod_cgroup
    apiserver.pods = [load("pod-deployment-running.json")]
    # the pod arrives by a watch event after the agent listed, as a pod starting on the node does
    apiserver.script(
        "pods-watch", Stream([0.5, event("ADDED", pod(name="api-5f9c-q7w2e", uid=NEW_UID, node=NODE, rv="483400"))])
    )
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    agent = Kubeattention(
        "agent", "--aggregator", "none", "--node-name", NODE, "--interval", "0.5",
        "--http-listen", f"127.0.0.1:{port}", "--cgroup-root", str(root),
        "--pods-from", "apiserver", "--kubeconfig", str(kubeconfig),
    )  # fmt: skip
    try:
        (leaf / "cgroup.procs").write_text(str(busy.pid))
        agent.start()
        wait_for_port(port, proc=agent.proc, timeout=60)

        seen: list[dict] = []

        def offenders() -> list[dict]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/node", timeout=2) as resp:
                    seen[:] = json.loads(resp.read())["top_offenders"]
            except OSError:
                pass
            return seen

        named_rows = lambda: [o for o in offenders() if o["name"] == "api-5f9c-q7w2e"]  # noqa: E731
        assert wait_until(lambda: bool(named_rows()), timeout=30), agent.output()[-3000:]
        rows = named_rows()
    finally:
        busy.kill()
        busy.wait()
        agent.stop()
    assert {(o["namespace"], o["metric"]) for o in rows} == {("shop", "cpu_throttled_ratio")}
    assert all(o["name"] != NEW_UID for o in seen), "no offender is left named by its UID"
    assert apiserver.lists()[0].query["fieldSelector"] == [f"spec.nodeName={NODE}"]
    assert "pods behind per-pod figures named from: apiserver" in agent.output()
