"""GRAB: no label leakage, masks by perturbation, candidate permutation, learning, task and STS."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.layers.sequence import PackedSequence
from recsys_lab.models.dnn import DNN
from recsys_lab.models.grab import GRAB
from recsys_lab.objectives.every_event import EveryEventBCE
from recsys_lab.scaling.counting import measured_flops_per_example
from recsys_lab.tasks.ctr import CTRTask
from recsys_lab.tasks.schedule import STS
from tests.conftest import compose_train
from tests.layers.test_sequence import make_seq_batch, make_seq_schema, seq_embedding
from tests.models.conftest import train_losses


def grab(**kwargs) -> GRAB:
    torch.manual_seed(0)
    defaults = dict(dim=16, num_layers=2, num_heads=4, head_dim=4, ffn_hidden=16, head_units=[8])
    return GRAB(make_seq_schema(), seq_embedding(), **{**defaults, **kwargs})


def with_actions(batch: Batch, actions: torch.Tensor) -> Batch:
    h = batch.history
    return Batch(
        batch.dense,
        batch.sparse,
        batch.labels,
        batch.user,
        Jagged(h.values, actions, h.timestamps, h.offsets),
        extras=batch.extras,
    )


@pytest.mark.parametrize("kernel", ["reference", "padded"])
def test_an_events_own_action_never_reaches_its_own_logit(kernel):
    """Decision (docs/sequence_models.md): changing event i's action leaves event i's logit
    unchanged and changes a later event's logit."""
    model = grab(kernel=kernel).eval()
    batch = make_seq_batch(4, seed=0, min_len=5, max_len=6)
    base = model.forward_events(batch)
    actions = batch.history.actions.clone()
    i = int(batch.history.offsets[1]) + 2  # third event of sample 1
    actions[i] ^= 0b110  # flip click and conversion
    out = model.forward_events(with_actions(batch, actions))
    diff = (out.event_logits - base.event_logits).abs()
    assert diff[i] == 0
    assert diff[i + 1] > 1e-6  # the next event of the same user sees it
    assert (out.event_labels - base.event_labels).abs()[i] == 1  # and the label did change
    others = torch.ones_like(diff, dtype=torch.bool)
    others[int(batch.history.offsets[1]) : int(batch.history.offsets[2])] = False
    assert diff[others].max() == 0  # other users are untouched
    assert (out.candidate_logits - base.candidate_logits).abs()[[0, 2, 3]].max() == 0


def test_later_events_do_not_move_earlier_logits():
    model = grab().eval()
    batch = make_seq_batch(3, seed=1, min_len=6, max_len=6)
    base = model.forward_events(batch).event_logits
    h = batch.history
    values = h.values.clone()
    values[4, 0] = (values[4, 0] % 28) + 1  # event 4 of sample 0 becomes another ad
    b2 = Batch(
        batch.dense,
        batch.sparse,
        batch.labels,
        batch.user,
        Jagged(values, h.actions, h.timestamps, h.offsets),
        extras=batch.extras,
    )
    diff = (model.forward_events(b2).event_logits - base).abs()
    assert diff[:4].max() == 0 and diff[4:6].min() > 0 and diff[6:].max() == 0


@pytest.mark.parametrize("kernel", ["reference", "padded"])
def test_candidates_do_not_see_each_other_and_permute(kernel):
    """Several candidates in one segment: permuting them permutes their outputs."""
    model = grab(kernel=kernel).eval()
    lengths, cands = (
        torch.tensor([6, 4]),
        torch.tensor([3, 2]),
    )  # [sink, 2 events, 3 cands], [sink, 1 event, 2 cands]
    offsets = torch.tensor([0, 6, 10])
    kind = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 2, 2])
    seg = torch.repeat_interleave(torch.arange(2), lengths)
    ts = torch.tensor([5, 5, 9, 20, 20, 20, 3, 3, 8, 8])
    actions = torch.tensor([0, 3, 1, 0, 0, 0, 0, 7, 0, 0])
    pos = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3])
    p = PackedSequence(offsets, ts, actions, cands, kind, seg, torch.full((10,), -1), pos)
    torch.manual_seed(1)
    x = torch.randn(10, 16)
    codes = model.tokenizer.action_codes(p)
    h = model.trunk(x, p, codes)
    perm = torch.tensor([0, 1, 2, 5, 3, 4, 6, 7, 9, 8])
    h_perm = model.trunk(x[perm], p, codes[perm])
    torch.testing.assert_close(h_perm, h[perm])
    x2 = x.clone()
    x2[3] = torch.randn(16)
    moved = ((model.trunk(x2, p, codes) - h).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == [3]


def test_packing_is_per_user():
    """A batch scores each sample as if it were alone (jagged packing leaks nothing across users)."""
    model = grab(kernel="padded").eval()
    batch = make_seq_batch(5, seed=2)
    together = model(batch)
    alone = torch.cat([model(batch.select(torch.tensor([i]))) for i in range(5)])
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(grab(kernel="reference").eval()(batch), together)


def test_flops_match_flop_counter_at_the_history_length():
    """Every sample with 5 events (sink + 5 + candidate tokens), the reference kernel."""
    model = grab().eval()
    batch = make_seq_batch(4, seed=7, min_len=5, max_len=5)
    assert measured_flops_per_example(model, batch) == pytest.approx(
        model.flops_per_example(history_len=5), rel=1e-6
    )
    assert grab(max_history=5).flops_per_example() == model.flops_per_example(history_len=5)


def test_moe_and_single_channel_variants_run_and_differ():
    batch = make_seq_batch(4, seed=3)
    assert grab(num_experts=3, top_k=2)(batch).shape == (4,)
    single = grab(channels="single", num_heads=2)
    assert single.num_channels == 1 and grab().num_channels == 4
    assert single(batch).shape == (4,)


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    from recsys_lab.metrics import auc

    return float(auc(torch.sigmoid(scores), labels))


def test_grab_learns_a_history_task_a_dnn_without_history_cannot():
    """Label = the candidate's category matches a *clicked* history event: GRAB with CamA learns
    it, a DNN of the sample's own fields cannot beat chance by much."""
    train, test = (
        make_seq_batch(512, seed=10, min_len=1, max_len=6),
        make_seq_batch(512, seed=11, min_len=1, max_len=6),
    )
    model = grab(kernel="padded", dim=32, head_dim=8)
    losses = train_losses(model, train, steps=40, lr=1e-2)
    assert losses[-1] < 0.6 * losses[0], losses[::20]
    torch.manual_seed(0)
    dnn = DNN(make_seq_schema(), seq_embedding(), hidden_units=[32])
    train_losses(dnn, train, steps=40, lr=1e-2)
    with torch.no_grad():
        grab_auc, dnn_auc = (
            _auc(model.eval()(test), test.labels["click"]),
            _auc(dnn.eval()(test), test.labels["click"]),
        )
    assert grab_auc > 0.8 and grab_auc > dnn_auc + 0.15, (grab_auc, dnn_auc)


def test_gradients_reach_every_dense_parameter():
    model = grab()
    batch = make_seq_batch(8, seed=4, min_len=2)
    out = model.forward_events(batch)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.event_logits, out.event_labels)
    loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
        out.candidate_logits, batch.labels["click"]
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_config_matches_constructor():
    from tests.models.conftest import assert_config_defaults

    assert_config_defaults(GRAB, "grab")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_heads": 6}, "multiple of 4"),
        ({"channels": "multi"}, "channels"),
        ({"sts": "both"}, "sts"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grab(**kwargs)


class _Recorder(L.Callback):
    def __init__(self) -> None:
        self.snapshots: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        m = pl_module.model
        dense = torch.cat([p.detach().flatten() for p in m.dense_parameters()]).clone()
        emb = torch.cat([p.detach().flatten() for p in m.embedding_parameters()]).clone()
        self.snapshots.append((dense, emb))


@pytest.mark.parametrize(
    ("sts", "dense_moves"),
    [("two_stage", [1, 1, 0, 0]), ("alternating", [1, 0, 1, 0]), ("off", [1, 1, 1, 1])],
)
def test_sts_schedule_freezes_dense_parameters_in_sparse_batches(tmp_path, sts, dense_moves):
    model = grab(kernel="padded")
    task = CTRTask(
        model,
        optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2),
        sparse_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2),
        gauc=False,
        objective=EveryEventBCE(),
        schedule=STS(sts, stage1_fraction=0.5),
    )
    batches = [make_seq_batch(16, seed=20 + i) for i in range(4)]
    rec = _Recorder()
    trainer = L.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rec],
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    before = (
        torch.cat([p.detach().flatten() for p in model.dense_parameters()]).clone(),
        torch.cat([p.detach().flatten() for p in model.embedding_parameters()]).clone(),
    )
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert trainer.global_step == 4
    prev = before
    for step, (dense, emb) in enumerate(rec.snapshots):
        assert bool((dense != prev[0]).any()) == bool(dense_moves[step]), (sts, step)
        assert (emb != prev[1]).any(), (sts, step)  # embeddings train in every batch
        prev = (dense, emb)


def test_sts_needs_a_sparse_optimizer():
    with pytest.raises(ValueError, match="sparse_optimizer"):
        CTRTask(
            grab(),
            optimizer=lambda ps: torch.optim.Adam(ps),
            sparse_optimizer=None,
            objective=EveryEventBCE(),
            schedule=STS("two_stage"),
        )


@pytest.mark.usefixtures("hydra_ctx")
def test_experiment_config_trains_in_process(tmp_path):
    from recsys_lab.runners.train import run

    cfg = compose_train(
        tmp_path,
        "experiment=grab_small",
        "debug=fast_dev_run",
        "model.kernel=padded",
        "model.sts=alternating",
    )
    metrics = run(cfg)
    assert metrics["model"] == "GRAB" and 0.0 <= metrics["test/auc"] <= 1.0
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["flops/per_example"] > 0


def test_packed_every_event_loss_weighs_each_event_and_candidate_equally():
    """data.packing=user: the loss is the mean BCE over every event and candidate of the segments
    (weighted by task.objective.event_weight); per-sample packing keeps the two means."""
    import torch.nn.functional as F

    model, batch = grab(), make_seq_batch(6, seed=3, min_len=4)
    out = model.forward_events(batch)
    y = batch.labels["click"]
    cand = F.binary_cross_entropy_with_logits(out.candidate_logits, y, reduction="none")
    ev = F.binary_cross_entropy_with_logits(out.event_logits, out.event_labels, reduction="none")
    assert ev.numel() > 2 * cand.numel()
    for w in (1.0, 2.5, 0.0):
        packed = EveryEventBCE(event_weight=w, packing="user")
        packed.bind(model, "click")
        want = (cand.sum() + w * ev.sum()) / (cand.numel() + w * ev.numel())
        torch.testing.assert_close(packed(model, batch).value, want)
    torch.testing.assert_close(
        EveryEventBCE(packing="user")(model, batch).value, torch.cat([cand, ev]).mean()
    )
    torch.testing.assert_close(EveryEventBCE()(model, batch).value, cand.mean() + ev.mean())
    with pytest.raises(ValueError, match="packing"):
        EveryEventBCE(packing="segments")


@pytest.mark.usefixtures("hydra_ctx")
def test_packed_experiment_trains_in_process(tmp_path):
    from recsys_lab.runners.train import run

    cfg = compose_train(tmp_path, "experiment=grab_packed", "debug=fast_dev_run")
    assert cfg.data.packing == "user" and cfg.task.objective.packing == "user"
    metrics = run(cfg)
    assert metrics["model"] == "GRAB" and 0.0 <= metrics["test/auc"] <= 1.0


@pytest.mark.usefixtures("hydra_ctx")
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=din"], "DIN with objective BCE scores candidates only"),
        (["model=hstu"], "HSTU with objective BCE scores candidates only"),
        (["model=dnn"], "DNN with objective BCE scores candidates only"),
        (["model=grab"], "GRAB with objective BCE scores candidates only"),  # task=ctr
        (["model=grab", "task=grab", "model.sts=two_stage"], "STS's sparse steps"),
        (["model=grab", "task=grab", "model.max_history=4"], "model.max_history=4"),
    ],
)
def test_packing_user_refuses_models_that_score_only_candidates(tmp_path, overrides, message):
    from recsys_lab.runners.train import build

    cfg = compose_train(tmp_path, "data=synthetic_seq", "data.packing=user", "debug=fast_dev_run", *overrides)
    with pytest.raises(ValueError, match=message):
        build(cfg)
