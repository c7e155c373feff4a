"""Reading model weights out of Lightning checkpoints without importing Lightning."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from recsys_lab.layers.embedding import FieldEmbedding


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a checkpoint file, with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. Point init.checkpoint (or ckpt_path) at a .ckpt file "
            "written by an earlier run, e.g. runs/<task_name>/<time>/checkpoints/best.ckpt."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt.get("state_dict", ckpt)


def _copy_checked(target: torch.Tensor, value: torch.Tensor, name: str, advice: str) -> None:
    """Copy a checkpoint's ``value`` into the model's ``target`` (same shape, else a clear error)."""
    if value.shape != target.shape:
        raise ValueError(
            f"Cannot warm-start {name}: checkpoint shape {tuple(value.shape)} != model shape "
            f"{tuple(target.shape)}. {advice}"
        )
    with torch.no_grad():
        target.copy_(value)


def load_embedding_tables(model: nn.Module, path: str | Path, prefix: str = "model.") -> list[str]:
    """Copy every embedding table of ``model`` from the checkpoint at ``path``.

    Tables are matched by their parameter name (under ``prefix`` in the checkpoint, ``model.`` for a
    CTRTask checkpoint) and must have equal shapes; any mismatch is an error, so a warm start never
    silently trains from scratch. Returns the names of the copied parameters.
    """
    source = load_state_dict(path)
    copied: list[str] = []
    for module_name, module in model.named_modules():
        if not isinstance(module, FieldEmbedding):
            continue
        dense = {id(p) for p in module.dense_parameters()}  # e.g. AMTL's MLPs: not tables
        for param_name, param in module.named_parameters():
            if id(param) in dense:
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            key = prefix + name
            if key not in source:
                tables = [k for k in source if "embedding" in k] or list(source)[:10]
                raise KeyError(
                    f"Checkpoint {path} has no parameter {key!r} to warm-start from; it has e.g. {tables}. "
                    "Both models must use the same embedding config (embedding=...)."
                )
            _copy_checked(
                param, source[key], name, "Use the same data and embedding config (e.g. embedding.dim)."
            )
            copied.append(name)
    if not copied:
        raise ValueError(f"Model {type(model).__name__} has no embedding tables to warm-start from {path}.")
    return copied


def load_model_weights(model: nn.Module, path: str | Path, prefix: str = "model.") -> list[str]:
    """Warm-start the **whole** model from the checkpoint at ``path``: every parameter and buffer
    of ``model`` whose name (under ``prefix``) the checkpoint has is copied; those it lacks are left
    as initialised (e.g. AMTL's width MLPs when warm-starting from a full-table run).

    A parameter present in both with different shapes is an error (the configs differ), and so is a
    checkpoint that supplies none of the model's parameters. Returns the copied names.
    """
    source = load_state_dict(path)
    copied: list[str] = []
    target = model.state_dict()
    for name, value in target.items():
        key = prefix + name
        if key not in source:
            continue
        _copy_checked(value, source[key], name, "Use the same data, model and embedding widths.")
        copied.append(name)
    params = {n for n, _ in model.named_parameters()}
    if not params & set(copied):
        raise ValueError(
            f"Checkpoint {path} supplies none of {type(model).__name__}'s parameters (under {prefix!r}): "
            "is it a checkpoint of the same model?"
        )
    return copied
