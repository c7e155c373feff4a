"""CTRTask: the one LightningModule. It composes a model, an objective, the optimisers and an
optional schedule, and evaluates with the CTR metrics.

- **Objective** (``task.objective``, a plain ``nn.Module`` from :mod:`recsys_lab.objectives`): the
  training loss. ``null`` = :class:`~recsys_lab.objectives.bce.BCE` on ``task.label`` (every label
  of a :class:`~recsys_lab.models.base.MultiTaskModel`, weighted by ``task.label_weights``; each
  label's validation and test metrics are logged as ``<split>/<label>/<metric>``, and the unprefixed
  ``<split>/<metric>`` are those of the primary label). Others: GRAB's every-event BCE, LUM's
  InfoNCE, ExFM's and OCARM's distillation. The objective's ``eval_logs`` hook adds evaluation
  metrics (InfoNCE) or refuses batches it must not see (OCARM's student).
- **Optimisation** follows the usual recsys split: dense weights get one optimiser (AdamW by
  default), embedding tables another (SparseAdam by default, which touches only the rows a batch
  looked up). Two optimisers need manual optimisation in Lightning; the dense optimiser's steps
  drive ``global_step`` (the sparse one is stepped directly so one batch counts as one step).
- **Schedule** (``task.schedule``, :mod:`recsys_lab.tasks.schedule`): which steps are *packed*
  (the objective's loss) and which *sparse* (candidates only, dense parameters frozen): GRAB's STS.

:meth:`CTRTask.train_batch` is the one training step: Lightning's ``training_step`` calls it, and so
does the streaming runner (:mod:`recsys_lab.runners.streaming`) with plain optimisers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from recsys_lab.data.batch import Batch
from recsys_lab.layers.embedding import FieldEmbedding
from recsys_lab.metrics import CTRMetrics
from recsys_lab.models.base import CTRModel, MultiTaskModel
from recsys_lab.objectives.base import Loss, Objective
from recsys_lab.objectives.bce import BCE
from recsys_lab.tasks.optim import PlateauDecay, RowWiseSparseAdam
from recsys_lab.tasks.schedule import PACKED, SPARSE, Schedule

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]

_SPARSE_ONLY = (torch.optim.SparseAdam, RowWiseSparseAdam)
_NO_SPARSE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.NAdam, torch.optim.RAdam)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class CTRTask(L.LightningModule):
    """Train and evaluate a CTR model.

    Args:
        model: the ranking model (``forward(batch) -> logits [B]``).
        optimizer: partial optimiser for dense parameters (called with the parameter list).
        sparse_optimizer: partial optimiser for embedding tables; ``None`` puts them in the dense
            optimiser (needs ``embedding.sparse_grad=false``).
        scheduler: optional partial LR scheduler for the dense optimiser. A
            :class:`~recsys_lab.tasks.optim.PlateauDecay` is stepped after validation with the
            metric it monitors, and with ``embedding=True`` also schedules the sparse optimiser.
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label: which label of ``Batch.labels`` to fit; with a multi-task model, the primary label
            (one of ``model.labels``) whose metrics are the unprefixed ones.
        max_grad_norm: clip the dense gradients' global norm (``None`` = no clipping).
        gauc: compute GAUC on validation and test (needs ``Batch.user``).
        label_weights: multi-task models: label -> loss weight (others weigh 1); only with the
            default objective.
        objective: the training loss (``None`` = :class:`~recsys_lab.objectives.bce.BCE`).
        schedule: packed/sparse steps (``None`` = every step packed).
    """

    def __init__(
        self,
        model: CTRModel,
        optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label: str = "click",
        max_grad_norm: float | None = None,
        gauc: bool = True,
        label_weights: Mapping[str, float] | None = None,
        objective: Objective | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"task.scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if objective is None:
            objective = BCE(label_weights)
        elif label_weights:
            raise ValueError(
                f"task.label_weights weighs the labels of the default BCE objective; task.objective is "
                f"{type(objective).__name__}. Drop task.label_weights or set task.objective=null."
            )
        if schedule is not None and schedule.freezes_dense and sparse_optimizer is None:
            raise ValueError(
                f"task.schedule ({schedule!r}) trains the embedding tables with their own "
                "optimiser: set task.sparse_optimizer (e.g. SparseAdam, the default) instead of null"
            )
        self.automatic_optimization = False
        self.model = model
        self.objective = objective
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.sparse_optimizer_factory = sparse_optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label = label
        self.max_grad_norm = max_grad_norm
        self.val_metrics = CTRMetrics(gauc=gauc)
        self.test_metrics = CTRMetrics(gauc=gauc)
        self.multitask = isinstance(model, MultiTaskModel)
        if isinstance(model, MultiTaskModel):
            if label not in model.labels:
                raise ValueError(
                    f"task.label={label!r} is not among the labels the model predicts ({list(model.labels)}); "
                    "set task.label to one of them (the primary label) or change model.labels"
                )
            # Every other label's metrics (the primary's are val_metrics / test_metrics).
            others = [x for x in model.labels if x != label]
            self.val_label_metrics = torch.nn.ModuleDict({x: CTRMetrics(gauc=gauc) for x in others})
            self.test_label_metrics = torch.nn.ModuleDict({x: CTRMetrics(gauc=gauc) for x in others})
        objective.bind(model, label)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> Tensor:
        """Probabilities ``[B]`` of the (primary) label."""
        if self.multitask:
            return torch.sigmoid(self.model.forward_tasks(batch)[self.label])  # type: ignore[operator]
        return torch.sigmoid(self.model(batch))

    def loss(self, batch: Batch) -> Tensor:
        """The objective's training loss of ``batch`` (a packed batch)."""
        return self.objective(self.model, batch).value

    # -- distribution --------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Shard the embedding tables that can be sharded (``embedding=torchrec_sharded``) over the
        ranks of the process group. Lightning calls this once the group exists and before DDP wraps
        the model, on every ``fit``/``validate``/``test`` (sharding is done once)."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        for module in self.model.modules():
            if isinstance(module, FieldEmbedding):
                module.shard(self.trainer.strategy.root_device)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> list | tuple:
        embedding = self.model.embedding_parameters()
        dense = self.model.dense_parameters()
        if self.sparse_optimizer_factory is None:
            dense_opt = self.optimizer_factory(dense + embedding)
            self._check_grad_kind(dense_opt, embedding, "task.optimizer")
            optimizers = [dense_opt]
        else:
            dense_opt = self.optimizer_factory(dense)
            optimizers = [dense_opt]
            if embedding:
                sparse_opt = self.sparse_optimizer_factory(embedding)
                self._check_grad_kind(sparse_opt, embedding, "task.sparse_optimizer")
                optimizers.append(sparse_opt)
        if self.scheduler_factory is None:
            return optimizers
        scheduler = self.scheduler_factory(dense_opt)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if not isinstance(scheduler, PlateauDecay):
                raise ValueError(
                    "task.scheduler is ReduceLROnPlateau, which must be told the metric it watches: use "
                    "_target_: recsys_lab.tasks.optim.PlateauDecay with monitor: val/auc (same arguments)."
                )
            if self.scheduler_interval != "epoch":
                raise ValueError(
                    "task.scheduler=PlateauDecay watches a validation metric: set task.scheduler_interval=epoch."
                )
            if scheduler.embedding and len(optimizers) > 1:
                return optimizers, [scheduler, self.scheduler_factory(optimizers[1])]
        return optimizers, [scheduler]

    def _check_grad_kind(self, opt: Optimizer, embedding: list[torch.nn.Parameter], key: str) -> None:
        """Fail at start-up, not at the first step, when table gradients and optimiser disagree."""
        sparse_tables = any(
            getattr(m, "sparse", False)
            for m in self.model.modules()
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
        )
        if sparse_tables and isinstance(opt, _NO_SPARSE):
            raise ValueError(
                f"{key} is {type(opt).__name__}, which cannot take the sparse gradients of the embedding "
                "tables. Use task.sparse_optimizer=SparseAdam/Adagrad (the default) or set "
                "embedding.sparse_grad=false."
            )
        if not sparse_tables and isinstance(opt, _SPARSE_ONLY) and embedding:
            raise ValueError(
                f"{key} is SparseAdam but the embedding tables have dense gradients "
                "(embedding.sparse_grad=false). Set embedding.sparse_grad=true or use a dense optimiser."
            )

    def train_batch(
        self,
        batch: Batch,
        optimizers: list[Optimizer],
        step: int,
        where: str = "",
        backward: Callable[[Tensor], None] | None = None,
    ) -> tuple[Loss, str]:
        """One optimisation step on ``batch``: the schedule's batch kind, the objective's loss,
        backward, clipping and every optimiser's step. Returns ``(loss, kind)``.

        Args:
            optimizers: dense first, then the embedding tables' (as :meth:`configure_optimizers`).
            step: the global step (it picks the schedule's batch kind).
            where: context for the error message of a non-finite loss (e.g. ``epoch 0, batch 3``).
            backward: how to back-propagate (Lightning's ``manual_backward``; default ``Tensor.backward``).
        """
        kind = PACKED if self.schedule is None else self.schedule.batch_kind(step)
        out = (
            self.objective(self.model, batch)
            if kind == PACKED
            else self.objective.candidate_loss(self.model, batch)
        )
        loss = out.value
        if not torch.isfinite(loss):
            context = ", ".join(x for x in (where, f"{kind} batch" if self.schedule is not None else "") if x)
            raise NonFiniteLossError(
                f"Training loss is {loss.item()} at global step {step}{f' ({context})' if context else ''}. "
                "Try a lower task.optimizer.lr, "
                "task.max_grad_norm=1.0, or check the data for NaN/inf values."
            )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        (backward or Tensor.backward)(loss)
        if kind == SPARSE:
            # Dense parameters are frozen in sparse batches: drop their gradients so the dense
            # optimiser's step (which drives global_step) changes nothing.
            optimizers[0].zero_grad(set_to_none=True)
        elif self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.dense_parameters(), self.max_grad_norm)
        for opt in optimizers:
            opt.step()
        return out, kind

    def on_train_start(self) -> None:
        if self.schedule is not None:
            self.schedule.start(float(self.trainer.estimated_stepping_batches))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read checkpoints written before objectives were modules: ExFM's adapter weights moved
        from ``adapter.*`` to ``objective.adapter.*``, its optimiser into ``objective._extra_state``."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("adapter.")]:
            state[f"objective.{key}"] = state.pop(key)
        extra = "objective._extra_state"
        if extra in self.state_dict() and extra not in state:
            state[extra] = checkpoint.pop("adapter_optimizer", None)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        # Lightning's wrapper of the dense optimiser counts global steps; the others step raw, so
        # one batch is one global step.
        raw = [opt.optimizer if isinstance(opt, LightningOptimizer) else opt for opt in optimizers[1:]]
        where = f"epoch {self.current_epoch}, batch {batch_idx}"
        out, kind = self.train_batch(
            batch, [optimizers[0], *raw], self.global_step, where, self.manual_backward
        )
        if self.scheduler_factory is not None and self.scheduler_interval == "step":
            self.lr_schedulers().step()
        n = len(batch)
        self.log("train/loss", out.value.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for name, value in out.logs.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=n)
        for name, value in out.epoch_logs.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=n)
        if self.schedule is not None:
            self.log("train/sts_sparse", float(kind == SPARSE), on_step=True, on_epoch=False, batch_size=n)
        return out.value

    def on_train_epoch_end(self) -> None:
        """Step epoch schedulers; Lightning calls this after the epoch's validation."""
        if self.scheduler_factory is None or self.scheduler_interval != "epoch":
            return
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if isinstance(scheduler, PlateauDecay):
                value = self.trainer.callback_metrics.get(scheduler.monitor)
                if value is None:
                    raise RuntimeError(
                        f"task.scheduler=PlateauDecay watches {scheduler.monitor!r}, which was not logged "
                        f"by the end of epoch {self.current_epoch} (logged: {sorted(self.trainer.callback_metrics)}). "
                        "Validate every epoch (a val split, trainer.check_val_every_n_epoch=1) or change "
                        "task.scheduler.monitor."
                    )
                scheduler.step(float(value))
            else:
                scheduler.step()

    # -- evaluation ----------------------------------------------------------------------------
    def _label_metrics(self, metrics: CTRMetrics) -> torch.nn.ModuleDict | None:
        """The other labels' metrics beside the primary label's ``metrics`` (multi-task only)."""
        if not self.multitask:
            return None
        return self.val_label_metrics if metrics is self.val_metrics else self.test_label_metrics

    def _eval_step(self, batch: Batch, metrics: CTRMetrics, batch_idx: int = 0) -> None:
        split = "val" if metrics is self.val_metrics else "test"
        for name, value in self.objective.eval_logs(self.model, batch, batch_idx).items():
            self.log(f"{split}/{name}", value, on_epoch=True, batch_size=len(batch))
        others = self._label_metrics(metrics)
        if others is None:
            metrics.update(self(batch), batch.labels[self.label], batch.user)
            return
        probs = {k: torch.sigmoid(v) for k, v in self.model.forward_tasks(batch).items()}  # type: ignore[operator]
        for name in self.model.labels:
            if name not in batch.labels:
                raise ValueError(
                    f"The model predicts {name!r} but the evaluation batch has only the labels {sorted(batch.labels)}"
                )
        metrics.update(probs[self.label], batch.labels[self.label], batch.user)
        for name, m in others.items():
            m.update(probs[name], batch.labels[name], batch.user)

    def _eval_epoch_end(self, split: str, metrics: CTRMetrics) -> None:
        values = {k: float(v) for k, v in metrics.compute().items()}
        metrics.reset()
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, prog_bar=split == "val")
        others = self._label_metrics(metrics)
        if others is not None:
            per_label = {f"{split}/{self.label}/{k}": v for k, v in values.items()}
            for name, m in others.items():
                per_label.update({f"{split}/{name}/{k}": float(v) for k, v in m.compute().items()})
                m.reset()
            self.log_dict(per_label)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_metrics)
