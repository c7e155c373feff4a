"""`make smoke`: every experiment config (and every model) for one batch under fast_dev_run.

Runs in one process (Lightning is imported once) and prints a pass/fail table; exits non-zero if
any config fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from rich.console import Console
from rich.table import Table

from recsys_lab.runners.train import CONFIG_DIR, run

# Models that need data the default (data=synthetic: clicks only, no histories) lacks.
NEEDS = {
    "model=lum": ["data=synthetic_seq"],  # behaviour histories
    **{
        f"model={m}": ["data=synthetic_seq"] for m in ("esmm", "mmoe", "ple", "shared_bottom")
    },  # click + conversion
}


def main() -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    conf = Path(CONFIG_DIR)
    cases = [f"experiment={p.stem}" for p in sorted((conf / "experiment").glob("*.yaml"))]
    cases += [f"model={p.stem}" for p in sorted((conf / "model").glob("*.yaml"))]
    table = Table(title="smoke: fast_dev_run of every experiment and model")
    for col in ("config", "result", "seconds"):
        table.add_column(col)
    failures = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"),
    ):
        for case in cases:
            start = time.perf_counter()
            try:
                overrides = [case, *NEEDS.get(case, []), "debug=fast_dev_run", "print_table=false"]
                cfg = compose("train", overrides=overrides)
                with open_dict(cfg):
                    cfg.paths.output_dir = str(Path(tmp) / case.replace("=", "_"))
                run(cfg)
                result = "[green]ok"
            except Exception:  # report every failure, then fail the command
                failures += 1
                result = "[red]FAILED"
                traceback.print_exc()
            table.add_row(case, result, f"{time.perf_counter() - start:.1f}")
    Console().print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
