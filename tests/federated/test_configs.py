"""Every strategy, channel and device config composes with the federate entry and instantiates;
the federation also runs on MovieLens (clients = users by id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_lab.federated.channel import Channel
from recsys_lab.federated.devices import DeviceDistribution
from recsys_lab.runners.federate import instantiate_labelled, run
from recsys_lab.runners.stage import CONFIG_DIR
from tests.conftest import compose_train
from tests.data.rawfiles import data_overrides

CONF = Path(CONFIG_DIR)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("strategy", _options("strategy"))
@pytest.mark.parametrize("channel", _options("channel"))
def test_strategy_and_channel_configs_instantiate(
    hydra_ctx: None, tmp_path: Path, strategy: str, channel: str
) -> None:
    cfg = compose_train(tmp_path, f"strategy={strategy}", f"channel={channel}", config_name="federate")
    chan, label = instantiate_labelled(cfg.channel)
    assert isinstance(chan, Channel) and label == channel
    factory, label = instantiate_labelled(cfg.strategy)
    assert callable(factory) and label.startswith(strategy.split("_")[0])


@pytest.mark.parametrize("devices", _options("devices"))
def test_device_configs_instantiate(hydra_ctx: None, tmp_path: Path, devices: str) -> None:
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path, f"devices={devices}", config_name="federate")
    assert isinstance(instantiate(cfg.devices), DeviceDistribution)


def test_federation_of_movielens_users(hydra_ctx: None, tmp_path: Path) -> None:
    cfg = compose_train(
        tmp_path,
        "data=movielens",
        *data_overrides("movielens", tmp_path),
        "data.max_rows_per_file=2000",
        "fed.num_clients=4",
        "fed.clients_per_round=2",
        "fed.rounds=1",
        config_name="federate",
    )
    m = run(cfg)
    assert m["data"] == "movielens" and m["fed/rounds"] == 1 and 0.0 <= m["test/auc"] <= 1.0


def test_federation_of_synthetic_world_users(hydra_ctx: None, tmp_path: Path) -> None:
    cfg = compose_train(
        tmp_path,
        "data=synthetic_seq",
        "fed.num_clients=8",
        "fed.clients_per_round=4",
        "fed.rounds=1",
        config_name="federate",
    )
    m = run(cfg)
    assert m["fed/rounds"] == 1 and m["fed/num_clients"] == 8 and 0.0 <= m["test/auc"] <= 1.0
    assert "test/oracle_auc" in m  # the world's true probabilities
