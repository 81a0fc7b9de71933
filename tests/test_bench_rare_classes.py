"""bench/rare_classes.py runs every variant (at toy sizes: the numbers are in
docs/benchmarks.md)."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rare_classes.py"


def test_every_variant_trains_and_reports_its_rare_class_iou(capsys):
    results = runpy.run_path(str(BENCH))["main"](["--quick"])
    assert set(results) == {"baseline", "median_frequency", "rare_class_sampling", "both", "plain"}
    out = capsys.readouterr().out
    for variant in results:
        assert f"{variant}_pole: " in out and f"{variant}_sign: " in out
    assert "median_frequency - baseline: pole" in out
