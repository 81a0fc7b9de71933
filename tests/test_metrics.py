import math

import pytest
import torch

from seglab.metrics import ConfusionMatrix, metric_dict, scores_from_confusion


def test_scores_equal_hand_computed_values_with_an_absent_class():
    # 4 classes; class 3 appears in neither prediction nor target. 255 = ignored.
    target = torch.tensor([[0, 0, 1, 1, 2, 2, 255, 255]])
    preds = torch.tensor([[0, 1, 1, 1, 2, 0, 3, 1]])
    cm_metric = ConfusionMatrix(num_classes=4, ignore_index=255)
    cm_metric.update(preds[:, :4], target[:, :4])  # two updates: counts accumulate
    cm_metric.update(preds[:, 4:], target[:, 4:])
    cm = cm_metric.compute()
    expected_cm = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected_cm)

    s = scores_from_confusion(cm)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1, fn 0 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    iou = [1 / 3, 2 / 3, 1 / 2]
    dice = [2 / 4, 4 / 5, 2 / 3]
    torch.testing.assert_close(s["IoU"][:3].float(), torch.tensor(iou))
    assert math.isnan(s["IoU"][3])
    torch.testing.assert_close(s["mIoU"].float(), torch.tensor(sum(iou) / 3))
    torch.testing.assert_close(s["dice"].float(), torch.tensor(sum(dice) / 3))
    torch.testing.assert_close(s["acc"].float(), torch.tensor(4 / 6))
    torch.testing.assert_close(s["mAcc"].float(), torch.tensor((1 / 2 + 1 + 1 / 2) / 3))


def test_metric_names_follow_the_contract():
    cm = torch.tensor([[3, 1], [0, 4]])
    metrics = metric_dict(cm, "val", ["road", "car"])
    assert set(metrics) == {
        "val/mIoU",
        "val/dice",
        "val/acc",
        "val/mAcc",
        "val/IoU/road",
        "val/IoU/car",
    }
    # each name holds its own value: road (row 0) tp 3, fn 1 -> 3/4; car tp 4, fp 1 -> 4/5
    expected = {"val/IoU/road": 3 / 4, "val/IoU/car": 4 / 5, "val/mIoU": (3 / 4 + 4 / 5) / 2}
    expected |= {"val/dice": (6 / 7 + 8 / 9) / 2, "val/acc": 7 / 8, "val/mAcc": (3 / 4 + 1) / 2}
    for name, value in expected.items():
        assert metrics[name].dtype == torch.float32
        assert float(metrics[name]) == pytest.approx(value, rel=1e-6), name


def test_split_counts_are_pooled_not_an_average_of_per_image_scores():
    m = ConfusionMatrix(num_classes=2)
    m.update(torch.tensor([1, 1]), torch.tensor([1, 1]))  # this image alone: IoU(1) = 1
    m.update(torch.tensor([1, 1, 0, 0, 0, 0, 0, 0]), torch.ones(8, dtype=torch.long))  # alone: 0.25
    iou1 = float(scores_from_confusion(m.compute())["IoU"][1])
    assert abs(iou1 - 4 / 10) < 1e-9  # pooled counts: tp 4, fn 6; the per-image mean would be 0.625


def test_logits_are_accepted_and_reset_clears_the_counts():
    m = ConfusionMatrix(num_classes=3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 2] = 1
    m.update(logits, torch.full((1, 2, 2), 2))
    assert m.compute()[2, 2] == 4
    m.reset()
    assert m.compute().sum() == 0
