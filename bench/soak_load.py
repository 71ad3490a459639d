"""The soak's load generator processes (``bench/soak.py`` starts them with the spawn method):
simulated agents pushing over asyncio gRPC, and one scheduler issuing BatchScore on an
open-loop schedule. Each sends its latencies, errors and CPU time back on a pipe."""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections import Counter

import psutil
from stack import recorded_vectors

RPC_TIMEOUT_S = 5.0


def node_name(i: int) -> str:
    return f"soak-node-{i:05d}"


def agents_proc(slot: int, procs: int, args: dict, target: str, t0_wall: float, conn) -> None:
    """Pushes for the agents ``slot, slot + procs, ...`` until the end; sends results on ``conn``."""
    import grpc

    from wire.v1 import telemetry_pb2_grpc

    vectors = recorded_vectors()
    mine = list(range(slot, args["agents"], procs))
    rng = random.Random(slot)
    sched_off = array("f")  # seconds since start when the push was due
    lat_us = array("I")
    late_us = array("I")  # how late the generator sent it (its own overload)
    errors: Counter = Counter()
    skipped = [0]  # intervals an agent let pass because its previous push was still in flight
    interval, end = args["interval_s"], t0_wall + args["seconds"]

    async def main() -> None:
        n_conn = max(1, args["connections"] // procs)
        channels = [grpc.aio.insecure_channel(target) for _ in range(n_conn)]
        stubs = [telemetry_pb2_grpc.TelemetryServiceStub(ch).Push for ch in channels]
        for ch in channels:
            await ch.channel_ready()

        async def agent(i: int, k: int) -> None:
            msg = vectors[i % len(vectors)].to_proto()
            msg.node_name = node_name(i)
            push = stubs[k % len(stubs)]
            due = t0_wall + rng.random() * interval
            while due < end:
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                msg.collected_at_unix_ms = int(sent * 1000)
                t = time.perf_counter_ns()
                try:
                    await push(msg, timeout=RPC_TIMEOUT_S)
                    sched_off.append(due - t0_wall)
                    lat_us.append(min((time.perf_counter_ns() - t) // 1000, 2**32 - 1))
                    late_us.append(min(int(max(sent - due, 0) * 1e6), 2**32 - 1))
                except grpc.aio.AioRpcError as e:
                    errors[e.code().name] += 1
                due += interval
                # like the real agent, which pushes only its latest vector: intervals that passed
                # while this push was in flight are skipped, not sent late as a backlog
                behind = int((time.time() - due) // interval)
                if behind > 0:
                    skipped[0] += behind
                    due += behind * interval

        await asyncio.gather(*(agent(i, k) for k, i in enumerate(mine)))
        for ch in channels:
            await ch.close()

    asyncio.run(main())
    cpu = psutil.Process().cpu_times()
    conn.send(
        {
            "kind": "push",
            "sched": sched_off.tobytes(),
            "lat": lat_us.tobytes(),
            "late": late_us.tobytes(),
            "errors": dict(errors),
            "skipped": skipped[0],
            "cpu_s": cpu.user + cpu.system,
        }
    )
    conn.close()


def scheduler_proc(args: dict, target: str, t0_wall: float, conn) -> None:
    import grpc

    from wire.v1 import scoring_pb2, scoring_pb2_grpc

    rng = random.Random(7)
    names = [node_name(i) for i in range(args["agents"])]
    sched_off, lat_us, not_scored = array("f"), array("I"), Counter()
    errors: Counter = Counter()
    pod = scoring_pb2.PodContext(
        cpu_request_cores=0.5, memory_request_bytes=512 * 2**20, profile=scoring_pb2.WORKLOAD_PROFILE_LATENCY_CRITICAL
    )
    period, end = 1.0 / args["score_rps"], t0_wall + args["seconds"]

    async def main() -> None:
        channel = grpc.aio.insecure_channel(target)
        await channel.channel_ready()
        score = scoring_pb2_grpc.ScoringServiceStub(channel).BatchScore
        pending: set = set()

        async def one(due: float) -> None:
            req = scoring_pb2.BatchScoreRequest(pod=pod, node_names=rng.sample(names, args["candidates"]))
            t = time.perf_counter_ns()
            try:
                resp = await score(req, timeout=RPC_TIMEOUT_S)
                lat_us.append(min((time.perf_counter_ns() - t) // 1000, 2**32 - 1))
                sched_off.append(due - t0_wall)
                for s in resp.scores:
                    if s.status != scoring_pb2.SCORE_STATUS_SCORED:
                        not_scored[scoring_pb2.ScoreStatus.Name(s.status)] += 1
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] += 1

        due = t0_wall
        while due < end:
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            due += period
        if pending:
            await asyncio.wait(pending, timeout=RPC_TIMEOUT_S + 1)
        await channel.close()

    asyncio.run(main())
    cpu = psutil.Process().cpu_times()
    conn.send(
        {
            "kind": "score",
            "sched": sched_off.tobytes(),
            "lat": lat_us.tobytes(),
            "errors": dict(errors),
            "not_scored": dict(not_scored),
            "cpu_s": cpu.user + cpu.system,
        }
    )
    conn.close()
