"""UniMixer (Kuaishou, arXiv 2604.00590): RankMixer's tokens and blocks with learned block mixing
``out_j = Σ_i G[j, i] (x_i W_i)``, G and W_i Sinkhorn-normalised at an annealed temperature."""

from __future__ import annotations

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import TokenMixerNetwork, UniMixing
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import CTRModel


class UniMixer(CTRModel):
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
        temperature: initial Sinkhorn temperature (annealed by the ``mixer`` callbacks).
        sinkhorn_iters: log-domain Sinkhorn iterations.
        logit_lr_scale: learning-rate multiplier of the mixing logits
            (:class:`~recsys_lab.layers.mixing.UniMixing`; 1 = the shared rate).
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
        temperature: float = 1.0,
        sinkhorn_iters: int = 10,
        logit_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(schema)
        self.encoder = FeatureEncoder(schema, embedding, numeric_tokens=True)
        mixers = [
            UniMixing(num_tokens, dim, block_size, temperature, sinkhorn_iters, logit_lr_scale)
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
