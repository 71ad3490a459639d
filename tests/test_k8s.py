"""kubeapi (pods, nodes, api_client): pod -> PodContext, QoS, owners, node predicates, client construction.

The pods and nodes are recorded API objects (tests/fixtures/k8s/, hand-made in the exact
shape kube-apiserver returns). The client tests talk to a *simulated* API server
(tests/fixtures/k8s/apiserver.py) because no Kubernetes API server can run on this
machine; the kubernetes client itself is the real one, so its decoding runs.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
from fixtures.k8s.apiserver import HERE, FakeApiServer, Reply, load, pod, pod_list
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeapi.api_client import KubeConfigError, api_client, api_error_summary, list_all
from kubeapi.nodes import node_affinity_matches, node_allocatable, placement_problem, tolerates, untolerated_taint
from kubeapi.pods import (
    QOS_BY_NAME,
    compute_qos,
    is_daemonset_pod,
    is_mirror_or_static_pod,
    pod_context,
    pod_context_from_v1,
    pod_qos,
    to_dict,
    workload_of,
)
from wire.schema import PodContext, Profile, QoS

MI, GI = 2**20, 2**30


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    yield server
    server.stop()


# ------------------------------------------------------------------ the fixtures are real shapes


@pytest.mark.parametrize(
    "name, model",
    [
        *[(p.name, "V1Pod") for p in sorted(HERE.glob("pod-*.json"))],
        ("nodelist.json", "V1NodeList"),
        ("status-500.json", "V1Status"),
        ("status-429-pdb.json", "V1Status"),
        ("status-404-pod.json", "V1Status"),
        ("status-410-continue.json", "V1Status"),
        ("eviction-201.json", "V1Status"),
        ("event-201.json", "CoreV1Event"),
    ],
)
def test_recorded_objects_decode_with_the_real_client(name, model):
    """Every fixture decodes through the kubernetes client's own models, and keeps its content."""
    obj = client.ApiClient().deserialize(json.dumps(load(name)), model, "application/json")
    assert type(obj).__name__ == model
    again = to_dict(obj)
    original = load(name)
    assert again.get("kind", original.get("kind")) == original.get("kind")
    if model == "V1Pod":
        assert again["metadata"]["uid"] == original["metadata"]["uid"]
        assert again["spec"]["containers"][0]["resources"] == original["spec"]["containers"][0]["resources"]


def test_watch_event_fixtures_are_watch_events():
    for name in ("watch-error-410.json", "watch-bookmark.json"):
        ev = client.ApiClient().deserialize((HERE / name).read_text(), "V1WatchEvent", "application/json")
        assert ev.type in ("ERROR", "BOOKMARK")


# ------------------------------------------------------------------ pod_context over pod shapes

CASES = [
    # fixture, cpu cores, memory bytes, qos, annotated profile, resolved profile, priority
    ("pod-deployment-running.json", 0.25, 256 * MI, QoS.BURSTABLE, None, Profile.LATENCY_CRITICAL, 0),
    (
        "pod-statefulset-guaranteed.json",
        2.1,
        4 * GI + 64 * MI,
        QoS.GUARANTEED,
        Profile.CACHE_SENSITIVE,
        Profile.CACHE_SENSITIVE,
        1_000_000,
    ),
    ("pod-job-besteffort.json", 0.0, 0, QoS.BEST_EFFORT, None, Profile.BATCH, 0),
    # init containers: max(sum of containers 0.75 / 896Mi, largest init 2 / 2Gi) per resource
    ("pod-init-containers.json", 2.0, 2 * GI, QoS.BURSTABLE, None, Profile.LATENCY_CRITICAL, 0),
    # sidecar 100m/128Mi runs beside the app 500m/256Mi -> 600m/384Mi; init "migrate" needs
    # 1 + the sidecar's 100m = 1.1 cores, 64+128 = 192Mi -> max 1.1 / 384Mi; + overhead 250m/120Mi
    (
        "pod-sidecar-overhead.json",
        1.35,
        504 * MI,
        QoS.BURSTABLE,
        Profile.LATENCY_CRITICAL,
        Profile.LATENCY_CRITICAL,
        100_000,
    ),
    ("pod-daemonset.json", 0.1, 180 * MI, QoS.BURSTABLE, None, Profile.LATENCY_CRITICAL, 2_000_001_000),
    ("pod-oomkilled.json", 1.0, GI, QoS.GUARANTEED, Profile.MEMORY_BANDWIDTH_BOUND, Profile.MEMORY_BANDWIDTH_BOUND, 0),
    ("pod-bare.json", 0.05, 32 * MI, QoS.BURSTABLE, None, Profile.LATENCY_CRITICAL, 0),
]


@pytest.mark.parametrize("fixture, cpu, mem, qos, profile, resolved, priority", CASES)
def test_pod_context(fixture, cpu, mem, qos, profile, resolved, priority):
    p = load(fixture)
    ctx = pod_context(p)
    assert ctx.cpu_request_cores == pytest.approx(cpu)
    assert ctx.memory_request_bytes == mem
    assert ctx.qos is qos
    assert ctx.profile is profile
    assert ctx.resolved_profile() is resolved
    assert ctx.priority == priority
    assert (ctx.namespace, ctx.name) == (p["metadata"]["namespace"], p["metadata"]["name"])


@pytest.mark.parametrize("fixture", sorted(p.name for p in HERE.glob("pod-*.json")))
def test_computed_qos_agrees_with_the_api_server(fixture):
    """Kubernetes' QoS derivation, recomputed without status.qosClass, matches what the API set."""
    p = load(fixture)
    recorded = p["status"].pop("qosClass")
    assert compute_qos(p) is QOS_BY_NAME[recorded]
    assert pod_qos(p) is QOS_BY_NAME[recorded]


def _one_container(container_resources: dict, spec_extra: dict | None = None) -> dict:
    p = pod()
    p["status"].pop("qosClass")
    p["spec"]["containers"] = [{"name": "app", "image": "x", "resources": container_resources}]
    p["spec"].update(spec_extra or {})
    return p


@pytest.mark.parametrize(
    "resources, extra, qos, cpu, mem",
    [
        # limits only: the API defaults requests to the limits -> Guaranteed
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, {}, QoS.GUARANTEED, 1.0, GI),
        (
            {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            {},
            QoS.BURSTABLE,
            0.5,
            GI,
        ),
        ({"limits": {"cpu": "1"}}, {}, QoS.BURSTABLE, 1.0, 0),
        ({}, {}, QoS.BEST_EFFORT, 0.0, 0),
        ({"requests": {"cpu": "0", "memory": "0"}}, {}, QoS.BEST_EFFORT, 0.0, 0),
        # only extended resources: not compute resources for QoS
        ({"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}, {}, QoS.BEST_EFFORT, 0.0, 0),
        # an init container without limits spoils Guaranteed
        (
            {"limits": {"cpu": "1", "memory": "1Gi"}},
            {"initContainers": [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]},
            QoS.BURSTABLE,
            1.0,
            GI,
        ),
        # pod-level resources (Kubernetes 1.32+) replace the container sums
        (
            {"requests": {"cpu": "100m"}},
            {"resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}},
            QoS.GUARANTEED,
            2.0,
            2 * GI,
        ),
        # decimal and binary suffixes, milli-cores and a memory quantity with a fraction
        ({"requests": {"cpu": "1500m", "memory": "1.5G"}}, {}, QoS.BURSTABLE, 1.5, 1_500_000_000),
    ],
)
def test_requests_and_qos_for_container_shapes(resources, extra, qos, cpu, mem):
    ctx = pod_context(_one_container(resources, extra))
    assert ctx.qos is qos
    assert ctx.cpu_request_cores == pytest.approx(cpu)
    assert ctx.memory_request_bytes == mem


def test_bad_quantity_names_the_field():
    p = _one_container({"requests": {"cpu": "lots"}})
    with pytest.raises(ValueError, match=r"spec.containers\[app\].resources.requests.cpu"):
        pod_context(p)


def test_unknown_profile_annotation_is_inferred_and_logged(caplog):
    p = pod(edit=lambda d: d["metadata"].setdefault("annotations", {}).update({"kubeattention.io/profile": "turbo"}))
    with caplog.at_level(logging.WARNING, logger="kubeapi.pods"):
        ctx = pod_context(p)
    assert ctx.profile is None and ctx.resolved_profile() is Profile.LATENCY_CRITICAL
    assert "turbo" in caplog.text and "shop/web-7d4b9c8f6d-x2x9k" in caplog.text


def test_priority_absent_is_zero_and_non_integer_is_an_error():
    p = pod()
    del p["spec"]["priority"]
    assert pod_context(p).priority == 0
    p["spec"]["priority"] = "high"
    with pytest.raises(ValueError, match="spec.priority"):
        pod_context(p)


def test_pod_context_of_a_v1pod_object_matches_the_dict():
    for name in ("pod-sidecar-overhead.json", "pod-statefulset-guaranteed.json", "pod-job-besteffort.json"):
        v1 = client.ApiClient().deserialize(json.dumps(load(name)), "V1Pod", "application/json")
        assert pod_context_from_v1(v1) == pod_context(load(name))


def test_pod_context_is_a_podcontext_and_rejects_non_objects():
    assert isinstance(pod_context(pod()), PodContext)
    with pytest.raises(ValueError, match="pod: expected a JSON object"):
        pod_context(["not", "a", "pod"])


# ------------------------------------------------------------------ owners


def test_workloads_and_pod_kinds():
    assert str(workload_of(load("pod-deployment-running.json"))) == "Deployment shop/web"
    assert str(workload_of(load("pod-statefulset-guaranteed.json"))) == "StatefulSet shop/cache"
    assert str(workload_of(load("pod-job-besteffort.json"))) == "Job analytics/report-29134560"
    assert workload_of(load("pod-bare.json")) is None
    # a ReplicaSet whose name does not end in the template hash stays a ReplicaSet
    p = pod(edit=lambda d: d["metadata"]["labels"].pop("pod-template-hash"))
    assert str(workload_of(p)) == "ReplicaSet shop/web-7d4b9c8f6d"
    assert is_daemonset_pod(load("pod-daemonset.json"))
    assert not is_daemonset_pod(load("pod-deployment-running.json"))
    assert is_mirror_or_static_pod(load("pod-mirror-static.json"))
    assert not is_mirror_or_static_pod(load("pod-bare.json"))


# ------------------------------------------------------------------ nodes, taints, affinity


@pytest.mark.parametrize(
    "toleration, taint, ok",
    [
        (
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            True,
        ),
        (
            {"key": "nvidia.com/gpu", "value": "present"},
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            True,
        ),  # empty operator means Equal, empty effect matches every effect
        (
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "absent"},
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            False,
        ),
        (
            {"key": "nvidia.com/gpu", "operator": "Exists"},
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            True,
        ),
        ({"operator": "Exists"}, {"key": "anything", "effect": "NoExecute"}, True),  # tolerates everything
        ({"operator": "Exists", "effect": "NoExecute"}, {"key": "anything", "effect": "NoSchedule"}, False),
        (
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            True,
        ),
        ({"key": "a", "operator": "Equal"}, {"key": "a", "effect": "NoSchedule"}, True),  # both values empty
        ({"key": "a", "operator": "Lt", "value": "5"}, {"key": "a", "value": "3", "effect": "NoSchedule"}, False),
    ],
)
def test_tolerates(toleration, taint, ok):
    assert tolerates(toleration, taint) is ok


def _nodes() -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in load("nodelist.json")["items"]}


def test_placement_problems_on_recorded_nodes():
    nodes = _nodes()
    p = pod()
    problems = {name: placement_problem(p, n) for name, n in nodes.items()}
    assert problems == {
        "cp-1": "taint node-role.kubernetes.io/control-plane:NoSchedule not tolerated",
        "node-a": None,
        "node-b": None,
        "node-c": "cordoned",
        "node-d": "not Ready",
        "node-e": None,  # PreferNoSchedule does not keep a pod off
        "node-gpu": "taint nvidia.com/gpu=present:NoSchedule not tolerated",
    }
    gpu = pod(
        edit=lambda d: d["spec"]["tolerations"].append(
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        )
    )
    assert placement_problem(gpu, nodes["node-gpu"]) is None


def test_node_selector_and_required_affinity():
    nodes = _nodes()
    ssd = pod(edit=lambda d: d["spec"].update(nodeSelector={"disktype": "ssd"}))
    assert node_affinity_matches(ssd, nodes["node-a"]) and not node_affinity_matches(ssd, nodes["node-b"])
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1b"]},
                            {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"},
                        ]
                    },
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-e"]}]},
                ]
            }
        }
    }
    zoned = pod(edit=lambda d: d["spec"].update(affinity=affinity))
    matched = sorted(n for n, node in nodes.items() if node_affinity_matches(zoned, node))
    assert matched == ["node-b", "node-c", "node-e"]
    daemon = load("pod-daemonset.json")  # pinned to node-a by matchFields; tolerates every taint
    assert sorted(n for n, node in nodes.items() if node_affinity_matches(daemon, node)) == ["node-a"]
    assert all(untolerated_taint(daemon, node) is None for node in nodes.values())


def test_allocatable():
    alloc = node_allocatable(_nodes()["node-a"])
    assert alloc["cpu"] == Decimal("3.92") and alloc["memory"] == 15212908 * 1024


# ------------------------------------------------------------------ client, list, backoff


def test_client_from_kubeconfig_talks_to_the_server(apiserver, tmp_path):
    apiserver.pods = [pod()]
    api = api_client(str(apiserver.write_kubeconfig(tmp_path / "kubeconfig", token="s3cret")), environ={})
    items, rv = list_all(client.CoreV1Api(api).list_pod_for_all_namespaces)
    assert [i["metadata"]["name"] for i in items] == ["web-7d4b9c8f6d-x2x9k"] and rv == "483391"
    assert apiserver.requests[-1].headers.get("authorization") == "Bearer s3cret"


def test_client_config_errors_name_the_source(tmp_path):
    with pytest.raises(KubeConfigError, match="nope"):
        api_client(str(tmp_path / "nope"), environ={})
    # in a pod without a service account token: in-cluster config fails cleanly
    with pytest.raises(KubeConfigError, match="in-cluster"):
        api_client(None, environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})


def test_list_all_follows_continue_tokens(apiserver):
    apiserver.pods = [pod(name=f"p{i}", uid=f"uid-{i}") for i in range(5)]
    items, rv = list_all(client.CoreV1Api(apiserver.api_client()).list_pod_for_all_namespaces, page_size=2)
    assert [i["metadata"]["name"] for i in items] == ["p0", "p1", "p2", "p3", "p4"]
    assert [r.query.get("continue") for r in apiserver.lists()] == [None, ["2"], ["4"]]


def test_list_all_raises_the_api_status(apiserver):
    apiserver.script(
        "pods", Reply(200, pod_list([pod()], continue_token="tok")), Reply(410, load("status-410-continue.json"))
    )
    with pytest.raises(ApiException) as info:
        list_all(client.CoreV1Api(apiserver.api_client()).list_pod_for_all_namespaces)
    assert info.value.status == 410
    assert "continue parameter is too old" in api_error_summary(info.value)
