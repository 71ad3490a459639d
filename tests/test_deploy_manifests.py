"""deploy/: every kustomization renders, every object validates against the Kubernetes
1.29-1.31 schemas, and the properties an operator relies on hold in what is rendered.

Real parts: `kubectl kustomize` (the machine's kubectl) renders, kubernetes-validate checks
each object against the OpenAPI schemas it ships (strict: unknown fields fail), and the
`kubeattention` CLI's own --help is the reference for every flag the manifests pass. No
cluster runs here, so nothing is applied; Prometheus Operator objects (no schema ships for
CRDs) are checked by cross-reference to what they select instead.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from deploy_render import (
    DEPLOY,
    K8S_VERSIONS,
    cli_help,
    containers,
    find,
    help_flags,
    kubectl,
    pod_labels,
    pod_spec,
    render_with_components,
    rendered,
    subcommands,
)

from wire import __version__

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]' brings it")

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl not on PATH (Debian's kubectl renders kustomize)")

NS = "kubeattention-system"
OVERLAYS = ("dev", "production")
#: Custom resources: no schema ships with kubernetes-validate; checked by cross-reference below.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
#: The agent's capabilities, exactly; deploy/README.md documents the same list.
AGENT_CAPABILITIES = ["BPF", "PERFMON", "SYS_RESOURCE"]
#: Secrets the operator creates before applying (deploy/README.md step 1); everything else referenced is rendered.
OPERATOR_SECRETS = {"kubeattention-redis", "kubeattention-aggregator-tls", "kubeattention-scheduler-tls"}
#: Containers that run without probes, and why.
NO_PROBES = {
    "kubeattention-collector": "serves no endpoint; retries API and Redis errors itself, exits on fatal ones",
    "kubeattention-rebalancer": "a CronJob's run-to-completion container, bounded by activeDeadlineSeconds",
}


@pytest.fixture(scope="module")
def all_components(tmp_path_factory):
    return render_with_components(tmp_path_factory.mktemp("overlay"))


def everything():
    for name in ("dev", "production", "scheduler", "monitoring"):
        yield name, rendered(name)


# --------------------------------------------------------------------------- rendering + schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", ["dev", "production", "scheduler", "monitoring", "all-components"])
def test_every_object_validates_against_the_kubernetes_schema(target, version, all_components):
    docs = all_components if target == "all-components" else rendered(target)
    assert docs, f"{target} rendered nothing"
    problems, checked = [], 0
    for d in docs:
        if d["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{d['kind']}/{d['metadata']['name']}: {path}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            problems.append(f"{d['kind']}/{d['metadata']['name']}: no schema ({e.message}); not a known CRD either")
    assert not problems, "\n".join(problems)
    assert checked > 0


def test_the_validator_is_not_vacuous():
    """A field in the wrong place (capabilities on the container, not its securityContext) fails."""
    ds = copy.deepcopy(find(rendered("production"), "DaemonSet", "kubeattention-agent"))
    kubernetes_validate.validate(ds, K8S_VERSIONS[0], strict=True)
    ds["spec"]["template"]["spec"]["containers"][0]["capabilities"] = {"add": ["BPF"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSIONS[0], strict=True)


def test_everything_lands_in_one_namespace():
    for name, docs in everything():
        for d in docs:
            ns = d["metadata"].get("namespace")
            if d["kind"] in ("Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"):
                assert ns is None, f"{name}: cluster-scoped {d['kind']}/{d['metadata']['name']} has a namespace"
            elif d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith(
                "extension-apiserver-authentication-reader"
            ):
                assert ns == "kube-system"
            else:
                assert ns == NS, f"{name}: {d['kind']}/{d['metadata']['name']} in namespace {ns!r}"


# --------------------------------------------------------------------------- containers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_probes(overlay):
    docs = rendered(overlay)
    seen = set()
    for obj, c in containers(docs):
        name = f"{obj['metadata']['name']}/{c['name']}"
        seen.add(obj["metadata"]["name"])
        res = c.get("resources", {})
        for key in ("cpu", "memory"):
            assert key in res.get("requests", {}), f"{name}: no {key} request"
        assert "memory" in res.get("limits", {}), f"{name}: no memory limit"
        if obj["metadata"]["name"] in NO_PROBES:
            assert not c.get("readinessProbe") and not c.get("livenessProbe")
            continue
        assert c.get("readinessProbe"), f"{name}: no readinessProbe"
        assert c.get("livenessProbe"), f"{name}: no livenessProbe"
    assert {
        "kubeattention-agent",
        "kubeattention-aggregator",
        "kubeattention-extender",
        "kubeattention-redis",
        "kubeattention-collector",
        "kubeattention-rebalancer",
        "kubeattention-scheduler",
    } <= seen


def test_nothing_is_privileged_and_only_the_agent_adds_capabilities(all_components):
    for name, docs in [*everything(), ("all-components", all_components)]:
        for obj, c in containers(docs):
            where = f"{name}: {obj['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("privileged") in (None, False), f"{where} is privileged"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where} allows privilege escalation"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where} has a writable root filesystem"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where} does not drop ALL capabilities"
            if obj["metadata"]["name"] != "kubeattention-agent":
                assert not sc.get("capabilities", {}).get("add"), f"{where} adds capabilities"
                spec = pod_spec(obj)
                assert spec["securityContext"].get("runAsNonRoot") is True, f"{where} may run as root"
                assert not spec.get("hostPID") and not spec.get("hostNetwork")
                assert not any("hostPath" in v for v in spec.get("volumes", [])), f"{where} mounts the host"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_capabilities_are_exactly_the_documented_ones(overlay):
    ds = find(rendered(overlay), "DaemonSet", "kubeattention-agent")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"]["capabilities"]["add"] == AGENT_CAPABILITIES
    readme = (DEPLOY / "README.md").read_text()
    documented = re.search(r"capabilities:?\s*`([A-Z_]+)`, `([A-Z_]+)` and `([A-Z_]+)`", readme)
    assert documented and list(documented.groups()) == AGENT_CAPABILITIES, (
        "deploy/README.md must name the agent's capabilities as `BPF`, `PERFMON` and `SYS_RESOURCE`"
    )


def test_sys_admin_only_through_its_component(all_components):
    ds = find(all_components, "DaemonSet", "kubeattention-agent")
    assert ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"][
        "add"
    ] == AGENT_CAPABILITIES + ["SYS_ADMIN"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_daemonset_runs_everywhere_and_sees_the_host(overlay):
    docs = rendered(overlay)
    ds = find(docs, "DaemonSet", "kubeattention-agent")
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    find(docs, "PriorityClass", spec["priorityClassName"])
    # The agent mounts its API token since it names pods from the API server (--pods-from
    # apiserver: list + watch of its node's pods, the ClusterRole kubeattention-agent).
    assert spec["automountServiceAccountToken"] is True
    (c,) = spec["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    args = c["args"]
    assert args[args.index("--node-name") + 1] == "$(NODE_NAME)"
    assert args[args.index("--pods-from") + 1] == "apiserver", "the shipped agent names pods from the API server"

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    host = {
        path: volumes[m["name"]]["hostPath"]["path"] for path, m in mounts.items() if "hostPath" in volumes[m["name"]]
    }
    for needed in ("/proc", "/sys", "/sys/kernel/tracing", "/sys/fs/cgroup", "/lib/modules", "/usr/src"):
        assert needed in host.values(), f"host {needed} not mounted"
    assert all(mounts[p].get("readOnly") for p in host), "every host mount is read-only"

    def flag(name):
        return args[args.index(name) + 1]

    # The flags point into the mounts.
    assert host[flag("--proc-root")] == "/proc" and host[flag("--sys-root")] == "/sys"
    assert host[f"{flag('--sys-root')}/kernel/tracing"] == "/sys/kernel/tracing"
    assert host["/sys/kernel/tracing"] == "/sys/kernel/tracing", "bcc looks for tracefs at /sys/kernel/tracing"
    assert host[f"{flag('--sys-root')}/fs/cgroup"] == "/sys/fs/cgroup"
    export = Path(flag("--tetragon-export"))
    assert host[str(export.parent)] == str(export.parent)
    values = yaml.safe_load((DEPLOY / "tetragon" / "values.yaml").read_text())
    assert export == Path(values["exportDirectory"]) / values["tetragon"]["exportFilename"], (
        "the agent reads the file Tetragon's Helm values make it write"
    )
    token = Path(flag("--token-file"))
    projected = volumes[mounts[str(token.parent)]["name"]]["projected"]["sources"][0]["serviceAccountToken"]
    assert projected["audience"] == "kubeattention" and projected["path"] == token.name
    ca = Path(flag("--tls-ca"))
    secret = volumes[mounts[str(ca.parent)]["name"]]["secret"]
    assert [i["key"] for i in secret["items"]] == ["ca.crt"], "the agent gets the CA, never a private key"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_aggregators_roll_out_safely(overlay):
    docs = rendered(overlay)
    min_replicas = 2 if overlay == "production" else 1
    for name in ("kubeattention-aggregator", "kubeattention-extender"):
        dep = find(docs, "Deployment", name)
        assert dep["spec"]["replicas"] >= min_replicas
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        labels = pod_labels(dep)
        term = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()
        pdb = find(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        svc = find(docs, "Service", name)
        assert svc["spec"]["selector"].items() <= labels.items()
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"Service {name} port {p['name']} targets no container port"
        # Probes hit the process's own HTTPS endpoints (the kubelet's gRPC probe cannot do TLS).
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS" and "--tls-cert" in c["args"]
    agg = find(docs, "Service", "kubeattention-aggregator")
    assert {p["name"]: p["port"] for p in agg["spec"]["ports"]} == {"grpc": 50051, "http": 8080}


def test_production_sizes_above_dev():
    def mem(doc, kind, name):
        c = pod_spec(find(doc, kind, name))["containers"][0]
        return c["resources"]["limits"]["memory"]

    def mib(q):
        return int(q[:-2]) * (1024 if q.endswith("Gi") else 1)

    dev, prod = rendered("dev"), rendered("production")
    assert mib(mem(prod, "StatefulSet", "kubeattention-redis")) > mib(mem(dev, "StatefulSet", "kubeattention-redis"))
    assert find(prod, "Deployment", "kubeattention-aggregator")["spec"]["replicas"] >= 3
    # Redis refuses writes before the kernel kills it: maxmemory below the container limit.
    for docs in (dev, prod):
        sts = find(docs, "StatefulSet", "kubeattention-redis")
        cm_name = next(v["configMap"]["name"] for v in pod_spec(sts)["volumes"] if "configMap" in v)
        conf = find(docs, "ConfigMap", cm_name)["data"]["redis.conf"]
        maxmemory = int(re.search(r"^maxmemory (\d+)mb$", conf, re.M).group(1))
        assert maxmemory < mib(mem(docs, "StatefulSet", "kubeattention-redis"))
        assert re.search(r'^save ""$', conf, re.M) and re.search(r"^appendonly no$", conf, re.M), "persistence off"


# --------------------------------------------------------------------------- images


def test_images_are_pinned_and_ours_carry_the_package_version(all_components):
    version = __version__  # pyproject.toml reads it from wire.__version__ (dynamic)
    for name, docs in [*everything(), ("all-components", all_components)]:
        for obj, c in containers(docs):
            image = c["image"]
            repo, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
            assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
            if repo.startswith("kubeattention/"):
                assert tag == version, f"{image}: tag is not the package version {version}"


# --------------------------------------------------------------------------- CLI flags


def test_every_flag_the_manifests_pass_exists(all_components):
    """Each kubeattention container's args start with a real subcommand and use only flags
    that subcommand's --help lists."""
    known_subcommands = subcommands()
    helps: dict[str, set[str]] = {}
    missing = []
    for name, docs in [*everything(), ("all-components", all_components)]:
        for obj, c in containers(docs):
            if not c["image"].startswith("kubeattention/"):
                continue
            sub, *args = c["args"]
            assert sub in known_subcommands, f"{obj['metadata']['name']}: {sub!r} is no kubeattention subcommand"
            flags = helps.setdefault(sub, help_flags(cli_help(sub)))
            for a in args:
                if a.startswith("--") and a.split("=", 1)[0] not in flags:
                    missing.append(f"{obj['metadata']['name']}: kubeattention {sub} has no {a}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_active_component_removes_exactly_shadow(all_components):
    def args(docs):
        return find(docs, "Deployment", "kubeattention-extender")["spec"]["template"]["spec"]["containers"][0]["args"]

    shadow, active = args(rendered("production")), args(all_components)
    assert "--shadow" in shadow and "--shadow" not in active
    assert [a for a in shadow if a != "--shadow"] == active


def test_rebalancer_evicts_only_with_its_component(all_components):
    def rules(docs):
        return [
            r
            for d in docs
            if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("kubeattention-rebalancer")
            for r in d["rules"]
        ]

    def args(docs):
        return pod_spec(find(docs, "CronJob", "kubeattention-rebalancer"))["containers"][0]["args"]

    prod = rendered("production")
    assert "--evict" not in args(prod) and not any("pods/eviction" in r["resources"] for r in rules(prod))
    assert "--evict" in args(all_components)
    assert any(r["resources"] == ["pods/eviction"] and r["verbs"] == ["create"] for r in rules(all_components))


# --------------------------------------------------------------------------- RBAC, secrets, network


#: Every rule each component gets, in full. A new permission must be added here on purpose.
EXPECTED_RULES = {
    "kubeattention-aggregator": [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ],
    # The agent: its node's pods (--pods-from apiserver, fieldSelector spec.nodeName), read only.
    "kubeattention-agent": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    "kubeattention-collector": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    "kubeattention-rebalancer": [
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ],
    "kubeattention-rebalancer-evict": [{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}],
    "kubeattention-scheduler-leader-election": [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["kubeattention-scheduler"],
            "verbs": ["get", "update"],
        },
    ],
}
#: Roles of Kubernetes' own that we bind, and to whom.
BOOTSTRAP_ROLES = {
    "system:kube-scheduler": "kubeattention-scheduler",
    "system:volume-scheduler": "kubeattention-scheduler",
    "extension-apiserver-authentication-reader": "kubeattention-scheduler",
}


def test_rbac_is_least_privilege(all_components):
    docs = list(all_components)
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] in ("ClusterRole", "Role")}
    assert roles == EXPECTED_RULES
    bound: dict[str, set[str]] = {}
    for b in (d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        ref = b["roleRef"]["name"]
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount" and s["namespace"] == NS
            bound.setdefault(s["name"], set()).add(ref)
            if ref in BOOTSTRAP_ROLES:
                assert BOOTSTRAP_ROLES[ref] == s["name"]
            else:
                assert ref in roles, f"binding to unknown role {ref}"
    # The agent is bound to its read-only pod role only (--pods-from apiserver), nothing else.
    assert bound.get("kubeattention-agent") == {"kubeattention-agent"}
    assert "kubeattention-extender" not in bound
    assert "kubeattention-redis" not in bound
    # ServiceAccounts without API access do not mount a token.
    for sa in (d for d in docs if d["kind"] == "ServiceAccount"):
        if sa["metadata"]["name"] not in bound:
            assert sa.get("automountServiceAccountToken") is False, f"{sa['metadata']['name']} mounts an unused token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_rendered_or_made_by_the_operator(overlay):
    docs = rendered(overlay) + rendered("monitoring")
    rendered_secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    text = json.dumps(docs)
    referenced = (
        set(re.findall(r'"secretName": "([^"]+)"', text))
        | {m for m in re.findall(r'"secretKeyRef": \{[^}]*"name": "([^"]+)"', text)}
        | set(re.findall(r'"secret": \{"name": "([^"]+)"', text))
    )
    assert referenced, "nothing references a Secret?"
    from_operator = referenced - rendered_secrets
    assert from_operator <= OPERATOR_SECRETS, f"unknown secrets: {from_operator - OPERATOR_SECRETS}"
    readme = (DEPLOY / "README.md").read_text()
    for name in from_operator:
        assert re.search(rf"create secret \w+ {name}\b", readme), f"deploy/README.md does not say how to create {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_the_intended_peers(overlay):
    docs = rendered(overlay)
    pods = {o["metadata"]["name"]: pod_labels(o) for o in docs if pod_spec(o) is not None}

    def selected(selector):
        return {n for n, labels in pods.items() if selector.get("matchLabels", {}).items() <= labels.items()}

    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"] and not deny[0]["spec"].get("ingress")
    admitted: dict[tuple[str, str], set[str]] = {}
    for p in policies:
        for target in selected(p["spec"]["podSelector"]) if p["spec"]["podSelector"] else ():
            for rule in p["spec"].get("ingress", []):
                for port in rule["ports"]:
                    peers = admitted.setdefault((target, port["port"]), set())
                    for peer in rule["from"]:
                        if "podSelector" in peer:
                            assert selected(peer["podSelector"]), f"{p['metadata']['name']}: selects no pod"
                            peers |= selected(peer["podSelector"])
                        else:
                            peers.add(
                                "namespace:" + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            )
    assert admitted == {
        ("kubeattention-aggregator", "grpc"): {"kubeattention-agent", "kubeattention-rebalancer"},
        ("kubeattention-aggregator", "http"): {"namespace:monitoring"},
        ("kubeattention-extender", "http"): {"kubeattention-scheduler", "namespace:monitoring"},
        ("kubeattention-redis", "redis"): {
            "kubeattention-aggregator",
            "kubeattention-extender",
            "kubeattention-collector",
        },
        ("kubeattention-agent", "http"): {"namespace:monitoring"},
    }
    # Named ports exist on the pods they protect.
    for target, port in admitted:
        obj = next(o for o in docs if o["metadata"]["name"] == target and pod_spec(o) is not None)
        assert port in {p["name"] for c in pod_spec(obj)["containers"] for p in c.get("ports", [])}


# --------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_second_scheduler_runs_the_checked_in_configuration(overlay):
    docs = rendered(overlay)
    dep = find(docs, "Deployment", "kubeattention-scheduler")
    spec = pod_spec(dep)
    (c,) = spec["containers"]
    assert c["image"].startswith("registry.k8s.io/kube-scheduler:v1.")
    config_path = Path(next(a.split("=", 1)[1] for a in c["command"] if a.startswith("--config=")))
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    cm = find(docs, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    assert cm["data"][config_path.name] == (DEPLOY / "scheduler" / "kube-scheduler-config.yaml").read_text()
    config = yaml.safe_load(cm["data"][config_path.name])
    (ext,) = config["extenders"]
    # The extender URL is a Service of this render, on a port it exposes.
    host, port = re.match(r"https://([^/:]+):(\d+)/", ext["urlPrefix"]).groups()
    svc_name, svc_ns = host.split(".")[:2]
    svc = find(docs, "Service", svc_name)
    assert svc["metadata"]["namespace"] == svc_ns and int(port) in {p["port"] for p in svc["spec"]["ports"]}
    # Its client certificate files are mounted where the config says.
    tls_mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(Path(ext["tlsConfig"]["certFile"]).parent))
    items = {i["path"] for i in volumes[tls_mount["name"]]["secret"]["items"]}
    assert {Path(ext["tlsConfig"][k]).name for k in ("certFile", "keyFile", "caFile")} <= items
    # Leader election uses the lease its Role may update.
    le = config["leaderElection"]
    role = find(rendered("scheduler"), "Role", "kubeattention-scheduler-leader-election")
    assert le["resourceNamespace"] == NS and [le["resourceName"]] in [r.get("resourceNames") for r in role["rules"]]
    # The extender that serves it is in shadow mode by default.
    assert "--shadow" in pod_spec(find(docs, "Deployment", svc_name))["containers"][0]["args"]


# --------------------------------------------------------------------------- monitoring


def test_monitors_select_real_targets():
    mon, prod = rendered("monitoring"), rendered("production")
    sm = find(mon, "ServiceMonitor", "kubeattention-aggregator")
    services = [
        s
        for s in prod
        if s["kind"] == "Service" and sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert {s["metadata"]["name"] for s in services} == {"kubeattention-aggregator", "kubeattention-extender"}
    for s in services:
        assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in s["spec"]["ports"]}
    assert sm["spec"]["endpoints"][0]["scheme"] == "https"
    assert sm["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"]["name"] in OPERATOR_SECRETS
    pm = find(mon, "PodMonitor", "kubeattention-agent")
    ds = find(prod, "DaemonSet", "kubeattention-agent")
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels(ds).items()
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in pod_spec(ds)["containers"][0]["ports"]}
    relabel = pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel == {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
    assert {sm["spec"]["namespaceSelector"]["matchNames"][0], pm["spec"]["namespaceSelector"]["matchNames"][0]} == {NS}


def test_alert_rules_have_the_shape_prometheus_operator_wants():
    rule = find(rendered("monitoring"), "PrometheusRule", "kubeattention")
    names = []
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            names.append(r["alert"])
            assert r["expr"].count("(") == r["expr"].count(")")
            assert r["labels"]["severity"] in {"critical", "warning", "info"}
            assert r["annotations"]["summary"]
            if "for" in r:
                assert re.fullmatch(r"\d+[smh]", r["for"])
    assert len(names) == len(set(names))
    for wanted in (
        "KubeAttentionAgentDown",
        "KubeAttentionTelemetryStale",
        "KubeAttentionBatchScoreFallbacks",
        "KubeAttentionBatchScoreSlow",
    ):
        assert wanted in names


def test_dashboard_is_a_grafana_dashboard_shipped_in_its_configmap():
    path = DEPLOY / "monitoring" / "grafana-dashboard.json"
    dash = json.loads(path.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    targets = [t for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]
    assert targets and all(t["expr"].strip() for t in targets)
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "node"}
    cm = find(rendered("monitoring"), "ConfigMap", "kubeattention-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["kubeattention.json"]) == dash


def test_the_operator_guide_uses_real_commands_and_flags():
    """Every `kubeattention SUB --flag` in deploy/README.md's command blocks exists."""
    text = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += re.findall(r"kubeattention ([a-z-]+)((?: +(?:--[a-z-]+|\"[^\"]*\"|'[^']*'|[^\s|&'\"]+))*)", joined)
    assert len(commands) >= 4
    known = subcommands()
    for sub, rest in commands:
        assert sub in known, f"deploy/README.md: kubeattention {sub}: no such subcommand"
        flags = help_flags(cli_help(sub))
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
            assert flag in flags, f"deploy/README.md: kubeattention {sub} has no {flag}"
