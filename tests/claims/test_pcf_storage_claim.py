"""PCF-GNN's storage claim has a crossover (issue 13 item 1): the GNN's stored values are fixed by
the vocabulary while the exact pair table grows with the distinct pairs the training rows reveal,
so on the same world the table is smaller than the GNN on few rows and larger on many. Counted
exactly (no training) by ``scripts/claims_pcf_storage.py``'s :func:`count` on ``data=synthetic``."""

from __future__ import annotations

import pytest

from scripts.claims_pcf_storage import PAIRS, count, crossing


@pytest.mark.claim
def test_exact_table_outgrows_the_gnn_with_rows() -> None:
    every_pair = PAIRS.index(66)
    # Measured while writing this test (seed 0, max vocab 5,000, all 66 pairs): table 40,119 vs
    # GNN 264,417 values at 2,000 rows; 509,780 vs 264,417 at 100,000 rows.
    few, many = (count(n, 5_000, seed=0)["points"][every_pair] for n in (2_000, 100_000))
    assert few["gnn_values"] == many["gnn_values"], (few, many)  # independent of the rows
    assert few["table_values"] < few["gnn_values"], few
    assert many["table_values"] > many["gnn_values"], many
    c = crossing([2_000, 100_000], [few["table_values"], many["table_values"]], [few["gnn_values"]] * 2)
    assert c is not None and 2_000 < c < 100_000, c
