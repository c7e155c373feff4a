"""Training throughput and peak memory of HSTU and GRAB against history length.

A bare training loop (forward, backward, Adam step; no Lightning, no data loading) on random
batches whose samples all have exactly L history events, so a segment is L + 2 tokens
(sink, events, candidate). Each (model, kernel, L) runs in its own subprocess so its peak
resident memory (``ru_maxrss``) is its own; the table reports the peak minus the process's
resident memory before the first step.

    python scripts/bench_sequence.py                                  # padded kernel, L = 8..256
    python scripts/bench_sequence.py --kernels padded reference --lengths 8 32 --batch-size 64
    python scripts/bench_sequence.py --device cuda --kernels reference triton   # on a GPU

Timings on a shared machine are noisy: the table prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(model_name: str, kernel: str, length: int, batch_size: int, steps: int, device: str) -> dict:
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from recsys_lab.models.grab import GRAB
    from recsys_lab.models.hstu import HSTU
    from tests.layers.test_sequence import make_seq_batch, make_seq_schema, seq_embedding

    torch.manual_seed(0)
    schema = make_seq_schema()
    if model_name == "hstu":
        model = HSTU(schema, seq_embedding(16), kernel=kernel)
    else:
        model = GRAB(schema, seq_embedding(16), kernel=kernel)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = make_seq_batch(batch_size, seed=0, min_len=length, max_len=length).to(device)

    def step() -> None:
        if isinstance(model, GRAB):
            out = model.forward_events(batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out.event_logits, out.event_labels)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                out.candidate_logits, batch.labels["click"]
            )
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels["click"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    )
    return {
        "model": model_name,
        "kernel": kernel,
        "history": length,
        "samples_per_s": batch_size * steps / dt,
        "peak_mb": peak,
        "ms_per_step": 1000 * dt / steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["hstu", "grab"])
    ap.add_argument("--kernels", nargs="+", default=["padded"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "KERNEL", "LENGTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        m, k, length = args.worker
        print(json.dumps(worker(m, k, int(length), args.batch_size, args.steps, args.device)))
        return
    load0 = os.getloadavg()[0]
    rows = []
    for m in args.models:
        for k in args.kernels:
            for length in args.lengths:
                cmd = [
                    sys.executable, __file__, "--worker", m, k, str(length), "--batch-size", str(args.batch_size),
                    "--steps", str(args.steps), "--threads", str(args.threads), "--device", args.device,
                ]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    print(f"{m} {k} L={length} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr)
    load1 = os.getloadavg()[0]
    mem = "peak GPU MB (allocated)" if args.device.startswith("cuda") else "peak RSS MB above baseline"
    print(
        f"\nbatch {args.batch_size}, {args.steps} timed steps after 1 warm-up, {args.threads} thread(s), "
        f"device {args.device}, load average {load0:.1f} -> {load1:.1f}\n"
    )
    print(f"| model | kernel | history L | tokens/segment | samples/s | ms/step | {mem} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['kernel']} | {r['history']} | {r['history'] + 2} | {r['samples_per_s']:,.0f} | "
            f"{r['ms_per_step']:,.0f} | {r['peak_mb']:,.0f} |"
        )


if __name__ == "__main__":
    main()
