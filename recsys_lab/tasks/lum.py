"""LUM step 1: generative pre-training of the user model with InfoNCE (``task=lum_pretrain``).

At every condition token ``c_j`` of every history in the batch, the output ``h_j`` must pick the
item ``i_j`` that follows it. Scores are cosine similarities divided by a temperature; the
candidates are the positive, *in-batch negatives* (the target items of other positions of the
batch, a random subset of ``num_in_batch_negatives``) and ``num_sampled_negatives`` items drawn
uniformly from the vocabulary. A negative with the positive's own item id is a false negative and is
masked out. Optimisation is :class:`~recsys_lab.tasks.ctr.CTRTask`'s (dense AdamW + sparse
optimiser for the tables).

Logged: ``{train,val,test}/infonce``, ``{val,test}/retrieval_auc`` (how often the positive
outscores a negative), and the CTR metrics of LUM's zero-shot matching score on the click labels
(``val/auc``, ...: the checkpoint monitor of the default callbacks).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.models.lum import LUM
from recsys_lab.tasks.ctr import CTRTask, OptimizerFactory, SchedulerFactory


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


class LUMPretrainTask(CTRTask):
    """Pre-train a :class:`~recsys_lab.models.lum.LUM` with InfoNCE (see the module docstring).

    Args:
        model: the LUM.
        optimizer, sparse_optimizer, scheduler, scheduler_interval, max_grad_norm: as
            :class:`~recsys_lab.tasks.ctr.CTRTask`.
        temperature: τ of the cosine scores.
        num_sampled_negatives: items drawn uniformly from ``1..vocab-1`` per batch.
        num_in_batch_negatives: other positions' targets used as negatives (a random subset of
            this size; ``-1`` = all of them).
        label: the label the zero-shot score is evaluated on.
        gauc: GAUC of the zero-shot score.
    """

    def __init__(
        self,
        model: LUM,
        optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        max_grad_norm: float | None = None,
        temperature: float = 0.07,
        num_sampled_negatives: int = 256,
        num_in_batch_negatives: int = 256,
        label: str = "click",
        gauc: bool = True,
    ) -> None:
        if not isinstance(model, LUM):
            raise TypeError(
                f"task=lum_pretrain pre-trains a LUM, got model {type(model).__name__}; use model=lum"
            )
        if temperature <= 0:
            raise ValueError(f"task.temperature={temperature} must be > 0")
        if num_sampled_negatives < 0 or num_in_batch_negatives < -1:
            raise ValueError(
                "task.num_sampled_negatives must be >= 0 and task.num_in_batch_negatives >= -1 (-1 = all)"
            )
        super().__init__(
            model,
            optimizer,
            sparse_optimizer,
            scheduler,
            scheduler_interval,
            label=label,
            max_grad_norm=max_grad_norm,
            gauc=gauc,
        )
        self.temperature = temperature
        self.num_sampled_negatives = num_sampled_negatives
        self.num_in_batch_negatives = num_in_batch_negatives
        self.num_items = model.token_schema.features[0].vocab_size

    def infonce(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(loss, retrieval auc)`` of the batch's histories."""
        model: LUM = self.model  # type: ignore[assignment]
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
        sampled = torch.randint(1, self.num_items, (self.num_sampled_negatives,), generator=generator).to(dev)
        neg_ids = torch.cat([batch_ids, sampled])
        emb = model.item_embedding(torch.cat([pos_ids, neg_ids]))  # [N + M, D]
        return info_nce(h, emb[:n], pos_ids, emb[n:], neg_ids, self.temperature)

    def loss(self, batch: Batch) -> Tensor:
        loss, auc = self.infonce(batch)
        self.log("train/infonce", loss.detach(), on_step=True, on_epoch=True, batch_size=len(batch))
        self.log("train/retrieval_auc", auc, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def _eval_infonce(self, split: str, batch: Batch, batch_idx: int) -> None:
        g = torch.Generator().manual_seed(batch_idx)  # the same negatives every evaluation
        loss, auc = self.infonce(batch, generator=g)
        self.log(f"{split}/infonce", loss, on_epoch=True, batch_size=len(batch))
        self.log(f"{split}/retrieval_auc", auc, on_epoch=True, batch_size=len(batch))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_infonce("val", batch, batch_idx)
        super().validation_step(batch, batch_idx)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_infonce("test", batch, batch_idx)
        super().test_step(batch, batch_idx)
