"""UniMixer (Kuaishou, arXiv 2604.00590): RankMixer's tokens and blocks with learned block mixing
``out_j = Σ_i G[j, i] (x_i W_i)``, G and W_i Sinkhorn-normalised at an annealed temperature."""

from __future__ import annotations

from functools import partial

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import UniMixing
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import TokenMixerModel


class UniMixer(TokenMixerModel):
    """A :class:`~recsys_lab.models.base.TokenMixerModel` with UniMixer's learned block mixing.

    Args:
        schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm: see
            :class:`~recsys_lab.models.base.TokenMixerModel`.
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
        mixer = partial(UniMixing, num_tokens, dim, block_size, temperature, sinkhorn_iters, logit_lr_scale)
        super().__init__(schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm, mixer)
