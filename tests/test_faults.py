"""Fault injection on real processes: Redis killed, paused and slowed, the aggregator killed,
agent clocks off.

Every process is the real one (redis-server, ``kubeattention aggregator``, ``kubeattention
agent --replay``); faults are real signals (SIGKILL, SIGSTOP) and real Redis commands
(DEBUG SLEEP). What "acknowledged" means here: a Push that returned OK. The aggregator
answers OK only after Redis replied to every command of the node's write; with
``appendonly yes`` and ``appendfsync always`` Redis replies only after the write is
fsynced to its append-only file, so an acknowledged push survives a SIGKILL of Redis.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time

import grpc
import pytest
import redis
from procs import REPO, Kubeattention, RedisServer, free_port, free_ports, wait_for_port
from telemetry_factory import batch, telemetry
from test_aggregator_integration import STALENESS_MS, Aggregator

from wire.status import NAMES, Status
from wire.v1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2_grpc

pytestmark = pytest.mark.integration

SCORED, STALE = Status.SCORED, Status.STALE
FALLBACK = scoring_pb2.SCORE_STATUS_FALLBACK
BUDGET_MS = 45.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def start_aggregator(url: str, grpc_port: int | None = None, http_port: int | None = None, *extra: str) -> Aggregator:
    return Aggregator(url, grpc_port, http_port, "--insecure", *extra).start()


class DurableRedis(RedisServer):
    """redis-server with an fsync-always append-only file; kill() is SIGKILL, start() reloads it."""

    def _args(self) -> list[str]:
        args = super()._args()
        i = args.index("--appendonly")
        return args[:i] + ["--appendonly", "yes", "--appendfsync", "always"] + args[i + 2 :]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class Load:
    """Background pushes (round-robin over ``names``) and BatchScores, every outcome logged."""

    def __init__(self, address: str, names: list[str]):
        self.names = names
        self.channel = grpc.insecure_channel(address)
        self.push = telemetry_pb2_grpc.TelemetryServiceStub(self.channel).Push
        self.score = scoring_pb2_grpc.ScoringServiceStub(self.channel).BatchScore
        self.acked: dict[str, list[tuple[int, int]]] = {n: [] for n in names}  # (collected, received)
        self.push_errors: list[str] = []
        self.score_log: list[tuple[float, set[int]]] = []
        self.score_errors: list[str] = []
        self.pushing = threading.Event()
        self.pushing.set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._push_loop, daemon=True),
            threading.Thread(target=self._score_loop, daemon=True),
        ]

    def start(self) -> Load:
        for n in self.names:  # every node known before the first BatchScore
            collected = now_ms()
            ack = self.push(telemetry(n, collected_ms=collected), timeout=5)
            self.acked[n].append((collected, ack.received_at_unix_ms))
        for t in self._threads:
            t.start()
        return self

    def _push_loop(self) -> None:
        collected = now_ms()
        while not self._stop.is_set():
            if not self.pushing.wait(0.1):
                continue
            for n in self.names:
                collected = max(collected + 1, now_ms())
                try:
                    ack = self.push(telemetry(n, collected_ms=collected), timeout=5)
                    self.acked[n].append((collected, ack.received_at_unix_ms))
                except grpc.RpcError as e:
                    self.push_errors.append(f"{e.code().name}: {e.details()}")
            time.sleep(0.02)

    def _score_loop(self) -> None:
        while not self._stop.is_set():
            try:
                resp = self.score(batch(*self.names), timeout=5)
                self.score_log.append((time.monotonic(), {s.status for s in resp.scores}))
            except grpc.RpcError as e:
                self.score_errors.append(f"{e.code().name}: {e.details()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.channel.close()


class DebugRedis(RedisServer):
    """redis-server that accepts DEBUG (off by default since Redis 7), for DEBUG SLEEP."""

    def _args(self) -> list[str]:
        return super()._args() + ["--enable-debug-command", "yes"]


@pytest.fixture
def debug_redis():
    server = DebugRedis().start()
    yield server
    server.cleanup()


def phases(score_log) -> list[str]:
    """The run of distinct answers: e.g. ['SCORED', 'STALE', 'SCORED']."""
    out: list[str] = []
    for _, statuses in score_log:
        label = "+".join(sorted(NAMES[s] for s in statuses))
        if not out or out[-1] != label:
            out.append(label)
    return out


def test_redis_killed_and_restarted_under_load_loses_nothing_acknowledged(tmp_path):
    srv = DurableRedis().start()
    agg = start_aggregator(srv.url)
    names = [f"durable-{i}" for i in range(8)]
    load = Load(agg.address, names).start()
    try:
        time.sleep(1.5)
        srv.kill()
        killed_acks = {n: list(v) for n, v in load.acked.items()}
        # Redis' own files, as the kill left them, loaded by a second redis-server
        copy = tmp_path / "aof"
        shutil.copytree(srv.dir, copy)
        time.sleep(STALENESS_MS / 1000 + 1.0)  # the snapshot's data turns stale; pushes fail meanwhile
        assert load.push_errors and all(e.startswith("UNAVAILABLE") for e in load.push_errors), load.push_errors[:3]
        srv.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and load.score_log[-1][1] != {SCORED}:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        load.stop()
        agg.proc.stop()
    check = RedisServer()
    try:
        # BatchScore answered every call, and the answers went fresh -> stale -> fresh
        assert load.score_errors == []
        seen = phases(load.score_log)
        assert seen[0] == "SCORED" and seen[-1] == "SCORED" and "STALE" in seen, seen
        assert "FALLBACK" not in "".join(seen)
        # pushes resumed after the restart
        assert all(load.acked[n][-1][0] > killed_acks[n][-1][0] for n in names)
        # every push acknowledged before the kill is in the append-only file
        shutil.rmtree(check.dir)
        shutil.copytree(copy, check.dir)
        check.proc = subprocess.Popen(
            [
                check.binary,
                "--port",
                str(check.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                check.dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(check.port, proc=check.proc)
        r = redis.Redis(port=check.port, decode_responses=True)
        lost = []
        total = 0
        for n in names:
            stored = {
                (int(f["collected_at_ms"]), int(f["received_at_ms"])) for _id, f in r.xrange(f"ka:history:{{{n}}}")
            }
            total += len(killed_acks[n])
            lost += [(n, a) for a in killed_acks[n] if a not in stored]
            # the node's hash holds the last acknowledged push, or one Redis wrote and fsynced
            # whose reply the kill (or the snapshot of acks above) cut off
            head = r.hgetall(f"ka:node:{{{n}}}")
            assert (int(head["collected_at_ms"]), int(head["received_at_ms"])) >= killed_acks[n][-1]
        assert total > 20 and lost == [], f"{len(lost)} of {total} acknowledged pushes lost: {lost[:5]}"
    finally:
        check.cleanup()
        srv.cleanup()


@pytest.mark.parametrize("how", ["sigstop", "debug-sleep"])
def test_slow_redis_batchscore_answers_within_budget_from_the_snapshot(debug_redis, how):
    redis_server = debug_redis
    agg = start_aggregator(redis_server.url, None, None, "--max-staleness-ms", "30000", "--budget-ms", str(BUDGET_MS))
    names = [f"slow-{i}" for i in range(50)]
    stop = threading.Event()
    push_outcomes: list[str] = []
    try:
        with grpc.insecure_channel(agg.address) as ch:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ch).Push
            score = scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore
            for n in names:
                push(telemetry(n, collected_ms=now_ms()), timeout=5)

            def agent(i: int) -> None:  # more agents than the aggregator has gRPC worker threads
                while not stop.is_set():
                    try:
                        push(telemetry(names[i], collected_ms=now_ms()), timeout=5)
                        push_outcomes.append("OK")
                    except grpc.RpcError as e:
                        push_outcomes.append(e.code().name)
                    time.sleep(0.05)

            agents = [threading.Thread(target=agent, args=(i,), daemon=True) for i in range(16)]
            for t in agents:
                t.start()
            time.sleep(0.5)
            if how == "sigstop":
                redis_server.proc.send_signal(signal.SIGSTOP)
                sleeper = None
            else:
                sleeper = subprocess.Popen(
                    ["redis-cli", "-p", str(redis_server.port), "debug", "sleep", "4"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            time.sleep(0.5)  # every agent is now stuck on, or refused by, the slow Redis
            server_us, client_ms, statuses = [], [], set()
            t_end = time.monotonic() + 3.0
            while time.monotonic() < t_end:
                t = time.perf_counter()
                resp = score(batch(*names), timeout=5)
                client_ms.append((time.perf_counter() - t) * 1000)
                server_us.append(resp.elapsed_us)
                statuses |= {s.status for s in resp.scores}
                time.sleep(0.02)
            if how == "sigstop":
                redis_server.proc.send_signal(signal.SIGCONT)
            else:
                assert sleeper.communicate(timeout=10)[0].strip() == "OK"  # Redis really slept
            time.sleep(2.5)  # blocked pushes time out or go through, new ones succeed
            outcomes_after = len(push_outcomes)
            time.sleep(0.5)
            stop.set()
            for t in agents:
                t.join(10)
    finally:
        stop.set()
        if redis_server.proc is not None and redis_server.proc.poll() is None:
            redis_server.proc.send_signal(signal.SIGCONT)
        agg.proc.stop()
    client_ms.sort()
    assert statuses == {SCORED}, statuses  # from the snapshot: no FALLBACK, nothing stale
    assert max(server_us) < BUDGET_MS * 1000
    # the calls were not queued behind pushes stuck on Redis (that would take seconds)
    assert client_ms[len(client_ms) // 2] < BUDGET_MS and client_ms[-1] < 4 * BUDGET_MS, client_ms[-5:]
    assert len(client_ms) > 20
    assert "UNAVAILABLE" in push_outcomes  # pushes were refused, not queued ...
    assert push_outcomes[outcomes_after:].count("OK") > 10  # ... and they resume once Redis answers


def test_aggregator_killed_and_restarted_agents_reconnect_without_duplicates(redis_server):
    interval = 1.0
    grpc_port, http_port = free_ports(2)
    agg = start_aggregator(redis_server.url, grpc_port, http_port)
    recording = sorted((REPO / "agent" / "recordings").glob("*.jsonl"))[0]
    nodes = [f"replay-{i}" for i in range(4)]
    agents = [
        Kubeattention(
            "agent",
            "--aggregator",
            agg.address,
            "--insecure",
            "--node-name",
            n,
            "--replay",
            str(recording),
            "--interval",
            str(interval),
            "--http-listen",
            f"127.0.0.1:{free_port()}",
        ).start()
        for n in nodes
    ]
    r = redis.Redis(port=redis_server.port, decode_responses=True)

    def received() -> dict[str, int]:
        return {n: int(r.hget(f"ka:node:{{{n}}}", "received_at_ms") or 0) for n in nodes}

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(received().values()):
            time.sleep(0.1)
        assert all(received().values()), [a.output()[-500:] for a in agents]
        time.sleep(2 * interval)
        agg.proc.stop(signal.SIGKILL)
        killed_ms = now_ms()
        time.sleep(2.5 * interval)  # agents fail and back off
        agg = start_aggregator(redis_server.url, grpc_port, http_port)  # ready: snapshot read from Redis
        ready_ms = now_ms()
        back: dict[str, float] = {}
        while time.monotonic() < deadline + 30 and len(back) < len(nodes):
            for n, at in received().items():
                if at > killed_ms and n not in back:
                    back[n] = (now_ms() - ready_ms) / 1000
            time.sleep(0.05)
        assert set(back) == set(nodes)
        worst = max(back.values())
        print(f"\nreconnect after the aggregator was ready: worst {worst:.2f} s, per node {back}")
        assert worst <= 2 * interval, f"agents took up to {worst:.2f} s (> 2 intervals) to reconnect: {back}"
        time.sleep(2 * interval)
        # no lost or duplicate node state: one index entry and one hash per node, the history
        # strictly ordered by both clocks, no vector stored twice
        assert sorted(r.zrange("ka:nodes", 0, -1)) == sorted(nodes)
        view = json.loads(agg.http("/v1/nodes"))["nodes"]
        assert sorted(v["node"] for v in view) == sorted(nodes)
        for n in nodes:
            hist = [(int(f["collected_at_ms"]), int(f["received_at_ms"])) for _id, f in r.xrange(f"ka:history:{{{n}}}")]
            assert len(hist) >= 4
            collected = [c for c, _ in hist]
            assert collected == sorted(set(collected)), f"{n}: a vector stored twice or out of order"
            assert [x for _, x in hist] == sorted(x for _, x in hist)
    finally:
        for a in agents:
            a.stop()
        agg.proc.stop()


def test_clock_skew_is_judged_on_both_clocks_and_reported(redis_server):
    agg = start_aggregator(redis_server.url)
    try:
        with grpc.insecure_channel(agg.address) as ch:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ch).Push
            score = scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore
            now = now_ms()
            acks = {
                "ahead": push(telemetry("ahead", collected_ms=now + 60_000), timeout=5),  # agent clock 1 min fast
                "behind": push(telemetry("behind", collected_ms=now - 60_000), timeout=5),  # 1 min slow
                "ntp": push(telemetry("ntp", collected_ms=now - 50), timeout=5),
            }
            by = {s.node_name: s for s in score(batch("ahead", "behind", "ntp"), timeout=5).scores}
            # a fast agent clock cannot make data look fresh: the receipt time is the older stamp
            assert by["ahead"].status == SCORED and 0 <= by["ahead"].telemetry_age_ms < 1000
            # a slow one makes it old by the agent's own account: not scored
            assert by["behind"].status == STALE and by["behind"].telemetry_age_ms >= 60_000
            assert by["ntp"].status == SCORED
            assert acks["ahead"].clock_offset_ms < -59_000 and acks["behind"].clock_offset_ms > 59_000
            view = {v["node"]: v for v in json.loads(agg.http("/v1/nodes"))["nodes"]}
            assert -61_000 < view["ahead"]["clock_skew_ms"] < -59_000
            assert 59_000 < view["behind"]["clock_skew_ms"] < 61_000
            assert abs(view["ntp"]["clock_skew_ms"]) < 1000
            metrics = agg.http("/metrics")
            assert "kubeattention_aggregator_clock_skewed_nodes 2.0" in metrics
            worst = next(
                float(ln.split()[1])
                for ln in metrics.splitlines()
                if ln.startswith("kubeattention_aggregator_clock_skew_max_seconds ")
            )
            assert 59 < worst < 61
            # without new pushes the fast-clock node still turns stale, on the aggregator's clock
            time.sleep(STALENESS_MS / 1000 + 0.5)
            assert score(batch("ahead"), timeout=5).scores[0].status == STALE
            # a corrected clock is said too
            push(telemetry("ahead", collected_ms=now_ms()), timeout=5)
            assert "kubeattention_aggregator_clock_skewed_nodes 1.0" in agg.http("/metrics")
    finally:
        agg.proc.stop()
    log = agg.proc.output()
    assert "node ahead: clock skew -60.0 s" in log and "ahead of ours" in log
    assert "node behind: clock skew +60.0 s" in log and "behind ours" in log
    assert "node ahead: clock skew back to" in log
    assert "node ntp: clock skew" not in log


# --- the pieces, in process ---------------------------------------------------------------


def test_skew_is_warned_once_as_a_node_crosses_and_once_as_it_recovers(caplog):
    from aggregator.snapshot import CLOCK_SKEW_WARN_MS, Snapshot
    from aggregator.validate import validate_telemetry

    snap = Snapshot()
    now = 1_700_000_000_000
    caplog.set_level("INFO", logger="aggregator.snapshot")
    for i in range(3):  # 3 s behind, three pushes in a row: one warning
        snap.upsert(validate_telemetry(telemetry("n", collected_ms=now + i * 1000 - 3000), now + i * 1000))
    assert snap.skewed_nodes() == 1
    snap.upsert(validate_telemetry(telemetry("n", collected_ms=now + 5000 - CLOCK_SKEW_WARN_MS + 1), now + 5000))
    assert snap.skewed_nodes() == 0
    snap.upsert(validate_telemetry(telemetry("ok", collected_ms=now - 10), now))
    texts = [r.getMessage() for r in caplog.records]
    assert [t.split(":")[0] for t in texts] == ["node n", "node n"]
    assert "clock skew +3.0 s" in texts[0] and "behind ours" in texts[0] and "back to +2.0 s" in texts[1]
    snap.upsert(validate_telemetry(telemetry("gone", collected_ms=now + 9000), now))
    assert snap.skewed_nodes() == 1
    snap.remove("gone")
    assert snap.skewed_nodes() == 0


def test_pushes_past_the_inflight_limit_are_shed_at_once_and_batchscore_still_answers(redis_server):
    agg = start_aggregator(redis_server.url, None, None, "--max-inflight-pushes", "2")
    try:
        with grpc.insecure_channel(agg.address) as ch:
            push = telemetry_pb2_grpc.TelemetryServiceStub(ch).Push
            score = scoring_pb2_grpc.ScoringServiceStub(ch).BatchScore
            push(telemetry("busy", collected_ms=now_ms()), timeout=5)
            redis_server.proc.send_signal(signal.SIGSTOP)  # the next two pushes wait on Redis ...
            try:
                waiting = [push.future(telemetry("busy", collected_ms=now_ms()), timeout=10) for _ in range(2)]
                time.sleep(0.3)
                t0 = time.perf_counter()
                with pytest.raises(grpc.RpcError) as e:  # ... so a third is over the limit
                    push(telemetry("busy", collected_ms=now_ms()), timeout=5)
                shed_ms = (time.perf_counter() - t0) * 1000
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "2 pushes already in flight (--max-inflight-pushes 2)" in e.value.details()
                resp = score(batch("busy"), timeout=5)  # scoring is not counted against pushes
                assert resp.scores[0].status == SCORED
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            assert all(f.result(timeout=10).received_at_unix_ms > 0 for f in waiting)  # nothing accepted is lost
            push(telemetry("busy", collected_ms=now_ms()), timeout=5)  # the limit frees as they finish
        assert shed_ms < 500
        assert 'kubeattention_aggregator_pushes_total{result="shed"} 1.0' in agg.http("/metrics")
    finally:
        agg.proc.stop()


def test_a_paused_redis_refuses_writes_beyond_the_pending_limit_at_once(redis_server):
    from aggregator.errors import StoreUnavailable
    from aggregator.store import RedisStore
    from aggregator.validate import validate_telemetry

    store = RedisStore(redis_server.url, max_pending_writes=2)
    rec = validate_telemetry(telemetry("n", collected_ms=now_ms()), now_ms())
    store.write(rec)  # connections made while Redis answers
    redis_server.proc.send_signal(signal.SIGSTOP)

    def stuck_write() -> None:  # waits on the paused Redis: goes through on SIGCONT, or times out
        try:
            store.write(rec)
        except StoreUnavailable:
            pass

    stuck = [threading.Thread(target=stuck_write) for _ in range(2)]
    try:
        for t in stuck:
            t.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="is slow: 2 writes already waiting on it, the oldest for"):
            store.write(rec)
        assert time.perf_counter() - t0 < 0.05
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        for t in stuck:
            t.join(10)
    store.write(rec)  # slots freed: writes go through again
    store.close()


def test_group_commit_batches_concurrent_writes_and_reports_each_failure():
    from aggregator.errors import StoreUnavailable
    from aggregator.group_commit import GroupCommit

    batches: list[list] = []
    gate = threading.Event()

    def flush(items):
        gate.wait(5)  # the first batch holds the writer while the others queue up
        if "bad" in items:
            raise StoreUnavailable("redis said no")
        batches.append(list(items))

    gc = GroupCommit(flush, wait_s=5)
    results: dict = {}

    def submit(item):
        try:
            gc.submit(item)
            results[item] = "ok"
        except StoreUnavailable as e:
            results[item] = str(e)

    first = threading.Thread(target=submit, args=("a",))
    first.start()
    time.sleep(0.1)
    rest = [threading.Thread(target=submit, args=(x,)) for x in ("b", "c", "d")]
    for t in rest:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in [first, *rest]:
        t.join(5)
    assert batches[0] == ["a"] and sorted(batches[1]) == ["b", "c", "d"]  # three writes, one round trip
    assert results == {"a": "ok", "b": "ok", "c": "ok", "d": "ok"}
    submit("bad")
    assert results["bad"] == "redis said no"
    gc.close()
    with pytest.raises(StoreUnavailable, match="shut down"):
        gc.submit("late")


def test_group_commit_from_an_event_loop_batches_awaiting_pushes_and_hands_each_its_outcome():
    """The gRPC server's path: pushes awaiting on one event loop share flushes like threads do."""
    import asyncio

    from aggregator.errors import StoreUnavailable
    from aggregator.group_commit import GroupCommit

    batches: list[list] = []
    gate = threading.Event()

    def flush(items):
        gate.wait(5)
        if "bad" in items:
            raise StoreUnavailable("redis said no")
        batches.append(list(items))

    gc = GroupCommit(flush, wait_s=5)

    async def main() -> list:
        first = gc.submit_async("a")
        await asyncio.sleep(0.1)  # "a" holds the writer; the rest queue behind it
        rest = [gc.submit_async(x) for x in ("b", "c", "d")]
        abandoned = gc.submit_async("e")
        abandoned.cancel()  # a caller whose deadline passed: its write still goes, nobody is told
        gate.set()
        outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
        try:
            await gc.submit_async("bad")
        except StoreUnavailable as e:
            outcomes.append(str(e))
        return outcomes

    assert asyncio.run(main()) == [None, None, None, None, "redis said no"]
    assert batches[0] == ["a"] and sorted(batches[1]) == ["b", "c", "d", "e"]
    gc.close()

    async def late():
        gc.submit_async("late")

    with pytest.raises(StoreUnavailable, match="shut down"):
        asyncio.run(late())


def test_a_paused_redis_refuses_event_loop_writes_at_once(redis_server):
    import asyncio

    from aggregator.errors import StoreUnavailable
    from aggregator.store import RedisStore
    from aggregator.validate import validate_telemetry

    store = RedisStore(redis_server.url, max_pending_writes=2)
    rec = validate_telemetry(telemetry("n", collected_ms=now_ms()), now_ms())

    async def main() -> float:
        await store.write_async(rec)  # connections made while Redis answers
        redis_server.proc.send_signal(signal.SIGSTOP)
        stuck = [asyncio.ensure_future(store.write_async(rec)) for _ in range(2)]
        await asyncio.sleep(0.3)  # the flush has now waited on Redis past WRITE_STALL_S
        t0 = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="is slow: 2 writes already waiting on it"):
            await store.write_async(rec)
        spent = time.perf_counter() - t0
        redis_server.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*stuck)  # the stuck writes go through once Redis is back
        await store.write_async(rec)
        return spent

    try:
        assert asyncio.run(main()) < 0.05
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert store.read_node("n") is not None
    store.close()


def test_log_budget_lets_a_burst_through_then_counts_what_it_held_back(caplog):
    from aggregator.snapshot import LogBudget

    now = [0.0]
    budget = LogBudget(2, 60.0, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [True, True, False, False, False]
    now[0] = 61.0
    with caplog.at_level("WARNING", logger="aggregator.snapshot"):
        assert budget.allow()
    assert "3 more clock-skew messages held back in the last 60 s" in caplog.text
