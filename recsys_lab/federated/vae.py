"""A small VAE over one tabular CTR row (categorical ids, numeric features and the click), the
generative model FedMHO gives resource-constrained devices.

Encoder: per-field embeddings ``[B, F, e]`` flattened, numeric ``[B, D]`` and click ``[B, 1]``
concatenated, an MLP to ``(μ, log σ²)`` of a ``latent_dim`` Gaussian. Decoder: an MLP from
``z`` to ``h [B, F, e]`` (one ``e``-vector per field), ``[B, D]`` numeric means and a click logit;
field ``f``'s id logits are ``h_f · E_fᵀ`` with the encoder's own table ``E_f`` (tied, so the
decoder costs no extra ``V_f``-sized layer). Loss: per-field cross-entropy + squared error on the
numeric features + BCE on the click + ``β`` KL(q(z|x) || N(0, I)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from recsys_lab.data.batch import Batch
from recsys_lab.data.datamodule import TableSplit
from recsys_lab.data.schema import Schema
from recsys_lab.layers.mlp import MLP


class TabularVAE(nn.Module):
    """See the module docstring. ``forward(batch) -> loss []``."""

    def __init__(
        self, schema: Schema, latent_dim: int = 8, hidden: int = 64, embed_dim: int = 4, beta: float = 1.0
    ) -> None:
        super().__init__()
        self.vocab = schema.vocab_sizes
        self.num_fields = len(self.vocab)
        self.num_dense = schema.num_numeric
        self.latent_dim = latent_dim
        self.embed_dim = embed_dim
        self.beta = beta
        user = schema.user_feature()
        self.user_index = None if user is None else schema.categorical_index(user.name)
        offsets = torch.tensor([0, *self.vocab]).cumsum(0)
        self.register_buffer("offsets", offsets[:-1], persistent=False)
        self.table = nn.Embedding(int(offsets[-1]), embed_dim)
        nn.init.normal_(self.table.weight, std=0.1)
        width = self.num_fields * embed_dim + self.num_dense + 1
        self.encoder = MLP(width, [hidden], 2 * latent_dim, "relu", 0.0, False)
        self.decoder = MLP(
            latent_dim, [hidden], self.num_fields * embed_dim + self.num_dense + 1, "relu", 0.0, False
        )

    def _decode(self, z: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """``z [B, Z]`` -> (per-field id logits ``[B, V_f]``, numeric ``[B, D]``, click logit ``[B]``)."""
        out = self.decoder(z)
        fe = self.num_fields * self.embed_dim
        h = out[:, :fe].view(-1, self.num_fields, self.embed_dim)  # [B, F, e]
        logits = []
        for f, v in enumerate(self.vocab):
            start = int(self.offsets[f])
            logits.append(h[:, f] @ self.table.weight[start : start + v].T)  # [B, V_f]
        return logits, out[:, fe : fe + self.num_dense], out[:, -1]

    def forward(self, batch: Batch) -> Tensor:
        ids = batch.sparse.long()
        emb = self.table(ids + self.offsets).flatten(1)  # [B, F·e]
        click = batch.labels["click"].float()
        x = torch.cat([emb, batch.dense, click[:, None]], dim=1)
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # [B, Z] each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits, dense, click_logit = self._decode(z)
        rec = sum(F.cross_entropy(lg, ids[:, f]) for f, lg in enumerate(logits))
        rec = rec + F.mse_loss(dense, batch.dense, reduction="sum") / max(1, len(click))
        rec = rec + F.binary_cross_entropy_with_logits(click_logit, click)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        return rec + self.beta * kl

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator) -> tuple[TableSplit, Tensor]:
        """``num`` synthetic rows and the decoder's click probabilities ``[num]``."""
        z = torch.randn(num, self.latent_dim, generator=generator)
        logits, dense, click_logit = self._decode(z)
        ids = [torch.multinomial(F.softmax(lg, dim=1), 1, generator=generator).squeeze(1) for lg in logits]
        sparse = torch.stack(ids, dim=1)  # [num, F]
        prob = torch.sigmoid(click_logit)
        table = TableSplit(
            dense=dense.contiguous(),
            sparse=sparse,
            labels={"click": torch.bernoulli(prob, generator=generator)},
            user=None if self.user_index is None else sparse[:, self.user_index].clone(),
        )
        return table, prob


def train_vae(
    vae: TabularVAE, table: TableSplit, epochs: int, batch_size: int, lr: float, seed: int
) -> float:
    """Fit ``vae`` on ``table``; mean loss of the last epoch."""
    optimiser = torch.optim.Adam(vae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the reparameterisation noise
    vae.train()
    n, last = len(table), float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for start in range(0, n, batch_size):
            rows = perm[start : start + batch_size]
            loss = vae(table.batch(rows))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * rows.numel()
        last = total / max(n, 1)
    return last
