"""Write ``examples/tabular/ads_sample.csv``: a small synthetic ads log for ``data=tabular``.

Every column kind of the tabular source is present: categorical (``user_id``, ``ad_id``,
``advertiser``, ``category``, ``device``), numeric (``price``, ``user_age``), multi-valued
(``user_tags``, ``|``-separated), behaviour history (``hist_ad_id``, ``hist_category`` with their
times ``hist_time``, oldest first), a time column (``ts``, ISO date-times over 14 days) and two
labels (``click``; ``conversion``, only ever 1 after a click). Clicks and conversions follow a
planted model (user and ad effects, tag/category match, history affinity, price), so models have
something to learn. The data are synthetic: no real person or advertiser is described.

    python scripts/make_tabular_example.py [--rows 800] [--seed 0] [--out examples/tabular/ads_sample.csv]
"""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

CATEGORIES = ("sports", "news", "games", "travel", "food", "fashion")
DEVICES = ("android", "ios", "desktop")


def generate(rows: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    num_users, num_ads, num_advertisers = 60, 40, 8
    ad_category = rng.integers(0, len(CATEGORIES), num_ads)
    ad_advertiser = rng.integers(0, num_advertisers, num_ads)
    ad_effect = rng.normal(0, 0.8, num_ads)
    ad_price = np.round(rng.lognormal(3.0, 0.8, num_ads), 2)
    user_effect = rng.normal(0, 0.6, num_users)
    user_age = rng.integers(18, 70, num_users)
    user_device = rng.integers(0, len(DEVICES), num_users)
    user_tags = [rng.choice(len(CATEGORIES), rng.integers(0, 4), replace=False) for _ in range(num_users)]
    start = datetime(2024, 5, 1, tzinfo=UTC)
    times = np.sort(rng.uniform(0, 14 * 86400, rows))
    users = rng.integers(0, num_users, rows)
    ads = rng.integers(0, num_ads, rows)
    history: dict[int, list[tuple[int, float]]] = {u: [] for u in range(num_users)}
    out = []
    for t, u, a in zip(times, users, ads):
        cat = int(ad_category[a])
        past = history[u][-5:]  # the user's last clicks, oldest first
        affinity = sum(int(ad_category[h]) == cat for h, _ in past)
        logit = -1.2 + user_effect[u] + ad_effect[a] + 0.8 * (cat in user_tags[u]) + 0.5 * affinity
        click = rng.random() < 1 / (1 + np.exp(-logit))
        cvr_logit = (
            -1.0 - 0.6 * np.log(ad_price[a] / 20) + 0.4 * (user_age[u] > 40) + 0.5 * (cat in user_tags[u])
        )
        conversion = click and rng.random() < 1 / (1 + np.exp(-cvr_logit))
        when = start + timedelta(seconds=float(t))
        out.append(
            {
                "ts": when.strftime("%Y-%m-%d %H:%M:%S"),
                "user_id": f"u{u}",
                "ad_id": f"a{a}",
                "advertiser": f"adv{ad_advertiser[a]}",
                "category": CATEGORIES[cat],
                "device": DEVICES[user_device[u]],
                "price": f"{ad_price[a]:.2f}",
                "user_age": str(user_age[u]),
                "user_tags": "|".join(CATEGORIES[i] for i in sorted(user_tags[u])),
                "hist_ad_id": "|".join(f"a{h}" for h, _ in past),
                "hist_category": "|".join(CATEGORIES[ad_category[h]] for h, _ in past),
                "hist_time": "|".join(str(int(ht)) for _, ht in past),
                "click": str(int(click)),
                "conversion": str(int(conversion)),
            }
        )
        if click:
            history[u].append((int(a), (start + timedelta(seconds=float(t))).timestamp()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/tabular/ads_sample.csv"))
    args = parser.parse_args()
    rows = generate(args.rows, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    clicks = sum(r["click"] == "1" for r in rows)
    conversions = sum(r["conversion"] == "1" for r in rows)
    print(f"wrote {args.out}: {len(rows)} rows, {clicks} clicks, {conversions} conversions")


if __name__ == "__main__":
    main()
