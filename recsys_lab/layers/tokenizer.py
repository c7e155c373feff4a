"""The shared feature tokenizer of the token-mixer models: field embeddings -> T tokens of width D.

Shapes: B = batch, n = input tokens (categorical fields + numeric features, each of width E),
T = output tokens, g = ceil(n / T) input tokens per group, D = output token width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureTokenizer(nn.Module):
    """Group ``n`` input tokens (in schema order) into ``T`` contiguous groups whose sizes differ by
    at most one, and project each group's concatenated embeddings to one token with its own
    learned projection::

        token_t = concat(e_i for i in group t) W_t + b_t       W_t: [g·E, D]

    Smaller groups are padded with a zero embedding to ``g = ceil(n / T)`` slots, so all tokens
    are computed by one einsum; padded slots contribute nothing.

    ``[B, n, E]`` -> ``[B, T, D]``.

    Args:
        num_inputs: n.
        input_dim: E.
        num_tokens: T (1 <= T <= n).
        dim: D.
    """

    def __init__(self, num_inputs: int, input_dim: int, num_tokens: int, dim: int) -> None:
        super().__init__()
        if not 1 <= num_tokens <= num_inputs:
            raise ValueError(
                f"num_tokens must be in [1, {num_inputs}] (the number of feature tokens: categorical "
                f"fields + numeric features), got {num_tokens}"
            )
        if dim < 1 or input_dim < 1:
            raise ValueError(f"FeatureTokenizer needs dim >= 1 and input_dim >= 1, got {dim}, {input_dim}")
        self.num_inputs, self.input_dim, self.num_tokens, self.dim = num_inputs, input_dim, num_tokens, dim
        self.group = math.ceil(num_inputs / num_tokens)
        # index[t, s] = input token in slot s of group t; n (a zero row appended in forward) pads.
        index = torch.full((num_tokens, self.group), num_inputs, dtype=torch.long)
        for t, members in enumerate(torch.arange(num_inputs).tensor_split(num_tokens)):
            index[t, : len(members)] = members
        self.register_buffer("index", index.flatten(), persistent=False)  # [T·g]
        fan_in = self.group * input_dim
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(
            torch.empty(num_tokens, fan_in, dim).uniform_(-bound, bound)
        )  # [T, g·E, D]
        self.bias = nn.Parameter(torch.zeros(num_tokens, dim))  # [T, D]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, n, E]`` -> tokens ``[B, T, D]``."""
        if x.shape[1:] != (self.num_inputs, self.input_dim):
            raise ValueError(
                f"FeatureTokenizer expects [B, {self.num_inputs}, {self.input_dim}], got {list(x.shape)}"
            )
        x = F.pad(x, (0, 0, 0, 1))[:, self.index]  # [B, n + 1, E] -> [B, T·g, E]
        x = x.reshape(x.shape[0], self.num_tokens, self.group * self.input_dim)  # [B, T, g·E]
        return torch.einsum("btk,tkd->btd", x, self.weight) + self.bias

    def flops_per_example(self) -> int:
        return 2 * self.num_tokens * self.group * self.input_dim * self.dim
