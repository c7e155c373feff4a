"""``recsys-predict`` / ``python -m recsys_lab.predict``: click probabilities for raw rows.

The input file is in the training data's raw format, with or without the label column(s):

- Criteo TSV or CSV, Avazu CSV;
- ``data=tabular`` files (CSV, TSV, parquet) with their categorical, numeric, multi-valued and
  history columns (:class:`~recsys_lab.data.preprocess.encode.TabularEncoder`);
- MovieLens ratings in the training run's layout — ml-100k ``u.data``, ml-1m ``ratings.dat``,
  RecBole ``.inter`` — or just ``user, movie, timestamp``
  (:class:`~recsys_lab.data.preprocess.encode.MovieLensEncoder`). Each row's history is its user's
  ratings in the TRAINING data strictly before the row's timestamp (training's rule), the latest
  ``max_history``; the input's own rows never enter a history.

It is read in blocks of ``block_bytes`` by the training readers, each block's good rows encoded
with the run's vocabularies and transforms (:mod:`recsys_lab.data.preprocess.encode`) and scored
in batches, and the block appended to the Parquet output — memory stays at about one block
whatever the file size (plus, for MovieLens, the training run's user and movie tables and an index
of its events).

The output has one row per input line (the header excluded), in input order:

==========  =======  ===================================================================
column      type     meaning
==========  =======  ===================================================================
``line``    int64    the physical line number in the input (1-based; a header is line 1; the
                     row number of a parquet input)
``id``      string   the row's id, for inputs that have one (Avazu's ``id``)
``score``   float32  the click probability; null when the row is malformed
``error``   string   why the row was not scored (``reason: detail``); null otherwise
==========  =======  ===================================================================

Malformed rows are counted and quoted as in training (the log, and ``<output>.report.json``), and
above ``max_bad_fraction`` the command fails — after writing every row.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig

from recsys_lab.data.cached import TabularDataModule
from recsys_lab.data.movielens import MovieLensDataModule
from recsys_lab.data.preprocess.encode import (
    EncodedBlock,
    MovieLensEncoder,
    RowErrors,
    TabularEncoder,
    encode_blocks,
)
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.models.base import CTRModel
from recsys_lab.runners import stage
from recsys_lab.runners.common import load_trained
from recsys_lab.runners.stage import CONFIG_DIR, write_json_atomic

log = logging.getLogger(__name__)

ID_COLUMN = "id"


@torch.inference_mode()
def score(model: CTRModel, block: EncodedBlock, batch_size: int) -> np.ndarray:
    """float32 ``[N]`` click probabilities of a block's encoded rows."""
    n = len(block.rows)
    out = np.empty(n, dtype=np.float32)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        out[lo:hi] = torch.sigmoid(model(block.rows.batch(lo, hi).for_serving())).numpy()
    return out


def block_table(block: EncodedBlock, scores: np.ndarray, with_id: bool) -> pa.Table:
    """One output row per line of the block, in line order (see the module docstring)."""
    n = block.num_lines
    pos = block.lines - block.first_line  # [N] each good row's offset in the block
    value = np.zeros(n, dtype=np.float32)
    value[pos] = scores
    scored = np.zeros(n, dtype=bool)
    scored[pos] = True
    errors: list[str | None] = [None] * n
    for line, reason in block.errors.items():
        errors[line - block.first_line] = reason
    for i in np.flatnonzero(~scored):  # never drop a line silently
        if errors[i] is None:
            errors[i] = "skipped: not a valid row"
    columns: dict[str, Any] = {
        "line": pa.array(np.arange(block.first_line, block.first_line + n, dtype=np.int64)),
    }
    if with_id:
        ids: list[str | None] = [None] * n
        for p, v in zip(pos.tolist(), block.ids or []):
            ids[p] = v
        columns[ID_COLUMN] = pa.array(ids, type=pa.string())
    columns["score"] = pa.array(value, mask=~scored)
    columns["error"] = pa.array(errors, type=pa.string())
    return pa.table(columns)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.input`` with ``cfg.ckpt_path`` into ``cfg.output``; return a summary."""
    stage.set_threads(cfg)
    started = time.perf_counter()
    run = load_trained(cfg.ckpt_path)
    data = run.data
    if not isinstance(data, TabularDataModule | MovieLensDataModule):
        raise DataError(
            f"recsys-predict reads raw rows in a training data's format (Criteo, Avazu, data=tabular files, MovieLens "
            f"ratings); {run.ckpt_path} was trained on {data.name} data. Use recsys-eval for its splits, or "
            "recsys-export to serve the model on encoded inputs."
        )
    path = Path(str(cfg.input)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input={cfg.input} is not a file; give a {data.name} file of rows to score.")
    output = Path(str(cfg.output)).expanduser()
    if output.suffix != ".parquet":
        raise ValueError(f"output={cfg.output} must end in .parquet (the output is a Parquet table).")
    output.parent.mkdir(parents=True, exist_ok=True)
    report = RowErrors(data.name)
    block_bytes = int(cfg.block_bytes)
    blocks: Iterator[EncodedBlock]
    if isinstance(data, MovieLensDataModule):
        movielens = MovieLensEncoder(data)
        layout = movielens.layout(path)
        with_id = False
        blocks = movielens.blocks(path, report, block_bytes)
    else:
        source = data.serving_source(path)
        layout = source.layout
        with_id = ID_COLUMN in layout.columns
        encoder = TabularEncoder(data.spec(), data.cache_path, data.history_limit())  # type: ignore[arg-type]
        blocks = encode_blocks(
            encoder, source, report, block_bytes=block_bytes, id_column=ID_COLUMN if with_id else None
        )
    tmp = output.with_name(f".{output.name}.tmp")
    rows = scored = 0
    writer: pq.ParquetWriter | None = None
    try:
        for block in blocks:
            table = block_table(block, score(run.model, block, int(cfg.batch_size)), with_id)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += block.num_lines
            scored += len(block.rows)
        if writer is None:  # no data lines at all
            raise DataError(
                f"input={path} has no rows to score{' after its header' if layout.header else ''}."
            )
        writer.close()
        writer = None
        os.replace(tmp, output)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    summary = {
        "ckpt_path": str(run.ckpt_path),
        "input": str(path),
        "output": str(output),
        "layout": layout.name,
        "rows": rows,
        "scored": scored,
        "bad_rows": report.to_dict(),
        "seconds": seconds,
        "rows_per_s": rows / max(seconds, 1e-9),
    }
    write_json_atomic(output.with_name(output.stem + ".report.json"), summary)
    report.log()
    log.info("scored %d of %d rows of %s into %s in %.1f s", scored, rows, path, output, seconds)
    print(f"{scored} of {rows} rows scored -> {output} ({report.bad_rows} malformed, see the error column)")
    max_bad = cfg.get("max_bad_fraction")
    report.check(float(data.max_bad_fraction if max_bad is None else max_bad))
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    stage.route_framework_logs()
    predict(cfg)
