"""UniMixing-Lite (Kuaishou, arXiv 2604.00590): UniMixer with a low-rank global matrix
``G = Sinkhorn(A Bᵀ)`` and local matrices mixed from a few shared bases."""

from __future__ import annotations

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import TokenMixerNetwork, UniMixingLite
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import CTRModel


class UniMixerLite(CTRModel):
    """``logit = head(mean_t(Blocks(Tokenize([e_1; ...; e_F; x_1 v_1; ...]))))``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        num_tokens: T, tokens after the tokenizer (<= fields + numeric features).
        dim: D, token width.
        num_layers: number of (mixing, FFN) blocks.
        ffn_hidden: hidden width of each per-token FFN.
        ffn: ``"swiglu"`` or ``"gelu"``.
        norm: ``"siamese"`` or ``"post"``.
        block_size: b, the mixing block size (must divide T·D; independent of T).
        rank: r of the global matrix G = Sinkhorn(A Bᵀ).
        num_basis: shared basis matrices the local W_i are mixed from.
        temperature: initial Sinkhorn temperature (annealed by the ``mixer`` callbacks).
        sinkhorn_iters: log-domain Sinkhorn iterations.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        num_tokens: int = 4,
        dim: int = 64,
        num_layers: int = 2,
        ffn_hidden: int = 128,
        ffn: FFNKind = "swiglu",
        norm: NormKind = "siamese",
        block_size: int = 8,
        rank: int = 8,
        num_basis: int = 4,
        temperature: float = 1.0,
        sinkhorn_iters: int = 10,
    ) -> None:
        super().__init__(schema)
        self.encoder = FeatureEncoder(schema, embedding, numeric_tokens=True)
        mixers = [
            UniMixingLite(num_tokens, dim, block_size, rank, num_basis, temperature, sinkhorn_iters)
            for _ in range(num_layers)
        ]
        self.net = TokenMixerNetwork(
            self.encoder.num_tokens, self.encoder.dim, num_tokens, dim, mixers, ffn_hidden, ffn, norm
        )

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        tokens = self.encoder.tokens(self.encoder.embed(batch), self.encoder.numeric(batch))  # [B, n, E]
        return self.net(tokens)

    def flops_per_example(self) -> int:
        return self.net.flops_per_example()
