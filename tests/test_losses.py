import pytest
import segmentation_models_pytorch as smp
import torch

from seglab.errors import ConfigError
from seglab.losses import (
    SHORT_FORMS,
    CrossEntropyLoss,
    OhemCrossEntropyLoss,
    WeightedSum,
    bind_ignore_index,
    build_loss,
    class_weights_from_counts,
    needing_class_counts,
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


def _bound(loss):
    bind_ignore_index(loss, IGNORE)
    return loss


def _with_weights(name):
    if name == "ce":
        return CrossEntropyLoss(class_weights=[1.0, 2.0, 0.5, 1.0])
    if name == "ohem":
        return OhemCrossEntropyLoss(class_weights=[1.0, 2.0, 0.5, 1.0])
    return build_loss(name)


@pytest.mark.parametrize("name", [*SHORT_FORMS, "sum"])
def test_ignored_pixels_change_nothing(name):
    if name == "sum":
        loss = build_loss({"ce": 1.0, "dice": 0.5, "lovasz": 0.3})
    else:
        loss = _with_weights(name)
    loss = _bound(loss)
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


@pytest.mark.parametrize("name", SHORT_FORMS)
def test_perfect_prediction_scores_better(name):
    loss = _bound(build_loss(name))
    _, target = _example()
    good = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 20
    bad = good.roll(1, dims=1)
    assert loss(good, target) < loss(bad, target)


def test_short_forms_are_the_classes_with_their_defaults():
    assert type(build_loss("ce")) is CrossEntropyLoss
    assert type(build_loss("ohem")) is OhemCrossEntropyLoss
    dice = build_loss("dice")
    assert isinstance(dice, smp.losses.DiceLoss) and dice.mode == "multiclass" and dice.from_logits
    summed = build_loss({"ce": 1.0, "dice": 0.5})
    assert isinstance(summed, WeightedSum) and summed.weights == [1.0, 0.5]
    assert [type(x) for x in summed.losses] == [CrossEntropyLoss, smp.losses.DiceLoss]
    own = torch.nn.L1Loss()
    assert build_loss(own) is own


def test_a_weighted_sum_is_the_sum_of_its_weighted_losses():
    logits, target = _example()
    ce, dice = _bound(build_loss("ce")), _bound(build_loss("dice"))
    summed = WeightedSum([ce, dice], [1.0, 0.5])
    torch.testing.assert_close(
        summed(logits, target), ce(logits, target) + 0.5 * dice(logits, target)
    )
    assert WeightedSum([ce, dice]).weights == [1.0, 1.0]
    with pytest.raises(ConfigError, match="one weight per loss"):
        WeightedSum([ce], [1.0, 2.0])


def test_class_weights_and_label_smoothing_reach_the_cross_entropy():
    logits, target = _example()
    plain = _bound(CrossEntropyLoss())(logits, target)
    assert _bound(CrossEntropyLoss(class_weights=[5.0, 1, 1, 1]))(logits, target) != plain
    assert _bound(CrossEntropyLoss(label_smoothing=0.1))(logits, target) != plain
    expected = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor([5.0, 1, 1, 1]), ignore_index=IGNORE
    )
    torch.testing.assert_close(
        _bound(CrossEntropyLoss(class_weights=[5.0, 1, 1, 1]))(logits, target), expected
    )


def test_unknown_names_and_bad_options_name_the_choices():
    with pytest.raises(ConfigError, match=r"unknown loss 'dise'.*ce, ohem, dice"):
        build_loss("dise")
    with pytest.raises(ConfigError, match="unknown rule 'median'"):
        CrossEntropyLoss(class_weights="median")
    with pytest.raises(ConfigError, match="must not be negative"):
        CrossEntropyLoss(class_weights=[1.0, -1.0])
    with pytest.raises(ConfigError, match="threshold must be in"):
        OhemCrossEntropyLoss(threshold=1.5)


def test_the_modules_ignore_index_reaches_every_part_that_leaves_it_open():
    loss = build_loss({"ce": 1.0, "dice": 0.5, "focal": 0.1})
    bind_ignore_index(loss, 0)
    assert [part.ignore_index for part in loss.losses] == [0, 0, 0]


def test_a_loss_that_ignores_another_value_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"CrossEntropyLoss ignores mask value -100 .* is 255"):
        bind_ignore_index(torch.nn.CrossEntropyLoss(), 255)
    bind_ignore_index(torch.nn.CrossEntropyLoss(ignore_index=255), 255)  # agreeing is fine


def test_a_weight_rule_waits_for_the_class_counts_then_keeps_the_numbers():
    loss = _bound(CrossEntropyLoss(class_weights="median_frequency"))
    summed = WeightedSum([loss, build_loss("dice")])
    assert needing_class_counts(summed) == [loss]
    logits, target = _example()
    with pytest.raises(ConfigError, match="computed from the training masks"):
        loss(logits, target)
    counts = torch.tensor([[5, 5, 0, 1], [4, 6, 3, 1]])
    weights = loss.fit_class_counts(counts)
    assert weights == pytest.approx(class_weights_from_counts(counts, "median_frequency"))
    assert not needing_class_counts(summed)
    # The numbers are part of the loss's state: a new loss with the rule takes them from it.
    restored = CrossEntropyLoss(class_weights="median_frequency")
    restored.load_state_dict(loss.state_dict())
    assert restored.weight.tolist() == pytest.approx(weights)
    assert not restored.needs_class_counts


def test_losses_record_their_arguments():
    loss = OhemCrossEntropyLoss(threshold=0.6, min_kept=10, class_weights="inverse_frequency")
    assert loss.hparams["threshold"] == 0.6 and loss.hparams["min_kept"] == 10
    assert loss.hparams["class_weights"] == "inverse_frequency"
    assert WeightedSum([loss], [2.0]).hparams["weights"] == [2.0]


def test_ohem_keeps_the_pixels_below_the_threshold_and_at_least_min_kept():
    """Six labelled pixels (one ignored) whose true-class probabilities are known by construction:
    two classes, logits (0, l) give p(class 1) = sigmoid(l)."""

    p_true = torch.tensor([0.1, 0.3, 0.6, 0.8, 0.95, 0.99, 0.2])
    target = torch.tensor([1, 1, 1, 1, 1, 1, 255])
    logit = torch.log(p_true / (1 - p_true))
    logits = torch.stack([torch.zeros(7), logit])[None, :, None, :]  # (1, 2, 1, 7)
    target = target[None, None, :]

    def kept(threshold: float, min_kept: int) -> list[int]:
        loss = _bound(OhemCrossEntropyLoss(threshold=threshold, min_kept=min_kept))
        return loss.kept(logits, target)[0, 0].nonzero()[:, 0].tolist()

    assert kept(0.7, 0) == [0, 1, 2]  # below the threshold; the ignored pixel (0.2) never
    assert kept(0.7, 2) == [0, 1, 2]  # min_kept already met
    assert kept(0.7, 4) == [0, 1, 2, 3]  # raised to the 4 hardest
    assert kept(0.05, 0) == []
    assert kept(0.7, 100) == [0, 1, 2, 3, 4, 5]  # every labelled pixel, nothing more
    loss = _bound(OhemCrossEntropyLoss(threshold=0.7, min_kept=0))(logits, target)
    assert loss == pytest.approx(float(-torch.log(p_true[:3]).mean()), rel=1e-5)


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
