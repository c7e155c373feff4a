"""Run the federated studies (small federations, 3 seeds) and write docs/results/federated.md.

    python scripts/results_federated.py --run      # run what is missing (resumable), then write the page
    python scripts/results_federated.py            # write the page from the runs there are

Runs go to runs/federated_results/<study>/<row>/seed<k>/ (each a `python -m recsys_lab.federate`
run folder). The MAC rows read docs/results/federated_mac.json (scripts/bench_mac.py).

Intervals: a paired bootstrap over test rows (same test split per seed for every row), pooled over
the 3 seeds — the effect's 2.5–97.5 % quantiles include both test-sampling and seed noise.
Verdicts: **reproduced** when the mean effect has the claimed sign and at least half the claimed
size (and, for accuracy, its interval excludes 0); **direction only** when the sign holds but the
size or the interval does not; **not reproduced** otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recsys_lab.metrics import auc

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "federated_results"
SEEDS = (0, 1, 2)
BEFL_COMMON = (
    "fed.rounds=10",
    "fed.clients_per_round=8",
    "devices.battery_min_j=5",
    "devices.battery_max_j=50",
)
STUDIES: dict[str, dict[str, tuple[str, ...]]] = {
    "befl": {
        "fedavg": ("strategy=fedavg", *BEFL_COMMON),
        "befl_heuristic": ("strategy=befl_heuristic", *BEFL_COMMON),
        "befl": ("strategy=befl", *BEFL_COMMON),
    },
    "channel": {
        "fedavg_csma_ca": ("strategy=fedavg", "channel=csma_ca", *BEFL_COMMON),
        "fedavg_two_way_relay": ("strategy=fedavg", "channel=two_way_relay", *BEFL_COMMON),
    },
    "fedmho": {
        "fedmho_sd": ("strategy=fedmho", "strategy.fusion=sd"),
        "fedmho_md": ("strategy=fedmho", "strategy.fusion=md"),
        "fedmho_plain": ("strategy=fedmho", "strategy.fusion=plain"),
        "oneshot_fedavg": ("strategy=oneshot_fedavg",),
        "ensemble_distill": ("strategy=ensemble_distill",),
        "central": ("strategy=central",),
    },
}
FEDMHO_COMMON = ("strategy.local_epochs=5",)


def run_dir(study: str, row: str, seed: int) -> Path:
    return RUNS / study / row / f"seed{seed}"


def command(study: str, row: str, seed: int) -> list[str]:
    extra = FEDMHO_COMMON if study == "fedmho" and row != "central" else ()
    return [
        "-m",
        "recsys_lab.federate",
        *STUDIES[study][row],
        *extra,
        f"seed={seed}",
        f"hydra.run.dir={run_dir(study, row, seed)}",
    ]


def run_missing() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for study, rows in STUDIES.items():
        for row in rows:
            for seed in SEEDS:
                out = run_dir(study, row, seed)
                if (out / "metrics.json").is_file():
                    continue
                start = time.time()
                proc = subprocess.run(
                    [sys.executable, *command(study, row, seed)],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    print(proc.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(f"run failed: {study}/{row}/seed{seed}")
                (out / "wall_s.txt").write_text(f"{time.time() - start:.1f}\n")
                print(f"{study}/{row}/seed{seed}: {time.time() - start:.0f}s", flush=True)


def load(study: str, row: str) -> list[dict]:
    out = []
    for seed in SEEDS:
        path = run_dir(study, row, seed) / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            m["_dir"] = str(path.parent)
            out.append(m)
    return out


def _labels(seed_dir: Path) -> torch.Tensor:
    """Test labels of a seed: regenerated from the run's resolved config (same for every row)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recsys_lab.federated.data import collect_split

    cfg = OmegaConf.load(seed_dir / "config.yaml")
    dm = instantiate(cfg.data)
    dm.setup()
    return collect_split(dm, "test").labels["click"]


_LABELS: dict[int, torch.Tensor] = {}


def paired_auc_effect(a: list[dict], b: list[dict], draws: int = 200) -> tuple[float, float, float]:
    """Mean relative AUC change of ``a`` over ``b`` (per seed, averaged) and its bootstrap interval."""
    rng = np.random.default_rng(0)
    effects, samples = [], []
    for ma, mb in paired(a, b):
        seed = int(ma["seed"])
        if seed not in _LABELS:
            _LABELS[seed] = _labels(Path(ma["_dir"]))
        y = _LABELS[seed]
        pa = torch.from_numpy(np.load(Path(ma["_dir"]) / "test_predictions.npy"))
        pb = torch.from_numpy(np.load(Path(mb["_dir"]) / "test_predictions.npy"))
        effects.append(auc(pa, y) / auc(pb, y) - 1)
        n = len(y)
        for _ in range(draws):
            idx = torch.from_numpy(rng.integers(0, n, n))
            samples.append(auc(pa[idx], y[idx]) / auc(pb[idx], y[idx]) - 1)
    lo, hi = np.quantile(samples, [0.025, 0.975])
    return float(np.mean(effects)), float(lo), float(hi)


def mean_sd(rows: list[dict], key: str) -> str:
    if any(key not in r for r in rows):
        return "–"
    v = np.array([r[key] for r in rows], dtype=float)
    return f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0:.2g}"


def verdict(
    effect: float, claimed: float, interval: tuple[float, float] | None = None, sized: bool = True
) -> str:
    """``claimed``: the claimed effect (only its sign counts when ``sized`` is False: no figure claimed)."""
    if np.sign(effect) != np.sign(claimed) or effect == 0:
        return "not reproduced"
    big = not sized or abs(effect) >= abs(claimed) / 2
    sure = interval is None or (interval[0] > 0 if claimed > 0 else interval[1] < 0)
    return "reproduced" if big and sure else "direction only"


def table(rows: dict[str, list[dict]], keys: list[str]) -> list[str]:
    lines = ["| row | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, runs in rows.items():
        if runs:
            lines.append(f"| {name} | {len(runs)} | " + " | ".join(mean_sd(runs, k) for k in keys) + " |")
    return lines


def paired(a: list[dict], b: list[dict]) -> list[tuple[dict, dict]]:
    """Runs of ``a`` and ``b`` with the same seed."""
    by_seed = {int(y["seed"]): y for y in b}
    return [(x, by_seed[int(x["seed"])]) for x in a if int(x["seed"]) in by_seed]


def rel(a: list[dict], b: list[dict], key: str, fn=lambda x: x) -> float:
    """Mean over the shared seeds of fn(a)/fn(b) - 1."""
    return float(np.mean([fn(x[key]) / fn(y[key]) - 1 for x, y in paired(a, b)]))


def write_page(path: Path) -> None:
    befl = {r: load("befl", r) for r in STUDIES["befl"]}
    chan = {r: load("channel", r) for r in STUDIES["channel"]}
    chan = {"fedavg_ideal": befl["fedavg"], **chan}
    mho = {r: load("fedmho", r) for r in STUDIES["fedmho"]}
    walls = [float(p.read_text()) for p in RUNS.glob("*/*/seed*/wall_s.txt")]
    lines = [
        "# Federated on-device CTR training — results",
        "",
        "Generated by `python scripts/results_federated.py --run` (the MAC rows by `python scripts/bench_mac.py`).",
        "Do not edit by hand. Models and decisions: [docs/federated.md](../federated.md).",
        "",
        "**Budget (reduced, on a shared 2-core CPU machine).** Synthetic data (`fed_data/synthetic.yaml`:",
        "200 users, 20k training rows, 20k test rows), 32 devices (clients = groups of users, non-IID),",
        "DNN [64, 32]. BEFL/channel studies: 10 rounds of 8 clients, batteries 5–50 J (so that batteries",
        "run out). FedMHO: one round, 16 classifiers + 16 VAEs, 5 local epochs, default batteries 20–200 J.",
        "3 seeds (0, 1, 2) each;",
        f"{len(walls)} runs, {sum(walls) / 60:.0f} min of wall time in all. The papers' claims come from",
        "image benchmarks with 100s of rounds; these runs test the mechanisms at a small scale, not the",
        "papers' numbers.",
        "",
        "Intervals: paired bootstrap over test rows (200 draws per seed, pooled over seeds), 95 %.",
        "Verdict: **reproduced** = claimed sign and at least half the claimed size (accuracy: interval",
        "excluding 0; a claim without a figure: its sign, and for accuracy the interval); **direction",
        "only** = claimed sign only; **not reproduced** = otherwise. The row shown as 'FedMHO' is the",
        "better of MD and SD by mean test AUC — chosen after seeing the runs, so read it as such.",
        "",
        "## Claims",
        "",
        "| claim | measured (mean of 3 seeds) | verdict |",
        "|---|---|---|",
    ]
    claims: list[tuple[str, str, str]] = []
    if befl["befl"] and befl["fedavg"] and befl["befl_heuristic"]:
        for name in ("befl", "befl_heuristic"):
            eff, lo, hi = paired_auc_effect(befl[name], befl["fedavg"])
            claims.append(
                (
                    f"{name} vs FedAvg: accuracy (AUC) +1.6 %",
                    f"{100 * eff:+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                    verdict(eff, 0.016, (lo, hi)),
                )
            )
            var = rel(befl[name], befl["fedavg"], "fed/energy_std_j", lambda x: x**2)
            claims.append(
                (f"{name} vs FedAvg: energy variance −72.7 %", f"{100 * var:+.1f} %", verdict(var, -0.727))
            )
            tot = rel(befl[name], befl["fedavg"], "fed/energy_total_j")
            claims.append(
                (f"{name} vs FedAvg: total energy −28.2 %", f"{100 * tot:+.1f} %", verdict(tot, -0.282))
            )
            drop = np.mean([r["fed/clients_dropped"] for r in befl[name]]) - np.mean(
                [r["fed/clients_dropped"] for r in befl["fedavg"]]
            )
            claims.append(
                (
                    f"{name} vs FedAvg: fewer dropped clients (no figure claimed)",
                    f"{drop:+.2f} clients",
                    verdict(drop, -1, sized=False),
                )
            )
        eff, lo, hi = paired_auc_effect(befl["befl"], befl["befl_heuristic"])
        claims.append(
            (
                "BEFL policy (imitation + RL) beats the heuristic alone: accuracy (no figure claimed)",
                f"{100 * eff:+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                verdict(eff, 1, (lo, hi), sized=False),
            )
        )
    if chan["fedavg_csma_ca"] and chan["fedavg_two_way_relay"]:
        up = rel(chan["fedavg_two_way_relay"], chan["fedavg_csma_ca"], "fed/uplink_s")
        claims.append(
            (
                "two-way relaying beats CSMA/CA: FL uplink time (no figure claimed)",
                f"{100 * up:+.1f} %",
                verdict(up, -1, sized=False),
            )
        )
        en = rel(chan["fedavg_two_way_relay"], chan["fedavg_csma_ca"], "fed/energy_total_j")
        claims.append(
            (
                "two-way relaying beats CSMA/CA: FL total energy (no figure claimed)",
                f"{100 * en:+.1f} %",
                verdict(en, -1, sized=False),
            )
        )
    mac_path = ROOT / "docs" / "results" / "federated_mac.json"
    if mac_path.is_file():
        mac = json.loads(mac_path.read_text())
        n = mac["nodes"]
        c, r = mac["csma_ca"]["saturated_throughput"], mac["two_way_relay"]["saturated_throughput"]
        keep_c, keep_r = c[-1] / max(c), r[-1] / max(r)
        claims.append(
            (
                f"two-way relaying scales better than CSMA/CA (throughput kept at {n[-1]} nodes, of its peak)",
                f"relay {100 * keep_r:.0f} % vs CSMA/CA {100 * keep_c:.0f} %; at {n[-1]} nodes {r[-1]:.2f} vs {c[-1]:.2f}",
                "reproduced" if keep_r > keep_c and r[-1] > c[-1] else "not reproduced",
            )
        )
        a2 = mac["two_way_relay"].get("bianchi_throughput_pair_factor_2")
        if a2:
            claims.append(
                (
                    "… if the relay's broadcast takes a second airtime (pair = 2L, analytical)",
                    f"relay {a2[-1]:.2f} vs CSMA/CA {mac['csma_ca']['bianchi_throughput'][-1]:.2f} at {n[-1]} nodes; "
                    f"kept {100 * a2[-1] / max(a2):.0f} % of peak",
                    "reproduced" if a2[-1] > mac["csma_ca"]["bianchi_throughput"][-1] else "not reproduced",
                )
            )
    if mho["fedmho_sd"] and mho["oneshot_fedavg"]:
        best = max(
            ("fedmho_sd", "fedmho_md"),
            key=lambda k: np.mean([x["test/auc"] for x in mho[k]]) if mho[k] else -1,
        )
        for base in ("oneshot_fedavg", "ensemble_distill"):
            if mho[base]:
                eff, lo, hi = paired_auc_effect(mho[best], mho[base])
                claims.append(
                    (
                        f"FedMHO ({best}) beats {base} (AUC; no figure claimed)",
                        f"{100 * eff:+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                        verdict(eff, 1, (lo, hi), sized=False),
                    )
                )
        for variant in ("fedmho_md", "fedmho_sd"):
            if mho[variant] and mho["fedmho_plain"]:
                eff, lo, hi = paired_auc_effect(mho[variant], mho["fedmho_plain"])
                claims.append(
                    (
                        f"{variant} mitigates forgetting: beats plain fusion (AUC; no figure claimed)",
                        f"{100 * eff:+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                        verdict(eff, 1, (lo, hi), sized=False),
                    )
                )
        for variant in ("fedmho_sd", "fedmho_md"):
            wins = sum(x["test/auc"] > x["fed/best_client_test_auc"] for x in mho[variant])
            gap = np.mean([x["test/auc"] - x["fed/best_client_test_auc"] for x in mho[variant]])
            claims.append(
                (
                    f"{variant}: fused model beats its best single client",
                    f"{wins}/{len(mho[variant])} seeds, mean ΔAUC {gap:+.4f}",
                    "reproduced"
                    if wins == len(mho[variant])
                    else ("direction only" if gap > 0 else "not reproduced"),
                )
            )
        if mho["central"]:
            eff, lo, hi = paired_auc_effect(mho[best], mho["central"])
            claims.append(
                (
                    f"gap of FedMHO ({best}) to central training (reference)",
                    f"{100 * eff:+.2f} % [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                    "reference",
                )
            )
    lines += [f"| {a} | {b} | {c} |" for a, b, c in claims]
    keys = [
        "test/auc",
        "test/logloss",
        "fed/energy_total_j",
        "fed/energy_std_j",
        "fed/clients_dropped",
        "fed/uplink_s",
    ]
    lines += ["", "## BEFL (strategy=befl | befl_heuristic | fedavg, channel=ideal)", "", *table(befl, keys)]
    lines += ["", "## Uplink MACs in federated rounds (strategy=fedavg)", "", *table(chan, keys)]
    lines += [
        "",
        "## FedMHO and one-shot baselines (channel=ideal)",
        "",
        *table(
            mho,
            [
                "test/auc",
                "test/logloss",
                "fed/best_client_test_auc",
                "test/ensemble_auc",
                "fed/energy_total_j",
            ],
        ),
    ]
    if mac_path.is_file():
        mac = json.loads(mac_path.read_text())
        lines += [
            "",
            "## MAC simulators (scripts/bench_mac.py)",
            "",
            f"`{mac['command']}` ({mac['wall_s']:.0f} s). Saturated throughput against nodes (simulated / analytical):",
            "",
            "| nodes | " + " | ".join(str(x) for x in mac["nodes"]) + " |",
            "|---|" + "---|" * len(mac["nodes"]),
        ]
        for name in ("csma_ca", "two_way_relay"):
            d = mac[name]
            cells = [
                f"{s:.3f} / {a:.3f}"
                for s, a in zip(d["saturated_throughput"], d["bianchi_throughput"], strict=True)
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "![MAC throughput and delay](federated_mac.png)"]
    lines += ["", "## Commands", "", "Each row's runs (seed k = 0, 1, 2):", ""]
    for study, rows in STUDIES.items():
        for row in rows:
            args = " ".join(command(study, row, 0)[:-2])
            lines.append(
                f"- {study}/{row}: `python {args} seed=k hydra.run.dir=runs/federated_results/{study}/{row}/seedk`"
            )
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="run the missing runs first")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "federated.md")
    args = parser.parse_args()
    if args.run:
        run_missing()
    write_page(args.out)


if __name__ == "__main__":
    main()
