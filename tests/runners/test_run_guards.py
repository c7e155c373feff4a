"""Guards of a run: divergence stops it with a clear message, threads fit the machine."""

from __future__ import annotations

import pytest
import torch

from recsys_lab.callbacks import DivergenceError, DivergenceGuard
from recsys_lab.runners import stage
from recsys_lab.runners.threads import CpuLoad, available_cpus, threads_for
from recsys_lab.runners.train import run
from tests.conftest import compose_train

TINY = (
    "debug=tiny",
    "model=dnn",
    "model.hidden_units=[16]",
    "logger=none",
    "print_table=false",
    "num_threads=1",
)


@pytest.mark.usefixtures("hydra_ctx")
def test_a_blown_up_learning_rate_stops_the_run_with_what_to_try(tmp_path):
    cfg = compose_train(tmp_path, *TINY, "task.optimizer.lr=1e6", "task.sparse_optimizer.lr=1e6")
    with pytest.raises(DivergenceError, match=r"diverged at global step \d+.*lower learning rate") as err:
        run(cfg)
    assert "callbacks.divergence=null" in str(err.value)
    # The same run with the guard disabled goes to the end (and its AUC shows why the guard exists).
    cfg = compose_train(tmp_path / "off", *TINY, "task.optimizer.lr=1e6", "task.sparse_optimizer.lr=1e6",
                        "callbacks.divergence=null")  # fmt: skip
    assert run(cfg)["global_step"] > 0


@pytest.mark.usefixtures("hydra_ctx")
def test_a_healthy_run_is_not_stopped(tmp_path):
    assert run(compose_train(tmp_path, *TINY))["test/auc"] > 0.5


class _Trainer:
    global_step = 0
    current_epoch = 0


def test_guard_reference_is_the_starting_loss_and_survives_a_checkpoint():
    guard = DivergenceGuard(factor=10, warmup_steps=3, ema=1.0, check_params_every=10**6)
    module = torch.nn.Linear(1, 1)
    for loss in (0.7, 0.69, 0.68, 0.6, 5.0):  # 5.0 < 10 x 0.68: a noisy batch, no stop
        guard.on_train_batch_end(_Trainer(), module, torch.tensor(loss), None, 0)  # type: ignore[arg-type]
    restored = DivergenceGuard(factor=10, warmup_steps=3, ema=1.0, check_params_every=10**6)
    restored.load_state_dict(guard.state_dict())
    assert restored.reference == pytest.approx(0.68)
    with pytest.raises(DivergenceError, match=r"10.3× its starting level 0.68"):
        restored.on_train_batch_end(_Trainer(), module, torch.tensor(7.0), None, 0)  # type: ignore[arg-type]
    with pytest.raises(DivergenceError, match="the training loss is nan"):
        restored.on_train_batch_end(_Trainer(), module, torch.tensor(float("nan")), None, 0)  # type: ignore[arg-type]


def test_threads_share_the_cpus_and_leave_busy_ones_alone():
    assert threads_for(cpus=2, jobs=1, other_busy=0.0) == 2
    assert threads_for(cpus=2, jobs=1, other_busy=1.0) == 1  # one busy neighbour: one thread
    assert threads_for(cpus=2, jobs=2, other_busy=0.0) == 1  # 2 parallel jobs x 1 thread
    assert threads_for(cpus=16, jobs=4, other_busy=0.2) == 4
    assert threads_for(cpus=16, jobs=1, other_busy=10.0) == 6
    assert threads_for(cpus=2, jobs=1, other_busy=5.0) == 1  # never zero
    assert threads_for(cpus=8, jobs=1, other_busy=None) == 8  # unknown load: the whole share
    assert 1 <= available_cpus()
    busy = CpuLoad().other_busy()
    assert busy is None or busy >= 0


def test_concurrent_jobs_counts_cpu_ddp_ranks():
    from omegaconf import OmegaConf

    assert stage.concurrent_jobs(OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 2}})) == 2
    assert stage.concurrent_jobs(OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 8}})) == 1


def test_adaptive_threads_follow_the_load_unless_fixed(monkeypatch):
    import recsys_lab.callbacks as callbacks

    monkeypatch.setattr(callbacks, "available_cpus", lambda: 4)
    before = torch.get_num_threads()
    try:
        guard = callbacks.AdaptiveThreads(num_threads=None, every_s=0.0)
        guard.on_train_start(None, None)  # type: ignore[arg-type]
        monkeypatch.setattr(callbacks.CpuLoad, "other_busy", lambda self: 3.0)  # 3 of 4 CPUs taken
        guard.on_train_batch_end(None, None, None, None, 0)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(callbacks.CpuLoad, "other_busy", lambda self: 0.0)  # the neighbour left
        guard.on_train_batch_end(None, None, None, None, 0)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 4
        fixed = callbacks.AdaptiveThreads(num_threads=2, every_s=0.0)
        fixed.on_train_start(None, None)  # type: ignore[arg-type]
        monkeypatch.setattr(callbacks.CpuLoad, "other_busy", lambda self: 3.0)
        fixed.on_train_batch_end(None, None, None, None, 0)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 4  # untouched
    finally:
        torch.set_num_threads(before)
