import pytest
import torch

from seglab.losses import (
    LOSS_NAMES,
    CombinedLoss,
    OhemCrossEntropyLoss,
    build_loss,
    class_weights_from_counts,
)

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
    with pytest.raises(ValueError, match=r"unknown loss 'dise'.*ce, ohem, dice"):
        build_loss("dise")


def test_ohem_keeps_the_pixels_below_the_threshold_and_at_least_min_kept():
    """Six labelled pixels (one ignored) whose true-class probabilities are known by construction:
    two classes, logits (0, l) give p(class 1) = sigmoid(l)."""

    p_true = torch.tensor([0.1, 0.3, 0.6, 0.8, 0.95, 0.99, 0.2])
    target = torch.tensor([1, 1, 1, 1, 1, 1, 255])
    logit = torch.log(p_true / (1 - p_true))
    logits = torch.stack([torch.zeros(7), logit])[None, :, None, :]  # (1, 2, 1, 7)
    target = target[None, None, :]

    def kept(threshold: float, min_kept: int) -> list[int]:
        loss = OhemCrossEntropyLoss(threshold=threshold, min_kept=min_kept)
        return loss.kept(logits, target)[0, 0].nonzero()[:, 0].tolist()

    assert kept(0.7, 0) == [0, 1, 2]  # below the threshold; the ignored pixel (0.2) never
    assert kept(0.7, 2) == [0, 1, 2]  # min_kept already met
    assert kept(0.7, 4) == [0, 1, 2, 3]  # raised to the 4 hardest
    assert kept(0.05, 0) == []
    assert kept(0.7, 100) == [0, 1, 2, 3, 4, 5]  # every labelled pixel, nothing more
    loss = OhemCrossEntropyLoss(threshold=0.7, min_kept=0)(logits, target)
    assert loss == pytest.approx(float(-torch.log(p_true[:3]).mean()), rel=1e-5)


def test_ohem_is_selectable_in_the_loss_option():
    combined = CombinedLoss({"ohem": 1.0, "dice": 0.5}, ohem=(0.6, 10))
    assert isinstance(combined.losses["ohem"], OhemCrossEntropyLoss)
    assert combined.losses["ohem"].threshold == 0.6 and combined.losses["ohem"].min_kept == 10


def test_median_frequency_and_inverse_frequency_weights_by_hand():
    """Three images of 10 labelled pixels each (ignored ones not counted), four classes, class 3
    absent. Class 0 is in all three images (12 px), class 1 in two (13 px of 20), class 2 in one
    (5 px of 10)."""

    counts = torch.tensor([[5, 5, 0, 0], [4, 6, 0, 0], [3, 2, 5, 0]])
    freq = torch.tensor([12 / 30, 13 / 30, 5 / 10])  # SegNet's: over the images with the class
    median = freq.median()  # 13/30
    expected = [float(median / f) for f in freq] + [0.0]
    assert class_weights_from_counts(counts, "median_frequency") == pytest.approx(expected)
    share = torch.tensor([12, 13, 5]) / 30
    inverse = [min(3.0, float(1 / (3 * s))) for s in share] + [0.0]
    assert class_weights_from_counts(counts, "inverse_frequency", cap=3.0) == pytest.approx(inverse)
    assert class_weights_from_counts(torch.tensor([[1, 1]]), "inverse_frequency") == [1.0, 1.0]
