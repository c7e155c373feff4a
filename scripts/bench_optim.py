"""Embedding-table optimiser step: torch.optim.SparseAdam against RowWiseSparseAdam.

    python scripts/bench_optim.py [--rows 200000] [--dim 16] [--batch 4096] [--fields 26] [--steps 21]

Prints the median step time (backward excluded) per optimiser and the ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from recsys_lab.tasks.optim import RowWiseSparseAdam


def median_step_ms(
    opt_cls: type[torch.optim.Optimizer], rows: int, dim: int, lookups: int, steps: int
) -> float:
    torch.manual_seed(0)
    table = nn.Embedding(rows, dim, sparse=True)
    opt = opt_cls(table.parameters(), lr=1e-3)
    times = []
    for _ in range(steps):
        ids = torch.randint(0, rows, (lookups,))
        opt.zero_grad()
        table(ids).sum().backward()
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--fields", type=int, default=26)
    parser.add_argument("--steps", type=int, default=21)
    args = parser.parse_args()
    lookups = args.batch * args.fields
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {lookups} lookups/step, dim {args.dim}"
    )
    print("| table rows | SparseAdam ms | RowWiseSparseAdam ms | speed-up |")
    print("|---:|---:|---:|---:|")
    for rows in args.rows:
        ref = median_step_ms(torch.optim.SparseAdam, rows, args.dim, lookups, args.steps)
        new = median_step_ms(RowWiseSparseAdam, rows, args.dim, lookups, args.steps)
        print(f"| {rows:,} | {ref:.2f} | {new:.2f} | {ref / new:.2f}× |")


if __name__ == "__main__":
    main()
