"""The GPU check's dry run (bench/gpu_check.sh --device cpu --quick): the script a lent GPU gets
must have run, every part of it, before that GPU is ever lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

PARTS = [
    "env",
    "cuda_tests",
    "step_unet_fp32",
    "step_unet_bf16",
    "step_unet_bf16_cl",
    "step_segformer_bf16",
    "sliding_window",
    "data_path",
    "step_unet_bf16_cl_compile",
]


@pytest.mark.slow
def test_dry_run_reports_a_result_for_every_part(tmp_path: Path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--device", "cpu", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    parts = json.loads((out / "results.json").read_text())["parts"]
    assert [part["name"] for part in parts] == PARTS
    assert all(part["status"] == "ok" for part in parts)
    results = {part["name"]: part["results"] for part in parts}
    for name in PARTS:
        assert results[name], f"{name} printed no result line"
    for name in PARTS[2:6] + PARTS[-1:]:
        assert {"bare_pytorch", "seglab", "ratio seglab/bare", "seglab_mfu"} <= set(results[name])
        assert float(results[name]["ratio seglab/bare"].split()[0]) > 0
    assert "ratio batched/one_at_a_time" in results["sliding_window"]
    wait = [k for k in results["data_path"] if k.endswith("data_wait_fraction")]
    assert len(wait) == 2 and all(0 <= float(results["data_path"][k]) <= 1 for k in wait)
    assert results["cuda_tests"]["cuda_tests"].endswith("skipped")  # no CUDA here
    markdown = (out / "results.md").read_text()
    assert all(f"## {name}: ok" in markdown for name in PARTS)
    assert "step_unet_bf16_cl_compile" in (out / "gpu_check.log").read_text()


def test_failing_and_hanging_parts_are_recorded_and_fail_the_run(tmp_path: Path, monkeypatch):
    """A part that raises or outlives its limit is FAILED with its error; the next parts run."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import gpu_check

    def plan(device: str, quick: bool) -> list[gpu_check.Part]:
        def broken(argv: list[str]) -> None:
            print("before: 1 x")
            raise RuntimeError("this part is broken")

        def hangs(argv: list[str]) -> None:
            time.sleep(600)

        return [
            gpu_check.Part("broken", "raises", broken, [], 30),
            gpu_check.Part("hangs", "sleeps", hangs, [], 5),
            gpu_check.Part("env", "versions", gpu_check.environment, ["--device", "cpu"], 30),
        ]

    monkeypatch.setattr(gpu_check, "plan", plan)
    assert gpu_check.main(["--out", str(tmp_path), "--device", "cpu"]) == 1
    broken, hangs, env = json.loads((tmp_path / "results.json").read_text())["parts"]
    assert broken["status"] == "FAILED" and "this part is broken" in broken["error"]
    assert hangs["status"] == "FAILED" and hangs["error"].startswith("timed out after 5 s")
    assert broken["results"] == {"before": "1 x"}
    assert env["status"] == "ok" and env["results"]["cuda_device"] == "none"
    assert "## broken: FAILED" in (tmp_path / "results.md").read_text()
