"""Small helpers shared by the entry points: atomic writes and the metrics table."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_metrics_table(metrics: dict[str, Any], title: str = "") -> None:
    """Print validation/test metrics beside the oracle's, with a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("metric")
    for col in ("val", "test", "oracle val", "oracle test"):
        table.add_column(col, justify="right")
    for name in ("auc", "logloss", "gauc", "ne", "calibration"):
        row = [metrics.get(f"val/{name}"), metrics.get(f"test/{name}")]
        row += [metrics.get(f"val/oracle_{name}"), metrics.get(f"test/oracle_{name}")]
        if all(v is None for v in row):
            continue
        table.add_row(name, *(_fmt(v) for v in row))
    Console().print(table)
    extra = {
        k: metrics[k]
        for k in ("params/embedding", "params/dense", "flops/per_example", "train/samples_per_s")
        if k in metrics
    }
    Console().print("  ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in extra.items()))
