"""One DDP process of the every-experiment test: ``seglab fit`` of each given experiment for one
optimizer step, on its dataset's miniature copy, its own model with random weights.

    LOCAL_RANK=r WORLD_SIZE=2 MASTER_ADDR=... MASTER_PORT=... \\
        python tests/ddp_experiments.py OUT_DIR EXPERIMENT=ROOT [EXPERIMENT=ROOT ...]

The test starts both processes itself (``LOCAL_RANK`` set: Lightning joins them instead of
launching children), so one process group serves every experiment in turn. Each process writes
``OUT_DIR/<experiment>-<rank>.json``: the exit status, the steps made and a checksum of the weights
(equal on both ranks when DDP averaged the gradients).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import lightning as L
import torch

from seglab.cli import main

# The recipes' checkpoints (VGG-16's FCNs: 1.6 GB with AdamW's state) are not what this checks.
L.Trainer.save_checkpoint = lambda self, *args, **kwargs: None

REPO = Path(__file__).resolve().parents[1]


def fit(experiment: str, root: str, rank: int) -> dict:
    argv = [
        "fit",
        "--config", str(REPO / "experiments" / f"{experiment}.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--trainer.precision", "32-true",
        "--trainer.max_steps", "1",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", f"runs/{experiment}",
        "--model.encoder_weights", "null",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--data.init_args.crop_size", "32",
    ]  # fmt: skip
    if experiment != "quickstart":
        argv += ["--data.init_args.root", root]
    else:
        argv += ["--data.init_args.num_train", "8", "--data.init_args.image_size", "32"]
    try:
        cli = main(argv)
    except BaseException as e:
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in cli.model.parameters())
    unused = [c for c in cli.trainer.callbacks if type(c).__name__ == "UnusedParameters"]
    return {
        "global_step": cli.trainer.global_step,
        "world_size": cli.trainer.world_size,
        "checksum": checksum,
        "unused": unused[0].unused if unused else None,
        "rank": rank,
    }


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rank = int(os.environ["LOCAL_RANK"])
    for item in sys.argv[2:]:
        experiment, root = item.split("=", 1)
        start = time.perf_counter()
        result = fit(experiment, root, rank)
        result["seconds"] = round(time.perf_counter() - start, 2)
        (out / f"{experiment}-{rank}.json").write_text(json.dumps(result))
