"""LUM step 1: generative pre-training of the user model with InfoNCE (``task=lum_pretrain``).

At every condition token ``c_j`` of every history in the batch, the output ``h_j`` must pick the
item ``i_j`` that follows it. Scores are cosine similarities divided by a temperature; the
candidates are the positive, *in-batch negatives* (the target items of other positions of the
batch, a random subset of ``num_in_batch_negatives``) and ``num_sampled_negatives`` items drawn
uniformly from the vocabulary. A negative with the positive's own item id is a false negative and is
masked out.

Logged: ``{train,val,test}/infonce``, ``{val,test}/retrieval_auc`` (how often the positive
outscores a negative); the task adds the CTR metrics of LUM's zero-shot matching score on the
click labels (``val/auc``, ...: the checkpoint monitor of the default callbacks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel
from recsys_lab.models.lum import LUM
from recsys_lab.objectives.base import Loss, Objective


def info_nce(
    h: Tensor, pos_emb: Tensor, pos_ids: Tensor, neg_emb: Tensor, neg_ids: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """InfoNCE with cosine scores and false-negative masking.

    Args:
        h: ``[N, D]`` outputs at the condition positions.
        pos_emb: ``[N, D]`` embeddings of their target items, ``pos_ids`` int64 ``[N]`` the ids.
        neg_emb: ``[M, D]`` candidate negatives shared by every row, ``neg_ids`` int64 ``[M]``; a
            negative whose id equals a row's positive id is ignored for that row.
        temperature: τ; scores are ``cos / τ``.
    Returns:
        ``(loss, auc)``: the mean of ``-log(e^{s+} / (e^{s+} + Σ_valid e^{s-}))`` over rows, and
        the mean over rows of the fraction of valid negatives scored below the positive.
    """
    if temperature <= 0:
        raise ValueError(f"InfoNCE temperature must be > 0, got {temperature}")
    hn = F.normalize(h, dim=-1)
    pos = (hn * F.normalize(pos_emb, dim=-1)).sum(-1) / temperature  # [N]
    neg = hn @ F.normalize(neg_emb, dim=-1).T / temperature  # [N, M]
    false_neg = neg_ids[None, :] == pos_ids[:, None]  # [N, M]
    neg = neg.masked_fill(false_neg, float("-inf"))
    loss = (torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1) - pos).mean()
    valid = (~false_neg).float()
    wins = ((neg < pos[:, None]).float() * valid).sum(1) / valid.sum(1).clamp(min=1)
    return loss, wins.mean().detach()


class InfoNCE(Objective):
    """Next-item InfoNCE of a :class:`~recsys_lab.models.lum.LUM` (see the module docstring).

    Args:
        temperature: τ of the cosine scores.
        num_sampled_negatives: items drawn uniformly from ``1..vocab-1`` per batch.
        num_in_batch_negatives: other positions' targets used as negatives (a random subset of
            this size; ``-1`` = all of them).
    """

    def __init__(
        self, temperature: float = 0.07, num_sampled_negatives: int = 256, num_in_batch_negatives: int = 256
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"task.objective.temperature={temperature} must be > 0")
        if num_sampled_negatives < 0 or num_in_batch_negatives < -1:
            raise ValueError(
                "task.objective.num_sampled_negatives must be >= 0 and num_in_batch_negatives >= -1 (-1 = all)"
            )
        self.temperature = temperature
        self.num_sampled_negatives = num_sampled_negatives
        self.num_in_batch_negatives = num_in_batch_negatives

    def bind(self, model: CTRModel, label: str) -> None:
        super().bind(model, label)
        if not isinstance(model, LUM):
            raise TypeError(
                f"task=lum_pretrain pre-trains a LUM, got model {type(model).__name__}; use model=lum "
                "(experiment=lum_pretrain brings it with data=synthetic_seq)"
            )

    def infonce(
        self, model: LUM, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(loss, retrieval auc)`` of the batch's histories."""
        items, conditions, actions, mask = model.history(batch)
        h, _ = model.encode(items, conditions, actions, mask)  # [B, L, D]
        h, pos_ids = h[mask], items[mask]  # [N, D], [N]
        n = pos_ids.numel()
        if n == 0:  # no history anywhere in the batch: nothing to predict
            return h.sum() * 0.0, torch.tensor(0.5)
        dev = pos_ids.device
        if 0 <= self.num_in_batch_negatives < n:
            pick = torch.randperm(n, generator=generator, device="cpu")[: self.num_in_batch_negatives].to(dev)
            batch_ids = pos_ids[pick]
        else:
            batch_ids = pos_ids
        num_items = model.token_schema.features[0].vocab_size
        sampled = torch.randint(1, num_items, (self.num_sampled_negatives,), generator=generator).to(dev)
        neg_ids = torch.cat([batch_ids, sampled])
        emb = model.item_embedding(torch.cat([pos_ids, neg_ids]))  # [N + M, D]
        return info_nce(h, emb[:n], pos_ids, emb[n:], neg_ids, self.temperature)

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        loss, auc = self.infonce(model, batch)  # type: ignore[arg-type]
        return Loss(loss, logs={"infonce": loss.detach()}, epoch_logs={"retrieval_auc": auc})

    def eval_logs(self, model: CTRModel, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(batch_idx)  # the same negatives every evaluation
        loss, auc = self.infonce(model, batch, generator=g)  # type: ignore[arg-type]
        return {"infonce": loss, "retrieval_auc": auc}
