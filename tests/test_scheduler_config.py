"""deploy/scheduler/: the KubeSchedulerConfiguration points at routes the aggregator serves.

kube-scheduler cannot run here; the config is checked against the protocol's shape and the
aggregator's own routes, so a renamed route or verb fails this test.
"""

from pathlib import Path

import yaml

from aggregator.http_app import build_app
from aggregator.snapshot import Snapshot

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "scheduler"


class _Ext:
    def prioritize(self, body):
        return []

    def filter(self, body):
        return {}


def _routes() -> set[str]:
    app = build_app(Snapshot(), None, lambda: 0, 10_000, lambda: (True, ""), "m", extender=_Ext())
    return {r.path for r in app.routes}


def test_second_scheduler_profile_and_extender():
    cfg = yaml.safe_load((DEPLOY / "kube-scheduler-config.yaml").read_text())
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1" and cfg["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["kubeattention-scheduler"]
    (ext,) = cfg["extenders"]
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is True and ext["weight"] > 0
    assert ext["httpTimeout"].endswith("s")
    routes = _routes()
    prefix = "/" + ext["urlPrefix"].split("://", 1)[1].split("/", 1)[1]
    assert f"{prefix}/{ext['filterVerb']}" in routes and f"{prefix}/{ext['prioritizeVerb']}" in routes


def test_snippet_matches_the_full_config():
    full = yaml.safe_load((DEPLOY / "kube-scheduler-config.yaml").read_text())["extenders"][0]
    snippet = yaml.safe_load((DEPLOY / "extender-snippet.yaml").read_text())["extenders"][0]
    assert {k: v for k, v in full.items() if k != "enableHTTPS"} == snippet
