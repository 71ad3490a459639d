"""deploy/images/*.Dockerfile, checked without a Docker engine (none runs on these machines).

What a build would find out first is checked here: every COPY source exists and survives
.dockerignore, the build stage copies every package that `pip install .` installs, base
images are pinned, the entrypoint is the package's console script and the command a real
subcommand, and what the processes load from disk - the eBPF C sources (package data of
``bpf``) and the ONNX model (package data of ``inference``) - is in the wheel, so a
non-editable install puts it in the image. tests/test_wheel.py builds and installs that
wheel for real.
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


def copied_dirs(dockerfile: Path) -> set[str]:
    """Top-level directories the build stage copies from the context into its work tree."""
    out = set()
    for word, args in stages(dockerfile)[0]:
        parts = [p for p in shlex.split(args) if not p.startswith("--")] if word == "COPY" else []
        for src in parts[:-1]:
            if (REPO / src).is_dir():
                out.add(src.rstrip("/"))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_stage_copies_every_package_it_installs(dockerfile):
    """`pip install .` builds the wheel from what was copied: a package left out is not in the image."""
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert copied_dirs(dockerfile) == packages
    installs = [a for w, a in stages(dockerfile)[0] if w == "RUN" and "pip install" in a]
    assert len(installs) == 1 and re.search(r"pip install \.(\s|$)", installs[0]), installs
    assert " -e " not in installs[0] and "--editable" not in installs[0], "the image installs the wheel, not a link"


def package_data_matches(package: str, relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pat) for pat in PYPROJECT["tool"]["setuptools"]["package-data"][package])


def test_agent_image_puts_bpf_where_the_agent_looks():
    """The C sources are package data of `bpf`, and the agent looks for them there
    (agent.ebpf.probes.find_sources: bpf.source_dir()): the wheel carries them into
    site-packages, no COPY by hand."""
    import bpf
    from agent.ebpf import probes

    assert probes.find_sources(bpf.program_names()[0]).parent == bpf.source_dir() == REPO / "bpf"
    sources = bpf.program_names() + [bpf.COMMON_HEADER]
    assert bpf.program_names() == sorted(p.name for p in (REPO / "bpf").glob("*.bpf.c"))
    for name in sources:
        assert (bpf.source_dir() / name).is_file()
        assert package_data_matches("bpf", name), f"bpf/{name} is not package data: it would not be in the wheel"
    text = (IMAGES / "agent.Dockerfile").read_text()
    build = stages(IMAGES / "agent.Dockerfile")[0]
    assert not [a for w, a in build if w == "COPY" and "site-packages" in a], "bpf/ ships in the wheel now"
    (install,) = [a for w, a in build if w == "RUN" and "pip install" in a]
    assert "bpf.source_dir()" in install, "the build fails, not the pod, when the sources are not installed"
    # bcc comes from Debian, where the compile helper looks for it.
    assert "python3-bpfcc" in text and str(probes.DEBIAN_PYTHON) == "/usr/bin/python3"


def test_the_model_ships_as_package_data():
    from inference.model import DEFAULT_MODEL_PATH

    model = REPO / "inference" / "models" / "default.onnx"
    assert model.stat().st_size > 0
    assert package_data_matches("inference", "models/default.onnx")
    assert DEFAULT_MODEL_PATH == model.resolve(), "the aggregator's default model is the package's own file"
    (install,) = [a for w, a in stages(IMAGES / "aggregator.Dockerfile")[0] if w == "RUN" and "pip install" in a]
    assert "InterferenceModel.load()" in install, "the build fails, not the pod, without a loadable model"
