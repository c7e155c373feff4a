"""FedMHO: one-shot, model-heterogeneous federated learning, and its one-shot baselines.

One round. Resource-rich devices (:meth:`DeviceDistribution.rich_mask`) train the CTR model as a
classifier (``local_epochs`` epochs: one shot, so to convergence); resource-constrained devices
train a small :class:`~.vae.TabularVAE` on their rows. The server then:

1. aggregates the classifiers (weighted average): the model ``θ₀`` that holds the rich devices'
   knowledge;
2. **generates** ``synthetic_per_vae`` rows from each VAE, each with the VAE decoder's click
   probability as its label — the constrained devices' knowledge; no auxiliary data;
3. **optimises the synthetic samples** without labels: their numeric features take
   ``optimise_steps`` Adam steps on the classifier ensemble's mean prediction entropy plus
   ``μ ||x - x₀||²`` (samples move to where the teachers agree, near the generated point);
4. **fuses** by fine-tuning ``θ₀`` on the synthetic rows (``fusion_epochs``):

   - ``fusion=plain``: BCE to the VAE labels only — it forgets what ``θ₀`` knew;
   - ``fusion=md`` (FedMHO-MD, multi-teacher distillation): the target mixes the VAE label with
     the mean prediction of the local classifiers (the teachers), weighted by the examples each
     kind of device holds;
   - ``fusion=sd`` (FedMHO-SD, self-distillation): the target mixes the VAE label with the
     prediction of the frozen ``θ₀`` itself, with the same weights.

Baselines (``method``): ``oneshot_fedavg`` (every device trains the classifier, one weighted
average), ``ensemble_distill`` (the rich devices' classifier ensemble distilled data-free into
their average on uniformly random inputs: random ids, N(0, 1) numeric features). **Decisions:**
the names MD/SD, the forgetting they address and the unsupervised step follow the paper's
description; the exact losses and the entropy objective are ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from flwr.app import ArrayRecord, Message
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from torch import Tensor

from recsys_lab.data.datamodule import TableSplit
from recsys_lab.federated.channel import Channel
from recsys_lab.federated.client import ROLE_CLASSIFIER, ROLE_VAE, Federation
from recsys_lab.federated.data import predict, train_epochs
from recsys_lab.federated.selection import SelectionState, Selector
from recsys_lab.federated.strategies import EnergyAwareFedAvg
from recsys_lab.federated.vae import TabularVAE
from recsys_lab.models.base import CTRModel

Method = Literal["fedmho", "oneshot_fedavg", "ensemble_distill"]
Fusion = Literal["plain", "md", "sd"]


class EveryoneSelector(Selector):
    """One-shot: every alive device (``participants`` restricts it, e.g. to the rich ones)."""

    def __init__(self, participants: np.ndarray | None = None) -> None:
        self.participants = participants

    def select(self, state: SelectionState, k: int, rng: np.random.Generator) -> list[int]:
        ok = state.alive if self.participants is None else state.alive & self.participants
        return [int(i) for i in np.flatnonzero(ok)]


def _with_dense(table: TableSplit, dense: Tensor) -> TableSplit:
    return TableSplit(dense=dense, sparse=table.sparse, labels=table.labels, user=table.user)


def ensemble_probs(models: list[CTRModel], table: TableSplit) -> Tensor:
    """Mean click probability of ``models`` on ``table`` ``[N]``."""
    return torch.stack([predict(m, table) for m in models]).mean(0)


def optimise_samples(
    models: list[CTRModel], table: TableSplit, steps: int, lr: float = 0.05, proximity: float = 0.1
) -> TableSplit:
    """The unsupervised step: numeric features moved to lower the ensemble's prediction entropy."""
    if steps <= 0 or not models or table.dense.shape[1] == 0:
        return table
    x0 = table.dense.detach()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for m in models:
        m.eval()
    rows = torch.arange(len(table))
    for _ in range(steps):
        batch = _with_dense(table, x).batch(rows)
        p = torch.stack([torch.sigmoid(m(batch)) for m in models]).mean(0).clamp(1e-6, 1 - 1e-6)
        entropy = -(p * p.log() + (1 - p) * (1 - p).log())
        loss = entropy.mean() + proximity * ((x - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _with_dense(table, x.detach())


def random_inputs(
    schema_vocab: list[int], num_dense: int, num: int, generator: torch.Generator
) -> TableSplit:
    """Data-free distillation inputs: uniform ids in ``[1, V_f)``, N(0, 1) numeric features."""
    sparse = torch.stack([torch.randint(1, max(v, 2), (num,), generator=generator) for v in schema_vocab], 1)
    dense = torch.randn(num, num_dense, generator=generator)
    return TableSplit(dense=dense, sparse=sparse, labels={"click": torch.zeros(num)})


class FedMHO(EnergyAwareFedAvg):
    """One-shot FedMHO and its baselines as a Flower strategy (run it for one round).

    Args (beyond :class:`EnergyAwareFedAvg`'s):
        method: ``fedmho``, ``oneshot_fedavg`` or ``ensemble_distill``.
        fusion: ``plain``, ``md`` or ``sd`` (FedMHO only).
        synthetic_per_vae: rows generated from each VAE.
        fusion_epochs, fusion_lr, fusion_batch_size: the global model's training on synthetic rows.
        optimise_steps: Adam steps of the unsupervised sample optimisation (0 = off).
        local_epochs: the classifiers' local epochs (one shot: train to convergence).
        vae_label_weight: scales the VAE labels' weight in the MD/SD targets (1 = by examples held;
            0 = the synthetic rows only carry the constrained devices' inputs, an ablation).
    """

    def __init__(
        self,
        fed: Federation,
        channel: Channel,
        method: Method = "fedmho",
        fusion: Fusion = "sd",
        synthetic_per_vae: int = 512,
        fusion_epochs: int = 3,
        fusion_lr: float = 1e-3,
        fusion_batch_size: int = 128,
        optimise_steps: int = 20,
        local_epochs: int = 5,
        vae_label_weight: float = 1.0,
        evaluate: Callable[[ArrayRecord], dict[str, float]] | None = None,
        seed: int = 0,
    ) -> None:
        if method not in ("fedmho", "oneshot_fedavg", "ensemble_distill"):
            raise ValueError(f"fedmho: method={method!r}: use fedmho, oneshot_fedavg or ensemble_distill")
        if fusion not in ("plain", "md", "sd"):
            raise ValueError(f"fedmho: fusion={fusion!r}: use plain, md or sd")
        self.rich = fed.devices.rich_mask(fed.profiles)
        participants = self.rich if method == "ensemble_distill" else None
        super().__init__(
            fed,
            channel,
            EveryoneSelector(participants),
            fed.num_clients,
            "equal",
            evaluate=evaluate,
            seed=seed,
        )
        self.method = method
        self.fusion = fusion
        self.synthetic_per_vae = synthetic_per_vae
        self.fusion_epochs = fusion_epochs
        self.fusion_lr = fusion_lr
        self.fusion_batch_size = fusion_batch_size
        self.optimise_steps = optimise_steps
        self.local_epochs = local_epochs
        self.vae_label_weight = vae_label_weight
        self.seed = seed
        self.classifiers: dict[int, CTRModel] = {}  # client -> its local classifier (for reports)

    def role(self, client: int) -> str:
        if self.method == "fedmho" and not self.rich[client]:
            return ROLE_VAE
        return ROLE_CLASSIFIER

    def extra_config(self, client: int) -> dict[str, int | float | str]:
        return {"local-epochs": self.local_epochs}

    validate_replies = False  # classifiers and VAEs reply with different arrays
    one_shot = True

    def combine(self, server_round: int, replies: list[Message]) -> ArrayRecord | None:
        clf_msgs = [
            m for m in replies if self.role(self.client_of[m.metadata.src_node_id]) == ROLE_CLASSIFIER
        ]
        vae_msgs = [m for m in replies if self.role(self.client_of[m.metadata.src_node_id]) == ROLE_VAE]
        for m in clf_msgs:
            model = self.fed.model_factory()
            model.load_state_dict(m.content["arrays"].to_torch_state_dict())
            self.classifiers[self.client_of[m.metadata.src_node_id]] = model
        classifiers = list(self.classifiers.values())
        global_model = self.fed.model_factory()
        if clf_msgs:
            avg = aggregate_arrayrecords([m.content for m in clf_msgs], self.weighted_by_key)
            global_model.load_state_dict(avg.to_torch_state_dict())
        if self.method == "oneshot_fedavg" or (self.method == "ensemble_distill" and not classifiers):
            return ArrayRecord(global_model.state_dict())
        g = torch.Generator().manual_seed(self.seed)
        epochs, bs, lr = self.fusion_epochs, self.fusion_batch_size, self.fusion_lr
        if self.method == "ensemble_distill":
            n = self.synthetic_per_vae * max(1, len(replies))
            inputs = random_inputs(self.fed.schema.vocab_sizes, self.fed.schema.num_numeric, n, g)
            train_epochs(
                global_model, inputs, epochs, bs, lr, self.seed, targets=ensemble_probs(classifiers, inputs)
            )
            return ArrayRecord(global_model.state_dict())
        # -- FedMHO ---------------------------------------------------------------------------------
        tables, vae_labels = [], []
        for m in vae_msgs:
            vae = self.fed.vae.build(self.fed.schema)
            vae.load_state_dict(m.content["arrays"].to_torch_state_dict())
            t, p = vae.sample(self.synthetic_per_vae, g)
            tables.append(t)
            vae_labels.append(p)
        if not tables:  # no constrained device: θ₀ is all there is
            return ArrayRecord(global_model.state_dict())
        syn = optimise_samples(classifiers, _concat(tables), self.optimise_steps)
        target = torch.cat(vae_labels)
        if classifiers and self.fusion != "plain":
            teacher = ensemble_probs(classifiers, syn) if self.fusion == "md" else predict(global_model, syn)
            w_clf = float(sum(m.content["metrics"]["num-examples"] for m in clf_msgs))
            w_vae = self.vae_label_weight * float(sum(m.content["metrics"]["num-examples"] for m in vae_msgs))
            target = (w_clf * teacher + w_vae * target) / (w_clf + w_vae)
        train_epochs(global_model, syn, epochs, bs, lr, self.seed, targets=target)
        return ArrayRecord(global_model.state_dict())


def _concat(tables: list[TableSplit]) -> TableSplit:
    return TableSplit(
        dense=torch.cat([t.dense for t in tables]),
        sparse=torch.cat([t.sparse for t in tables]),
        labels={"click": torch.cat([t.labels["click"] for t in tables])},
        user=None if tables[0].user is None else torch.cat([t.user for t in tables]),  # type: ignore[misc]
    )


__all__ = ["FedMHO", "TabularVAE", "ensemble_probs", "optimise_samples", "random_inputs"]
