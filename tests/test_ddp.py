"""Multi-process training: rank sharding of the batch sampler, DDP (2 CPU processes, gloo) against
one process with the same global batch, and TorchRec sharded tables against the plain ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from recsys_lab.data.datamodule import EpochBatchSampler
from recsys_lab.runners.train import run
from tests.conftest import compose_train

REPO = Path(__file__).resolve().parent.parent
SMALL = (
    "data.num_train=2048",
    "data.num_val=1024",
    "data.num_test=1024",
    "trainer.max_epochs=1",
    "logger=none",
)


@pytest.mark.parametrize(("n", "b"), [(1000, 32), (1003, 10), (7, 2)])
def test_ddp_shards_are_the_single_process_global_batches(n, b):
    single = list(EpochBatchSampler(n, 2 * b, shuffle=True, seed=3))
    ranks = [list(EpochBatchSampler(n, b, shuffle=True, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(EpochBatchSampler(n, b, True, num_replicas=2, rank=1))
    full = 0
    for k, (r0, r1) in enumerate(zip(*ranks, strict=True)):
        assert not set(r0.tolist()) & set(r1.tolist())
        if len(r0) == b:
            assert torch.equal(torch.cat([r0, r1]), single[k])  # same examples, same order
            full += 1
    assert full == n // (2 * b)
    # Evaluation shards cover every row exactly once, so gathered metrics are the full split's.
    evals = [torch.cat(list(EpochBatchSampler(n, b, shuffle=False, num_replicas=2, rank=r))) for r in (0, 1)]
    assert torch.equal(torch.cat(evals), torch.arange(n))


def test_sampler_reads_the_process_group_when_iterating(monkeypatch):
    sampler = EpochBatchSampler(100, 10, shuffle=True, seed=0)  # built before any process group
    assert len(sampler) == 10
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert len(sampler) == 5
    batches = list(sampler)
    assert len(batches) == 5
    expected = list(EpochBatchSampler(100, 10, shuffle=True, seed=0, num_replicas=2, rank=1))
    assert all(torch.equal(a, e) for a, e in zip(batches, expected, strict=True))


@pytest.mark.subprocess
@pytest.mark.usefixtures("hydra_ctx")
def test_ddp_two_processes_match_one_process(tmp_path):
    """trainer=ddp with 2 gloo processes of batch 128 = one process of batch 256: same metrics,
    AUC/GAUC over both ranks' predictions (each rank alone sees half of the split)."""
    ddp = _train_ddp(tmp_path / "ddp")
    single = run(
        compose_train(tmp_path / "single", "debug=tiny", "data.batch_size=256", *SMALL, "num_threads=1")
    )
    assert ddp["global_step"] == single["global_step"] == 2048 // 256
    for key in ("val/auc", "val/gauc", "test/auc", "test/gauc", "test/logloss", "test/calibration"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key


def _train_ddp(out: Path, *overrides: str) -> dict:
    """``python -m recsys_lab.train trainer=ddp`` (2 gloo processes) into ``out``; its metrics."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    args = ["trainer=ddp", "debug=tiny", "data.batch_size=128", *SMALL, "num_threads=1", *overrides]
    proc = subprocess.run(
        [sys.executable, "-m", "recsys_lab.train", *args, f"hydra.run.dir={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr + proc.stdout
    return json.loads((out / "metrics.json").read_text())


# -- TorchRec embedding tables ------------------------------------------------------------------


def test_torchrec_embedding_is_a_per_field_lookup_with_sparse_grads():
    from recsys_lab.layers.torchrec_embedding import TorchRecEmbedding
    from tests.models.conftest import make_batch, make_schema

    torch.manual_seed(0)
    emb = TorchRecEmbedding(make_schema(), dim=4)
    ids = make_batch(16, seed=0).sparse
    out = emb(ids)
    assert out.shape == (16, emb.num_fields, 4)
    expected = torch.stack([table[ids[:, f]] for f, table in enumerate(emb.tables())], dim=1)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert all(t.grad is not None and t.grad.is_sparse for t in emb.tables())
    with pytest.raises(ValueError, match="ids"):
        emb(ids[:, :2])


@pytest.mark.usefixtures("hydra_ctx")
def test_embedding_torchrec_sharded_trains_unsharded_in_one_process(tmp_path):
    m = run(compose_train(tmp_path, "debug=fast_dev_run", "embedding=torchrec_sharded"))
    assert 0 < m["test/logloss"] < 1 and m["params/embedding"] > 0


def test_sharded_fused_adam_on_cpu_is_refused_with_the_alternatives(monkeypatch):
    from recsys_lab.layers.torchrec_embedding import TorchRecEmbedding
    from tests.models.conftest import make_schema

    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # refused before any collective
    emb = TorchRecEmbedding(make_schema(), dim=4, optimizer="adam")
    with pytest.raises(ValueError, match="rowwise_adagrad"):
        emb.shard()
    assert not emb.is_sharded and emb.tables()  # left whole and usable
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="process group"):
        TorchRecEmbedding(make_schema(), dim=4).shard()


def _sharded_worker(rank: int, port: int, out_dir: str) -> None:
    """One of 2 gloo ranks: shard the tables, compare forward and one fused SGD step with the
    unsharded tables updated by the mean of both ranks' gradients."""
    from recsys_lab.layers.torchrec_embedding import TorchRecEmbedding
    from tests.models.conftest import make_batch, make_schema

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # same initial tables on both ranks
        lr = 0.5
        emb = TorchRecEmbedding(make_schema(), dim=4, optimizer="sgd", lr=lr)
        tables = [t.detach().clone().requires_grad_(True) for t in emb.tables()]
        ids = [make_batch(8, seed=r).sparse for r in (0, 1)]  # rank r's batch

        def lookup(x: torch.Tensor, ts: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack([t[x[:, f]] for f, t in enumerate(ts)], dim=1)

        before = lookup(ids[rank], tables).detach()
        ((lookup(ids[0], tables).sum() + lookup(ids[1], tables).sum()) / 2).backward()  # mean over ranks
        updated = [(t - lr * t.grad).detach() for t in tables]
        emb.shard()
        out = emb(ids[rank])
        forward_err = float((out - before).abs().max())
        out.sum().backward()  # the fused optimiser steps inside backward
        step_err = float((emb(ids[rank]) - lookup(ids[rank], updated)).abs().max())
        local_rows = sum(
            s.tensor.shape[0] for v in emb.sharded_collection.state_dict().values() for s in v.local_shards()
        )
        result = {
            "forward": forward_err,
            "step": step_err,
            "local_rows": local_rows,
            "rows": sum(emb.rows_per_field),
            "no_parameters": not list(emb.parameters()),  # DDP and the task's optimisers skip them
            **_sharded_state_dict_round_trip(rank, out_dir, ids),
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _sharded_state_dict_round_trip(rank: int, out_dir: str, ids: list[torch.Tensor]) -> dict:
    """Save a sharded module with row-wise Adagrad state after one step, load it into a fresh
    sharded module (other initial weights) and into an unsharded one, and compare."""
    from recsys_lab.layers.torchrec_embedding import TorchRecEmbedding
    from tests.models.conftest import make_schema

    def make(seed: int, shard: bool = True) -> TorchRecEmbedding:
        torch.manual_seed(seed)
        emb = TorchRecEmbedding(make_schema(), dim=4, optimizer="rowwise_adagrad", lr=0.3)
        if shard:
            emb.shard()
        return emb

    emb = make(0)
    emb(ids[rank]).sum().backward()  # one step: the Adagrad accumulators are now non-zero
    state = emb.state_dict()  # collective; the full tables and optimiser state land on rank 0
    path = Path(out_dir, "sharded.pt")
    if rank == 0:
        torch.save(state, path)
    dist.barrier()
    full = torch.load(path)
    fresh = make(1)
    fresh.load_state_dict(full)
    before = emb(ids[rank]).detach()
    loaded_forward = float((fresh(ids[rank]) - before).abs().max())
    for e in (emb, fresh):  # the same second step on both: equal only if the accumulators were restored
        e(ids[rank]).sum().backward()
    resumed_step = float((fresh(ids[rank]) - emb(ids[rank])).abs().max())
    moved = float((emb(ids[rank]) - before).abs().max())  # the second step did change the tables
    # the checkpoint of a sharded run loads into an unsharded module (one process, serving)
    plain = make(2, shard=False)
    plain.load_state_dict(full)
    optim_keys = {k for k in full if k.startswith("fused_optimizer.")}
    return {
        "loaded_forward": loaded_forward,
        "resumed_step": resumed_step,
        "second_step_moved": moved,
        "unsharded_forward": float((plain(ids[rank]) - before).abs().max()),
        "state_keys_are_unsharded": sorted(set(full) - optim_keys) == sorted(plain.state_dict()),
        "accumulators": len(optim_keys),
        "nonzero_accumulators": sum(bool(full[k].abs().sum() > 0) for k in optim_keys),
    }


@pytest.mark.subprocess
def test_torchrec_sharded_tables_match_unsharded_on_two_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sharded_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in results:
        assert r["forward"] < 1e-6
        assert r["step"] < 1e-5
        assert 0 < r["local_rows"] < r["rows"]  # each rank stores only its tables
        assert r["no_parameters"]
        # state dict: full tables + fused optimiser state, reloaded into sharded and unsharded modules
        assert r["loaded_forward"] < 1e-7 and r["unsharded_forward"] < 1e-7
        assert r["second_step_moved"] > 1e-3 and r["resumed_step"] < 1e-6
        assert r["state_keys_are_unsharded"]
        assert r["accumulators"] == r["nonzero_accumulators"] == 4  # one per table, all stepped
    assert results[0]["local_rows"] + results[1]["local_rows"] == results[0]["rows"]


@pytest.mark.subprocess
@pytest.mark.usefixtures("hydra_ctx")
def test_ddp_with_sharded_torchrec_tables_matches_one_unsharded_process(tmp_path):
    """trainer=ddp embedding=torchrec_sharded: 2 gloo processes, each holding half of the tables
    (fused exact Adagrad), against one process with whole tables and torch's sparse Adagrad at
    the same global batch. The metrics come from the best checkpoint, which must hold the full
    tables gathered from both ranks (in the unsharded layout, so it loads in one process)."""
    lr = "0.05"
    ddp = _train_ddp(
        tmp_path / "ddp", "embedding=torchrec_sharded", "embedding.optimizer=adagrad", f"embedding.lr={lr}"
    )
    single = run(
        compose_train(
            tmp_path / "single",
            "debug=tiny",
            "data.batch_size=256",
            *SMALL,
            "num_threads=1",
            "embedding=torchrec_sharded",
            "task.sparse_optimizer._target_=torch.optim.Adagrad",
            f"task.sparse_optimizer.lr={lr}",
            "+task.sparse_optimizer.eps=1e-8",  # FBGEMM's default
        )
    )
    assert ddp["global_step"] == single["global_step"] == 2048 // 256
    assert ddp["params/embedding"] == single["params/embedding"] > 0  # counted over all ranks' shards
    for key in ("val/auc", "val/gauc", "test/auc", "test/gauc", "test/logloss"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key
    sharded_ckpt = torch.load(ddp["best_checkpoint"], weights_only=False)["state_dict"]
    plain_ckpt = torch.load(single["best_checkpoint"], weights_only=False)["state_dict"]
    tables = [k for k in plain_ckpt if "embedding_bags" in k]
    assert tables and set(plain_ckpt) == {k for k in sharded_ckpt if "fused_optimizer." not in k}
    for key in tables:
        torch.testing.assert_close(sharded_ckpt[key], plain_ckpt[key], atol=1e-5, rtol=1e-4)
    # the run did shard: the fused Adagrad state of every table was saved with it
    assert sum(".fused_optimizer." in k for k in sharded_ckpt) == len(tables)
    # and the tables trained (initial N(0, 0.01²); Adagrad's first step moves a touched value by lr)
    assert max(float(sharded_ckpt[k].abs().max()) for k in tables) > float(lr)


@pytest.mark.slow
@pytest.mark.subprocess
def test_ddp_sharded_resume_reproduces_the_uninterrupted_run(tmp_path):
    """2 epochs straight against 1 epoch + resume from last.ckpt, tables sharded over 2 ranks: the
    checkpoint must carry every rank's tables and fused Adagrad state."""
    sharded = ("embedding=torchrec_sharded", "embedding.optimizer=adagrad", "embedding.lr=0.05")
    full = _train_ddp(tmp_path / "full", *sharded, "trainer.max_epochs=2")
    first = _train_ddp(tmp_path / "part", *sharded)  # SMALL: one epoch
    assert first["epochs"] == 1
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed = _train_ddp(tmp_path / "resumed", *sharded, "trainer.max_epochs=2", f"ckpt_path={last}")
    assert resumed["global_step"] == full["global_step"] == 2 * first["global_step"]
    for key in ("val/auc", "test/auc", "test/logloss", "test/gauc"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key
