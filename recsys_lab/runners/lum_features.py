"""LUM step 2, knowledge querying: write every sample's LUM features (a pipeline stage runner).

The frozen stage-1 LUM (its run directory's ``config.yaml`` and best, else last, checkpoint) reads
each sample's own ``Batch.history`` — strictly earlier events of its user — and its query tokens
(one per group condition plus the candidate's own condition); see
:meth:`recsys_lab.models.lum.LUM.features`. Nothing after the sample's time can reach its features.

Output (``paths.output_dir``): ``lum_features_<split>.npy`` float32 ``[rows of split, K]`` — row r
is the split's r-th sample in the datamodule's dataset order (the key the join uses) — and
``lum_features.json`` (column names, rows per split, checkpoint). Every file is written to a
temporary name and renamed, so a crash never leaves a half-written file under the final name.

Stage settings (added with ``+lum_features.<key>=...``): :class:`LUMFeatureOptions`; a misspelt key
is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys_lab.data.datamodule import SPLITS, DataModule
from recsys_lab.models.lum import LUM
from recsys_lab.runners import stage

META_FILE = "lum_features.json"


@dataclass
class LUMFeatureOptions:
    """Settings of the LUM feature stage (``+lum_features.<key>=...``).

    Attributes:
        pretrain_dir: the stage-1 (LUM pre-training) run directory (required).
        batch_size: samples per forward pass.
    """

    pretrain_dir: str | None = None
    batch_size: int = 1024


def feature_file(directory: str | Path, split: str) -> Path:
    return Path(directory) / f"lum_features_{split}.npy"


def load_lum(pretrain_dir: str | Path, schema: Any) -> tuple[LUM, Path]:
    """The stage-1 LUM with its trained weights, in eval mode, and the checkpoint it came from."""
    pretrain_dir = Path(pretrain_dir)
    cfg_file = pretrain_dir / "config.yaml"
    ckpts = [pretrain_dir / "checkpoints" / name for name in ("best.ckpt", "last.ckpt")]
    ckpt = next((c for c in ckpts if c.is_file()), None)
    if not cfg_file.is_file() or ckpt is None:
        raise FileNotFoundError(
            f"LUM features: {pretrain_dir} is not a finished LUM pre-training run (needs config.yaml and "
            "checkpoints/best.ckpt or last.ckpt). Point lum_features.pretrain_dir at stage 1's directory."
        )
    pre = OmegaConf.load(cfg_file)
    model = instantiate(pre.model, _partial_=True)(schema=schema, embedding=instantiate(pre.embedding))
    if not isinstance(model, LUM):
        raise TypeError(f"LUM features: {pretrain_dir} trained a {type(model).__name__}, not a LUM")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), ckpt


@torch.no_grad()
def write_split(model: LUM, datamodule: DataModule, split: str, out_dir: Path, batch_size: int) -> int:
    """Features of every sample of ``split`` in dataset order; returns the row count."""
    dataset = getattr(datamodule, f"{split}_dataloader")().dataset
    n = len(dataset)
    width = len(model.feature_names())
    with stage.atomic_path(feature_file(out_dir, split)) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, width))
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(n, start + batch_size))
            array[start : start + index.numel()] = model.features(dataset[index]).numpy()
        array.flush()
        del array
    return n


def write_lum_features(cfg: DictConfig) -> dict[str, Any]:
    """Pipeline runner: write the LUM features of ``cfg.data``'s train/val/test samples."""
    opts = stage.options(cfg, "lum_features", LUMFeatureOptions, "LUM features")
    if not opts.pretrain_dir:
        raise ValueError(
            "LUM features need +lum_features.pretrain_dir=<stage-1 run dir> (in pipeline=lum: "
            "${stage:pretrain,dir})"
        )
    out_dir = Path(cfg.paths.output_dir)
    stage.begin(cfg, out_dir)
    datamodule: DataModule = instantiate(cfg.data)
    datamodule.setup()
    model, ckpt = load_lum(opts.pretrain_dir, datamodule.schema)
    rows = {split: write_split(model, datamodule, split, out_dir, opts.batch_size) for split in SPLITS}
    stage.write_json_atomic(
        out_dir / META_FILE,
        {"names": model.feature_names(), "rows": rows, "checkpoint": str(ckpt), "data": datamodule.name},
    )
    return {
        "features_dir": str(out_dir),
        "num_features": len(model.feature_names()),
        **{f"rows/{k}": v for k, v in rows.items()},
    }
