"""recsys-export: ONNX and torch.export programs of the serving path match the eager model within
1e-5 on real batches (ONNX Runtime and the exported program both run), at any batch size; models
whose operators cannot be exported fail with a message naming them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from recsys_lab.layers.apg import APGLinear
from recsys_lab.runners.common import load_trained
from recsys_lab.runners.export import (
    ExportError,
    ServingModel,
    export,
    export_serving,
    main,
    real_batch,
    run_onnx,
    serving_model,
)
from recsys_lab.runners.train import CONFIG_DIR, build
from tests.conftest import compose_train
from tests.runners.conftest import TINY, train_tiny


@pytest.fixture(scope="module")
def dnn_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("dnn"), "model=dnn")[1]


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_trained_checkpoint_export_matches_eager_at_any_batch_size(dnn_run, tmp_path, fmt):
    run = load_trained(dnn_run)
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    result = export(run, fmt, out, check_rows=256)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["check"]["rows"] == 256 and meta["model"] == "DNN"
    assert meta["inputs"]["sparse"] == {"dtype": "int64", "shape": ["B", run.model.schema.num_categorical]}
    # Other batch sizes than the traced one, from another part of the test split.
    batch = real_batch(run, 1024)
    wrapper = ServingModel(run.model, history=False)
    for rows in (1, 3, 1024):
        inputs = wrapper.inputs(batch.select(torch.arange(1024 - rows, 1024)))
        with torch.no_grad():
            eager = wrapper(*inputs).numpy()
        if fmt == "onnx":
            got = run_onnx(out, inputs, wrapper.input_names)
        else:
            got = torch.export.load(str(out)).module()(*inputs).detach().numpy()
        assert got.shape == (rows,)
        np.testing.assert_allclose(got, eager, rtol=0, atol=1e-5)


def _built(tmp_path: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose_train(tmp_path, *TINY, *overrides)
    GlobalHydra.instance().clear()
    data, model, _ = build(cfg)
    batch = next(iter(data.test_dataloader()))
    return model.eval(), batch.select(torch.arange(128))


TABULAR = [
    pytest.param(("model=dcnv2",), id="dcnv2"),
    pytest.param(("experiment=apg_dnn",), id="apg_dnn", marks=pytest.mark.slow),  # fast: the merged test
    pytest.param(("model=rankmixer",), id="rankmixer", marks=pytest.mark.slow),
    pytest.param(("model=deepfm",), id="deepfm", marks=pytest.mark.slow),
    pytest.param(("model=unimixer",), id="unimixer", marks=pytest.mark.slow),
    pytest.param(("model=unimixer_lite",), id="unimixer_lite", marks=pytest.mark.slow),
    pytest.param(("model=fm_block",), id="fm_block", marks=pytest.mark.slow),
    pytest.param(("experiment=apg_dcnv2",), id="apg_dcnv2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides", TABULAR)
def test_tabular_models_export_to_both_formats(tmp_path, overrides):
    """Randomly initialised models (the numerics do not need training) on a real synthetic batch."""
    model, batch = _built(tmp_path, *overrides)
    wrapper = ServingModel(model, history=False).eval()
    for fmt, name in (("torch_export", "m.pt2"), ("onnx", "m.onnx")):
        result = export_serving(wrapper, batch, fmt, tmp_path / name)
        assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5, fmt


def test_apg_is_exported_with_merged_factors(tmp_path):
    model, batch = _built(tmp_path, "experiment=apg_dnn")
    apg = [m for m in model.modules() if isinstance(m, APGLinear)]
    assert apg and not any(m.merged for m in apg)
    with torch.no_grad():
        before = torch.sigmoid(model(batch))
    wrapper = serving_model(model)
    assert all(m.merged for m in apg)
    result = export_serving(wrapper, batch, "torch_export", tmp_path / "apg.pt2")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    np.testing.assert_allclose(wrapper(*wrapper.inputs(batch)).detach(), before, rtol=0, atol=1e-5)


def test_sequence_model_fails_with_a_clear_message(tmp_path):
    model, batch = _built(tmp_path, "data=synthetic_seq", "model=din")
    wrapper = ServingModel(model, history=True).eval()
    with pytest.raises(ExportError, match=r"DIN cannot be exported to torch_export: .*data-dependent shape"):
        export_serving(wrapper, batch, "torch_export", tmp_path / "din.pt2")


def test_binary_hash_embeddings_export_to_torch_export_but_not_onnx(tmp_path):
    model, batch = _built(tmp_path, "model=dnn", "embedding=binary_hash")
    wrapper = serving_model(model)
    assert export_serving(wrapper, batch, "torch_export", tmp_path / "bh.pt2").max_abs_diff <= 1e-5
    with pytest.raises(
        ExportError, match=r"DNN cannot be exported to onnx: .*__rshift__.*Try format=torch_export"
    ):
        export_serving(wrapper, batch, "onnx", tmp_path / "bh.onnx")


def test_wrong_suffix_and_format_are_refused(dnn_run, tmp_path):
    run = load_trained(dnn_run)
    with pytest.raises(ValueError, match=r"ending in \.pt2"):
        export(run, "torch_export", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="format='tflite' is unknown"):
        export(run, "tflite", tmp_path / "m.tflite")


def test_hydra_entry_exports_onnx(dnn_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.onnx"
    args = [f"ckpt_path={dnn_run}", "format=onnx", f"output={out}", f"paths.log_dir={tmp_path}"]
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["recsys_lab.export", *args])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    assert out.is_file() and Path(f"{out}.json").is_file()
    assert "max |exported - eager|" in capsys.readouterr().out
