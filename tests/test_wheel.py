"""The wheel, installed the way an image installs it: built from this tree, put into a
fresh virtualenv (not editable), and run from outside the repository.

The fresh venv gets the runtime dependencies without a network: a ``.pth`` file holding
one plain path, the dev venv's site-packages. A plain path line only extends ``sys.path``;
the ``.pth`` files *in* that directory (the dev venv's editable-install finder among them)
are not processed, so every project package must come from the wheel - which the first
tests check before any other relies on it.

Then what a node needs of the install: the agent measures (the run-queue p99 from the
wheel's own bpf/ sources) and ``agent --check`` agrees with what it measures, metric by
metric; the packaged models, calibration data and recordings load. On a host where eBPF
cannot work (no root, no bcc, no tracefs, no headers) the agent test skips with the
reason, decided as tests/test_bpf_kernel.py decides it: by loading the run-queue collector
from the repository.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from procs import REPO, free_port, wait_for_port

from wire.schema import METRIC_NAMES

pytestmark = pytest.mark.integration

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = sorted(p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
#: Files in the package directories that the wheel leaves out on purpose.
NOT_SHIPPED = {
    "agent/recordings/record.sh": "records new recordings on a development machine; an install only replays them",
}
#: Not copied into the build tree: development state, not sources (at any depth / at the top only).
SKIP_ANYWHERE = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".import_linter_cache", ".hypothesis"}
SKIP_AT_TOP = {".git", ".venv", "build", "dist", ".demo", "reports", "certs", "evaluation", "tests", "bench"}

P99 = "runqueue_latency_p99_us"
DEBIAN_PYTHON = Path("/usr/bin/python3")
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc/__init__.py")
AGENT_DEADLINE_S = 30.0
#: After ``--check``, how many more vectors may pass before a metric it calls measurable
#: counts as not measured by the agent.
VECTORS_AFTER_CHECK = 5


@dataclass(frozen=True)
class Install:
    root: Path
    """A directory outside the repository: the cwd of everything run from the install."""
    venv: Path
    site: Path
    wheel: Path
    tree: Path
    """The copy of the repository the wheel was built from."""
    env: dict[str, str]

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def run(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python_json(self, code: str, timeout: float = 60) -> Any:
        """Run ``code`` in the installed interpreter; it prints one JSON document."""
        proc = self.run(self.bin("python"), "-c", code, timeout=timeout)
        assert proc.returncode == 0, f"the installed python failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        return json.loads(proc.stdout)


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    """No PYTHONPATH, no VIRTUAL_ENV, no dev venv on PATH; bcc's header override passes through."""
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    if os.environ.get("BCC_KERNEL_SOURCE"):
        env["BCC_KERNEL_SOURCE"] = os.environ["BCC_KERNEL_SOURCE"]
    return env


def copy_tree(dst: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in SKIP_ANYWHERE or n.endswith((".pyc", ".egg-info"))}
        if Path(directory) == REPO:
            skip |= SKIP_AT_TOP & set(names)
        return skip

    shutil.copytree(REPO, dst, ignore=ignore)


def checked(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> None:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"`{' '.join(map(str, args))}` exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Install:
    if importlib.util.find_spec("build") is None:
        pytest.fail(f"`build` is not installed in {sys.prefix}: pip install -e '.[dev]'")
    base = tmp_path_factory.mktemp("wheel")
    tree, out, venv, root = base / "src", base / "dist", base / "venv", base / "run"
    root.mkdir()
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and the
    # working tree is shared with whoever else runs tests.
    copy_tree(tree)
    build_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    checked([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, tree], base, build_env)
    (wheel,) = out.glob("kubeattention-*.whl")

    checked([sys.executable, "-m", "venv", "--without-pip", venv], base)
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "--disable-pip-version-check"]
    checked([*pip, "install", "--no-deps", "--no-index", "--quiet", wheel], base, build_env)

    env = clean_env(venv, root)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dev_site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    assert str(site) not in dev_site
    (site / "dev_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(dev_site)))
    return Install(root=root, venv=venv, site=site, wheel=wheel, tree=tree, env=env)


# ------------------------------------------------------------------ what is installed


def test_the_wheel_holds_every_file_of_the_packages(install):
    with zipfile.ZipFile(install.wheel) as whl:
        names = set(whl.namelist())
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    with zipfile.ZipFile(install.wheel) as whl:
        assert sorted(whl.read(top_level).decode().split()) == PACKAGES
    shipped = {n for n in names if ".dist-info/" not in n}
    in_tree = {
        p.relative_to(install.tree).as_posix()
        for package in PACKAGES
        for p in (install.tree / package).rglob("*")
        if p.is_file()
    }
    missing = sorted(in_tree - shipped - set(NOT_SHIPPED))
    assert not missing, f"in the package directories but not in the wheel (package-data in pyproject.toml?): {missing}"
    assert not shipped - in_tree, f"in the wheel but not in the tree: {sorted(shipped - in_tree)}"
    assert set(NOT_SHIPPED) <= in_tree - shipped, "NOT_SHIPPED lists a file that ships or no longer exists"


def test_the_packages_come_from_the_wheel_not_the_checkout(install):
    found = install.python_json(
        f"""
import importlib, json, sys
import agent, bpf, inference.model
print(json.dumps({{
    "modules": {{n: importlib.import_module(n).__file__ for n in {PACKAGES!r}}},
    "agent": agent.__file__,
    "bpf": str(bpf.source_dir()),
    "bpf_programs": bpf.program_names(),
    "bpf_header": (bpf.source_dir() / bpf.COMMON_HEADER).is_file(),
    "model": str(inference.model.DEFAULT_MODEL_PATH),
    "editable_finders": [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()],
}}))
"""
    )
    outside = {name: path for name, path in found["modules"].items() if not Path(path).is_relative_to(install.site)}
    assert not outside, f"imported from outside the fresh venv {install.site}: {outside}"
    assert not found["editable_finders"], "the dev venv's editable finder is active in the fresh venv"
    for key in ("agent", "bpf", "model"):
        assert Path(found[key]).is_relative_to(install.site), f"{key}: {found[key]} is not in {install.site}"
    assert Path(found["model"]).is_file()
    assert found["bpf_programs"] == sorted(p.name for p in (REPO / "bpf").glob("*.bpf.c"))
    assert found["bpf_header"]


def test_the_packaged_models_and_data_load(install):
    found = install.python_json(
        """
import json, math, pathlib
import agent, scorer
from agent.recording_file import read_recording
from inference.model import DEFAULT_MODEL_PATH, InterferenceModel
from scorer.calibration.data import load

data = load(pathlib.Path(scorer.__file__).parent / "data" / "calibration")
models = {}
for path in sorted(DEFAULT_MODEL_PATH.parent.glob("*.onnx")):
    model = InterferenceModel.load(path)
    models[path.name] = model.predict_slowdown(data.X[:64]).tolist()
default = InterferenceModel.load()
recorded = sorted((pathlib.Path(agent.__file__).parent / "recordings").glob("*.jsonl"))
recordings = {p.name: len(read_recording(p).vectors) for p in recorded}
print(json.dumps({"rows": len(data), "path": data.path, "default": default.source, "version": default.version,
                  "models": models, "recordings": recordings}))
"""
    )
    assert found["rows"] > 0 and Path(found["path"]).is_relative_to(install.site)
    assert Path(found["default"]).is_relative_to(install.site) and found["version"]
    assert sorted(found["models"]) == sorted(p.name for p in (REPO / "inference" / "models").glob("*.onnx"))
    for name, pred in found["models"].items():
        assert len(pred) == min(64, found["rows"]), name
        assert all(math.isfinite(s) and s >= 1.0 for s in pred), f"{name}: slowdowns {pred[:8]}..."
    assert sorted(found["recordings"]) == sorted(p.name for p in (REPO / "agent" / "recordings").glob("*.jsonl"))
    assert all(n > 0 for n in found["recordings"].values()), found["recordings"]


def test_the_compile_helper_starts_under_debian_python(install):
    """The agent image has bcc only in Debian's /usr/bin/python3, so the agent runs its compile
    helper (agent/ebpf/compile_helper.py, as a script) under that interpreter with ``-I``: no
    PYTHONPATH, no script directory on sys.path, nothing of the agent's venv. The helper's
    module must import there."""
    if not (DEBIAN_PYTHON.exists() and DEBIAN_BCC.exists()):
        pytest.skip(f"no Debian python3-bpfcc here ({DEBIAN_BCC})")
    helper = install.site / "agent" / "ebpf" / "compile_helper.py"
    proc = install.run(DEBIAN_PYTHON, "-I", helper, "--help")
    if proc.returncode != 0:
        pytest.fail(
            f"`{DEBIAN_PYTHON} -I {helper} --help` exited with {proc.returncode}; the agent image's "
            f"eBPF compile helper would fail the same way:\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


# ------------------------------------------------------------------ the agent from the install


def host_ebpf_problem() -> str | None:
    """Why eBPF cannot work on this host, decided by the repository's own collector."""
    from agent.collectors.ebpf_runqueue import RunqueueCollector

    collector = RunqueueCollector()
    try:
        return collector.unavailable
    finally:
        collector.close()


def get_node(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/node", timeout=2) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        if err.code == 503:  # no vector collected yet
            return None
        raise
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def parse_check(text: str) -> dict[str, str]:
    """metric -> measured | fallback | missing, from the table of ``agent --check``."""
    statuses = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 3 and cells[0].isdigit() and cells[1] in METRIC_NAMES:
            statuses[cells[1]] = cells[2]
    return statuses


class RunningAgent:
    """``kubeattention agent`` from the install's bin, and the distinct vectors it served."""

    def __init__(self, install: Install, port: int):
        self.install, self.port = install, port
        self.log = install.root / f"agent-{port}.log"
        self.vectors: list[dict[str, Any]] = []
        self._scratch = install.root / "io-scratch"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(install.bin("kubeattention")),
                    "agent",
                    "--aggregator",
                    "none",
                    "--http-listen",
                    f"127.0.0.1:{port}",
                    "--interval",
                    "1",
                ],
                cwd=install.root,
                env=install.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def poll(self) -> None:
        """Cause some block IO (so the block-IO p99 has requests), then take a new vector if any."""
        if self.proc.poll() is not None:
            pytest.fail(f"the installed agent exited with {self.proc.returncode}:\n{self.output()}", pytrace=False)
        with self._scratch.open("wb") as f:
            f.write(os.urandom(1 << 16))
            f.flush()
            os.fsync(f.fileno())
        time.sleep(0.25)
        body = get_node(self.port)
        if body is not None and (not self.vectors or body["collected_at_ms"] != self.vectors[-1]["collected_at_ms"]):
            self.vectors.append(body)

    def measured(self) -> set[str]:
        return {m["name"] for v in self.vectors for m in v["metrics"] if m["available"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_the_installed_agent_measures_and_its_check_agrees(install):
    problem = host_ebpf_problem()
    if problem:
        pytest.skip(f"eBPF run-queue collector unavailable on this host: {problem}")
    port = free_port()
    agent = RunningAgent(install, port)
    deadline = time.monotonic() + AGENT_DEADLINE_S
    try:
        wait_for_port(port, timeout=AGENT_DEADLINE_S, proc=agent.proc)
        # (a) the run-queue p99, from the wheel's bpf/ sources
        while P99 not in agent.measured():
            if time.monotonic() > deadline:
                last = agent.vectors[-1]["metrics"][5] if agent.vectors else "no vector at all"
                pytest.fail(f"no {P99} after {AGENT_DEADLINE_S:g} s: {last}\n{agent.output()}", pytrace=False)
            agent.poll()
        # (b) --check, from the same install, while the agent runs
        check = install.run(install.bin("kubeattention"), "agent", "--check", timeout=30)
        assert check.returncode == 0, f"agent --check exited with {check.returncode}:\n{check.stdout}{check.stderr}"
        statuses = parse_check(check.stdout)
        assert sorted(statuses) == sorted(METRIC_NAMES), f"cannot read the --check table:\n{check.stdout}"
        assert set(statuses.values()) <= {"measured", "fallback", "missing"}, check.stdout
        measurable = {m for m, s in statuses.items() if s != "missing"}
        seen_at_check = len(agent.vectors)
        while not measurable <= agent.measured() and len(agent.vectors) < seen_at_check + VECTORS_AFTER_CHECK:
            if time.monotonic() > deadline:
                break
            agent.poll()
    finally:
        agent.stop()

    p99 = next(m for m in agent.vectors[-1]["metrics"] if m["name"] == P99)
    assert p99["available"] and 0 < p99["value"] < 10_000_000 and math.isfinite(p99["value"]), p99
    measured = agent.measured()
    disagree = []
    for name in METRIC_NAMES:
        if (name in measured) != (name in measurable):
            reason = next(
                (m.get("reason") for v in reversed(agent.vectors) for m in v["metrics"] if m["name"] == name), None
            )
            agent_says = "measured" if name in measured else f"missing in all {len(agent.vectors)} vectors ({reason})"
            disagree.append(f"  {name}: --check says {statuses[name]}, the agent {agent_says}")
    assert not disagree, (
        "agent --check and the running agent disagree:\n" + "\n".join(disagree) + f"\n\n--check:\n{check.stdout}"
    )
    # The agent's own start-up probe (on /v1/node) is the same report.
    served = agent.vectors[-1].get("capabilities")
    assert served is not None, "/v1/node carries no capabilities"
    assert {m["metric"]: m["status"] for m in served["metrics"]} == statuses
