"""The production manifests' own command lines, run for real: agent → aggregator → extender.

The args of the rendered kubeattention-aggregator, kubeattention-extender and
kubeattention-agent containers are taken as they are and only what a pod gets from its
node is substituted: mounted files (certificates from `kubeattention certs`, a
ServiceAccount token), listen ports (free loopback ports), Redis's address (a real
redis-server with the Secret's password as requirepass), the host's
/proc and /sys, and $(NODE_NAME) as the kubelet expands it. Then:

* the agent, with the manifest's --tls-ca and --token-file, pushes over TLS and the
  aggregator (--auth-tokenreview) accepts its projected token as its node's identity;
* the extender Deployment (--tls-client-ca, --shadow) answers kube-scheduler's prioritize
  over HTTPS when the scheduler presents the certificate deploy/scheduler mounts, and
  refuses it without one;
* the extender's snapshot follows the pushes it never received (shared Redis);
* the rebalancer CronJob's args score through the aggregator with its own projected token.

TokenReview and the agent's pod list/watch (--pods-from apiserver) are answered by the
simulated API server (tests/fixtures/k8s/apiserver.py) reached through --kubeconfig,
because no Kubernetes control plane runs here (in a cluster both use their in-cluster
config). Redis, TLS, gRPC, HTTP and the
agent's measurements are real.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_render import find, kubectl, pod_spec, rendered
from fixtures.k8s.apiserver import FakeApiServer, IssuedToken, pod, wait_until
from procs import Kubeattention, RedisServer, free_ports, wait_for_port

from aggregator.security import auth
from kubeattention import certs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kubectl() is None, reason="kubectl not on PATH (renders the manifests)"),
]

NODE = "worker-1"
AGENT_TOKEN = "projected-agent-token-0123456789abcdef"


def args_of(name: str, kind: str = "Deployment") -> list[str]:
    return list(pod_spec(find(rendered("production"), kind, name))["containers"][0]["args"])


def substitute(args: list[str], files: dict[str, str], values: dict[str, str]) -> list[str]:
    """Replace mounted paths and flag values; fail on a mounted path the test does not know."""
    out = []
    for i, a in enumerate(args):
        prev = args[i - 1] if i else ""
        if prev in values:
            out.append(values[prev])
        elif a.startswith(("/etc/kubeattention", "/var/run/")):
            if a not in files:
                raise AssertionError(f"{prev} {a}: the test has no stand-in for this mounted file")
            out.append(files[a])
        else:
            out.append(a.replace("$(NODE_NAME)", NODE))
    return out


REDIS_PASSWORD = "0123456789abcdef0123456789abcdef"


class PasswordRedis(RedisServer):
    """A real redis-server with requirepass, as the StatefulSet runs it (the Secret's password)."""

    def start(self) -> PasswordRedis:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--requirepass",
                REDIS_PASSWORD,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self


def redis_url_for(manifest_url: str, port: int) -> str:
    """The manifest's URL as the kubelet expands $(REDIS_PASSWORD), pointed at the test's Redis."""
    assert "$(REDIS_PASSWORD)@kubeattention-redis:6379" in manifest_url, manifest_url
    return manifest_url.replace("$(REDIS_PASSWORD)", REDIS_PASSWORD).replace(
        "kubeattention-redis:6379", f"127.0.0.1:{port}"
    )


def https(port: int, ca: Path, path: str, body: bytes | None = None, client: certs.Issued | None = None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}",
        data=body,
        method="POST" if body else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def wait_ready(port: int, ca: Path, proc: Kubeattention, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while https(port, ca, "/readyz")[0] != 200:
        if time.monotonic() > deadline or proc.proc.poll() is not None:
            raise AssertionError(f"not ready on {port}:\n{proc.output()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wiring")
    scheduler_name = yaml.safe_load(
        find(
            rendered("production"),
            "ConfigMap",
            next(
                v["configMap"]["name"]
                for v in pod_spec(find(rendered("production"), "Deployment", "kubeattention-scheduler"))["volumes"]
                if "configMap" in v
            ),
        )["data"]["config.yaml"]
    )["profiles"][0]["schedulerName"]
    pki = certs.create(
        tmp / "pki",
        [],
        [scheduler_name],
        hosts=["kubeattention-extender", "kubeattention-extender.kubeattention-system.svc"],
    )
    token = tmp / "token"
    token.write_text(AGENT_TOKEN)
    (tmp / "tetragon").mkdir()
    files = {
        "/etc/kubeattention/tls/tls.crt": str(pki.server.cert),
        "/etc/kubeattention/tls/tls.key": str(pki.server.key),
        "/etc/kubeattention/tls/ca.crt": str(pki.ca),
        "/var/run/secrets/kubeattention/token": str(token),
        "/var/run/cilium/tetragon/tetragon.log": str(tmp / "tetragon" / "tetragon.log"),
    }

    api = FakeApiServer().start()
    api.tokens[AGENT_TOKEN] = IssuedToken(
        auth.DEFAULT_AGENT_SERVICEACCOUNT,
        ["kubeattention"],
        time.time() + 3600,
        node_name=NODE,
        pod_name="kubeattention-agent-x7k2p",
    )
    kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
    redis = PasswordRedis().start()
    names = ("agg_grpc", "agg_http", "ext_grpc", "ext_http", "agent_http")
    ports = dict(zip(names, free_ports(len(names))))
    procs = []
    try:
        manifest = args_of("kubeattention-aggregator")
        agg_args = substitute(
            manifest,
            files,
            {
                "--redis-url": redis_url_for(manifest[manifest.index("--redis-url") + 1], redis.port),
                "--grpc-listen": f"127.0.0.1:{ports['agg_grpc']}",
                "--http-listen": f"127.0.0.1:{ports['agg_http']}",
            },
        )
        agg = Kubeattention(*agg_args, "--kubeconfig", str(kubeconfig), "--resync-interval-s", "0.3").start()
        procs.append(agg)
        manifest = args_of("kubeattention-extender")
        ext_args = substitute(
            manifest,
            files,
            {
                "--redis-url": redis_url_for(manifest[manifest.index("--redis-url") + 1], redis.port),
                "--grpc-listen": f"127.0.0.1:{ports['ext_grpc']}",
                "--http-listen": f"127.0.0.1:{ports['ext_http']}",
            },
        )
        ext = Kubeattention(*ext_args, "--resync-interval-s", "0.3").start()
        procs.append(ext)
        wait_ready(ports["agg_http"], pki.ca, agg)
        wait_ready(ports["ext_http"], pki.ca, ext)
        agent_args = substitute(
            args_of("kubeattention-agent", "DaemonSet"),
            files,
            {
                "--aggregator": f"127.0.0.1:{ports['agg_grpc']}",
                "--http-listen": f"127.0.0.1:{ports['agent_http']}",
                "--proc-root": "/proc",
                "--sys-root": "/sys",
            },
        )
        # --kubeconfig for the agent's --pods-from apiserver as for the aggregator's TokenReview:
        # in a cluster both use their in-cluster config, which needs a control plane.
        agent = Kubeattention(*agent_args, "--kubeconfig", str(kubeconfig)).start()
        procs.append(agent)
        wait_for_port(ports["agent_http"], proc=agent.proc, timeout=60)
        yield {
            "pki": pki,
            "ports": ports,
            "api": api,
            "agg": agg,
            "ext": ext,
            "agent": agent,
            "scheduler": pki.schedulers[scheduler_name],
            "args": (agg_args, ext_args, agent_args),
        }
    finally:
        for p in reversed(procs):
            p.stop()
        redis.cleanup()
        api.stop()


def node_seen(port: int, ca: Path) -> bool:
    status, body = https(port, ca, "/v1/nodes")
    return status == 200 and NODE in body


def test_agent_pushes_with_its_projected_token_and_the_extender_sees_it(stack):
    pki, ports = stack["pki"], stack["ports"]
    deadline = time.monotonic() + 60
    while not (node_seen(ports["agg_http"], pki.ca) and node_seen(ports["ext_http"], pki.ca)):
        if time.monotonic() > deadline:
            pytest.fail(
                "the node never reached both aggregators:\n"
                f"agent:\n{stack['agent'].output()[-2000:]}\naggregator:\n{stack['agg'].output()[-2000:]}"
            )
        time.sleep(0.3)
    reviews = stack["api"].seen("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert any(
        r.body["spec"]["token"] == AGENT_TOKEN and r.body["spec"]["audiences"] == ["kubeattention"] for r in reviews
    ), "the aggregator verified the agent's token through TokenReview"


def test_extender_scores_for_the_scheduler_certificate_only(stack):
    pki, port = stack["pki"], stack["ports"]["ext_http"]
    deadline = time.monotonic() + 60
    while not node_seen(port, pki.ca) and time.monotonic() < deadline:
        time.sleep(0.3)
    body = json.dumps(
        {
            "Pod": {
                "metadata": {"name": "web-1", "namespace": "default", "uid": "uid-web-1"},
                "spec": {"containers": [{"name": "c"}]},
            },
            "NodeNames": [NODE],
        }
    ).encode()
    status, out = https(port, pki.ca, "/scheduler/prioritize", body, client=stack["scheduler"])
    assert status == 200, out
    assert json.loads(out)[0]["Host"] == NODE
    status, out = https(port, pki.ca, "/scheduler/prioritize", body)
    assert status == 401, out


def test_the_manifest_args_were_used_unchanged_but_for_mounts_and_ports(stack):
    agg_args, ext_args, agent_args = stack["args"]
    assert "--auth-tokenreview" in agg_args and "--tls-cert" in agg_args and "--insecure" not in agg_args
    assert "--tls-client-ca" in ext_args and "--shadow" in ext_args
    assert "--token-file" in agent_args and "--tls-ca" in agent_args and "--insecure" not in agent_args
    assert agent_args[agent_args.index("--node-name") + 1] == NODE
    assert agent_args[agent_args.index("--pods-from") + 1] == "apiserver"


def test_agent_lists_and_watches_its_nodes_pods(stack):
    """--pods-from apiserver from the manifest: the agent asks for its own node's pods only."""
    api = stack["api"]
    assert wait_until(lambda: bool(api.lists() and api.watches()), timeout=30), stack["agent"].output()[-2000:]
    for request in (api.lists()[0], api.watches()[0]):
        assert request.query["fieldSelector"] == [f"spec.nodeName={NODE}"]


REBALANCER_TOKEN = "projected-rebalancer-token-0123456789abcdef"


def test_rebalancer_cronjob_args_score_with_its_token(stack, tmp_path):
    """The CronJob's command line, against the aggregator with --auth-tokenreview: its
    projected token is accepted as a scoring client (not refused, not a node)."""
    api, pki, ports = stack["api"], stack["pki"], stack["ports"]
    api.tokens[REBALANCER_TOKEN] = IssuedToken(
        "system:serviceaccount:kubeattention-system:kubeattention-rebalancer",
        ["kubeattention"],
        time.time() + 3600,
        pod_name="rebalancer-1",
    )
    api.pods = [pod("pod-deployment-running.json", name="web-1", uid="uid-web-1", node="node-a")]
    token = tmp_path / "token"
    token.write_text(REBALANCER_TOKEN)
    args = substitute(
        args_of("kubeattention-rebalancer", "CronJob"),
        {"/etc/kubeattention/tls/ca.crt": str(pki.ca), "/var/run/secrets/kubeattention/token": str(token)},
        {"--aggregator": f"127.0.0.1:{ports['agg_grpc']}"},
    )
    assert "--evict" not in args and "--insecure" not in args
    proc = Kubeattention(*args, "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig")), "--json").start()
    try:
        rc = proc.proc.wait(60)
    finally:
        proc.stop()
    assert rc == 0, proc.output()[-3000:]
    report = re.search(r"^\{$.*^\}$", proc.output(), re.M | re.S)
    assert report and json.loads(report.group(0))["examined"] == 1, proc.output()[-2000:]
    reviews = api.seen("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert any(r.body["spec"]["token"] == REBALANCER_TOKEN for r in reviews), proc.output()[-2000:]
    status, metrics = https(ports["agg_http"], pki.ca, "/metrics")
    assert status == 200
    refusals = [
        ln
        for ln in metrics.splitlines()
        if ln.startswith("kubeattention_aggregator_auth_refusals_total{") and not ln.endswith(" 0.0")
    ]
    assert not refusals, refusals
