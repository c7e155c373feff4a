"""``recsys-export`` / ``python -m recsys_lab.export``: a trained model as an ONNX file or a
``torch.export`` program, for serving.

The exported graph is the model's eval path (no dropout; APG's over-parameterised factors merged
first) on the tensors of :meth:`Batch.for_serving` — labels, privileged data and teacher
predictions are not inputs:

================  =============  ============================================================
input             dtype, shape   meaning
================  =============  ============================================================
``dense``         float32 [B, D]  numeric features (D may be 0)
``sparse``        int64 [B, F]    field-local categorical ids (0 = OOV, 1 = missing), schema order
``hist_values``   int64 [N, E]    sequence models only: ``Batch.history`` packed without padding
``hist_actions``  int64 [N]       (see :class:`~recsys_lab.data.batch.Jagged`)
``hist_timestamps`` int64 [N]
``hist_offsets``  int64 [B + 1]
================  =============  ============================================================

The output ``prob`` is float32 ``[B]``, the click probability; B (and N) are dynamic. A JSON file
beside the export (``<output>.json``) records the inputs, the schema and the check: by default
the exported model is run (ONNX Runtime, or the exported program) on a real batch of the run's
test split and must match the eager model within ``tolerance``. A model whose operators cannot
be exported fails with an error naming the model and the first failing step: the sequence models
and ``embedding=amtl`` (data-dependent shapes), and ``embedding=binary_hash`` to ONNX (no bit
shifts; its ``torch_export`` works).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.cached import CachedDataModule
from recsys_lab.layers.apg import merge_apg
from recsys_lab.models.base import CTRModel
from recsys_lab.runners import stage
from recsys_lab.runners.common import TrainedRun, load_trained
from recsys_lab.runners.stage import CONFIG_DIR, write_json_atomic

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torch_export")
TABULAR_INPUTS = ("dense", "sparse")
HISTORY_INPUTS = ("hist_values", "hist_actions", "hist_timestamps", "hist_offsets")


class ExportError(RuntimeError):
    """The model cannot be exported in the format asked for."""


class ServingModel(nn.Module):
    """A model's eval path on plain tensors: ``(dense, sparse[, history...]) -> prob [B]``.

    Args:
        model: the trained model (eval mode).
        history: whether the model reads ``Batch.history`` (sequence models).
    """

    def __init__(self, model: CTRModel, history: bool) -> None:
        super().__init__()
        self.model = model
        self.history = history

    @property
    def input_names(self) -> tuple[str, ...]:
        return TABULAR_INPUTS + (HISTORY_INPUTS if self.history else ())

    def forward(
        self,
        dense: Tensor,
        sparse: Tensor,
        hist_values: Tensor | None = None,
        hist_actions: Tensor | None = None,
        hist_timestamps: Tensor | None = None,
        hist_offsets: Tensor | None = None,
    ) -> Tensor:
        """``dense`` float32 ``[B, D]``, ``sparse`` int64 ``[B, F]`` (+ the four Jagged tensors of
        sequence models) -> float32 ``[B]`` click probabilities."""
        history = None
        if self.history:
            assert hist_values is not None and hist_actions is not None
            assert hist_timestamps is not None and hist_offsets is not None
            history = Jagged(hist_values, hist_actions, hist_timestamps, hist_offsets)
        batch = Batch(
            dense=dense, sparse=sparse, labels={"click": dense.new_zeros(sparse.shape[0])}, history=history
        )
        return torch.sigmoid(self.model(batch))

    def inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        """The serving inputs of ``batch`` (``batch.for_serving()`` as tensors)."""
        b = batch.for_serving()
        tensors: tuple[Tensor, ...] = (b.dense.float(), b.sparse.long())
        if self.history:
            if b.history is None:
                raise ValueError("this model reads Batch.history, but the batch has none")
            h = b.history
            tensors += (h.values.long(), h.actions.long(), h.timestamps.long(), h.offsets.long())
        return tensors

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        shapes: tuple[dict[int, Any], ...] = ({0: batch}, {0: batch})
        if self.history:
            events = torch.export.Dim("events", min=1, max=1 << 26)
            shapes += ({0: events}, {0: events}, {0: events}, {0: batch + 1})
        return shapes


@dataclass
class Exported:
    """What :func:`export` wrote: the file, its metadata, and the check's largest difference."""

    path: Path
    meta: dict[str, Any]
    max_abs_diff: float | None


def serving_model(model: CTRModel) -> ServingModel:
    """``model`` prepared for serving (in place): eval mode, APG factors merged, on the CPU."""
    merged = merge_apg(model.cpu().eval())
    assert isinstance(merged, CTRModel)
    return ServingModel(merged, history=bool(merged.schema.sequence)).eval()


def real_batch(run: TrainedRun, rows: int) -> Batch:
    """The first ``rows`` rows of the run's test split (generated first for synthetic data)."""
    if not isinstance(run.data, CachedDataModule):
        run.data.setup()
    batch = next(iter(run.data.test_dataloader()))
    return batch.select(torch.arange(min(rows, len(batch))))


def _fail(model: nn.Module, fmt: str, err: BaseException) -> ExportError:
    root = err
    while root.__cause__ is not None:  # the exporters wrap the failing step's error
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    why = ""
    if isinstance(model, CTRModel) and model.schema.sequence:
        why = (
            " Sequence models read Batch.history packed without padding and size their padded blocks from the "
            "data (e.g. the longest history of the batch), a data-dependent shape the exporters cannot trace."
        )
    return ExportError(
        f"{type(model).__name__} cannot be exported to {fmt}: {type(root).__name__}: {first[:300]}.{why} "
        "What exports: the tabular models (DNN, DeepFM, DCNv2, RankMixer, UniMixer, UniMixing-Lite, FM block, "
        "with or without APG) with embedding=full or hashed to both formats, with embedding=binary_hash to "
        "torch_export only (ONNX has no bit shifts); embedding=amtl and the sequence models do not export. "
        f"{'Try format=torch_export, or s' if fmt == 'onnx' else 'S'}erve this model eagerly (recsys-predict, "
        "or the model itself) instead."
    )


def export_program(wrapper: ServingModel, example: tuple[Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` of the serving model with a dynamic batch size."""
    with torch.no_grad():
        try:
            return torch.export.export(wrapper, example, dynamic_shapes=wrapper.dynamic_shapes())
        except Exception as err:
            raise _fail(wrapper.model, "torch_export", err) from err


def export_onnx(wrapper: ServingModel, example: tuple[Tensor, ...], path: Path) -> None:
    """ONNX (through ``torch.export``, opset of the installed exporter) with a dynamic batch size."""
    with torch.no_grad():
        try:
            program = torch.onnx.export(
                wrapper,
                example,
                dynamo=True,
                dynamic_shapes=wrapper.dynamic_shapes(),
                input_names=list(wrapper.input_names),
                output_names=["prob"],
                verbose=False,
            )
        except Exception as err:
            raise _fail(wrapper.model, "onnx", err) from err
    assert program is not None
    program.save(str(path))


def run_onnx(path: Path, inputs: tuple[Tensor, ...], names: tuple[str, ...], threads: int = 1) -> np.ndarray:
    """Score ``inputs`` with ONNX Runtime (CPU, ``threads`` intra-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]


SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}


def export_serving(
    wrapper: ServingModel,
    batch: Batch,
    fmt: str,
    output: Path,
    check: bool = True,
    tolerance: float = 1e-5,
) -> Exported:
    """Export ``wrapper`` to ``output`` in format ``fmt``, traced on ``batch`` and checked against
    the eager model on it (see the module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is unknown; use one of {list(FORMATS)}")
    if output.suffix != SUFFIXES[fmt]:
        raise ValueError(f"output={output}: a {fmt} export is written to a file ending in {SUFFIXES[fmt]}")
    example = wrapper.inputs(batch)
    with stage.atomic_path(output) as tmp:
        if fmt == "torch_export":
            torch.export.save(export_program(wrapper, example), str(tmp))
        else:
            export_onnx(wrapper, example, tmp)
    diff = None
    if check:
        with torch.no_grad():
            eager = wrapper(*example).numpy()
        if fmt == "onnx":
            got = run_onnx(output, example, wrapper.input_names)
        else:
            got = torch.export.load(str(output)).module()(*example).detach().numpy()
        diff = float(np.max(np.abs(got - eager))) if len(eager) else 0.0
        if not diff <= tolerance:
            raise ExportError(
                f"The {fmt} export of {type(wrapper.model).__name__} differs from the eager model by {diff:.3g} "
                f"(> tolerance={tolerance}) on {len(eager)} test rows; it was written to {output} but should not "
                "be served."
            )
    meta = {
        "format": fmt,
        "model": type(wrapper.model).__name__,
        "inputs": {
            n: {
                "dtype": str(t.dtype).removeprefix("torch."),
                "shape": [
                    "B + 1" if n == "hist_offsets" else "N" if n.startswith("hist") else "B",
                    *list(t.shape[1:]),
                ],
            }
            for n, t in zip(wrapper.input_names, example)
        },
        "output": {"prob": {"dtype": "float32", "shape": ["B"]}},
        "schema": wrapper.model.schema.to_dict(),
        "check": {"rows": len(batch), "max_abs_diff": diff, "tolerance": tolerance} if check else None,
        "torch": torch.__version__,
    }
    return Exported(output, meta, diff)


def export(
    run: TrainedRun,
    fmt: str,
    output: Path,
    check: bool = True,
    check_rows: int = 256,
    tolerance: float = 1e-5,
) -> Exported:
    """Export ``run``'s model (checked on a batch of its test split); write ``<output>.json``."""
    out = export_serving(serving_model(run.model), real_batch(run, check_rows), fmt, output, check, tolerance)
    out.meta["ckpt_path"] = str(run.ckpt_path)
    write_json_atomic(output.with_name(output.name + ".json"), out.meta)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    stage.route_framework_logs()
    stage.set_threads(cfg)
    run = load_trained(cfg.ckpt_path)
    out = export(
        run,
        str(cfg.format),
        Path(str(cfg.output)).expanduser(),
        check=bool(cfg.check),
        check_rows=int(cfg.check_batch_size),
        tolerance=float(cfg.tolerance),
    )
    diff = (
        ""
        if out.max_abs_diff is None
        else f"; max |exported - eager| = {out.max_abs_diff:.2e} on a test batch"
    )
    print(
        f"{out.meta['model']} exported to {out.path} ({cfg.format}){diff}; inputs: {json.dumps(out.meta['inputs'])}"
    )
