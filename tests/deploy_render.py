"""Render deploy/ with `kubectl kustomize` and walk the objects: shared by the tests_deploy_* files.

kubectl is a real binary on the development and CI machines (Debian's kubectl, in the
machine image); where it is absent the tests that need it skip and say so.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"

#: Every kustomization an operator applies directly, by the name the tests use.
TARGETS = {
    "dev": DEPLOY / "overlays" / "dev",
    "production": DEPLOY / "overlays" / "production",
    "scheduler": DEPLOY / "scheduler",
    "monitoring": DEPLOY / "monitoring",
}
#: Optional components, rendered on top of production all at once.
COMPONENTS = ("active", "agent-sys-admin", "rebalance-evict")
#: Kubernetes minor versions the manifests must validate against.
K8S_VERSIONS = ("1.29.0", "1.35.0", "1.36.0", "1.37.0")  # the oldest the manifests support, and the supported releases
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "CronJob", "Job")


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_dir(path: Path) -> list[dict]:
    exe = kubectl()
    if exe is None:
        raise RuntimeError("kubectl not found")
    out = subprocess.run([exe, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_with_components(tmp: Path, components=COMPONENTS) -> list[dict]:
    """production + the given components, through a throw-away overlay (paths must be relative)."""
    tmp.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [rel(TARGETS["production"])],
                "components": [rel(DEPLOY / "components" / c) for c in components],
            }
        )
    )
    return render_dir(tmp)


@functools.cache
def rendered(name: str) -> tuple[dict, ...]:
    return tuple(render_dir(TARGETS[name]))


def find(docs, kind: str, name: str) -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(hits) != 1:
        raise AssertionError(f"expected one {kind}/{name}, found {len(hits)}")
    return hits[0]


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def containers(docs):
    """(workload, container) for every container and init container of every workload."""
    for obj in docs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield obj, c


def cli_help(subcommand: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", subcommand, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubeattention {subcommand} --help failed: {out.stderr}")
    return out.stdout


def help_flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))


def subcommands() -> set[str]:
    """The subcommands `kubeattention --help` lists (one per line under COMMAND)."""
    text = subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    ).stdout
    found = set()
    for name, aliases in re.findall(r"^ {4}([a-z][a-z-]+)(?: \(([a-z, -]+)\))?(?: {2,}|$)", text, flags=re.M):
        found.add(name)
        found.update(a.strip() for a in aliases.split(",") if a.strip())
    return found
