import pytest
import torch

from seglab.losses import LOSS_NAMES, CombinedLoss, build_loss

IGNORE = 255


def _example(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[:, :3] = IGNORE
    return logits, target


def _loss_and_grad(loss, logits, target):
    logits = logits.clone().requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    return value.detach(), logits.grad


@pytest.mark.parametrize("name", [*LOSS_NAMES, "combo"])
def test_ignored_pixels_change_nothing(name):
    if name == "combo":
        loss = CombinedLoss({"ce": 1.0, "dice": 0.5, "lovasz": 0.3}, IGNORE)
    else:
        loss = build_loss(name, ignore_index=IGNORE, class_weights=[1.0, 2.0, 0.5, 1.0])
    logits, target = _example()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = logits.clone()
    changed[ignored] = 100 * torch.randn(int(ignored.sum()))

    v1, g1 = _loss_and_grad(loss, logits, target)
    v2, g2 = _loss_and_grad(loss, changed, target)
    assert torch.isfinite(v1)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    assert g1[ignored].abs().max() == 0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_perfect_prediction_scores_better(name):
    loss = build_loss(name, ignore_index=IGNORE)
    _, target = _example()
    good = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 20
    bad = good.roll(1, dims=1)
    assert loss(good, target) < loss(bad, target)


def test_region_losses_run_in_float32_under_autocast():
    loss = build_loss("dice", ignore_index=IGNORE)
    logits, target = _example()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(logits.bfloat16(), target)
    assert value.dtype == torch.float32


def test_combination_is_the_weighted_sum():
    logits, target = _example()
    combo = CombinedLoss({"ce": 1.0, "dice": 0.5}, IGNORE)
    expected = build_loss("ce", IGNORE)(logits, target) + 0.5 * build_loss("dice", IGNORE)(
        logits, target
    )
    torch.testing.assert_close(combo(logits, target), expected)


def test_class_weights_and_label_smoothing_reach_cross_entropy():
    logits, target = _example()
    plain = build_loss("ce", IGNORE)(logits, target)
    assert build_loss("ce", IGNORE, class_weights=[5.0, 1.0, 1.0, 1.0])(logits, target) != plain
    assert build_loss("ce", IGNORE, label_smoothing=0.1)(logits, target) != plain


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'dise'.*ce, dice"):
        build_loss("dise")
