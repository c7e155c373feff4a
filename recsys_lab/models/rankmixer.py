"""RankMixer (ByteDance, arXiv 2507.15551): feature tokens, parameter-free token mixing (split each
token into T heads and transpose), per-token FFNs, residual norms, mean-pool to the logit."""

from __future__ import annotations

from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import RankMixing, TokenMixerNetwork
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import CTRModel


class RankMixer(CTRModel):
    """``logit = head(mean_t(Blocks(Tokenize([e_1; ...; e_F; x_1 v_1; ...]))))``.

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        num_tokens: T, tokens after the tokenizer (<= fields + numeric features).
        dim: D, token width (divisible by T: each token is split into T heads).
        num_layers: number of (mixing, FFN) blocks.
        ffn_hidden: hidden width of each per-token FFN.
        ffn: ``"swiglu"`` or ``"gelu"``.
        norm: ``"post"`` (RankMixer's post-norm) or ``"siamese"``.
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
        norm: NormKind = "post",
    ) -> None:
        super().__init__(schema)
        self.encoder = FeatureEncoder(schema, embedding, numeric_tokens=True)
        mixers = [RankMixing(num_tokens, dim) for _ in range(num_layers)]
        self.net = TokenMixerNetwork(
            self.encoder.num_tokens, self.encoder.dim, num_tokens, dim, mixers, ffn_hidden, ffn, norm
        )

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        tokens = self.encoder.tokens(self.encoder.embed(batch), self.encoder.numeric(batch))  # [B, n, E]
        return self.net(tokens)

    def flops_per_example(self) -> int:
        return self.net.flops_per_example()
