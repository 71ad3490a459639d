"""Redis with a password, an ACL user limited to the ``ka:`` keys and channels, and TLS:
a real redis-server (Debian's 7.0, built with TLS) configured each way, the real aggregator
and redis-py. A credential or ACL problem stops the aggregator at start with the missing
permission named."""

from __future__ import annotations

import subprocess
import sys
import time

import grpc
import pytest
import redis
from procs import REPO, Kubeattention, RedisServer, RedisTLS, free_port, free_ports, wait_for_port
from telemetry_factory import telemetry

from aggregator.redis_access import RedisAccessError, check_redis_access
from aggregator.store import RedisStore
from kubeattention import certs
from wire.v1 import telemetry_pb2_grpc

pytestmark = pytest.mark.integration

KA_USER = "ka on >ka-password ~ka:* &ka:* +@all -@dangerous"
#: Keys under another prefix only: the aggregator's ka:* keys and channel are out of reach.
NARROW_USER = "narrow on >narrow-password ~other:* &other:* +@all -@dangerous"
#: The keys, but no pub/sub channel (Redis 7 users start with no channels) and no PUBLISH.
NO_CHANNEL_USER = "nochan on >nochan-password ~ka:* +@all -@dangerous -publish"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.create(tmp_path_factory.mktemp("pki"), [], ["aggregator-redis-client"])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_aggregator(url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeattention.cli",
            "aggregator",
            "--redis-url",
            url,
            "--insecure",
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def push_through_aggregator(url: str, node: str) -> None:
    grpc_port, http_port = free_ports(2)
    agg = Kubeattention(
        "aggregator",
        "--redis-url",
        url,
        "--insecure",
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
    ).start()
    try:
        wait_for_port(grpc_port, proc=agg.proc, timeout=30)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            telemetry_pb2_grpc.TelemetryServiceStub(ch).Push(telemetry(node, collected_ms=now_ms()), timeout=10)
    finally:
        code = agg.stop()
    assert code == 0, agg.output()
    assert "lacks permissions" not in agg.output()


def test_requirepass_url_with_password_works_and_wrong_or_missing_password_stops_the_start():
    server = RedisServer(password="s3cret-pass").start()
    try:
        push_through_aggregator(server.url, "node-pw")
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        assert admin.hget("ka:node:{node-pw}", "schema") is not None
        wrong = run_aggregator(server.url_for(None, "wrong"))
        assert wrong.returncode == 2
        assert (
            "refused the credentials of user 'default'" in wrong.stderr
            and "wrong" not in wrong.stderr.split("refused")[0]
        )
        missing = run_aggregator(server.url_for(None, None))
        assert missing.returncode == 2 and "wants credentials" in missing.stderr
    finally:
        server.cleanup()


def test_acl_user_limited_to_the_prefix_is_enough_and_narrower_users_are_told_what_is_missing():
    server = RedisServer(users=(KA_USER, NARROW_USER, NO_CHANNEL_USER)).start()
    try:
        push_through_aggregator(server.url_for("ka", "ka-password"), "node-acl")
        assert redis.Redis.from_url(server.url).exists("ka:node:{node-acl}") == 1

        narrow = run_aggregator(server.url_for("narrow", "narrow-password"))
        assert narrow.returncode == 2
        assert "Redis user 'narrow'" in narrow.stderr and "lacks permissions the aggregator needs" in narrow.stderr
        for words in (
            "write node hashes (ka:node:{kubeattention-access-check})",
            "update the node index (ka:nodes)",
            "append history",
            "publish updates (channel ka:updates)",
            "no permissions to access one of the keys",
            "ACL SETUSER narrow ~ka:* &ka:*",
        ):
            assert words in narrow.stderr, words

        with pytest.raises(RedisAccessError) as info:
            check_redis_access(redis.Redis.from_url(server.url_for("nochan", "nochan-password")), "ka:")
        text = str(info.value)
        assert "publish updates (channel ka:updates): PUBLISH ka:updates -> NOPERM" in text
        assert "no permissions to run the 'publish' command" in text
        assert "subscribe to updates (channel ka:updates)" in text and "channels used as arguments" in text
        assert "write node hashes" not in text  # the keys themselves are allowed
        # the check queued commands in MULTI and discarded them: nothing was written
        assert redis.Redis.from_url(server.url).keys("ka:*kubeattention-access-check*") == []
    finally:
        server.cleanup()


def test_tls_redis_with_a_client_certificate_and_an_acl_user(pki):
    client = pki.schedulers["aggregator-redis-client"]
    tls = RedisTLS(
        pki.server.cert, pki.server.key, pki.ca, client_auth=True, client_cert=client.cert, client_key=client.key
    )
    server = RedisServer(users=(KA_USER,), tls=tls).start()
    try:
        url = server.url_for("ka", "ka-password")
        assert url.startswith("rediss://ka:ka-password@127.0.0.1:")
        push_through_aggregator(url, "node-tls")
        store = RedisStore(server.url)  # rediss:// with the CA and client certificate, default user
        try:
            assert store.read_node("node-tls").node_name == "node-tls"
            assert check_redis_access(store.client, "ka:") is True
        finally:
            store.close()
        plaintext = redis.Redis(port=server.port, socket_timeout=2)
        with pytest.raises(redis.ConnectionError):
            plaintext.ping()  # the port speaks TLS only
        no_client_cert = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={pki.ca}"
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(no_client_cert, socket_timeout=2).ping()
    finally:
        server.cleanup()
