"""UniMixing-Lite (Kuaishou, arXiv 2604.00590): UniMixer with a low-rank global matrix
``G = Sinkhorn(A Bᵀ)`` and local matrices mixed from a few shared bases."""

from __future__ import annotations

from functools import partial

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import UniMixingLite
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import TokenMixerModel


class UniMixerLite(TokenMixerModel):
    """A :class:`~recsys_lab.models.base.TokenMixerModel` with UniMixing-Lite's block mixing.

    Args:
        schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm: see
            :class:`~recsys_lab.models.base.TokenMixerModel`.
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
        mixer = partial(
            UniMixingLite, num_tokens, dim, block_size, rank, num_basis, temperature, sinkhorn_iters
        )
        super().__init__(schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm, mixer)
