"""MultiTaskBCE: the weighted sum of per-label BCEs, missing labels skipped, clear errors."""

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.objectives.multitask import MultiTaskBCE


def test_weighted_sum_of_per_label_bce():
    torch.manual_seed(0)
    logits = {"click": torch.randn(8), "conversion": torch.randn(8)}
    targets = {"click": torch.randint(0, 2, (8,)).float(), "conversion": torch.randint(0, 2, (8,)).float()}
    total, parts = MultiTaskBCE(["click", "conversion"], {"conversion": 3.0})(logits, targets)
    for k in logits:
        torch.testing.assert_close(parts[k], F.binary_cross_entropy_with_logits(logits[k], targets[k]))
    torch.testing.assert_close(total, parts["click"] + 3.0 * parts["conversion"])


def test_missing_labels_do_not_count():
    logits = {"click": torch.tensor([0.3, -1.0, 2.0])}
    y = torch.tensor([1.0, float("nan"), 0.0])
    total, _ = MultiTaskBCE(["click"])(logits, {"click": y})
    torch.testing.assert_close(total, F.binary_cross_entropy_with_logits(logits["click"][[0, 2]], y[[0, 2]]))
    none, _ = MultiTaskBCE(["click"])(logits, {"click": torch.full((3,), float("nan"))})
    assert none.item() == 0.0


def test_errors_name_the_problem():
    logits = {"click": torch.zeros(2), "conversion": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"no label \['conversion'\]"):
        MultiTaskBCE(["click", "conversion"])(logits, {"click": torch.zeros(2)})
    with pytest.raises(ValueError, match="other than 0 and 1"):
        MultiTaskBCE(["click"])(logits, {"click": torch.tensor([4.0, 1.0])})
    with pytest.raises(ValueError, match="not labels of the model"):
        MultiTaskBCE(["click"], {"conversion": 1.0})
