"""The objective contract (recsys_lab/objectives/base.py) and the small objectives: BCE, the
every-event BCE on a model without events, the hooks' defaults."""

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.objectives.base import Loss, Objective
from recsys_lab.objectives.bce import BCE
from recsys_lab.objectives.distill import OCARMAlignment, OCARMTeacherBCE
from recsys_lab.objectives.every_event import EveryEventBCE
from recsys_lab.objectives.info_nce import InfoNCE
from tests.helpers import LinearModel, tiny_batch, tiny_schema


class HalfBCE(Objective):
    """A new objective needs only ``forward``: half the BCE."""

    def forward(self, model, batch) -> Loss:  # type: ignore[no-untyped-def]
        return Loss(0.5 * F.binary_cross_entropy_with_logits(model(batch), batch.labels[self.label]))


def test_bce_is_the_mean_binary_cross_entropy_of_the_bound_label() -> None:
    torch.manual_seed(0)
    model, batch = LinearModel(tiny_schema()), tiny_batch()
    batch.labels["other"] = 1 - batch.labels["click"]
    bce = BCE()
    bce.bind(model, "other")
    out = bce(model, batch)
    torch.testing.assert_close(
        out.value, F.binary_cross_entropy_with_logits(model(batch), batch.labels["other"])
    )
    assert out.logs == {} and out.epoch_logs == {}
    # the hooks' defaults: candidate loss = BCE, no evaluation metrics
    torch.testing.assert_close(bce.candidate_loss(model, batch).value, out.value)
    assert bce.eval_logs(model, batch, 0) == {}


def test_a_new_objective_needs_only_forward_and_has_no_state() -> None:
    torch.manual_seed(0)
    model, batch = LinearModel(tiny_schema()), tiny_batch()
    half = HalfBCE()
    half.bind(model, "click")
    torch.testing.assert_close(
        2 * half(model, batch).value, F.binary_cross_entropy_with_logits(model(batch), batch.labels["click"])
    )
    assert half.state_dict() == {}
    for objective in (BCE(), EveryEventBCE(), OCARMTeacherBCE(), OCARMAlignment()):
        assert objective.state_dict() == {}, type(objective).__name__  # checkpoints keep their keys


def test_bce_label_weights_need_a_multitask_model() -> None:
    with pytest.raises(ValueError, match="multi-task model"):
        BCE({"conversion": 2.0}).bind(LinearModel(tiny_schema()), "click")


def test_every_event_bce_on_a_model_without_events_is_the_candidates_bce() -> None:
    torch.manual_seed(0)
    model, batch = LinearModel(tiny_schema()), tiny_batch()
    objective = EveryEventBCE(event_weight=2.0)
    with pytest.warns(UserWarning, match="candidates only"):
        objective.bind(model, "click")
    out = objective(model, batch)
    expected = F.binary_cross_entropy_with_logits(model(batch), batch.labels["click"])
    torch.testing.assert_close(out.value, expected)
    assert set(out.logs) == {"candidate_loss"}
    with pytest.raises(ValueError, match="event_weight"):
        EveryEventBCE(event_weight=-1.0)


def test_objectives_check_their_settings_and_models() -> None:
    with pytest.raises(ValueError, match="temperature"):
        InfoNCE(temperature=0.0)
    with pytest.raises(ValueError, match="num_sampled_negatives"):
        InfoNCE(num_in_batch_negatives=-2)
    with pytest.raises(TypeError, match="model=lum"):
        InfoNCE().bind(LinearModel(tiny_schema()), "click")
