"""Generation speed and memory of the synthetic world (``recsys_lab.data.synthetic.world``).

``python scripts/bench_synthetic.py`` builds a world of about ``--events`` exposures (the preset
with ``num_users`` scaled to reach it), generates it shard by shard, and discards each shard after
counting it — generation streams, so the whole log is never held. It prints one table row:

* exposures generated, clicks, conversions, shards;
* calibration seconds (building the world: entities and the pilot simulation);
* generation wall seconds and **exposures/s** (wall clock, the number the target is about);
* CPU seconds (this process plus its generation workers) and exposures per CPU-second, which
  is what a loaded machine still measures fairly;
* peak RSS of this process and of the largest worker (``ru_maxrss``), and this process's RSS
  after its imports (Python, numpy and torch, which ``recsys_lab.data`` imports), before the world;
* the 1-minute load average before and after: on a shared machine, other jobs slow every number.

``--repeat N`` runs the generation N times on the same world and reports the fastest (plus every
run's rate). ``--json PATH`` also writes the row as JSON.

Generation makes only small matrix products, so OpenBLAS is pinned to one thread
(``OPENBLAS_NUM_THREADS=1`` unless set): its idle threads would otherwise spin on the cores the
generation processes need.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported

import argparse
import json
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys_lab.data.synthetic.world import CLICK, CONVERSION, World, WorldSpec


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="world preset to scale (tiny, small, large)")
    p.add_argument("--events", type=float, default=20e6, help="target number of exposures")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="generation processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="generation runs on the same world (best reported)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args()

    base = replace(WorldSpec.preset(args.preset), seed=args.seed)
    users = max(1, round(base.num_users * args.events / base.expected_events()))
    spec = replace(base, num_users=users)
    baseline_rss = _rss_mb()
    load_before = _load()
    t0 = time.perf_counter()
    world = World(spec)
    calibration_s = time.perf_counter() - t0

    rates, best = [], None
    for _ in range(args.repeat):
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        events = clicks = conversions = shards = 0
        for log in world.generate(workers=args.workers):
            events += len(log)
            clicks += int(((log.action & CLICK) > 0).sum())
            conversions += int(((log.action & CONVERSION) > 0).sum())
            shards += 1
            del log
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        rates.append(events / wall)
        if best is None or wall < best["generation_s"]:
            best = {"generation_s": wall, "cpu_s": cpu}
    assert best is not None
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row = {
        "preset": args.preset,
        "num_users": users,
        "num_days": spec.num_days,
        "events": events,
        "clicks": clicks,
        "conversions": conversions,
        "shards": shards,
        "workers": args.workers,
        "calibration_s": round(calibration_s, 2),
        "generation_s": round(best["generation_s"], 2),
        "events_per_s": round(events / best["generation_s"]),
        "all_runs_events_per_s": [round(r) for r in rates],
        "cpu_s": round(best["cpu_s"], 2),
        "events_per_cpu_s": round(events / best["cpu_s"]),
        "baseline_rss_mb": round(baseline_rss),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_worker_mb": round(kids),
        "load_before": round(load_before, 2),
        "load_after": round(_load(), 2),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    cols = [
        ("events", "{:,}"),
        ("workers", "{}"),
        ("calibration_s", "{}"),
        ("generation_s", "{}"),
        ("events_per_s", "{:,}"),
        ("events_per_cpu_s", "{:,}"),
        ("baseline_rss_mb", "{}"),
        ("peak_rss_mb", "{}"),
        ("peak_rss_worker_mb", "{}"),
        ("load_before", "{}"),
        ("load_after", "{}"),
    ]
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    print("| " + " | ".join(f.format(row[c]) for c, f in cols) + " |")
    print(
        f"clicks {clicks:,}  conversions {conversions:,}  shards {shards}  users {users:,}  runs {row['all_runs_events_per_s']}"
    )
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
