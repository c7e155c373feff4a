"""The table that ends a Hydra multirun: one row per job, its overrides and headline metrics.

:class:`MultirunSummary` is a Hydra callback (registered in ``conf/hydra/default.yaml``). When the
sweep ends, the parent process reads each job folder of the sweep directory — its overrides from
``.hydra/overrides.yaml`` and its ``metrics.json`` — and writes ``multirun_summary.md`` and
``multirun_summary.csv`` there, and prints the Markdown table. Overrides shared by every job are
listed once above the table; the columns are the overrides that vary. A job without
``metrics.json`` (it failed, or is still running under another launcher) gets a row saying so.

Kept free of torch and Lightning imports: Hydra loads it at every start.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

HEADLINE = (
    "val/auc",
    "test/auc",
    "test/logloss",
    "test/gauc",
    "test/ne",
    "test/calibration",
    "test/oracle_auc",
    "params/dense",
    "train/samples_per_s",
)
STATUS = "status"


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders (those with Hydra's ``.hydra/overrides.yaml`` or a ``metrics.json``), in job order."""
    found = {p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.glob("*/metrics.json")}

    def order(p: Path) -> tuple[int, int | str]:
        return (0, int(p.name)) if p.name.isdigit() else (1, p.name)

    return sorted(found, key=order)


def _overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:  # type: ignore[union-attr]
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def summarize(
    sweep_dir: Path, metrics: Sequence[str] = HEADLINE
) -> tuple[list[str], list[dict[str, str]], dict[str, str]]:
    """``(columns, rows, common overrides)`` of the jobs under ``sweep_dir``."""
    jobs = _job_dirs(sweep_dir)
    overrides = [_overrides(j) for j in jobs]
    keys: list[str] = []
    for o in overrides:
        keys += [k for k in o if k not in keys]
    common = {
        k: overrides[0][k]
        for k in keys
        if len(jobs) > 1 and all(k in o and o[k] == overrides[0][k] for o in overrides)
    }
    varying = [k for k in keys if k not in common]
    results: list[dict[str, Any] | None] = []
    for job in jobs:
        path = job / "metrics.json"
        try:
            results.append(json.loads(path.read_text()) if path.is_file() else None)
        except ValueError:
            results.append(None)
    shown = [m for m in metrics if any(r is not None and m in r for r in results)]
    columns = ["job", *varying, *shown, STATUS]
    rows = []
    for job, o, r in zip(jobs, overrides, results):
        row = {"job": job.name, **{k: o.get(k, "") for k in varying}}
        row.update({m: _fmt(r.get(m)) if r is not None else "" for m in shown})
        row[STATUS] = "ok" if r is not None else "no metrics.json (failed or unfinished)"
        rows.append(row)
    return columns, rows, common


def markdown(columns: list[str], rows: list[dict[str, str]], common: dict[str, str], title: str) -> str:
    lines = [f"# {title}", ""]
    if common:
        lines += ["Every job: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(r.get(c, "").replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, metrics: Sequence[str] = HEADLINE, name: str = "multirun_summary") -> str:
    """Write ``<name>.md`` and ``<name>.csv`` into ``sweep_dir``; return the Markdown."""
    columns, rows, common = summarize(sweep_dir, metrics)
    text = markdown(columns, rows, common, f"Multirun {sweep_dir} ({len(rows)} jobs)")
    (sweep_dir / f"{name}.md").write_text(text)
    with open(sweep_dir / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return text


class MultirunSummary(Callback):
    """Hydra callback: at the end of a multirun, write and print the sweep's summary table.

    Args:
        metrics: ``metrics.json`` keys to show (those no job has are left out).
        name: file stem of the ``.md`` and ``.csv`` written into the sweep directory.
    """

    def __init__(self, metrics: Sequence[str] = HEADLINE, name: str = "multirun_summary") -> None:
        self.metrics = tuple(metrics)
        self.name = name

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning(
                "multirun summary: the sweep directory %s does not exist; nothing to summarise", sweep_dir
            )
            return
        try:
            text = write_summary(sweep_dir, self.metrics, self.name)
        except Exception as err:  # a summary must never turn a finished sweep into a failure
            log.warning("multirun summary of %s failed: %s", sweep_dir, err)
            return
        print(text)
        log.info("multirun summary written to %s/%s.{md,csv}", sweep_dir, self.name)
