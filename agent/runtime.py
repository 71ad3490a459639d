"""The running agent: collection loop -> latest vector -> HTTP server and pusher.

Data flows one way. The main thread collects on a fixed tick and publishes into the
store; uvicorn (a thread) renders whatever is latest; the pusher (a thread) sends the
latest to the aggregator. ``stop()`` may be called from a signal handler.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from email.utils import formatdate
from typing import Protocol

import uvicorn

from agent.attribution import Attribution
from agent.capabilities import check_capabilities
from agent.clock import SYSTEM_CLOCK, Clock
from agent.collect import NodeCollector, availability_changes
from agent.collectors import default_collectors
from agent.config import AgentConfig
from agent.exposition import AgentMetrics
from agent.http_app import build_app
from agent.latest_vector import LatestVector
from agent.pods.cgroup_ids import CgroupIdIndex
from agent.pods.cpu import PodCgroupRoots, PodCpuSampler
from agent.pods.source import PodSourceSettings, build_pod_resolver
from agent.push import Pusher, backoff_for_interval
from agent.replay import ReplaySource
from agent.tetragon import tetragon_collector
from agent.vector import NodeVector
from wire import __version__

log = logging.getLogger(__name__)

#: How long to wait for the HTTP server to bind before giving up.
HTTP_START_TIMEOUT_S = 10.0


class VectorSource(Protocol):
    def collect(self) -> NodeVector: ...


class AgentStartError(RuntimeError):
    pass


def build_source(config: AgentConfig, clock: Clock) -> VectorSource:
    if config.replay is not None:
        return ReplaySource(config.replay, config.node_name, clock)
    tetragon = tetragon_collector(config.tetragon_export, config.tetragon_grpc, clock)
    collectors = default_collectors(config.proc_root, config.sys_root, config.cgroup_root, clock, tetragon=tetragon)
    return NodeCollector(config.node_name, collectors, clock, attribution=build_attribution(config, clock))


def build_attribution(config: AgentConfig, clock: Clock) -> Attribution:
    """Per-pod figures from pod cgroups, eBPF cgroup ids and Tetragon, named by the --pods-from source."""
    roots = PodCgroupRoots.for_root(config.cgroup_root) if config.cgroup_root else None
    resolver = build_pod_resolver(pod_source_settings(config), clock)
    if resolver is not None:
        resolver.start()  # a background thread: lookups never wait on the network
    return Attribution(
        cpu=PodCpuSampler(config.sys_root, roots=roots, clock=clock),
        cgroups=CgroupIdIndex(sys_root=config.sys_root, clock=clock),
        resolver=resolver,
    )


def pod_source_settings(config: AgentConfig) -> PodSourceSettings:
    return PodSourceSettings(
        config.pod_source,
        config.node_name,
        kubeconfig=config.kubeconfig,
        kubelet_pods_url=config.kubelet_pods_url,
        kubelet_token_file=config.kubelet_token_file,
        kubelet_ca_file=config.kubelet_ca_file,
    )


def capability_report(config: AgentConfig) -> dict:
    """What this node can measure (agent.capabilities), probed once at start-up for /v1/node.

    bcc is looked for, not imported: importing it would cost the agent ~60 MB for good.
    """
    tetragon = [str(p).removeprefix("unix://") for p in (config.tetragon_export, config.tetragon_grpc) if p]
    options = {"tetragon_paths": tetragon} if tetragon else {}
    return check_capabilities(config.proc_root, config.sys_root, cgroup_root=config.cgroup_root, **options).to_json()


class QuietServer(uvicorn.Server):
    """uvicorn's server loop wakes 10 times a second to check for shutdown and refresh the
    Date header; the agent runs on every node, idle most of the time, so its loop sleeps until
    :meth:`request_exit` wakes it, and :class:`DateHeader` dates each response instead."""

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        should_exit = await self.on_tick(0)
        while not should_exit:
            await self._wake.wait()
            self._wake.clear()
            should_exit = await self.on_tick(0)

    def request_exit(self) -> None:
        """From any thread: end the server loop now."""
        self.should_exit = True
        loop, wake = getattr(self, "_loop", None), getattr(self, "_wake", None)
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop already closed
                pass


class DateHeader:
    """ASGI wrapper adding the HTTP ``Date`` header to each response (uvicorn's own is off:
    it needs a timer; see :class:`QuietServer`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def dated(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"date", formatdate(usegmt=True).encode())]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, dated)


class Agent:
    def __init__(self, config: AgentConfig, clock: Clock = SYSTEM_CLOCK):
        self.config = config
        self.clock = clock
        self.store = LatestVector()
        self.metrics = AgentMetrics(self.store, config.node_name, __version__)
        self.source = build_source(config, clock)
        capabilities = capability_report(config) if config.replay is None else None
        app = build_app(self.store, self.metrics, config.interval_s, clock, capabilities=capabilities)
        self.server = QuietServer(
            uvicorn.Config(
                DateHeader(app),
                date_header=False,
                host=config.http_host,
                port=config.http_port,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._http_thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self.pusher = (
            Pusher(
                config.aggregator,
                self.store,
                on_result=self.metrics.record_push,
                clock=clock,
                security=config.security,
                backoff=backoff_for_interval(config.interval_s),
            )
            if config.push_enabled
            else None
        )
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind HTTP and start pushing; raises AgentStartError when the port cannot be bound."""
        self._http_thread.start()
        deadline = time.monotonic() + HTTP_START_TIMEOUT_S
        while not self.server.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                raise AgentStartError(
                    f"cannot serve HTTP on {self.config.http_listen} (address in use or not assignable?)"
                )
            time.sleep(0.02)
        if self.pusher is not None:
            self.pusher.start()
        if isinstance(self.source, ReplaySource):
            what = f"replaying {len(self.source)} vectors of {self.source.label!r} from {self.config.replay}"
        else:
            what = "collecting this machine"
        push = (
            f"pushing to {self.config.aggregator} over {self.config.security.describe()}"
            if self.pusher
            else "pushing disabled"
        )
        if self.pusher and self.config.security.insecure:
            log.warning(
                "--insecure: pushing to %s in plaintext; anyone on the path can read the telemetry and "
                "forge pushes unless the aggregator authenticates them",
                self.config.aggregator,
            )
        log.info(
            "agent %s for node %s: %s every %g s; serving http://%s/metrics; %s",
            __version__,
            self.config.node_name,
            what,
            self.config.interval_s,
            self.config.http_listen,
            push,
        )
        if not isinstance(self.source, ReplaySource):
            log.info("pods behind per-pod figures named from: %s (--pods-from)", self.config.pod_source)

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    def run_loop(self) -> None:
        """Collect on a fixed tick until stop(); the first vector comes after one interval."""
        interval = self.config.interval_s
        if isinstance(self.source, NodeCollector):
            self.source.collect()  # baseline: rates and shares need two readings
        next_at = self.clock.monotonic() + interval
        previous: NodeVector | None = None
        while not self._stop.wait(max(next_at - self.clock.monotonic(), 0.0)):
            previous = self.tick(previous) or previous
            now = self.clock.monotonic()
            next_at += interval
            if next_at < now:  # fell behind (suspended, overloaded): skip, do not burst
                log.debug("collection fell behind by %.2f s; skipping missed ticks", now - next_at)
                next_at = now + interval

    def tick(self, previous: NodeVector | None) -> NodeVector | None:
        started = time.perf_counter()
        try:
            vector = self.source.collect()
        except Exception:
            log.exception("collecting the node vector failed; trying again next tick")
            return None
        self.metrics.collect_duration.observe(time.perf_counter() - started)
        self.store.publish(vector)
        changes = availability_changes(previous, vector)
        if previous is None:
            log.info("first vector: %d/%d metrics measured", vector.available_count, len(vector.values))
        for line in changes:
            log.info("%s", line)
        return vector

    def shutdown(self) -> None:
        if self.pusher is not None:
            self.pusher.stop()
        for c in getattr(self.source, "collectors", ()):
            if callable(close := getattr(c, "close", None)):
                close()  # e.g. the Tetragon gRPC stream thread
        resolver = getattr(getattr(self.source, "attribution", None), "resolver", None)
        if callable(stop := getattr(resolver, "stop", None)):
            stop()  # the pod list/watch thread
        self.server.request_exit()
        self._http_thread.join(HTTP_START_TIMEOUT_S)
        log.info("agent stopped")
