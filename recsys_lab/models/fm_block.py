"""FM-style scaling block (Wukong-like, arXiv 2403.02545): RankMixer's tokens and blocks with the
token interaction ``X Xᵀ`` (compressed) projected back to tokens as the mixer."""

from __future__ import annotations

from functools import partial

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import FMMixing
from recsys_lab.layers.norms import NormKind
from recsys_lab.models.base import TokenMixerModel


class FMBlock(TokenMixerModel):
    """A :class:`~recsys_lab.models.base.TokenMixerModel` with a compressed FM interaction as mixer.

    Args:
        schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm: see
            :class:`~recsys_lab.models.base.TokenMixerModel`.
        compressed: k, the width the interaction ``X Xᵀ`` is compressed to (``X (Xᵀ Y)``, Y ``[T, k]``).
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
        compressed: int = 4,
    ) -> None:
        mixer = partial(FMMixing, num_tokens, dim, compressed)
        super().__init__(schema, embedding, num_tokens, dim, num_layers, ffn_hidden, ffn, norm, mixer)
