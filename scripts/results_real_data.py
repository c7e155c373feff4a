"""MovieLens results: run the models with ``data=movielens``'s defaults, then write docs/results/real_data.md.

Two steps (each can be run alone; ``run`` skips every finished run, so an interrupted ``run``
continues where it stopped):

    # 1. train (recsys_lab.runners.train.run in this process, one thread), one folder per run
    python scripts/results_real_data.py run --data-path /tmp/ml-100k --out runs/results_real_data
    # 2. read the runs and write the page
    python scripts/results_real_data.py report --out runs/results_real_data --sweep runs/optuna_movielens/optuna

Groups of runs (``--groups``):

- ``tabular``: every tabular model of :data:`TABULAR` on each split of ``--splits`` (``random``:
  8:1:1 by rating; ``time``: per-user leave-last-out), ``--seeds``;
- ``baseline``: DCNv2 with the recipe switched off (``~recipe``: the generic defaults), to show
  what the recipe changes;
- ``sequence``: DCNv2 (no history) against the sequence models of :data:`SEQUENCE` at
  ``--history`` events, on each split of ``--seq-splits``, ``--seq-seeds``;
- ``history``: the models of ``--history-models`` against ``data.max_history`` in ``--histories``
  (split ``--seq-splits``' first, ``--history-seeds``), at a fixed budget (``--extra trainer.max_epochs=2``);
- ``converged``: the same sweep trained to the recipe's early stopping (no ``trainer.max_epochs`` in
  ``--extra``); ``DCNv2`` in ``--history-models`` is its no-history baseline. The page adds each
  run's best epoch, whether it stopped early, and learning curves (``report --figures``: a PNG).

Every run uses the defaults of ``data=movielens`` (conf/recipe/movielens.yaml) plus only the
overrides shown on the page. A run folder ``<out>/<group>/<split>__<variant>__h<history>__s<seed>/``
holds ``metrics.json``, ``csv/metrics.csv`` (per-epoch metrics, ``--logger csv``), ``predictions.npz`` (the best checkpoint's test probabilities and labels,
for the bootstrap) and ``run.json`` (overrides, wall time); ``run.json`` is written last and marks
the run finished. Intervals on the page resample both the test rows (paired across models:
the same resamples for every run, :func:`recsys_lab.metrics.bootstrap`) and the seeds.

MovieLens may not be redistributed: run folders hold predictions on its rows, so keep ``--out``
out of the repository (runs/ is ignored by git).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# variant -> Hydra overrides (on top of data=movielens and its recipe)
TABULAR: dict[str, list[str]] = {
    "DNN": ["model=dnn"],
    "DeepFM": ["model=deepfm"],
    "DCNv2": ["model=dcnv2"],
    "RankMixer": ["model=rankmixer"],
    "UniMixer": ["model=unimixer", "callbacks=mixer"],
    "UniMixer-Lite": ["model=unimixer_lite", "callbacks=mixer"],
    "FM block": ["model=fm_block"],
}
BASELINE: dict[str, list[str]] = {"DCNv2, generic defaults (~recipe)": ["model=dcnv2", "~recipe"]}
SEQUENCE: dict[str, list[str]] = {
    "DCNv2": ["model=dcnv2"],
    "DIN": ["model=din"],
    "HSTU": ["model=hstu", "model.kernel=padded"],
    # CamA: one head group per channel; MovieLens has 6 action types (click, rating_1..5): 7 channels.
    "GRAB": ["model=grab", "task=grab", "model.kernel=padded", "model.num_heads=7"],
}
NO_HISTORY = "DCNv2"
# GRAB on one packed sequence per user (data.packing=user, split=time only): each user's training
# ratings tiled into segments of at most max_history events + a candidate, every rating a training
# example once per epoch. data.batch_size then counts segments; it is set so that an epoch has as
# many steps as the per-sample recipe's (192 batches of 512 on ML-100K's time split), i.e. about
# 512 training events a step: ceil(segments / 192), with the segment counts of ML-100K's time split
# (measured: `MovieLensDataModule(packing="user").train_dataloader()` at batch_size=1; users' last
# segments and timestamp ties make segments shorter than K + 1). Other K: 512 // (K + 1).
PACKED = "GRAB-packed"
PACKED_STEPS = 192
PACKED_SEGMENTS = {8: 13710, 16: 7647, 32: 4590, 64: 3141, 128: 2484, 256: 2187}


def packed_overrides(history: int) -> list[str]:
    """The overrides of :data:`PACKED` at ``data.max_history=history``."""
    segments = PACKED_SEGMENTS.get(history)
    batch = math.ceil(segments / PACKED_STEPS) if segments else max(1, 512 // (history + 1))
    return [*SEQUENCE["GRAB"], "data.packing=user", f"data.batch_size={batch}"]


# The small tuning sweep on the time split (group ``tuning``): DCNv2 with each setting, picked by
# val AUC against the recipe's own DCNv2 run of the same seed. The settings are the random-split
# Optuna sweep's other best trials (docs/results/real_data.md, "Tuning recipe") and FuxiCTR's usual ones.
CANDIDATES: dict[str, list[str]] = {
    "sweep trial 1": ["data.batch_size=1024", "embedding.dim=32", "model.dropout=0.0909", "task.optimizer.lr=0.0028",
                      "task.sparse_optimizer.lr=0.00556", "task.sparse_optimizer.weight_decay=7.07e-05"],
    "FuxiCTR-like base": ["data.batch_size=1024", "embedding.dim=16", "model.dropout=0", "task.optimizer.lr=1e-3",
                          "task.sparse_optimizer.lr=1e-3", "task.sparse_optimizer.weight_decay=0"],
    "sweep trial 5": ["data.batch_size=256", "embedding.dim=16", "model.dropout=0.0226", "task.optimizer.lr=0.00251",
                      "task.sparse_optimizer.lr=0.000409", "task.sparse_optimizer.weight_decay=6.08e-05"],
    # The best trial of the leave-last-out split's own Optuna study (optuna_movielens_time, seed 42), 3 s.f.:
    # picked by that study, so the tuned group runs it with --pick.
    "time sweep trial 13": ["data.batch_size=256", "embedding.dim=8", "model.dropout=0.353", "task.optimizer.lr=0.000943",
                            "task.sparse_optimizer.lr=0.00479", "task.sparse_optimizer.weight_decay=0.00498"],
}  # fmt: skip
TIME_SWEEP = "time sweep"  # names of CANDIDATES picked by the time split's own Optuna study
RECIPE = "recipe (no override)"
TUNED_MODELS = ("DNN", "DeepFM", "DCNv2")
REFERENCE = "FuxiCTR 2.3.10 DCNv2 (quoted from issue 14, not run here)"
REFERENCE_AUC = "0.7863 ± 0.0017 (5 runs)"
REPLICATES = 1000
# Overrides every run has (not shown per row on the page).
COMMON = (
    "data=",
    "data.path=",
    "data.split=",
    "data.cache_dir=",
    "seed=",
    "num_threads=",
    "task_name=",
    "logger=",
    "print_table=",
)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_dir(out: Path, group: str, split: str, variant: str, history: int | None, seed: int) -> Path:
    h = "default" if history is None else str(history)
    return out / group / f"{split}__{slug(variant)}__h{h}__s{seed}"


def train_one(
    folder: Path,
    group: str,
    variant: str,
    overrides: list[str],
    split: str,
    history: int | None,
    seed: int,
    args: argparse.Namespace,
) -> None:
    """One run with the recipe's defaults plus ``overrides``; skipped when finished (here, or in
    another group with the very same overrides)."""
    every = [
        "data=movielens",
        f"data.path={args.data_path}",
        f"data.split={split}",
        *([f"data.max_history={history}"] if history is not None else []),
        *overrides,
        f"seed={seed}",
        f"num_threads={args.threads}",
        "task_name=results_real_data",
        f"logger={args.logger}",
        "print_table=false",
        *args.extra,
    ]
    if args.cache_dir:
        every.append(f"data.cache_dir={args.cache_dir}")
    if (folder / "run.json").is_file():
        print(f"skip {folder.relative_to(args.out)} (done)")
        return
    same = finished_runs(args.out).get(tuple(every))
    if same is not None:
        print(f"skip {folder.relative_to(args.out)} (done as {same.relative_to(args.out)})")
        return
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from recsys_lab.metrics import auc
    from recsys_lab.runners.stage import CONFIG_DIR, write_json_atomic
    from recsys_lab.runners.train import build, run

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*every, "callbacks.rich_progress_bar=null"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    t0 = time.time()
    metrics = run(cfg)
    wall = time.time() - t0
    # The tested (best) checkpoint's test predictions, in the test split's fixed row order.
    datamodule, _, task = build(cfg)
    best = metrics.get("best_checkpoint")
    best_epoch = None
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)
        task.load_state_dict(state["state_dict"])
        best_epoch = int(state["epoch"]) + 1  # Lightning counts from 0
    task.eval()
    probs, labels = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            probs.append(task(batch))
            labels.append(batch.labels["click"])
    p, y = torch.cat(probs), torch.cat(labels)
    check = auc(p, y)
    if abs(check - metrics["test/auc"]) > 1e-4:
        raise RuntimeError(
            f"{folder}: re-predicted test AUC {check:.5f} != the run's {metrics['test/auc']:.5f}"
        )
    np.savez_compressed(folder / "predictions.npz", probs=p.numpy(), labels=y.numpy())
    write_json_atomic(
        folder / "run.json",
        {
            "group": group,
            "variant": variant,
            "split": split,
            "history": history,
            "seed": seed,
            "overrides": every,
            "wall_s": wall,
            "test_rows": int(y.numel()),
            "best_epoch": best_epoch,
            "max_epochs": int(cfg.trainer.max_epochs),
            "curve": read_curve(folder),
            "dataset": dataset_name(Path(args.data_path)),
        },
    )
    print(f"{folder.relative_to(args.out)}: test/auc={metrics['test/auc']:.4f} wall={wall:.0f}s", flush=True)


def read_curve(folder: Path) -> list[dict[str, float]]:
    """Metrics per training epoch from the run's CSV log (``logger=csv``: ``<run>/csv/metrics.csv``):
    ``[{"epoch": 1, "val/logloss": ..., "val/auc": ..., "train/loss": ...}, ...]`` (1-based epochs, in
    order); empty without a CSV log. Only epochs that trained count, and their first validation row
    (the training loop's): the final re-validation of the best checkpoint comes after it and is skipped."""
    import csv

    path = folder / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    curve: dict[int, dict[str, float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            point = curve.setdefault(int(float(row["epoch"])) + 1, {})
            if row.get("val/logloss") and "val/logloss" not in point:
                point.update({"val/logloss": float(row["val/logloss"]), "val/auc": float(row["val/auc"])})
            if row.get("train/loss_epoch") and "train/loss" not in point:
                point["train/loss"] = float(row["train/loss_epoch"])
    return [{"epoch": e, **curve[e]} for e in sorted(curve) if {"val/logloss", "train/loss"} <= set(curve[e])]


def finished_runs(out: Path) -> dict[tuple[str, ...], Path]:
    """The overrides of every finished run under ``out`` -> its folder."""
    return {tuple(json.loads(m.read_text())["overrides"]): m.parent for m in sorted(out.glob("*/*/run.json"))}


def dataset_name(folder: Path) -> str:
    """MovieLens-100K or MovieLens-1M from the files in ``folder`` (GroupLens' or RecBole's layout)."""
    if (folder / "u.data").is_file() or (folder / "ml-100k.inter").is_file():
        return "MovieLens-100K"
    if (folder / "ratings.dat").is_file() or (folder / "ml-1m.inter").is_file():
        return "MovieLens-1M"
    inter = sorted(folder.glob("*.inter"))
    return f"MovieLens ({inter[0].stem})" if inter else f"MovieLens ({folder.name})"


def best_candidate(out: Path, seed: int, candidates: list[str] | None = None) -> tuple[str, list[str]] | None:
    """The tuning sweep's winner on the time split by val AUC (seed ``seed``) among ``candidates``
    (default: all of :data:`CANDIDATES`) and the recipe: (name, overrides), or None while one of
    them or the recipe's own DCNv2 run is unfinished."""
    runs = {r["variant"]: r for r in load_runs(out) if r["split"] == "time" and r["seed"] == seed}
    recipe = [r for r in load_runs(out) if r["group"] == "tabular" and r["split"] == "time"
              and r["variant"] == "DCNv2" and r["seed"] == seed]  # fmt: skip
    chosen = list(CANDIDATES) if candidates is None else candidates
    unknown = [c for c in chosen if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"--candidates {unknown}: not in CANDIDATES ({', '.join(CANDIDATES)})")
    if not recipe or any(f"DCNv2, {c}" not in runs for c in chosen):
        return None
    val = {RECIPE: recipe[0]["metrics"]["val/auc"]} | {
        c: runs[f"DCNv2, {c}"]["metrics"]["val/auc"] for c in chosen
    }
    name = max(val, key=lambda k: val[k])
    return name, ([] if name == RECIPE else CANDIDATES[name])


def jobs(args: argparse.Namespace) -> list[tuple[str, str, list[str], str, int | None, int]]:
    """(group, variant, overrides, split, history, seed) of every requested run, in run order."""
    out: list[tuple[str, str, list[str], str, int | None, int]] = []
    for group in args.groups:
        if group == "tabular":
            for split in args.splits:
                for seed in args.seeds:
                    for name, o in TABULAR.items():
                        if not args.models or slug(name) in args.models:
                            out.append((group, name, o, split, None, seed))
        elif group == "baseline":
            for split in args.splits:
                for seed in args.seeds:
                    for name, o in BASELINE.items():
                        out.append((group, name, o, split, None, seed))
        elif group == "sequence":
            for split in args.seq_splits:
                for seed in args.seq_seeds:
                    for name, o in SEQUENCE.items():
                        if not args.models or slug(name) in args.models:
                            h = None if name == NO_HISTORY else args.history
                            out.append((group, name, o, split, h, seed))
        elif group == "history":
            for seed in args.history_seeds:
                for h in args.histories:
                    for name in args.history_models:
                        out.append((group, name, SEQUENCE[name], args.seq_splits[0], h, seed))
        elif (
            group == "converged"
        ):  # the history sweep at the recipe's budget (up to 10 epochs, early stopping)
            budget = [o for o in args.extra if o.startswith("trainer.max_epochs=")]
            if budget:
                raise SystemExit(
                    f"--groups converged trains to the recipe's early stopping: drop {budget} from --extra "
                    "(a fixed budget belongs to --groups history)"
                )
            for seed in args.history_seeds:
                for name in args.history_models:
                    if name == NO_HISTORY:
                        out.append((group, name, SEQUENCE[name], args.seq_splits[0], None, seed))
                for h in args.histories:
                    for name in args.history_models:
                        if name == PACKED:
                            out.append((group, name, packed_overrides(h), args.seq_splits[0], h, seed))
                        elif name != NO_HISTORY:
                            out.append((group, name, SEQUENCE[name], args.seq_splits[0], h, seed))
        elif group == "tuning":  # the time split's small sweep: DCNv2 per candidate setting
            for seed in args.tune_seeds:
                for name, o in CANDIDATES.items():
                    if getattr(args, "candidates", None) is not None and name not in args.candidates:
                        continue
                    out.append((group, f"DCNv2, {name}", ["model=dcnv2", *o], "time", None, seed))
        elif group == "tuned":  # the sweep's winner (or --pick) for each model of TUNED_MODELS, --seeds
            pick = getattr(args, "pick", None)
            if pick is not None and pick not in CANDIDATES:
                raise SystemExit(f"--pick {pick!r}: not in CANDIDATES ({', '.join(CANDIDATES)})")
            best = (
                (pick, CANDIDATES[pick])
                if pick is not None
                else best_candidate(Path(args.out), args.tune_seeds[0], getattr(args, "candidates", None))
            )
            if best is None:
                print("tuned: the tuning group is unfinished; run --groups tuning first", flush=True)
            elif not best[1]:
                print(f"tuned: the recipe has the best val AUC ({best[0]}): nothing to run", flush=True)
            else:
                for seed in args.seeds:
                    for name in TUNED_MODELS:
                        if getattr(args, "models", None) and slug(name) not in args.models:
                            continue
                        out.append(
                            (
                                group,
                                f"{name}, tuned ({best[0]})",
                                [*TABULAR[name], *best[1]],
                                "time",
                                None,
                                seed,
                            )
                        )
        else:
            raise SystemExit(
                f"unknown group {group!r}: use tabular, baseline, sequence, history, converged, tuning, tuned"
            )
    return out


def cmd_run(args: argparse.Namespace) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    args.out = Path(args.out)
    if not Path(args.data_path).is_dir():
        raise SystemExit(
            f"--data-path {args.data_path} is not a folder: give the unzipped MovieLens folder (docs/data.md)."
        )
    failed = []
    for group, name, o, split, h, seed in jobs(args):
        folder = run_dir(args.out, group, split, name, h, seed)
        try:
            train_one(folder, group, name, o, split, h, seed, args)
        except Exception as e:  # one failed run must not stop the others; it stays unfinished
            print(f"FAILED {folder}: {type(e).__name__}: {e}", flush=True)
            failed.append(folder)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed (re-run to retry): {', '.join(map(str, failed))}")


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def load_runs(out: Path) -> list[dict[str, Any]]:
    """Every finished run under ``out``: run.json + metrics.json + predictions (lazy path)."""
    runs = []
    for meta in sorted(out.glob("*/*/run.json")):
        folder = meta.parent
        runs.append(
            {
                **json.loads(meta.read_text()),
                "metrics": json.loads((folder / "metrics.json").read_text()),
                "predictions": folder / "predictions.npz",
            }
        )
    return runs


def mean_sd(xs: list[float], digits: int = 4) -> str:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


class Bootstrap:
    """Resamples of the test rows of one split (shared by every run on it) and of the seeds."""

    def __init__(self, replicates: int, seed: int = 0) -> None:
        self.replicates = replicates
        self.seed = seed
        self._cache: dict[tuple[str, ...], Any] = {}

    def aucs(self, runs: list[dict[str, Any]]) -> Any:
        """float64 ``[K, R]`` AUCs of ``runs`` (same split) on the shared resamples of the rows."""
        import numpy as np
        import torch

        from recsys_lab.metrics import auc, bootstrap

        key = tuple(str(r["predictions"]) for r in runs)
        if key not in self._cache:
            data = [np.load(r["predictions"]) for r in runs]
            labels = data[0]["labels"]
            for r, d in zip(runs, data):
                if not np.array_equal(d["labels"], labels):
                    raise SystemExit(f"{r['predictions']}: test rows differ from {runs[0]['predictions']}")
            probs = torch.from_numpy(np.stack([d["probs"] for d in data]))
            self._cache[key] = bootstrap(
                auc, probs, torch.from_numpy(labels), self.replicates, self.seed
            ).numpy()
        return self._cache[key]

    def seed_mean(self, runs: list[dict[str, Any]], salt: int) -> Any:
        """``[K]``: per row resample, the mean AUC over a resample (with replacement) of the seeds."""
        import numpy as np

        a = self.aucs(runs)
        pick = np.random.default_rng([self.seed, salt]).integers(0, a.shape[1], a.shape)
        return np.take_along_axis(a, pick, axis=1).mean(axis=1)

    def interval(self, runs: list[dict[str, Any]], salt: int = 0) -> str:
        import numpy as np

        lo, hi = np.nanpercentile(self.seed_mean(runs, salt), [2.5, 97.5])
        return f"[{lo:.4f}, {hi:.4f}]"

    def difference(self, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[float, str]:
        """Mean AUC of ``a`` minus ``b`` (same split) and its 95% interval, paired over rows."""
        import numpy as np

        both = self.aucs(a + b)  # [K, len(a) + len(b)] on the same row resamples
        rng = np.random.default_rng([self.seed, 2])
        na = len(a)
        pa = rng.integers(0, na, (both.shape[0], na))
        pb = na + rng.integers(0, len(b), (both.shape[0], len(b)))
        d = np.take_along_axis(both, pa, 1).mean(1) - np.take_along_axis(both, pb, 1).mean(1)
        lo, hi = np.nanpercentile(d, [2.5, 97.5])
        point = statistics.mean(r["metrics"]["test/auc"] for r in a) - statistics.mean(
            r["metrics"]["test/auc"] for r in b
        )
        return point, f"[{lo:+.4f}, {hi:+.4f}]"


def select(runs: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    return [r for r in runs if all(r[k] == v for k, v in kw.items())]


SPLIT_NAMES = {
    "random": "random split (8:1:1 of the ratings, `data.split=random`)",
    "time": "per-user leave-last-out (`data.split=time`, the default: each user's last rating is test, the one before validation)",
}


def model_table(runs: list[dict[str, Any]], variants: list[str], boot: Bootstrap) -> list[str]:
    lines = [
        "| model | seeds | test AUC (mean ± sd over seeds) | 95% interval (test rows + seeds) | test LogLoss | val AUC | epochs | wall s per run | train samples/s | overrides |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in variants:
        rs = [r for r in runs if r["variant"] == name]
        if not rs:
            continue
        m = [r["metrics"] for r in rs]
        lines.append(
            f"| {name} | {len(rs)} | {mean_sd([x['test/auc'] for x in m])} | {boot.interval(rs)} | "
            f"{mean_sd([x['test/logloss'] for x in m])} | {mean_sd([x['val/auc'] for x in m])} | "
            f"{statistics.mean(x['epochs'] for x in m):.1f} | {statistics.mean(r['wall_s'] for r in rs):.0f} | "
            f"{statistics.mean(x['train/samples_per_s'] for x in m):,.0f} | "
            f"`{' '.join(o for o in rs[0]['overrides'] if not o.startswith(COMMON))}` |"
        )
    return lines


def trainer_overrides(r: dict[str, Any]) -> frozenset[str]:
    return frozenset(o for o in r["overrides"] if o.startswith("trainer."))


def best_epoch(r: dict[str, Any]) -> int | None:
    """The tested checkpoint's epoch (1-based): from run.json, else from the run's best.ckpt."""
    if r.get("best_epoch") is not None:
        return int(r["best_epoch"])
    ckpt = r["predictions"].parent / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        return None
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]) + 1


def auc_cell(rs: list[dict[str, Any]], boot: Bootstrap) -> str:
    if not rs:
        return "—"
    return f"{mean_sd([r['metrics']['test/auc'] for r in rs])} {boot.interval(rs)} (n={len(rs)})"


def max_epochs(r: dict[str, Any]) -> int | None:
    """The run's epoch budget (``trainer.max_epochs``): from run.json, else its overrides, else its config.yaml."""
    if r.get("max_epochs") is not None:
        return int(r["max_epochs"])
    for o in r["overrides"]:
        if o.startswith("trainer.max_epochs="):
            return int(o.split("=", 1)[1])
    config = r["predictions"].parent / "config.yaml"
    if not config.is_file():
        return None
    from omegaconf import OmegaConf

    return int(OmegaConf.load(config).trainer.max_epochs)


def curve(r: dict[str, Any]) -> list[dict[str, float]]:
    """Per-epoch validation metrics of a run (from its CSV log; [] for runs made with ``logger=none``)."""
    return read_curve(r["predictions"].parent)


def stopped_early(r: dict[str, Any]) -> bool | None:
    budget = max_epochs(r)
    return None if budget is None else r["metrics"]["epochs"] < budget


def log2_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against log2(``xs``)."""
    lx = [math.log2(x) for x in xs]
    mx, my = statistics.mean(lx), statistics.mean(ys)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ys)) / sum((a - mx) ** 2 for a in lx)


def slope_line(name: str, hists: list[int], cells: list[list[dict[str, Any]]], boot: Bootstrap) -> str:
    """The slope of the seed-mean test AUC against log2(max_history), with a 95% interval over the
    shared test-row resamples (seeds resampled at each point)."""
    import numpy as np

    point = log2_slope(hists, [statistics.mean(r["metrics"]["test/auc"] for r in c) for c in cells])
    reps = np.stack([boot.seed_mean(c, salt=3 + i) for i, c in enumerate(cells)])  # [H, R]
    lx = np.log2(np.asarray(hists, dtype=float))
    lx = lx - lx.mean()
    slopes = (lx[:, None] * (reps - reps.mean(0, keepdims=True))).sum(0) / (lx**2).sum()
    lo, hi = np.nanpercentile(slopes, [2.5, 97.5])
    return (
        f"{name}: least-squares slope of the seed-mean test AUC against log2(max_history), "
        f"{min(hists)}–{max(hists)}: {point:+.4f} per doubling [{lo:+.4f}, {hi:+.4f}]."
    )


def curve_table(reps: list[tuple[str, dict[str, Any]]], key: str = "val/logloss") -> list[str]:
    """One row per run, one column per epoch: ``key`` per epoch, the tested (best) epoch in bold."""
    width = max(len(curve(r)) for _, r in reps)
    lines = [
        "| run | " + " | ".join(str(e) for e in range(1, width + 1)) + " | best / run |",
        "|---|" + "---|" * (width + 1),
    ]
    for label, r in reps:
        c, best = curve(r), best_epoch(r)
        cells = [
            (f"**{p[key]:.4f}**" if p["epoch"] == best else f"{p[key]:.4f}") if i < len(c) else ""
            for i, p in enumerate(c + [{}] * (width - len(c)))
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {best} / {r['metrics']['epochs']} |")
    return lines


def curve_figure(reps: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    """Validation LogLoss per epoch of ``reps`` (one line each, the tested epoch marked) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, r in reps:
        c, best = curve(r), best_epoch(r)
        ep = [p["epoch"] for p in c]
        for ax, key in zip(axes, ("val/logloss", "val/auc")):
            (line,) = ax.plot(ep, [p[key] for p in c], marker=".", label=label)
            ax.plot(
                [best],
                [p[key] for p in c if p["epoch"] == best],
                "o",
                color=line.get_color(),
                mfc="none",
                ms=9,
            )
    for ax, key in zip(axes, ("validation LogLoss", "validation AUC")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Learning curves, leave-last-out split (circle: the tested, best-val-AUC epoch)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def history_section(
    runs: list[dict[str, Any]],
    split: str,
    boot: Bootstrap,
    group: str = "history",
    figure: Path | None = None,
) -> list[str]:
    """Test AUC, its gain over DCNv2 (paired), throughput and convergence against max_history.

    ``group="history"``: a fixed budget (the runs' ``trainer.*`` overrides), compared with the
    sequence group's DCNv2 of the same budget and with the recipe's DCNv2; ``group="converged"``:
    every run (DCNv2 included, in the same group) trains to the recipe's early stopping, and the
    section adds each run's best epoch, whether it stopped early, and learning curves (a PNG at
    ``figure`` when given, linked from the page by its file name)."""
    hs = select(runs, group=group, split=split)
    budget = trainer_overrides(hs[0])
    if any(trainer_overrides(r) != budget for r in hs):
        raise SystemExit(f"{group} runs on the {split} split differ in their trainer overrides")
    converged = group == "converged"
    if converged and budget:
        raise SystemExit(f"converged runs on the {split} split have trainer overrides {sorted(budget)}")
    # The sequence group's runs with the same budget are points of the curve too (first one wins).
    seen: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in hs + ([] if converged else select(runs, group="sequence", split=split)):
        if r["history"] is not None and trainer_overrides(r) == budget:
            seen.setdefault((r["variant"], r["history"], r["seed"]), r)
    pts = list(seen.values())
    base = [
        r
        for r in select(runs, group=group if converged else "sequence", split=split, variant=NO_HISTORY)
        if trainer_overrides(r) == budget and r["history"] is None
    ]
    full = [] if converged else select(runs, group="tabular", split=split, variant=NO_HISTORY)
    if converged and not base:  # the tabular section's recipe runs: the same training, no history
        base = [
            r
            for r in select(runs, group="tabular", split=split, variant=NO_HISTORY)
            if not trainer_overrides(r)
        ]
    models = list(
        dict.fromkeys(
            [m for m in SEQUENCE if any(r["variant"] == m for r in pts)] + [r["variant"] for r in pts]
        )
    )
    hists = sorted({r["history"] for r in pts})
    at = {(m, h): [r for r in pts if r["variant"] == m and r["history"] == h] for m in models for h in hists}
    head = ["| max_history | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    what = ", ".join(f"`{o}`" for o in sorted(budget)) or "the recipe's budget"
    if converged:
        title = "trained to early stopping"
        budget_text = [
            f"rating as the action); {NO_HISTORY} reads none. Training: the recipe's, for every run of this section",
            f"and the {NO_HISTORY} it is compared with: up to 10 epochs, lr × 0.1 at the first epoch without a val AUC",
            "gain, stopped after 2 epochs without one; the best-val-AUC epoch is tested. Cells: mean ± sd over",
            "seeds, 95% interval (test rows + seeds), n seeds.",
        ]
    else:
        title = f"budget {what}"
        budget_text = [
            f"rating as the action); {NO_HISTORY} reads none. Training budget: {what} for every run of this",
            "section (early stopping as in the recipe, which cannot stop a run this short), the same for the",
            f"{NO_HISTORY} it is compared with; cells: mean ± sd over seeds, 95% interval (test rows + seeds), n seeds.",
        ]
    lines = [
        f"## Does the history help, and how much of it? Test AUC against `data.max_history` ({split} split, {title})",
        "",
        f"{', '.join(models)} read the user's `max_history` most recent strictly earlier ratings (movie, genre,",
        *budget_text,
        "",
    ]
    if split == "random":
        lines += ["Random split: the leakage note above applies to every point.", ""]
    lines += head
    for h in hists:
        lines.append(f"| {h} | " + " | ".join(auc_cell(at[m, h], boot) for m in models) + " |")
    lines.append("")
    if converged:
        where = " (the tabular section's runs)" if base and base[0]["group"] == "tabular" else ""
        lines.append(f"Without history: {NO_HISTORY}, trained the same way{where}, {auc_cell(base, boot)}.")
    else:
        lines.append(
            f"Without history: {NO_HISTORY} with the same budget {auc_cell(base, boot)}; {NO_HISTORY} with the recipe "
            f"(early stopping, up to 10 epochs) {auc_cell(full, boot)}."
        )
    refs = ((f"{NO_HISTORY}, same training", base),) if converged else (
        (f"{NO_HISTORY}, same budget", base), (f"{NO_HISTORY}, recipe", full))  # fmt: skip
    for label, ref in refs:
        if not ref:
            continue
        lines += ["", f"Test AUC minus {label} (paired over test rows; seeds resampled):", "", *head]
        for h in hists:
            cells = []
            for m in models:
                if at[m, h]:
                    point, ci = boot.difference(at[m, h], ref)
                    cells.append(f"{point:+.4f} {ci}")
                else:
                    cells.append("—")
            lines.append(f"| {h} | " + " | ".join(cells) + " |")
    lines += ["", "Cost per run (training samples/s; wall s per run, training and evaluation):", "", *head]
    for h in hists:
        cells = [
            f"{statistics.mean(r['metrics']['train/samples_per_s'] for r in at[m, h]):,.0f}/s; "
            f"{statistics.mean(r['wall_s'] for r in at[m, h]):,.0f} s"
            if at[m, h] else "—"
            for m in models
        ]  # fmt: skip
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    if base:
        lines += ["", f"{NO_HISTORY} ({'same training' if converged else 'same budget'}): "
                      f"{statistics.mean(r['metrics']['train/samples_per_s'] for r in base):,.0f}/s; "
                      f"{statistics.mean(r['wall_s'] for r in base):,.0f} s per run."]  # fmt: skip
    if PACKED in models:
        lines += ["", f"{PACKED}'s samples/s count segments (`data.batch_size` counts them; a segment holds up to",
                  "max_history + 1 events, all trained): compare its cost by wall time."]  # fmt: skip
    last = [r for r in pts + base if best_epoch(r) is not None and best_epoch(r) == r["metrics"]["epochs"]]
    if converged:
        early = [r for r in pts + base if stopped_early(r)]
        lines += [
            "",
            "Convergence per run: tested (best val AUC) epoch / epochs run, one entry per seed "
            "(seeds in order; `*`: ran all 10 epochs without stopping early):",
            "",
            *head,
        ]
        for h in hists:
            cells = [
                ", ".join(f"{best_epoch(r)}/{r['metrics']['epochs']}" + ("" if stopped_early(r) else "*")
                          for r in sorted(at[m, h], key=lambda r: r["seed"])) or "—"
                for m in models
            ]  # fmt: skip
            lines.append(f"| {h} | " + " | ".join(cells) + " |")
        if base:
            lines += ["", f"{NO_HISTORY}: " + ", ".join(
                f"{best_epoch(r)}/{r['metrics']['epochs']}" + ("" if stopped_early(r) else "*")
                for r in sorted(base, key=lambda r: r["seed"]))]  # fmt: skip
        lines += [
            "",
            f"Convergence: {len(early)} of {len(pts) + len(base)} runs stopped early (2 epochs without a val AUC",
            f"gain); in {len(last)} the tested checkpoint is the last epoch's.",
        ]
        reps = [(f"{NO_HISTORY}, seed {r['seed']}", r) for r in sorted(base, key=lambda r: r["seed"])[:1]]
        for m in models:
            ks = [h for h in hists if at[m, h]]
            for h in dict.fromkeys([ks[0], ks[-1]] if ks else []):
                r = min(at[m, h], key=lambda r: r["seed"])
                reps.append((f"{m}, h={h}, seed {r['seed']}", r))
        reps = [(label, r) for label, r in reps if curve(r)]
        if reps:
            lines += ["", "Learning curves (validation LogLoss per epoch; bold: the tested epoch) of representative",
                      "runs: the first seed of each model at its shortest and longest history:", "",
                      *curve_table(reps)]  # fmt: skip
            if figure is not None:
                curve_figure(reps, figure)
                lines += ["", f"![validation LogLoss and AUC per epoch]({figure.name})"]
    else:
        lines += [
            "",
            f"Convergence: in {len(last)} of {len(pts) + len(base)} runs of this section the tested (best val AUC)",
            "checkpoint is the last epoch's, so these runs were still improving when the budget ended: they are",
            "not converged, and the comparison is at equal (short) training, not at each model's best.",
        ]
    for m in models:
        ks = [h for h in hists if at[m, h]]
        if len(ks) > 2:
            lines += ["", slope_line(m, ks, [at[m, h] for h in ks], boot)]
    return [*lines, ""]


def tuned_variant(variant: str) -> tuple[str, str] | None:
    """``"DNN, tuned (sweep trial 1)"`` -> ``("DNN", "sweep trial 1")``; None for other variants."""
    head, sep, rest = variant.partition(", tuned (")
    return (head, rest[:-1]) if sep and rest.endswith(")") else None


def tuned_section(runs: list[dict[str, Any]], boot: Bootstrap) -> list[str]:
    """The time split's tuning settings (DCNv2, seed 0) and the defaults against each tuned setting run."""
    tuning = select(runs, group="tuning", split="time")
    if not tuning:
        return []
    recipe = select(runs, group="tabular", split="time", variant=NO_HISTORY)
    seeds = sorted({r["seed"] for r in tuning})
    lines = [
        "## Defaults against a tuned run (time split)",
        "",
        "Tuning settings on the leave-last-out split: DCNv2 with each setting below (seed "
        f"{', '.join(map(str, seeds))}); a setting picked by **val** AUC (943 validation rows: a noisy pick)",
        "is then run with more seeds and compared with the defaults (no override) on the test rows.",
        "The settings are the random-split Optuna sweep's other best trials, FuxiCTR's usual settings"
        + (
            f" and the best trial of the time split's own Optuna study ({', '.join(own)}: picked by that"
            " study's val AUC at seed 42, not by the row below; section Tuning recipe)."
            if (own := [c for c in CANDIDATES if c.startswith(TIME_SWEEP)])
            else "."
        ),
        "",
        "| setting | val AUC | test AUC | epochs (best) | overrides |",
        "|---|---|---|---|---|",
    ]
    rows = [(RECIPE, r, []) for r in recipe if r["seed"] in seeds]
    rows += [
        (r["variant"].split(", ", 1)[1], r, CANDIDATES.get(r["variant"].split(", ", 1)[1], []))
        for r in tuning
    ]
    for name, r, o in sorted(rows, key=lambda x: -x[1]["metrics"]["val/auc"]):
        m = r["metrics"]
        lines.append(
            f"| {name} | {m['val/auc']:.4f} | {m['test/auc']:.4f} | {m['epochs']} ({best_epoch(r)}) | `{' '.join(o) or '—'}` |"
        )
    lines.append("")
    missing = [c for c in CANDIDATES if not any(r["variant"] == f"DCNv2, {c}" for r in tuning)]
    if missing:
        lines += [f"Not run (so the sweep is incomplete): {', '.join(missing)}.", ""]
    tuned = select(runs, group="tuned", split="time")
    # The settings run for the models: the best val AUC of the table (unless the recipe), and any
    # other with tuned runs (--pick: picked elsewhere).
    winner = max(rows, key=lambda x: x[1]["metrics"]["val/auc"])[0] if rows else None
    settings = list(
        dict.fromkeys(
            [*([winner] if winner not in (None, RECIPE) else []),
             *(t[1] for r in tuned if (t := tuned_variant(r["variant"])))]
        )
    )  # fmt: skip
    if not settings:
        return [*lines, "The recipe has the best val AUC of the sweep: the defaults are the tuned run.", ""]
    # A setting's own tuning run is its DCNv2 run of that seed (same overrides: not run twice).
    for setting in settings:
        for r in tuning:
            if r["variant"] == f"{NO_HISTORY}, {setting}":
                name = f"{NO_HISTORY}, tuned ({setting})"
                if not any(t["variant"] == name and t["seed"] == r["seed"] for t in tuned):
                    tuned.append({**r, "variant": name})
    names = [f"{m}, tuned ({s})" for s in settings for m in TUNED_MODELS]
    defaults = [r for r in select(runs, group="tabular", split="time") if r["variant"] in TUNED_MODELS]
    lines += model_table(defaults + tuned, [*TUNED_MODELS, *names], boot)
    lines += ["", "Defaults minus tuned (test AUC, paired over test rows; seeds resampled):", "",
              "| model | tuned setting | ΔAUC | 95% interval |", "|---|---|---|---|"]  # fmt: skip
    for setting in settings:
        for name in TUNED_MODELS:
            d = [r for r in defaults if r["variant"] == name]
            t = [r for r in tuned if r["variant"] == f"{name}, tuned ({setting})"]
            if d and t:
                point, ci = boot.difference(d, t)
                lines.append(f"| {name} | {setting} | {point:+.4f} | {ci} |")
    return [*lines, ""]


def sweep_section(sweep: Path | None) -> list[str]:
    if sweep is None or not (sweep / "optuna.db").is_file():
        return ["(No sweep results given to the report: `--sweep <dir with optuna.db>`.)"]
    import optuna

    storage = f"sqlite:///{sweep / 'optuna.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    lines = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            continue
        keys = sorted({k for t in done for k in t.params})
        lines += [
            f"Study `{name}`: {len(done)} finished trials, best val AUC {study.best_value:.4f}.",
            "",
            "| trial | val AUC | " + " | ".join(f"`{k}`" for k in keys) + " |",
            "|---|---|" + "---|" * len(keys),
        ]
        for t in sorted(done, key=lambda t: -(t.value or 0)):
            cells = [_fmt(t.params.get(k)) for k in keys]
            lines.append(f"| {t.number} | {t.value:.4f} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines or ["(The sweep has no finished trials.)"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "—" if v is None else str(v)


# How to make the MovieLens-1M page (on the ML-100K page; ML-1M is not available offline here).
ML1M_SECTION = [
    "## MovieLens-1M (not run here)",
    "",
    "ML-1M is not available offline on this machine, so it was not run. With GroupLens' `ml-1m.zip`",
    "unzipped (ratings.dat, users.dat, movies.dat: `::`-separated, latin-1) or RecBole's ml-1m atomic files",
    "in `<ml-1m>`, the same page for ML-1M (docs/results/real_data_ml1m.md) is made by:",
    "",
    "```bash",
    'R="python scripts/results_real_data.py run --data-path <ml-1m> --out runs/results_real_data_ml1m"',
    "$R --groups tabular baseline                      # every tabular model, both splits, 3 seeds",
    "$R --groups sequence history --seq-splits time --history 32 --extra trainer.max_epochs=2",
    "python scripts/results_real_data.py report --out runs/results_real_data_ml1m --page docs/results/real_data_ml1m.md",
    "```",
    "",
    "The recipe was tuned on ML-100K only; at 10× the data, re-run the sweep with `data.path=<ml-1m>`",
    "(and another `task_name`) before trusting its settings there.",
    "",
]


def cmd_report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out} (run.json + metrics.json + predictions.npz)")
    boot = Bootstrap(args.replicates)
    page = Path(args.page)
    page.parent.mkdir(parents=True, exist_ok=True)
    recipe = (REPO / "conf" / "recipe" / "movielens.yaml").read_text()
    recipe_body = "\n".join(line for line in recipe.splitlines() if not line.lstrip().startswith("#"))
    rows = {r["split"]: r["test_rows"] for r in runs}
    # Runs written before run.json named the dataset were all MovieLens-100K.
    names = sorted({r.get("dataset", "MovieLens-100K") for r in runs})
    if len(names) > 1:
        raise SystemExit(f"{out} mixes datasets ({', '.join(names)}): give each its own --out")
    ds = names[0]
    total_wall = sum(r["wall_s"] for r in runs)
    lines = [
        "# Real data: MovieLens",
        "",
        "Generated by `scripts/results_real_data.py report` from run outputs; do not edit by hand.",
        f"{ds} as a CTR task (rating ≥ 4 is a click; features user, movie, gender, age,",
        "occupation, zip, first genre, year; histories: the user's strictly earlier ratings)"
        + (
            ",\nread from RecBole's atomic files (`recbole==1.2.1`, `recbole/dataset_example/ml-100k/`)."
            if ds == "MovieLens-100K"
            else "."
        ),
        f"Test rows: {', '.join(f'{k} {v:,}' for k, v in sorted(rows.items()))}.",
        "",
        "Every run is `python -m recsys_lab.train data=movielens data.path=<folder> data.split=<split>` plus",
        "only the overrides in its row (and `seed`, `num_threads=1`, `logger=none`): the defaults are",
        "those of `data=movielens`, i.e. conf/recipe/movielens.yaml, which conf/train.yaml selects for",
        "`data=movielens` (docs/data.md):",
        "",
        "```yaml",
        recipe_body.strip(),
        "```",
        "",
        "Intervals: 95% percentile intervals of the seed-mean test AUC over "
        f"{args.replicates} bootstrap resamples of the test rows (the same resamples for every model",
        "on a split, `recsys_lab.metrics.bootstrap`), each also resampling the seeds; so they hold",
        "test-sampling noise as well as the spread over seeds. Differences are paired the same way.",
        f"Wall time is per run (training and evaluation, one thread on a shared 2-core machine); {len(runs)} runs,",
        f"{total_wall / 60:.0f} minutes in all.",
        "",
        *([*Path(args.reductions).read_text().strip().splitlines(), ""] if args.reductions else []),
        "## How these numbers were made",
        "",
        "```bash",
        *(
            [
                "pip download --no-deps recbole==1.2.1 -d /tmp/recbole",
                "unzip -j /tmp/recbole/recbole-1.2.1-py3-none-any.whl 'recbole/dataset_example/ml-100k/*' -d /tmp/ml-100k",
            ]
            if ds == "MovieLens-100K"
            else []
        ),
        *(
            args.command
            or [
                "python scripts/results_real_data.py run --data-path /tmp/ml-100k --out runs/results_real_data"
            ]
        ),
        f"python scripts/results_real_data.py report --out {args.out}"
        + (f" --sweep {' '.join(args.sweep)}" if args.sweep else "")
        + (" --figures" if args.figures else ""),
        "```",
        "",
    ]
    # -- tabular
    for split in ("random", "time"):
        rs = select(runs, group="tabular", split=split) + select(runs, group="baseline", split=split)
        if not rs:
            continue
        lines += [f"## {ds}, {SPLIT_NAMES[split]}", ""]
        if split == "random" and ds == "MovieLens-100K":
            lines += [f"Reference: {REFERENCE}: test AUC {REFERENCE_AUC}, with embedding 16, batch 1024, MLP",
                      "[400,400,400], up to 10 epochs, lr × 0.1 on a plateau, early stopping with patience 2.", ""]  # fmt: skip
        lines += model_table(rs, [*TABULAR, *BASELINE], boot)
        lines.append("")
    lines += tuned_section(runs, boot)
    # -- sequence
    seq = select(runs, group="sequence")
    for split in sorted({r["split"] for r in seq}):
        rs = select(seq, split=split)
        lines += [f"## Does the history help? Sequence models against DCNv2 ({split} split)", ""]
        hist = sorted({r["history"] for r in rs if r["history"] is not None})
        lines += [
            f"The sequence models read the user's {', '.join(map(str, hist))} most recent earlier ratings (movie, genre, "
            "rating as the action; `data.max_history`); DCNv2 reads none. Same defaults otherwise.",
            "",
        ]
        epochs = sorted({o for r in rs for o in r["overrides"] if o.startswith("trainer.max_epochs=")})
        if epochs:
            lines += [
                f"**Reduced** to fit the shared CPU: every run of this section, {NO_HISTORY} included, trains with "
                f"`{', '.join(epochs)}` (not the recipe's 10), so all models see the same data; compare them with",
                "each other, not with the tables above.",
                "",
            ]
        lines += model_table(rs, list(SEQUENCE), boot)
        base = [r for r in rs if r["variant"] == NO_HISTORY]
        if base:
            lines += ["", f"Test AUC minus {NO_HISTORY}'s (paired over test rows):", "", "| model | ΔAUC | 95% interval |", "|---|---|---|"]  # fmt: skip
            for name in SEQUENCE:
                if name == NO_HISTORY:
                    continue
                other = [r for r in rs if r["variant"] == name]
                if other:
                    point, ci = boot.difference(other, base)
                    lines.append(f"| {name} | {point:+.4f} | {ci} |")
        if split == "random":
            lines += [
                "",
                "**Leakage on the random split:** a test rating is also an event in the histories of the same",
                "user's later training samples, so sequence models see its click as an input while training,",
                "and GRAB's every-event loss (`task=grab`) is trained to predict it: random-split gains of the",
                "sequence models, GRAB's above all, overstate what the history is worth. On the leave-last-out",
                "split each user's test rating is their last, in no training sample's history: that is the fair test.",
            ]
        lines.append("")
    # -- history sweep
    for split in sorted({r["split"] for r in select(runs, group="history")}):
        lines += history_section(runs, split, boot)
    for split in sorted({r["split"] for r in select(runs, group="converged")}):
        figure = page.parent / f"{page.stem}_curves_{split}.png" if args.figures else None
        lines += history_section(runs, split, boot, group="converged", figure=figure)
    # -- tuning
    lines += ["## Tuning recipe", "", "`conf/sweep/optuna_movielens.yaml` (Optuna TPE, maximising val AUC; the test split is never seen):", "", "```bash"]  # fmt: skip
    lines += [*(args.sweep_command or ["python -m recsys_lab.train sweep=optuna_movielens data.path=/tmp/ml-100k data.split=random model=dcnv2 num_threads=1"]), "```", ""]  # fmt: skip
    for sweep in args.sweep or [None]:
        lines += sweep_section(Path(sweep) if sweep else None)
    lines += [*(Path(args.notes).read_text().strip().splitlines() if args.notes else []), ""]
    # -- ML-1M
    if ds == "MovieLens-100K":
        lines += ML1M_SECTION
    lines += [
        "## Per run",
        "",
        "Best epoch: the tested (best val AUC) checkpoint's. Stopped early: the run ended before its",
        "`trainer.max_epochs` (2 epochs without a val AUC gain).",
        "",
        "| run | test AUC | test rows | val AUC | epochs | best epoch | stopped early | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m = r["metrics"]
        h = "" if r["history"] is None else f", h={r['history']}"
        lines.append(
            f"| {r['group']}: {r['variant']}, {r['split']}{h}, seed {r['seed']} | {m['test/auc']:.4f} | "
            f"{r['test_rows']:,} | {m['val/auc']:.4f} | {m['epochs']} | {best_epoch(r) or '—'} | "
            f"{ {True: 'yes', False: 'no', None: '—'}[stopped_early(r)] } | {r['wall_s']:.0f} |"
        )
    page.write_text("\n".join(lines) + "\n")
    print(f"wrote {page}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the runs (finished ones are skipped)")
    r.add_argument("--data-path", required=True, help="the unzipped MovieLens folder")
    r.add_argument("--cache-dir", default=None, help="data.cache_dir (default: the config's)")
    r.add_argument("--out", default="runs/results_real_data")
    r.add_argument("--groups", nargs="*", default=["tabular", "baseline", "sequence", "history"])
    r.add_argument("--splits", nargs="*", default=["random", "time"])
    r.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    r.add_argument(
        "--models", nargs="*", default=None, help="tabular and sequence variant slugs (default: all)"
    )
    r.add_argument("--seq-splits", nargs="*", default=["random"])
    r.add_argument("--seq-seeds", type=int, nargs="*", default=[0, 1, 2])
    r.add_argument("--history", type=int, default=50, help="data.max_history of the sequence group")
    r.add_argument("--histories", type=int, nargs="*", default=[8, 32, 128, 256])
    r.add_argument(
        "--history-models",
        nargs="*",
        default=["DIN", "GRAB"],
        help=f"variants of the history/converged groups: {', '.join(SEQUENCE)}, {PACKED} (converged only)",
    )
    r.add_argument("--history-seeds", type=int, nargs="*", default=[0])
    r.add_argument("--tune-seeds", type=int, nargs="*", default=[0], help="seeds of the tuning group")
    r.add_argument(
        "--candidates",
        nargs="*",
        default=None,
        help="the tuning group's settings (names in CANDIDATES; default all)",
    )
    r.add_argument(
        "--pick",
        default=None,
        help="the tuned group's setting (a name in CANDIDATES) when it was picked elsewhere, e.g. an Optuna "
        "study's best trial (default: the tuning group's best val AUC among --candidates and the recipe)",
    )
    r.add_argument("--threads", type=int, default=1)
    r.add_argument(
        "--logger",
        default="csv",
        help="logger= of every run (csv: per-epoch validation metrics, the learning curves of the page)",
    )
    r.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    r.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="write the page from finished runs")
    p.add_argument("--out", default="runs/results_real_data")
    p.add_argument("--page", default=str(REPO / "docs" / "results" / "real_data.md"))
    p.add_argument(
        "--sweep", nargs="*", default=None, help="the optuna sweep folders (each holding optuna.db)"
    )
    p.add_argument("--sweep-command", nargs="*", default=None, help="the sweeps' command lines, for the page")
    p.add_argument("--command", nargs="*", default=None, help="the run command lines, for the page")
    p.add_argument("--notes", default=None, help="a markdown file appended after the tuning section")
    p.add_argument(
        "--reductions", default=None, help="a markdown file on what was reduced or not run, after the intro"
    )
    p.add_argument("--replicates", type=int, default=REPLICATES)
    p.add_argument(
        "--figures",
        action="store_true",
        help="write the learning-curve PNGs next to the page (<page>_curves_<split>.png), linked from it",
    )
    p.set_defaults(func=cmd_report)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
