"""Token mixing over feature tokens: RankMixer's parameter-free transpose, UniMixer's learned
block mixing (full and low-rank "Lite"), a Wukong-like FM block, log-domain Sinkhorn, and the
block stack they share.

Shapes: B = batch, T = tokens, D = token width, b = UniMixer block size, N = T·D / b blocks,
r = low rank, k = FM compression width.

The unified view (METHODS.md): flatten X ``[T, D]``, cut it into N blocks ``x_i`` of size b, and
mix ``out_j = Σ_i G[j, i] · (x_i W_i)``. RankMixer is ``b = D / T``, ``G`` = the transpose
permutation (:func:`rankmixer_permutation`) and ``W_i = I``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.layers.ffn import FFNKind, PerTokenFFN
from recsys_lab.layers.norms import NormKind, RMSNorm, residual_wrapper
from recsys_lab.layers.tokenizer import FeatureTokenizer

# -- functional maths ----------------------------------------------------------------------------


def sinkhorn(logits: Tensor, num_iters: int) -> Tensor:
    """Log-domain Sinkhorn: ``exp`` of ``logits`` ``[..., n, n]`` alternately row- and
    column-normalised ``num_iters`` times -> a (nearly) doubly stochastic ``[..., n, n]``.

    Columns sum to one exactly after the last iteration; rows to within the convergence error.
    Working with logs keeps low temperatures (large logits) free of overflow.
    """
    if num_iters < 1:
        raise ValueError(f"sinkhorn needs num_iters >= 1, got {num_iters}")
    if logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"sinkhorn needs square matrices, got shape {list(logits.shape)}")
    log_p = logits
    for _ in range(num_iters):
        log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # rows
        log_p = log_p - torch.logsumexp(log_p, dim=-2, keepdim=True)  # columns
    return log_p.exp()


def symmetrize(a: Tensor) -> Tensor:
    """``(A + Aᵀ) / 2`` over the last two dimensions."""
    return 0.5 * (a + a.transpose(-1, -2))


def rankmixer_mix(x: Tensor) -> Tensor:
    """RankMixer's parameter-free token mixing with H = T heads.

    Token t is split into T heads of width D/T; output token h concatenates head h of every token:
    ``out[h, t·D/T : (t+1)·D/T] = x[t, h·D/T : (h+1)·D/T]``. ``[B, T, D]`` -> ``[B, T, D]``.
    """
    bsz, t, d = x.shape
    if d % t:
        raise ValueError(f"RankMixer token mixing needs the token width ({d}) divisible by the tokens ({t})")
    # [B, T(token), T(head), D/T] -> [B, T(head), T(token), D/T] -> [B, T, D]
    return x.reshape(bsz, t, t, d // t).transpose(1, 2).reshape(bsz, t, d)


def rankmixer_permutation(num_tokens: int) -> Tensor:
    """The ``[T², T²]`` permutation G with which :func:`uni_mix` (block size D/T, ``W_i = I``)
    equals :func:`rankmixer_mix`: input block ``t·T + h`` (token t, head h) goes to output block
    ``h·T + t``. It is its own transpose (symmetric)."""
    n = num_tokens * num_tokens
    i = torch.arange(n)
    j = (i % num_tokens) * num_tokens + i // num_tokens
    g = torch.zeros(n, n)
    g[j, i] = 1.0
    return g


def uni_mix(x: Tensor, g: Tensor, w: Tensor) -> Tensor:
    """UniMixer's block mixing ``out_j = Σ_i G[j, i] · (x_i W_i)``.

    Args:
        x: tokens ``[B, T, D]``, flattened per example and cut into N blocks of size b.
        g: global mixing ``[N, N]``.
        w: local matrices ``[N, b, b]``.

    Returns:
        ``[B, T, D]``.
    """
    bsz, t, d = x.shape
    n, b = w.shape[0], w.shape[-1]
    if n * b != t * d or g.shape != (n, n) or w.shape != (n, b, b):
        raise ValueError(
            f"uni_mix: {n} blocks of size {b} must tile T·D = {t * d}, got G {list(g.shape)}, W {list(w.shape)}"
        )
    blocks = x.reshape(bsz, n, b)  # [B, N, b]
    local = torch.einsum("bni,nij->bnj", blocks, w)  # x_i W_i: [B, N, b]
    out = torch.einsum("jn,bnk->bjk", g, local)  # Σ_i G[j, i] (x_i W_i): [B, N, b]
    return out.reshape(bsz, t, d)


# -- mixers --------------------------------------------------------------------------------------


class AnnealedMixer(nn.Module):
    """A mixer whose Sinkhorn temperature is annealed during training (by
    ``recsys_lab.callbacks_anneal.TemperatureAnnealing``). The temperature is a buffer, so it is
    saved with checkpoints and evaluation uses the value training ended with."""

    temperature: Tensor

    def __init__(self, temperature: float, sinkhorn_iters: int) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn_iters must be >= 1, got {sinkhorn_iters}")
        self.sinkhorn_iters = sinkhorn_iters
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_temperature(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        self.temperature.fill_(float(value))


class BlockMixer(AnnealedMixer, abc.ABC):
    """UniMixer's block mixing (:func:`uni_mix`) with matrices from :meth:`mixing_matrices`, which a
    subclass builds from its parameters at the current temperature. ``[B, T, D]`` -> ``[B, T, D]``.

    Args:
        num_tokens: T.
        dim: D.
        block_size: b (must divide T·D); N = T·D / b blocks.
        temperature: initial Sinkhorn temperature τ.
        sinkhorn_iters: Sinkhorn iterations.
    """

    def __init__(
        self, num_tokens: int, dim: int, block_size: int, temperature: float, sinkhorn_iters: int
    ) -> None:
        super().__init__(temperature, sinkhorn_iters)
        if block_size < 1 or (num_tokens * dim) % block_size:
            raise ValueError(
                f"block_size must divide T·D = {num_tokens}·{dim} = {num_tokens * dim}, got {block_size}"
            )
        self.num_blocks = num_tokens * dim // block_size
        self.block_size = block_size

    @abc.abstractmethod
    def mixing_matrices(self) -> tuple[Tensor, Tensor]:
        """``G`` ``[N, N]`` and ``W`` ``[N, b, b]`` at the current temperature."""

    def forward(self, x: Tensor) -> Tensor:
        g, w = self.mixing_matrices()
        return uni_mix(x, g, w)

    def flops_per_example(self) -> int:
        n, b = self.num_blocks, self.block_size
        return 2 * n * b * b + 2 * n * n * b


class RankMixing(nn.Module):
    """RankMixer's parameter-free token mixing (:func:`rankmixer_mix`). ``[B, T, D]`` -> ``[B, T, D]``."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        if dim % num_tokens:
            raise ValueError(
                f"RankMixer splits each token into T = {num_tokens} heads: model.dim ({dim}) must be "
                f"divisible by model.num_tokens ({num_tokens})"
            )

    def forward(self, x: Tensor) -> Tensor:
        return rankmixer_mix(x)

    def flops_per_example(self) -> int:
        return 0


class UniMixing(BlockMixer):
    """UniMixer's learned block mixing: ``G = Sinkhorn(sym(L_G) / τ)`` ``[N, N]`` and
    ``W_i = Sinkhorn(sym(L_i) / τ)`` ``[b, b]``, then :func:`uni_mix`. ``[B, T, D]`` -> ``[B, T, D]``.

    The block size b is free (it need not relate to T). Initialisation (**Decision**): the global
    logits are N(0, 1); the local logits are ``4·I`` plus N(0, 0.1²), so each ``W_i`` starts
    close to the identity and the first layers do not average features away.

    **Own learning rate** (issue 13: at the shared rate the global logits barely move from their
    random start): the effective logits are ``logit_lr_scale · θ`` with ``θ`` the stored
    parameters, initialised at ``init / logit_lr_scale``; under Adam (whose steps do not depend on
    the gradient's scale) this multiplies the logits' learning rate by ``logit_lr_scale`` without a
    separate optimiser group. ``1`` (the default) leaves the parameters as they were.
    :meth:`movement` reports how far G moved from its initialisation.

    Args:
        num_tokens: T.
        dim: D.
        block_size: b (must divide T·D).
        temperature: initial Sinkhorn temperature τ.
        sinkhorn_iters: Sinkhorn iterations.
        logit_lr_scale: learning-rate multiplier of the mixing logits (> 0).
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        block_size: int,
        temperature: float = 1.0,
        sinkhorn_iters: int = 10,
        logit_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(num_tokens, dim, block_size, temperature, sinkhorn_iters)
        if logit_lr_scale <= 0:
            raise ValueError(f"UniMixing logit_lr_scale must be > 0, got {logit_lr_scale}")
        self.logit_lr_scale = float(logit_lr_scale)
        n, b = self.num_blocks, block_size
        s = self.logit_lr_scale
        self.global_logits = nn.Parameter(torch.randn(n, n) / s)  # [N, N] (θ: the logits are s·θ)
        self.local_logits = nn.Parameter(
            (4.0 * torch.eye(b).expand(n, b, b) + 0.1 * torch.randn(n, b, b)) / s
        )
        # The initial effective global logits, kept in checkpoints so that movement() can be read
        # off a finished run.
        self.register_buffer("initial_global_logits", self.global_logits.detach() * s)

    def mixing_matrices(self) -> tuple[Tensor, Tensor]:
        """``G`` ``[N, N]`` and ``W`` ``[N, b, b]`` at the current temperature."""
        s = self.logit_lr_scale
        g = sinkhorn(symmetrize(s * self.global_logits) / self.temperature, self.sinkhorn_iters)
        w = sinkhorn(symmetrize(s * self.local_logits) / self.temperature, self.sinkhorn_iters)
        return g, w

    @torch.no_grad()
    def movement(self) -> dict[str, float]:
        """How far the global mixing moved from its initialisation: ``moved`` = mean |Δ logit| in
        units of the initial logits' sd; ``destinations_changed`` = fraction of blocks whose argmax
        destination (row argmax of the symmetrised logits) differs from the initial one."""
        now = symmetrize(self.logit_lr_scale * self.global_logits)
        start = symmetrize(self.initial_global_logits)
        moved = (self.logit_lr_scale * self.global_logits - self.initial_global_logits).abs().mean()
        sd = self.initial_global_logits.std().clamp(min=1e-12)
        changed = (now.argmax(1) != start.argmax(1)).float().mean()
        return {"moved": float(moved / sd), "destinations_changed": float(changed)}


class UniMixingLite(BlockMixer):
    """UniMixing-Lite: a low-rank global matrix ``G = Sinkhorn(A Bᵀ / τ)`` (A, B ``[N, r]``) and
    local matrices mixed from ``num_basis`` shared bases:
    ``W_i = Sinkhorn(sym(Σ_k softmax(α_i)_k M_k) / τ)``. ``[B, T, D]`` -> ``[B, T, D]``.

    G and W depend only on parameters, so their matmuls are not counted per example.

    Args:
        num_tokens: T.
        dim: D.
        block_size: b (must divide T·D).
        rank: r of the global matrix.
        num_basis: number of shared basis matrices.
        temperature: initial Sinkhorn temperature τ.
        sinkhorn_iters: Sinkhorn iterations.
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        block_size: int,
        rank: int = 4,
        num_basis: int = 4,
        temperature: float = 1.0,
        sinkhorn_iters: int = 10,
    ) -> None:
        super().__init__(num_tokens, dim, block_size, temperature, sinkhorn_iters)
        n, b = self.num_blocks, block_size
        if not 1 <= rank <= n:
            raise ValueError(f"UniMixing-Lite rank must be in [1, {n}] (the number of blocks), got {rank}")
        if num_basis < 1:
            raise ValueError(f"UniMixing-Lite num_basis must be >= 1, got {num_basis}")
        scale = rank**-0.25  # A Bᵀ entries start with unit variance
        self.left = nn.Parameter(torch.randn(n, rank) * scale)  # A: [N, r]
        self.right = nn.Parameter(torch.randn(n, rank) * scale)  # B: [N, r]
        self.basis = nn.Parameter(
            4.0 * torch.eye(b).expand(num_basis, b, b) + 0.1 * torch.randn(num_basis, b, b)
        )
        self.mix = nn.Parameter(0.1 * torch.randn(n, num_basis))  # α: [N, num_basis]

    def mixing_matrices(self) -> tuple[Tensor, Tensor]:
        """``G`` ``[N, N]`` and ``W`` ``[N, b, b]`` at the current temperature."""
        g = sinkhorn(self.left @ self.right.T / self.temperature, self.sinkhorn_iters)
        local = torch.einsum("nk,kij->nij", self.mix.softmax(-1), self.basis)  # [N, b, b]
        w = sinkhorn(symmetrize(local) / self.temperature, self.sinkhorn_iters)
        return g, w


class FMMixing(nn.Module):
    """A Wukong-like factorisation-machine block: the token interaction ``X Xᵀ`` compressed by a
    learned ``Y`` ``[T, k]`` (computed as ``X (Xᵀ Y)``, never materialising ``[T, T]``), flattened,
    normalised and projected back to T tokens. ``[B, T, D]`` -> ``[B, T, D]``.

    Args:
        num_tokens: T.
        dim: D.
        compressed: k.
    """

    def __init__(self, num_tokens: int, dim: int, compressed: int) -> None:
        super().__init__()
        if compressed < 1:
            raise ValueError(f"FM block compressed width must be >= 1, got {compressed}")
        self.num_tokens, self.dim, self.compressed = num_tokens, dim, compressed
        self.y = nn.Parameter(torch.randn(num_tokens, compressed) / math.sqrt(num_tokens))  # [T, k]
        self.norm = RMSNorm(num_tokens * compressed)
        self.proj = nn.Linear(num_tokens * compressed, num_tokens * dim)

    def forward(self, x: Tensor) -> Tensor:
        bsz = x.shape[0]
        xty = torch.einsum("btd,tk->bdk", x, self.y)  # Xᵀ Y: [B, D, k]
        inter = torch.einsum("btd,bdk->btk", x, xty)  # X Xᵀ Y: [B, T, k]
        out = self.proj(self.norm(inter.reshape(bsz, -1)))  # [B, T·k] -> [B, T·D]
        return out.reshape(bsz, self.num_tokens, self.dim)

    def flops_per_example(self) -> int:
        t, d, k = self.num_tokens, self.dim, self.compressed
        return 2 * t * d * k * 2 + 2 * t * k * t * d


# -- the shared network --------------------------------------------------------------------------


class TokenMixerNetwork(nn.Module):
    """Tokenizer, then ``L`` blocks of (token mixer, per-token FFN), each sublayer inside a
    residual wrapper (SiameseNorm or post-norm), then a mean over tokens and a linear head.

    ``[B, n, E]`` feature tokens -> logits ``[B]``.

    Args:
        num_inputs: n (categorical fields + numeric features).
        input_dim: E (embedding width).
        num_tokens: T.
        dim: D.
        mixers: one token mixer per layer, each ``[B, T, D]`` -> ``[B, T, D]`` with
            ``flops_per_example()``.
        ffn_hidden: hidden width of the per-token FFNs.
        ffn_kind: ``"swiglu"`` or ``"gelu"``.
        norm: ``"siamese"`` or ``"post"``.
    """

    def __init__(
        self,
        num_inputs: int,
        input_dim: int,
        num_tokens: int,
        dim: int,
        mixers: Sequence[nn.Module],
        ffn_hidden: int,
        ffn_kind: FFNKind,
        norm: NormKind,
    ) -> None:
        super().__init__()
        if len(mixers) < 1:
            raise ValueError("a token-mixer model needs num_layers >= 1")
        self.tokenizer = FeatureTokenizer(num_inputs, input_dim, num_tokens, dim)
        self.mixers = nn.ModuleList(mixers)
        self.ffns = nn.ModuleList(PerTokenFFN(num_tokens, dim, ffn_hidden, ffn_kind) for _ in mixers)
        self.wrappers = nn.ModuleList(residual_wrapper(norm, dim) for _ in range(2 * len(mixers)))
        self.head = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Feature tokens ``[B, n, E]`` -> logits ``[B]``."""
        h = self.tokenizer(x)  # [B, T, D]
        state = self.wrappers[0].begin(h)
        for layer, (mixer, ffn) in enumerate(zip(self.mixers, self.ffns, strict=True)):
            state = self.wrappers[2 * layer].step(state, mixer)
            state = self.wrappers[2 * layer + 1].step(state, ffn)
        h = self.wrappers[-1].end(state)  # [B, T, D]
        return self.head(h.mean(1)).squeeze(-1)  # mean-pool over tokens: [B, D] -> [B]

    def flops_per_example(self) -> int:
        blocks = sum(m.flops_per_example() + f.flops_per_example() for m, f in zip(self.mixers, self.ffns))
        return self.tokenizer.flops_per_example() + blocks + 2 * self.head.in_features

    def annealed_mixers(self) -> list[AnnealedMixer]:
        return [m for m in self.mixers if isinstance(m, AnnealedMixer)]
