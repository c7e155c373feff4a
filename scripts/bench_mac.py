"""Benchmark of the two MAC simulators: throughput and delay against the number of nodes
(saturated) and against the offered load (Bernoulli arrivals), beside Bianchi's analytical
saturation throughput (and its pair-resolving extension).

    python scripts/bench_mac.py                    # writes docs/results/federated_mac.{json,png}
    python scripts/bench_mac.py --slots 20000      # shorter runs

Throughput = share of time carrying delivered payload (a relayed pair carries two packets).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from recsys_lab.federated.mac import MacConfig, bianchi_throughput, simulate
from recsys_lab.runners.stage import write_json_atomic

NODES = (2, 5, 10, 20, 35, 50)
LOADS = (0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.4)
MACS = {"csma_ca": MacConfig(), "two_way_relay": MacConfig(pairing=True)}


def measure(slots: float, seed: int, load_nodes: int) -> dict:
    out: dict = {"nodes": list(NODES), "loads": list(LOADS), "load_nodes": load_nodes, "slots": slots}
    for name, cfg in MACS.items():
        sat = [simulate(cfg, n, np.random.default_rng(seed), max_slots=slots) for n in NODES]
        out[name] = {
            "saturated_throughput": [s.throughput for s in sat],
            "saturated_delay_slots": [s.mean_delay_slots for s in sat],
            "bianchi_throughput": [bianchi_throughput(cfg, n) for n in NODES],
        }
        if cfg.pairing:  # the pessimistic reading: the relay's broadcast takes a second airtime
            slow = MacConfig(pairing=True, pair_factor=2.0)
            out[name]["bianchi_throughput_pair_factor_2"] = [bianchi_throughput(slow, n) for n in NODES]
        by_load = []
        for load in LOADS:
            rate = load / (load_nodes * cfg.packet_slots)  # offered load = n λ L
            by_load.append(
                simulate(cfg, load_nodes, np.random.default_rng(seed), arrival_rate=rate, max_slots=slots)
            )
        out[name]["load_throughput"] = [s.throughput for s in by_load]
        out[name]["load_delay_slots"] = [s.mean_delay_slots for s in by_load]
    return out


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"csma_ca": "tab:blue", "two_way_relay": "tab:red"}
    for name, c in colours.items():
        d = data[name]
        axes[0].plot(data["nodes"], d["saturated_throughput"], "o", color=c, label=f"{name} simulated")
        axes[0].plot(data["nodes"], d["bianchi_throughput"], "-", color=c, label=f"{name} analytical")
        if "bianchi_throughput_pair_factor_2" in d:
            axes[0].plot(
                data["nodes"],
                d["bianchi_throughput_pair_factor_2"],
                "--",
                color=c,
                label=f"{name} analytical, pair 2L",
            )
        axes[1].plot(data["loads"], d["load_throughput"], "o-", color=c, label=name)
        axes[2].plot(data["loads"], d["load_delay_slots"], "o-", color=c, label=name)
    axes[1].plot(data["loads"], data["loads"], ":", color="grey", label="offered load")
    axes[0].set(xlabel="nodes (saturated)", ylabel="throughput", title="Saturation throughput")
    axes[1].set(
        xlabel="offered load n·λ·L", ylabel="throughput", title=f"Throughput, {data['load_nodes']} nodes"
    )
    axes[2].set(
        xlabel="offered load n·λ·L",
        ylabel="mean delay (slots)",
        yscale="log",
        title=f"Delay, {data['load_nodes']} nodes",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slots", type=float, default=50_000, help="simulated idle-slot times per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load-nodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/results/federated_mac"))
    args = parser.parse_args()
    start = time.time()
    data = measure(args.slots, args.seed, args.load_nodes)
    data["wall_s"] = time.time() - start
    data["command"] = (
        f"python scripts/bench_mac.py --slots {args.slots:g} --seed {args.seed} --load-nodes {args.load_nodes}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out.with_suffix(".json"), data)
    plot(data, args.out.with_suffix(".png"))
    print(json.dumps({k: data[k] for k in ("nodes", "wall_s")}))
    for name in MACS:
        print(name, [round(x, 3) for x in data[name]["saturated_throughput"]])


if __name__ == "__main__":
    main()
