"""ESMM: pCTCVR = pCTR·pCVR exactly and stably, config, FLOPs, gradients, funnel learning."""

import pytest
import torch

from recsys_lab.layers.multitask import log1mexp, product_logit
from recsys_lab.models.esmm import ESMM
from tests.models.conftest import (
    assert_every_parameter_learns_from_both_labels,
    assert_learns_two_labels,
    make_two_label_planted,
)


def test_config_matches_constructor(config_matches):
    config_matches(ESMM, "esmm")


def test_ctcvr_is_the_product_of_ctr_and_cvr(schema, embedding, two_label_batch):
    model = ESMM(schema, embedding, hidden_units=[8])
    out = model.forward_tasks(two_label_batch)
    p_ctr, p_cvr = torch.sigmoid(out["click"]), torch.sigmoid(model.cvr_logits(two_label_batch))
    torch.testing.assert_close(torch.sigmoid(out["conversion"]), p_ctr * p_cvr)
    assert (torch.sigmoid(out["conversion"]) <= p_ctr + 1e-7).all()  # the funnel: pCTCVR <= pCTR


def test_product_logit_is_accurate_at_the_extremes():
    a = torch.tensor([-40.0, -5.0, 0.0, 3.0, 40.0, 40.0], dtype=torch.float64)
    b = torch.tensor([-40.0, 2.0, 0.0, -3.0, 40.0, -2.0], dtype=torch.float64)
    p = torch.sigmoid(a) * torch.sigmoid(b)
    got = product_logit(a.float(), b.float()).double()
    assert torch.isfinite(got).all()
    # Compare log-probabilities (the logit of a product near 1 saturates in float32).
    torch.testing.assert_close(torch.nn.functional.logsigmoid(got), torch.log(p), rtol=1e-5, atol=1e-5)
    x = torch.tensor([-1e-6, -0.1, -0.7, -5.0, -50.0], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(x), torch.log(1 - torch.exp(x)))


def test_needs_exactly_two_labels(schema, embedding):
    with pytest.raises(ValueError, match="two labels"):
        ESMM(schema, embedding, labels=("click",))


def test_flops_match_the_counter(schema, embedding, two_label_batch, flops_of):
    model = ESMM(schema, embedding, hidden_units=[16, 8])
    assert flops_of(model, two_label_batch) == model.flops_per_example()


def test_every_parameter_gets_a_gradient(schema, embedding):
    assert_every_parameter_learns_from_both_labels(ESMM(schema, embedding, hidden_units=[16]))


def test_learns_the_funnel_and_the_cvr_tower_learns_cvr(schema, embedding):
    """Trained on click and click-and-convert only, the CVR tower ranks the conversion rule among
    clicked samples (conversion given a click) well: AUC > 0.85."""
    from recsys_lab.metrics import auc

    model = ESMM(schema, embedding, hidden_units=[32, 16])
    assert_learns_two_labels(model)
    test = make_two_label_planted(1024, seed=7)
    clicked = test.labels["click"] > 0
    with torch.no_grad():
        p_cvr = torch.sigmoid(model.cvr_logits(test))
    assert auc(p_cvr[clicked], test.labels["conversion"][clicked]) > 0.85
