"""``python -m recsys_lab.federate``: one federated run (Flower strategies over simulated devices
and a simulated wireless uplink), composed by Hydra like training.

Examples::

    python -m recsys_lab.federate strategy=fedavg channel=ideal
    python -m recsys_lab.federate strategy=befl channel=two_way_relay
    python -m recsys_lab.federate strategy=fedmho strategy.fusion=md

:func:`run` builds the federation, runs the Flower ServerApp against the ClientApps, tests the
global model and writes ``runs/federate/<run id>/metrics.json`` (``test/auc``, ``test/logloss``,
``fed/rounds``, ``fed/energy_total_j``, ``fed/energy_std_j``, ``fed/clients_dropped``,
``fed/uplink_s``, ...) and ``rounds.json`` (per-round selection, energy and uplink time).
``strategy=central`` (:class:`~recsys_lab.federated.central.CentralReference`) trains the same
model on the pooled rows of all clients instead: the reference row of every comparison. See
docs/federated.md.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys_lab.data.datamodule import DataModule, TableSplit
from recsys_lab.federated.central import CentralReference
from recsys_lab.federated.client import Federation, LocalTraining, VaeSpec, make_client_app
from recsys_lab.federated.data import (
    collect_split,
    evaluate,
    partition_by_user,
    predict,
    subset,
)
from recsys_lab.federated.devices import DeviceDistribution
from recsys_lab.federated.fedmho import FedMHO, ensemble_probs
from recsys_lab.federated.grid import run_in_process
from recsys_lab.federated.strategies import EnergyAwareFedAvg
from recsys_lab.metrics import auc, logloss
from recsys_lab.runners import stage
from recsys_lab.runners.stage import CONFIG_DIR
from recsys_lab.runners.train import build_model

Metrics = dict[str, Any]


def instantiate_labelled(node: DictConfig) -> tuple[Any, str]:
    """Instantiate a config group entry that carries a display ``label`` (not a constructor argument)."""
    conf = OmegaConf.to_container(node, resolve=True)
    assert isinstance(conf, dict)
    label = str(conf.pop("label", ""))
    return instantiate(conf), label


def run_flower_simulation(server: ServerApp, client_app: Any, num_nodes: int) -> None:
    """Run the apps under Flower's own simulation runtime (Ray backend, one CPU per ClientApp).

    Needs Flower's full dependency set (``pip install "flwr[simulation]==1.42.0"``: Ray,
    SQLAlchemy >= 2, FastAPI, rich < 15), which clashes with this project's pins, so it lives in
    another environment; see docs/federated.md.
    """
    try:
        from flwr.simulation import run_simulation
    except ImportError as err:
        raise ImportError(
            f"runtime=flower_simulation needs Flower's simulation extra ({err}); install "
            '"flwr[simulation]==1.42.0" in a separate environment, or use runtime=inprocess.'
        ) from err
    # Flower's node_config carries "partition-id" for each simulated node, as the ClientApp expects.
    run_simulation(
        server_app=server,
        client_app=client_app,
        num_supernodes=num_nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}},
    )


def build_federation(cfg: DictConfig) -> tuple[Federation, DataModule, TableSplit, TableSplit]:
    """(federation, datamodule, val split, test split) of a composed ``federate`` config."""
    datamodule: DataModule = instantiate(cfg.data)
    datamodule.setup()
    train = collect_split(datamodule, "train")
    val, test = collect_split(datamodule, "val"), collect_split(datamodule, "test")
    rng = np.random.default_rng(cfg.seed)
    parts = partition_by_user(train, cfg.fed.num_clients, cfg.fed.partition_alpha, rng)
    devices: DeviceDistribution = instantiate(cfg.devices)
    profiles = devices.sample(cfg.fed.num_clients, rng)
    schema = datamodule.schema

    def model_factory() -> Any:
        return build_model(cfg, schema)

    fed = Federation(
        schema=schema,
        clients=[subset(train, rows) for rows in parts],
        profiles=profiles,
        devices=devices,
        model_factory=model_factory,
        local=LocalTraining(**cfg.fed.local),
        vae=VaeSpec(**cfg.fed.vae),
        seed=int(cfg.seed),
    )
    return fed, datamodule, val, test


def run(cfg: DictConfig) -> Metrics:
    output_dir = Path(cfg.paths.output_dir)
    stage.begin(cfg, output_dir)

    fed, datamodule, val, test = build_federation(cfg)
    channel, channel_label = instantiate_labelled(cfg.channel)
    torch.manual_seed(cfg.seed)
    model = fed.model_factory()

    def evaluate_val(arrays: ArrayRecord) -> dict[str, float]:
        m = fed.model_factory()
        m.load_state_dict(arrays.to_torch_state_dict())
        return evaluate(m, val)

    strategy_factory, strategy_label = instantiate_labelled(cfg.strategy)
    strategy = strategy_factory(fed=fed, channel=channel, evaluate=evaluate_val, seed=int(cfg.seed))
    extra: Metrics = {}
    if isinstance(strategy, CentralReference):
        strategy.fit(model)
    else:
        assert isinstance(strategy, EnergyAwareFedAvg)
        rounds = 1 if strategy.one_shot else int(cfg.fed.rounds)
        server = ServerApp()
        final: dict[str, ArrayRecord] = {}

        @server.main()
        def main(grid: Grid, context: Context) -> None:
            result = strategy.start(
                grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=rounds
            )
            final["arrays"] = result.arrays

        client_app = make_client_app(fed)
        runtime = str(cfg.get("runtime", "inprocess"))
        if runtime == "inprocess":
            run_in_process(server, client_app, [{"partition-id": k} for k in range(fed.num_clients)])
        elif runtime == "flower_simulation":
            run_flower_simulation(server, client_app, fed.num_clients)
        else:
            raise ValueError(f"runtime={runtime!r}: use inprocess or flower_simulation")
        if final.get("arrays") is not None and len(final["arrays"]) > 0:
            model.load_state_dict(final["arrays"].to_torch_state_dict())
        (output_dir / "rounds.json").write_text(json.dumps([asdict(r) for r in strategy.rounds], indent=1))
        if isinstance(strategy, FedMHO) and strategy.classifiers:
            singles = {c: evaluate(m, test) for c, m in strategy.classifiers.items()}
            probs = ensemble_probs(list(strategy.classifiers.values()), test)
            extra.update(
                {
                    "fed/best_client_test_auc": max(s["auc"] for s in singles.values()),
                    "fed/num_classifiers": len(singles),
                    "fed/num_vaes": int((~strategy.rich).sum()) if strategy.method == "fedmho" else 0,
                    "test/ensemble_auc": auc(probs, test.labels["click"]),
                    "test/ensemble_logloss": logloss(probs, test.labels["click"]),
                }
            )
        policy = getattr(strategy.selector, "imitation_agreement", None)
        if policy is not None:
            extra["fed/imitation_agreement"] = float(policy)

    metrics: Metrics = {"model": type(model).__name__, "data": datamodule.name, "seed": int(cfg.seed)}
    metrics.update({f"val/{k}": v for k, v in evaluate(model, val).items()})
    p_test = predict(model, test)
    metrics.update(
        {"test/auc": auc(p_test, test.labels["click"]), "test/logloss": logloss(p_test, test.labels["click"])}
    )
    # Per-row test predictions, for paired bootstrap intervals in reports (scripts/results_federated.py).
    np.save(output_dir / "test_predictions.npy", p_test.numpy().astype(np.float32))
    for split in ("val", "test"):
        metrics.update({f"{split}/{k}": v for k, v in datamodule.oracle_metrics(split).items()})
    metrics.update(strategy.summary_metrics())
    metrics.update(extra)
    metrics.update(
        {
            "fed/num_clients": fed.num_clients,
            "fed/strategy": strategy_label,
            "fed/channel": channel_label,
            "params/total": sum(p.numel() for p in model.parameters()),
            "output_dir": str(output_dir),
        }
    )
    stage.write_metrics(output_dir, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="federate")
def main(cfg: DictConfig) -> float | None:
    """``python -m recsys_lab.federate`` / ``recsys-federate``: returns ``optimized_metric``."""
    stage.route_framework_logs()
    logging.getLogger("flwr").setLevel(logging.WARNING if cfg.get("quiet_flower", True) else logging.INFO)
    metrics = run(cfg)
    print({k: v for k, v in metrics.items() if k.startswith(("test/", "fed/"))})
    value = metrics.get(cfg.get("optimized_metric") or "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)
