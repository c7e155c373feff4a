"""PCF-GNN's storage claim (issue 13 item 1): where does the exact pair-statistics table outgrow
the GNN?

Storage is countable without training. For each point (training rows N, largest vocabulary V,
chosen field pairs P) the script generates ``data=synthetic``'s training split (the project's
world, through ``recsys_lab.train.build``), builds the exact table exactly as ``pipeline=pcf_gnn``
does (:func:`recsys_lab.data.cooccurrence.build_cooccurrence`: one smoothed CTR per distinct pair
seen in training, ``storage/table_entries``) and the GNN (:class:`recsys_lab.models.pcf_gnn.PCFGNN`
with ``model=pcf_gnn``'s defaults and ``embedding.dim=16``: node vectors of the paired fields + GNN
weights + predictor, ``storage/gnn_values``). The P pairs are the P field pairs with the largest
vocabulary product (the id-like pairs whose tables grow fastest); P = 66 is every pair of the 12
fields.

    python scripts/claims_pcf_storage.py                 # count what is missing, write the page section
    python scripts/claims_pcf_storage.py --report-only

Resumable: each point is one JSON under ``--out`` (skipped when present). The section
``## PCF-GNN storage crossover`` of ``docs/results/claims.md`` and the figure
``docs/results/claims_pcf_storage.png`` are rewritten from those files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts.claims_page import write_section  # noqa: E402

ROWS = [10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000]
VOCABS = [5_000, 50_000, 500_000]
PAIRS = [4, 16, 66]
DIM = 16


def count(rows: int, vocab: int, seed: int) -> dict[str, object]:
    """Exact-table entries and GNN values for every P in PAIRS at one (rows, vocab)."""
    import torch
    from hydra import compose, initialize_config_dir

    from recsys_lab.data.cooccurrence import build_cooccurrence
    from recsys_lab.layers.embedding import FullEmbedding
    from recsys_lab.models.pcf_gnn import PCFGNN
    from recsys_lab.runners.stage import CONFIG_DIR
    from recsys_lab.runners.train import build

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"data.num_train={rows}",
                "data.num_val=1000",
                "data.num_test=1000",
                f"data.max_vocab={vocab}",
                f"seed={seed}",
                "num_threads=1",
            ],
        )
    t0 = time.time()
    dm, _, _ = build(cfg)
    dm.setup()
    train = dm.split("train")
    schema = dm.schema
    vocab_sizes = schema.vocab_sizes
    ranked = sorted(
        itertools.combinations(range(schema.num_categorical), 2),
        key=lambda p: -vocab_sizes[p[0]] * vocab_sizes[p[1]],
    )
    stats = build_cooccurrence(train.sparse, train.labels["click"], schema, ranked, alpha=20.0)
    per_pair = [len(t) for t in stats.tables]  # distinct pairs per field pair, in `ranked` order
    out: dict[str, object] = {
        "rows": rows,
        "max_vocab": vocab,
        "seed": seed,
        "vocab_sizes": list(vocab_sizes),
        "pairs_ranked": [list(p) for p in ranked],
        "distinct_pairs": per_pair,
        "points": [],
    }
    for p in PAIRS:
        model = PCFGNN(schema, lambda s: FullEmbedding(s, dim=DIM, sparse_grad=False), num_pairs=p)
        model.field_pairs = ranked[:p]
        out["points"].append(  # type: ignore[union-attr]
            {"pairs": p, "table_values": sum(per_pair[:p]), "gnn_values": model.num_gnn_values()}
        )
        del model
    out["seconds"] = time.time() - t0
    return out


def crossing(xs: list[float], table: list[float], gnn: list[float]) -> float | None:
    """The x where table − gnn changes sign (log-log interpolation between grid points)."""
    for i in range(len(xs) - 1):
        d0, d1 = math.log(table[i] / gnn[i]), math.log(table[i + 1] / gnn[i + 1])
        if d0 < 0 <= d1:
            f = -d0 / (d1 - d0)
            return math.exp(math.log(xs[i]) + f * (math.log(xs[i + 1]) - math.log(xs[i])))
    return None


def report(out: Path, seed: int, command: str) -> list[str]:
    results = {}
    for v in VOCABS:
        for n in ROWS:
            f = out / f"rows{n}_vocab{v}_seed{seed}.json"
            if f.exists():
                results[(n, v)] = json.loads(f.read_text())
    lines = [
        "Does the exact pair-statistics table outgrow the GNN? Counted without training on "
        "`data=synthetic` (12 fields, Zipf 1.4 value frequencies, vocabularies log-uniform from 10 to "
        "`data.max_vocab`, user field 1001 values), seed "
        f"{seed}. *Table* = distinct pairs seen in the training rows (one smoothed CTR each; a hash "
        "table would also store each key, doubling it); *GNN* = node vectors (dim 16) of the paired "
        "fields + the GNN's per-relation weights + the predictor (`model=pcf_gnn` defaults). The P pairs "
        "are those with the largest vocabulary product; P = 66 is every pair. Command:",
        "",
        f"    {command}",
        "",
        "| max vocab | pairs P | "
        + " | ".join(f"table / GNN at {n:,} rows" for n in ROWS)
        + " | crossover (rows) |",
        "|---|---|" + "---|" * len(ROWS) + "---|",
    ]
    crosses = []
    for v in VOCABS:
        for i, p in enumerate(PAIRS):
            cells, xs, tab, gnn = [], [], [], []
            for n in ROWS:
                r = results.get((n, v))
                if r is None:
                    cells.append("–")
                    continue
                pt = r["points"][i]
                cells.append(f"{pt['table_values']:,} / {pt['gnn_values']:,}")
                xs.append(n)
                tab.append(pt["table_values"])
                gnn.append(pt["gnn_values"])
            c = crossing(xs, tab, gnn) if xs else None
            if c is not None:
                txt = f"≈ {c:,.0f}"
            elif xs and tab[-1] > gnn[-1]:
                txt = f"below {xs[0]:,} (table larger everywhere)"
            elif len(xs) >= 2:
                # beyond the grid: extend the last segment's power law (stated as an extrapolation)
                slope = math.log(tab[-1] / tab[-2]) / math.log(xs[-1] / xs[-2])
                ext = xs[-1] * (gnn[-1] / tab[-1]) ** (1 / slope)
                txt = f"not within {xs[-1]:,} rows (extrapolated ≈ {ext:,.0f}, table ∝ rows^{slope:.2f})"
                c = -ext  # negative: extrapolated
            else:
                txt = "not run"
            crosses.append({"max_vocab": v, "pairs": p, "crossover_rows": c, "text": txt})
            lines.append(f"| {v:,} | {p} | " + " | ".join(cells) + f" | {txt} |")
    wall = sum(r["seconds"] for r in results.values())
    lines += [
        "",
        f"Wall time: {wall / 60:.1f} min for the {len(results)} (rows, vocab) points (generation and "
        "counting, one thread, shared CPU).",
        "",
        "![stored values against training rows](claims_pcf_storage.png)",
        "",
        "Reading: the GNN's storage does not depend on the number of training rows (its node vectors "
        "are fixed by the vocabulary: V × 16 values per paired field, counted for every value of the "
        "schema, seen or not), while the exact table grows with every distinct pair the rows reveal "
        "(roughly as rows^0.6–0.8 here) and with the number of chosen pairs. So the table outgrows the "
        "GNN once the rows reveal more distinct pairs than 16 × the paired fields' vocabularies: "
        "early with many pairs over small vocabularies, late (or, within this grid, never) with few "
        "pairs over large vocabularies. An extrapolated crossover is marked as such. This is why the "
        "embeddings page's runs (4 pairs, 10k rows) found the GNN 11.7× (synthetic) and 55.6× "
        "(synthetic_criteo) larger: the storage claim holds only in the regime where the paper works "
        "(many pairs, billions of rows).",
        "",
        "AUC at these points was not measured in this session (CPU budget); the pipeline that measures "
        "it at one point (4 pairs, with the unseen-pair split) is `python scripts/results_embeddings.py "
        "--studies pcf --datasets synthetic --num-train 300000 --epochs 3`.",
    ]
    _plot(results, out)
    from recsys_lab.runners.stage import write_json_atomic

    write_json_atomic(out / "summary.json", {"seed": seed, "crossovers": crosses})
    return lines


def _plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(VOCABS), figsize=(5 * len(VOCABS), 4), sharey=True)
    for ax, v in zip(axes, VOCABS, strict=True):
        for i, p in enumerate(PAIRS):
            pts = [(n, results[(n, v)]["points"][i]) for n in ROWS if (n, v) in results]
            if not pts:
                continue
            xs = [n for n, _ in pts]
            (line,) = ax.plot(xs, [q["table_values"] for _, q in pts], "o-", label=f"exact table, P={p}")
            ax.plot(xs, [q["gnn_values"] for _, q in pts], "--", color=line.get_color(), label=f"GNN, P={p}")
        ax.set(xscale="log", yscale="log", xlabel="training rows", title=f"max vocab {v:,}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("stored values")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "results" / "claims_pcf_storage.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "claims" / "pcf_storage")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        for v in VOCABS:
            for n in ROWS:
                f = args.out / f"rows{n}_vocab{v}_seed{args.seed}.json"
                if f.exists():
                    continue
                from recsys_lab.runners.stage import write_json_atomic

                r = count(n, v, args.seed)
                write_json_atomic(f, r)
                print(f"rows {n} vocab {v}: {r['points']} ({r['seconds']:.0f} s)", flush=True)
    lines = report(args.out, args.seed, "python scripts/claims_pcf_storage.py")
    write_section("PCF-GNN storage crossover", lines)


if __name__ == "__main__":
    main()
