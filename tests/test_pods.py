"""Pod attribution: cgroup paths of every kubelet driver and runtime, the recorded PodList
(tests/fixtures/pods/kubelet-pods.json), the kubelet /pods resolver over real HTTP, cgroup id
-> path on this machine's cgroup2 (checked against bpf_get_current_cgroup_id() where bcc
works), per-pod CPU time and throttling on fake trees and on real cgroups, and top-N."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from doubles import FakeClock, RecordedPodResolver

from agent.cgroupfs.bandwidth import throttled_periods
from agent.cgroupfs.hierarchies import cgroup_v2_root
from agent.collectors.cgroup_throttle import CgroupThrottleCollector
from agent.pods.cgroup_ids import CgroupIdIndex
from agent.pods.cgroup_path import parse_cgroup_path
from agent.pods.cpu import CPU_THROTTLED, CPU_UTILIZATION, PodCgroupRoots, PodCpuSample, PodCpuSampler, per_pod_figures
from agent.pods.offenders import top_offenders
from agent.pods.resolver import KubeletPodResolver, PodListError, pods_from_podlist
from agent.vector import PodOffender
from wire.schema import QoS

FIXTURE = Path(__file__).parent / "fixtures" / "pods" / "kubelet-pods.json"
UID = "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516"
UID_ = UID.replace("-", "_")
STATIC = "6e2b2bb3a6e8f3c3b3b1f0d9c8e7a6b5"
CID = "7d7d4eed89b7" + "0" * 52
CHECKOUT = "7d9e1f20-3a4b-4c5d-8e6f-708192a3b4c5"


def cid(label: str) -> str:
    """Container ids in the fixture are sha256(label) (see its README)."""
    return hashlib.sha256(label.encode()).hexdigest()


# ------------------------------------------------------------------ cgroup path -> pod

B, BE, G = QoS.BURSTABLE, QoS.BEST_EFFORT, QoS.GUARANTEED
PATHS = [
    # cgroup v2, systemd driver, containerd (EKS AL2023, GKE, kubeadm on recent distros)
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
        UID,
        B,
        CID,
        "containerd",
    ),
    (f"/sys/fs/cgroup/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope", UID, G, CID, "containerd"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice", UID, BE, None, None),
    # CRI-O (OpenShift): container scope and the conmon monitor
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{CID}.scope",
        UID,
        B,
        CID,
        "cri-o",
    ),
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope",
        UID,
        B,
        None,
        "cri-o",
    ),
    # Docker via cri-dockerd, systemd driver
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{CID}.scope",
        UID,
        BE,
        CID,
        "docker",
    ),
    # cgroup v1, cgroupfs driver, with the controller mount in front
    (f"/sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod{UID}/{CID}", UID, B, CID, None),
    (f"/sys/fs/cgroup/memory/kubepods/besteffort/pod{UID}/{CID}", UID, BE, CID, None),
    (f"/kubepods/pod{UID}/{CID}", UID, G, CID, None),
    (f"/kubepods/pod{UID}", UID, G, None, None),
    (f"/kubepods/besteffort/pod{UID}/crio-{CID}", UID, BE, CID, "cri-o"),
    # cgroup v1 systemd driver (the name=systemd and cpu hierarchies look the same)
    (
        f"/sys/fs/cgroup/cpu/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
        f"docker-{CID}.scope",
        UID,
        B,
        CID,
        "docker",
    ),
    # kind: kubelet's cgroup root nested under /kubelet (systemd) or a Docker container (cgroupfs)
    (
        f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
        UID,
        B,
        CID,
        "containerd",
    ),
    (f"/docker/{'e' * 64}/kubelet/kubepods/burstable/pod{UID}/{CID}", UID, B, CID, None),
    # Docker Desktop's doubled kubepods
    (f"/kubepods/kubepods/besteffort/pod{UID}/{CID}", UID, BE, CID, None),
    # a static pod: the UID is the 32-hex config hash
    (f"/kubepods/burstable/pod{STATIC}/{CID}", STATIC, B, CID, None),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC}.slice", STATIC, B, None, None),
    # /proc/PID/cgroup lines (v2 and v1) and a cgroup nested inside a container
    (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
        UID,
        B,
        CID,
        "containerd",
    ),
    (f"4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}", UID, B, CID, None),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope/init.scope", UID, G, CID, "containerd"),
    # upper-case hex in the UID is normalised
    (f"/kubepods/burstable/pod{UID.upper()}/{CID}", UID, B, CID, None),
]
NOT_PODS = [
    "/",
    "/system.slice/containerd.service",
    "/kubepods.slice",
    "/kubepods.slice/kubepods-burstable.slice",
    "/kubepods/burstable",
    f"/user.slice/pod{UID}",
    f"/system.slice/podman-{CID}.scope",
    "/kubepods/burstable/podnot-a-uid/x",
    f"/kubepods/burstable/pod{UID[:-1]}/{CID}",
    "",
]


@pytest.mark.parametrize("path, uid, qos, container, runtime", PATHS)
def test_cgroup_paths_of_every_driver_and_runtime(path, uid, qos, container, runtime):
    got = parse_cgroup_path(path)
    assert got is not None, path
    assert (got.pod_uid, got.qos, got.container_id, got.runtime) == (uid, qos, container, runtime)
    assert got.pod_path in path
    assert parse_cgroup_path(got.pod_path).container_id is None


@pytest.mark.parametrize("path", NOT_PODS)
def test_cgroups_outside_pods(path):
    assert parse_cgroup_path(path) is None


# ------------------------------------------------------------------ recorded PodList


def test_recorded_podlist_resolves_uids_and_containers():
    r = RecordedPodResolver.from_file(FIXTURE)
    assert len(r.pods) == 6
    info = r.resolve(CHECKOUT.upper())
    assert (info.namespace, info.name, info.qos) == ("shop", "checkout-api-7c9d8f6b5-k2v8n", QoS.GUARANTEED)
    assert info.containers == {
        cid("checkout-init"): "istio-init",
        cid("checkout-app"): "app",
        cid("checkout-istio"): "istio-proxy",
    }
    assert r.resolve(STATIC).name == "etcd-worker-3.prod.example.com"
    assert r.resolve("00000000-0000-4000-8000-000000000000") is None


def test_path_to_named_pod_end_to_end():
    r = RecordedPodResolver.from_file(FIXTURE)
    got = parse_cgroup_path(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{CHECKOUT.replace('-', '_')}.slice/cri-containerd-{cid('checkout-istio')}.scope"
    )
    info = r.resolve(got.pod_uid)
    assert (info.namespace, info.name, info.containers[got.container_id]) == (
        "shop",
        "checkout-api-7c9d8f6b5-k2v8n",
        "istio-proxy",
    )


def test_kubectl_mirror_pod_is_found_by_the_static_hash():
    data = json.loads(FIXTURE.read_text())
    etcd = next(i for i in data["items"] if i["metadata"]["name"].startswith("etcd"))
    etcd["metadata"]["uid"] = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"  # the API server's mirror pod UID
    etcd["metadata"]["annotations"]["kubernetes.io/config.mirror"] = STATIC
    pods = pods_from_podlist(data)
    assert pods[STATIC].name == pods["3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"].name == etcd["metadata"]["name"]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"kind": "PodList"}, "items"),
        ({"items": [{"metadata": {"uid": "u", "namespace": "ns"}}]}, "items[0].metadata.name"),
        ({"items": ["not a pod"]}, "items[0].metadata"),
    ],
)
def test_malformed_podlists_name_the_field(data, field):
    with pytest.raises(PodListError, match=field.replace("[", r"\[").replace("]", r"\]")):
        pods_from_podlist(data)


# ------------------------------------------------------------------ kubelet /pods over HTTP


class Kubelet:
    """A local HTTP server answering GET /pods like the kubelet, with a switchable failure."""

    def __init__(self):
        self.body = FIXTURE.read_bytes()
        self.status = 200
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append({"path": self.path, **dict(self.headers)})
                self.send_response(outer.status if self.path == "/pods" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pods"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_kubelet_resolver_fetches_caches_and_refreshes(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    clock = FakeClock(100.0, 1_700_000_000_000)
    with Kubelet() as kubelet:
        r = KubeletPodResolver(kubelet.url, token_path=token, clock=clock, refresh_s=30, miss_refresh_s=2)
        assert r.resolve(UID).name == "kube-proxy-x9q4z"
        assert r.resolve(CHECKOUT).namespace == "shop"
        assert len(kubelet.requests) == 1  # cached
        assert kubelet.requests[0]["Authorization"] == "Bearer s3cr3t"
        unknown = "99999999-0000-4000-8000-000000000000"
        assert r.resolve(unknown) is None and len(kubelet.requests) == 1  # too soon to refetch for a miss
        clock.t += 2.5
        assert r.resolve(unknown) is None and len(kubelet.requests) == 2  # a new pod may have started
        clock.t += 30
        r.resolve(UID)
        assert len(kubelet.requests) == 3  # the list went stale


def test_kubelet_failures_keep_the_cache_and_log_once(caplog):
    clock = FakeClock(100.0, 1_700_000_000_000)
    with Kubelet() as kubelet:
        r = KubeletPodResolver(kubelet.url, clock=clock, refresh_s=10)
        assert r.resolve(UID) is not None
        kubelet.status = 500
        for _ in range(3):
            clock.t += 11
            assert r.resolve(UID).name == "kube-proxy-x9q4z"  # last good list still answers
        assert "HTTP Error 500" in r.last_error
        assert sum("cannot list pods from the kubelet" in rec.getMessage() for rec in caplog.records) == 1
        kubelet.status, kubelet.body = 200, b"<html>not json</html>"
        clock.t += 11
        r.resolve(UID)
        assert "response is not JSON" in r.last_error
    r = KubeletPodResolver("http://127.0.0.1:9/pods", timeout_s=0.5)  # nothing listens on the discard port
    assert r.resolve(UID) is None and r.last_error
    with pytest.raises(ValueError, match="url"):
        KubeletPodResolver("127.0.0.1:10255/pods")


def test_kubelet_resolver_in_the_background_never_blocks_a_lookup():
    with Kubelet() as kubelet:
        data = json.loads(kubelet.body)
        newcomer = data["items"].pop()  # redis-cache-0 starts after the first fetch
        kubelet.body = json.dumps(data).encode()
        r = KubeletPodResolver(kubelet.url, refresh_s=60, miss_refresh_s=0.05)
        r.start()
        try:
            deadline = time.monotonic() + 5
            while r.fetched_at is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert r.resolve(UID).name == "kube-proxy-x9q4z"
            data["items"].append(newcomer)
            kubelet.body = json.dumps(data).encode()
            uid = newcomer["metadata"]["uid"]
            assert r.resolve(uid) is None  # answered from the cache at once; the miss wakes the thread
            while r.resolve(uid) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert r.resolve(uid).name == "redis-cache-0"
        finally:
            r.stop()
        assert len(kubelet.requests) == 2


# ------------------------------------------------------------------ cgroup id -> path (real cgroup2)


@pytest.fixture
def pod_cgroup_v2():
    """A pod-shaped cgroup in this machine's cgroup2 hierarchy, removed afterwards."""
    root = cgroup_v2_root("/sys")[1]
    if root is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup2 mount")
    top = root / f"ka-test-ids-{os.getpid()}"
    rel = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope"
    leaf = top / rel
    leaf.mkdir(parents=True)
    try:
        yield root, top, leaf
    finally:
        for rel_dir in [Path(rel), *Path(rel).parents]:  # children first; the last is "." = top itself
            (top / rel_dir).rmdir()


def test_cgroup_id_is_the_inode_and_resolves_to_the_pod(pod_cgroup_v2):
    root, top, leaf = pod_cgroup_v2
    index = CgroupIdIndex(sys_root="/sys")
    assert index.root == root
    ino = leaf.stat().st_ino
    assert index.path(ino) == "/" + str(leaf.relative_to(root))
    got = index.pod(ino)
    assert (got.pod_uid, got.container_id, got.qos) == (UID, CID, QoS.BURSTABLE)
    assert index.path(root.stat().st_ino) == "/"
    assert index.path(2**62) is None


def test_cgroup_id_index_sees_new_cgroups_and_is_bounded(pod_cgroup_v2):
    root, top, leaf = pod_cgroup_v2
    clock = FakeClock(100.0, 1_700_000_000_000)
    index = CgroupIdIndex(root, clock=clock, rescan_s=1.0)
    index.scan()
    late = top / "late"
    late.mkdir()
    try:
        assert index.path(late.stat().st_ino) is None  # scanned just now: no rescan yet
        clock.t += 1.0
        assert index.path(late.stat().st_ino) == f"/{top.name}/late"
    finally:
        late.rmdir()
    small = CgroupIdIndex(root, max_cgroups=2)
    small.scan()
    assert small.truncated and len(small._paths) <= 3


def test_bpf_cgroup_id_matches_the_index(pod_cgroup_v2):
    """bpf_get_current_cgroup_id() of a process in the cgroup is the id the index resolves."""
    try:
        from bcc import BPF
    except Exception as err:  # noqa: BLE001 - ImportError, or libbcc failing to load
        pytest.skip(f"bcc not usable: {err}")
    root, top, leaf = pod_cgroup_v2
    try:
        bpf = BPF(
            text=rb"""
BPF_HASH(ids, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 id = bpf_get_current_cgroup_id();
    ids.update(&tgid, &id);
    return 0;
}"""
        )
    except Exception as err:  # noqa: BLE001 - no headers, no tracefs, not permitted
        pytest.skip(f"cannot load a BPF program here: {err}")
    child = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; sys.stdin.readline(); os.getppid()"], stdin=subprocess.PIPE
    )
    try:
        (leaf / "cgroup.procs").write_text(str(child.pid))
        child.stdin.write(b"\n")
        child.stdin.close()
        child.wait(10)
        seen = bpf[b"ids"][ctypes.c_uint32(child.pid)].value
    finally:
        bpf.cleanup()
    assert CgroupIdIndex(root).pod(seen).pod_uid == UID


# ------------------------------------------------------------------ per-pod CPU and throttling


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(sys_root: Path, usage_usec: dict[str, int], bandwidth: dict[str, tuple[int, int]]) -> None:
    """kubepods.slice with a burstable pod (two containers) and a best-effort pod (one)."""
    base = sys_root / "fs/cgroup"
    write(base / "cgroup.controllers", "cpuset cpu io memory pids\n")
    pods = {
        "a": f"kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice",
        "b": f"kubepods-besteffort.slice/kubepods-besteffort-pod{CHECKOUT.replace('-', '_')}.slice",
    }
    for key, rel in pods.items():
        write(base / "kubepods.slice" / rel / "cpu.stat", f"usage_usec {usage_usec[key]}\nuser_usec 0\n")
    for ctr, (p, t) in bandwidth.items():
        pod = pods["a"] if ctr.startswith("a") else pods["b"]
        write(
            base / "kubepods.slice" / pod / f"cri-containerd-{ctr}.scope" / "cpu.stat",
            f"usage_usec 0\nnr_periods {p}\nnr_throttled {t}\nthrottled_usec 0\n",
        )


def test_per_pod_cpu_share_and_throttling_v2(tmp_path):
    clock = FakeClock(100.0, 1_700_000_000_000)
    v2_tree(tmp_path, {"a": 1_000_000, "b": 5_000_000}, {"a1": (100, 10), "a2": (100, 0), "b1": (0, 0)})
    sampler = PodCpuSampler(tmp_path, cpu_count=4, clock=clock)
    assert sampler.read() == {}  # baseline
    # 2 s on 4 CPUs = 8 CPU-seconds; pod a used 2 s (25 %), pod b 6 s (75 %)
    v2_tree(tmp_path, {"a": 3_000_000, "b": 11_000_000}, {"a1": (300, 110), "a2": (300, 0), "b1": (0, 0)})
    clock.t += 2.0
    figures = sampler.read()
    assert figures[CPU_UTILIZATION] == pytest.approx({UID: 0.25, CHECKOUT: 0.75})
    assert figures[CPU_THROTTLED] == pytest.approx({UID: 100 / 400})  # b has no limit: no periods, no figure
    assert sum(figures[CPU_UTILIZATION].values()) <= 1.0 + 1e-9  # parts never exceed the node


def test_pod_and_node_throttling_come_from_one_walk(tmp_path):
    """The node's cpu_throttled_ratio and the pods' are the same leaves' counters: with one
    CPU-limited pod they agree, and the pods' periods add up to the node's."""
    clock = FakeClock(100.0, 1_700_000_000_000)
    v2_tree(tmp_path, {"a": 0, "b": 0}, {"a1": (100, 10), "a2": (100, 0), "b1": (0, 0)})
    node, pods = CgroupThrottleCollector(tmp_path, clock=clock), PodCpuSampler(tmp_path, cpu_count=4, clock=clock)
    node.read()
    pods.read()  # both baselines
    first = pods.sample()
    v2_tree(tmp_path, {"a": 0, "b": 0}, {"a1": (300, 110), "a2": (300, 0), "b1": (0, 0)})
    clock.t += 1.0
    ratio = node.read().get(CPU_THROTTLED).value
    assert pods.read()[CPU_THROTTLED] == pytest.approx({UID: ratio}) and ratio == pytest.approx(100 / 400)
    later = pods.sample()
    per_pod = [throttled_periods(first.bandwidth.get(uid, {}), leaves) for uid, leaves in later.bandwidth.items()]
    assert sum(p for p, _ in per_pod) == 400 and sum(t for _, t in per_pod) == 100


def test_per_pod_v1_split_hierarchies_and_restarts(tmp_path):
    base = tmp_path / "fs/cgroup"
    write(base / "cpuacct/kubepods/burstable" / f"pod{UID}" / "cpuacct.usage", "1000000000\n")
    write(base / "cpu/kubepods/burstable" / f"pod{UID}" / "ctr" / "cpu.stat", "nr_periods 10\nnr_throttled 5\n")
    roots = PodCgroupRoots.find(tmp_path)
    assert roots == PodCgroupRoots(base / "cpuacct/kubepods", base / "cpu/kubepods", 1)
    first = PodCpuSampler(tmp_path, cpu_count=2, clock=FakeClock(0.0, 1_700_000_000_000)).sample()
    write(base / "cpuacct/kubepods/burstable" / f"pod{UID}" / "cpuacct.usage", "500\n")  # pod recreated
    second = PodCpuSampler(tmp_path, cpu_count=2, clock=FakeClock(1.0, 1_700_000_000_000)).sample()
    assert per_pod_figures(first, second, 2) == {CPU_UTILIZATION: {}, CPU_THROTTLED: {}}
    assert PodCgroupRoots.find(tmp_path / "nothing") is None
    assert PodCgroupRoots.for_root(base / "cpu/kubepods").version == 1
    write(base / "unified/kubepods.slice/cgroup.controllers", "cpu\n")
    assert PodCgroupRoots.for_root(base / "unified/kubepods.slice").version == 2


def test_per_pod_figures_pure():
    prev = PodCpuSample(0.0, {"u1": 0, "u2": 0}, {"u1": {"c": (10, 0)}})
    cur = PodCpuSample(0.5, {"u1": 500_000_000, "u2": 2_000_000_000, "new": 9}, {"u1": {"c": (20, 5)}})
    figures = per_pod_figures(prev, cur, cpu_count=2)
    assert figures[CPU_UTILIZATION] == {"u1": 0.5, "u2": 1.0}  # u2 clipped: 2 s of CPU in 0.5 s x 2 CPUs
    assert figures[CPU_THROTTLED] == {"u1": 0.5}


@pytest.fixture
def limited_v1_pod():
    """A pod-shaped cgroup with a 20 % CPU quota in the real v1 cpu and cpuacct hierarchies."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    base = Path("/sys/fs/cgroup")
    cpu = next((base / h for h in ("cpu,cpuacct", "cpu") if (base / h / "cpu.cfs_quota_us").exists()), None)
    acct = next((base / h for h in ("cpu,cpuacct", "cpuacct") if (base / h / "cpuacct.usage").exists()), None)
    if cpu is None or acct is None:
        pytest.skip("no cgroup v1 cpu and cpuacct controllers here")
    name = f"ka-test-podcpu-{os.getpid()}"
    rel = Path("burstable") / f"pod{UID}" / CID
    made = []
    for hierarchy in dict.fromkeys([cpu.resolve(), acct.resolve()]):
        (hierarchy / name / rel).mkdir(parents=True)
        made.append(hierarchy / name)
    leaf = cpu / name / rel
    (leaf / "cpu.cfs_period_us").write_text("10000")
    (leaf / "cpu.cfs_quota_us").write_text("2000")
    try:
        yield PodCgroupRoots(acct / name, cpu / name, 1), [m / rel for m in made]
    finally:
        for top in made:
            for p in [top / rel, top / rel.parent, top / rel.parent.parent, top]:
                p.rmdir()


def test_real_busy_pod_is_the_top_offender(limited_v1_pod):
    roots, leaves = limited_v1_pod
    sampler = PodCpuSampler(roots=roots)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for leaf in leaves:
            (leaf / "cgroup.procs").write_text(str(busy.pid))
        sampler.read()
        time.sleep(0.6)
        figures = sampler.read()
    finally:
        busy.kill()
        busy.wait()
    share = figures[CPU_UTILIZATION][UID]
    assert 0.5 * 0.2 / sampler.cpu_count < share < 1.5 * 0.2 / sampler.cpu_count  # 20 % of one CPU, as a node share
    assert figures[CPU_THROTTLED][UID] > 0.5
    resolver = RecordedPodResolver.from_file(FIXTURE)
    assert top_offenders(figures, resolver, n=1) == [
        PodOffender("kube-system", "kube-proxy-x9q4z", CPU_UTILIZATION, share),
        PodOffender("kube-system", "kube-proxy-x9q4z", CPU_THROTTLED, figures[CPU_THROTTLED][UID]),
    ]


# ------------------------------------------------------------------ top-N offenders


def test_top_offenders_per_metric():
    resolver = RecordedPodResolver.from_file(FIXTURE)
    unknown = "99999999-0000-4000-8000-000000000000"
    figures = {
        "cpu_utilization": {
            UID: 0.10,
            CHECKOUT: 0.40,
            STATIC: 0.05,
            unknown: 0.20,
            "e5f60718-2930-4a4b-8c5d-6e7f80910213": 0.0,
        },
        "cpu_throttled_ratio": {CHECKOUT: 0.9, UID: float("nan")},
        "process_churn_per_s": {},
    }
    top = top_offenders(figures, resolver, n=2)
    assert top == [
        PodOffender("shop", "checkout-api-7c9d8f6b5-k2v8n", "cpu_utilization", 0.40),
        PodOffender("", unknown, "cpu_utilization", 0.20),
        PodOffender("shop", "checkout-api-7c9d8f6b5-k2v8n", "cpu_throttled_ratio", 0.9),
    ]
    msg = top[0].to_proto()
    assert (msg.namespace, msg.name, msg.metric, msg.value) == (
        "shop",
        "checkout-api-7c9d8f6b5-k2v8n",
        "cpu_utilization",
        0.40,
    )
    assert [o.name for o in top_offenders({"cpu_utilization": {"b": 1.0, "a": 1.0}}, None, n=5)] == ["a", "b"]
    with pytest.raises(ValueError, match="n: expected a positive int"):
        top_offenders(figures, resolver, n=0)
    with pytest.raises(ValueError, match="'cpu_seconds' is not a schema metric"):
        top_offenders({"cpu_seconds": {UID: 1.0}})


def test_sampler_without_pod_root_reads_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    assert PodCpuSampler(tmp_path, clock=FakeClock(100.0, 1_700_000_000_000)).read() == {}
