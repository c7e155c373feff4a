"""The oracle's own figure of each planted mechanism of the synthetic world (docs/synthetic_world.md):

- ``retention``: on the ``retention`` preset, for each ``engagement_correlation`` ρ, the retention
  oracles on the last ``--test-days`` days' conversions: full information (``p_retention``),
  observables only (``p_retention_observable``) and neither (the base rate: AUC 0.5).
- ``history``: on the ``long_history`` preset, the AUC on the last day's exposures of the planted
  click logit computed from the latest K events only, K = 0, 1, 2, 4, ..., 1024, all.

    python scripts/oracle_curves.py                       # both, written to outputs/oracle_curves/
    python scripts/oracle_curves.py --only history --history-rows 50000

Resumable: each (study, setting) is one JSON file, skipped when it exists (--force to redo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_lab.data.synthetic.sequences import history_index  # noqa: E402
from recsys_lab.data.synthetic.world import CLICK, DAY, EXPOSURE, EventLog, World, WorldSpec, saturate  # noqa: E402
from recsys_lab.metrics import auc, base_entropy, bootstrap_interval, logloss  # noqa: E402
from recsys_lab.runners.stage import write_json_atomic  # noqa: E402

HISTORY_KS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, None)


def _metrics(p: np.ndarray, y: torch.Tensor) -> dict[str, float]:
    t = torch.from_numpy(p.astype(np.float64))
    return {"auc": auc(t, y), "logloss": logloss(t, y)}


def retention(rho: float, test_days: int, seed: int) -> dict[str, object]:
    spec = WorldSpec.from_preset("retention", {"engagement_correlation": rho, "seed": seed})
    t0 = time.time()
    log = World(spec).generate_all()
    day = log.ts[log.conv_event] // DAY
    test = day >= spec.num_days - test_days
    y = torch.from_numpy(log.retained[test].astype(np.float64))
    full, obs = (
        torch.from_numpy(a[test].astype(np.float64)) for a in (log.p_retention, log.p_retention_observable)
    )
    return {
        "observables_only_auc_interval": bootstrap_interval(auc, obs, y),
        "gap_full_minus_observables_auc_interval": bootstrap_interval(auc, full, y, baseline=obs),
        "preset": "retention",
        "engagement_correlation": rho,
        "seed": seed,
        "test_days": test_days,
        "test_rows": int(test.sum()),
        "full": _metrics(log.p_retention[test], y),
        "observables_only": _metrics(log.p_retention_observable[test], y),
        "neither": {"auc": 0.5, "logloss": base_entropy(y)},
        "seconds": time.time() - t0,
    }


def truncated_oracle(
    world: World, log: EventLog, rows: np.ndarray, k: int | None, action_blind: bool = False
) -> np.ndarray:
    """float64 ``[n]``: the planted click probability of the exposures at log rows ``rows``
    (sorted) computed from each one's latest ``k`` events only (0: no history; None: all).
    ``action_blind``: every event read weighs the mean action weight of all the events read, in
    place of its own action's (what is left to a predictor that does not know each event's action)."""
    spec, g = world.spec, world.gains
    static = log.logit_parts[rows, 0].astype(np.float64)
    if k == 0:
        z = static
    else:
        first_of_user = np.searchsorted(log.user, np.arange(spec.total_users + 2, dtype=np.int32))
        offsets, hist = history_index(first_of_user[log.user[rows]], rows, k)
        actions, scale = log.action[hist], 1.0
        if action_blind and hist.size:
            weights, clicked = world.kernel.action_weight, EXPOSURE | CLICK
            if weights[clicked] <= 0:
                raise ValueError(
                    "truncated_oracle(action_blind=True) needs a positive click weight (action_weights[1])"
                )
            scale = float(weights[actions.astype(np.int64)].mean() / weights[clicked])
            actions = np.full_like(actions, clicked)  # every event as a click, then rescaled to the mean
        h_cat, h_item = world.history_sums(
            log.item[hist],
            log.category[hist],
            actions,
            log.ts[hist],
            offsets,
            log.item[rows],
            log.ts[rows],
        )
        z = static + saturate(
            scale * (g.click_hist_cat * h_cat + g.click_hist_item * h_item), spec.history_cap
        )
    return 1.0 / (1.0 + np.exp(-spec.temperature * z))


def history(
    rows: int,
    seed: int,
    preset: str = "long_history",
    knobs: dict[str, object] | None = None,
    ks: tuple[int | None, ...] = HISTORY_KS,
) -> dict[str, object]:
    """The oracle's AUC / LogLoss on ``rows`` of the last day's exposures of ``preset`` (with world
    ``knobs``) from the latest K events only, for each K of ``ks`` (None = the whole history)."""
    spec = WorldSpec.from_preset(preset, {"seed": seed, **(knobs or {})})
    t0 = time.time()
    world = World(spec)
    log = world.generate_all()
    first_of_user = np.searchsorted(log.user, np.arange(spec.total_users + 2, dtype=np.int32))
    last_day = np.flatnonzero(log.ts // DAY == spec.num_days - 1)
    pick = np.random.default_rng(seed).choice(last_day, size=min(rows, last_day.size), replace=False)
    pick.sort()
    first = first_of_user[log.user[pick]]
    y = torch.from_numpy(((log.action[pick] & CLICK) > 0).astype(np.float64))
    curve: list[dict[str, object]] = []
    previous: torch.Tensor | None = None
    for k in ks:
        p = truncated_oracle(world, log, pick, k)
        point: dict[str, object] = {"k": "all" if k is None else k, **_metrics(p, y)}
        pt = torch.from_numpy(p)
        if previous is not None:  # paired bootstrap over the rows: the gain of this doubling
            point["gain_auc_interval"] = bootstrap_interval(auc, pt, y, baseline=previous)
        previous = pt
        curve.append(point)
    lengths = pick - first
    return {
        "preset": preset,
        "knobs": knobs or {},
        "seed": seed,
        "rows": int(pick.size),
        "exposures": len(log),
        "history_length_median": float(np.median(lengths)),
        "history_length_p90": float(np.quantile(lengths, 0.9)),
        "curve": curve,
        "seconds": time.time() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "oracle_curves"))
    ap.add_argument("--only", choices=["retention", "history"], default=None)
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.3, 0.6, 0.9])
    ap.add_argument("--test-days", type=int, default=3)
    ap.add_argument("--history-rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    jobs = []
    if args.only in (None, "retention"):
        jobs += [
            (f"retention_rho{r}_seed{args.seed}.json", lambda r=r: retention(r, args.test_days, args.seed))
            for r in args.rhos
        ]
    if args.only in (None, "history"):
        jobs.append((f"history_seed{args.seed}.json", lambda: history(args.history_rows, args.seed)))
    for name, job in jobs:
        path = out / name
        if path.exists() and not args.force:
            print(f"{name}: done, skipped")
            continue
        result = job()
        write_json_atomic(path, result)
        print(name, json.dumps(result)[:400], flush=True)


if __name__ == "__main__":
    main()
