import functools
import math

import pytest
import torch

from seglab.errors import ConfigError
from seglab.optim import (
    CosineLR,
    PolyLR,
    WarmupLR,
    apply_lr_mults,
    build_scheduler,
    given_default,
    scheduled_lrs,
)


def _optimizer(lr: float = 1.0, mults: tuple[float, ...] = (1.0,)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_mult": m} for m in mults]
    return torch.optim.SGD(groups, lr=lr)


def _rates(scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_linear_warmup_then_poly_decay_to_zero():
    schedule = PolyLR(_optimizer(), power=1.0, total_steps=110, warmup_steps=10)
    rates = _rates(schedule, 111)
    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.5)
    assert rates[110] == pytest.approx(0.0)


def test_cosine_decays_to_min_lr_ratio():
    rates = _rates(CosineLR(_optimizer(), total_steps=100, min_lr_ratio=0.1), 101)
    assert rates[0] == pytest.approx(1.0)
    assert rates[50] == pytest.approx(0.1 + 0.9 * 0.5)
    assert rates[100] == pytest.approx(0.1)
    assert rates[25] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_a_warmup_ratio_keeps_its_share_of_a_shorter_run():
    for total in (1000, 100):
        schedule = WarmupLR(_optimizer(), total_steps=total, warmup_ratio=0.1)
        assert schedule.warmup_steps == total // 10
    with pytest.raises(ConfigError, match="warmup_steps or warmup_ratio, not both"):
        PolyLR(_optimizer(), total_steps=10, warmup_steps=2, warmup_ratio=0.1)


def test_an_unbounded_run_has_no_schedule():
    with pytest.raises(ConfigError, match="finite number of optimizer steps"):
        PolyLR(_optimizer(), total_steps=None)
    with pytest.raises(ConfigError, match="the run's length"):
        build_scheduler(PolyLR, _optimizer(), math.inf)


def test_a_schedule_measured_in_steps_gets_the_runs_length_and_steps_every_step():
    config = build_scheduler(functools.partial(PolyLR, warmup_steps=5), _optimizer(), 50)
    assert config["interval"] == "step" and config["scheduler"].total_steps == 50
    one_cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1)
    config = build_scheduler(one_cycle, _optimizer(), 40)
    assert config["interval"] == "step" and config["scheduler"].total_steps == 40
    given = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=7)
    assert build_scheduler(given, _optimizer(), 40)["scheduler"].total_steps == 7


def test_other_schedules_step_every_epoch_and_a_plateau_watches_the_validation_loss():
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2)
    assert build_scheduler(step, _optimizer(), 40)["interval"] == "epoch"
    plateau = build_scheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, _optimizer(), 40)
    assert plateau["interval"] == "epoch" and plateau["monitor"] == "val/loss"


@pytest.mark.parametrize(
    "factory",
    [
        functools.partial(PolyLR, warmup_steps=3),
        functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.5),
        functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5),
        functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=5),
    ],
    ids=["poly", "one_cycle", "step", "cosine_annealing"],
)
def test_every_group_keeps_its_multiplier_at_every_step_of_any_schedule(factory):
    optimizer = _optimizer(lr=0.2, mults=(1.0, 0.1, 0.0))
    plain = _optimizer(lr=0.2)  # the same schedule on one group: what the head should follow
    scheduler = build_scheduler(factory, optimizer, 12)["scheduler"]
    reference = build_scheduler(factory, plain, 12)["scheduler"]
    apply_lr_mults(optimizer)
    for _ in range(12):
        head, backbone, frozen = (g["lr"] for g in optimizer.param_groups)
        assert head == pytest.approx(plain.param_groups[0]["lr"])
        assert backbone == pytest.approx(0.1 * head) and frozen == 0.0
        optimizer.step(), plain.step()
        with scheduled_lrs(optimizer):
            scheduler.step()
        reference.step()


def test_what_an_optimizer_was_given_on_purpose_is_told_from_its_defaults():
    assert given_default(functools.partial(torch.optim.AdamW, lr=0.01), "lr") == (0.01, True)
    assert given_default(functools.partial(torch.optim.AdamW, lr=0.001), "lr") == (0.001, False)
    assert given_default(torch.optim.AdamW, "lr") == (None, False)
    assert given_default(lambda params: torch.optim.AdamW(params), "lr") == (None, False)


def test_a_resumed_schedule_follows_the_length_of_the_run_it_resumes_in():
    """A checkpoint restores where the schedule is, not its settings: a run resumed with a larger
    max_steps decays over its own length instead of holding the end rate for the added steps."""
    first = PolyLR(_optimizer(), power=1.0, total_steps=10)
    _rates(first, 5)
    longer = PolyLR(_optimizer(), power=1.0, total_steps=20)
    longer.load_state_dict(first.state_dict())
    assert longer.last_epoch == 5 and longer.total_steps == 20
    longer.optimizer.step()
    longer.step()
    assert longer.get_last_lr()[0] == pytest.approx(1 - 6 / 20)
