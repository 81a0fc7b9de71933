"""A shortened run validates at its end, not only where its absolute cadence fell."""

from __future__ import annotations

import lightning as L

from seglab.callbacks import ValidateAtEnd
from tests.callbacks.conftest import loader, trainer


class ValidationSteps(L.Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.steps.append(trainer.global_step)


def run(make_module, *callbacks, **settings) -> list[int]:
    seen = ValidationSteps()
    fit = trainer(callbacks=[seen, *callbacks], num_sanity_val_steps=0, **settings)
    fit.fit(make_module(), loader(n=16, batch_size=2), loader(n=2))
    return seen.steps


def test_a_step_bounded_run_cut_between_validations_validates_at_its_end(make_module):
    cadence = {"max_steps": 5, "max_epochs": -1, "val_check_interval": 3}
    cadence["check_val_every_n_epoch"] = None
    assert run(make_module, **cadence) == [3]  # Lightning alone: never after step 5
    assert run(make_module, ValidateAtEnd(), **cadence) == [3, 5]


def test_a_run_ending_on_a_validation_step_validates_once(make_module):
    cadence = {"max_steps": 6, "max_epochs": -1, "val_check_interval": 3}
    cadence["check_val_every_n_epoch"] = None
    assert run(make_module, ValidateAtEnd(), **cadence) == [3, 6]


def test_an_epoch_bounded_run_is_unchanged(make_module):
    assert run(make_module, ValidateAtEnd(), max_epochs=2) == [8, 16]


def test_an_epoch_bounded_run_whose_last_epoch_skips_validation_validates_at_its_end(make_module):
    cadence = {"max_epochs": 3, "check_val_every_n_epoch": 2}
    assert run(make_module, **cadence) == [16]  # Lightning alone: not after the third epoch
    assert run(make_module, ValidateAtEnd(), **cadence) == [16, 24]


def test_a_step_bounded_run_inside_a_skipped_epoch_validates_at_its_end(make_module):
    cadence = {"max_steps": 6, "max_epochs": -1, "check_val_every_n_epoch": 2}
    assert run(make_module, **cadence) == []  # Lightning alone: step 6 is in the first epoch
    seen = ValidationSteps()
    fit = trainer(callbacks=[seen, ValidateAtEnd()], num_sanity_val_steps=0, **cadence)
    fit.fit(make_module(), loader(n=16, batch_size=2), loader(n=2))
    assert seen.steps == [6]
    assert fit.check_val_every_n_epoch == 2  # the trainer's setting is back
