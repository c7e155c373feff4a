"""OCARM teacher (hierarchical content encoder) and student (observable only, refuses privileged data)."""

import functools

import pytest
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.pooling import AttentionPooling, group_positions
from recsys_lab.models.ocarm_student import OCARMStudent, PrivilegedDataError
from recsys_lab.models.ocarm_teacher import OCARMTeacher
from recsys_lab.scaling.counting import measured_flops_per_example

EMB = functools.partial(FullEmbedding, dim=8, sparse_grad=False)


@pytest.fixture(scope="module")
def world():
    dm = SyntheticSeqDataModule(
        preset="tiny", rows="conversions", label="retention", privileged=True, max_history=16, batch_size=64
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.privileged is not None and batch.privileged["onboarding"].num_events > 0
    return dm, batch


def _with_onboarding(batch: Batch, ob: Jagged) -> Batch:
    return Batch(**{**batch.__dict__, "privileged": {"onboarding": ob}})


def test_group_positions() -> None:
    keys = torch.tensor([3, 3, 3, 5, 7, 7])
    assert group_positions(keys).tolist() == [0, 1, 2, 0, 0, 1]


def test_attention_pooling_masks_and_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(4, hidden=8)
    x, mask = torch.randn(2, 5, 4), torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = pool(x, mask)
    perm = torch.tensor([2, 0, 1, 3, 4])
    torch.testing.assert_close(pool(x[:, perm], mask[:, perm]), out)
    x2 = x.clone()
    x2[0, 3:] = 100.0  # masked items do not matter
    torch.testing.assert_close(pool(x2, mask), out)
    torch.testing.assert_close(out[1], torch.zeros(4))  # nothing to pool -> zeros


def test_teacher_reads_content_hierarchically(world) -> None:
    dm, batch = world
    torch.manual_seed(0)
    teacher = OCARMTeacher(dm.schema, EMB, hidden_units=[16]).eval()
    ob = batch.privileged["onboarding"]
    with_content = teacher(batch)
    served = teacher(batch.for_serving())  # the naive model: no content at serving time
    assert not torch.allclose(with_content, served)
    # Reordering items within a sample (same sessions) changes nothing: pooling is a set operation
    # and the items are grouped by session before pooling.
    perm = torch.cat(
        [torch.arange(int(a), int(b)).flip(0) for a, b in zip(ob.offsets[:-1], ob.offsets[1:], strict=True)]
    )
    flipped = Jagged(ob.values[perm], ob.actions[perm], ob.timestamps[perm], ob.offsets)
    torch.testing.assert_close(teacher(_with_onboarding(batch, flipped)), with_content)
    # Moving every item to session 1 changes the encoding (sessions carry order and grouping).
    values = ob.values.clone()
    values[:, 2] = 1
    moved = Jagged(values, ob.actions, ob.timestamps, ob.offsets)
    has_many = (ob.values[:, 2] > 1).any()
    assert has_many
    assert not torch.allclose(teacher(_with_onboarding(batch, moved)), with_content)
    rep, logits = teacher.forward_rep(batch)
    assert rep.shape == (len(batch), 16) and logits.shape == (len(batch),)


def test_teacher_gradients_reach_content_tables(world) -> None:
    dm, batch = world
    teacher = OCARMTeacher(dm.schema, EMB, hidden_units=[16])
    torch.nn.functional.binary_cross_entropy_with_logits(teacher(batch), batch.labels["retention"]).backward()
    for name in ("content", "theme", "session_order", "session_time"):
        assert getattr(teacher, name).weight.grad.abs().sum() > 0, name


def test_teacher_rejects_ids_beyond_its_tables(world) -> None:
    dm, batch = world
    teacher = OCARMTeacher(dm.schema, EMB, content_vocab=2)
    with pytest.raises(ValueError, match="content_vocab"):
        teacher(batch)


def test_student_never_takes_privileged_data(world) -> None:
    dm, batch = world
    torch.manual_seed(0)
    student = OCARMStudent(dm.schema, EMB, hidden_units=[16], teacher_dim=12).eval()
    with pytest.raises(PrivilegedDataError):
        student(batch)
    serving = batch.for_serving()
    rep, logits = student.forward_rep(serving)
    assert rep.shape == (len(batch), 16) and student.project(rep).shape == (len(batch), 12)
    torch.testing.assert_close(student(serving), logits)
    assert student.flops_per_example() > 0


def test_flops_match_flop_counter(schema, embedding, batch, flops_of) -> None:
    student = OCARMStudent(schema, embedding, hidden_units=[16, 8]).eval()
    assert student.flops_per_example() == flops_of(student, batch)


def test_teacher_flops_match_flop_counter(world) -> None:
    dm, batch = world
    teacher = OCARMTeacher(dm.schema, EMB, hidden_units=[16, 8]).eval()
    # Without content (evaluation, serving): observable side, fusion and head.
    served = batch.for_serving()
    assert measured_flops_per_example(teacher, served) == teacher.flops_per_example()
    # With content padded to [max_sessions, I] items, I = the most items of one session.
    ob = batch.privileged["onboarding"]
    key = ob.segment_ids() * teacher.max_sessions + ob.values[:, 2].clamp(min=1) - 1
    items = int(torch.bincount(key).max())
    assert measured_flops_per_example(teacher, batch) == teacher.flops_per_example(items_per_session=items)


def test_configs(config_matches) -> None:
    config_matches(OCARMStudent, "ocarm_student")
    config_matches(OCARMTeacher, "ocarm_teacher")
