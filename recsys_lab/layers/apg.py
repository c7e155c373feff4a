"""APG — adaptive parameter generation (Alibaba, NeurIPS 2022, arXiv 2203.16218).

An instance-specific layer ``h = x W_i + b`` with ``W_i = U S_i V`` never materialised: U ``[N, K]``
and V ``[K, M]`` are shared, only ``S_i`` ``[K, K]`` is generated from a condition ``z_i`` by a small
MLP, and ``h = ((x U) S_i) V + b``. During training U and V can be over-parameterised as
``U = U_l U_r`` and ``V = V_l V_r``; :func:`merge_apg` multiplies the factors out for inference.

Shapes: B = batch, N = input width, M = output width, K = rank, P = over-parameterisation width,
C = condition width, H = hyper-network hidden width.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.mlp import MLP, Activation, activation_module, check_choice

Condition = Literal["self", "group", "mix"]


@dataclass
class APGConfig:
    """How an MLP's hidden layers become APG layers (``model.apg`` of DNN, DeepFM and DCNv2).

    Attributes:
        condition: what ``S_i`` is generated from — ``"self"``: the layer's own input;
            ``"group"``: the embeddings of ``group_fields`` (e.g. the user id); ``"mix"``: both,
            concatenated.
        rank: K, the size of the generated ``S_i``.
        overparam: P, the inner width of ``U = U_l U_r`` and ``V = V_l V_r`` in training
            (merged away for inference); None = no over-parameterisation.
        hypernet_hidden: H, hidden width of the MLP that generates ``S_i``.
        group_fields: categorical feature names whose embeddings form the group condition.
    """

    condition: Condition = "self"
    rank: int = 16
    overparam: int | None = 64
    hypernet_hidden: int = 32
    group_fields: Sequence[str] = field(default_factory=lambda: ["user"])

    def __post_init__(self) -> None:
        check_choice("model.apg.condition", self.condition, get_args(Condition))
        if self.rank < 1:
            raise ValueError(f"model.apg.rank must be >= 1, got {self.rank}")
        if self.overparam is not None and self.overparam < 1:
            raise ValueError(f"model.apg.overparam must be >= 1 or null, got {self.overparam}")
        if self.hypernet_hidden < 1:
            raise ValueError(f"model.apg.hypernet_hidden must be >= 1, got {self.hypernet_hidden}")
        self.group_fields = list(self.group_fields)
        if self.condition != "self" and not self.group_fields:
            raise ValueError(
                f"model.apg.condition={self.condition} needs model.apg.group_fields (e.g. [user])"
            )


def as_apg_config(value: APGConfig | Mapping[str, Any] | None) -> APGConfig | None:
    """``model.apg`` as given by Hydra (an :class:`APGConfig`, a mapping of its fields, or None)."""
    if value is None or isinstance(value, APGConfig):
        return value
    if isinstance(value, Mapping):
        keys = {str(k) for k in value} - {"_target_"}
        known = set(APGConfig.__dataclass_fields__)
        if keys - known:
            raise ValueError(f"unknown model.apg keys {sorted(keys - known)}; known keys: {sorted(known)}")
        return APGConfig(**{str(k): v for k, v in value.items() if k != "_target_"})
    raise TypeError(f"model.apg must be null or a mapping of APGConfig fields, got {type(value).__name__}")


def group_field_indices(schema: Schema, names: Sequence[str]) -> list[int]:
    """Positions of the categorical features ``names`` in ``Batch.sparse``; a clear error otherwise."""
    cats = [f.name for f in schema.features if f.kind == "categorical"]
    missing = [n for n in names if n not in cats]
    if missing:
        raise ValueError(f"model.apg.group_fields {missing} are not categorical features of the data: {cats}")
    return [cats.index(n) for n in names]


def _normal(*shape: int, fan_in: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) / math.sqrt(fan_in))


class APGLinear(nn.Module):
    """``h = ((x U) S_i) V + b`` with ``S_i = I + reshape(HyperMLP(z_i))``. ``[B, N]``, ``[B, C]`` -> ``[B, M]``.

    The identity offset (**Decision**) makes the layer start as a static low-rank layer ``x U V``.

    Args:
        in_dim: N. out_dim: M. rank: K. cond_dim: C. hypernet_hidden: H.
        overparam: P of ``U = U_l U_r``, ``V = V_l V_r``; None = plain U, V.
    """

    def __init__(
        self, in_dim: int, out_dim: int, rank: int, cond_dim: int, hypernet_hidden: int, overparam: int | None
    ) -> None:
        super().__init__()
        if min(in_dim, out_dim, rank, cond_dim, hypernet_hidden) < 1:
            raise ValueError("APGLinear sizes must all be >= 1")
        self.in_dim, self.out_dim, self.rank, self.cond_dim = in_dim, out_dim, rank, cond_dim
        self.u: nn.Parameter | None = None
        self.v: nn.Parameter | None = None
        self.u_l = self.u_r = self.v_l = self.v_r = None
        if overparam is None:
            self.u = _normal(in_dim, rank, fan_in=in_dim)  # [N, K]
            self.v = _normal(rank, out_dim, fan_in=rank)  # [K, M]
        else:
            self.u_l = _normal(in_dim, overparam, fan_in=in_dim)  # [N, P]
            self.u_r = _normal(overparam, rank, fan_in=overparam)  # [P, K]
            self.v_l = _normal(rank, overparam, fan_in=rank)  # [K, P]
            self.v_r = _normal(overparam, out_dim, fan_in=overparam)  # [P, M]
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.hyper = nn.Sequential(
            nn.Linear(cond_dim, hypernet_hidden), nn.ReLU(), nn.Linear(hypernet_hidden, rank * rank)
        )
        nn.init.normal_(self.hyper[-1].weight, std=0.01)
        nn.init.zeros_(self.hyper[-1].bias)
        self.register_buffer("eye", torch.eye(rank), persistent=False)

    @property
    def merged(self) -> bool:
        return self.u is not None

    def factors(self) -> tuple[Tensor, Tensor]:
        """The shared ``U`` ``[N, K]`` and ``V`` ``[K, M]`` (products of the factors if unmerged)."""
        if self.u is not None and self.v is not None:
            return self.u, self.v
        return self.u_l @ self.u_r, self.v_l @ self.v_r  # type: ignore[operator]

    def generate(self, z: Tensor) -> Tensor:
        """``S_i`` ``[B, K, K]`` from the condition ``z`` ``[B, C]``."""
        return self.eye + self.hyper(z).reshape(-1, self.rank, self.rank)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """``x`` ``[B, N]``, condition ``z`` ``[B, C]`` -> ``[B, M]`` (no per-instance ``[N, M]`` matrix)."""
        u, v = self.factors()
        s = self.generate(z)  # [B, K, K]
        h = torch.bmm((x @ u).unsqueeze(1), s).squeeze(1)  # (x U) S_i: [B, K]
        return h @ v + self.bias

    def forward_materialized(self, x: Tensor, z: Tensor) -> Tensor:
        """The same output by materialising ``W_i = U S_i V`` ``[B, N, M]`` (reference; slow)."""
        u, v = self.factors()
        w = u @ self.generate(z) @ v  # [N, K] @ [B, K, K] @ [K, M] -> [B, N, M]
        return torch.bmm(x.unsqueeze(1), w).squeeze(1) + self.bias

    @torch.no_grad()
    def merge(self) -> None:
        """Replace ``U_l U_r`` and ``V_l V_r`` by their products (inference); a no-op if merged."""
        if self.merged:
            return
        u, v = self.factors()
        self.u, self.v = nn.Parameter(u.clone()), nn.Parameter(v.clone())
        self.u_l = self.u_r = self.v_l = self.v_r = None

    def flops_per_example(self) -> int:
        """Serving (merged) FLOPs: hyper-network, ``x U``, ``· S_i``, ``· V``. The unmerged factor
        products depend only on parameters (once per forward, not per example)."""
        hyper = sum(2 * m.in_features * m.out_features for m in self.hyper if isinstance(m, nn.Linear))
        k = self.rank
        return hyper + 2 * self.in_dim * k + 2 * k * k + 2 * k * self.out_dim


class APGMLP(nn.Module):
    """An MLP whose hidden layers are :class:`APGLinear` layers, each followed by
    ``[BatchNorm] -> activation -> [Dropout]``, then an optional static ``Linear`` to ``out_dim``
    (the head stays static). The drop-in APG twin of :class:`~recsys_lab.layers.mlp.MLP`.

    ``x`` ``[B, in_dim]`` (and ``group`` ``[B, G]`` for group/mix conditions) -> ``[B, out_features]``.

    Args:
        in_dim, hidden_units, out_dim, activation, dropout, batch_norm: as for ``MLP``.
        apg: the APG settings.
        group_dim: G, width of the group condition (0 for ``condition="self"``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_units: Sequence[int],
        out_dim: int | None,
        activation: Activation,
        dropout: float,
        batch_norm: bool,
        apg: APGConfig,
        group_dim: int = 0,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden_units]
        if in_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"APGMLP widths must be >= 1, got in_dim={in_dim}, hidden_units={hidden}")
        if apg.condition != "self" and group_dim < 1:
            raise ValueError(f"APG condition={apg.condition} needs a group condition (group_dim >= 1)")
        self.condition = apg.condition
        self.in_dim = in_dim
        widths = [in_dim, *hidden]
        self.layers = nn.ModuleList()
        self.post = nn.ModuleList()
        for a, b in itertools.pairwise(widths):
            cond = {"self": a, "group": group_dim, "mix": a + group_dim}[apg.condition]
            self.layers.append(APGLinear(a, b, apg.rank, cond, apg.hypernet_hidden, apg.overparam))
            post: list[nn.Module] = [nn.BatchNorm1d(b)] if batch_norm else []
            post.append(activation_module(activation))
            if dropout > 0:
                post.append(nn.Dropout(dropout))
            self.post.append(nn.Sequential(*post))
        self.head = nn.Linear(widths[-1], out_dim) if out_dim is not None else None
        self.out_features = out_dim if out_dim is not None else widths[-1]

    def forward(self, x: Tensor, group: Tensor | None = None) -> Tensor:
        """``x`` ``[B, in_dim]``, ``group`` ``[B, G]`` or None -> ``[B, out_features]``."""
        if self.condition != "self" and group is None:
            raise ValueError(f"APG condition={self.condition} needs the group condition tensor")
        for layer, post in zip(self.layers, self.post, strict=True):
            z = (
                x
                if self.condition == "self"
                else group
                if self.condition == "group"
                else torch.cat([x, group], 1)
            )
            x = post(layer(x, z))
        return x if self.head is None else self.head(x)

    def flops_per_example(self) -> int:
        head = 0 if self.head is None else 2 * self.head.in_features * self.head.out_features
        return sum(layer.flops_per_example() for layer in self.layers) + head


def deep_mlp(
    in_dim: int,
    hidden_units: Sequence[int],
    out_dim: int | None,
    activation: Activation,
    dropout: float,
    batch_norm: bool,
    apg: APGConfig | Mapping[str, Any] | None,
    schema: Schema,
    field_dim: int,
) -> tuple[MLP | APGMLP, list[int]]:
    """A model's deep part under ``model.apg``: the static :class:`~recsys_lab.layers.mlp.MLP`
    (``apg`` None) or its :class:`APGMLP` twin, conditioned on the embeddings (``field_dim`` wide
    each) of ``apg.group_fields``. Returns the module and those fields' positions in
    ``Batch.sparse`` (empty for the static MLP); :func:`run_deep` applies it."""
    cfg = as_apg_config(apg)
    if cfg is None:
        return MLP(in_dim, hidden_units, out_dim, activation, dropout, batch_norm), []
    fields = group_field_indices(schema, cfg.group_fields)
    group_dim = len(fields) * field_dim
    return APGMLP(in_dim, hidden_units, out_dim, activation, dropout, batch_norm, cfg, group_dim), fields


def run_deep(mlp: MLP | APGMLP, x: Tensor, fields: Sequence[int], embed: Callable[[], Tensor]) -> Tensor:
    """``mlp(x)`` for a static MLP; an :class:`APGMLP` also gets its group condition
    ``embed()[:, fields]`` flattened to ``[B, |G|·D]`` (``embed()``: the field embeddings
    ``[B, F, D]``, computed only when needed). ``x`` ``[B, in_dim]`` -> ``[B, out_features]``."""
    if isinstance(mlp, APGMLP):
        return mlp(x, embed()[:, list(fields)].flatten(1))
    return mlp(x)


def merge_apg(module: nn.Module) -> nn.Module:
    """Merge the over-parameterised factors of every :class:`APGLinear` inside ``module`` (in place,
    for inference; outputs are unchanged up to float rounding). Returns ``module``."""
    for m in module.modules():
        if isinstance(m, APGLinear):
            m.merge()
    return module
