"""deploy/images/*.Dockerfile, checked without a Docker engine (none runs on these machines).

What a build would find out first is checked here: every COPY source exists and survives
.dockerignore, base images are pinned, the entrypoint is the package's console script and
the command a real subcommand, bpf/ lands where agent/ebpf/loader.py looks for it, and the
ONNX model is package data that `pip install .` puts in the image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from deploy_render import REPO, subcommands

IMAGES = REPO / "deploy" / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    path = path.rstrip("/")
    parts = path.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(p, pat[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            return True
    return False


def stages(path: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def test_there_are_two_images():
    assert [p.name for p in DOCKERFILES] == ["agent.Dockerfile", "aggregator.Dockerfile"]


def test_ignore_matching_is_not_vacuous():
    pats = dockerignore()
    assert ignored(".venv/bin/python", pats) and ignored("tests/test_x.py", pats)
    assert ignored("agent/__pycache__/x.pyc", pats)
    assert not ignored("agent/ebpf/loader.py", pats) and not ignored("bpf/runqlat.bpf.c", pats)
    # Private keys never reach the build context (make certs, the demo).
    assert ignored("certs/ca-key.pem", pats) and ignored(".demo/certs/aggregator-key.pem", pats)
    assert ignored("somewhere/else/node-a-key.pem", pats)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_not_ignored(dockerfile):
    pats = dockerignore()
    copies = 0
    for word, args in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        assert word == "COPY", f"{dockerfile.name}: use COPY, not ADD"
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        *sources, _dest = [p for p in parts if not p.startswith("--")]
        for src in sources:
            copies += 1
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src}: no such file in the repository"
            assert not ignored(src, pats), f"{dockerfile.name}: COPY {src} is excluded by .dockerignore"
    assert copies >= 5


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(dockerfile):
    froms = [args.split()[0] for word, args in instructions(dockerfile) if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    for image in froms:
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+[-\w.]*$", image), (
            f"{dockerfile.name}: {image} is not pinned to a full version"
        )
        assert ":latest" not in image
    assert len(set(froms)) == 1, "build and runtime stages use the same base (the venv's interpreter must match)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_is_the_console_script_and_cmd_a_real_subcommand(dockerfile):
    final = stages(dockerfile)[-1]
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    cmd = [json.loads(a) for w, a in final if w == "CMD"]
    assert len(entry) == 1 and len(cmd) == 1, "exec-form ENTRYPOINT and CMD in the final stage"
    (script,) = PYPROJECT["project"]["scripts"]
    assert entry[0] == [f"/opt/kubeattention/bin/{script}"]
    assert cmd[0][0] in subcommands(), f"{cmd[0][0]!r} is no kubeattention subcommand"
    assert cmd[0][0] == dockerfile.name.split(".")[0]
    assert not any(w == "HEALTHCHECK" for w, _ in final), "Kubernetes probes are used instead"


def test_aggregator_image_runs_as_non_root():
    users = [a for w, a in stages(IMAGES / "aggregator.Dockerfile")[-1] if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_agent_image_puts_bpf_where_the_agent_looks():
    """bpf/ is not a Python package: agent/ebpf/loader.py expects it beside the agent package."""
    from agent.ebpf import loader as bpfload

    assert bpfload.BPF_DIR == Path(bpfload.__file__).resolve().parent.parent / "bpf"
    text = (IMAGES / "agent.Dockerfile").read_text()
    base = re.search(r"FROM python:(\d+\.\d+)", text).group(1)
    venv = re.search(r"python -m venv (\S+)", text).group(1)
    copy = re.search(r"^COPY bpf/ (\S+)$", text, re.M)
    assert copy, "agent.Dockerfile copies bpf/"
    assert copy.group(1).rstrip("/") == f"{venv}/lib/python{base}/site-packages/bpf"
    assert re.search(r"pip install \.", text), "the package is installed (not editable) into the venv's site-packages"
    for spec_source in {p.name for p in (REPO / "bpf").glob("*.bpf.c")} | {bpfload.COMMON_HEADER}:
        assert (REPO / "bpf" / spec_source).is_file()
    # bcc comes from Debian, where the compile helper looks for it.
    assert "python3-bpfcc" in text and str(bpfload.DEBIAN_PYTHON) == "/usr/bin/python3"


def test_the_model_ships_as_package_data():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["scorer"]
    model = REPO / "scorer" / "models" / "default.onnx"
    assert model.stat().st_size > 0
    assert any(fnmatch.fnmatch("models/default.onnx", pat) for pat in data)
    from inference.model import DEFAULT_MODEL_PATH

    assert DEFAULT_MODEL_PATH == model.resolve(), "the aggregator's default model is the package's own file"
    assert "default.onnx" in (IMAGES / "aggregator.Dockerfile").read_text(), "the build fails without the model"
