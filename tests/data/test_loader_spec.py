"""The shared loader spec and ``data.size``: one spec per datamodule, sizes cap and never grow."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from recsys_lab.data.criteo import CriteoDataModule
from recsys_lab.data.datamodule import LoaderSpec, cap
from recsys_lab.data.synthetic import SyntheticDataModule, SyntheticSeqDataModule, WorldSpec
from recsys_lab.runners.stage import CONFIG_DIR
from tests.conftest import compose_train


def test_loader_spec_checks_its_values_and_names_the_key():
    with pytest.raises(ValueError, match=r"batch_size=0 must be >= 1 \(data.batch_size\)"):
        LoaderSpec(0, 8)
    with pytest.raises(ValueError, match="num_workers"):
        LoaderSpec(8, 8, num_workers=-1)
    spec = LoaderSpec(1000, 5000, 2)
    assert spec.sized("full") == spec
    assert spec.sized("tiny") == LoaderSpec(256, 1024, 2)
    assert spec.sized("fast_dev_run") == LoaderSpec(128, 256, 2)
    assert LoaderSpec(64, 100).sized("tiny") == LoaderSpec(64, 100)  # smaller values stay


def test_cap_keeps_full_and_bounds_none():
    assert cap(None, "full", 5, 2) is None
    assert cap(None, "tiny", 5, 2) == 5
    assert cap(3, "fast_dev_run", 5, 2) == 2 and cap(1, "fast_dev_run", 5, 2) == 1


def test_every_datamodule_maps_its_size():
    syn = SyntheticDataModule(num_train=10_000, num_val=50, size="tiny")
    assert syn.sizes == {"train": 4096, "val": 50, "test": 1024} and syn.loader == LoaderSpec(256, 1024)
    world = SyntheticSeqDataModule(preset="small", max_history=None, size="fast_dev_run")
    assert world.spec == WorldSpec.from_preset("tiny", {}) and world.max_history == 32
    assert world.loader == LoaderSpec(128, 256)
    cached = CriteoDataModule(path="x", cache_dir="y", size="tiny")
    assert (cached.max_rows_per_file, cached.shuffle_buffer, cached.loader) == (
        20_000,
        10_000,
        LoaderSpec(256, 1024),
    )
    with pytest.raises(ValueError, match="size='huge' is unknown"):
        CriteoDataModule(path="x", cache_dir="y", size="huge")  # type: ignore[arg-type]


@pytest.mark.usefixtures("hydra_ctx")
def test_debug_modes_set_data_size_and_command_line_values_below_it_win(tmp_path):
    assert not (Path(CONFIG_DIR) / "debug" / "data").exists()
    cfg = compose_train(tmp_path, "debug=tiny", "data.batch_size=64", "data.num_train=2048")
    assert cfg.data.size == "tiny"
    dm = instantiate(cfg.data)
    assert (dm.loader.batch_size, dm.sizes["train"], dm.sizes["val"]) == (64, 2048, 1024)
    wrapped = instantiate(compose_train(tmp_path, "data=pair_features", "debug=fast_dev_run").data)
    assert wrapped.size == wrapped.inner.size == "fast_dev_run" and wrapped.loader == LoaderSpec(128, 256)
