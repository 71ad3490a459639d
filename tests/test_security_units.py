"""Identity and transport, the pure parts: certificates, token files, TokenReview mapping,
the authorization rules, flag validation of the aggregator and of every client.

TokenReview runs against the simulated API server (tests/fixtures/k8s/apiserver.py), through
the real ``kubernetes`` client: no Kubernetes control plane can run on this machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from fixtures.k8s.apiserver import FakeApiServer, IssuedToken

from aggregator.config import AggregatorConfig
from aggregator.errors import ConfigError
from aggregator.security import auth
from aggregator.security.auth import (
    ANONYMOUS_PRINCIPAL,
    Authenticator,
    PermissionDenied,
    Principal,
    StaticTokens,
    TokenReviewer,
    Unauthenticated,
    VerifierUnavailable,
    authorize_push,
    authorize_score,
    kubernetes_token_review,
    principal_from_uris,
)
from kubeattention import certs
from wire.client_security import ClientSecurity, TokenFile, TokenFileError

AGENT_SA = auth.DEFAULT_AGENT_SERVICEACCOUNT


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.create(tmp_path_factory.mktemp("pki"), ["node-a", "node-b"], ["sched"])


# ----------------------------------------------------------------- certificates


def test_certs_carry_the_identity_the_aggregator_reads(pki):
    cert = x509.load_pem_x509_certificate(pki.nodes["node-a"].cert.read_bytes())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == ["spiffe://kubeattention/node/node-a"]
    assert principal_from_uris(uris) == Principal("node", "node-a", "certificate")
    sched = x509.load_pem_x509_certificate(pki.schedulers["sched"].cert.read_bytes())
    assert principal_from_uris(
        sched.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    ) == Principal("scheduler", "sched", "certificate")
    assert oct(pki.nodes["node-a"].key.stat().st_mode & 0o777) == "0o600"


def test_server_certificate_names_loopback_and_the_in_cluster_service(pki):
    cert = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubeattention-aggregator.kubeattention-system.svc"} <= set(
        san.get_values_for_type(x509.DNSName)
    )
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_rerunning_certs_reuses_the_ca_so_new_nodes_are_trusted(tmp_path):
    first = certs.create(tmp_path, ["a"], [])
    ca_before = first.ca.read_bytes()
    second = certs.create(tmp_path, ["b"], [])
    assert second.ca.read_bytes() == ca_before
    ca = x509.load_pem_x509_certificate(ca_before)
    leaf = x509.load_pem_x509_certificate(second.nodes["b"].cert.read_bytes())
    leaf.verify_directly_issued_by(ca)


def test_certs_command_refuses_bad_names(tmp_path, capsys):
    from kubeattention import cli

    assert cli.main(["certs", "--out", str(tmp_path), "--nodes", "Good,BAD_name,x,x"]) == 2
    err = capsys.readouterr().err
    assert "--nodes" in err and "BAD_name" in err and "repeat: x" in err


# ----------------------------------------------------------------- identities and rules


@pytest.mark.parametrize(
    "uris, expected",
    [
        (["spiffe://kubeattention/node/node-a"], Principal("node", "node-a", "certificate")),
        (["spiffe://kubeattention/scheduler/kube-scheduler"], Principal("scheduler", "kube-scheduler", "certificate")),
        (["spiffe://kubeattention/admin/x"], None),  # unknown kind
        (["spiffe://kubeattention/node/UPPER"], None),  # not a node name
        (["spiffe://other/node/node-a"], None),  # another trust domain
        (["spiffe://kubeattention/node/a", "spiffe://kubeattention/node/b"], None),  # ambiguous
        ([], None),
    ],
)
def test_certificate_identity(uris, expected):
    assert principal_from_uris(uris) == expected


def test_push_only_for_own_node_and_scoring_only_for_schedulers():
    node_a = Principal("node", "node-a", "certificate")
    sched = Principal("scheduler", "ks", "token file")
    authorize_push(node_a, "node-a")
    with pytest.raises(PermissionDenied, match="'node-a'.*not node 'node-b'"):
        authorize_push(node_a, "node-b")
    with pytest.raises(PermissionDenied, match="may not push"):
        authorize_push(sched, "node-a")
    with pytest.raises(PermissionDenied, match="carries no node name"):
        authorize_push(Principal("node", "", "TokenReview"), "node-a")
    authorize_score(sched)
    with pytest.raises(PermissionDenied, match="may not call BatchScore"):
        authorize_score(node_a)
    authorize_push(ANONYMOUS_PRINCIPAL, "anything")
    authorize_score(ANONYMOUS_PRINCIPAL)


def token_file(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


NODE_TOKEN = "n" * 32
SCHED_TOKEN = "s" * 32


def test_authenticator_order_and_messages(tmp_path):
    tokens = StaticTokens(token_file(tmp_path / "t", f"{NODE_TOKEN} node:node-a", f"{SCHED_TOKEN} scheduler:ks"))
    a = Authenticator(client_certs=True, verifiers=[tokens])
    assert a.principal(["spiffe://kubeattention/node/node-b"], f"Bearer {NODE_TOKEN}").name == "node-b"  # cert first
    assert a.principal([], f"bearer {SCHED_TOKEN}") == Principal("scheduler", "ks", "token file")
    with pytest.raises(
        Unauthenticated,
        match="no credentials: present a client certificate .* or an 'authorization: Bearer TOKEN' header",
    ):
        a.principal([], None)
    with pytest.raises(Unauthenticated, match="not recognised"):
        a.principal([], "Bearer " + "x" * 32)
    with pytest.raises(Unauthenticated, match="not 'Bearer TOKEN'"):
        a.principal([], "Basic dXNlcg==")
    only_certs = Authenticator(client_certs=True)
    with pytest.raises(Unauthenticated, match="carries no kubeattention identity"):
        only_certs.principal(["spiffe://elsewhere/x"], None)
    assert Authenticator().principal([], None) is ANONYMOUS_PRINCIPAL


@pytest.mark.parametrize(
    "lines, words",
    [
        (["short node:a"], "at least 16"),
        ([f"{NODE_TOKEN} admin:x"], "must be node:NAME or scheduler:NAME"),
        ([f"{NODE_TOKEN} node:Bad_Name"], "not a valid Kubernetes name"),
        ([f"{NODE_TOKEN}"], "got 1 fields"),
        ([f"{NODE_TOKEN} node:a", f"{NODE_TOKEN} node:b"], ":2: the same token appears twice"),
        (["# only a comment"], "holds no tokens"),
    ],
)
def test_token_file_errors_name_the_line(tmp_path, lines, words):
    with pytest.raises(ValueError, match=words):
        StaticTokens(token_file(tmp_path / "t", *lines))


def test_token_file_is_reloaded_on_change_and_a_bad_edit_keeps_the_old_tokens(tmp_path, caplog):
    now = [0.0]
    path = token_file(tmp_path / "t", f"{NODE_TOKEN} node:node-a   # the first node")
    tokens = StaticTokens(path, clock=lambda: now[0])
    assert tokens.verify(NODE_TOKEN).name == "node-a"
    token_file(path, f"{SCHED_TOKEN} scheduler:ks")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert tokens.verify(SCHED_TOKEN) is None  # not checked again within TOKEN_FILE_CHECK_S
    now[0] += auth.TOKEN_FILE_CHECK_S
    assert tokens.verify(SCHED_TOKEN).kind == "scheduler" and tokens.verify(NODE_TOKEN) is None
    token_file(path, "garbage")
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    now[0] += auth.TOKEN_FILE_CHECK_S
    assert tokens.verify(SCHED_TOKEN).kind == "scheduler"
    assert "keeping the 1 tokens loaded before" in caplog.text


# ----------------------------------------------------------------- TokenReview (simulated API server)


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    yield server
    server.stop()


def issue(
    api: FakeApiServer,
    token: str,
    username: str,
    *,
    node: str | None = None,
    audiences=("kubeattention",),
    ttl_s: float = 3600,
) -> str:
    api.tokens[token] = IssuedToken(
        username,
        list(audiences),
        time.time() + ttl_s,
        node_name=node,
        pod_name="kubeattention-agent-x7k2p" if node else None,
    )
    return token


def test_tokenreview_maps_agent_tokens_to_their_node_and_others_to_schedulers(apiserver):
    clock = [0.0]
    reviewer = TokenReviewer(kubernetes_token_review(apiserver.api_client()), AGENT_SA, clock=lambda: clock[0])
    issue(apiserver, "agent-a", AGENT_SA, node="node-a")
    issue(apiserver, "sched", "system:serviceaccount:kube-system:kube-scheduler")
    issue(apiserver, "old-agent", AGENT_SA)  # Kubernetes < 1.30: no node-name extra
    assert reviewer.verify("agent-a") == Principal("node", "node-a", "TokenReview")
    assert reviewer.verify("sched") == Principal("scheduler", "kube-system:kube-scheduler", "TokenReview")
    assert reviewer.verify("old-agent") == Principal("node", "", "TokenReview")
    (first, *_) = apiserver.seen("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert first.body["spec"] == {"token": "agent-a", "audiences": ["kubeattention"]}

    calls = reviewer.calls
    assert reviewer.verify("agent-a").name == "node-a"
    assert reviewer.calls == calls  # cached
    clock[0] += auth.TOKENREVIEW_TTL_S
    reviewer.verify("agent-a")
    assert reviewer.calls == calls + 1  # cache expired: asked again


def test_tokenreview_refusals_say_why(apiserver):
    clock = [0.0]
    reviewer = TokenReviewer(kubernetes_token_review(apiserver.api_client()), AGENT_SA, clock=lambda: clock[0])
    issue(apiserver, "expired", AGENT_SA, node="node-a", ttl_s=-1)
    issue(apiserver, "for-the-api", AGENT_SA, node="node-a", audiences=("https://kubernetes.default.svc",))
    with pytest.raises(Unauthenticated, match="service account token has expired"):
        reviewer.verify("expired")
    with pytest.raises(Unauthenticated, match="is invalid for the target audiences"):
        reviewer.verify("for-the-api")
    with pytest.raises(Unauthenticated, match="refused by TokenReview"):
        reviewer.verify("never-issued")
    calls = reviewer.calls
    with pytest.raises(Unauthenticated):
        reviewer.verify("never-issued")
    assert reviewer.calls == calls  # refusals are cached briefly too
    issue(apiserver, "never-issued", AGENT_SA, node="node-a")
    clock[0] += auth.TOKENREVIEW_NEGATIVE_TTL_S
    assert reviewer.verify("never-issued").name == "node-a"


def test_tokenreview_outage_is_unavailable_and_not_cached(apiserver):
    reviewer = TokenReviewer(kubernetes_token_review(apiserver.api_client()), AGENT_SA)
    issue(apiserver, "agent-a", AGENT_SA, node="node-a")
    apiserver.stop()
    with pytest.raises(VerifierUnavailable, match="TokenReview failed"):
        reviewer.verify("agent-a")
    assert reviewer._cached(auth._digest("agent-a")) is None


# ----------------------------------------------------------------- flags


def test_aggregator_refuses_to_start_without_a_mode_and_names_the_flags():
    with pytest.raises(ConfigError) as info:
        AggregatorConfig()
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca", "--auth-token-file", "--auth-tokenreview", "--insecure"):
        assert flag in str(info.value)


def test_aggregator_security_flag_problems_are_reported_together(pki, tmp_path):
    with pytest.raises(ConfigError) as info:
        AggregatorConfig(
            tls_cert=str(pki.server.cert),
            tls_client_ca=str(tmp_path / "nope.pem"),
            insecure=True,
            auth_token_file=str(token_file(tmp_path / "t", "short node:a")),
        )
    text = str(info.value)
    for words in (
        "--tls-cert and --tls-key: give both",
        "--insecure: conflicts",
        "--tls-client-ca: no such file",
        "at least 16",
    ):
        assert words in text
    with pytest.raises(ConfigError, match="cannot be used together"):
        AggregatorConfig(tls_cert=str(pki.server.cert), tls_key=str(pki.nodes["node-a"].key))


def parse_client(*argv: str) -> ClientSecurity:
    from wire.client_security import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return ClientSecurity.from_args(p.parse_args(list(argv)))


def test_client_flags_need_tls_or_an_explicit_insecure(pki, tmp_path):
    assert "choose how to reach the aggregator" in parse_client().problems()[0]
    assert "must not travel in plaintext" in parse_client("--token-file", str(pki.ca)).problems()[0]
    assert parse_client("--token-file", str(pki.ca), "--insecure").problems() == []
    assert parse_client("--tls-ca", str(pki.ca)).problems() == []
    both = parse_client("--tls-ca", str(pki.ca), "--insecure", "--tls-cert", str(pki.nodes["node-a"].cert))
    assert any("conflicts" in p for p in both.problems()) and any("give both" in p for p in both.problems())
    assert "--tls-ca: no such file" in parse_client("--tls-ca", str(tmp_path / "x")).problems()[0]


def test_agent_refuses_to_push_without_a_transport_choice():
    from agent.config import AgentConfig
    from agent.config import ConfigError as AgentConfigError

    with pytest.raises(AgentConfigError) as info:
        AgentConfig(node_name="node-a")
    assert "--tls-ca" in str(info.value) and "--insecure" in str(info.value)
    AgentConfig(node_name="node-a", aggregator="none")  # HTTP only: no pushes, nothing to secure


def test_scoring_client_needs_security(pki):
    from client import ClientConfigError, ScoringClient

    with pytest.raises(ClientConfigError, match="ClientSecurity\\(insecure=True\\)"):
        ScoringClient("127.0.0.1:1")
    with pytest.raises(ClientConfigError, match="choose how to reach"):
        ScoringClient("127.0.0.1:1", security=ClientSecurity())
    ScoringClient("127.0.0.1:1", security=ClientSecurity(tls_ca=pki.ca)).close()


def test_token_file_is_reread_when_rotated_like_a_projected_token(tmp_path):
    # kubelet writes projected tokens into a timestamped directory and swaps the ..data symlink
    first, second = tmp_path / "..2026_11_29_1", tmp_path / "..2026_11_29_2"
    first.mkdir()
    second.mkdir()
    (first / "token").write_text("token-one\n")
    (second / "token").write_text("token-two")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "token").symlink_to("..data/token")
    tokens = TokenFile(tmp_path / "token")
    assert tokens.token() == "token-one"
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert tokens.token() == "token-two"
    (tmp_path / "..data").unlink()  # mid-swap: the file is briefly gone; keep the last good token
    assert tokens.token() == "token-two"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(TokenFileError, match="empty"):
        TokenFile(empty)


def test_tokenreview_without_a_reachable_kubernetes_config_stops_the_start():
    from aggregator.security import options as security
    from kubeapi.api_client import KubeConfigError

    def no_config(kubeconfig):
        raise KubeConfigError("no Kubernetes client configuration from the default kubeconfig: none")

    cfg = AggregatorConfig(auth_tokenreview=True)
    with pytest.raises(security.SecuritySetupError, match="--auth-tokenreview: no Kubernetes client configuration"):
        security.authenticator(cfg, api_client_factory=no_config)
    assert "bearer tokens over plaintext" in security.warnings(cfg)[0]


def test_certs_command_writes_what_it_prints(tmp_path, capsys):
    from kubeattention import cli

    assert (
        cli.main(
            [
                "certs",
                "--out",
                str(tmp_path),
                "--nodes",
                "w1,w2",
                "--schedulers",
                "ks",
                "--hosts",
                "agg.example.org,10.0.0.7",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "identity spiffe://kubeattention/node/w2" in out and "identity spiffe://kubeattention/scheduler/ks" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ca.pem", "ca-key.pem", "aggregator.pem", "node-w1.pem", "node-w2-key.pem", "scheduler-ks.pem"} <= names
    san = (
        x509.load_pem_x509_certificate((tmp_path / "aggregator.pem").read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "agg.example.org" in san.get_values_for_type(x509.DNSName)
    assert "10.0.0.7" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
