"""Identity and transport end to end: the real aggregator over TLS, real gRPC and HTTPS clients.

Two aggregators serve the module: one with mutual TLS (node and scheduler certificates from
``kubeattention certs``), one with server TLS and bearer tokens (a static token file and
TokenReview). TokenReview goes to the simulated API server (tests/fixtures/k8s/apiserver.py)
because no Kubernetes control plane can run here; the aggregator reaches it with the real
``kubernetes`` client through ``--kubeconfig``. Redis, gRPC, TLS and the agent are real.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from fixtures.k8s.apiserver import FakeApiServer, IssuedToken
from procs import REPO, Kubeattention, RedisServer, free_port, free_ports, wait_for_port
from telemetry_factory import batch, telemetry

from aggregator.security import auth
from kubeattention import certs
from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc

pytestmark = pytest.mark.integration

AGENT_SA = auth.DEFAULT_AGENT_SERVICEACCOUNT
NODE_A_TOKEN = "node-a-static-token-0123456789abcdef"
SCHED_TOKEN = "scheduler-static-token-0123456789abcdef"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SecureAggregator:
    """``kubeattention aggregator`` with the given security flags; HTTPS probes trust ``ca``."""

    def __init__(self, redis_url: str, ca: Path, *flags: str):
        self.grpc_port, self.http_port = free_ports(2)
        self.ca = ca
        self.proc = Kubeattention(
            "aggregator",
            "--redis-url",
            redis_url,
            "--grpc-listen",
            self.address,
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--resync-interval-s",
            "0.3",
            *flags,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> SecureAggregator:
        self.proc.start()
        wait_for_port(self.grpc_port, proc=self.proc.proc, timeout=30)
        deadline = time.monotonic() + 20
        while self.https("GET", "/readyz")[0] != 200:
            if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                raise TimeoutError(f"aggregator not ready:\n{self.proc.output()}")
            time.sleep(0.1)
        return self

    def https(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        client_cert: certs.Issued | None = None,
    ) -> tuple[int, str]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert.cert), str(client_cert.key))
        req = urllib.request.Request(
            f"https://127.0.0.1:{self.http_port}{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def channel(self, ca: Path, client: certs.Issued | None = None) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            ca.read_bytes(), client.key.read_bytes() if client else None, client.cert.read_bytes() if client else None
        )
        return grpc.secure_channel(self.address, creds)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.create(tmp_path_factory.mktemp("pki"), ["node-a", "node-b"], ["kube-scheduler"])


def server_tls(pki) -> tuple[str, ...]:
    """The aggregator's flags for its development server certificate."""
    return ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """Certificates from another CA, claiming the same identities."""
    return certs.create(tmp_path_factory.mktemp("stranger"), ["node-a"], ["kube-scheduler"])


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer().start()
    yield server.url
    server.cleanup()


@pytest.fixture(scope="module")
def mtls(pki, redis_url):
    agg = SecureAggregator(redis_url, pki.ca, *server_tls(pki), "--tls-client-ca", str(pki.ca)).start()
    yield agg
    agg.proc.stop()


@pytest.fixture(scope="module")
def apiserver():
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(pki, redis_url, apiserver, tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    (d / "tokens").write_text(f"# static tokens\n{NODE_A_TOKEN} node:node-a\n{SCHED_TOKEN} scheduler:ci-tool\n")
    agg = SecureAggregator(
        redis_url,
        pki.ca,
        *server_tls(pki),
        "--auth-token-file",
        str(d / "tokens"),
        "--auth-tokenreview",
        "--kubeconfig",
        str(apiserver.write_kubeconfig(d / "kubeconfig")),
    ).start()
    agg.token_file = d / "tokens"
    yield agg
    agg.proc.stop()


def push(channel, node: str, metadata=None):
    return telemetry_pb2_grpc.TelemetryServiceStub(channel).Push(
        telemetry(node, collected_ms=now_ms()), timeout=5, metadata=metadata
    )


def score(channel, *nodes, metadata=None):
    return scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore(batch(*nodes), timeout=5, metadata=metadata)


def rpc_error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def bearer(token: str):
    return (("authorization", f"Bearer {token}"),)


# ----------------------------------------------------------------- mTLS


def test_mtls_node_pushes_its_own_telemetry_and_is_denied_another_nodes(mtls, pki):
    with mtls.channel(pki.ca, pki.nodes["node-a"]) as ch:
        ack = push(ch, "node-a")
        assert ack.received_at_unix_ms > 0
        err = rpc_error(lambda: push(ch, "node-b"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'node-a'" in err.details() and "'node-b'" in err.details()
    status, body = mtls.https("GET", "/v1/nodes/node-a")
    assert status == 200 and json.loads(body)["node"] == "node-a"
    assert mtls.https("GET", "/v1/nodes/node-b")[0] == 404  # nothing of the refused push landed


def test_mtls_scoring_takes_a_scheduler_certificate(mtls, pki):
    with mtls.channel(pki.ca, pki.nodes["node-a"]) as ch:
        push(ch, "node-a")
        err = rpc_error(lambda: score(ch, "node-a"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "may not call BatchScore" in err.details()
    with mtls.channel(pki.ca, pki.schedulers["kube-scheduler"]) as ch:
        resp = score(ch, "node-a")
        assert resp.scores[0].status == scoring_pb2.SCORE_STATUS_SCORED
        err = rpc_error(lambda: push(ch, "node-a"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "may not push" in err.details()


def test_mtls_refuses_clients_without_a_certificate_or_from_another_ca(mtls, pki, stranger):
    with mtls.channel(pki.ca) as ch:  # TLS, but no client certificate
        assert rpc_error(lambda: push(ch, "node-a")).code() == grpc.StatusCode.UNAVAILABLE
    with mtls.channel(pki.ca, stranger.nodes["node-a"]) as ch:  # same identity, untrusted CA
        assert rpc_error(lambda: push(ch, "node-a")).code() == grpc.StatusCode.UNAVAILABLE
    with mtls.channel(stranger.ca, pki.nodes["node-a"]) as ch:  # the client does not trust the server
        assert rpc_error(lambda: push(ch, "node-a")).code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(mtls.address) as ch:  # plaintext to a TLS port
        assert rpc_error(lambda: push(ch, "node-a")).code() == grpc.StatusCode.UNAVAILABLE
    status, body = mtls.https("GET", "/metrics")
    assert 'kubeattention_aggregator_auth_refusals_total{code="permission_denied",endpoint="push"}' in body


def extender_body(*nodes: str) -> bytes:
    pod = json.loads((REPO / "tests" / "fixtures" / "k8s" / "pod-deployment-running.json").read_text())
    return json.dumps({"Pod": pod, "NodeNames": list(nodes)}).encode()


def test_https_extender_needs_a_scheduler_certificate_while_probes_stay_open(mtls, pki, stranger):
    body = extender_body("node-a", "node-b")
    status, out = mtls.https("POST", "/scheduler/prioritize", body, client_cert=pki.schedulers["kube-scheduler"])
    assert status == 200 and {h["Host"] for h in json.loads(out)} == {"node-a", "node-b"}
    status, out = mtls.https("POST", "/scheduler/prioritize", body)
    assert status == 401 and "no credentials" in json.loads(out)["Error"]
    status, out = mtls.https("POST", "/scheduler/filter", body, client_cert=pki.nodes["node-a"])
    assert status == 403 and "may not call the extender's filter" in json.loads(out)["Error"]
    status, _ = mtls.https("POST", "/scheduler/prioritize", body, client_cert=stranger.schedulers["kube-scheduler"])
    assert status == 0  # the TLS handshake refuses a certificate from another CA
    for path in ("/healthz", "/readyz", "/metrics", "/v1/nodes"):
        assert mtls.https("GET", path)[0] == 200, path  # read-only: open by design, no certificate needed


def test_a_real_agent_pushes_with_its_node_certificate_and_not_as_another_node(mtls, pki):
    recording = sorted((REPO / "agent" / "recordings").glob("*.jsonl"))[0]

    def agent(node: str, issued: certs.Issued) -> Kubeattention:
        return Kubeattention(
            "agent",
            "--aggregator",
            mtls.address,
            "--node-name",
            node,
            "--replay",
            str(recording),
            "--interval",
            "0.2",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
            "--tls-ca",
            str(pki.ca),
            "--tls-cert",
            str(issued.cert),
            "--tls-key",
            str(issued.key),
        ).start()

    good, impostor = agent("node-b", pki.nodes["node-b"]), agent("node-x", pki.nodes["node-a"])
    try:
        deadline = time.monotonic() + 20
        while mtls.https("GET", "/v1/nodes/node-b")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mtls.https("GET", "/v1/nodes/node-b")[0] == 200, good.output()
        while "PERMISSION_DENIED" not in impostor.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "PERMISSION_DENIED" in impostor.output() and "not node 'node-x'" in impostor.output()
        assert mtls.https("GET", "/v1/nodes/node-x")[0] == 404
        assert "over TLS with a client certificate" in good.output()
    finally:
        assert good.stop() == 0
        impostor.stop()


# ----------------------------------------------------------------- bearer tokens


def test_static_tokens_push_for_their_node_and_score_for_schedulers(tokens, pki):
    with tokens.channel(pki.ca) as ch:
        assert push(ch, "node-a", bearer(NODE_A_TOKEN)).received_at_unix_ms > 0
        err = rpc_error(lambda: push(ch, "node-b", bearer(NODE_A_TOKEN)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not node 'node-b'" in err.details()
        assert score(ch, "node-a", metadata=bearer(SCHED_TOKEN)).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED
        # an unknown token falls through the token file to TokenReview, which refuses it
        for md, words in ((None, "no credentials"), (bearer("wrong-token-0123456789abcdef"), "refused by TokenReview")):
            for call in (lambda md=md: push(ch, "node-a", md), lambda md=md: score(ch, "node-a", metadata=md)):
                err = rpc_error(call)
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED and words in err.details()


def test_tokenreview_node_identity_expiry_and_audience(tokens, pki, apiserver):
    later = time.time() + 3600
    apiserver.tokens.update(
        {
            "tr-agent-b": IssuedToken(AGENT_SA, ["kubeattention"], later, node_name="node-b", pod_name="agent-b"),
            "tr-expired": IssuedToken(AGENT_SA, ["kubeattention"], time.time() - 1, node_name="node-b"),
            "tr-api-audience": IssuedToken(AGENT_SA, ["https://kubernetes.default.svc"], later, node_name="node-b"),
            "tr-scheduler": IssuedToken("system:serviceaccount:kube-system:my-scheduler", ["kubeattention"], later),
            "tr-agent-no-node": IssuedToken(AGENT_SA, ["kubeattention"], later),
        }
    )
    with tokens.channel(pki.ca) as ch:
        assert push(ch, "node-b", bearer("tr-agent-b")).received_at_unix_ms > 0
        err = rpc_error(lambda: push(ch, "node-a", bearer("tr-agent-b")))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'node-b'" in err.details()
        err = rpc_error(lambda: push(ch, "node-b", bearer("tr-expired")))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in err.details()
        err = rpc_error(lambda: push(ch, "node-b", bearer("tr-api-audience")))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "audiences" in err.details()
        err = rpc_error(lambda: push(ch, "node-b", bearer("tr-agent-no-node")))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "carries no node name" in err.details()
        assert score(ch, "node-b", metadata=bearer("tr-scheduler")).scores[0].status == scoring_pb2.SCORE_STATUS_SCORED
        err = rpc_error(lambda: score(ch, "node-b", metadata=bearer("tr-agent-b")))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    reviews = apiserver.seen("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert {r.body["spec"]["token"] for r in reviews} >= {"tr-agent-b", "tr-expired", "tr-scheduler"}
    assert all(r.body["spec"]["audiences"] == ["kubeattention"] for r in reviews)


def test_https_extender_with_bearer_tokens(tokens):
    body = extender_body("node-a")
    status, out = tokens.https("POST", "/scheduler/prioritize", body, {"Authorization": f"Bearer {SCHED_TOKEN}"})
    assert status == 200 and json.loads(out)[0]["Host"] == "node-a"
    status, out = tokens.https("POST", "/scheduler/prioritize", body)
    assert status == 401 and "no credentials" in json.loads(out)["Error"]
    status, out = tokens.https("POST", "/scheduler/prioritize", body, {"Authorization": "Bearer nope-0123456789abcdef"})
    assert status == 401 and "refused by TokenReview" in json.loads(out)["Error"]
    status, out = tokens.https("POST", "/scheduler/filter", body, {"Authorization": f"Bearer {NODE_A_TOKEN}"})
    assert status == 403 and "node 'node-a'" in json.loads(out)["Error"]


def test_agent_token_file_rotation_and_aggregator_token_file_reload(tokens, pki, tmp_path):
    """The agent re-reads its --token-file; the aggregator re-reads --auth-token-file."""
    recording = sorted((REPO / "agent" / "recordings").glob("*.jsonl"))[0]
    original = tokens.token_file.read_text()
    token_path = tmp_path / "token"
    token_path.write_text(NODE_A_TOKEN)
    http_port = free_port()
    agent = Kubeattention(
        "agent",
        "--aggregator",
        tokens.address,
        "--node-name",
        "node-a",
        "--replay",
        str(recording),
        "--interval",
        "0.2",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--tls-ca",
        str(pki.ca),
        "--token-file",
        str(token_path),
    ).start()

    def pushes() -> tuple[float, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        ok = fail = 0.0
        for line in text.splitlines():
            if line.startswith("kubeattention_agent_pushes_total{"):
                value = float(line.rsplit(" ", 1)[1])
                ok, fail = (ok + value, fail) if 'result="ok"' in line else (ok, fail + value)
        return ok, fail

    def wait(pred, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{what}; agent log:\n{agent.output()}")

    try:
        wait(lambda: pushes()[0] >= 2, "pushes with the first token")
        rotated = "node-a-rotated-token-0123456789abcdef"
        tokens.token_file.write_text(original.replace(NODE_A_TOKEN, rotated))  # old token revoked
        wait(lambda: "UNAUTHENTICATED" in agent.output(), "the revoked token refused")
        token_path.write_text(rotated)  # the agent's file rotates: it picks up the new token
        ok_before = pushes()[0]
        wait(lambda: pushes()[0] >= ok_before + 2, "pushes with the rotated token")
    finally:
        tokens.token_file.write_text(original)
        agent.stop()


# ----------------------------------------------------------------- plaintext and refusal


def test_insecure_is_explicit_and_warned_about(redis_url):
    http_port = free_port()
    agg = Kubeattention(
        "aggregator",
        "--redis-url",
        redis_url,
        "--grpc-listen",
        f"127.0.0.1:{free_port()}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--insecure",
    ).start()
    try:
        wait_for_port(http_port, proc=agg.proc, timeout=30)
        deadline = time.monotonic() + 10
        while "transport security:" not in agg.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        out = agg.output()
        assert "WARNING" in out and "--insecure: gRPC and HTTP are plaintext and unauthenticated" in out
        assert "transport security: plaintext, no authentication (--insecure)" in out
    finally:
        agg.stop()


def test_aggregator_and_agent_refuse_to_start_without_a_transport_choice(redis_url):
    ka = [sys.executable, "-m", "kubeattention.cli"]
    out = subprocess.run(
        ka + ["aggregator", "--redis-url", redis_url], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 2
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca", "--auth-token-file", "--auth-tokenreview", "--insecure"):
        assert flag in out.stderr
    out = subprocess.run(
        ka + ["agent", "--node-name", "node-a", "--aggregator", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2 and "--tls-ca" in out.stderr and "--insecure" in out.stderr


def test_score_command_over_mtls(mtls, pki):
    with mtls.channel(pki.ca, pki.nodes["node-a"]) as ch:
        push(ch, "node-a")
    ka = [sys.executable, "-m", "kubeattention.cli", "score", "--aggregator", mtls.address, "--json", "node-a"]
    sched = pki.schedulers["kube-scheduler"]
    out = subprocess.run(
        ka + ["--tls-ca", str(pki.ca), "--tls-cert", str(sched.cert), "--tls-key", str(sched.key)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scores"][0]["status"] == "SCORED"
    node = pki.nodes["node-a"]
    out = subprocess.run(
        ka + ["--tls-ca", str(pki.ca), "--tls-cert", str(node.cert), "--tls-key", str(node.key)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 1 and "PERMISSION_DENIED" in out.stderr


def test_scoring_client_library_over_mtls(mtls, pki):
    from client import ScoringClient
    from wire.client_security import ClientSecurity
    from wire.schema import PodContext, Profile

    with mtls.channel(pki.ca, pki.nodes["node-a"]) as ch:
        push(ch, "node-a")
    sched = pki.schedulers["kube-scheduler"]
    pod = PodContext(cpu_request_cores=0.5, profile=Profile.LATENCY_CRITICAL)
    with ScoringClient(mtls.address, deadline_s=5, security=ClientSecurity(pki.ca, sched.cert, sched.key)) as c:
        assert c.score(pod, ["node-a"]).best().status.name == "SCORED"
    node = pki.nodes["node-a"]
    with ScoringClient(mtls.address, deadline_s=5, security=ClientSecurity(pki.ca, node.cert, node.key)) as c:
        result = c.score(pod, ["node-a"])
    assert result.fallback and "PERMISSION_DENIED" in result.fallback_reason
