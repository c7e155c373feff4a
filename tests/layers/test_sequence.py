"""Event tokens and packing: field matching, the packed layout, candidate timestamps, shared tables.

Also holds the small sequence schema and batches the sequence-model tests use."""

from __future__ import annotations

import functools

import pytest
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.sequence import (
    CANDIDATE,
    HISTORY,
    SINK,
    EventEmbedding,
    EventTokenizer,
    candidate_timestamps,
    event_labels,
    event_schema,
    pack,
)

ACTIONS = ("exposure", "click", "conversion")
NUM_ADS, NUM_CATS = 30, 6


def make_seq_schema() -> Schema:
    """user (role user), ad, category (role item), position; one numeric; events hist_ad, hist_category."""
    return Schema(
        features=(
            Feature("user", "categorical", 20, "user"),
            Feature("ad", "categorical", NUM_ADS, "item"),
            Feature("category", "categorical", NUM_CATS, "item"),
            Feature("position", "categorical", 5, "context"),
            Feature("age", "numeric"),
            Feature("hist_ad", "sequence", NUM_ADS),
            Feature("hist_category", "sequence", NUM_CATS),
        ),
        action_names=ACTIONS,
    )


def seq_embedding(dim: int = 8) -> functools.partial:
    return functools.partial(FullEmbedding, dim=dim, sparse_grad=False)


def make_seq_batch(size: int, seed: int, min_len: int = 0, max_len: int = 8) -> Batch:
    """Random samples with random histories (lengths in ``[min_len, max_len]``, exposure bit always
    set, click with p=0.5, conversion after a click with p=0.3), increasing timestamps, the sample's
    own time in ``extras["timestamp"]`` and a label that is 1 when the candidate's category equals
    the category of a *clicked* history event."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (size,), generator=g)
    offsets = torch.zeros(size + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lengths, 0)
    n = int(offsets[-1])
    ad = torch.randint(1, NUM_ADS, (n,), generator=g)
    values = torch.stack([ad, ad % (NUM_CATS - 1) + 1], dim=1)  # an ad's category is fixed
    click = torch.randint(0, 2, (n,), generator=g)
    conv = click * (torch.rand(n, generator=g) < 0.3).long()
    actions = 1 | (click << 1) | (conv << 2)
    timestamps = torch.cumsum(torch.randint(1, 5000, (n,), generator=g), 0)
    history = Jagged(values, actions, timestamps, offsets)
    cand_ad = torch.randint(1, NUM_ADS, (size,), generator=g)
    cand_cat = cand_ad % (NUM_CATS - 1) + 1
    sparse = torch.stack(
        [
            torch.randint(1, 20, (size,), generator=g),
            cand_ad,
            cand_cat,
            torch.randint(1, 5, (size,), generator=g),
        ],
        dim=1,
    )
    last = timestamps[(offsets[1:] - 1).clamp(min=0)] if n else torch.zeros(size, dtype=torch.long)
    ts = torch.where(lengths > 0, last, torch.zeros_like(last)) + torch.randint(1, 1000, (size,), generator=g)
    seg = history.segment_ids()
    hit = torch.zeros(size)
    if n:
        match = ((values[:, 1] == cand_cat[seg]) & (click == 1)).float()
        hit = torch.zeros(size).index_add(0, seg, match)
    label = (hit > 0).float()
    return Batch(
        dense=torch.randn(size, 1, generator=g),
        sparse=sparse,
        labels={"click": label},
        user=sparse[:, 0],
        history=history,
        extras={"timestamp": ts},
    )


def test_event_fields_match_candidate_columns():
    sch, cols = event_schema(make_seq_schema())
    assert [f.name for f in sch.categorical] == ["hist_ad", "hist_category"]
    assert sch.vocab_sizes == [NUM_ADS, NUM_CATS]
    assert cols == [1, 2]  # ad, category columns of Batch.sparse
    lone = Schema(
        features=(Feature("u", "categorical", 5), Feature("hist_movie", "sequence", 9)),
        action_names=("click",),
    )
    assert event_schema(lone)[1] == [None]


def test_pack_layout_by_hand():
    # Three samples with 2, 0 and 3 events; keep at most 2 per sample.
    history = Jagged(
        values=torch.arange(10).reshape(5, 2),
        actions=torch.tensor([1, 3, 1, 3, 7]),
        timestamps=torch.tensor([10, 20, 5, 6, 7]),
        offsets=torch.tensor([0, 2, 2, 5]),
    )
    cand_ts = torch.tensor([30, 40, 50])
    p = pack(history, cand_ts, sink=True, max_history=2)
    assert p.offsets.tolist() == [0, 4, 6, 10]
    assert p.kind.tolist() == [
        SINK,
        HISTORY,
        HISTORY,
        CANDIDATE,
        SINK,
        CANDIDATE,
        SINK,
        HISTORY,
        HISTORY,
        CANDIDATE,
    ]
    assert p.source.tolist() == [-1, 0, 1, -1, -1, -1, -1, 3, 4, -1]  # the latest two of sample 2
    assert p.timestamps.tolist() == [10, 10, 20, 30, 40, 40, 6, 6, 7, 50]
    assert p.actions.tolist() == [0, 1, 3, 0, 0, 0, 0, 3, 7, 0]
    assert p.position.tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 2, 3]
    assert p.num_candidates.tolist() == [1, 1, 1]
    assert p.candidate_rows().tolist() == [3, 5, 9]
    q = pack(history, cand_ts, sink=False)
    assert q.offsets.tolist() == [0, 3, 4, 8]
    assert q.kind.tolist() == [HISTORY, HISTORY, CANDIDATE, CANDIDATE, HISTORY, HISTORY, HISTORY, CANDIDATE]


def test_candidate_timestamp_from_extras_or_after_last_event():
    b = make_seq_batch(6, seed=0, min_len=0, max_len=3)
    assert torch.equal(candidate_timestamps(b), b.extras["timestamp"])
    b.extras = {}
    h = b.history
    expected = [int(h.timestamps[e - 1]) + 1 if e > s else 0 for s, e in zip(h.offsets[:-1], h.offsets[1:])]
    assert candidate_timestamps(b).tolist() == expected


def test_history_and_candidates_share_tables():
    schema = make_seq_schema()
    events = EventEmbedding(schema, seq_embedding())
    sparse = torch.tensor([[3, 7, 2, 1], [0, 99, 2, 4]])  # ad 99 is outside the vocabulary -> 0
    cand = events.candidates(sparse)  # [2, E, D]
    hist = events.history(torch.tensor([[7, 2], [0, 2]]))
    assert torch.equal(cand, hist)


def test_tokenizer_candidate_content_excludes_its_label_and_sink_carries_profile():
    torch.manual_seed(0)
    schema = make_seq_schema()
    tok = EventTokenizer(schema, seq_embedding(), 16, False, True, None, 8, 16)
    b = make_seq_batch(4, seed=1, min_len=1, max_len=3)
    p = tok.pack(b)
    x = tok(b, p)
    assert x.shape == (p.num_tokens, 16)
    # Changing a sample's label changes no token (labels never enter the tokens).
    b2 = make_seq_batch(4, seed=1, min_len=1, max_len=3)
    b2.labels["click"] = 1 - b2.labels["click"]
    assert torch.equal(tok(b2, tok.pack(b2)), x)
    # The user id enters the sink of its own segment only.
    b2.sparse[0, 0] = (b2.sparse[0, 0] % 19) + 1
    y = tok(b2, tok.pack(b2))
    changed = (y - x).abs().sum(1) > 0
    assert changed[p.offsets[0]] and not changed[p.offsets[1] :].any()
    codes = tok.action_codes(p)
    assert (codes[p.kind == CANDIDATE] == 8).all() and (codes[p.kind == SINK] == 9).all()


def test_event_labels_pick_the_action_bit():
    schema = make_seq_schema()
    assert event_labels(torch.tensor([1, 3, 7, 5]), schema, "click").tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="not an action"):
        event_labels(torch.tensor([1]), schema, "retention")


def test_bad_tokenizer_settings_raise():
    with pytest.raises(ValueError, match="max_history"):
        EventTokenizer(make_seq_schema(), seq_embedding(), 16, False, True, -1, 8, 16)
    with pytest.raises(ValueError, match="width"):
        EventTokenizer(make_seq_schema(), seq_embedding(), 0, False, True, None, 8, 16)


def test_positions_beyond_the_table_are_named(caplog):
    """max_history 8 + candidate + sink = 10 tokens: a 10-row table is quiet, an 8-row one warns."""
    with caplog.at_level("WARNING", logger="recsys_lab.layers.sequence"):
        EventTokenizer(make_seq_schema(), seq_embedding(), 16, False, True, 8, 10, 16)
        assert not caplog.records
        EventTokenizer(make_seq_schema(), seq_embedding(), 16, False, True, 8, 8, 16)
    assert len(caplog.records) == 1
    assert "model.num_positions=8" in caplog.text and "model.num_positions=10" in caplog.text
