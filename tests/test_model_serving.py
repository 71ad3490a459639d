"""Hot model reload end to end: real redis-server, real aggregator processes, real gRPC, real CLI.

A model published with ``kubeattention model publish`` must reach every running aggregator
without a restart and without a failed BatchScore; bad models must be refused — at publish
by the CLI, and by running aggregators when they are written into Redis directly — while the
old model keeps serving. Nothing is mocked.

The aggregators run with ``--budget-ms 1000``: the machine's two cores are shared with other
test runs, and what is under test is that a swap fails no call, not the 45 ms budget (which
test_aggregator_integration and bench/ cover).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
import redis
from model_files import default_with, linear_model, trained_model
from procs import REPO, Kubeattention, free_ports, wait_for_port
from prometheus_client.parser import text_string_to_metric_families
from telemetry_factory import batch, telemetry

from inference.model import DEFAULT_MODEL_PATH, InterferenceModel
from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc

pytestmark = pytest.mark.integration

DEFAULT_VERSION = InterferenceModel.load().version
NODES = ("quiet", "busy")
#: How soon every running aggregator must answer with a newly published model.
PICKUP_BOUND_S = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    """A second real model from scorer's training and export code (2 000 rows, a few seconds)."""
    path = trained_model(tmp_path_factory.mktemp("models") / "second.onnx")
    version = InterferenceModel.load(path).version
    assert version != DEFAULT_VERSION
    return path, version


class Aggregator:
    def __init__(self, redis_url: str, *extra: str):
        self.grpc_port, self.http_port = free_ports(2)
        self.proc = Kubeattention(
            "aggregator",
            "--insecure",
            "--redis-url",
            redis_url,
            "--grpc-listen",
            f"127.0.0.1:{self.grpc_port}",
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--max-staleness-ms",
            "120000",
            "--resync-interval-s",
            "0.3",
            "--budget-ms",
            "1000",
            *extra,
        )
        self.channel = None

    def start(self) -> Aggregator:
        self.proc.start()
        wait_for_port(self.http_port, proc=self.proc.proc, timeout=30)
        wait_for_port(self.grpc_port, proc=self.proc.proc, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and '"ready":true' not in self.http("/readyz", ok_only=False):
            time.sleep(0.1)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return self

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.proc.stop()

    def http(self, path: str, ok_only: bool = True) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            if ok_only:
                raise
            return e.read().decode()

    def score(self) -> scoring_pb2.BatchScoreResponse:
        return scoring_pb2_grpc.ScoringServiceStub(self.channel).BatchScore(batch(*NODES), timeout=5)

    def push_nodes(self) -> None:
        stub = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)
        stub.Push(telemetry("quiet", collected_ms=now_ms()), timeout=5)
        stub.Push(
            telemetry("busy", collected_ms=now_ms(), cpu_utilization=1.0, cpu_psi_some=0.6, process_churn_per_s=800.0),
            timeout=5,
        )

    def metrics(self) -> dict[tuple, float]:
        out = {}
        for fam in text_string_to_metric_families(self.http("/metrics")):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def model_info(self) -> dict[str, str]:
        infos = [
            dict(labels)
            for (name, labels), v in self.metrics().items()
            if name == "kubeattention_aggregator_model_info" and v == 1
        ]
        assert len(infos) == 1, infos
        return infos[0]

    def metric(self, name: str, **labels) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def model_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", "model", *args, "--redis-url", redis_url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def write_active_directly(redis_url: str, data: bytes, version: str, announce: bool) -> None:
    """Write ka:model:{active} as the README documents it, bypassing the CLI's checks."""
    sha = hashlib.sha256(data).hexdigest()
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        r.hset(
            "ka:model:{active}",
            mapping={
                "version": version,
                "sha256": sha,
                "size_bytes": str(len(data)),
                "onnx_base64": base64.b64encode(data).decode(),
                "published_at_ms": str(now_ms()),
                "published_by": "test@bypass",
                "source": "direct",
                "previous": "",
            },
        )
        if announce:
            r.publish("ka:model:updates", f"{version} {sha}")


class Caller(threading.Thread):
    """Calls BatchScore on every aggregator in turn, without pause, and records every answer."""

    def __init__(self, aggregators: list[Aggregator]):
        super().__init__(daemon=True)
        self.aggregators = aggregators
        # (aggregator, wall time answered, version, statuses, busy's predicted slowdown)
        self.answers: list[tuple[int, float, str, list[int], float]] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for i, agg in enumerate(self.aggregators):
                try:
                    resp = agg.score()
                except grpc.RpcError as e:
                    self.errors.append(f"aggregator {i}: {e.code().name}: {e.details()}")
                    continue
                self.answers.append(
                    (
                        i,
                        time.time(),
                        resp.model_version,
                        [s.status for s in resp.scores],
                        resp.scores[1].predicted_slowdown,
                    )
                )

    def latest_versions(self) -> set[str]:
        latest = {}
        for i, _, version, _, _ in list(self.answers):
            latest[i] = version
        return set(latest.values()) if len(latest) == len(self.aggregators) else set()


def test_a_published_model_reaches_two_running_aggregators_without_a_failed_request(redis_server, second_model):
    path, version = second_model
    # --model-check-interval-s 60: within the bound below only the pub/sub announcement can do it
    aggs = [Aggregator(redis_server.url, "--model-check-interval-s", "60").start() for _ in range(2)]
    caller = Caller(aggs)
    try:
        aggs[0].push_nodes()
        wait_until(
            lambda: all(s.status == scoring_pb2.SCORE_STATUS_SCORED for s in aggs[1].score().scores),
            10,
            "the second aggregator has the nodes pushed to the first",
        )
        for agg in aggs:
            assert agg.model_info() == {
                "version": DEFAULT_VERSION,
                "source": "file",
                "sha256": hashlib.sha256(DEFAULT_MODEL_PATH.read_bytes()).hexdigest()[:12],
            }
        caller.start()
        wait_until(lambda: len(caller.answers) >= 20, 10, "baseline answers")

        done = model_cli(redis_server.url, "publish", str(path))
        assert done.returncode == 0, done.stderr
        assert f"published model {version}" in done.stdout and "replacing no model" in done.stdout
        wait_until(
            lambda: caller.latest_versions() == {version}, PICKUP_BOUND_S, f"both aggregators answer with {version}"
        )
        n = len(caller.answers)
        wait_until(lambda: len(caller.answers) >= n + 20, 10, "answers after the swap")
    finally:
        caller.halt.set()
        caller.join(10)

    try:
        assert caller.errors == []
        answers = caller.answers
        assert all(statuses == [scoring_pb2.SCORE_STATUS_SCORED] * 2 for *_, statuses, _ in answers)
        for i in range(2):
            versions = [v for a, _, v, _, _ in answers if a == i]
            switch = versions.index(version)
            # old model until the swap, the new one from then on, never back
            assert versions[:switch] == [DEFAULT_VERSION] * switch and switch > 0
            assert versions[switch:] == [version] * (len(versions) - switch)
            slowdowns = {v: s for a, _, v, _, s in answers if a == i}
            assert slowdowns[DEFAULT_VERSION] != slowdowns[version]  # the new model really scores
            info = aggs[i].model_info()
            assert info["version"] == version and info["source"] == "redis"
            assert aggs[i].metric("kubeattention_aggregator_model_reloads_total") == 1
            assert f"model {version}" in aggs[i].proc.output() and "now serves BatchScore" in aggs[i].proc.output()
            assert f'"model_version":"{version}"' in aggs[i].http("/v1/nodes").replace(" ", "")
        # from the moment the CLI wrote the model to the first answer by the new model, per aggregator
        with redis.Redis.from_url(redis_server.url, decode_responses=True) as r:
            written = int(r.hget("ka:model:{active}", "published_at_ms")) / 1000
        pickup = [min(t for a, t, v, _, _ in answers if a == i and v == version) - written for i in range(2)]
        assert max(pickup) < PICKUP_BOUND_S
        print(
            f"\npublished model served by both aggregators {max(pickup) * 1000:.0f} ms after it was written "
            f"(per aggregator: {', '.join(f'{p * 1000:.0f} ms' for p in pickup)}); "
            f"{len(answers)} BatchScore calls, 0 failed"
        )
    finally:
        for agg in aggs:
            agg.stop()


def test_bad_models_are_refused_at_publish_and_by_a_running_aggregator(redis_server, second_model, tmp_path):
    path, version = second_model
    agg = Aggregator(redis_server.url, "--model-check-interval-s", "0.5").start()
    try:
        assert (
            "no model published in Redis yet (ka:model:{active} absent): serving " + DEFAULT_VERSION
            in agg.proc.output()
        )
        agg.push_nodes()

        # --- refused by the CLI: nothing reaches Redis
        bad_files = {
            "truncated.onnx": (
                DEFAULT_MODEL_PATH.read_bytes()[:5000],
                "refused (corrupt)",
                "not a loadable ONNX model",
            ),
            "schema2.onnx": (
                default_with(schema_version="2", model_version="mlp-schema2"),
                "refused (mismatch)",
                "schema_version is 2, this code speaks 1",
            ),
            "narrow.onnx": (
                linear_model("lin-25", width=25),
                "refused (mismatch)",
                "has shape [None, 25], expected [None, 26]",
            ),
        }
        for name, (data, first, second) in bad_files.items():
            (tmp_path / name).write_bytes(data)
            done = model_cli(redis_server.url, "publish", str(tmp_path / name))
            assert done.returncode == 2, done.stdout
            assert first in done.stderr and second in done.stderr and name in done.stderr
            assert "nothing published" in done.stderr
        with redis.Redis.from_url(redis_server.url) as r:
            assert not r.exists("ka:model:{active}")

        done = model_cli(redis_server.url, "publish", str(path))
        assert done.returncode == 0, done.stderr
        wait_until(lambda: agg.score().model_version == version, PICKUP_BOUND_S, "the valid model serves")

        # --- written into Redis directly, bypassing the CLI: the aggregator refuses, the model keeps serving
        broken = DEFAULT_MODEL_PATH.read_bytes()[:5000]
        write_active_directly(redis_server.url, broken, "broken-1", announce=True)
        wait_until(
            lambda: agg.metric("kubeattention_aggregator_model_refused_total", reason="corrupt") == 1,
            PICKUP_BOUND_S,
            "the corrupt model is refused",
        )
        mismatched = default_with(schema_version="2", model_version="mlp-schema2")
        write_active_directly(redis_server.url, mismatched, "mlp-schema2", announce=True)
        wait_until(
            lambda: agg.metric("kubeattention_aggregator_model_refused_total", reason="mismatch") == 1,
            PICKUP_BOUND_S,
            "the mismatched model is refused",
        )
        time.sleep(1.2)  # two more periodic checks: refused models are not reloaded or counted again
        assert agg.metric("kubeattention_aggregator_model_refused_total", reason="mismatch") == 1
        resp = agg.score()
        assert resp.model_version == version
        assert [s.status for s in resp.scores] == [scoring_pb2.SCORE_STATUS_SCORED] * 2
        assert agg.model_info()["version"] == version
        log = agg.proc.output()
        assert "refusing model broken-1 published in Redis (corrupt)" in log
        assert "not a loadable ONNX model" in log
        assert "refusing model mlp-schema2 published in Redis (mismatch)" in log
        assert "schema_version is 2, this code speaks 1" in log
        assert f"still serving {version}" in log

        # --- a good model written without an announcement: the periodic check still finds it
        write_active_directly(redis_server.url, DEFAULT_MODEL_PATH.read_bytes(), DEFAULT_VERSION, announce=False)
        wait_until(
            lambda: agg.score().model_version == DEFAULT_VERSION,
            PICKUP_BOUND_S,
            "the periodic check picks up an unannounced model",
        )
        assert agg.metric("kubeattention_aggregator_model_reloads_total") == 2
        assert agg.proc.proc.poll() is None
    finally:
        agg.stop()


def test_a_restarted_aggregator_serves_the_model_published_in_redis(redis_server, second_model):
    path, version = second_model
    done = model_cli(redis_server.url, "publish", str(path))
    assert done.returncode == 0, done.stderr
    shown = model_cli(redis_server.url, "show")
    assert shown.returncode == 0 and version in shown.stdout and "model_kind          mlp" in shown.stdout
    # A model trained on synthetic rows only says so (scorer.calibration.provenance.SYNTHETIC_ONLY).
    assert "validated on        not validated on any measured node" in shown.stdout

    agg = Aggregator(redis_server.url).start()
    try:
        agg.push_nodes()
        assert agg.score().model_version == version  # the first answer already
        assert agg.model_info()["source"] == "redis"
        assert "serving the model published in Redis (ka:model:{active})" in agg.proc.output()
    finally:
        agg.stop()

    pinned = Aggregator(redis_server.url, "--model-source", "file").start()
    try:
        assert pinned.score().model_version == DEFAULT_VERSION
        assert pinned.model_info()["source"] == "file"
        assert "--model-source file: models published in Redis are ignored" in pinned.proc.output()
    finally:
        pinned.stop()


def test_rollback_and_list_through_the_cli(redis_server, second_model):
    path, version = second_model
    assert model_cli(redis_server.url, "publish", str(DEFAULT_MODEL_PATH)).returncode == 0
    assert model_cli(redis_server.url, "publish", str(path)).returncode == 0
    again = model_cli(redis_server.url, "publish", str(path))
    assert again.returncode == 0 and "already the active model" in again.stdout
    listed = model_cli(redis_server.url, "list").stdout.splitlines()
    assert listed[1].startswith(f"* {version}") and listed[2].startswith(f"  {DEFAULT_VERSION}")
    back = model_cli(redis_server.url, "rollback")
    assert back.returncode == 0 and f"rolled back to model {DEFAULT_VERSION}" in back.stdout
    assert f"replacing {version}" in back.stdout
    missing = model_cli(redis_server.url, "rollback", "--to", "mlp-nope")
    assert missing.returncode == 2 and "'mlp-nope' is not kept" in missing.stderr
