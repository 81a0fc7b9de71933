"""A callback for the streamed-training tests, importable by the ``seglab`` command they run in
subprocesses: it records which samples each process trains on, at which step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L


class RecordSamples(L.Callback):
    """Appends ``epoch step name`` for every training sample to ``<path>-rank<R>.txt`` before the
    step trains on it; ``delay`` seconds per batch slow a run down to be stopped mid-epoch."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = path
        self.delay = delay

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        lines = "".join(
            f"{trainer.current_epoch} {trainer.global_step} {name}\n" for name in batch["name"]
        )
        with open(f"{self.path}-rank{trainer.global_rank}.txt", "a") as f:
            f.write(lines)
            f.flush()
        if self.delay:
            time.sleep(self.delay)


def recorded(path: str | Path, rank: int = 0) -> list[tuple[int, int, str]]:
    """The ``(epoch, step, name)`` lines ``RecordSamples`` wrote for one process."""
    file = Path(f"{path}-rank{rank}.txt")
    if not file.exists():
        return []
    rows = (line.split(" ", 2) for line in file.read_text().splitlines())
    return [(int(e), int(s), n) for e, s, n in rows]
