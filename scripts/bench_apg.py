"""APG: time and memory of the decomposed forward ``((x U) S_i) V`` against materialising
``W_i = U S_i V`` ``[B, N, M]`` per instance. Prints a table; nothing is asserted.

    .venv/bin/python scripts/bench_apg.py                      # CPU, default shapes
    .venv/bin/python scripts/bench_apg.py --batch 4096 --width 512 --rank 32

Memory is the peak extra bytes of the forward's tensors as the PyTorch profiler's allocator
events report them on CPU (``torch.cuda.max_memory_allocated`` on a GPU).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys_lab.layers.apg import APGLinear


def peak_cpu_bytes(fn) -> int:
    """Peak of live allocated bytes during ``fn()`` from the profiler's memory events."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        fn()
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.cpu_memory_usage
        peak = max(peak, live)
    return peak


def bench(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--width", type=int, nargs="+", default=[64, 128, 256], help="N = M")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"APG forward, batch {args.batch}, rank K={args.rank}, self-wise condition, {args.threads} thread(s), "
        f"{torch.get_num_threads()} torch threads, device cpu"
    )
    header = f"{'N=M':>6} {'path':>13} {'ms/forward':>11} {'peak MiB':>9} {'speed-up':>9} {'mem ratio':>9}"
    print(header)
    print("-" * len(header))
    for n in args.width:
        layer = APGLinear(n, n, args.rank, n, 32, overparam=None).eval()
        x = torch.randn(args.batch, n)
        with torch.no_grad():
            torch.testing.assert_close(layer(x, x), layer.forward_materialized(x, x), atol=1e-3, rtol=1e-3)
            dec = functools.partial(layer, x, x)
            mat = functools.partial(layer.forward_materialized, x, x)
            t_dec, t_mat = bench(dec, args.repeats), bench(mat, args.repeats)
            m_dec, m_mat = peak_cpu_bytes(dec), peak_cpu_bytes(mat)
        print(
            f"{n:>6} {'decomposed':>13} {t_dec * 1e3:>11.2f} {m_dec / 2**20:>9.1f} {t_mat / t_dec:>8.1f}x "
            f"{m_mat / max(m_dec, 1):>8.1f}x"
        )
        print(f"{n:>6} {'materialised':>13} {t_mat * 1e3:>11.2f} {m_mat / 2**20:>9.1f} {'':>9} {'':>9}")


if __name__ == "__main__":
    main()
