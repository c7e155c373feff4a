from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from recsys_lab.data.datamodule import TableSplit, table_loader
from recsys_lab.tasks.ctr import CTRTask, NonFiniteLossError
from tests.helpers import LinearModel, tiny_batch, tiny_schema


def loader(n: int = 256) -> DataLoader:
    b = tiny_batch(n)
    return table_loader(TableSplit(b.dense, b.sparse, b.labels, b.user), batch_size=32, shuffle=True)


def trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


def make_task(model, **kw) -> CTRTask:
    return CTRTask(
        model,
        optimizer=partial(torch.optim.AdamW, lr=1e-2),
        sparse_optimizer=partial(torch.optim.SparseAdam, lr=1e-2),
        **kw,
    )


def test_one_batch_is_one_global_step_with_two_optimisers():
    task = make_task(LinearModel(tiny_schema()))
    t = trainer(max_epochs=1)
    t.fit(task, train_dataloaders=loader(256))
    assert t.global_step == 256 // 32


def test_both_parameter_groups_are_updated():
    model = LinearModel(tiny_schema())
    emb0 = model.embedding.table.weight.detach().clone()
    lin0 = model.linear.weight.detach().clone()
    trainer(max_epochs=1).fit(make_task(model), train_dataloaders=loader())
    assert not torch.equal(model.embedding.table.weight, emb0)
    assert not torch.equal(model.linear.weight, lin0)


def test_nan_loss_stops_the_run_naming_the_step():
    task = make_task(LinearModel(tiny_schema(), nan_from_step=3))
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        trainer(max_epochs=1).fit(task, train_dataloaders=loader())


def test_validation_logs_every_metric():
    task = make_task(LinearModel(tiny_schema()))
    t = trainer(max_epochs=1)
    t.fit(task, train_dataloaders=loader(), val_dataloaders=loader())
    logged = t.validate(task, dataloaders=loader(), verbose=False)[0]
    assert set(logged) == {"val/auc", "val/logloss", "val/gauc", "val/ne", "val/calibration"}
    assert 0.0 <= logged["val/auc"] <= 1.0


def test_optimiser_and_gradient_kind_mismatch_fails_at_start():
    task = CTRTask(
        LinearModel(tiny_schema()), optimizer=partial(torch.optim.AdamW, lr=1e-2), sparse_optimizer=None
    )
    with pytest.raises(ValueError, match="sparse gradients"):
        task.configure_optimizers()


def test_scheduler_steps_the_dense_learning_rate():
    task = make_task(
        LinearModel(tiny_schema()),
        scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    t = trainer(max_epochs=2)
    t.fit(task, train_dataloaders=loader())
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)


def test_plateau_decay_scales_both_optimisers_after_validation():
    """A model that cannot move (lr ~ 0) never improves val/auc: PlateauDecay (patience 0) divides
    both learning rates by 10 after every epoch but the first, reading val/auc after validation."""
    from recsys_lab.tasks.optim import PlateauDecay

    task = CTRTask(
        LinearModel(tiny_schema()),
        optimizer=partial(torch.optim.AdamW, lr=1e-12),
        sparse_optimizer=partial(torch.optim.SparseAdam, lr=1e-12),
        scheduler=partial(PlateauDecay, monitor="val/auc", factor=0.1, patience=0, min_lr=0.0),
    )
    t = trainer(max_epochs=3)
    t.fit(task, train_dataloaders=loader(), val_dataloaders=loader())
    assert [o.param_groups[0]["lr"] for o in t.optimizers] == pytest.approx([1e-14, 1e-14])
    task = CTRTask(
        LinearModel(tiny_schema()),
        optimizer=partial(torch.optim.AdamW, lr=1e-12),
        sparse_optimizer=partial(torch.optim.SparseAdam, lr=1e-12),
        scheduler=partial(PlateauDecay, factor=0.1, min_lr=0.0, embedding=False),
    )
    t = trainer(max_epochs=2)
    t.fit(task, train_dataloaders=loader(), val_dataloaders=loader())
    assert [o.param_groups[0]["lr"] for o in t.optimizers] == pytest.approx([1e-13, 1e-12])


def test_plateau_needs_its_metric_and_plain_reduce_on_plateau_is_refused():
    from recsys_lab.tasks.optim import PlateauDecay

    plain = make_task(
        LinearModel(tiny_schema()), scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau)
    )
    with pytest.raises(ValueError, match="PlateauDecay"):
        plain.configure_optimizers()
    task = make_task(LinearModel(tiny_schema()), scheduler=partial(PlateauDecay, monitor="val/auc"))
    with pytest.raises(RuntimeError, match=r"val/auc.*not logged"):
        trainer(max_epochs=1).fit(task, train_dataloaders=loader())  # no validation
