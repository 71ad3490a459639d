import pytest

from scheduling.decisions import Decision
from scheduling.shadow_report import format_report, parse_since, summarize


def decision(uid, recommended, slowdowns, ts=1, candidates=("a", "b", "c")):
    return Decision(
        ts_ms=ts,
        pod_uid=uid,
        pod_namespace="shop",
        pod_name=f"pod-{uid}",
        pod={},
        candidates=list(candidates),
        scores=[100 / s if s else 50 for s in slowdowns],
        statuses=["SCORED" if s else "STALE" for s in slowdowns],
        slowdowns=list(slowdowns),
        recommended=recommended,
        model_version="m",
        mode="shadow",
    )


def test_match_rate_and_excess_slowdown():
    ds = [
        decision("1", "a", [1.1, 2.0, None]),
        decision("2", "a", [1.2, 1.6, 1.3]),
        decision("3", "b", [1.9, 1.0, 1.4]),
        decision("4", "a", [1.0, 1.0, 1.0]),
        decision("5", "a", [1.0, 1.0, 1.0]),
    ]
    landed = {"1": "b", "2": "a", "3": "b", "4": None}  # 4 pending, 5 gone
    r = summarize(ds, landed)
    assert (r.decisions, r.landed, r.pending, r.not_found, r.matched) == (5, 3, 1, 1, 2)
    assert r.match_rate == pytest.approx(2 / 3)
    assert r.mean_slowdown_landed == pytest.approx((2.0 + 1.2 + 1.0) / 3)
    assert r.mean_excess_slowdown == pytest.approx((0.9 + 0 + 0) / 3)
    assert r.slo_breaches_landed == 1 and r.slo_breaches_recommended == 0
    assert "match rate 66.7%" in format_report(r)


def test_only_the_newest_decision_per_pod_counts_and_unscored_landings_are_said():
    ds = [decision("1", "a", [1.1, 2.0, None], ts=1), decision("1", "b", [3.0, 1.1, None], ts=2)]
    r = summarize(ds, {"1": "c"})
    assert r.decisions == 1 and r.matched == 0 and r.unscored_landings == 1 and r.mean_slowdown_landed is None


def test_empty_report_formats():
    assert "match rate -" in format_report(summarize([], {}))


@pytest.mark.parametrize("text,ms", [("30m", 1_800_000), ("6h", 21_600_000), ("7d", 604_800_000)])
def test_since(text, ms):
    assert parse_since(text) == ms


def test_bad_since():
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


def test_shadow_report_command_joins_redis_decisions_with_the_api(redis_server, tmp_path, capsys):
    """The Kubernetes API server is simulated (no control plane can run here): recorded pods
    over real HTTP to the real kubernetes client; decisions are in a real redis-server."""
    import argparse
    import json
    import time

    import redis
    from fixtures.k8s.apiserver import FakeApiServer, pod

    from scheduling import shadow_report
    from scheduling.decisions import DecisionLog

    api = FakeApiServer().start()
    try:
        api.pods = [pod(name="web-1", uid="u1", node="a"), pod(name="web-2", uid="u2", node="b")]
        log = DecisionLog(redis.Redis.from_url(redis_server.url, decode_responses=True), "ka:")
        now = time.time_ns() // 1_000_000
        log.append(decision("u1", "a", [1.1, 1.8, 1.3], ts=now))
        log.append(decision("u2", "a", [1.1, 1.8, 1.3], ts=now))
        log.append(decision("u3", "c", [1.1, 1.8, 1.3], ts=now))  # a pod that is gone
        p = argparse.ArgumentParser()
        shadow_report.configure_parser(p)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        args = p.parse_args(["--redis-url", redis_server.url, "--kubeconfig", str(kubeconfig), "--json"])
        assert shadow_report.run(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["decisions"], out["landed"], out["matched"], out["not_found"]) == (3, 2, 1, 1)
        assert out["mean_excess_slowdown"] == pytest.approx((0 + 0.7) / 2)
        assert out["slo_breaches_landed"] == 1
        assert any(r.path == "/api/v1/pods" for r in api.seen("GET"))
    finally:
        api.stop()


def test_shadow_report_without_a_kubeconfig_says_so(redis_server, tmp_path, capsys):
    import argparse

    from scheduling import shadow_report

    p = argparse.ArgumentParser()
    shadow_report.configure_parser(p)
    args = p.parse_args(["--redis-url", redis_server.url, "--kubeconfig", str(tmp_path / "missing")])
    assert shadow_report.run(args) == 1
    assert "cannot list pods from the Kubernetes API" in capsys.readouterr().err
