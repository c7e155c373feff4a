"""What the after-training runners share: a trained run's config, data, model and task.

A checkpoint lives in ``<run>/checkpoints/``; the run's resolved ``config.yaml`` sits beside that
folder. :func:`load_trained` reads it, opens the training data *without* rebuilding anything —
for real datasets the preprocessed cache the run was trained on (its vocabularies and numeric
transforms), found even when the raw files have moved — and builds the model and task with
:func:`recsys_lab.runners.train.build`, then loads the checkpoint's weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from recsys_lab.data.cached import CachedDataModule
from recsys_lab.data.datamodule import DataModule
from recsys_lab.data.preprocess.cache import is_complete
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.schema import Schema
from recsys_lab.models.base import CTRModel
from recsys_lab.runners.checkpoint import load_state_dict
from recsys_lab.runners.train import build

log = logging.getLogger(__name__)

RUN_CONFIG = "config.yaml"


class FixedSchemaData(DataModule):
    """A datamodule that only knows a schema (no rows): lets :func:`recsys_lab.runners.train.build` make a
    run's model and task without reading its data.

    Args:
        schema: :meth:`Schema.to_dict` of the schema.
        name: the data's name.
    """

    def __init__(self, schema: dict[str, Any], name: str = "data") -> None:
        self._schema = Schema.from_dict(schema)
        self.name = name

    @property
    def schema(self) -> Schema:
        return self._schema

    def setup(self) -> None:
        pass

    def _none(self) -> DataLoader:
        raise RuntimeError("FixedSchemaData has no rows: it only carries a schema")

    train_dataloader = val_dataloader = test_dataloader = _none


@dataclass
class TrainedRun:
    """A trained run, ready to score.

    Attributes:
        ckpt_path: the checkpoint. run_dir: its run folder. cfg: the run's resolved config.
        data: the run's datamodule, opened (schema; for real datasets the cache, i.e. the fitted
            vocabularies and transforms); synthetic data is not generated until asked.
        model: the model in eval mode with the checkpoint's weights. task: the task holding it.
    """

    ckpt_path: Path
    run_dir: Path
    cfg: DictConfig
    data: DataModule
    model: CTRModel
    task: L.LightningModule


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of a checkpoint (``<run>/checkpoints/x.ckpt`` -> ``<run>``), checked."""
    ckpt = Path(str(ckpt_path)).expanduser()
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist. Give a checkpoint written by a training run, e.g. "
            "runs/train/<time>/checkpoints/best.ckpt."
        )
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    raise FileNotFoundError(
        f"No {RUN_CONFIG} beside {ckpt} or its folder: the runners read the training run's resolved config "
        f"from <run>/{RUN_CONFIG} (next to <run>/checkpoints/). Keep the checkpoint inside its run folder."
    )


def open_training_data(cfg: DictConfig) -> DataModule:
    """The run's datamodule with its schema (and, for real datasets, its cache) opened.

    Real datasets are never preprocessed again here: the cache of the run's config and input files
    is used if it is complete, else the newest cache built by the same config from files at the
    same paths (the files may have changed or gone since); none is an error.
    """
    data: DataModule = instantiate(cfg.data)
    if isinstance(data, CachedDataModule):
        folder = None
        try:
            folder = data.cache_folder()
        except DataError:
            pass  # the raw files are gone
        if folder is None or not is_complete(folder):
            folder = data.find_cache()
        if folder is None:
            raise DataError(
                f"The training run's {data.name} data is not preprocessed under data.cache_dir={data.cache_dir}: "
                "its vocabularies are needed to encode rows the way the model was trained. Run the runner where "
                "the training cache is, or point data.cache_dir (and data.path) at it."
            )
        data.open_cache(folder)
        return data
    try:
        data.schema  # noqa: B018 - synthetic data knows its schema before generating rows
    except RuntimeError:
        data.setup()
    return data


def load_trained(ckpt_path: str | Path) -> TrainedRun:
    """Read the run of ``ckpt_path``; build its model and task and load the checkpoint's weights."""
    run_dir = run_dir_of(ckpt_path)
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    assert isinstance(cfg, DictConfig)
    data = open_training_data(cfg)
    built = cfg.copy()
    with open_dict(built):
        built.data = {
            "_target_": f"{FixedSchemaData.__module__}.{FixedSchemaData.__qualname__}",
            "_convert_": "all",
            "schema": data.schema.to_dict(),
            "name": data.name,
        }
        built.init = {"checkpoint": None}  # the checkpoint's weights replace any warm start
    _, model, task = build(built)
    state = load_state_dict(ckpt_path)
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if not weights:
        raise ValueError(
            f"Checkpoint {ckpt_path} holds no model weights (no 'model.*' keys in its state_dict)."
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise RuntimeError(
            f"The weights of {ckpt_path} do not fit the model its run config ({run_dir / RUN_CONFIG}) builds: "
            f"{err}. Was config.yaml edited, or the checkpoint moved into another run's folder?"
        ) from err
    model.eval()
    task.eval()
    return TrainedRun(Path(str(ckpt_path)), run_dir, cfg, data, model, task)
