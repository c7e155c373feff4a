import pytest
import torch

from recsys_lab.data.batch import Batch, Jagged


def make_jagged() -> Jagged:
    # Sample 0: 2 events, sample 1: none, sample 2: 3 events.
    values = torch.arange(10).view(5, 2)
    return Jagged(
        values, torch.tensor([1, 2, 1, 3, 1]), torch.tensor([10, 11, 20, 21, 22]), torch.tensor([0, 2, 2, 5])
    )


def make_batch() -> Batch:
    return Batch(
        dense=torch.randn(3, 2),
        sparse=torch.tensor([[1, 2], [3, 4], [5, 6]]),
        labels={"click": torch.tensor([0.0, 1.0, 0.0])},
        user=torch.tensor([7, 8, 9]),
        history=make_jagged(),
        privileged={"onboarding": torch.ones(3, 4)},
        teacher={"fm": torch.tensor([0.1, 0.2, 0.3])},
    )


def test_jagged_lengths_and_segments():
    j = make_jagged()
    assert j.lengths().tolist() == [2, 0, 3]
    assert j.segment_ids().tolist() == [0, 0, 2, 2, 2]
    j.validate()


def test_to_padded_right_pads_and_keeps_most_recent():
    j = make_jagged()
    values, actions, ts, mask = j.to_padded()
    assert values.shape == (3, 3, 2)
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert ts.tolist() == [[10, 11, 0], [0, 0, 0], [20, 21, 22]]
    values, actions, ts, mask = j.to_padded(max_len=2)
    assert ts.tolist() == [[10, 11], [0, 0], [21, 22]]  # the two most recent events of sample 2
    assert actions.tolist() == [[1, 2], [0, 0], [3, 1]]


def test_padded_roundtrip_and_truncate():
    j = make_jagged()
    back = Jagged.from_padded(*j.to_padded())
    for a, b in zip(back._tensors(), j._tensors(), strict=True):
        assert torch.equal(a, b)
    t = j.truncate(1)
    assert t.lengths().tolist() == [1, 0, 1]
    assert t.timestamps.tolist() == [11, 22]


def test_select_reorders_samples():
    j = make_jagged().select(torch.tensor([2, 0]))
    assert j.offsets.tolist() == [0, 3, 5]
    assert j.timestamps.tolist() == [20, 21, 22, 10, 11]


def test_jagged_rejects_bad_offsets():
    j = Jagged(
        torch.zeros(3, 1, dtype=torch.long),
        torch.zeros(3, dtype=torch.long),
        torch.zeros(3, dtype=torch.long),
        torch.tensor([0, 2]),
    )
    with pytest.raises(ValueError, match="end at N=3"):
        j.validate()
    with pytest.raises(ValueError, match=r"\[N\]"):
        Jagged(
            torch.zeros(3, 1, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(3, dtype=torch.long),
            torch.tensor([0, 3]),
        )


def test_batch_select_and_serving_view():
    b = make_batch()
    s = b.select(torch.tensor([2, 0]))
    assert s.sparse.tolist() == [[5, 6], [1, 2]]
    assert s.user.tolist() == [9, 7]
    assert s.history.lengths().tolist() == [3, 2]
    assert s.teacher["fm"].tolist() == pytest.approx([0.3, 0.1])
    serving = b.for_serving()
    assert serving.privileged is None and serving.teacher is None
    assert b.privileged is not None  # the original is untouched


def test_batch_to_moves_everything():
    b = make_batch().to("cpu")
    assert b.history.values.device.type == "cpu" and len(b) == 3


def test_batch_validates_shapes():
    with pytest.raises(ValueError, match="click"):
        Batch(dense=torch.zeros(2, 1), sparse=torch.zeros(2, 1, dtype=torch.long), labels={})
    with pytest.raises(ValueError, match=r"labels\['click'\]"):
        Batch(
            dense=torch.zeros(2, 1),
            sparse=torch.zeros(2, 1, dtype=torch.long),
            labels={"click": torch.zeros(3)},
        )
    with pytest.raises(ValueError, match="rows"):
        Batch(
            dense=torch.zeros(3, 1),
            sparse=torch.zeros(2, 1, dtype=torch.long),
            labels={"click": torch.zeros(2)},
        )
