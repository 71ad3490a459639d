"""The README and docs/ stay true: every command block's `kubeattention SUB --flag` exists,
every relative link points at a file of the repository, and the README stays one screen."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_render import help_flags, subcommands

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
#: the README is the first screen a user reads; the reference lives in docs/
README_MAX_LINES = 100


def commands(text: str) -> list[tuple[str, str]]:
    found = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        found += re.findall(r"kubeattention ([a-z-]+)((?: +(?:--[a-z-]+|\"[^\"]*\"|'[^']*'|[^\s|&'\"#]+))*)", joined)
    return found


@pytest.fixture(scope="module")
def known():
    return subcommands()


@functools.cache
def flags_of(*words: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "kubeattention.cli", *words, "--help"], capture_output=True, text=True, cwd=REPO
    )
    return help_flags(out.stdout) if out.returncode == 0 else set()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_in_the_docs_exist(doc, known):
    for sub, rest in commands(doc.read_text()):
        assert sub in known, f"{doc.relative_to(REPO)}: kubeattention {sub}: no such subcommand"
        action = re.match(r" +([a-z][a-z-]*)\b", rest)  # `kubeattention model publish ...`
        flags = flags_of(sub) | (flags_of(sub, action.group(1)) if action else set())
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
            assert flag in flags, f"{doc.relative_to(REPO)}: kubeattention {sub} has no {flag}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files(doc):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)}: link to {target} points at nothing"


def test_the_readme_fits_on_a_screen_and_links_no_file_outside_the_repository():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "../shared" not in text
    for doc in DOCS:
        assert "../shared/" not in doc.read_text(), f"{doc.relative_to(REPO)} points outside the repository"
