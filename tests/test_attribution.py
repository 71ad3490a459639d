"""Per-pod attribution: per-pod figures from pod cgroups, eBPF cgroup ids and Tetragon ->
named top offenders -> the push. Pods are named from a recorded kubelet /pods response
(no kubelet runs here)."""

from pathlib import Path

import pytest
from doubles import RecordedPodResolver

from agent.attribution import Attribution
from agent.collect import NodeCollector
from agent.collectors.base import Measurement, Reading
from agent.pods.cgroup_path import PodCgroup

PODS = RecordedPodResolver.from_file(Path(__file__).parent / "fixtures" / "pods" / "kubelet-pods.json")
CHECKOUT = "7d9e1f20-3a4b-4c5d-8e6f-708192a3b4c5"
TRANSCODE = "c4d5e6f7-0819-4a2b-bc3d-4e5f60718293"
REDIS = "e5f60718-2930-4a4b-8c5d-6e7f80910213"


class PodCpu:
    """Stands in for PodCpuSampler: per-pod figures as its read() returns them."""

    def __init__(self, figures):
        self.figures = figures

    def read(self):
        return self.figures


class CgroupIds:
    """Stands in for CgroupIdIndex: cgroup v2 id -> the pod cgroup it belongs to."""

    def __init__(self, mapping):
        self.mapping = mapping

    def pod(self, cgroup_id):
        uid = self.mapping.get(cgroup_id)
        return None if uid is None else PodCgroup(uid, "burstable", None, None, f"/kubepods/pod{uid}")


class FigureReading(Reading):
    pass


def reading(**attrs):
    r = FigureReading("src", 0.0, ())
    for k, v in attrs.items():
        object.__setattr__(r, k, v)
    return r


def test_offenders_from_every_source_named_and_ranked():
    attr = Attribution(
        cpu=PodCpu(
            {"cpu_utilization": {TRANSCODE: 0.61, CHECKOUT: 0.05, REDIS: 0.12}, "cpu_throttled_ratio": {CHECKOUT: 0.3}}
        ),
        cgroups=CgroupIds({101: TRANSCODE, 102: TRANSCODE, 103: REDIS}),
        resolver=PODS,
        n=2,
    )
    rows = attr(
        [
            reading(cgroup_figures={"cross_cgroup_preemptions_per_s": {101: 300.0, 102: 200.0, 103: 40.0, 999: 7.0}}),
            reading(
                pod_figures={
                    "process_churn_per_s": {
                        ("batch", "video-transcode-28453920-q7x2m"): 55.0,
                        ("shop", "checkout-api-7c9d8f6b5-k2v8n"): 2.0,
                    }
                }
            ),
        ]
    )
    got = [(o.metric, f"{o.namespace}/{o.name}", round(o.value, 3)) for o in rows]
    assert got == [
        ("cpu_utilization", "batch/video-transcode-28453920-q7x2m", 0.61),
        ("cpu_utilization", "default/redis-cache-0", 0.12),
        ("cpu_throttled_ratio", "shop/checkout-api-7c9d8f6b5-k2v8n", 0.3),
        ("cross_cgroup_preemptions_per_s", "batch/video-transcode-28453920-q7x2m", 500.0),  # two cgroups, one pod
        ("cross_cgroup_preemptions_per_s", "default/redis-cache-0", 40.0),
        ("process_churn_per_s", "batch/video-transcode-28453920-q7x2m", 55.0),
        ("process_churn_per_s", "shop/checkout-api-7c9d8f6b5-k2v8n", 2.0),
    ]


def test_pods_that_cannot_be_named_are_left_out():
    attr = Attribution(cpu=PodCpu({"cpu_utilization": {"not-a-known-uid": 0.9}}), resolver=PODS)
    assert attr([]) == ()
    assert Attribution(cpu=PodCpu({"cpu_utilization": {CHECKOUT: 0.9}}), resolver=None)([]) == ()


class Fixed:
    name = "fixed"
    metrics = ("cpu_utilization",)

    def read(self):
        r = reading(pod_figures={"process_churn_per_s": {("batch", "ffmpeg-7c9d"): 12.0}})
        object.__setattr__(r, "measurements", (Measurement.measured("cpu_utilization", 0.5),))
        return r


class Clock:
    def monotonic(self):
        return 1.0

    def wall_ms(self):
        return 1_700_000_000_000


def test_offenders_travel_in_the_vector_and_the_push():
    nc = NodeCollector("n", [Fixed()], Clock(), attribution=Attribution())
    v = nc.collect()
    assert [(o.namespace, o.name, o.metric, o.value) for o in v.offenders] == [
        ("batch", "ffmpeg-7c9d", "process_churn_per_s", 12.0)
    ]
    msg = v.to_proto()
    assert msg.top_offenders[0].name == "ffmpeg-7c9d" and msg.top_offenders[0].value == 12.0
    assert v.to_json()["top_offenders"][0]["namespace"] == "batch"


def test_a_failing_attribution_costs_only_the_offenders():
    def broken(readings):
        raise RuntimeError("kubelet exploded")

    v = NodeCollector("n", [Fixed()], Clock(), attribution=broken).collect()
    assert v.offenders == () and v.value("cpu_utilization") == pytest.approx(0.5)


def test_cgroup_v1_preemptions_are_attributed_by_cgroup_path():
    # on a cgroup v1 host the run-queue collector keys preemptions by cpu-controller path
    transcode = f"/kubepods/besteffort/pod{TRANSCODE}/" + "cd" * 32
    redis = f"/kubepods/pod{REDIS}"
    attr = Attribution(resolver=PODS, n=3)
    rows = attr(
        [
            reading(
                cgroup_path_figures={
                    "cross_cgroup_preemptions_per_s": {
                        transcode: 120.0,
                        f"/kubepods/besteffort/pod{TRANSCODE}": 30.0,
                        redis: 5.0,
                        "/": 900.0,
                        "/user.slice": 40.0,
                    }
                }
            )
        ]
    )
    got = {(o.namespace, o.name): o.value for o in rows}
    # the two cgroups of one pod add up; the host's own cgroups name no pod and are left out
    assert got == {("batch", "video-transcode-28453920-q7x2m"): 150.0, ("default", "redis-cache-0"): 5.0}
