"""``python -m recsys_lab.federate``: one federated run (Flower strategies over simulated devices
and a simulated wireless uplink), composed by Hydra like training.

Examples::

    python -m recsys_lab.federate strategy=fedavg channel=ideal
    python -m recsys_lab.federate strategy=befl channel=two_way_relay
    python -m recsys_lab.federate strategy=fedmho strategy.fusion=md

Writes ``runs/federate/<run id>/metrics.json`` (``test/auc``, ``test/logloss``, ``fed/rounds``,
``fed/energy_total_j``, ``fed/energy_std_j``, ``fed/clients_dropped``, ``fed/uplink_s``, ...) and
``rounds.json`` (per-round selection, energy and uplink time). See docs/federated.md.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

from recsys_lab.runners.stage import route_framework_logs  # also registers the run-folder resolvers

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="federate")
def main(cfg: DictConfig) -> float | None:
    from recsys_lab.federated.run import run

    route_framework_logs()
    logging.getLogger("flwr").setLevel(logging.WARNING if cfg.get("quiet_flower", True) else logging.INFO)
    metrics = run(cfg)
    print({k: v for k, v in metrics.items() if k.startswith(("test/", "fed/"))})
    value = metrics.get(cfg.get("optimized_metric") or "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


if __name__ == "__main__":
    main()
