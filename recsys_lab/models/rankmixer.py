"""RankMixer (ByteDance, arXiv 2507.15551): feature tokens, parameter-free token mixing (split each
token into T heads and transpose), per-token FFNs, residual norms, mean-pool to the logit."""

from __future__ import annotations

from functools import partial

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import RankMixing
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import TokenMixerModel


class RankMixer(TokenMixerModel):
    """A :class:`~recsys_lab.models.base.TokenMixerModel` with RankMixer's transpose mixing.

    Args:
        schema, embedding, num_tokens, num_layers, ffn_hidden, ffn: see
            :class:`~recsys_lab.models.base.TokenMixerModel`.
        dim: D, token width (divisible by T: each token is split into T heads).
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
        mixer = partial(RankMixing, num_tokens, dim)
        super().__init__(schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm, mixer)
